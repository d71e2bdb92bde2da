"""The simulated German equatorial mount at the meridian: its side, its limit, its flip."""

from __future__ import annotations

import pytest

from obsctl.config import SimulatedMountConfig, SiteConfig
from obsctl.devices import PierSide
from obsctl.simulators.mount_model import MountModel

from ..stepped_clock import SteppedClock

SITE = SiteConfig(name="Test site", latitude_deg=48.0, longitude_deg=11.0, elevation_m=500.0)
SIDEREAL_S_PER_DEG = 239.345


def mount(limit_deg: float | None) -> tuple[MountModel, SteppedClock]:
    clock = SteppedClock()
    config = SimulatedMountConfig(slew_rate_deg_s=2.0, settle_s=0.0, meridian_limit_deg=limit_deg)
    m = MountModel(config, SITE, clock)
    m.connected = True
    m.set_tracking(True)
    return m, clock


def slew_to_hour_angle(m: MountModel, clock: SteppedClock, ha_deg: float, dec: float = 20.0):
    ra = (m.pointing().lst_deg - ha_deg) % 360.0
    m.slew_to_radec(ra, dec)
    start = clock.seconds
    while m.slewing:
        clock.seconds += 0.5
    return ra, clock.seconds - start


def test_the_side_stays_past_the_meridian_and_tracking_stops_at_the_limit() -> None:
    m, clock = mount(limit_deg=4.0)
    ra, _ = slew_to_hour_angle(m, clock, -2.0)
    assert m.side_of_pier == PierSide.WEST
    # To HA +3 deg: past the meridian, on the same side (the slew took some of the way).
    clock.seconds += (3.0 - m.pointing().ha_deg) * SIDEREAL_S_PER_DEG
    assert m.pointing().ha_deg == pytest.approx(3.0, abs=0.01)
    assert m.side_of_pier == PierSide.WEST and m.tracking and not m.limit_stops
    clock.seconds += 2.0 * SIDEREAL_S_PER_DEG  # HA +5 deg: it stopped at +4 deg
    p = m.pointing()
    assert not m.tracking
    assert p.ha_deg == pytest.approx(4.0, abs=1e-9)
    assert m.limit_stops == [pytest.approx(clock.seconds - SIDEREAL_S_PER_DEG, abs=1.0)]
    assert p.ra_deg != pytest.approx(ra, abs=0.5)  # the sky moved on


def test_a_slew_past_the_meridian_flips_and_takes_half_a_turn() -> None:
    m, clock = mount(limit_deg=None)
    ra, _ = slew_to_hour_angle(m, clock, -2.0)
    clock.seconds += (3.0 - m.pointing().ha_deg) * SIDEREAL_S_PER_DEG  # HA +3, still west
    m.slew_to_radec(ra, 20.0)  # the same target again
    start = clock.seconds
    while m.slewing:
        clock.seconds += 0.5
    assert m.side_of_pier == PierSide.EAST
    assert clock.seconds - start == pytest.approx(180.0 / 2.0, abs=1.0)  # 180 deg at 2 deg/s
    p = m.pointing()
    assert p.ra_deg == pytest.approx(ra, abs=1e-6) and m.tracking


def test_no_limit_on_the_west_looking_side() -> None:
    m, clock = mount(limit_deg=4.0)
    slew_to_hour_angle(m, clock, 2.0)  # past the meridian: east of the pier, looking west
    assert m.side_of_pier == PierSide.EAST
    ha = m.pointing().ha_deg
    clock.seconds += 20.0 * SIDEREAL_S_PER_DEG
    assert m.tracking and m.pointing().ha_deg == pytest.approx(ha + 20.0, abs=0.01)
