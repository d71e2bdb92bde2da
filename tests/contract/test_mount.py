import pytest

from obsctl.devices import GuideDirection, Mount, PierSide
from obsctl.errors import DeviceBusyError, InvalidDeviceValueError

from ._wait import until


async def settled(mount: Mount) -> None:
    async def done() -> bool:
        return not (await mount.status()).slewing

    await until(done)


async def high_target(mount: Mount, hour_angle_deg: float = -20.0) -> tuple[float, float]:
    """RA/Dec of a point well above the horizon: given hour angle, Dec 30."""
    status = await mount.status()
    assert status.sidereal_time_h is not None
    ra = (status.sidereal_time_h * 15.0 - hour_angle_deg) % 360.0
    return ra, 30.0


async def test_slew_to_radec_arrives_and_tracks(devices) -> None:
    mount = devices.mount
    await mount.unpark()
    await mount.set_tracking(True)
    ra, dec = await high_target(mount)
    await mount.slew_to_radec(ra, dec)
    assert (await mount.status()).slewing
    await settled(mount)
    status = await mount.status()
    assert status.ra_deg == pytest.approx(ra, abs=1e-3)
    assert status.dec_deg == pytest.approx(dec, abs=1e-3)
    assert status.tracking and not status.at_park
    assert status.alt_deg > 30
    assert status.pier_side == PierSide.WEST  # east of the meridian: tube on the west side


async def test_slew_to_altaz(devices) -> None:
    mount = devices.mount
    await mount.unpark()
    await mount.set_tracking(False)
    await mount.slew_to_altaz(45.0, 120.0)
    await settled(mount)
    status = await mount.status()
    assert status.alt_deg == pytest.approx(45.0, abs=0.01)
    assert status.az_deg == pytest.approx(120.0, abs=0.01)


async def test_below_limit_is_rejected(devices) -> None:
    mount = devices.mount
    await mount.unpark()
    with pytest.raises(InvalidDeviceValueError):
        await mount.slew_to_altaz(2.0, 180.0)


async def test_park_blocks_slews_until_unpark(devices) -> None:
    mount = devices.mount
    await mount.unpark()
    await mount.park()
    await settled(mount)
    status = await mount.status()
    assert status.at_park and not status.tracking
    with pytest.raises(DeviceBusyError):
        await mount.slew_to_altaz(45.0, 90.0)
    await mount.unpark()
    assert not (await mount.status()).at_park


async def test_abort_slew(devices) -> None:
    mount = devices.mount
    await mount.unpark()
    await mount.set_tracking(True)
    ra, dec = await high_target(mount, hour_angle_deg=40.0)
    await mount.slew_to_radec(ra, dec)
    await mount.abort_slew()
    assert not (await mount.status()).slewing


async def test_sync_to_radec_sets_the_reported_position(devices) -> None:
    mount = devices.mount
    await mount.unpark()
    await mount.set_tracking(True)
    ra, dec = await high_target(mount)
    await mount.slew_to_radec(ra, dec)
    await settled(mount)
    # A plate solution half a degree off in RA, a quarter in Dec.
    solved_ra, solved_dec = (ra + 0.5) % 360.0, dec + 0.25
    before = await mount.status()
    assert before.ra_deg != pytest.approx(solved_ra, abs=0.1)
    await mount.sync_to_radec(solved_ra, solved_dec)
    status = await mount.status()
    assert status.ra_deg == pytest.approx(solved_ra, abs=1e-3)
    assert status.dec_deg == pytest.approx(solved_dec, abs=1e-3)
    assert not status.slewing and status.tracking


async def test_sync_to_radec_is_refused_while_parked_or_slewing(devices) -> None:
    mount = devices.mount
    await mount.unpark()
    await mount.park()
    await settled(mount)
    parked = await mount.status()
    ra, dec = (parked.ra_deg + 10.0) % 360.0, parked.dec_deg - 20.0
    with pytest.raises(DeviceBusyError):
        await mount.sync_to_radec(ra, dec)
    status = await mount.status()
    assert status.at_park
    assert status.dec_deg == pytest.approx(parked.dec_deg, abs=1e-3)
    await mount.unpark()
    await mount.set_tracking(True)
    ra, dec = await high_target(mount, hour_angle_deg=40.0)
    await mount.slew_to_radec(ra, dec)
    with pytest.raises(DeviceBusyError):
        await mount.sync_to_radec(ra, dec)
    await mount.abort_slew()


async def test_sync_to_radec_refuses_positions_off_the_sky(devices) -> None:
    mount = devices.mount
    await mount.unpark()
    with pytest.raises(InvalidDeviceValueError):
        await mount.sync_to_radec(10.0, 95.0)


