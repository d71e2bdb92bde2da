"""SerialFilterWheel against the QHY CFW simulator, through its pty and through socket://."""

from __future__ import annotations

import asyncio

import pytest

from obsctl.drivers.serial import PySerialTransport, SerialFilterWheel
from obsctl.errors import DeviceBusyError, DeviceError, InvalidDeviceValueError
from obsctl.simulators.serial_cfw import QhyCfwInterpreter

from .conftest import TIMEOUT_S, url_of


async def arrive(wheel: SerialFilterWheel) -> int:
    async with asyncio.timeout(5):
        while (position := await wheel.position()) is None:
            await asyncio.sleep(0.002)
    return position


async def test_connect_reads_version_and_position(wheel, wheel_sim, wheel_model):
    assert wheel.version == "20230415"
    assert await wheel.names() == ["L", "B", "V", "R", "I"]
    assert await wheel.focus_offsets() == list(wheel_model.focus_offsets)
    assert await wheel.position() == wheel_model.position == 0
    assert await wheel.is_connected()
    interpreter = wheel_sim.interpreter
    assert isinstance(interpreter, QhyCfwInterpreter)
    assert interpreter.commands[:3] == [b"VRS", b"MXP", b"NOW"]


async def test_move_is_none_until_the_echo(wheel, wheel_model, wheel_sim):
    await wheel.move(2)  # two slots: 1 s of simulated time, 10 ms real
    assert await wheel.position() is None
    assert await wheel.is_connected()  # a moving wheel is still there
    with pytest.raises(DeviceBusyError, match="still moving"):
        await wheel.move(3)
    assert await arrive(wheel) == 2 == wheel_model.position
    await wheel.move(2)  # where it is: the echo comes at once
    assert await arrive(wheel) == 2
    assert wheel_sim.interpreter.commands[-2:] == [b"2", b"2"]


@pytest.mark.parametrize("slot", [-1, 5, 9])
async def test_bad_slots_are_refused_before_sending(wheel, wheel_sim, slot):
    sent = len(wheel_sim.interpreter.commands)
    with pytest.raises(InvalidDeviceValueError):
        await wheel.move(slot)
    assert len(wheel_sim.interpreter.commands) == sent


async def test_configured_names_must_match_the_wheel(wheel_sim, link):
    transport = PySerialTransport(url_of(wheel_sim, link), timeout_s=TIMEOUT_S)
    wheel = SerialFilterWheel("filter_wheel", transport, names=("L", "R", "G"))
    try:
        with pytest.raises(DeviceError, match="5 slots but 3 filter names"):
            await wheel.connect()
    finally:
        await wheel.disconnect()


async def test_unnamed_wheel_gets_slot_names(wheel_sim, link):
    transport = PySerialTransport(url_of(wheel_sim, link), timeout_s=TIMEOUT_S)
    wheel = SerialFilterWheel("filter_wheel", transport, timeout_s=TIMEOUT_S)
    await wheel.connect()
    try:
        assert await wheel.names() == ["Filter 1", "Filter 2", "Filter 3", "Filter 4", "Filter 5"]
        assert await wheel.focus_offsets() == [0, 0, 0, 0, 0]
    finally:
        await wheel.disconnect()
    assert not await wheel.is_connected()
