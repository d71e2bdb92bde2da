"""The monitor classifies its targets' light curves with the shipped model and alerts on a class.

Light curves of simulated variables (`obsctl.simulators.variables`, the truth) are stored as
the monitor stores points; `LightCurveMonitor.update_stats` searches the period and computes
the features, the shipped classifier (real ONNX files) gives the class. A confident class
held for three classifications is alerted once; a new one again, naming the old one; a
constant star is never alerted.
"""

from __future__ import annotations

import numpy as np
import pytest

from obsctl.config import MonitoredTargetConfig, MonitoringConfig, SiteConfig
from obsctl.simulators.variables import VariableStar
from obsctl.store.exposure_log import ExposureLog
from obsctl.timeseries.monitor import LightCurveMonitor
from obsctl.timeseries.store import FramePoint, SolvedPoint, list_light_curves

SITE = SiteConfig(name="sim", latitude_deg=31.96, longitude_deg=-111.6, elevation_m=2096)
NOISE = 0.01


def nightly_times(rng: np.random.Generator, nights: int = 50, per_night: int = 4) -> np.ndarray:
    """A few points a night within a 6 h window, a fifth of the nights lost (MJD)."""
    kept = [n for n in range(nights) if rng.random() > 0.2]
    return np.concatenate(
        [61000.0 + n + 0.1 + np.sort(rng.uniform(0.0, 0.25, per_night)) for n in kept]
    )


def store_curve(monitor: LightCurveMonitor, star: VariableStar, seed: int, first_id: int) -> int:
    """Replace the target's points by the star's light curve; return the last exposure id."""
    rng = np.random.default_rng(seed)
    t = nightly_times(rng)
    mag = star.mag("V", t) + rng.normal(0.0, NOISE, t.size)
    obj = monitor.store.target_object_id("VAR")
    assert obj is not None
    monitor.db.execute("DELETE FROM lc_points WHERE object_id = ?", (obj,))
    for k, (tk, mk) in enumerate(zip(t, mag, strict=True)):
        eid = first_id + k
        monitor.store.replace_points(
            eid, [FramePoint(obj, float(tk), eid, float(tk) + 2400000.5, "V", 1.2, float(mk),
                             NOISE, "good", 0)]
        )  # fmt: skip
        monitor.store.set_differential_mags([SolvedPoint(obj, eid, float(mk), NOISE, 0)], flag=4)
    return first_id + t.size - 1


def classify(monitor: LightCurveMonitor, exposure_id: int) -> list:
    features = monitor.update_stats("VAR")
    assert features is not None
    alerts = monitor._classify({"VAR": features}, "FIELD", exposure_id, 61050.0)
    return [a for a in alerts if monitor._store_alert(a)]


@pytest.fixture
def monitor(tmp_path):
    db = ExposureLog(tmp_path / "obsctl.sqlite")
    config = MonitoringConfig(
        targets=(MonitoredTargetConfig(name="VAR", field="FIELD", ra_deg=150.0, dec_deg=20.0),)
    )
    monitor = LightCurveMonitor(db, config, SITE)
    monitor.store.add_target_object("FIELD", "VAR", 150.0, 20.0)
    yield monitor
    db.close()


def test_a_confident_class_is_stored_and_alerted_once_then_a_new_one_again(monitor) -> None:
    rrab = VariableStar("VAR", "rrlyrae", 150.0, 20.0, 13.0, period_d=0.57, epoch_mjd=61000.1,
                        amplitude_mag=0.9)  # fmt: skip
    last = store_curve(monitor, rrab, 1, 1)
    # Held for two classifications: not yet; the third (class_alert_frames) alerts.
    assert classify(monitor, last) == [] and classify(monitor, last) == []
    alerts = classify(monitor, last)
    row = next(r for r in list_light_curves(monitor.db) if r["target"] == "VAR")
    assert row["var_class"] == "rrab", row["var_probs"]
    assert row["period_d"] == pytest.approx(0.57, rel=1e-3)
    assert sum(row["var_probs"].values()) == pytest.approx(1.0, abs=1e-3)
    assert [a.kind for a in alerts] == ["class"]
    message = alerts[0].message
    assert message.startswith("VAR is a rrab variable (") and message.endswith("(was constant)")
    # The same class at the next frame: stored again, not alerted again.
    assert [a for a in classify(monitor, last + 1) if a.kind == "class"] == []

    contact = VariableStar("VAR", "contact", 150.0, 20.0, 13.0, period_d=0.37,
                           epoch_mjd=61000.05, amplitude_mag=0.6)  # fmt: skip
    last = store_curve(monitor, contact, 2, 1000)
    alerts = [a for _ in range(3) for a in classify(monitor, last) if a.kind == "class"]
    row = next(r for r in list_light_curves(monitor.db) if r["target"] == "VAR")
    assert row["var_class"] == "ew", row["var_probs"]
    assert len(alerts) == 1 and "(was rrab)" in alerts[0].message


