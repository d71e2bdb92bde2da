"""The `SepPhotometry` stage: sources and image-quality metrics, measured with SEP.

The stage is thin: the numeric work is in `obsctl.processing.photometry` and
`obsctl.processing.metrics`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from obsctl.errors import StageError
from obsctl.frame import Frame
from obsctl.processing.metrics import frame_metrics
from obsctl.processing.photometry import (
    measure_sources,
)
from obsctl.store.headers import pixel_scale_from_header

__all__ = ["SepPhotometry", "resolve_gain_e_per_adu"]

log = logging.getLogger(__name__)

_ELECTRON_UNITS = {"ELECTRON", "ELECTRONS", "E-", "E"}


def resolve_gain_e_per_adu(frame: Frame, override: float | None, *, stage: str) -> float:
    """Return a frame's conversion gain (electrons per ADU).

    The one place the gain is decided: `override` when configured, else 1 for images in
    electrons (``BUNIT``), else the header's ``EGAIN``. `SepPhotometry` resolves it once per
    frame and stores it in ``frame.gain_e_per_adu`` for the later stages.

    Parameters
    ----------
    frame : Frame
        The frame; its header is read.
    override : float or None
        Configured gain (electrons per ADU), which wins.
    stage : str
        The stage asking, for the error.

    Returns
    -------
    float
        The gain (electrons per ADU).

    Raises
    ------
    StageError
        If there is no override, the image is not in electrons and ``EGAIN`` is missing,
        not a number or not positive.
    """
    if override is not None:
        return override
    unit = str(frame.header.get("BUNIT", "")).strip().upper()
    if unit in _ELECTRON_UNITS:
        return 1.0
    try:
        gain_e_per_adu = float(frame.header["EGAIN"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StageError(
            "no usable EGAIN (e-/ADU) in the header and none configured",
            stage=stage,
            frame_id=frame.exposure_id,
        ) from exc
    if not gain_e_per_adu > 0.0:
        raise StageError(
            f"EGAIN {gain_e_per_adu} is not positive", stage=stage, frame_id=frame.exposure_id
        )
    return gain_e_per_adu


@dataclass(frozen=True, kw_only=True)
class SepPhotometry:
    """Pipeline stage: detect and measure sources with SEP; image-quality metrics.

    Stores the `obsctl.processing.photometry.measure_sources` catalog in ``frame.sources``
    and adds the `obsctl.processing.metrics.frame_metrics` values to ``frame.metrics``. For
    the later stages (`OnnxClassify`, `ZeroPoint`) it sets the frame's ``background_adu``,
    ``background_rms_adu``, ``fwhm_px`` (the FWHM the apertures were scaled with),
    ``aperture_radius_px`` (the main aperture) and ``gain_e_per_adu`` (see
    `resolve_gain_e_per_adu`).

    Parameters
    ----------
    read_noise_e : float
        Read noise (electrons RMS), a floor for the background noise.
    saturation_adu : float
        Saturation level of the calibrated image (ADU).
    gain_e_per_adu : float, optional
        Conversion gain (electrons per ADU); by default 1 for images in electrons
        (``BUNIT``), else ``EGAIN``.
    pixel_scale_arcsec : float, optional
        Binned pixel scale; by default from the header (see `pixel_scale_from_header`).
    detect_sigma, minarea, back_size, aperture_fwhm, main_aperture
        Passed to `obsctl.processing.photometry.measure_sources`.
    """

    name: ClassVar[str] = "photometry"

    read_noise_e: float
    saturation_adu: float
    gain_e_per_adu: float | None = None
    pixel_scale_arcsec: float | None = None
    detect_sigma: float = 3.0
    minarea: int = 5
    back_size: int = 64
    aperture_fwhm: Sequence[float] = (1.0, 1.5, 2.0, 3.0)
    main_aperture: int = 1

    def __post_init__(self) -> None:
        # A tuple: a caller's list could change under the stage, and a frozen stage hashes.
        object.__setattr__(self, "aperture_fwhm", tuple(self.aperture_fwhm))

    def process(self, frame: Frame) -> Frame:
        """Return the frame with its source catalog and image-quality metrics.

        Raises
        ------
        StageError
            If the gain is unknown or the image cannot be measured (not 2-D, no noise).
        """
        gain_e_per_adu = resolve_gain_e_per_adu(frame, self.gain_e_per_adu, stage=self.name)
        try:
            catalog, info = measure_sources(
                frame.data,
                gain_e_per_adu=gain_e_per_adu,
                read_noise_e=self.read_noise_e,
                saturation_adu=self.saturation_adu,
                mask=frame.mask,
                detect_sigma=self.detect_sigma,
                minarea=self.minarea,
                back_size=self.back_size,
                aperture_fwhm=self.aperture_fwhm,
                main_aperture=self.main_aperture,
            )
        except (ValueError, TypeError, RuntimeError) as exc:
            raise StageError(str(exc), stage=self.name, frame_id=frame.exposure_id) from exc
        scale = self.pixel_scale_arcsec or pixel_scale_from_header(frame.header)
        metrics = frame_metrics(catalog, info, pixel_scale_arcsec=scale)
        header = frame.header.copy()
        if math.isfinite(metrics["fwhm_px"]):
            header["FWHM"] = (round(metrics["fwhm_px"], 3), "[px] median stellar FWHM")
        header["NSOURCES"] = (len(catalog), "sources detected")
        log.debug(
            "frame %s: %d sources, FWHM %.2f px", frame.exposure_id, len(catalog), info.fwhm_px
        )
        return frame.with_stage(
            self.name,
            sources=catalog,
            header=header,
            metrics={**frame.metrics, **metrics},
            background_adu=float(info.level_adu),
            background_rms_adu=float(info.rms_adu),
            fwhm_px=float(info.fwhm_px),
            aperture_radius_px=float(info.aperture_radii_px[info.main_aperture]),
            gain_e_per_adu=gain_e_per_adu,
        )
