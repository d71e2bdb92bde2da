"""Scheduling rules: repetition, constraints on the ephemeris grid, merit, the timeline."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import EarthLocation, get_body
from astropy.time import Time

from obsctl.clock import ScaledClock
from obsctl.config import SiteConfig
from obsctl.night.ephemeris import NightEphemeris, cached_night, quiet_astropy
from obsctl.night.plan import Plan, parse_plan
from obsctl.night.runner import wall_time
from obsctl.night.schedule import NightSchedule, TargetHistory, repeat_allows

SITE = SiteConfig(name="Test", latitude_deg=28.76, longitude_deg=-17.88, elevation_m=2326)
NIGHT = date(2026, 11, 25)
MIDNIGHT = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


def target(name: str, ra: float, dec: float, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "ra_deg": ra,
        "dec_deg": dec,
        "steps": [{"filter": "V", "exposure_s": 60, "count": 2}],
        **extra,
    }


def plan_of(*targets: dict[str, Any], **extra: Any) -> Plan:
    return parse_plan({"version": 1, "name": "p", "targets": list(targets), **extra})


@pytest.fixture(scope="module")
def eph() -> NightEphemeris:
    return cached_night(SITE, NIGHT)


def moon_radec(when: datetime) -> tuple[float, float]:
    loc = EarthLocation.from_geodetic(-17.88 * u.deg, 28.76 * u.deg, 2326 * u.m)
    with quiet_astropy():
        moon = get_body("moon", Time(when), loc).icrs
    return float(moon.ra.deg), float(moon.dec.deg)


def test_repeat_rules() -> None:
    once = plan_of(target("A", 0, 0)).targets[0]
    assert repeat_allows(once, TargetHistory(), NIGHT, MIDNIGHT)[0]
    assert repeat_allows(once, TargetHistory(total=1), NIGHT, MIDNIGHT) == (
        False,
        "observed already",
    )
    mon = plan_of(target("M", 0, 0, repeat={"every_min": 60, "total": 5})).targets[0]
    last = MIDNIGHT - timedelta(minutes=30)
    ok, why = repeat_allows(mon, TargetHistory(1, 1, 0, last), NIGHT, MIDNIGHT)
    assert not ok and "next visit due at 00:30" in why
    assert repeat_allows(mon, TargetHistory(1, 1, 0, last), NIGHT, last + timedelta(hours=1))[0]
    # The cadence carries over from the previous night's last visit.
    yesterday = MIDNIGHT - timedelta(hours=23, minutes=30)
    assert repeat_allows(mon, TargetHistory(3, 0, 0, yesterday), NIGHT, MIDNIGHT)[0]
    assert not repeat_allows(mon, TargetHistory(5, 2, 0, yesterday), NIGHT, MIDNIGHT)[0]
    nightly = plan_of(target("N", 0, 0, repeat={"until": "2026-11-30"})).targets[0]
    assert repeat_allows(nightly, TargetHistory(4, 0, 0, yesterday), NIGHT, MIDNIGHT)[0]
    assert not repeat_allows(nightly, TargetHistory(4, 1, 0, last), NIGHT, MIDNIGHT)[0]
    assert not repeat_allows(nightly, TargetHistory(), date(2026, 12, 1), MIDNIGHT)[0]
    # Failed visits are re-queued up to requeue_failed times.
    assert repeat_allows(once, TargetHistory(failed_tonight=1), NIGHT, MIDNIGHT)[0]
    assert not repeat_allows(once, TargetHistory(failed_tonight=2), NIGHT, MIDNIGHT)[0]


def test_constraint_masks_agree_with_astropy(eph: NightEphemeris) -> None:
    moon_ra, moon_dec = moon_radec(MIDNIGHT)
    near = target("Near moon", moon_ra, max(min(moon_dec + 10, 89), -89))
    plan = plan_of(
        near | {"constraints": {"min_moon_sep_deg": 30}},
        target("HA", 30.0, 20.0, constraints={"min_hour_angle_h": -1, "max_hour_angle_h": 1}),
        target("Airmass", 30.0, 20.0, constraints={"max_airmass": 1.5}),
    )
    sched = NightSchedule(plan, eph)
    i = eph.index(MIDNIGHT)
    moon_mask = sched.masks["Near moon"]["moon separation >= 30 deg"]
    assert eph.moon_alt(MIDNIGHT) > 0 and not moon_mask[i]
    assert "moon separation >= 30 deg" in sched.blocking(plan.targets[0], MIDNIGHT)
    assert np.all(moon_mask[eph.moon_alt_deg <= 0])  # a set moon lights nothing
    ha = sched.tracks["HA"].hour_angle_h
    assert np.array_equal(sched.masks["HA"]["hour angle >= -1 h"], ha >= -1)
    alt = sched.tracks["Airmass"].alt_deg
    airmass_mask = sched.masks["Airmass"]["airmass <= 1.5"]
    # airmass 1.5 is near altitude 41.8 deg
    assert np.all(alt[airmass_mask] > 41.5) and np.all(alt[~airmass_mask & (alt > 0)] < 42.0)


def test_priority_decides_then_merit_breaks_ties(eph: NightEphemeris) -> None:
    plan = plan_of(
        target("Low", 30.0, 20.0, priority=1),
        target("High", 60.0, 20.0, priority=2),
        target("Mon A", 12.0, 85.0, priority=3, repeat={"every_min": 60}),
        target("Mon B", 12.0, 85.0, priority=3, repeat={"every_min": 60}),
    )
    sched = NightSchedule(plan, eph)
    history = {
        "Mon A": TargetHistory(1, 1, 0, MIDNIGHT - timedelta(minutes=61)),
        "Mon B": TargetHistory(1, 1, 0, MIDNIGHT - timedelta(minutes=110)),
    }
    best, why = sched.candidates(MIDNIGHT, history)
    assert [c.target.name for c in best] == ["Mon B", "Mon A", "High", "Low"]
    assert why == {}
    history["Mon B"] = TargetHistory(2, 2, 0, MIDNIGHT - timedelta(minutes=10))
    history["Mon A"] = TargetHistory(2, 2, 0, MIDNIGHT - timedelta(minutes=10))
    choice = sched.choose(MIDNIGHT, history)
    assert choice is not None and choice.target.name == "High"


def test_timeline_respects_rules(eph: NightEphemeris) -> None:
    plan = plan_of(
        target("Once", 30.0, 20.0, priority=2, constraints={"min_alt_deg": 40}),
        target("Mon", 12.0, 85.0, repeat={"every_min": 90}),
        target("South", 180.0, -60.0, constraints={"min_alt_deg": 10}),
    )
    sched = NightSchedule(plan, eph)
    tl = sched.timeline()
    assert [v.target for v in tl.visits].count("Once") == 1
    mon = [v.start for v in tl.visits if v.target == "Mon"]
    assert len(mon) >= 5
    assert all((b - a) >= timedelta(minutes=90) for a, b in itertools.pairwise(mon))
    for a, b in zip(tl.visits, tl.visits[1:], strict=False):
        assert a.end <= b.start
    once = next(v for v in tl.visits if v.target == "Once")
    assert once.alt_deg >= 40
    assert sched.night_start is not None and sched.night_end is not None
    assert all(sched.night_start <= v.start and v.end <= sched.night_end for v in tl.visits)
    assert list(tl.unobserved) == ["South"]
    assert "never altitude >= 10 deg" in tl.unobserved["South"]


def test_flat_windows_bracket_the_sun(eph: NightEphemeris) -> None:
    plan = parse_plan(
        {
            "version": 1,
            "name": "f",
            "calibration": {"flats": {"filters": ["V"], "when": ["dusk", "dawn"]}},
            "targets": [target("A", 0, 0)],
        }
    )
    sched = NightSchedule(plan, eph)
    assert plan.calibration.flats is not None
    for when in ("dusk", "dawn"):
        window = sched.flat_window(plan.calibration.flats, when)
        assert window is not None
        alts = [eph.sun_alt(t) for t in window]
        assert sorted(round(a, 2) for a in alts) == [-10.0, -1.0]


def test_panel_flats_come_between_sunset_and_the_night_whatever_the_sun_altitudes(
    eph: NightEphemeris,
) -> None:
    plan = parse_plan(
        {
            "version": 1,
            "name": "f",
            "calibration": {
                "flats": {"filters": ["V"], "when": ["dusk", "dawn"], "source": "panel"}
            },
            "targets": [target("A", 0, 0)],
        }
    )
    sched = NightSchedule(plan, eph)
    assert plan.calibration.flats is not None
    assert sched.night_start is not None and sched.night_end is not None
    dusk = sched.flat_window(plan.calibration.flats, "dusk")
    dawn = sched.flat_window(plan.calibration.flats, "dawn")
    assert dusk is not None and dawn is not None
    # The sun's altitude is the truth: it sets at the start of the dusk window and rises at
    # the end of the dawn one (0 deg for its centre, -0.83 deg with refraction and its size).
    assert -1.0 < eph.sun_alt(dusk[0]) < 0.1 and -1.0 < eph.sun_alt(dawn[1]) < 0.1
    assert dusk[1] == sched.night_start and dawn[0] == sched.night_end


def test_wall_time_maps_simulated_time() -> None:
    start = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
    clock = ScaledClock(600.0, start=start)
    later = wall_time(clock, start + timedelta(hours=1))
    expected = datetime.now(UTC) + timedelta(seconds=6.0)
    assert abs(later - expected) < timedelta(seconds=0.5)


def test_a_visit_across_the_meridian_costs_the_flip(eph: NightEphemeris) -> None:
    # The target's RA is the local sidereal time 10 min after midnight (astropy's, not the
    # schedule's): a 30 min visit from midnight crosses the meridian; one from 00:20 does not.
    loc = EarthLocation.from_geodetic(SITE.longitude_deg * u.deg, SITE.latitude_deg * u.deg)
    lst = Time(MIDNIGHT + timedelta(minutes=10)).sidereal_time("mean", longitude=loc.lon).deg
    steps = [{"filter": "V", "exposure_s": 300, "count": 5}]
    flips = {"night": {"meridian_flip_s": 180.0, "overhead_s": 0.0, "slew_s": 0.0}}
    with_flip = NightSchedule(plan_of(target("T", lst, 20.0, steps=steps), **flips), eph)
    without = NightSchedule(plan_of(target("T", lst, 20.0, steps=steps)), eph)
    t = with_flip.plan.targets[0]
    assert with_flip.hour_angle_h(t, MIDNIGHT) == pytest.approx(-10 / 60, abs=0.01)
    assert with_flip.flip_s(t, MIDNIGHT, 1500.0) == 180.0
    assert with_flip.flip_s(t, MIDNIGHT + timedelta(minutes=20), 1500.0) == 0.0
    assert with_flip.flip_s(t, MIDNIGHT - timedelta(hours=1), 1500.0) == 0.0
    [flipped], _ = with_flip.candidates(MIDNIGHT, {})
    [plain], _ = without.candidates(MIDNIGHT, {})
    assert (flipped.end - MIDNIGHT).total_seconds() == pytest.approx(1500.0 + 180.0)
    assert (plain.end - MIDNIGHT).total_seconds() == pytest.approx(1500.0 + 20 * 5 + 60)