def test_a_constant_star_is_classified_but_never_alerted(monitor) -> None:
    last = store_curve(monitor, VariableStar("VAR", "constant", 150.0, 20.0, 13.0), 4, 1)
    assert [a for _ in range(3) for a in classify(monitor, last)] == []
    row = next(r for r in list_light_curves(monitor.db) if r["target"] == "VAR")
    assert row["var_class"] == "constant", row["var_probs"]


def test_classification_off_or_too_few_points_stores_no_class(monitor) -> None:
    rrab = VariableStar("VAR", "rrlyrae", 150.0, 20.0, 13.0, period_d=0.57, epoch_mjd=61000.1,
                        amplitude_mag=0.9)  # fmt: skip
    store_curve(monitor, rrab, 3, 1)
    monitor.config = monitor.config.model_copy(update={"classify_min_points": 100_000})
    assert monitor.update_stats("VAR") is None
    off = {"classify_min_points": 20, "classify": False}
    monitor.config = monitor.config.model_copy(update=off)
    assert monitor.update_stats("VAR") is None
    row = next(r for r in list_light_curves(monitor.db) if r["target"] == "VAR")
    assert row["var_class"] is None and row["period_d"] is not None


def test_the_period_is_searched_again_only_when_the_curve_grew_or_changed(
    monitor, monkeypatch
) -> None:
    from obsctl.timeseries import monitor as monitor_module

    searches: list[int] = []
    search = monitor_module.search_light_curve_period

    def counted(t, *args, **kwargs):
        searches.append(len(t))
        return search(t, *args, **kwargs)

    monkeypatch.setattr(monitor_module, "search_light_curve_period", counted)
    rrab = VariableStar("VAR", "rrlyrae", 150.0, 20.0, 13.0, period_d=0.57, epoch_mjd=61000.1,
                        amplitude_mag=0.9)  # fmt: skip
    last = store_curve(monitor, rrab, 1, 1)
    n = len(monitor.light_curve("VAR"))
    monitor.update_stats("VAR")
    assert searches == [n]
    obj = monitor.store.target_object_id("VAR")

    def add_point(eid: int, mjd: float) -> None:
        mag = float(rrab.mag("V", [mjd])[0])
        monitor.store.replace_points(
            eid, [FramePoint(obj, mjd, eid, mjd + 2400000.5, "V", 1.2, mag, NOISE, "good", 0)]
        )
        monitor.store.set_differential_mags([SolvedPoint(obj, eid, mag, NOISE, 0)], flag=4)

    # One more point (under 5 %): the last period stands.
    add_point(last + 1, 61060.1)
    monitor.update_stats("VAR")
    assert searches == [n]
    row = next(r for r in list_light_curves(monitor.db) if r["target"] == "VAR")
    assert row["period_d"] == pytest.approx(0.57, rel=1e-3)
    # Grown by 5 %: searched again on every point.
    extra = int(np.ceil(0.05 * n))
    for k in range(extra):
        add_point(last + 2 + k, 61060.2 + 0.01 * k)
    monitor.update_stats("VAR")
    assert searches == [n, n + 1 + extra]
    # An earlier point added (not a growth at the end): searched again.
    add_point(last + 100, 60999.5)
    monitor.update_stats("VAR")
    assert searches[-1] == n + 2 + extra


def test_a_contact_binary_with_alike_minima_is_stored_at_its_period_not_half(monitor) -> None:
    """Minima alike within the noise: the search says P/2, the class says the period is 2x."""
    contact = VariableStar("VAR", "contact", 150.0, 20.0, 13.0, period_d=0.37,
                           epoch_mjd=61000.05, amplitude_mag=0.6, secondary_ratio=1.0)  # fmt: skip
    last = store_curve(monitor, contact, 3, 1)
    monitor.update_stats("VAR")
    row = next(r for r in list_light_curves(monitor.db) if r["target"] == "VAR")
    assert row["period_d"] == pytest.approx(0.37 / 2, rel=1e-3)  # the search's, one minimum
    classify(monitor, last)
    row = next(r for r in list_light_curves(monitor.db) if r["target"] == "VAR")
    assert row["var_class"] == "ew", row["var_probs"]
    assert row["period_d"] == pytest.approx(0.37, rel=1e-3)
