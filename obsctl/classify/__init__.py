"""Source classification: cutouts, the ONNX model, frame quality, training data and training.

Every detection of a frame is classified as a star, a galaxy, a cosmic-ray hit, a hot pixel
or an artifact (trail segment, diffraction spike, saturation bleed) by a small CNN run with
onnxruntime. `obsctl.classify.cutouts` defines the model's input (the contract a user's own
model must meet), `obsctl.classify.model` wraps the ONNX session, `obsctl.classify.quality`
grades frames. Training (`obsctl.classify.training.train`, the ``train`` extra) is never imported at
run time.
"""

from obsctl.classify.cutouts import (
    CUTOUT_SIZE,
    N_CHANNELS,
    N_FEATURES,
    hot_pixel_map,
    model_inputs,
)
from obsctl.classify.labels import (
    CLASSES,
    FLAG_NOT_CELESTIAL,
    NOT_CELESTIAL,
)
from obsctl.classify.model import SHIPPED_MODEL, SourceClassifier, load_model_card

__all__ = [
    "CLASSES",
    "CUTOUT_SIZE",
    "FLAG_NOT_CELESTIAL",
    "NOT_CELESTIAL",
    "N_CHANNELS",
    "N_FEATURES",
    "SHIPPED_MODEL",
    "SourceClassifier",
    "hot_pixel_map",
    "load_model_card",
    "model_inputs",
]
