"""The `SepPhotometry` stage: sources and image-quality metrics, measured with SEP.

The stage is thin: the numeric work is in `obsctl.processing.photometry` and
`obsctl.processing.metrics`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from obsctl.errors import StageError
from obsctl.frame import Frame
from obsctl.pipeline.detector import (
    bayer_pattern,
    header_gain,
    header_read_noise,
    header_saturation,
)
from obsctl.processing.colour import (
    demosaic,
    forced_aperture_flux,
    green_plane_mask,
    pattern_from_pixels,
)
from obsctl.processing.metrics import frame_metrics
from obsctl.processing.photometry import BackgroundInfo, measure_sources
from obsctl.processing.psf import psf_photometry
from obsctl.processing.tables import with_columns
from obsctl.store.headers import pixel_scale_from_header

__all__ = ["SepPhotometry", "resolve_gain_e_per_adu"]

log = logging.getLogger(__name__)


def resolve_gain_e_per_adu(frame: Frame, override: float | None, *, stage: str) -> float:
    """Return a frame's conversion gain (electrons per ADU) for a stage that needs one.

    `SepPhotometry` decides the gain once per frame (`obsctl.pipeline.detector.header_gain`)
    and stores it in ``frame.gain_e_per_adu``; a later stage run without it reads the same
    cards, but refuses to assume one.

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
        If no configured value or header card gives a usable gain.
    """
    gain = header_gain(frame.header, override)
    if gain.assumed:
        raise StageError(gain.note, stage=stage, frame_id=frame.exposure_id)
    return gain.value


@dataclass(frozen=True, kw_only=True)
class SepPhotometry:
    """Pipeline stage: detect and measure sources with SEP; image-quality metrics.

    Stores the `obsctl.processing.photometry.measure_sources` catalog in ``frame.sources``
    and adds the `obsctl.processing.metrics.frame_metrics` values to ``frame.metrics``. For
    the later stages (`OnnxClassify`, `ZeroPoint`) it sets the frame's ``background_adu``,
    ``background_rms_adu``, ``fwhm_px`` (the FWHM the apertures were scaled with),
    ``aperture_radius_px`` (the main aperture) and ``gain_e_per_adu``.

    The gain, read noise and saturation level come from the header where it gives them
    (`obsctl.pipeline.detector`); a frame with no gain at all is measured with 1 e-/ADU and
    flagged, its errors approximate. The header records what was used (``PHGAIN``,
    ``PHGAINSR``, ``PHRDNOIS``). A raw colour frame (`obsctl.pipeline.detector.bayer_pattern`)
    is demosaiced (`obsctl.processing.colour.demosaic`): the green plane replaces the image
    for detection, measurement and every later stage, and the red and blue planes are
    measured in the main aperture at the same positions (``flux_red``, ``flux_blue`` with
    ``_err``); the header's ``DEMOSAIC`` names the pattern and the plane.

    Parameters
    ----------
    read_noise_e : float
        Read noise (electrons RMS), a floor for the background noise, when the header has none.
    saturation_adu : float
        Saturation level of the calibrated image (ADU); a lower ``SATURATE`` card wins.
    gain_e_per_adu : float, optional
        Conversion gain (electrons per ADU), which wins over the header.
    pixel_scale_arcsec : float, optional
        Binned pixel scale; by default from the header (see `pixel_scale_from_header`).
    detect_sigma, minarea, back_size, aperture_fwhm, main_aperture
        Passed to `obsctl.processing.photometry.measure_sources`.
    psf_fit : {"all", "blended", "off"}, optional
        PSF-fitted fluxes (`obsctl.processing.psf.psf_photometry`: ``flux_psf``,
        ``flux_psf_err``, ``x_psf``, ``y_psf``, ``psf_chi2``, ``psf_group``,
        ``psf_group_size``, ``psf_flags``) for every source, for the members of blended
        groups only (the default; others get NaN), or none. A failed PSF fit flags the frame
        and leaves the aperture fluxes.
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

    psf_fit: Literal["all", "blended", "off"] = "blended"

    def __post_init__(self) -> None:
        # A tuple: a caller's list could change under the stage, and a frozen stage hashes.
        object.__setattr__(self, "aperture_fwhm", tuple(self.aperture_fwhm))

    def _psf_fluxes(
        self,
        data: NDArray[Any],
        catalog: NDArray[Any],
        info: BackgroundInfo,
        gain_e_per_adu: float,
        saturation_adu: float,
        mask: NDArray[np.bool_] | None,
    ) -> tuple[NDArray[Any], str | None]:
        """Return the catalog with PSF-fitted fluxes, and a flag when the fit failed."""
        try:
            result = psf_photometry(
                data,
                catalog,
                gain_e_per_adu=gain_e_per_adu,
                rms_adu=info.rms_adu,
                mask=mask,
                saturation_adu=saturation_adu,
                fwhm_px=info.fwhm_px if math.isfinite(info.fwhm_px) else None,
                fit="all" if self.psf_fit == "all" else "blended",
            )
        except (ValueError, np.linalg.LinAlgError) as exc:  # the aperture fluxes stand alone
            return catalog, f"photometry: PSF fit failed: {exc}"
        table = result.table
        return with_columns(catalog, {name: table[name] for name in table.dtype.names or ()}), None

    def process(self, frame: Frame) -> Frame:
        """Return the frame with its source catalog and image-quality metrics.

        Raises
        ------
        StageError
            If the image cannot be measured (not 2-D, no noise).
        """
        gain = header_gain(frame.header, self.gain_e_per_adu)
        read_noise = header_read_noise(frame.header, self.read_noise_e)
        saturation = header_saturation(frame.header, self.saturation_adu)
        header = frame.header.copy()
        flags = frame.flags
        if gain.note:
            flags = (*flags, f"photometry: {gain.note}" + ("; errors approximate" * gain.assumed))
        data, mask, planes = frame.data, frame.mask, None
        pattern = bayer_pattern(frame.header)
        if pattern is not None:
            checked = pattern_from_pixels(frame.data, pattern)
            if checked != pattern:
                flags = (*flags, f"photometry: Bayer {pattern} of the header is {checked} here")
                pattern = checked
            planes = demosaic(np.asarray(frame.data), pattern)
            data = planes["G"]
            mask = None if frame.mask is None else green_plane_mask(frame.mask, pattern)
            header["DEMOSAIC"] = (pattern, "Bayer mosaic; image is its green plane")
        try:
            catalog, info = measure_sources(
                data,
                gain_e_per_adu=gain.value,
                read_noise_e=read_noise.value,
                saturation_adu=saturation.value,
                mask=mask,
                detect_sigma=self.detect_sigma,
                minarea=self.minarea,
                back_size=self.back_size,
                aperture_fwhm=self.aperture_fwhm,
                main_aperture=self.main_aperture,
            )
            if self.psf_fit != "off":
                catalog, psf_flag = self._psf_fluxes(
                    data, catalog, info, gain.value, saturation.value, mask
                )
                flags = flags if psf_flag is None else (*flags, psf_flag)
            if planes is not None:
                radius = info.aperture_radii_px[info.main_aperture]
                columns = {}
                for colour, name in (("R", "red"), ("B", "blue")):
                    flux, err = forced_aperture_flux(
                        planes[colour],
                        catalog["x"],
                        catalog["y"],
                        radius_px=radius,
                        gain_e_per_adu=gain.value,
                        mask=mask,
                        back_size=self.back_size,
                    )
                    columns[f"flux_{name}"], columns[f"flux_{name}_err"] = flux, err
                catalog = with_columns(catalog, columns)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise StageError(str(exc), stage=self.name, frame_id=frame.exposure_id) from exc
        scale = self.pixel_scale_arcsec or pixel_scale_from_header(frame.header)
        metrics = frame_metrics(catalog, info, pixel_scale_arcsec=scale)
        header["NSOURCES"] = (len(catalog), "sources detected")
        header["PHGAIN"] = (gain.value, "[e-/ADU] gain used by the photometry")
        header["PHGAINSR"] = (gain.source, "where PHGAIN came from")
        header["PHRDNOIS"] = (read_noise.value, "[e-] read noise used by the photometry")
        log.debug(
            "frame %s: %d sources, FWHM %.2f px", frame.exposure_id, len(catalog), info.fwhm_px
        )
        return frame.with_stage(
            self.name,
            data=data,
            mask=mask,
            sources=catalog,
            header=header,
            flags=flags,
            metrics={**frame.metrics, **metrics, "gain_assumed": float(gain.assumed)},
            background_adu=float(info.level_adu),
            background_rms_adu=float(info.rms_adu),
            fwhm_px=float(info.fwhm_px),
            aperture_radius_px=float(info.aperture_radii_px[info.main_aperture]),
            gain_e_per_adu=gain.value,
        )
