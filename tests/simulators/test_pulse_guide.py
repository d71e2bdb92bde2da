"""Pulse guiding in the simulated mount: a relative move that keeps the drift running.

The mount runs on a clock the test steps, so positions are exact. The contract suite
(``tests/contract/test_mount.py``) checks the same moves through every implementation.
"""

from __future__ import annotations

import math

import pytest

from obsctl.config import SimulatedMountConfig, SiteConfig
from obsctl.devices import GuideDirection
from obsctl.simulators.models import AscomError
from obsctl.simulators.mount_model import MountModel
from obsctl.simulators.serial_lx200 import LX200Interpreter

from ..stepped_clock import SteppedClock

SITE = SiteConfig(name="Test site", latitude_deg=48.0, longitude_deg=11.0, elevation_m=500.0)
DEC = 40.0
DRIFT = (36.0, -18.0)  # arcsec per hour, (east, north)
#: 0.5 x sidereal (15.0411 arcsec/s), computed here rather than taken from the model.
RATE_ARCSEC_S = 0.5 * 360.98564736629 / 86400.0 * 3600.0


def tracking_mount(**config: object) -> tuple[MountModel, SteppedClock, float]:
    """A connected, tracking mount settled at DEC, 20 deg east of the meridian; its RA."""
    clock = SteppedClock()
    cfg = SimulatedMountConfig(slew_rate_deg_s=100.0, settle_s=0.0, **config)  # type: ignore[arg-type]
    mount = MountModel(cfg, SITE, clock)
    mount.connected = True
    mount.set_tracking(True)
    ra = (mount.pointing().lst_deg + 20.0) % 360.0
    mount.slew_to_radec(ra, DEC)
    while mount.slewing:
        clock.advance(0.01)
    return mount, clock, ra


def test_an_east_pulse_adds_rate_times_duration_to_ra_over_the_pulse() -> None:
    mount, clock, ra = tracking_mount()
    mount.pulse_guide(int(GuideDirection.EAST), 2000)
    assert mount.is_pulse_guiding and not mount.slewing
    clock.advance(1.0)  # half way: half the move
    assert (mount.pointing().ra_deg - ra) * 3600.0 == pytest.approx(RATE_ARCSEC_S, abs=1e-6)
    assert mount.is_pulse_guiding
    clock.advance(1.0)
    assert not mount.is_pulse_guiding
    clock.advance(10.0)  # tracking on: the reported RA stays where the pulse left it
    p = mount.pointing()
    assert (p.ra_deg - ra) * 3600.0 == pytest.approx(2.0 * RATE_ARCSEC_S, abs=1e-6)
    assert p.dec_deg == pytest.approx(DEC, abs=1e-12)


def test_north_adds_to_dec_and_both_axes_guide_at_once() -> None:
    mount, clock, ra = tracking_mount()
    mount.pulse_guide(int(GuideDirection.NORTH), 3000)
    mount.pulse_guide(int(GuideDirection.WEST), 1000)
    clock.advance(5.0)
    p = mount.pointing()
    assert (p.dec_deg - DEC) * 3600.0 == pytest.approx(3.0 * RATE_ARCSEC_S, abs=1e-6)
    assert (p.ra_deg - ra) * 3600.0 == pytest.approx(-1.0 * RATE_ARCSEC_S, abs=1e-6)


def test_a_new_pulse_on_an_axis_stops_the_running_one_where_it_is() -> None:
    mount, clock, _ = tracking_mount()
    mount.pulse_guide(int(GuideDirection.SOUTH), 4000)
    clock.advance(1.0)
    mount.pulse_guide(int(GuideDirection.SOUTH), 500)
    clock.advance(5.0)
    moved = (mount.pointing().dec_deg - DEC) * 3600.0
    assert moved == pytest.approx(-1.5 * RATE_ARCSEC_S, abs=1e-6)


