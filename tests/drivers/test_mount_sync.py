"""What the Alpaca mount driver sends for a sync, and a mount that cannot sync.

The server is a real Alpaca HTTP server on 127.0.0.1 answering what each test scripts. The
sync against the simulator (position, park, JNow) is in the contract suite and in
``test_alpaca_quirks.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from obsctl.drivers.alpaca import AlpacaMount
from obsctl.errors import DeviceNotImplementedError, InvalidDeviceValueError

from .scripted_server import ScriptedServer, serving

J2000_MOUNT = {"connected": True, "connecting": False, "equatorialsystem": 2}


@contextlib.asynccontextmanager
async def driver(server: ScriptedServer) -> AsyncIterator[AlpacaMount]:
    async with serving(server, "telescope") as client:
        mount = AlpacaMount("mount", client, 0, timeout_s=2.0, connect_timeout_s=2.0)
        await mount.connect()
        yield mount


async def test_sync_sends_hours_and_degrees() -> None:
    server = ScriptedServer()
    server.answers = dict(J2000_MOUNT)
    async with driver(server) as mount:
        await mount.sync_to_radec(-15.0, -20.5)  # RA wraps to 345 deg, 23 h
        syncs = [
            (form["RightAscension"], form["Declination"])
            for member, form in server.puts
            if member == "synctocoordinates"
        ]
        assert syncs == [("23.0", "-20.5")]


async def test_off_sky_positions_are_refused_before_sending() -> None:
    server = ScriptedServer()
    server.answers = dict(J2000_MOUNT)
    async with driver(server) as mount:
        for ra, dec in ((10.0, 90.5), (float("nan"), 0.0)):
            with pytest.raises(InvalidDeviceValueError):
                await mount.sync_to_radec(ra, dec)
        assert all(member != "synctocoordinates" for member, _ in server.puts)


async def test_a_mount_that_cannot_sync_says_not_implemented() -> None:
    server = ScriptedServer()
    server.answers = J2000_MOUNT | {"cansync": False}
    # ASCOM: SyncToCoordinates raises MethodNotImplemented (0x400) when CanSync is false.
    server.errors["synctocoordinates"] = 0x400
    async with driver(server) as mount:
        with pytest.raises(DeviceNotImplementedError):
            await mount.sync_to_radec(10.0, 20.0)
