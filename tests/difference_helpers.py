"""A small field for difference imaging: a supernova appearing on a galaxy, an asteroid.

A small simulated field (`obsctl.simulators.archive`) with a supernova on one of the
simulated galaxies: five frames on the first night (before it, quiescent) make the
reference, then four frames ten days later (at its peak, an asteroid crossing) are processed
by the live pipeline's code with the difference stage (`difference_night`). Truth is the
simulator's: the supernova's position (host plus offset) and magnitude, the asteroid's
motion, from their configuration.
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

from astropy.time import Time

from obsctl.config import Config
from obsctl.pipeline.reference import build_reference
from obsctl.simulators.archive import START, take_night, write_config
from obsctl.simulators.transients import Transient, transients_from_config
from obsctl.store.datadir import DataDir

from .pipeline_helpers import process_logged_frames

FIELD = "Archive field"
# The sky has more galaxies than the archive's default (3000 a square degree to R = 21):
# enough that one of R = 17.0 (half-light radius 2.8") lies 50" east and 46" north of the
# field's centre, the supernova's host.
GALAXIES = "galaxy_density_r21_per_deg2 = 10000.0\n"
HOST_ID = 13974000008792
PEAK_MAG = 16.5
PEAK_NIGHT = 10
# The supernova peaks at the middle of the second frame of the night ten days on.
PEAK_MJD = Time(START + timedelta(days=PEAK_NIGHT, minutes=2, seconds=15)).mjd
SUPERNOVA = f"""
[[simulator.sky.transients]]
name = "SN 2026test"
kind = "supernova"
host_id = {HOST_ID}
offset_arcsec = 1.5
offset_pa_deg = 45.0
mag_v = {PEAK_MAG}
epoch_mjd = {PEAK_MJD}
rise_d = 2.0
fade_d = 30.0
"""


# An asteroid crossing the field during the new frames (none of the reference's): 5 arcsec
# per minute towards the north-east, 60" west and 40" south of the centre at the first one.
ASTEROID_MJD = Time(START + timedelta(days=PEAK_NIGHT, seconds=15)).mjd
ASTEROID = f"""
[[simulator.sky.asteroids]]
name = "rock"
ra_deg = {150.0 + 60.0 / 3600.0 / math.cos(math.radians(20.0))}
dec_deg = {20.0 - 40.0 / 3600.0}
epoch_mjd = {ASTEROID_MJD}
rate_arcsec_min = 5.0
pa_deg = 45.0
mag_v = 15.5
"""
NEW_OFFSETS = [(2, 1), (-4, 3), (3, -2), (-1, -4)]


def _config(root: Path) -> tuple[Config, Transient]:
    """The archive's observatory with the supernova, and a monitored target on it."""
    config = write_config(
        root / "obsctl.toml", root / "data", extra=GALAXIES + SUPERNOVA + ASTEROID
    )
    assert config.simulator is not None
    (sn,) = transients_from_config(config.simulator.sky)
    monitoring = f"""
[monitoring]
targets = [{{ name = "SN watch", ra_deg = {sn.ra_deg}, dec_deg = {sn.dec_deg}, field = "{FIELD}" }}]
"""
    extra = GALAXIES + monitoring + SUPERNOVA + ASTEROID
    return write_config(root / "obsctl.toml", root / "data", extra=extra), sn


def difference_night(root: Path) -> tuple[Config, Transient, dict[str, Any], list[int]]:
    """Take and process the field's nights under ``root``: the reference, then the new frames.

    Returns
    -------
    tuple
        The config, the supernova (the simulator's), the reference's row and the new
        frames' exposure ids (differences stored, the transient watch not run).
    """
    config, sn = _config(root)
    take_night(config, 5, seed=3, offsets_arcsec=[(0, 0), (4, -3), (-3, 5), (6, 2), (-5, -4)])
    process_logged_frames(config)  # no reference yet: the stage leaves the frames alone
    data_dir = DataDir(config.data.directory)
    log_db = data_dir.open_log(existing=True)
    try:
        assert not log_db.query("SELECT * FROM difference_frames")
        reference = build_reference(data_dir, log_db, FIELD, "V")
    finally:
        log_db.close()
    new_ids = take_night(config, 4, night=PEAK_NIGHT, seed=50, offsets_arcsec=NEW_OFFSETS)
    process_logged_frames(config, only=new_ids)
    return config, sn, reference, new_ids
