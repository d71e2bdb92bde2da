"""Sun, moon and target ephemeris on a grid, checked against direct astropy transforms.

Tolerances: twilight times within 1 min of an independent bisection on astropy's sun
altitude (the grid interpolation is good to about a second); altitudes within 0.05 deg.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import AltAz, EarthLocation, SkyCoord, get_body
from astropy.time import Time
from astropy.utils.data import conf as data_conf

from obsctl.config import SiteConfig
from obsctl.night.ephemeris import (
    NightEphemeris,
    airmass_from_alt,
    cached_night,
    night_window,
    quiet_astropy,
    sky_brightness_mag,
)

SITE = SiteConfig(name="Test", latitude_deg=28.76, longitude_deg=-17.88, elevation_m=2326)
NIGHT = date(2026, 11, 25)
LOCATION = EarthLocation.from_geodetic(-17.88 * u.deg, 28.76 * u.deg, 2326 * u.m)


def astropy_sun_alt(when: datetime) -> float:
    with quiet_astropy():
        t = Time(when)
        return float(
            get_body("sun", t, LOCATION).transform_to(AltAz(obstime=t, location=LOCATION)).alt.deg
        )


def bisect_crossing(lo: datetime, hi: datetime, alt_deg: float) -> datetime:
    """Independent crossing time: bisection on astropy's sun altitude to 1 s."""
    f_lo = astropy_sun_alt(lo) - alt_deg
    while (hi - lo) > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        f_mid = astropy_sun_alt(mid) - alt_deg
        if (f_mid > 0) == (f_lo > 0):
            lo, f_lo = mid, f_mid
        else:
            hi = mid
    return lo


@pytest.fixture(scope="module")
def eph() -> NightEphemeris:
    # Offline: no IERS or ephemeris download may be attempted.
    with data_conf.set_temp("allow_internet", False):
        return cached_night(SITE, NIGHT)


@pytest.mark.parametrize(
    ("event", "alt"),
    [("sunset", -0.833), ("civil", -6.0), ("nautical", -12.0), ("astronomical", -18.0)],
)
def test_twilights_match_astropy_within_a_minute(
    eph: NightEphemeris, event: str, alt: float
) -> None:
    crossing = getattr(eph.twilights(), event)
    assert crossing.dusk is not None and crossing.dawn is not None
    for when in (crossing.dusk, crossing.dawn):
        truth = bisect_crossing(when - timedelta(minutes=10), when + timedelta(minutes=10), alt)
        assert abs(when - truth) < timedelta(minutes=1), (event, when, truth)


def test_twilights_are_ordered_and_plausible(eph: NightEphemeris) -> None:
    tw = eph.twilights()
    dusk = [tw.sunset.dusk, tw.civil.dusk, tw.nautical.dusk, tw.astronomical.dusk]
    dawn = [tw.astronomical.dawn, tw.nautical.dawn, tw.civil.dawn, tw.sunset.dawn]
    assert dusk == sorted(dusk) and dawn == sorted(dawn) and dusk[-1] < dawn[0]
    # Late November at 28.8 N, 17.9 W: sunset near 18:15 UTC, sunrise near 07:45 UTC.
    assert (
        datetime(2026, 11, 25, 17, 50, tzinfo=UTC)
        < tw.sunset.dusk
        < datetime(2026, 11, 25, 18, 40, tzinfo=UTC)
    )
    assert (
        datetime(2026, 11, 26, 7, 20, tzinfo=UTC)
        < tw.sunset.dawn
        < datetime(2026, 11, 26, 8, 10, tzinfo=UTC)
    )


def test_target_altitude_matches_a_direct_transform(eph: NightEphemeris) -> None:
    track = eph.track(250.4217, 36.4597)
    for i in (0, 200, 400, 600):
        when = eph.time_at(float(eph.t_s[i]))
        with quiet_astropy():
            t = Time(when)
            alt = (
                SkyCoord(250.4217 * u.deg, 36.4597 * u.deg)
                .transform_to(AltAz(obstime=t, location=LOCATION))
                .alt.deg
            )
        assert track.alt_deg[i] == pytest.approx(float(alt), abs=0.05)
    ok = np.isfinite(track.airmass)
    assert np.all(track.airmass[ok] >= 1.0) and np.all(track.alt_deg[~ok] <= 0)
    assert np.all((track.hour_angle_h >= -12) & (track.hour_angle_h < 12))


def test_moon_is_nearly_full_on_this_night(eph: NightEphemeris) -> None:
    # Full moon of 2026 November falls on the 24th: the moon is > 90 % lit and up at night.
    midnight = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    assert eph.moon_phase(midnight) > 0.9
    assert eph.moon_alt(midnight) > 20


def test_airmass_and_window() -> None:
    assert airmass_from_alt(90.0) == pytest.approx(1.0, abs=1e-3)
    assert airmass_from_alt(30.0) == pytest.approx(2.0, abs=0.01)
    assert np.isinf(airmass_from_alt(-1.0))
    start, end = night_window(NIGHT, -17.88)
    assert end - start == timedelta(days=1)
    assert start == datetime(2026, 11, 25, 13, 11, 31, 200000, tzinfo=UTC)


def test_sky_brightness_follows_twilight_and_moon() -> None:
    dark = sky_brightness_mag(21.0, -30.0, -10.0, 0.0, 90.0)
    assert dark == pytest.approx(21.0, abs=1e-6)
    levels = [sky_brightness_mag(21.0, h, -10.0, 0.0, 90.0) for h in (0, -3, -6, -9, -12, -18)]
    assert levels == sorted(levels)  # fainter as the sun goes down
    assert levels[0] < 5.0 and levels[-1] > 20.5
    moon_far = sky_brightness_mag(21.0, -30.0, 60.0, 1.0, 90.0)
    moon_near = sky_brightness_mag(21.0, -30.0, 60.0, 1.0, 5.0)
    assert moon_near < moon_far < dark - 1.0
