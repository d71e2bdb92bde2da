"""The variable-star classifier: what kind of variable a light curve is, and how unusual.

Two ONNX models run by onnxruntime on the feature vectors of `obsctl.timeseries.features`:
a classifier giving class probabilities (classes read from the model card) and an isolation
forest whose score says how unlike the training population a curve is. Training is
`obsctl.classify.training.variables` (``train`` extra); inference needs only onnxruntime.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from obsctl.classify.onnx_session import cpu_session
from obsctl.errors import ConfigError
from obsctl.timeseries.features import FEATURE_NAMES, N_FEATURES

__all__ = [
    "ANOMALY_MODEL",
    "VARIABLE_CARD",
    "VARIABLE_MODEL",
    "VariableClassifier",
    "VariableModelError",
]

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent.parent / "classify" / "shipped"
#: The shipped classifier (ONNX): ``features`` float32 ``[N, N_FEATURES]`` in,
#: ``probabilities`` float32 ``[N, n_classes]`` out.
VARIABLE_MODEL = _HERE / "variables.onnx"
#: The shipped anomaly model (ONNX isolation forest): ``features`` in, ``scores`` out.
ANOMALY_MODEL = _HERE / "variables_anomaly.onnx"
#: Their card (JSON): classes, feature names, metrics, the anomaly threshold.
VARIABLE_CARD = _HERE / "variables_card.json"

_INPUT = "features"
_PROBABILITIES = "probabilities"
_SCORES = "scores"


class VariableModelError(ConfigError):
    """A variable-star model file or its card is missing, unloadable or of the wrong spec.

    Raised when `VariableClassifier` is built, naming the file and what does not match (the
    input's name, type or width, an output, the classes, the feature names). Fix the path or
    retrain the model (``obsctl.classify.training.variables``) for this feature set.
    """


def _session(path: Path, threads: int) -> Any:
    session = cpu_session(path, threads, VariableModelError)
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != _INPUT:
        names = [i.name for i in inputs]
        raise VariableModelError(f"{path}: model inputs are {names}, expected [{_INPUT!r}]")
    if inputs[0].type != "tensor(float)":
        raise VariableModelError(f"{path}: input is {inputs[0].type}, expected tensor(float)")
    shape = list(inputs[0].shape)
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != N_FEATURES):
        raise VariableModelError(
            f"{path}: input has shape {shape}, expected [batch, {N_FEATURES}] "
            "(see obsctl.timeseries.features.FEATURE_NAMES)"
        )
    return session


def _output(path: Path, session: Any, name: str) -> None:
    outputs = [o.name for o in session.get_outputs()]
    if name not in outputs:
        raise VariableModelError(f"{path}: no output {name!r} (outputs: {outputs})")


class VariableClassifier:
    """Classify light curves' feature vectors and score how unusual they are.

    Parameters
    ----------
    path : str or pathlib.Path, optional
        The classifier (ONNX); by default the shipped `VARIABLE_MODEL`.
    anomaly_path : str or pathlib.Path, optional
        The anomaly model (ONNX); by default the shipped `ANOMALY_MODEL`.
    card_path : str or pathlib.Path, optional
        The model card (JSON); by default the shipped `VARIABLE_CARD`.
    threads : int, optional
        onnxruntime intra-op threads; one by default (the callers run one process per core).

    Attributes
    ----------
    classes : tuple of str
        The classes, in the probabilities' column order.
    anomaly_threshold : float
        The anomaly score above which a curve is unusual (the training set's 99th
        percentile).
    card : dict
        The model card.

    Raises
    ------
    VariableModelError
        If a file is missing or unloadable, or the models' inputs, outputs, classes or
        feature names do not match the card and `obsctl.timeseries.features`.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        anomaly_path: str | Path | None = None,
        card_path: str | Path | None = None,
        threads: int = 1,
    ) -> None:
        self.path = Path(path) if path is not None else VARIABLE_MODEL
        self.anomaly_path = Path(anomaly_path) if anomaly_path is not None else ANOMALY_MODEL
        self.card_path = Path(card_path) if card_path is not None else VARIABLE_CARD
        try:
            card = json.loads(self.card_path.read_text(encoding="utf-8"))
            classes = tuple(str(c) for c in card["classes"])
            names = tuple(str(n) for n in card["feature_names"])
            threshold = float(card["anomaly"]["threshold"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise VariableModelError(f"{self.card_path}: unreadable model card: {exc}") from exc
        if names != FEATURE_NAMES:
            raise VariableModelError(
                f"{self.card_path}: the model was trained on other features than "
                "obsctl.timeseries.features.FEATURE_NAMES"
            )
        self.card: dict[str, Any] = card
        self.classes = classes
        self.anomaly_threshold = threshold
        self._classifier = _session(self.path, threads)
        _output(self.path, self._classifier, _PROBABILITIES)
        width = next(o.shape for o in self._classifier.get_outputs() if o.name == _PROBABILITIES)
        declared = self._classifier.get_modelmeta().custom_metadata_map.get("classes")
        if declared is not None and tuple(declared.split(",")) != classes:
            raise VariableModelError(
                f"{self.path}: model classes {declared!r}, card classes {','.join(classes)}"
            )
        if len(width) == 2 and isinstance(width[1], int) and width[1] != len(classes):
            raise VariableModelError(
                f"{self.path}: {width[1]} probability columns for {len(classes)} classes"
            )
        self._anomaly = _session(self.anomaly_path, threads)
        _output(self.anomaly_path, self._anomaly, _SCORES)
        self.version = str(card.get("version", "unknown"))

    def classify(
        self, features: NDArray[np.floating[Any]]
    ) -> tuple[NDArray[np.str_], NDArray[np.float32], NDArray[np.float32]]:
        """Classify a batch of feature vectors.

        Parameters
        ----------
        features : numpy.ndarray
            ``[n, N_FEATURES]`` from `obsctl.timeseries.features.light_curve_features`
            (cast to float32).

        Returns
        -------
        labels : numpy.ndarray of str
            ``[n]``, the most probable class of each row.
        probabilities : numpy.ndarray of float32
            ``[n, len(classes)]``, each row summing to 1.
        anomaly_score : numpy.ndarray of float32
            ``[n]``, higher is more unusual; above `anomaly_threshold` is unusual.

        Raises
        ------
        ValueError
            If `features` is not ``[n, N_FEATURES]``.
        """
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise ValueError(f"features must be [n, {N_FEATURES}], got {list(x.shape)}")
        if x.shape[0] == 0:
            return (
                np.zeros(0, dtype=np.str_),
                np.zeros((0, len(self.classes)), dtype=np.float32),
                np.zeros(0, dtype=np.float32),
            )
        proba = np.asarray(self._classifier.run([_PROBABILITIES], {_INPUT: x})[0], dtype=np.float32)
        scores = np.asarray(self._anomaly.run([_SCORES], {_INPUT: x})[0], dtype=np.float32)
        labels = np.asarray(self.classes)[np.argmax(proba, axis=1)]
        return labels, proba, -scores.ravel()