def test_the_drift_keeps_running_across_a_pulse_and_a_slew_restarts_it() -> None:
    mount, clock, _ = tracking_mount(drift_arcsec_per_h=DRIFT)
    clock.advance(3600.0)
    assert mount.pointing_error_arcsec() == pytest.approx(DRIFT, abs=1e-3)
    reported = mount.pointing()
    true = mount.true_pointing()
    mount.pulse_guide(int(GuideDirection.EAST), 2000)
    clock.advance(1800.0)
    # Not reset by the pulse: 1.5 h of drift.
    assert mount.pointing_error_arcsec() == pytest.approx(
        (DRIFT[0] * 1.5, DRIFT[1] * 1.5), abs=1e-3
    )
    # The reported and the true position both moved by the pulse (true: plus the drift).
    after = mount.pointing()
    assert (after.ra_deg - reported.ra_deg) * 3600.0 == pytest.approx(2.0 * RATE_ARCSEC_S, abs=1e-6)
    true_after = mount.true_pointing()
    moved_east = (true_after.ra_deg - true.ra_deg) * 3600.0
    drift_east = DRIFT[0] * 0.5 / math.cos(math.radians(true.dec_deg))
    assert moved_east == pytest.approx(2.0 * RATE_ARCSEC_S + drift_east, abs=0.01)
    # A goto to the same guided position restarts the drift: what a relative move avoids.
    mount.slew_to_radec(after.ra_deg, after.dec_deg)
    while mount.slewing:
        clock.advance(0.01)
    assert mount.pointing_error_arcsec() == pytest.approx((0.0, 0.0), abs=1e-3)


@pytest.mark.parametrize(
    ("state", "number"),
    [("parked", 0x408), ("slewing", 0x40B), ("not tracking", 0x40B)],
)
def test_refusals(state: str, number: int) -> None:
    mount, clock, ra = tracking_mount()
    if state == "parked":
        mount.park()
        while mount.slewing:
            clock.advance(0.01)
    elif state == "slewing":
        mount.slew_to_radec((ra + 30.0) % 360.0, DEC)
    else:
        mount.set_tracking(False)
    before = mount.pointing()
    with pytest.raises(AscomError) as info:
        mount.pulse_guide(int(GuideDirection.EAST), 1000)
    assert info.value.number == number
    assert not mount.is_pulse_guiding
    if state != "slewing":
        assert mount.pointing().ra_deg == pytest.approx(before.ra_deg, abs=1e-12)


@pytest.mark.parametrize(("direction", "duration_ms"), [(4, 100), (-1, 100), (0, -5)])
def test_bad_values_are_0x401(direction: int, duration_ms: int) -> None:
    mount, _, _ = tracking_mount()
    with pytest.raises(AscomError) as info:
        mount.pulse_guide(direction, duration_ms)
    assert info.value.number == 0x401


def test_switching_tracking_off_stops_a_pulse_where_it_is() -> None:
    mount, clock, _ = tracking_mount()
    mount.pulse_guide(int(GuideDirection.NORTH), 10_000)
    clock.advance(4.0)
    mount.set_tracking(False)  # stops the pulse where it is
    assert not mount.is_pulse_guiding
    clock.advance(10.0)
    assert (mount.pointing().dec_deg - DEC) * 3600.0 == pytest.approx(4.0 * RATE_ARCSEC_S, abs=1e-6)


async def test_lx200_pulse_commands_for_both_flavours() -> None:
    for flavor in ("onstep", "meade"):
        mount, clock, ra = tracking_mount()
        lx200 = LX200Interpreter(mount, flavor=flavor)  # type: ignore[arg-type]
        assert await lx200.reply(b"Mge1500") is None  # no reply
        assert mount.is_pulse_guiding
        if flavor == "onstep":
            assert b"G" in (await lx200.reply(b"GU") or b"")
        clock.advance(2.0)
        if flavor == "onstep":
            assert b"G" not in (await lx200.reply(b"GU") or b"")
        assert (mount.pointing().ra_deg - ra) * 3600.0 == pytest.approx(
            1.5 * RATE_ARCSEC_S, abs=1e-6
        )
        # Longer than the flavour takes, or not a pulse: ignored.
        too_long = b"Mgn16400" if flavor == "onstep" else b"Mgn10000"
        assert await lx200.reply(too_long) is None
        assert await lx200.reply(b"Mgx0100") in (None, b"0")
        assert not mount.is_pulse_guiding
