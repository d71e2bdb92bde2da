"""An archive of small simulated nights, stored as the daemon stores frames (tests, benchmarks).

`write_config` writes the config of a simulated observatory whose pipeline reads the
simulators' synthetic sky as its reference catalog; `take_night` renders light frames of one
field with the camera simulator's renderer (the sky seen through the config's telescope and
camera, the mount a little off the field) and files them in the data directory's raw store
and exposure log (`obsctl.simulators.scenes.store_raw`). No masters are built: frames are
calibrated without them (and flagged so), which costs a reprocessing no less work.

The frames are small (256 x 256 by default) so that tens of them render and process in
seconds; a frame holds about a hundred stars, enough for the astrometry and the zero point.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from astropy.time import Time

from obsctl.config import Config, load_config
from obsctl.devices import CameraImage, MountStatus, PierSide
from obsctl.simulators import scenes
from obsctl.simulators.camera_model import sensor_model, sky_scene
from obsctl.simulators.render import render_exposure
from obsctl.simulators.sky import pixel_scale_arcsec
from obsctl.simulators.transients import asteroids_from_config, transients_from_config
from obsctl.simulators.variables import variables_from_config
from obsctl.store.datadir import DataDir
from obsctl.store.headers import FrameContext

__all__ = ["FIELD_DEC_DEG", "FIELD_RA_DEG", "take_night", "write_config"]

log = logging.getLogger(__name__)

FIELD_RA_DEG, FIELD_DEC_DEG = 150.0, 20.0
#: The first night's first frame; later nights start a day later each.
START = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
# The mount's idea of the pointing, a little off the field, for the WCS fit to find.
POINTING_ERROR_ARCSEC = (20.0, -15.0)  # east, north


def write_config(
    path: Path, data_dir: Path, *, size_px: int = 256, workers: int = 2, extra: str = ""
) -> Config:
    """Write a config of the simulated observatory to ``path`` and return it loaded.

    Parameters
    ----------
    path : pathlib.Path
        The TOML file to write.
    data_dir : pathlib.Path
        Its data directory.
    size_px : int
        The camera's width and height (pixel).
    workers : int
        ``[pipeline] workers``.
    extra : str
        TOML appended to the file (more sections, or ``[[simulator.sky.transients]]`` and
        the like, which go last).
    """
    path.write_text(
        f"""version = 1
[site]
name = "archive"
latitude_deg = 28.76
longitude_deg = -17.88
elevation_m = 2326
[telescope]
name = "archive scope"
focal_length_mm = 800
aperture_mm = 200
[data]
directory = "{data_dir}"
[devices.camera]
driver = "simulator"
[pipeline]
workers = {workers}
reference_catalog = "synthetic"
[simulator.camera]
width_px = {size_px}
height_px = {size_px}
[simulator.sky]
seed = 2024
star_density_per_deg2 = 20000.0
mag_bright = 9.0
mag_limit = 18.0
{extra}""",
        encoding="utf-8",
    )
    return load_config(path)


def take_night(
    config: Config,
    n_frames: int,
    *,
    night: int = 0,
    exposure_s: float = 30.0,
    filter_name: str = "V",
    target: str = "Archive field",
    seed: int = 1,
    offsets_arcsec: Sequence[tuple[float, float]] | None = None,
) -> list[int]:
    """Render ``n_frames`` light frames of the field into the data directory; return their ids.

    Parameters
    ----------
    config : Config
        From `write_config`: its data directory, camera, telescope and sky.
    n_frames : int
        Frames to take, two minutes apart.
    night : int
        Days after the first night (`START`).
    exposure_s : float
        Exposure time (s).
    filter_name, target : str
        The frames' filter and target.
    seed : int
        Seed of the first frame's noise; frame k has ``seed + k``.
    offsets_arcsec : sequence of (float, float), optional
        Frame k points this far (east, north; arcsec) off the field, as a dither does; the
        mount reports the same pointing for every frame. Default: no offsets.
    """
    assert config.simulator is not None
    camera = config.simulator.camera
    sensor = sensor_model(camera)
    scale = pixel_scale_arcsec(camera.pixel_size_um, config.telescope.focal_length_mm)
    sky = config.simulator.sky
    variables = variables_from_config(sky.variables)
    transients = transients_from_config(sky)
    asteroids = asteroids_from_config(sky.asteroids)
    data_dir = DataDir(config.data.directory)
    store = data_dir.raw_store()
    log_db = data_dir.open_log()
    east, north = POINTING_ERROR_ARCSEC
    mount = MountStatus(
        ra_deg=FIELD_RA_DEG + east / 3600.0 / math.cos(math.radians(FIELD_DEC_DEG)),
        dec_deg=FIELD_DEC_DEG + north / 3600.0,
        alt_deg=62.0,
        az_deg=190.0,
        slewing=False,
        tracking=True,
        at_park=False,
        pier_side=PierSide.WEST,
        sidereal_time_h=None,
    )
    paths: list[str] = []
    try:
        for k in range(n_frames):
            spec = scenes.exposure(
                sensor,
                exposure_s=exposure_s,
                electrons_per_adu=camera.electrons_per_adu,
                seed=seed + k,
            )
            start = START + timedelta(days=night, minutes=2 * k)
            d_east, d_north = (0.0, 0.0) if offsets_arcsec is None else offsets_arcsec[k]
            # The variables, transients and asteroids at the exposure's middle.
            seen = sky_scene(
                sky,
                ra_deg=FIELD_RA_DEG + d_east / 3600.0 / math.cos(math.radians(FIELD_DEC_DEG)),
                dec_deg=FIELD_DEC_DEG + d_north / 3600.0,
                rotation_deg=0.0,
                pixel_scale_arcsec=scale,
                band=filter_name,
                time_mjd=Time(start).mjd + exposure_s / 2.0 / 86400.0,
                variables=variables,
                transients=transients,
                asteroids=asteroids,
            )
            # The camera's 16-bit ADC: what the simulated camera hands over.
            image = render_exposure(sensor, spec, seen).image.astype(np.uint16, copy=False)
            meta = scenes.image_metadata(
                spec, sensor, start_time=start, sensor_name=camera.sensor_name,
                camera_name=camera.name,
            )  # fmt: skip
            ctx = FrameContext(
                image=CameraImage(data=image, metadata=meta),
                image_type="LIGHT",
                site=config.site,
                telescope=config.telescope,
                frame_number=k + 1,
                start_time=start,
                target=target,
                filter_name=filter_name,
                mount=mount,
            )
            path, _ = scenes.store_raw(store, log_db, ctx)
            paths.append(data_dir.relative(path))
        ids = {r["file_path"]: int(r["id"]) for r in log_db.exposures(image_type="LIGHT")}
    finally:
        log_db.close()
    return [ids[p] for p in paths]
