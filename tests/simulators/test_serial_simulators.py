"""The serial simulators byte by byte: framing, replies of both LX200 flavours, the CFW, faults."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import pytest

from obsctl.config import SerialSimulatorConfig, SimulatedFilterWheelConfig
from obsctl.simulators.filterwheel_model import FilterWheelModel
from obsctl.simulators.serial_cfw import QhyCfwInterpreter
from obsctl.simulators.serial_lx200 import LX200Interpreter
from obsctl.simulators.serial_server import (
    SerialFault,
    SerialFaultInjector,
    SerialSimulator,
    running_serial_simulators,
)


def link_target(path: str) -> str | None:
    """Where a link points now, None when it is gone."""
    return os.path.realpath(path) if os.path.lexists(path) else None


class Client:
    """A raw TCP client of a simulator."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def ask(self, data: bytes, *, until: bytes | None = b"#", n: int = 0) -> bytes:
        self.writer.write(data)
        async with asyncio.timeout(2):
            if until is not None:
                return await self.reader.readuntil(until)
            return await self.reader.readexactly(n)

    async def silent(self, data: bytes, wait_s: float = 0.05) -> bool:
        self.writer.write(data)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self.reader.read(1)
                return False
        return True


@contextlib.asynccontextmanager
async def client_of(sim: SerialSimulator) -> AsyncIterator[Client]:
    assert sim.tcp_port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.tcp_port)
    try:
        yield Client(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


# --- LX200 framing and replies ------------------------------------------------------------


def test_lx200_framing(mount_model) -> None:
    interpreter = LX200Interpreter(mount_model)
    buffer = bytearray(b"#\x06#:GR#noise:GD#:Sr12:34:56#:GS")
    assert interpreter.split(buffer) == [b"\x06", b"GR", b"GD", b"Sr12:34:56"]
    assert buffer == b":GS"  # incomplete: kept for the next read
    buffer += b"#"
    assert interpreter.split(buffer) == [b"GS"]
    runaway = bytearray(b":" + b"x" * 100)
    assert interpreter.split(runaway) == []
    assert len(runaway) < 70


async def test_onstep_replies(mount_model) -> None:
    sim = SerialSimulator(LX200Interpreter(mount_model), name="m", tcp_port=0)
    async with sim, client_of(sim) as c:
        assert await c.ask(b"\x06", until=None, n=1) == b"G"
        assert await c.ask(b":GVP#") == b"On-Step#"
        assert len(await c.ask(b":GR#")) == len(b"HH:MM:SS#")
        assert len(await c.ask(b":GRa#")) == len(b"HH:MM:SS.SSSS#")
        assert (await c.ask(b":GD#"))[3:4] == b"*"
        assert await c.ask(b":GU#") == b"nNpEW0#"  # not tracking, idle, west of the pier
        assert await c.ask(b":Gm#") == b"W#"
        assert await c.ask(b":D#") == b"#"
        assert await c.ask(b":Sr25:00:00#", until=None, n=1) == b"0"
        assert await c.ask(b":Sr12:00:00.1234#", until=None, n=1) == b"1"
        assert await c.ask(b":Sd+95*00:00#", until=None, n=1) == b"0"
        assert await c.ask(b":Sd-10*30:00#", until=None, n=1) == b"1"
        assert await c.ask(b":XX#", until=None, n=1) == b"0"  # unknown: OnStep says 0
        assert await c.ask(b":hR#", until=None, n=1) == b"0"  # not parked
        assert await c.ask(b":CM#") == b"N/A#"


async def test_onstep_precision_toggle(mount_model) -> None:
    interpreter = LX200Interpreter(mount_model)
    async with SerialSimulator(interpreter, name="m", tcp_port=0) as sim, client_of(sim) as c:
        assert await c.silent(b":U#")
        low = await c.ask(b":GR#")
        assert len(low) == len(b"HH:MM.T#") and low[5:6] == b"."
        assert len(await c.ask(b":GD#")) == len(b"sDD*MM#")
        assert len(await c.ask(b":GZ#")) == len(b"DDD*MM#")
        assert await c.silent(b":U#")
        assert len(await c.ask(b":GA#")) == len(b"sDD*MM'SS#")


async def test_meade_replies(mount_model) -> None:
    interpreter = LX200Interpreter(mount_model, flavor="meade")
    async with SerialSimulator(interpreter, name="m", tcp_port=0) as sim, client_of(sim) as c:
        assert await c.ask(b"\x06", until=None, n=1) == b"P"
        assert await c.ask(b":GVP#") == b"LX200GPS#"
        assert (await c.ask(b":GD#"))[3:4] == b"\xdf"  # Meade's degree sign
        assert await c.silent(b":GU#")  # OnStep only: a Meade stays silent
        assert await c.silent(b":hR#")
        assert await c.ask(b":GW#") == b"GT1#"  # polar mount, tracking
        assert await c.ask(b":SG+00#", until=None, n=1) == b"0"  # Meade wants sHH.H
        assert await c.ask(b":SG+00.0#", until=None, n=1) == b"1"
        reply = await c.ask(b":SC03/07/25#")
        assert reply == b"1Updating Planetary Data#"
        assert await c.ask(b"", until=b"#") == b" " * 30 + b"#"
        assert await c.ask(b":Sr12:00:00.5#", until=None, n=1) == b"0"  # no fractions
        assert await c.ask(b":MS#") == b"2No target#"


async def test_site_and_time_are_recorded_not_simulated(mount_model, caplog) -> None:
    interpreter = LX200Interpreter(mount_model)
    async with SerialSimulator(interpreter, name="m", tcp_port=0) as sim, client_of(sim) as c:
        assert await c.ask(b":St-33*30#", until=None, n=1) == b"1"
        assert await c.ask(b":Sg-010*00#", until=None, n=1) == b"1"
        assert await c.ask(b":SG-05:30#", until=None, n=1) == b"1"
        assert await c.ask(b":SL21:04:09#", until=None, n=1) == b"1"
        assert await c.ask(b":SL25:04:09#", until=None, n=1) == b"0"
    assert interpreter.site_latitude_deg == -33.5
    assert interpreter.site_longitude_west_deg == -10.0
    assert interpreter.utc_offset_h == -5.5
    assert interpreter.local_time == "21:04:09"
    assert mount_model.site.latitude_deg == 28.76  # the simulation stays where it is
    assert "the simulation stays" in caplog.text


# --- QHY CFW ------------------------------------------------------------------------------


def test_cfw_framing(wheel_model) -> None:
    interpreter = QhyCfwInterpreter(wheel_model)
    buffer = bytearray(b"VRS3xyzNOWMX")
    assert interpreter.split(buffer) == [b"VRS", b"3", b"NOW"]
    assert buffer == b"MX"
    buffer += b"P"
    assert interpreter.split(buffer) == [b"MXP"]
    with pytest.raises(ValueError, match="8 characters"):
        QhyCfwInterpreter(wheel_model, version="1.0")


async def test_cfw_replies_and_move_echo(wheel_model, clock) -> None:
    sim = SerialSimulator(QhyCfwInterpreter(wheel_model), name="w", tcp_port=0)
    async with sim, client_of(sim) as c:
        assert await c.ask(b"VRS", until=None, n=8) == b"20230415"
        assert await c.ask(b"MXP", until=None, n=1) == b"5"
        assert await c.ask(b"NOW", until=None, n=1) == b"0"
        start = clock.monotonic()
        assert await c.ask(b"2", until=None, n=1) == b"2"
        # The echo comes when the wheel arrives: two slots at 0.5 s each.
        assert clock.monotonic() - start >= 2 * wheel_model.config.move_time_s
        assert wheel_model.position == 2
        assert await c.silent(b"7")  # no slot 7: ignored
        assert await c.ask(b"NOW", until=None, n=1) == b"2"


async def test_cfw_large_wheel_reports_f(clock) -> None:
    names = tuple(f"F{i}" for i in range(12))
    model = FilterWheelModel(
        SimulatedFilterWheelConfig(names=names, focus_offsets=(0,) * 12), clock
    )
    sim = SerialSimulator(QhyCfwInterpreter(model), name="w", tcp_port=0)
    async with sim, client_of(sim) as c:
        assert await c.ask(b"MXP", until=None, n=1) == b"F"


# --- faults -------------------------------------------------------------------------------


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        SerialFault(kind="hang")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seconds"):
        SerialFault(kind="slow", seconds=-1)
    with pytest.raises(ValueError, match="count"):
        SerialFault(kind="silence", count=0)


async def test_fault_injector_counts_and_releases() -> None:
    changes: list[object] = []
    injector = SerialFaultInjector(changes.append)
    injector.set(SerialFault(kind="garbage", count=2))
    assert injector.take() is not None and injector.take() is not None
    assert injector.take() is None and injector.fault is None
    assert changes[-1] is None  # used up: reported like a clear
    injector.set(SerialFault(kind="slow", seconds=10))
    waiter = asyncio.create_task(injector.wait_released(10))
    await asyncio.sleep(0.01)
    injector.clear()
    async with asyncio.timeout(1):
        await waiter


async def test_garbage_keeps_the_terminator(mount_model) -> None:
    sim = SerialSimulator(LX200Interpreter(mount_model), name="m", tcp_port=0, seed=3)
    async with sim, client_of(sim) as c:
        sim.faults.set(SerialFault(kind="garbage"))
        noise = await c.ask(b":GVP#")
        assert noise.endswith(b"#") and len(noise) == len(b"On-Step#")
        assert all(b >= 0x80 for b in noise[:-1])
        one = await c.ask(b":Sd+10*00:00#", until=None, n=1)
        assert one[0] >= 0x80
        assert await c.silent(b":Q#")  # no reply, so nothing to garble


async def test_silence_executes_but_loses_the_reply(mount_model) -> None:
    sim = SerialSimulator(LX200Interpreter(mount_model), name="m", tcp_port=0)
    async with sim, client_of(sim) as c:
        sim.faults.set(SerialFault(kind="silence"))
        assert await c.silent(b":Te#")
        assert mount_model.tracking
        sim.faults.clear()
        assert await c.ask(b":GVP#") == b"On-Step#"


async def test_slow_reply_is_released_by_clear(mount_model) -> None:
    sim = SerialSimulator(LX200Interpreter(mount_model), name="m", tcp_port=0)
    async with sim, client_of(sim) as c:
        sim.faults.set(SerialFault(kind="slow", seconds=30))
        c.writer.write(b":GVP#")
        await asyncio.sleep(0.05)
        sim.faults.clear()
        async with asyncio.timeout(1):
            assert await c.reader.readuntil(b"#") == b"On-Step#"


async def test_tcp_drop_closes_the_connection(mount_model) -> None:
    sim = SerialSimulator(LX200Interpreter(mount_model), name="m", tcp_port=0)
    async with sim:
        sim.faults.set(SerialFault(kind="drop", count=1))
        async with client_of(sim) as c:
            c.writer.write(b":GVP#")
            async with asyncio.timeout(1):
                assert await c.reader.read() == b""  # closed without a reply
        async with client_of(sim) as c:
            assert await c.ask(b":GVP#") == b"On-Step#"


async def test_pty_drop_removes_the_link_until_cleared(mount_model) -> None:
    sim = SerialSimulator(LX200Interpreter(mount_model), name="m")
    async with sim:
        path = sim.path
        assert path is not None and link_target(path) == sim.pty_name
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        try:
            sim.faults.set(SerialFault(kind="drop"))
            os.write(fd, b":GVP#")
            async with asyncio.timeout(1):
                while sim.pty_name is not None:
                    await asyncio.sleep(0.005)
            assert link_target(path) is None
        finally:
            os.close(fd)
        sim.faults.clear()
        assert sim.pty_name is not None
        assert link_target(path) == sim.pty_name  # the same link, a fresh pty


# --- the observatory's serial simulators --------------------------------------------------


async def test_running_serial_simulators(mount_model, wheel_model) -> None:
    class Observatory:
        mount = mount_model
        filter_wheel = wheel_model

    config = SerialSimulatorConfig(mount_tcp_port=0, filter_wheel_tcp_port=0)
    async with running_serial_simulators(Observatory(), config) as sims:
        assert sims.mount is not None and sims.filter_wheel is not None
        assert sims.mount.path and sims.filter_wheel.path
        async with client_of(sims.mount) as c:
            assert await c.ask(b":GVP#") == b"On-Step#"
        async with client_of(sims.filter_wheel) as c:
            assert await c.ask(b"MXP", until=None, n=1) == b"5"
        link = sims.mount.path
    assert link_target(link) is None  # cleaned up
    async with running_serial_simulators(Observatory(), SerialSimulatorConfig(pty=False)) as sims:
        assert sims.mount is None and sims.filter_wheel is None
