"""One way to open a shipped ONNX model: on the CPU, with a fixed number of threads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["cpu_session"]


def cpu_session(path: Path, threads: int, error: type[Exception], what: str = "model") -> Any:
    """Open an ONNX model for inference on the CPU.

    Parameters
    ----------
    path : pathlib.Path
        The model file.
    threads : int
        onnxruntime intra-op threads (inter-op is one: callers run one process per core).
    error : type of Exception
        Raised, naming the file, when it is missing or onnxruntime cannot load it.
    what : str, optional
        What the file is, for the missing-file message.

    Returns
    -------
    onnxruntime.InferenceSession
        The session (typed Any: onnxruntime ships no type hints).
    """
    import onnxruntime as ort

    if not path.is_file():
        raise error(f"{path}: {what} file not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise error(f"{path}: not a loadable ONNX model: {exc}") from exc
