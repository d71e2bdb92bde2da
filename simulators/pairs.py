"""Reference and new frames of one field, for difference-imaging tests and benchmarks.

`render_pair` renders a deep reference and a new frame of the same field with the camera
simulator (`obsctl.simulators.render.render_exposure`): different seeing, exposure and
pointing (a shift and an optional rotation), with point transients present only in the new
frame (`obsctl.simulators.variables.VariableStar` of kind ``"constant"``). Both frames are
calibrated with the simulator's own truth (bias, column bias, flat field and sky removed), so
they are background-subtracted float32 images in electrons (gain 1), as the pipeline's
calibration and photometry stages hand them on.

The transients' truth (position in the new frame, flux in electrons) is read from the new
frame's star truth table, never from code under test.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.wcs import WCS
from numpy.typing import NDArray

from obsctl.simulators import scenes
from obsctl.simulators.render import (
    RenderResult,
    SensorModel,
    column_bias,
    flat_response,
    render_exposure,
    scene_wcs,
)
from obsctl.simulators.variables import VARIABLE_ID_BASE, VariableStar

__all__ = ["FramePair", "calibrated", "render_pair"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FramePair:
    """A rendered reference and new frame with their truth.

    Attributes
    ----------
    new, reference : numpy.ndarray of float32
        Calibrated, sky-subtracted frames (electrons per pixel).
    new_wcs, reference_wcs : astropy.wcs.WCS
        Their exact WCS.
    new_truth, reference_truth : RenderResult
        The renders (star and galaxy truth tables, sky conditions).
    transients : numpy.ndarray
        Rows of the new frame's star truth for the injected transients (``x``, ``y`` in the
        new frame, ``flux_e`` in electrons), in the order of `transient_mags`.
    sigma_new, sigma_ref : float
        Background noise (electrons per pixel): sqrt(sky + read noise squared).
    flux_ratio : float
        Reference electrons per new-frame electron (the exposure-time ratio).
    """

    new: NDArray[np.float32]
    reference: NDArray[np.float32]
    new_wcs: WCS
    reference_wcs: WCS
    new_truth: RenderResult
    reference_truth: RenderResult
    transients: NDArray[np.void]
    sigma_new: float
    sigma_ref: float
    flux_ratio: float


def calibrated(
    result: RenderResult, sensor: SensorModel, *, exposure_s: float, sky_e_s_px: float
) -> NDArray[np.float32]:
    """Return a rendered frame (gain 1, offset 10) calibrated and sky-subtracted (electrons)."""
    height, width = result.image.shape
    level = np.float32(sensor.bias_adu + 10 * sensor.adu_per_offset)
    flat = flat_response(sensor, x0=0, y0=0, width=width, height=height)
    data = (result.image.astype(np.float32) - level - column_bias(sensor)[None, :width]) / flat
    data -= np.float32(sky_e_s_px * exposure_s)
    return np.ascontiguousarray(data, dtype=np.float32)


def render_pair(
    *,
    size_px: int = 256,
    seeing_new_arcsec: float = 3.5,
    seeing_ref_arcsec: float = 2.5,
    exposure_new_s: float = 60.0,
    exposure_ref_s: float = 240.0,
    shift_px: tuple[float, float] = (3.3, -2.7),
    rotation_deg: float = 0.0,
    transient_mags: tuple[float, ...] = (),
    transient_xy: tuple[tuple[float, float], ...] = (),
    seed: int = 1,
    **sky_overrides: Any,
) -> FramePair:
    """Render a reference and a new frame of one field, transients only in the new one.

    Parameters
    ----------
    size_px : int, optional
        Sensor width and height (pixel).
    seeing_new_arcsec, seeing_ref_arcsec : float, optional
        Seeing FWHM of each frame (arcsec; the default scale is 1 arcsec per pixel).
    exposure_new_s, exposure_ref_s : float, optional
        Exposure times (s); the reference is deeper by default.
    shift_px : tuple of float, optional
        Pointing offset of the new frame from the reference, ``(dx, dy)`` in pixels: a star
        at reference pixel ``(x, y)`` falls at about ``(x - dx, y - dy)`` in the new frame.
    rotation_deg : float, optional
        Rotation of the new frame (deg, as ``CROTA2``); the reference has none.
    transient_mags : tuple of float, optional
        V magnitudes of the transients.
    transient_xy : tuple of tuple of float, optional
        Their positions in the new frame (pixel), one per magnitude.
    seed : int, optional
        Seed of the catalog and the noise.
    **sky_overrides
        Further `SkyScene` fields for both frames (`obsctl.simulators.scenes.sky`), e.g.
        ``galaxy_density_r21_per_deg2`` or ``mag_bright`` (14.5 by default, so that no star
        saturates the default reference).

    Returns
    -------
    FramePair
        The frames, WCS and truth.
    """
    if len(transient_mags) != len(transient_xy):
        raise ValueError("give one position per transient magnitude")
    chip = scenes.sensor(width_px=size_px, height_px=size_px)
    # V 14.5 stays under the full well in the default reference (240 s, 2.5" seeing).
    fields: dict[str, Any] = {"catalog_seed": seed, "mag_bright": 14.5} | sky_overrides
    ref_scene = scenes.sky(seeing_arcsec=seeing_ref_arcsec, **fields)
    ref_wcs = scene_wcs(ref_scene, chip)
    # The new pointing: the reference's sky position of new-frame centre + shift.
    centre = (size_px - 1) / 2.0
    ra, dec = ref_wcs.pixel_to_world_values(centre + shift_px[0], centre + shift_px[1])
    new_scene = scenes.sky(
        seeing_arcsec=seeing_new_arcsec,
        ra_deg=float(ra),
        dec_deg=float(dec),
        rotation_deg=rotation_deg,
        **fields,
    )
    new_wcs = scene_wcs(new_scene, chip)
    variables = []
    for i, (mag, (x, y)) in enumerate(zip(transient_mags, transient_xy, strict=True)):
        t_ra, t_dec = new_wcs.pixel_to_world_values(x, y)
        variables.append(
            VariableStar(
                name=f"transient-{i}",
                kind="constant",
                ra_deg=float(t_ra),
                dec_deg=float(t_dec),
                mag_v=float(mag),
                b_v=0.0,
            )
        )
    new_scene = scenes.sky(
        seeing_arcsec=seeing_new_arcsec,
        ra_deg=float(ra),
        dec_deg=float(dec),
        rotation_deg=rotation_deg,
        variables=tuple(variables),
        **fields,
    )
    new_result = render_exposure(
        chip, scenes.exposure(chip, exposure_s=exposure_new_s, seed=seed + 1), new_scene
    )
    ref_result = render_exposure(
        chip, scenes.exposure(chip, exposure_s=exposure_ref_s, seed=seed + 2), ref_scene
    )
    ids = VARIABLE_ID_BASE - np.arange(len(variables))
    order = [int(np.flatnonzero(new_result.stars["id"] == i)[0]) for i in ids]
    rn2 = chip.read_noise_e**2
    return FramePair(
        new=calibrated(
            new_result, chip, exposure_s=exposure_new_s, sky_e_s_px=new_scene.sky_e_s_px
        ),
        reference=calibrated(
            ref_result, chip, exposure_s=exposure_ref_s, sky_e_s_px=ref_scene.sky_e_s_px
        ),
        new_wcs=new_wcs,
        reference_wcs=ref_wcs,
        new_truth=new_result,
        reference_truth=ref_result,
        transients=new_result.stars[order],
        sigma_new=math.sqrt(new_scene.sky_e_s_px * exposure_new_s + rn2),
        sigma_ref=math.sqrt(ref_scene.sky_e_s_px * exposure_ref_s + rn2),
        flux_ratio=exposure_ref_s / exposure_new_s,
    )
