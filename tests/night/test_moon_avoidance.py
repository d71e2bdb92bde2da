"""Moon avoidance that grows with the moon's phase: ACP's and Target Scheduler's Lorentzian."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import EarthLocation, get_body
from astropy.time import Time

from obsctl.config import SiteConfig
from obsctl.errors import ConfigError
from obsctl.night.ephemeris import SYNODIC_MONTH_DAYS, NightEphemeris, cached_night, quiet_astropy
from obsctl.night.plan import MoonAvoidance, parse_plan
from obsctl.night.schedule import NightSchedule

SITE = SiteConfig(name="Test", latitude_deg=28.76, longitude_deg=-17.88, elevation_m=2326)
NIGHT = date(2026, 11, 25)  # a day after full moon
MIDNIGHT = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
P = 29.53059  # Target Scheduler's DAYS_IN_LUNAR_CYCLE


def test_the_cycle_is_target_schedulers() -> None:
    assert SYNODIC_MONTH_DAYS == P


# Values by hand from d / (1 + ((0.5 - a / P) / (w / P))**2) = d / (1 + ((P / 2 - a) / w)**2):
# ACP's suggested start, d = 15 deg, w = 6 days, days from full moon dt = P / 2 - a:
#   dt = 0: 15; dt = 3: 15 / 1.25 = 12; dt = 6: 15 / 2 = 7.5; dt = 12: 15 / 5 = 3.
# d = 120, w = 14 (Target Scheduler's largest width) at new moon, dt = 14.765295:
#   (14.765295 / 14)**2 = 1.0546639**2 = 1.1123160; 120 / 2.1123160 = 56.80968.
@pytest.mark.parametrize(
    ("distance", "width", "age", "expected"),
    [
        (15, 6, P / 2, 15.0),
        (15, 6, P / 2 - 3, 12.0),
        (15, 6, P / 2 + 3, 12.0),
        (15, 6, P / 2 - 6, 7.5),
        (15, 6, P / 2 + 6, 7.5),
        (15, 6, P / 2 + 12, 3.0),
        (120, 14, 0.0, 56.80968),
        (120, 14, P, 56.80968),
        (120, 14, P / 2, 120.0),
        (0, 6, P / 2, 0.0),
    ],
)
def test_lorentzian_matches_hand_values(
    distance: float, width: float, age: float, expected: float
) -> None:
    rule = MoonAvoidance(distance_deg=distance, width_days=width)
    assert float(rule.separation_deg(age)) == pytest.approx(expected, abs=1e-4)


def test_lorentzian_is_vectorised_and_peaks_at_full_moon() -> None:
    rule = MoonAvoidance(distance_deg=60, width_days=7)
    ages = np.linspace(0, P, 301)
    need = rule.separation_deg(ages)
    assert need.shape == ages.shape
    assert ages[int(np.argmax(need))] == pytest.approx(P / 2, abs=P / 300)
    assert (need > 0).all() and (need <= 60).all()


def test_a_vanishing_width_needs_nothing_but_at_full_moon() -> None:
    """A width of 1e-271 days (the fuzz suite's) overflowed in the square: a warning, an error."""
    for width in (8.562228170890107e-272, 5e-324):  # the second: width / P underflows to 0
        rule = MoonAvoidance(distance_deg=60, width_days=width)
        need = rule.separation_deg(np.array([0.0, 7.0, P / 2]))
        assert need.tolist() == [0.0, 0.0, 60.0]


@pytest.mark.parametrize(
    ("avoidance", "field"),
    [
        ({"distance_deg": 200, "width_days": 6}, "distance_deg"),
        ({"distance_deg": -1, "width_days": 6}, "distance_deg"),
        ({"distance_deg": 15, "width_days": 0}, "width_days"),
        ({"distance_deg": 15, "width_days": 30}, "width_days"),
        ({"distance_deg": 15}, "width_days"),
        ({"distance_deg": 15, "width_days": 6, "height": 1}, "height"),
        ({"distance_deg": float("nan"), "width_days": 6}, "distance_deg"),
    ],
)
def test_bad_avoidance_names_the_field(avoidance: dict[str, Any], field: str) -> None:
    doc = {
        "version": 1,
        "name": "p",
        "targets": [
            {
                "name": "M 13",
                "catalog": "M 13",
                "steps": [{"exposure_s": 60}],
                "constraints": {"moon_avoidance": avoidance},
            }
        ],
    }
    with pytest.raises(ConfigError, match=rf"\(M 13\)\.constraints\.moon_avoidance\.{field}"):
        parse_plan(doc)


@pytest.fixture(scope="module")
def eph() -> NightEphemeris:
    return cached_night(SITE, NIGHT)


def test_moon_age_follows_the_phase(eph: NightEphemeris) -> None:
    # Independent of the age's definition (right ascension east of the sun), the
    # illuminated fraction is about (1 - cos(2 pi age / P)) / 2.
    approx = (1 - np.cos(2 * np.pi * eph.moon_age_days / P)) / 2
    assert np.abs(approx - eph.moon_illumination).max() < 0.05
    # A day after full moon (2026-11-24): waning, a little over half a cycle old.
    assert P / 2 < eph.moon_age(MIDNIGHT) < P / 2 + 3
    # It grows through the night by the moon's ~12 deg a day east of the sun.
    assert 0.3 < eph.moon_age_days[-1] - eph.moon_age_days[0] < 1.3


@pytest.mark.parametrize("days", [0, 7, 14, 21])
def test_moon_age_agrees_with_the_ecliptic_elongation(days: int) -> None:
    # The age from right ascensions (as N.I.N.A.) against the moon's ecliptic longitude east
    # of the sun's, from astropy: they differ by the tilt of the ecliptic only (< 0.3 day).
    from astropy.coordinates import GeocentricTrueEcliptic

    when = MIDNIGHT + timedelta(days=days)
    eph = cached_night(SITE, NIGHT + timedelta(days=days))
    with quiet_astropy():
        t = Time(when)
        frame = GeocentricTrueEcliptic(equinox=t)
        moon = get_body("moon", t).transform_to(frame).lon.deg
        sun = get_body("sun", t).transform_to(frame).lon.deg
    expected = ((moon - sun) % 360.0) * P / 360.0
    got = eph.moon_age(when)
    delta = (got - expected + P / 2) % P - P / 2  # across new moon, 0 and P are one age
    assert abs(delta) < 0.3


def _near_the_moon(sep_deg: float) -> tuple[float, float]:
    """A position ``sep_deg`` north of the moon at midnight (ICRS deg)."""
    loc = EarthLocation.from_geodetic(-17.88 * u.deg, 28.76 * u.deg, 2326 * u.m)
    with quiet_astropy():
        moon = get_body("moon", Time(MIDNIGHT), loc).icrs
    return float(moon.ra.deg), float(moon.dec.deg) + sep_deg


def _schedule(eph: NightEphemeris, distance: float, width: float = 6.0) -> NightSchedule:
    ra, dec = _near_the_moon(40.0)
    plan = parse_plan(
        {
            "version": 1,
            "name": "p",
            "targets": [
                {
                    "name": "near",
                    "ra_deg": ra,
                    "dec_deg": dec,
                    "steps": [{"exposure_s": 60}],
                    "constraints": {
                        "moon_avoidance": {"distance_deg": distance, "width_days": width}
                    },
                }
            ],
        }
    )
    return NightSchedule(plan, eph)


def test_a_target_40_deg_from_a_full_moon_is_blocked_by_a_wide_avoidance(
    eph: NightEphemeris,
) -> None:
    schedule = _schedule(eph, distance=60.0)
    target = schedule.plan.targets[0]
    assert eph.moon_alt(MIDNIGHT) > 0
    (blocked,) = schedule.blocking(target, MIDNIGHT)
    # About a day and a half from full, 60 deg shrinks by 1 / (1 + (1.5 / 6)**2) only.
    assert blocked.startswith("moon separation >= 5")
    assert "Lorentzian 60 deg at full moon, width 6 d, moon 16." in blocked
    # Where the moon is down the rule does not apply.
    name = next(n for n in schedule.masks["near"] if n.startswith("moon separation"))
    assert schedule.masks["near"][name][eph.moon_alt_deg <= 0].all()


def test_a_narrow_avoidance_lets_it_through(eph: NightEphemeris) -> None:
    schedule = _schedule(eph, distance=30.0)
    assert schedule.blocking(schedule.plan.targets[0], MIDNIGHT) == []


def test_a_short_width_relaxes_the_avoidance_away_from_full_moon() -> None:
    # A week after full moon 60 deg at a width of 1 day needs only 60 / (1 + 7**2) ~ 1.2 deg.
    later = cached_night(SITE, NIGHT + timedelta(days=7))
    schedule = _schedule(later, distance=60.0, width=1.0)
    name = next(n for n in schedule.masks["near"] if n.startswith("moon separation"))
    assert name.startswith(("moon separation >= 1 deg", "moon separation >= 2 deg"))
