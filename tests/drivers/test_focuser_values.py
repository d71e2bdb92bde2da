"""A focuser driver's odd answers and the moves the driver refuses before sending anything.

Real focuser drivers answer ``Position`` and the limits as floats or strings, report a
``Temperature`` of ``"n/a"`` or NaN, and lack ``StepSize``; a relative focuser answers
NotImplemented for ``Position``. obsctl checks a move against ``MaxStep`` and
``MaxIncrement`` itself (ASCOM lets a driver clip instead of refusing). The server is a real
Alpaca HTTP server on 127.0.0.1 answering what each test scripts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from obsctl.drivers.alpaca import AlpacaFocuser
from obsctl.drivers.alpaca.focuser import _finite, _whole
from obsctl.errors import DeviceNotImplementedError, InvalidDeviceValueError

from .scripted_server import ScriptedServer, serving

ABSOLUTE = {"absolute": True, "maxstep": 10_000, "maxincrement": 2_000, "position": 5_000}


@contextlib.asynccontextmanager
async def driver(server: ScriptedServer) -> AsyncIterator[AlpacaFocuser]:
    async with serving(server, "focuser") as client:
        yield AlpacaFocuser("focuser", client, 0, timeout_s=2.0)


@pytest.mark.parametrize(
    ("raw", "steps"),
    [(5, 5), (5.0, 5), (" 12 ", 12), ("7.0", 7), (2.5, None), (True, None), ("in", None),
     (None, None), ([1], None)],
)  # fmt: skip
def test_step_counts_read_leniently(raw: object, steps: int | None) -> None:
    assert _whole(raw) == steps


@pytest.mark.parametrize("raw", ["n/a", float("nan"), float("inf"), True, None, {"t": 1}])
def test_a_temperature_that_is_no_number_reads_none(raw: object) -> None:
    assert _finite(raw) is None


async def test_odd_readings_do_not_stop_the_status() -> None:
    server = ScriptedServer()
    server.answers = ABSOLUTE | {"position": "5000", "ismoving": False, "temperature": "n/a"}
    server.errors["stepsize"] = 0x400
    server.errors["tempcompavailable"] = 0x400
    server.errors["tempcomp"] = 0x400
    async with driver(server) as focuser:
        status = await focuser.status()
        assert status.position == 5000 and status.temperature_c is None
        assert not status.moving and not status.temp_comp
        info = await focuser.info()
        assert info.absolute and info.max_step == 10_000 and info.max_increment == 2_000
        assert info.step_size_um is None and not info.temp_comp_available


async def test_moves_beyond_the_limits_are_refused_before_sending() -> None:
    server = ScriptedServer()
    server.answers = dict(ABSOLUTE)
    async with driver(server) as focuser:
        for wrong in (-1, 10_001):
            with pytest.raises(InvalidDeviceValueError, match=r"not in 0\.\.10000"):
                await focuser.move_to(wrong)
        with pytest.raises(InvalidDeviceValueError, match="MaxIncrement 2000"):
            await focuser.move_to(7_001)  # 2001 steps from 5000
        with pytest.raises(InvalidDeviceValueError, match="MaxIncrement 2000"):
            await focuser.move_by(-2_001)
        with pytest.raises(TypeError):
            await focuser.move_to(5_000.5)  # type: ignore[arg-type]
        assert server.puts == []
        await focuser.move_to(6_000)
        await focuser.move_by(-100)  # from the position the driver reports, 5000
        assert [(m, form["Position"]) for m, form in server.puts] == [
            ("move", "6000"),
            ("move", "4900"),
        ]


async def test_a_relative_focuser_moves_by_steps_only() -> None:
    server = ScriptedServer()
    server.answers = {"absolute": False, "maxstep": 50_000, "maxincrement": 1_000}
    server.errors["position"] = 0x400
    server.answers["ismoving"] = False
    async with driver(server) as focuser:
        assert (await focuser.status()).position is None
        with pytest.raises(DeviceNotImplementedError):
            await focuser.move_to(100)
        await focuser.move_by(-300)
        with pytest.raises(InvalidDeviceValueError):
            await focuser.move_by(1_001)
        assert [(m, form["Position"]) for m, form in server.puts] == [("move", "-300")]


async def test_temp_comp_off_without_compensation_is_no_error() -> None:
    server = ScriptedServer()
    server.errors["tempcomp"] = 0x400
    async with driver(server) as focuser:
        await focuser.set_temp_comp(False)
        with pytest.raises(DeviceNotImplementedError):
            await focuser.set_temp_comp(True)


async def test_limits_that_are_not_step_counts_are_an_error() -> None:
    server = ScriptedServer()
    server.answers = ABSOLUTE | {"maxstep": "lots"}
    async with driver(server) as focuser:
        with pytest.raises(InvalidDeviceValueError, match="not step counts"):
            await focuser.info()
        assert server.puts == []
