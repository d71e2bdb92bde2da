"""The light-curve monitor on hand-made frames in a real exposure log (no rendering).

Each frame holds the same five stars (one monitored) with known fluxes and errors; the
frames' flags, grades and photometry flags are set to check how points are marked, and one
frame brightens the target to check the alert, its de-duplication and the new-source rule.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from obsctl.config import MonitoredTargetConfig, MonitoringConfig, SiteConfig
from obsctl.store.exposure_log import ExposureLog, ExposureRecord
from obsctl.timeseries.monitor import FLAG_BAD_FRAME, FLAG_PHOTOMETRY, LightCurveMonitor
from obsctl.timeseries.store import list_alerts, list_light_curves, load_light_curve

SITE = SiteConfig(name="x", latitude_deg=30.0, longitude_deg=-110.0)
RA = 150.0 + np.arange(5) * 0.003
DEC = np.full(5, 20.0)
FLUX = np.array([20000.0, 40000.0, 30000.0, 25000.0, 35000.0])  # ADU; star 0 is the target


def add_frame(db, k, *, scale=1.0, target_factor=1.0, frame_flags=None, phot_flags=0,
              extra=None, rng=None):  # fmt: skip
    mjd = 61000.2 + k * 0.01
    eid = db.add_exposure(
        ExposureRecord(night="n", file_path=f"f{k}.fits", image_type="LIGHT", exposure_s=10.0,
                       date_obs="x", mjd_start=mjd, mjd_mid=mjd, bin_x=1, bin_y=1,
                       target="FIELD", filter="V", ra_deg=150.0, dec_deg=20.0, airmass=1.1)
    )  # fmt: skip
    db.execute(
        "INSERT INTO frame_metrics (exposure_id, flags, limiting_mag) VALUES (?, ?, 18.0)",
        (eid, frame_flags),
    )
    flux = FLUX * scale * (1 + 0.002 * rng.normal(size=5))
    flux[0] *= target_factor
    rows = [(eid, 10.0 * i, 10.0, RA[i], DEC[i], flux[i], 0.002 * flux[i], 25 - 2.5 *
             math.log10(flux[i]), phot_flags if i == 0 else 0) for i in range(5)]  # fmt: skip
    if extra is not None:
        rows.append((eid, 99.0, 99.0, *extra, 500.0, 50.0, 17.0, 0))
    db.executemany(
        "INSERT INTO measurements (exposure_id, x, y, ra_deg, dec_deg, flux, flux_err, mag, "
        "flags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return eid


@pytest.fixture
def db(tmp_path):
    log_db = ExposureLog(tmp_path / "obsctl.sqlite")
    yield log_db
    log_db.close()


def monitor(db, **changes):
    target = MonitoredTargetConfig(name="T", ra_deg=RA[0], dec_deg=DEC[0], field="FIELD")
    config = MonitoringConfig(targets=(target,), new_source_radius_arcsec=60.0, **changes)
    return LightCurveMonitor(db, config, SITE)


def test_flagged_points_are_kept_and_marked(db) -> None:
    rng = np.random.default_rng(1)
    m = monitor(db)
    for k in range(6):
        add_frame(db, k, scale=1 - 0.05 * k, rng=rng)  # clouds: the ensemble takes them out
        assert m.process_exposure(k + 1) == []
    add_frame(db, 6, frame_flags="astrometry failed: no solution", rng=rng)
    add_frame(db, 7, phot_flags=0x0100, rng=rng)  # saturated
    m.process_exposure(7)
    m.process_exposure(8)
    points = load_light_curve(db, "T")
    assert len(points) == 8
    # The bad frame has no usable comparison star either: no magnitude, but the point stays.
    assert [p["flag"] for p in points] == [0] * 6 + [FLAG_BAD_FRAME | 4, FLAG_PHOTOMETRY]
    assert points[6]["mag"] is None and points[6]["inst_mag"] is not None
    assert points[6]["quality"] == "bad"
    good = np.array([p["mag"] for p in points[:6]])
    assert np.std(good) < 0.005  # 5 % per frame of cloud is gone
    stats = list_light_curves(db)
    assert stats[0]["target"] == "T" and stats[0]["n_points"] == 8
    assert stats[0]["chi2_red"] < 5


def test_quality_grade_column_is_used_when_present(db) -> None:
    columns = {r["name"] for r in db.query("PRAGMA table_info(frame_metrics)")}
    if "quality_grade" not in columns:  # the classifier's migration (issue 5) adds it
        db.execute("ALTER TABLE frame_metrics ADD COLUMN quality_grade TEXT")
    rng = np.random.default_rng(2)
    m = monitor(db)
    for k in range(6):
        add_frame(db, k, frame_flags="astrometry failed: x" if k == 1 else None, rng=rng)
    db.execute("UPDATE frame_metrics SET quality_grade = 'B'")
    db.execute("UPDATE frame_metrics SET quality_grade = 'D' WHERE exposure_id = 3")
    for k in range(6):
        m.process_exposure(k + 1)
    flags = [p["flag"] & ~4 for p in load_light_curve(db, "T")]
    assert flags == [0, 0, FLAG_BAD_FRAME, 0, 0, 0]  # the grade wins over the frame flags


def test_brightening_and_new_source_alert_once(db) -> None:
    rng = np.random.default_rng(3)
    m = monitor(db)
    for k in range(5):
        add_frame(db, k, rng=rng)
        m.process_exposure(k + 1)
    near = (RA[0] + 20 / 3600, DEC[0])
    add_frame(db, 5, target_factor=2.0, extra=near, rng=rng)
    alerts = m.process_exposure(6)
    assert sorted(a.kind for a in alerts) == ["brighten", "new_source"]
    bright = next(a for a in alerts if a.kind == "brighten")
    assert bright.delta_mag == pytest.approx(-2.5 * math.log10(2.0), abs=0.01)
    add_frame(db, 6, target_factor=2.0, extra=near, rng=rng)
    assert m.process_exposure(7) == []  # the same night, the same star: de-duplicated
    assert len(list_alerts(db)) == 2
    # Re-processing a frame replaces its points rather than adding to them.
    m.process_exposure(7)
    assert len(load_light_curve(db, "T")) == 7


def test_unmonitored_frames_and_auto_mode(db) -> None:
    rng = np.random.default_rng(4)
    add_frame(db, 0, rng=rng)
    db.execute("UPDATE exposures SET target = 'OTHER'")
    assert monitor(db).process_exposure(1) == []
    assert list_light_curves(db) == []
    auto = LightCurveMonitor(db, MonitoringConfig(auto=True), SITE)
    auto.process_exposure(1)
    assert [r["target"] for r in list_light_curves(db)] == ["OTHER"]
