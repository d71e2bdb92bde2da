"""SerialLX200Mount against the LX200 simulator, through its pty and through socket://."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from obsctl.devices import PierSide
from obsctl.drivers.serial import PySerialTransport, SerialLX200Mount
from obsctl.errors import DeviceBusyError, InvalidDeviceValueError
from obsctl.simulators.serial_lx200 import LX200Interpreter
from obsctl.simulators.serial_server import SerialSimulator

from .conftest import TIMEOUT_S, url_of


async def until(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await predicate():
            await asyncio.sleep(0.005)


async def settled(mount: SerialLX200Mount) -> None:
    async def done() -> bool:
        return not (await mount.status()).slewing

    await until(done)


async def test_connect_identifies_onstep_and_sets_site_and_time(mount, mount_sim, site, clock):
    interpreter = mount_sim.interpreter
    assert isinstance(interpreter, LX200Interpreter)
    assert mount.flavor == "onstep" and mount.product == "On-Step"
    assert interpreter.site_latitude_deg == pytest.approx(site.latitude_deg, abs=1 / 60)
    assert interpreter.site_longitude_west_deg == pytest.approx(-site.longitude_deg, abs=1 / 60)
    assert interpreter.utc_offset_h == 0
    assert interpreter.date == f"{clock.now():%m/%d/%y}"
    assert await mount.is_connected()


async def test_status_matches_the_model(mount, mount_model):
    status = await mount.status()
    pointing = mount_model.pointing()
    # The model starts at the park position: horizontal, due north.
    assert status.alt_deg == pytest.approx(pointing.alt_deg, abs=1 / 3600)
    assert status.az_deg == pytest.approx(pointing.az_deg, abs=1 / 3600) or status.az_deg > 359
    assert status.dec_deg == pytest.approx(pointing.dec_deg, abs=1e-3)
    assert status.sidereal_time_h == pytest.approx(pointing.lst_deg / 15, abs=0.01)
    assert not status.slewing and not status.tracking and not status.at_park


async def test_slew_tracks_and_lands_within_an_arcsecond(mount, mount_model):
    await mount.set_tracking(True)
    status = await mount.status()
    ra = (status.sidereal_time_h * 15 + 25.0) % 360.0  # 25 deg east of the meridian
    await mount.slew_to_radec(ra, 40.0)
    assert (await mount.status()).slewing
    await settled(mount)
    status = await mount.status()
    # J2000 -> JNow on the wire -> J2000 in the model, and back again.
    assert mount_model.pointing().ra_deg == pytest.approx(ra, abs=1 / 3600)
    assert mount_model.pointing().dec_deg == pytest.approx(40.0, abs=1 / 3600)
    assert status.ra_deg == pytest.approx(ra, abs=1 / 3600)
    assert status.dec_deg == pytest.approx(40.0, abs=1 / 3600)
    assert status.tracking and status.pier_side == PierSide.WEST


async def test_slew_to_altaz_and_its_refusals(mount):
    await mount.slew_to_altaz(45.0, 120.0)
    await settled(mount)
    status = await mount.status()
    assert status.alt_deg == pytest.approx(45.0, abs=1 / 3600)
    assert status.az_deg == pytest.approx(120.0, abs=1 / 3600)
    with pytest.raises(InvalidDeviceValueError, match="below the horizon limit"):
        await mount.slew_to_altaz(2.0, 180.0)
    await mount.set_tracking(True)
    with pytest.raises(DeviceBusyError, match="already in motion"):
        await mount.slew_to_altaz(45.0, 90.0)  # as ASCOM: alt/az slews need tracking off


async def test_below_horizon_radec_is_refused(mount):
    status = await mount.status()
    anti_meridian = (status.sidereal_time_h * 15 + 180.0) % 360.0
    with pytest.raises(InvalidDeviceValueError, match="below the horizon limit"):
        await mount.slew_to_radec(anti_meridian, -40.0)


async def test_park_unpark(mount):
    await mount.unpark()  # not parked: a no-op
    await mount.set_tracking(True)
    await mount.park()
    status = await mount.status()
    assert status.slewing or status.at_park
    await settled(mount)
    status = await mount.status()
    assert status.at_park and not status.tracking
    assert status.pier_side == PierSide.UNKNOWN
    with pytest.raises(DeviceBusyError, match="parked"):
        await mount.slew_to_altaz(45.0, 90.0)
    with pytest.raises(DeviceBusyError):
        await mount.set_tracking(True)
    await mount.unpark()
    assert not (await mount.status()).at_park
    await mount.slew_to_altaz(45.0, 90.0)


async def test_abort_stops_a_slew(mount):
    await mount.slew_to_altaz(70.0, 250.0)
    assert (await mount.status()).slewing
    await mount.abort_slew()
    assert not (await mount.status()).slewing


async def test_sync_moves_the_model(mount, mount_model):
    await mount.set_tracking(True)
    status = await mount.status()
    await mount.sync_to_radec((status.ra_deg + 0.5) % 360, status.dec_deg + 0.25)
    after = await mount.status()
    assert after.ra_deg == pytest.approx((status.ra_deg + 0.5) % 360, abs=1 / 3600)
    assert after.dec_deg == pytest.approx(status.dec_deg + 0.25, abs=1 / 3600)
    assert mount_model.pointing().dec_deg == pytest.approx(status.dec_deg + 0.25, abs=1 / 3600)


async def test_pty_and_tcp_clients_share_one_mount(mount_sim, mount, link, site, clock):
    other_link = "tcp" if link == "pty" else "pty"
    other = SerialLX200Mount(
        "mount2",
        PySerialTransport(url_of(mount_sim, other_link), timeout_s=TIMEOUT_S),
        timeout_s=TIMEOUT_S,
        clock=clock,
    )
    await other.connect()
    try:
        await mount.slew_to_altaz(50.0, 150.0)
        assert (await other.status()).slewing
        await settled(other)
        assert (await mount.status()).az_deg == pytest.approx(150.0, abs=1 / 3600)
    finally:
        await other.disconnect()


@pytest.fixture
async def meade_sim(mount_model):
    interpreter = LX200Interpreter(mount_model, flavor="meade")
    async with SerialSimulator(interpreter, name="meade") as sim:
        yield sim


async def test_generic_meade_over_a_pty(meade_sim, site, clock):
    interpreter = meade_sim.interpreter
    assert not interpreter.high_precision  # a Meade powers up in low precision
    transport = PySerialTransport(meade_sim.path, timeout_s=TIMEOUT_S)
    mount = SerialLX200Mount("meade", transport, timeout_s=TIMEOUT_S, site=site, clock=clock)
    await mount.connect()
    try:
        assert mount.flavor == "meade"
        assert interpreter.high_precision and "U" in interpreter.commands
        assert interpreter.date is not None  # the planetary-data strings were read past
        status = await mount.status()
        assert status.tracking and status.pier_side == PierSide.UNKNOWN
        ra = (status.sidereal_time_h * 15 + 30.0) % 360.0
        await mount.slew_to_radec(ra, 20.0)
        await settled(mount)
        status = await mount.status()
        # Whole seconds of RA on a generic Meade: 15 arcsec resolution.
        assert status.ra_deg == pytest.approx(ra, abs=0.5 * 15 / 3600 + 1 / 3600)
        assert status.dec_deg == pytest.approx(20.0, abs=1 / 3600)
        with pytest.raises(InvalidDeviceValueError, match="Object Below Horizon"):
            await mount.slew_to_radec((ra + 180) % 360, -60.0)
        await mount.park()
        await settled(mount)
        assert (await mount.status()).at_park
        with pytest.raises(DeviceBusyError):
            await mount.slew_to_radec(ra, 20.0)
    finally:
        await mount.disconnect()
