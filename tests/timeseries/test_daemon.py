"""The daemon adds processed frames to light curves and serves them on the API."""

from __future__ import annotations

import aiohttp
import numpy as np
import pytest

from obsctl.daemon import Daemon
from obsctl.simulators.sky import synthetic_catalog
from obsctl.store.exposure_log import ExposureLog
from obsctl.timeseries.monitor import LightCurveMonitor

from ..daemon_helpers import daemon_config, running_daemon, standard_sequence

SKY = {"star_density_per_deg2": 20000.0}
SIMULATOR = {"camera": {"width_px": 512, "height_px": 512, "readout_time_s": 0.5}, "sky": SKY}
PIPELINE = {"enabled": True, "workers": 1, "reference_catalog": "synthetic"}


def brightest_star_near(ra_deg: float, dec_deg: float) -> tuple[float, ...]:
    """A well-measured star of the synthetic sky near the field centre."""
    cat = synthetic_catalog(
        ra_deg, dec_deg, 0.03, seed=2024, density_per_deg2=20000.0, mag_bright=8.0,
        mag_limit=19.5,
    )  # fmt: skip
    ok = cat.mag_v > 12.5  # unsaturated in the simulator's 5 s frames
    k = int(cat.mag_v[ok].argmin())
    return tuple(float(c[ok][k]) for c in (cat.ra_deg, cat.dec_deg, cat.mag_v, cat.mag_r))


async def test_frames_become_light_curve_points_served_by_the_api(tmp_path) -> None:
    data = tmp_path / "data"
    sequence = standard_sequence(lights=4, exposure_s=5.0)
    ra, dec, mag_v, mag_r = brightest_star_near(sequence.target.ra_deg, sequence.target.dec_deg)
    monitoring = {
        "targets": [
            {"name": "STAR", "field": sequence.target.name, "ra_deg": ra, "dec_deg": dec},
            {"name": "ELSEWHERE", "ra_deg": 10.0, "dec_deg": -40.0},
        ]
    }
    config = daemon_config(data, pipeline=PIPELINE, simulator=SIMULATOR, monitoring=monitoring)
    await Daemon(config).run([sequence], until_idle=True, install_signal_handlers=False)

    db = ExposureLog(data / "obsctl.sqlite")
    try:
        # A crash between storing a frame and adding its points: the frame is found again.
        monitor = LightCurveMonitor(db, config.monitoring, config.site)
        assert monitor.pending_exposures() == []
        last = db.query("SELECT MAX(exposure_id) AS e FROM lc_points")[0]["e"]
        db.execute("DELETE FROM lc_points WHERE exposure_id = ?", (last,))
        assert monitor.pending_exposures() == [last]
        monitor.process_exposure(last)
        assert monitor.pending_exposures() == []
        lights = db.query("SELECT COUNT(*) AS n FROM exposures WHERE image_type = 'LIGHT'")
        rows = db.query(
            "SELECT p.* FROM lc_points p JOIN lc_objects o ON o.id = p.object_id "
            "WHERE o.target = 'STAR' ORDER BY p.mjd"
        )
    finally:
        db.close()
    assert len(rows) == lights[0]["n"] == 8
    assert {r["filter"] for r in rows} == {"V", "R"}
    # Each filter's light curve is on that filter's calibrated scale: the colour comes out.
    median = {}
    for band, true in (("V", mag_v), ("R", mag_r)):
        mags = [r["mag"] for r in rows if r["filter"] == band and r["mag"] is not None]
        median[band] = float(np.median(mags))
        assert len(mags) >= 3 and abs(median[band] - true) < 0.2, (band, mags, true)
    assert median["V"] - median["R"] == pytest.approx(mag_v - mag_r, abs=0.1)
    # BJD_TDB differs from the UTC date by TT-UTC (69 s) and the light travel (<= 8.4 min).
    offsets_s = [(r["bjd_tdb"] - 2400000.5 - r["mjd"]) * 86400 for r in rows]
    assert all(0.0 < abs(o) < 69.2 + 505 for o in offsets_s)
    assert all(r["airmass"] is not None and r["inst_mag"] is not None for r in rows)

    quiet = daemon_config(
        data, pipeline={**PIPELINE, "enabled": False}, simulator=SIMULATOR, monitoring=monitoring
    )
    async with running_daemon(quiet) as daemon, aiohttp.ClientSession() as http:
        async with http.get(f"{daemon.api_url}/api/lightcurves") as reply:
            listing = await reply.json()
        async with http.get(f"{daemon.api_url}/api/lightcurve", params={"target": "STAR"}) as r:
            assert r.status == 200
            curve = await r.json()
        async with http.get(f"{daemon.api_url}/api/lightcurve", params={"target": "NOPE"}) as r:
            assert r.status == 404
        async with http.get(f"{daemon.api_url}/api/lightcurve") as r:
            assert r.status == 400
        async with http.get(f"{daemon.api_url}/api/alerts") as reply:
            alerts = await reply.json()
    assert [t["target"] for t in listing] == ["STAR"] and listing[0]["n_points"] == 8
    assert curve["target"] == "STAR" and len(curve["points"]) == 8
    assert {"mjd", "mag", "mag_err", "filter", "flag", "bjd_tdb", "airmass", "exposure_id"} <= set(
        curve["points"][0]
    )
    assert isinstance(alerts, list)
