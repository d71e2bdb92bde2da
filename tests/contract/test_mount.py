import pytest

from obsctl.devices import Mount, PierSide
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