# --- pulse guiding -----------------------------------------------------------------------

#: ASCOM's default guide rate, 0.5 x sidereal (15.0411 arcsec/s), what every implementation
#: here guides at: arcsec of RA (or Dec) per second of time.
GUIDE_RATE_ARCSEC_S = 0.5 * 360.98564736629 / 86400.0 * 3600.0


async def guiding_ended(mount: Mount) -> None:
    async def done() -> bool:
        return not await mount.is_pulse_guiding()

    await until(done)


async def tracking_high(mount: Mount) -> None:
    await mount.unpark()
    await mount.set_tracking(True)
    ra, dec = await high_target(mount)
    await mount.slew_to_radec(ra, dec)
    await settled(mount)


def ra_change_arcsec(before_deg: float, after_deg: float) -> float:
    return ((after_deg - before_deg + 180.0) % 360.0 - 180.0) * 3600.0


async def test_guide_rates_are_the_ascom_default(devices) -> None:
    rates = await devices.mount.guide_rates()
    assert rates == pytest.approx((GUIDE_RATE_ARCSEC_S, GUIDE_RATE_ARCSEC_S), rel=1e-6)
    assert pytest.approx(7.52, abs=0.01) == GUIDE_RATE_ARCSEC_S


async def test_pulse_east_and_north_move_by_rate_times_duration(devices) -> None:
    mount = devices.mount
    await tracking_high(mount)
    before = await mount.status()
    await mount.pulse_guide(GuideDirection.EAST, 2.0)
    await guiding_ended(mount)
    after_east = await mount.status()
    # East is +RA (ASCOM GuideDirections). The RA axis turns at the guide rate: the RA
    # coordinate changes by rate x 2 s (on the sky, that times cos Dec), not by rate / cos.
    expected = GUIDE_RATE_ARCSEC_S * 2.0
    assert ra_change_arcsec(before.ra_deg, after_east.ra_deg) == pytest.approx(expected, abs=1.0)
    assert (after_east.dec_deg - before.dec_deg) * 3600.0 == pytest.approx(0.0, abs=1.0)
    assert after_east.tracking and not after_east.slewing

    await mount.pulse_guide(GuideDirection.NORTH, 2.0)
    await guiding_ended(mount)
    after_north = await mount.status()
    assert (after_north.dec_deg - after_east.dec_deg) * 3600.0 == pytest.approx(expected, abs=1.0)
    assert ra_change_arcsec(after_east.ra_deg, after_north.ra_deg) == pytest.approx(0.0, abs=1.0)


async def test_pulse_west_and_south_move_back(devices) -> None:
    mount = devices.mount
    await tracking_high(mount)
    before = await mount.status()
    await mount.pulse_guide(GuideDirection.WEST, 2.0)
    await guiding_ended(mount)
    await mount.pulse_guide(GuideDirection.SOUTH, 2.0)
    await guiding_ended(mount)
    after = await mount.status()
    expected = -GUIDE_RATE_ARCSEC_S * 2.0
    assert ra_change_arcsec(before.ra_deg, after.ra_deg) == pytest.approx(expected, abs=1.0)
    assert (after.dec_deg - before.dec_deg) * 3600.0 == pytest.approx(expected, abs=1.0)


async def test_is_pulse_guiding_during_the_pulse_and_not_after(devices) -> None:
    mount = devices.mount
    await tracking_high(mount)
    assert not await mount.is_pulse_guiding()
    # 16 s (OnStep's longest pulse is 16.399 s): 0.16 s of real time in these tests.
    await mount.pulse_guide(GuideDirection.EAST, 16.0)
    assert await mount.is_pulse_guiding()
    assert not (await mount.status()).slewing  # ASCOM: a pulse is not a slew
    await guiding_ended(mount)
    assert not await mount.is_pulse_guiding()


async def test_pulse_guide_is_refused_while_parked(devices) -> None:
    mount = devices.mount
    await mount.unpark()
    await mount.park()
    await settled(mount)
    parked = await mount.status()
    with pytest.raises(DeviceBusyError):
        await mount.pulse_guide(GuideDirection.NORTH, 2.0)
    assert not await mount.is_pulse_guiding()
    status = await mount.status()
    assert status.at_park
    assert status.dec_deg == pytest.approx(parked.dec_deg, abs=1e-4)


async def test_pulse_guide_refuses_a_bad_duration(devices) -> None:
    mount = devices.mount
    await tracking_high(mount)
    for duration_s in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidDeviceValueError):
            await mount.pulse_guide(GuideDirection.EAST, duration_s)
    assert not await mount.is_pulse_guiding()
