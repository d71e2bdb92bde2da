"""Small synthetic exposures for tests and benchmarks, and their raw frames on disk.

`sensor`, `sky` and `exposure` return the `render_exposure` inputs with small, clean
defaults: a 256 x 256 sensor without dark current, hot pixels or cosmic rays, a V-band field
at 1 arcsec per pixel and 3 arcsec seeing, and a 60 s light exposure of the whole sensor. A
caller passes only the fields that are the point of its test or benchmark.

`image_metadata` describes a rendered exposure as the simulated camera does, and `store_raw`
files the frame in a data directory's raw store and exposure log the way the daemon does, for
tests and benchmarks that need raw frames without running a camera.

Examples
--------
>>> from obsctl.simulators import scenes
>>> from obsctl.simulators.render import render_exposure
>>> chip = scenes.sensor(width_px=128, height_px=128)
>>> result = render_exposure(chip, scenes.exposure(chip, seed=5), scenes.sky(catalog_seed=3))
>>> result.image.shape
(128, 128)
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from astropy.io import fits

from obsctl.devices import ImageMetadata
from obsctl.simulators.render import ExposureSpec, SensorModel, SkyScene
from obsctl.store.exposure_log import ExposureLog
from obsctl.store.headers import FrameContext
from obsctl.store.raw_store import RawStore, StoredFrame
from obsctl.store.writer import write_raw_frame

__all__ = ["exposure", "image_metadata", "sensor", "sky", "store_raw"]

log = logging.getLogger(__name__)

_SENSOR = SensorModel(
    width_px=256, height_px=256, pixel_size_um=3.76,
    full_well_e=50000.0, read_noise_e=3.0, bias_adu=500.0, adu_per_offset=1.5,
    dark_current_e_s=0.0, dark_doubling_c=6.0, hot_pixel_fraction=0.0, cosmic_rate_cm2_s=0.0,
    max_adu=65535, seed=1,
)  # fmt: skip

_SKY = SkyScene(
    ra_deg=150.0, dec_deg=20.0, rotation_deg=0.0, pixel_scale_arcsec=1.0,
    seeing_arcsec=3.0, moffat_beta=3.0, sky_e_s_px=5.0, zero_point_mag=22.0, band="V",
    catalog_seed=1, density_per_deg2=10000.0, mag_bright=10.0, mag_limit=18.0,
)  # fmt: skip


def sensor(**overrides: Any) -> SensorModel:
    """Return a small, clean sensor with some fields changed.

    Parameters
    ----------
    **overrides
        `SensorModel` fields to change. The defaults: 256 x 256 pixels of 3.76 um, full well
        50000 e-, read noise 3 e-, bias 500 ADU plus 1.5 ADU per offset step, no dark
        current (doubling every 6 degC), no hot pixels or cosmic rays, 16-bit ADC, seed 1.

    Returns
    -------
    SensorModel
        The sensor.
    """
    return replace(_SENSOR, **overrides)


def sky(**overrides: Any) -> SkyScene:
    """Return a small V-band star field with some fields changed.

    Parameters
    ----------
    **overrides
        `SkyScene` fields to change. The defaults: pointing RA 150 deg, Dec 20 deg, no
        rotation, 1 arcsec per pixel, 3 arcsec seeing (Moffat beta 3), sky 5 e-/s/px, zero
        point 22 mag, catalog seed 1 with 10000 stars per square degree from V 10 to 18, and
        no atmosphere: airmass 1 with no extinction, colour term, seeing growth or clouds
        (set ``airmass``, ``extinction_mag_per_airmass``, ``colour_term``,
        ``seeing_airmass_exponent`` and ``transmission``, or build the scene from a
        `SimulatedSkyConfig` with `obsctl.simulators.camera_model.sky_scene`).

    Returns
    -------
    SkyScene
        The scene.
    """
    return replace(_SKY, **overrides)


def exposure(chip: SensorModel, **overrides: Any) -> ExposureSpec:
    """Return a full-frame light exposure of ``chip`` with some fields changed.

    Parameters
    ----------
    chip : SensorModel
        The sensor read: it sets the frame size (unbinned) and the read noise (electrons).
    **overrides
        `ExposureSpec` fields to change. The other defaults: 60 s, shutter open, no binning,
        1 e-/ADU, offset 10, sensor at -10 degC, seed 1.

    Returns
    -------
    ExposureSpec
        The exposure.
    """
    fields: dict[str, Any] = {
        "exposure_s": 60.0, "light": True,
        "bin_x": 1, "bin_y": 1, "start_x": 0, "start_y": 0,
        "num_x": chip.width_px, "num_y": chip.height_px,
        "electrons_per_adu": 1.0, "offset": 10, "ccd_temperature_c": -10.0,
        "read_noise_e": chip.read_noise_e, "seed": 1,
    }  # fmt: skip
    return ExposureSpec(**(fields | overrides))


def image_metadata(
    spec: ExposureSpec,
    chip: SensorModel,
    *,
    start_time: datetime,
    set_temperature_c: float = -10.0,
    sensor_name: str = "SIM-CMOS",
    camera_name: str = "Simulated camera",
) -> ImageMetadata:
    """Return what the simulated camera reports about an exposure it rendered.

    Parameters
    ----------
    spec : ExposureSpec
        The exposure: its time, shutter, geometry, gain (e-/ADU), offset and temperature.
    chip : SensorModel
        The sensor, for its pixel size (micrometre) and Bayer pattern.
    start_time : datetime.datetime
        UTC start of the exposure.
    set_temperature_c : float
        Cooler set point (degC); the cooler is on.
    sensor_name, camera_name : str
        Names the camera reports.

    Returns
    -------
    ImageMetadata
        The metadata, at gain setting 0 in the ``Normal`` readout mode.
    """
    return ImageMetadata(
        exposure_s=spec.exposure_s, start_time=start_time, light=spec.light,
        bin_x=spec.bin_x, bin_y=spec.bin_y, start_x=spec.start_x, start_y=spec.start_y,
        gain=0, offset=spec.offset, electrons_per_adu=spec.electrons_per_adu,
        ccd_temperature_c=spec.ccd_temperature_c, set_temperature_c=set_temperature_c,
        cooler_on=True, pixel_size_x_um=chip.pixel_size_um, pixel_size_y_um=chip.pixel_size_um,
        readout_mode="Normal", sensor_name=sensor_name, camera_name=camera_name,
        bayer_pattern=chip.bayer_pattern,
    )  # fmt: skip


def store_raw(
    store: RawStore, log_db: ExposureLog | None, ctx: FrameContext
) -> tuple[Path, fits.Header]:
    """Write a frame to the raw store and log it, as the daemon's frame writer does.

    Synchronous (`obsctl.store.writer.write_raw_frame`): the frame number comes from
    ``ctx``, the camera is the device named ``camera``, and no sequence or event is recorded.

    Returns
    -------
    pathlib.Path
        The FITS file.
    astropy.io.fits.Header
        Its header.
    """
    written = write_raw_frame(
        store, log_db, StoredFrame(ctx, None, None, None, {"camera": "camera"})
    )
    return written.path, written.header
