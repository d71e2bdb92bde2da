"""The difference stage: frames of a field with a reference, a supernova appearing on a galaxy.

A small simulated field (`obsctl.simulators.archive`) with a supernova on one of the
simulated galaxies: five frames on the first night (before it, quiescent) make the
reference, then two frames ten days later (at its peak) are processed by the live pipeline's
code with the difference stage. Truth is the simulator's: the supernova's position (host plus
offset) and magnitude from its configuration.
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from obsctl.config import Config
from obsctl.frame import Frame
from obsctl.pipeline.difference import CUTOUT_PX
from obsctl.pipeline.reference import build_reference
from obsctl.simulators.archive import START, take_night, write_config
from obsctl.simulators.transients import Transient, transients_from_config
from obsctl.store.candidates import frame_candidates
from obsctl.store.datadir import DataDir
from obsctl.timeseries.matching import separation_arcsec

from ..pipeline_helpers import process_logged_frames

FIELD = "Archive field"
HOST_ID = 13974000000611  # a galaxy of R = 19.0, 60" east and 20" north of the field centre
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


def _config(root: Path) -> tuple[Config, Transient]:
    """The archive's observatory with the supernova, and a monitored target on it."""
    config = write_config(root / "obsctl.toml", root / "data", extra=SUPERNOVA)
    assert config.simulator is not None
    (sn,) = transients_from_config(config.simulator.sky)
    monitoring = f"""
[monitoring]
targets = [{{ name = "SN watch", ra_deg = {sn.ra_deg}, dec_deg = {sn.dec_deg}, field = "{FIELD}" }}]
"""
    return write_config(root / "obsctl.toml", root / "data", extra=monitoring + SUPERNOVA), sn


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory):
    config, sn = _config(tmp_path_factory.mktemp("difference"))
    take_night(config, 5, seed=3, offsets_arcsec=[(0, 0), (4, -3), (-3, 5), (6, 2), (-5, -4)])
    process_logged_frames(config)  # no reference yet: the stage leaves the frames alone
    data_dir = DataDir(config.data.directory)
    log_db = data_dir.open_log(existing=True)
    try:
        assert not log_db.query("SELECT * FROM difference_frames")
        reference = build_reference(data_dir, log_db, FIELD, "V")
    finally:
        log_db.close()
    new_ids = take_night(config, 2, night=PEAK_NIGHT, seed=50, offsets_arcsec=[(2, 1), (-4, 3)])
    process_logged_frames(config, only=new_ids)
    return config, sn, reference, new_ids


def test_supernova_on_its_galaxy_is_found_at_its_position_and_magnitude(night) -> None:
    config, sn, reference, new_ids = night
    data_dir = DataDir(config.data.directory)
    log_db = data_dir.open_log(existing=True)
    try:
        frames = {r["exposure_id"]: r for r in log_db.query("SELECT * FROM difference_frames")}
        candidates = {eid: frame_candidates(log_db, eid) for eid in new_ids}
    finally:
        log_db.close()
    assert sorted(frames) == sorted(new_ids)
    for eid in new_ids:
        assert frames[eid]["reference_id"] == reference["id"]
        rows = candidates[eid]
        detections = [r for r in rows if r["kind"] == "detection"]
        near = [
            r for r in detections
            if separation_arcsec(r["ra_deg"], r["dec_deg"], sn.ra_deg, sn.dec_deg) < 1.5
        ]  # fmt: skip
        assert len(near) == 1, detections
        (hit,) = near
        assert hit["score"] > 10
        # At its peak (within two minutes of it).
        assert hit["mag"] == pytest.approx(PEAK_MAG, abs=0.15)
        # The galaxy under it and the field's stars subtract away: the supernova is the
        # strongest candidate by far. The others (about 5 to 10 per frame at 5 to 10 sigma)
        # are the bogus a real/bogus classifier is for: the uncalibrated sensor's bad columns
        # and hot pixels, which move with the dithers, and cosmic rays.
        others = [abs(r["score"]) for r in detections if r is not hit]
        assert len(others) <= 12 and max(others, default=0) < 0.5 * hit["score"]
        # The monitored target is forced on the difference, with the supernova's flux.
        (forced,) = [r for r in rows if r["kind"] == "target"]
        assert forced["target"] == "SN watch"
        assert forced["flux"] == pytest.approx(hit["flux"], rel=0.1)


def test_candidates_keep_new_reference_and_difference_cutouts(night) -> None:
    config, sn, _, new_ids = night
    data_dir = DataDir(config.data.directory)
    log_db = data_dir.open_log(existing=True)
    try:
        (row,) = log_db.query(
            "SELECT path, detections FROM difference_frames WHERE exposure_id = ?", (new_ids[0],)
        )
        stored = frame_candidates(log_db, new_ids[0])
    finally:
        log_db.close()
    with fits.open(data_dir.path(row["path"])) as hdul:
        table = hdul["CANDIDATES"].data
        cube = hdul["CUTOUTS"].data
    assert cube.shape == (len(stored), 3, CUTOUT_PX, CUTOUT_PX) == (len(table), 3, 21, 21)
    i = int(np.argmin([separation_arcsec(r["ra_deg"], r["dec_deg"], sn.ra_deg, sn.dec_deg)
                       for r in stored]))  # fmt: skip
    new, ref, diff = cube[i]
    centre = CUTOUT_PX // 2
    core = (slice(centre - 2, centre + 3), slice(centre - 2, centre + 3))
    # The supernova is in the new frame and in the difference, not in the reference (only its
    # host, 19th magnitude, is there); the difference's core holds most of the new light.
    assert np.nansum(diff[core]) > 0.6 * (np.nansum(new[core]) - np.nansum(ref[core]))
    assert np.nansum(diff[core]) > 5 * abs(np.nansum(ref[core]) - np.nansum(ref[0:5, 0:5]))
    assert math.isfinite(float(table["flux"][i]))


def test_a_frame_without_reference_is_left_alone() -> None:
    from obsctl.pipeline.difference import Difference

    frame = Frame(data=np.zeros((8, 8), np.float32), header=fits.Header())
    assert Difference("/nonexistent/obsctl.sqlite", "/nonexistent").process(frame) is frame
