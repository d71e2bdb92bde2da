"""The Alpaca drivers against simulators that deviate from the spec as real servers do.

Each test runs a server with one quirk (or the few that belong together) over real HTTP and
checks that the driver gives the typed error, value or position it gives against a server
that follows the spec.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest

from obsctl.config import SimulatedMountConfig, parse_config
from obsctl.coords import j2000_to_jnow
from obsctl.drivers.alpaca import (
    AlpacaCamera,
    AlpacaClient,
    AlpacaFilterWheel,
    AlpacaMount,
)
from obsctl.drivers.alpaca.mount import check_radec
from obsctl.errors import (
    ConfigError,
    DeviceBusyError,
    DeviceNotConnectedError,
    DeviceNotImplementedError,
    DeviceParkedError,
    InvalidDeviceValueError,
)
from obsctl.simulators.alpaca_server import AlpacaServer
from obsctl.simulators.observatory import SimulatedObservatory
from obsctl.simulators.quirks import ALL_QUIRKS, Quirks

from ..contract._wait import until

TIMEOUTS = {"timeout_s": 2.0, "connect_timeout_s": 2.0}


@pytest.fixture
def serve(sim_config, site, telescope, clock):
    """Start a server with the given quirks (and mount system) over fresh models."""

    @asynccontextmanager
    async def start(*flags: str, topocentric: bool = False) -> AsyncIterator[AlpacaServer]:
        observatory = SimulatedObservatory.from_config(sim_config, site, telescope, clock)
        quirks = Quirks(frozenset(flags), utc_offset_h=-1)  # type: ignore[arg-type]
        server = AlpacaServer(observatory, port=0, quirks=quirks, topocentric=topocentric)
        await server.start()
        client = AlpacaClient(f"127.0.0.1:{server.port}")
        server.client = client  # type: ignore[attr-defined]
        try:
            yield server
        finally:
            await client.close()
            await server.stop()

    return start


def mount_of(server: AlpacaServer, clock, system: str = "driver", number: int = 0) -> AlpacaMount:
    return AlpacaMount(
        "mount", server.client, number, equatorial_system=system, clock=clock, **TIMEOUTS
    )


async def high_radec(mount: AlpacaMount) -> tuple[float, float]:
    status = await mount.status()
    assert status.sidereal_time_h is not None
    return (status.sidereal_time_h * 15.0 + 20.0) % 360.0, 30.0


async def settled(mount: AlpacaMount) -> None:
    async def done() -> bool:
        return not (await mount.status()).slewing

    await until(done)


@pytest.mark.parametrize("flags", [(), ("status_422",)])
async def test_malformed_request_is_a_request_error(serve, flags) -> None:
    async with serve(*flags) as server:
        client = server.client
        await client.call("PUT", "filterwheel", 0, "connected", device="wheel", timeout_s=2,
                          fields={"Connected": "True"})  # fmt: skip
        with pytest.raises(InvalidDeviceValueError, match=r"HTTP 4(00|22)"):
            await client.call(
                "PUT", "filterwheel", 0, "position", device="wheel", timeout_s=2,
                fields={"Position": "two"},
            )  # fmt: skip


@pytest.mark.parametrize("flags", [(), ("invalid_value_400",), ("com_error_numbers",)])
async def test_refused_values_are_invalid_values(serve, flags) -> None:
    async with serve(*flags) as server:
        wheel = AlpacaFilterWheel("wheel", server.client, 0, **TIMEOUTS)
        camera = AlpacaCamera("camera", server.client, 0, **TIMEOUTS)
        await wheel.connect()
        await camera.connect()
        with pytest.raises(InvalidDeviceValueError) as info:
            await wheel.move(99)
        if "com_error_numbers" in flags:
            assert info.value.ascom_error == 0x401
        with pytest.raises(InvalidDeviceValueError):
            await camera.start_exposure(-1.0)


@pytest.mark.parametrize(
    "flags", [(), ("missing_device_200",), ("missing_device_200", "com_error_numbers")]
)
async def test_missing_device_is_not_connected_naming_it(serve, clock, flags) -> None:
    async with serve(*flags) as server:
        mount = mount_of(server, clock, number=3)
        with pytest.raises(DeviceNotConnectedError, match=r"has no telescope #3") as info:
            await mount.connect()
        assert "device_number" in str(info.value)
        # The server's real mount is unaffected.
        await mount_of(server, clock).connect()


async def test_platform6_server_with_404_for_unknown_members(serve, clock) -> None:
    async with serve("unknown_member_404") as server:
        camera = AlpacaCamera("camera", server.client, 0, **TIMEOUTS)
        await camera.connect()  # Connect is 404 here: falls back to Connected = True
        assert await camera.is_connected()
        status = await camera.status()
        assert status.state.name == "IDLE"
        with pytest.raises(DeviceNotImplementedError, match="HTTP 404"):
            await server.client.call("GET", "camera", 0, "gains", device="camera", timeout_s=2)
        await camera.disconnect()
        assert not await camera.is_connected()


@pytest.mark.parametrize(
    "flags", [(), ("action_not_implemented",), ("action_not_implemented", "com_error_numbers")]
)
async def test_action_not_implemented_where_invalid_operation_is_meant(serve, clock, flags) -> None:
    async with serve(*flags) as server:
        camera = AlpacaCamera("camera", server.client, 0, **TIMEOUTS)
        await camera.connect()
        # No image yet: 0x40B InvalidOperation (here 0x40C), busy rather than unsupported.
        with pytest.raises(DeviceBusyError):
            await server.client.call("GET", "camera", 0, "imagearray", device="camera",
                                     timeout_s=2)  # fmt: skip
        await camera.start_exposure(5.0)
        with pytest.raises(DeviceBusyError):
            await camera.start_exposure(5.0)
        await camera.abort_exposure()
        mount = mount_of(server, clock)
        await mount.connect()
        await mount.unpark()
        await mount.set_tracking(True)
        with pytest.raises(DeviceBusyError, match="tracking"):  # SlewToAltAz while tracking
            await mount.slew_to_altaz(45.0, 90.0)
        await mount.park()
        await settled(mount)
        with pytest.raises(DeviceParkedError):
            await mount.slew_to_altaz(45.0, 90.0)


async def test_zero_transaction_ids_and_offset_times(serve, clock) -> None:
    async with serve("transaction_id_zero", "timestamp_utc_offset") as server:
        for imagebytes in (True, False):
            camera = AlpacaCamera(
                "camera", server.client, 0, prefer_imagebytes=imagebytes, **TIMEOUTS
            )
            await camera.connect()
            await camera.start_exposure(1.0)

            async def ready(cam: AlpacaCamera = camera) -> bool:
                return (await cam.status()).image_ready

            await until(ready)
            image = await camera.download()
            model = server.observatory.camera
            np.testing.assert_array_equal(image.data, model.last_image)
            # The server sends local time at UTC-1 with its offset: the same instant.
            truth = model.last_exposure.start_time
            assert image.metadata.start_time is not None
            assert abs((image.metadata.start_time - truth).total_seconds()) < 1e-5


async def test_equatorial_other_is_a_warning_naming_the_key(serve, clock, caplog) -> None:
    async with serve("equatorial_other") as server:
        mount = mount_of(server, clock)
        with caplog.at_level(logging.WARNING, logger="obsctl.drivers.alpaca.mount"):
            await mount.connect()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "EquatorialSystem 0" in warnings[0] and "equatorial_system" in warnings[0]
        # Taken as J2000, which this mount is.
        await mount.unpark()
        await mount.set_tracking(True)
        ra, dec = await high_radec(mount)
        await mount.slew_to_radec(ra, dec)
        await settled(mount)
        pointing = server.observatory.mount.pointing()
        assert pointing.ra_deg == pytest.approx(ra, abs=1e-3)
        assert pointing.dec_deg == pytest.approx(dec, abs=1e-3)


async def test_topocentric_mount_that_says_other_needs_the_key(serve, clock) -> None:
    async with serve("equatorial_other", topocentric=True) as server:
        model = server.observatory.mount
        mount = mount_of(server, clock, system="topocentric")
        await mount.connect()
        await mount.unpark()
        await mount.set_tracking(True)
        ra, dec = await high_radec(mount)
        await mount.slew_to_radec(ra, dec)
        await settled(mount)
        # The model works in J2000: the mount points where the caller asked.
        assert model.pointing().ra_deg == pytest.approx(ra, abs=2e-3)
        assert model.pointing().dec_deg == pytest.approx(dec, abs=2e-3)
        status = await mount.status()
        assert status.ra_deg == pytest.approx(ra, abs=2e-3)
        assert status.dec_deg == pytest.approx(dec, abs=2e-3)
        # Believing the driver (J2000 assumed) would land off by the precession since 2000.
        now_ra, now_dec = j2000_to_jnow(ra, dec, clock.now())
        assert abs(now_ra - ra) + abs(now_dec - dec) > 0.2


async def test_topocentric_sync_is_converted_to_the_equinox_of_date(serve, clock) -> None:
    async with serve(topocentric=True) as server:
        model = server.observatory.mount
        mount = mount_of(server, clock)
        await mount.connect()
        await mount.unpark()
        await mount.set_tracking(True)
        ra, dec = await high_radec(mount)
        await mount.slew_to_radec(ra, dec)
        await settled(mount)
        solved_ra, solved_dec = ra + 0.5, dec + 0.25
        await mount.sync_to_radec(solved_ra, solved_dec)
        # The model works in J2000: it was told the J2000 position the caller gave.
        assert model.pointing().ra_deg == pytest.approx(solved_ra, abs=2e-3)
        assert model.pointing().dec_deg == pytest.approx(solved_dec, abs=2e-3)
        status = await mount.status()
        assert status.ra_deg == pytest.approx(solved_ra, abs=2e-3)
        assert status.dec_deg == pytest.approx(solved_dec, abs=2e-3)
        # Sent unconverted, the sync would be off by the precession since 2000.
        now_ra, now_dec = j2000_to_jnow(solved_ra, solved_dec, clock.now())
        assert abs(now_ra - solved_ra) + abs(now_dec - solved_dec) > 0.2


@pytest.mark.parametrize("dec", [95.0, -90.5, float("nan")])
async def test_out_of_range_dec_is_refused_before_converting(serve, clock, dec) -> None:
    async with serve(topocentric=True) as server:
        model = server.observatory.mount
        mount = mount_of(server, clock, system="topocentric")
        await mount.connect()
        await mount.unpark()
        before = model.pointing()
        ra, _ = await high_radec(mount)
        with pytest.raises(InvalidDeviceValueError, match="no J2000 position"):
            await mount.slew_to_radec(ra, dec)
        assert not model.slewing
        assert model.pointing().dec_deg == pytest.approx(before.dec_deg, abs=0.1)


def test_check_radec_accepts_the_poles_and_any_finite_ra() -> None:
    for ra, dec in ((0.0, 90.0), (359.9, -90.0), (-15.0, 0.0), (720.5, 45.0)):
        check_radec(ra, dec, device="mount")
    with pytest.raises(InvalidDeviceValueError):
        check_radec(float("inf"), 0.0, device="mount")


async def test_topocentric_server_checks_wire_coordinates_before_converting(serve) -> None:
    async with serve(topocentric=True) as server:
        client = server.client
        await client.call("PUT", "telescope", 0, "connected", device="mount", timeout_s=2,
                          fields={"Connected": "True"})  # fmt: skip
        await client.call("PUT", "telescope", 0, "unpark", device="mount", timeout_s=2)
        with pytest.raises(InvalidDeviceValueError):
            await client.call(
                "PUT", "telescope", 0, "slewtocoordinatesasync", device="mount", timeout_s=2,
                fields={"RightAscension": "1.0", "Declination": "95.0"},
            )  # fmt: skip
        assert not server.observatory.mount.slewing


def test_equatorial_system_key_is_for_mounts_only() -> None:
    base = {
        "version": 1,
        "site": {"name": "T", "latitude_deg": 28.0, "longitude_deg": -17.0},
        "telescope": {"focal_length_mm": 800, "aperture_mm": 200},
    }
    alpaca = {"driver": "alpaca", "address": "127.0.0.1:11111"}
    ok = parse_config(
        base
        | {"devices": {"camera": alpaca, "mount": alpaca | {"equatorial_system": "topocentric"}}},
        path="t.toml",  # type: ignore[arg-type]
    )
    assert ok.devices.mount.equatorial_system == "topocentric"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="equatorial_system applies to a mount only"):
        parse_config(
            base | {"devices": {"camera": alpaca | {"equatorial_system": "j2000"}}},
            path="t.toml",  # type: ignore[arg-type]
        )
    with pytest.raises(ConfigError, match="equatorial_system"):
        parse_config(
            base
            | {"devices": {"camera": alpaca, "mount": alpaca | {"equatorial_system": "b1950"}}},
            path="t.toml",  # type: ignore[arg-type]
        )


def test_simulated_mount_system_and_quirk_names() -> None:
    assert SimulatedMountConfig().equatorial_system == "j2000"
    assert set(ALL_QUIRKS) >= {
        "status_422", "missing_device_200", "unknown_member_404", "action_not_implemented",
        "transaction_id_zero", "timestamp_utc_offset", "equatorial_other",
    }  # fmt: skip
