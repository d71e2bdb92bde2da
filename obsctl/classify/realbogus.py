"""The real/bogus classifier of difference-imaging candidates: input spec and ONNX inference.

The difference stage (`obsctl.pipeline.difference`) keeps, per candidate, three cutouts of
`CUTOUT_PX` pixels: the new frame (background-subtracted), the reference (in the new frame's
units) and the ZOGY difference, NaN beyond the frame. `model_inputs` turns them, with the
candidate's score and S/N and the frame's seeing, into the model's two inputs:

``cutouts`` (float32 ``[N, 4, 21, 21]``)
    The three planes divided by ``s``, the difference's robust noise on the cutout's border
    (1.4826 times the median absolute deviation of the pixels at least `_RING_PX` from the
    centre), then compressed by ``asinh(v / 3)`` (a star's core is thousands of ``s``; the
    shape of the faint ones matters); NaN set to 0. The fourth plane is 1 on the frame, 0
    beyond it.
``features`` (float32 ``[N, 4]``)
    The sign of the score, ``log10(max(|score|, 1))``, ``asinh(snr / 10)`` (0 when not
    finite) and the frame's FWHM over 4 pixels (cosmic rays and hot pixels are sharper than
    the seeing, which the cutouts alone do not say).

The model returns ``real`` (float32 ``[N]``), the probability that a candidate is a real
transient (or a moving object), trained on simulated fields
(`obsctl.classify.training.realbogus`). Its metadata and card give ``threshold``: the
probability above which 95 % of the validation set's real candidates lie; candidates above it
are meant to become transient alerts.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from obsctl.classify.model import ModelInputError
from obsctl.classify.onnx_session import checked_session

__all__ = [
    "CUTOUT_PX",
    "INPUT_SPEC_VERSION",
    "N_FEATURES",
    "N_PLANES",
    "REALBOGUS_CARD",
    "REALBOGUS_MODEL",
    "RealBogusClassifier",
    "border_noise",
    "load_card",
    "model_inputs",
]

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent / "shipped"
#: The model ``obsctl model train --model realbogus`` produced and the package ships.
REALBOGUS_MODEL = _HERE / "realbogus.onnx"
#: Its card (JSON): input spec, recipe, data set sizes, metrics, threshold, sha256.
REALBOGUS_CARD = _HERE / "realbogus_card.json"

#: Side of the difference stage's cutouts (pixel); `obsctl.pipeline.difference.CUTOUT_PX`.
CUTOUT_PX = 21
#: Planes the model sees: new, reference, difference, and on-frame.
N_PLANES = 4
N_FEATURES = 4
#: Bumped when `model_inputs` changes meaning; a model records the version it was trained on.
INPUT_SPEC_VERSION = 1

# The border ring giving the noise: pixels at least this far from the centre (pixel) hold
# little of a candidate's light for any seeing the difference stage accepts (FWHM <= 10 px
# would put some there; the median absolute deviation shrugs it off).
_RING_PX = 8.0
_ASINH_SOFTENING = 3.0
_INPUTS = {"cutouts": (N_PLANES, CUTOUT_PX, CUTOUT_PX), "features": (N_FEATURES,)}
_OUTPUT = "real"


def _ring() -> NDArray[np.bool_]:
    centre = CUTOUT_PX // 2
    yy, xx = np.mgrid[:CUTOUT_PX, :CUTOUT_PX]
    return np.asarray(np.hypot(xx - centre, yy - centre) >= _RING_PX)


_RING = _ring()


def border_noise(difference: NDArray[np.float32]) -> NDArray[np.float64]:
    """Return each difference cutout's robust noise on its border (new-frame ADU)."""
    ring = difference[:, _RING].astype(np.float64)
    with warnings.catch_warnings():
        # An all-NaN border (a candidate at a corner) is expected: it takes the fallback.
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(ring, axis=1)
        mad = np.nanmedian(np.abs(ring - median[:, None]), axis=1)
    sigma = 1.4826 * mad
    good = np.isfinite(sigma) & (sigma > 0)
    # A cutout whose border is off the frame or flat (a saturated block) borrows the
    # median noise of the others; with none, 1 keeps the numbers finite.
    fallback = float(np.median(sigma[good])) if good.any() else 1.0
    return np.where(good, sigma, fallback)


def _check_cutouts(cutouts: NDArray[Any]) -> None:
    if cutouts.ndim != 4 or cutouts.shape[1:] != (3, CUTOUT_PX, CUTOUT_PX):
        raise ValueError(
            f"cutouts have shape {cutouts.shape}, expected (n, 3, {CUTOUT_PX}, {CUTOUT_PX}): "
            "new, reference and difference as the difference stage keeps them"
        )


