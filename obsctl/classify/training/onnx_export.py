"""One way to write a trained classifier as ONNX: the two inputs, a batch axis, metadata.

Both classifiers trained by ``obsctl model train`` take ``cutouts`` and ``features`` and
give one output; they are written the same way, to a temporary name renamed at the end.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["export_onnx"]


def export_onnx(
    module: Any,
    example: tuple[Any, Any],
    path: Path,
    *,
    output: str,
    producer: str,
    version: str,
    doc: str,
    metadata: Iterable[tuple[str, str]],
) -> None:
    """Export a torch module of inputs ``cutouts`` and ``features`` to an ONNX file.

    Parameters
    ----------
    module : torch.nn.Module
        The model in eval mode, as inference runs it (probabilities out).
    example : tuple of torch.Tensor
        Example ``cutouts`` and ``features`` batches (any batch size: the axis is dynamic).
    path : pathlib.Path
        The file written (atomically: a temporary name, then a rename).
    output : str
        The output's name.
    producer, version, doc : str
        The model's producer name and version and its doc string.
    metadata : iterable of (str, str)
        Metadata entries, in order (the version, the classes, the input spec, a threshold).
    """
    import onnx
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # The TorchScript exporter (dynamo=False) needs only the onnx package; its deprecation
    # warnings (its own and its internals') are no news here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            example,
            str(tmp),
            input_names=["cutouts", "features"],
            output_names=[output],
            dynamic_axes={"cutouts": {0: "batch"}, "features": {0: "batch"}, output: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    model = onnx.load(str(tmp))
    model.producer_name = producer
    model.producer_version = version
    model.doc_string = doc
    for key, value in metadata:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(tmp))
    tmp.replace(path)
