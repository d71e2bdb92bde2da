"""The `Frame`: one image and everything the pipeline learns about it.

Stages never mutate a frame; they return an updated copy (`dataclasses.replace`). Pixel data
is native-endian, C-contiguous float32 from the calibration stage on, which is what SEP needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

__all__ = ["DifferenceOutcome", "Frame"]


@dataclass(frozen=True, eq=False)
class DifferenceOutcome:
    """What difference imaging found on a frame (`obsctl.pipeline.difference`).

    Attributes
    ----------
    reference_id : int
        The reference image subtracted (``reference_images.id``).
    candidates : numpy.ndarray
        One row per candidate, then one per monitored target forced
        (`obsctl.pipeline.difference.CANDIDATE_DTYPE`).
    cutouts : numpy.ndarray of float32
        Per row, the new frame, the reference (in the new frame's units) and the difference
        around it, shape ``(n, 3, CUTOUT_PX, CUTOUT_PX)``; NaN beyond the frame.
    detections : int
        Rows that are detections (the first ones); the rest are forced targets.
    truncated : int
        Detections left out beyond the stage's ``max_candidates``.
    flux_ratio : float
        Reference flux per unit of new-frame flux.
    sky_noise : float
        Median background noise of a difference pixel (new-frame ADU).
    """

    reference_id: int
    candidates: NDArray[Any]
    cutouts: NDArray[np.float32]
    detections: int
    truncated: int
    flux_ratio: float
    sky_noise: float


@dataclass(frozen=True)
class Frame:
    """An image moving through the pipeline.

    Attributes
    ----------
    data : numpy.ndarray
        Pixels, shape ``(ny, nx)``; raw ADU before calibration, float32 electrons-or-ADU after
        (see ``header["BUNIT"]``).
    header : astropy.io.fits.Header
        The FITS header, updated by stages (calibration masters used, WCS, zero point).
    exposure_id : int or None
        The frame's row in the exposure log, None for files from elsewhere.
    path : str or None
        The raw file the frame came from.
    mask : numpy.ndarray or None
        Boolean bad-pixel mask (True = bad), same shape as ``data``.
    sources : numpy.ndarray or None
        The source catalog (a structured array), once detected.
    metrics : dict
        Frame-level measurements (FWHM, background, zero point...), the values stored in
        the database. Stages hand values to later stages through the typed fields below,
        not through this mapping.
    flags : tuple of str
        Warnings a stage raised without failing (for example ``"no master flat"``).
    provenance : tuple of str
        One entry per stage applied, in order.
    cosmic_mask : numpy.ndarray or None
        Pixels of detections the classifier called cosmic rays or hot pixels (True), same
        shape as ``data``; written with the calibrated frame. They are in ``mask`` too.
    background_adu : float or None
        Global background level (ADU per pixel) photometry measured; None before it.
    background_rms_adu : float or None
        Global background noise (ADU per pixel) photometry measured and thresholded with
        (floored at the read noise); None before it.
    fwhm_px : float or None
        The frame's PSF FWHM (pixel) photometry scaled its windows and apertures with; None
        before it. Unlike the ``fwhm_px`` metric (PSF stars only, recomputed by
        classification) it is never NaN.
    aperture_radius_px : float or None
        Radius (pixel) of the main aperture, the one reported as the catalog's ``flux``;
        None before photometry.
    gain_e_per_adu : float or None
        Conversion gain (electrons per ADU) of ``data``, resolved once by photometry
        (configured, else 1 for images in electrons, else ``EGAIN``); None before it.
    difference : DifferenceOutcome or None
        Difference imaging's candidates and cutouts; None when the stage did not run or the
        field has no reference image.
    """

    data: NDArray[Any]
    header: fits.Header
    exposure_id: int | None = None
    path: str | None = None
    mask: NDArray[np.bool_] | None = None
    sources: NDArray[Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    provenance: tuple[str, ...] = ()
    cosmic_mask: NDArray[np.bool_] | None = None
    background_adu: float | None = None
    background_rms_adu: float | None = None
    fwhm_px: float | None = None
    aperture_radius_px: float | None = None
    gain_e_per_adu: float | None = None
    difference: DifferenceOutcome | None = None

    def with_stage(self, stage: str, **changes: Any) -> Frame:
        """Return a copy with ``changes`` applied and ``stage`` appended to the provenance."""
        return replace(self, provenance=(*self.provenance, stage), **changes)

    def flagged(self, flag: str) -> Frame:
        """Return a copy with one more warning flag."""
        return replace(self, flags=(*self.flags, flag))