def model_inputs(
    cutouts: ArrayLike,
    score: ArrayLike,
    snr: ArrayLike,
    fwhm_px: ArrayLike,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Return the model's ``cutouts`` and ``features`` for a batch of candidates.

    Parameters
    ----------
    cutouts : array_like
        ``(n, 3, 21, 21)``: new frame, reference, difference (new-frame ADU; NaN beyond the
        frame), as `obsctl.frame.DifferenceOutcome.cutouts`.
    score : array_like
        The candidates' signed peak score (sigma).
    snr : array_like
        Their forced-photometry S/N on the difference (NaN allowed).
    fwhm_px : float or array_like
        The new frame's seeing FWHM (pixel), one value or one per candidate.

    Returns
    -------
    cutouts : numpy.ndarray of float32
        ``(n, 4, 21, 21)``.
    features : numpy.ndarray of float32
        ``(n, 4)``.

    Raises
    ------
    ValueError
        When the shapes do not match or the FWHM is not finite and positive.
    """
    planes = np.asarray(cutouts, dtype=np.float32)
    _check_cutouts(planes)
    n = len(planes)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    q = np.asarray(snr, dtype=np.float64).reshape(-1)
    fwhm = np.broadcast_to(np.asarray(fwhm_px, dtype=np.float64), (n,)) if n else np.zeros(0)
    if len(s) != n or len(q) != n:
        raise ValueError(f"{n} cutouts but {len(s)} scores and {len(q)} S/N values")
    if not (np.isfinite(fwhm).all() and (fwhm > 0).all()):
        raise ValueError("fwhm_px must be finite and positive")
    sigma = border_noise(planes[:, 2]).astype(np.float32)
    scaled = planes / sigma[:, None, None, None]
    on_frame = np.isfinite(planes[:, 2])
    out = np.empty((n, N_PLANES, CUTOUT_PX, CUTOUT_PX), dtype=np.float32)
    out[:, :3] = np.where(
        np.isfinite(scaled), np.arcsinh(scaled / np.float32(_ASINH_SOFTENING)), 0.0
    )
    out[:, 3] = on_frame
    features = np.empty((n, N_FEATURES), dtype=np.float32)
    features[:, 0] = np.sign(np.nan_to_num(s))
    features[:, 1] = np.log10(np.maximum(np.abs(np.nan_to_num(s)), 1.0))
    features[:, 2] = np.where(np.isfinite(q), np.arcsinh(np.nan_to_num(q) / 10.0), 0.0)
    features[:, 3] = fwhm / 4.0
    return out, features


def load_card(path: str | Path = REALBOGUS_CARD) -> dict[str, Any]:
    """Return the real/bogus model card (JSON) as a dict."""
    card: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return card


class RealBogusClassifier:
    """Probability that difference-imaging candidates are real, by an ONNX model.

    Parameters
    ----------
    path : str or pathlib.Path, optional
        The ONNX file; by default the shipped model.
    threads : int, optional
        onnxruntime intra-op threads; one by default (the pipeline runs a process per core).

    Attributes
    ----------
    threshold : float
        The model's alert threshold (probability): 95 % of the real candidates of its
        validation set score above it. NaN when the file does not record one.
    version : str
        The model's version.

    Raises
    ------
    ModelInputError
        When the file is missing, not loadable, or its inputs and output do not match the
        spec of `model_inputs`.
    """

    def __init__(self, path: str | Path | None = None, *, threads: int = 1) -> None:
        self.path = Path(path) if path is not None else REALBOGUS_MODEL
        self._session = checked_session(
            self.path, threads, ModelInputError, inputs=_INPUTS, output=(_OUTPUT, ()),
            what="real/bogus model", spec="obsctl.classify.realbogus for the input spec",
        )  # fmt: skip
        meta = self._session.get_modelmeta().custom_metadata_map
        spec = meta.get("input_spec")
        if spec is not None and spec != str(INPUT_SPEC_VERSION):
            raise ModelInputError(
                f"{self.path}: trained on input spec {spec}, this code builds {INPUT_SPEC_VERSION}"
            )
        self.version: str = meta.get("version", "unknown")
        self.threshold: float = float(meta.get("threshold", "nan"))

    def score(
        self,
        cutouts: ArrayLike,
        candidates: NDArray[Any],
        fwhm_px: ArrayLike,
    ) -> NDArray[np.float32]:
        """Return the probability that each candidate is real.

        Parameters
        ----------
        cutouts : array_like
            ``(n, 3, 21, 21)`` float: `obsctl.frame.DifferenceOutcome.cutouts` (new-frame ADU).
        candidates : numpy.ndarray
            The matching rows (at least the fields ``score`` and ``snr`` of
            `obsctl.pipeline.difference.CANDIDATE_DTYPE`).
        fwhm_px : float or array_like
            The new frame's seeing FWHM (pixel), `obsctl.frame.Frame.fwhm_px`.

        Returns
        -------
        numpy.ndarray of float32
            ``(n,)`` probabilities in [0, 1].

        Raises
        ------
        ValueError
            When the cutouts are not ``(n, 3, 21, 21)`` or do not match the rows, or the FWHM
            is not finite and positive.
        """
        names = candidates.dtype.names or ()
        if "score" not in names or "snr" not in names:
            raise ValueError("candidates need the fields 'score' and 'snr'")
        planes, features = model_inputs(cutouts, candidates["score"], candidates["snr"], fwhm_px)
        if len(planes) == 0:
            return np.zeros(0, dtype=np.float32)
        out = self._session.run([_OUTPUT], {"cutouts": planes, "features": features})
        return np.asarray(out[0], dtype=np.float32).reshape(-1)
