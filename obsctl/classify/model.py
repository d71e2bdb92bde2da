"""The ONNX source classifier: loading, input-spec checks and batched inference."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from obsctl.classify.cutouts import CUTOUT_SIZE, N_CHANNELS, N_FEATURES
from obsctl.classify.labels import CLASSES
from obsctl.classify.onnx_session import checked_session
from obsctl.errors import ConfigError

__all__ = [
    "MODEL_CARD",
    "SHIPPED_MODEL",
    "ModelInputError",
    "SourceClassifier",
    "load_model_card",
]

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent / "shipped"
#: The model `obsctl model train` produced and the package ships.
SHIPPED_MODEL = _HERE / "sources.onnx"
#: Its model card (JSON): classes, input spec, training recipe, metrics, sha256 of the file.
MODEL_CARD = _HERE / "model_card.json"

_INPUTS = {"cutouts": (N_CHANNELS, CUTOUT_SIZE, CUTOUT_SIZE), "features": (N_FEATURES,)}
_OUTPUT = "probabilities"


class ModelInputError(ConfigError):
    """The configured ONNX model does not take the classifier's input spec.

    Raised when the classify stage is built (at start), naming the model file and the
    mismatching input or output. Fix the model or the ``[pipeline] classifier_model`` path.
    """


def load_model_card(path: str | Path = MODEL_CARD) -> dict[str, Any]:
    """Return a model card (JSON) as a dict."""
    card: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return card


class SourceClassifier:
    """Batched classification of detections with an ONNX model run by onnxruntime.

    The model takes ``cutouts`` (float32 ``[N, 3, 11, 11]``) and ``features`` (float32
    ``[N, 4]``) as built by `obsctl.classify.cutouts.model_inputs` and returns
    ``probabilities`` (float32 ``[N, 5]``, in `obsctl.classify.labels.CLASSES` order, each
    row summing to 1).

    Parameters
    ----------
    path : str or pathlib.Path, optional
        The ONNX file; by default the shipped model.
    threads : int, optional
        onnxruntime intra-op threads. One by default: the pipeline already runs one worker
        process per core.

    Raises
    ------
    ModelInputError
        If the file is missing, not a loadable ONNX model, or its inputs and output do not
        match the spec.
    """

    def __init__(self, path: str | Path | None = None, *, threads: int = 1) -> None:
        self.path = Path(path) if path is not None else SHIPPED_MODEL
        self._session = checked_session(
            self.path, threads, ModelInputError, inputs=_INPUTS,
            output=(_OUTPUT, (len(CLASSES),)), what="classifier model",
            spec="obsctl.classify.cutouts for the input spec",
        )  # fmt: skip
        meta = self._session.get_modelmeta().custom_metadata_map
        declared = meta.get("classes")
        if declared is not None and tuple(declared.split(",")) != CLASSES:
            raise ModelInputError(
                f"{self.path}: model classes {declared!r}, expected {','.join(CLASSES)}"
            )
        self.version = meta.get("version", "unknown")

    def predict(
        self, cutouts: NDArray[np.float32], features: NDArray[np.float32]
    ) -> NDArray[np.float32]:
        """Return the class probabilities, ``[N, 5]``, of a batch of detections.

        Parameters
        ----------
        cutouts : numpy.ndarray of float32
            ``[N, 3, 11, 11]``.
        features : numpy.ndarray of float32
            ``[N, 4]``.

        Returns
        -------
        numpy.ndarray of float32
            Probabilities in `obsctl.classify.labels.CLASSES` order.
        """
        if len(cutouts) == 0:
            return np.zeros((0, len(CLASSES)), dtype=np.float32)
        out = self._session.run(
            [_OUTPUT],
            {
                "cutouts": np.ascontiguousarray(cutouts, dtype=np.float32),
                "features": np.ascontiguousarray(features, dtype=np.float32),
            },
        )
        probabilities: NDArray[np.float32] = np.asarray(out[0], dtype=np.float32)
        return probabilities
