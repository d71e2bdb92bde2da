"""One way to open a shipped ONNX model: on the CPU, with a fixed number of threads.

`checked_session` also checks the model against the inputs and output its caller feeds and
reads, so that a wrong file fails when it is loaded, naming what does not match.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["checked_session", "cpu_session"]


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


def _check_dims(
    path: Path,
    what: str,
    shape: list[Any],
    expected: tuple[int, ...],
    spec: str,
    error: type[Exception],
) -> None:
    """Check a tensor's shape, ``[batch, *expected]`` (symbolic dimensions pass)."""
    if len(shape) != len(expected) + 1 or any(
        isinstance(d, int) and d != e for d, e in zip(shape[1:], expected, strict=True)
    ):
        dims = "".join(f", {e}" for e in expected)
        raise error(f"{path}: {what} has shape {shape}, expected [batch{dims}] (see {spec})")


def checked_session(
    path: Path,
    threads: int,
    error: type[Exception],
    *,
    inputs: dict[str, tuple[int, ...]],
    output: tuple[str, tuple[int, ...]],
    what: str,
    spec: str,
) -> Any:
    """Open an ONNX model (`cpu_session`) and check its float inputs and its output.

    Parameters
    ----------
    path, threads, error, what
        As for `cpu_session`; `error` is also raised when the model does not match.
    inputs : dict
        Each input's name and shape less the batch dimension.
    output : tuple
        The output read: its name and shape less the batch dimension.
    spec : str
        Where the input spec is documented, for the messages.

    Returns
    -------
    onnxruntime.InferenceSession
        The session.
    """
    session = cpu_session(path, threads, error, what)
    found = {i.name: i for i in session.get_inputs()}
    if set(found) != set(inputs):
        raise error(f"{path}: model inputs are {sorted(found)}, expected {sorted(inputs)}")
    for name, expected in inputs.items():
        if found[name].type != "tensor(float)":
            raise error(f"{path}: input {name!r} is {found[name].type}, expected tensor(float)")
        _check_dims(path, f"input {name!r}", list(found[name].shape), expected, spec, error)
    outputs = {o.name: o for o in session.get_outputs()}
    name, expected = output
    if name not in outputs:
        raise error(f"{path}: no output {name!r} (outputs: {sorted(outputs)})")
    _check_dims(path, f"output {name!r}", list(outputs[name].shape), expected, spec, error)
    return session
