"""The half-flux radius of a focus frame's stars, with SEP; cosmic rays and hot pixels left out.

A focus run's frames are out of focus on purpose: far out, a star is a ring (the secondary
mirror's shadow in its middle), which the pipeline's photometry would deblend into pieces and
its Gaussian core fit would miss. So a focus frame is measured on its own terms: SEP detects
without deblending (a ring stays one object), the half-flux radius is taken within an
aperture that grows with the object's own size, and the source classifier (the pipeline's
model) leaves out what is not a star: cosmic rays and hot pixels are sharp and would pull the
median HFR down at any focus. Saturated stars (their cores flattened), objects at the edges
and pairs whose apertures overlap are left out as well.

Far from focus the classifier's view (11 px cutouts) holds only a piece of a ring; rings
measured on rendered frames stay "star" or "galaxy" up to about 6 px of blur radius
(`tests/acquisition/test_focus_stars.py`), so focus runs stay within that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import sep
from numpy.typing import ArrayLike, NDArray

from obsctl.classify.cutouts import model_inputs, trained_scale
from obsctl.classify.labels import CLASSES
from obsctl.classify.model import SourceClassifier
from obsctl.processing.photometry import FLAG_SATURATED

__all__ = ["FocusStars", "measure_focus_stars"]

# Detection threshold (background sigma): faint rings are noisy, and a focus run needs only
# a few good stars.
_DETECT_SIGMA = 5.0
_MIN_AREA_PX = 5
# The HFR aperture: this many isophotal second-moment radii (a ring of radius R has
# a = R / sqrt 2, so 3 a holds it; a Gaussian's 3 sigma holds 99 %), plus the pixel.
_APERTURE_A = 3.0
_MIN_APERTURE_PX = 3.0
# Not a star: the classes whose detections are left out of the median.
_NOT_STARS = frozenset({"cosmic_ray", "hot_pixel", "artifact"})
# A peak at this fraction of the saturation level or above: the core is flattened.
_SATURATED_FRACTION = 0.9
# Least signal-to-noise ratio of a star whose HFR is used.
_MIN_SNR = 20.0


@dataclass(frozen=True)
class FocusStars:
    """The stars of one focus frame and their median half-flux radius.

    Attributes
    ----------
    hfr_px : float
        Median half-flux radius of the stars used (pixel); NaN without any.
    n_stars : int
        Stars used.
    n_rejected : int
        Detections left out as cosmic rays, hot pixels or artifacts by the classifier.
    hfr_each_px : numpy.ndarray
        The HFR of every star used (pixel).
    """

    hfr_px: float
    n_stars: int
    n_rejected: int
    hfr_each_px: NDArray[np.float64]


def measure_focus_stars(
    image: ArrayLike,
    *,
    saturation_adu: float,
    classifier: SourceClassifier | None,
) -> FocusStars:
    """Measure the half-flux radius of a focus frame's stars.

    Parameters
    ----------
    image : array_like
        The raw or calibrated frame (ADU), shape ``(ny, nx)``; never modified.
    saturation_adu : float
        The level (ADU) at which the camera saturates; stars peaking at 90 % of it or more are
        left out.
    classifier : SourceClassifier or None
        The source classifier whose cosmic rays, hot pixels and artifacts are left out; None
        keeps every detection (tests of the measurement alone).

    Returns
    -------
    FocusStars
        The median HFR (NaN when no star qualifies) and the counts.
    """
    data = np.ascontiguousarray(image, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {data.shape}")
    background = sep.Background(data)
    sub = data - background.back()
    rms = max(float(background.globalrms), 1e-6)
    # No deblending (a contrast of 1): a defocused ring is one object, not a handful.
    objects = sep.extract(
        sub, _DETECT_SIGMA, err=rms, minarea=_MIN_AREA_PX, deblend_cont=1.0, segmentation_map=False
    )
    empty = FocusStars(math.nan, 0, 0, np.zeros(0))
    if len(objects) == 0:
        return empty
    x, y = objects["x"], objects["y"]
    rmax = np.maximum(_APERTURE_A * objects["a"] + 1.0, _MIN_APERTURE_PX)
    ny, nx = sub.shape
    keep = (x - rmax >= 0) & (y - rmax >= 0) & (x + rmax <= nx - 1) & (y + rmax <= ny - 1)
    level = objects["peak"] + background.back()[_pixel(y, ny), _pixel(x, nx)]
    saturated = level >= _SATURATED_FRACTION * saturation_adu
    keep &= ~saturated
    # Apertures that overlap would share light: both out.
    apart = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(apart, np.inf)
    keep &= np.all(apart > rmax[:, None] + rmax[None, :], axis=1)
    flux, flux_err, _ = sep.sum_circle(sub, x, y, rmax, err=rms, subpix=5)
    snr = flux / np.maximum(flux_err, 1e-12)
    keep &= np.isfinite(snr) & (snr >= _MIN_SNR)

    rejected = np.zeros(len(objects), dtype=bool)
    if classifier is not None and keep.any():
        rejected = _not_stars(data, objects, background.back(), rms, snr, saturated, classifier)
    use = keep & ~rejected
    if not use.any():
        return FocusStars(math.nan, 0, int(np.count_nonzero(keep & rejected)), np.zeros(0))
    hfr, flags = sep.flux_radius(sub, x[use], y[use], rmax[use], 0.5, subpix=5)
    hfr = np.asarray(hfr, dtype=np.float64)[(flags == 0) & (hfr > 0)]
    if hfr.size == 0:
        return empty
    return FocusStars(
        float(np.median(hfr)), int(hfr.size), int(np.count_nonzero(keep & rejected)), hfr
    )


def _pixel(v: NDArray[np.float64], size: int) -> NDArray[np.intp]:
    return np.clip(np.rint(v), 0, size - 1).astype(np.intp)


def _not_stars(
    data: NDArray[np.float32],
    objects: NDArray[Any],
    back: NDArray[np.float32],
    rms: float,
    snr: NDArray[np.float64],
    saturated: NDArray[np.bool_],
    classifier: SourceClassifier,
) -> NDArray[np.bool_]:
    """Return which detections the classifier calls cosmic rays, hot pixels or artifacts."""
    ny, nx = data.shape
    catalog = np.zeros(
        len(objects),
        dtype=[("x", "f8"), ("y", "f8"), ("background", "f4"), ("flags", "i4"), ("snr", "f8")],
    )
    catalog["x"], catalog["y"] = objects["x"], objects["y"]
    catalog["background"] = back[_pixel(objects["y"], ny), _pixel(objects["x"], nx)]
    catalog["flags"] = np.where(saturated, FLAG_SATURATED, 0)
    catalog["snr"] = snr
    # The frame's "FWHM" for the model: twice the median second-moment radius of the
    # detections (a Gaussian's FWHM is 2.35 sigma); a defocused frame is binned into the
    # model's range, a sharp cosmic ray stays sharp.
    fwhm = max(2.35 * float(np.median(objects["a"])), 1.0)
    binned, scaled, rms_in, fwhm_in, _ = trained_scale(data, catalog, rms_adu=rms, fwhm_px=fwhm)
    cutouts, features, _, _ = model_inputs(binned, scaled, rms_adu=rms_in, fwhm_px=fwhm_in)
    names = np.array(CLASSES)[classifier.predict(cutouts, features).argmax(axis=1)]
    return np.isin(names, sorted(_NOT_STARS))
