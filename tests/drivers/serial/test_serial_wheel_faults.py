"""Every serial-line fault on the filter wheel becomes the right typed error, then recovers."""

from __future__ import annotations

import asyncio
import time

import pytest

from obsctl.errors import DeviceError, DeviceTimeoutError
from obsctl.simulators.serial_server import SerialFault

from .conftest import TIMEOUT_S
from .test_serial_faults import FAULTS, SLACK_S, fault_id, raises_within


@pytest.mark.parametrize(("fault", "error"), FAULTS, ids=fault_id)
async def test_filter_wheel_faults(wheel, wheel_sim, fault, error):
    wheel_sim.faults.set(fault)
    err = await raises_within(error, wheel.position(), TIMEOUT_S)
    if error is DeviceError:
        assert type(err) is DeviceError and "garbled reply to NOW" in str(err)
    wheel_sim.faults.clear()
    assert await wheel.position() == 0
    await wheel.move(1)
    async with asyncio.timeout(5):
        while await wheel.position() is None:
            await asyncio.sleep(0.002)
    assert await wheel.position() == 1


async def test_a_lost_move_echo_times_out_the_move(wheel, wheel_sim, wheel_model):
    wheel_sim.faults.set(SerialFault(kind="silence"))
    await wheel.move(3)
    start = time.monotonic()
    with pytest.raises(DeviceTimeoutError, match=r"move to slot 3 not finished within 0\.5 s"):
        async with asyncio.timeout(5):
            while await wheel.position() is None:
                await asyncio.sleep(0.005)
    assert time.monotonic() - start < wheel.move_timeout_s + SLACK_S
    wheel_sim.faults.clear()
    assert await wheel.position() == 3 == wheel_model.position  # it did move


async def test_a_garbled_move_echo(wheel, wheel_sim):
    wheel_sim.faults.set(SerialFault(kind="garbage"))
    await wheel.move(4)
    with pytest.raises(DeviceError, match="garbled reply to move to 4"):
        async with asyncio.timeout(5):
            while await wheel.position() is None:
                await asyncio.sleep(0.002)
    wheel_sim.faults.clear()
    assert await wheel.position() == 4
