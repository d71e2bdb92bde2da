"""A flat panel driver's odd answers: states ASCOM does not define, V1 drivers, bad brightness.

Real CoverCalibrator drivers answer state numbers beyond the enumeration (``7``, ``-1``,
``true``, ``"open"``), which read as UNKNOWN: the device does not know, so neither does
obsctl. Drivers before ICoverCalibratorV2 lack ``CoverMoving`` and ``CalibratorChanging`` and
answer NotImplemented, HTTP 404 or (before Platform 7) HTTP 400 for them; the status then
reads motion from the states. A brightness beyond ``MaxBrightness`` is refused before
anything is sent. The server here is a real Alpaca HTTP server on 127.0.0.1 answering what
each test scripts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from obsctl.devices import CalibratorState, CoverState
from obsctl.drivers.alpaca import AlpacaCoverCalibrator
from obsctl.drivers.alpaca.covercalibrator import _calibrator, _cover
from obsctl.errors import InvalidDeviceValueError

from .scripted_server import ScriptedServer, serving


@pytest.mark.parametrize("odd", [6, -1, 99, True, "open", 2.5, None, [1], {"v": 1}])
def test_a_state_outside_the_enumeration_is_unknown(odd: object) -> None:
    assert _cover(odd) == CoverState.UNKNOWN
    assert _calibrator(odd) == CalibratorState.UNKNOWN


def test_states_in_the_enumeration_pass_through() -> None:
    assert _cover(3) == CoverState.OPEN and _cover("1") == CoverState.CLOSED
    assert _cover(2.0) == CoverState.MOVING and _cover(0) == CoverState.NOT_PRESENT
    assert _calibrator(3) == CalibratorState.READY
    assert _calibrator(" 2 ") == CalibratorState.NOT_READY


@contextlib.asynccontextmanager
async def driver(server: ScriptedServer) -> AsyncIterator[AlpacaCoverCalibrator]:
    async with serving(server, "covercalibrator") as client:
        yield AlpacaCoverCalibrator("panel", client, 0, timeout_s=2.0)


@pytest.mark.parametrize("absent", ["404", "400", "0x400"])
async def test_a_v1_driver_reads_motion_from_the_states(absent: str) -> None:
    server = ScriptedServer()
    server.answers = {"coverstate": 2, "calibratorstate": 2, "brightness": 80}
    for member in ("covermoving", "calibratorchanging"):
        if absent == "0x400":
            server.errors[member] = 0x400
        else:
            server.statuses[member] = int(absent)
    async with driver(server) as panel:
        status = await panel.status()
        assert status.cover == CoverState.MOVING and status.cover_moving
        assert status.calibrator == CalibratorState.NOT_READY and status.calibrator_changing
        assert status.brightness == 80
        server.answers |= {"coverstate": 3, "calibratorstate": 3}
        status = await panel.status()
        assert not status.cover_moving and not status.calibrator_changing


async def test_odd_states_and_a_missing_panel() -> None:
    server = ScriptedServer()
    server.answers = {"coverstate": 9, "calibratorstate": "warm", "covermoving": False}
    server.answers["calibratorchanging"] = False
    server.errors["brightness"] = 0x400  # no panel: Brightness is NotImplemented
    server.errors["maxbrightness"] = 0x400
    async with driver(server) as panel:
        status = await panel.status()
        assert status.cover == CoverState.UNKNOWN
        assert status.calibrator == CalibratorState.UNKNOWN and status.brightness == 0
        info = await panel.info()
        # Unknown is not NotPresent: the device may well have a cover and a panel.
        assert info.has_cover and info.has_calibrator and info.max_brightness == 0


async def test_brightness_beyond_max_is_refused_before_sending() -> None:
    server = ScriptedServer()
    server.answers = {"maxbrightness": 100}
    async with driver(server) as panel:
        for wrong in (-1, 101):
            with pytest.raises(InvalidDeviceValueError, match=r"not in 0\.\.100"):
                await panel.calibrator_on(wrong)
        assert server.puts == []
        await panel.calibrator_on(100)
        assert [(m, form["Brightness"]) for m, form in server.puts] == [("calibratoron", "100")]
        with pytest.raises(TypeError):
            await panel.calibrator_on(50.5)  # type: ignore[arg-type]
