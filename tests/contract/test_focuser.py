"""The `Focuser` contract over every implementation: moves, limits, halt, temperature.

Times are simulated seconds on the shared clock (100 per real second). The truth is the
simulator's configuration: a move of ``d`` steps takes ``d / SPEED_STEPS_S`` seconds, the
probe reads the configured start temperature plus its drift.
"""

from __future__ import annotations

import pytest

from obsctl.config import SimulatedCameraConfig, SimulatedFocuserConfig, SimulatorConfig
from obsctl.devices import Focuser
from obsctl.errors import (
    DeviceNotConnectedError,
    DeviceNotImplementedError,
    InvalidDeviceValueError,
)

from ..conftest import SPEED
from ._wait import until
from .conftest import NOT_SERIAL

MAX_STEP = 20_000
MAX_INCREMENT = 5_000
SPEED_STEPS_S = 100.0
START = 10_000
START_C = 5.0
DRIFT_C_PER_H = -2.0
#: Simulated seconds a poll may lag behind an arrival (0.4 s of real time on a busy machine).
SLACK_S = 40.0

pytestmark = pytest.mark.parametrize("devices", NOT_SERIAL, indirect=True)


@pytest.fixture
def sim_config() -> SimulatorConfig:
    """The simulators with a focuser."""
    return SimulatorConfig(
        start="never",
        port=0,
        discovery_port=None,
        speed=SPEED,
        camera=SimulatedCameraConfig(width_px=64, height_px=48),
        focuser=SimulatedFocuserConfig(
            max_step=MAX_STEP,
            max_increment=MAX_INCREMENT,
            step_size_um=3.76,
            speed_steps_s=SPEED_STEPS_S,
            start_position=START,
            best_focus_steps=START + 200,
            temperature_c=START_C,
            temperature_drift_c_per_h=DRIFT_C_PER_H,
        ),
    )


async def arrives(device: Focuser) -> int:
    """Wait until the focuser stops; return its position."""

    async def stopped() -> bool:
        return not (await device.status()).moving

    await until(stopped)
    position = (await device.status()).position
    assert position is not None
    return position


async def test_info_and_initial_state(devices) -> None:
    device = devices.focuser
    assert isinstance(device, Focuser)
    info = await device.info()
    assert info.absolute and info.max_step == MAX_STEP and info.max_increment == MAX_INCREMENT
    assert info.step_size_um == pytest.approx(3.76)
    assert not info.temp_comp_available
    status = await device.status()
    assert status.position == START and not status.moving and not status.temp_comp


async def test_move_to_returns_at_once_and_arrives_in_its_time(devices, clock) -> None:
    device = devices.focuser
    start = clock.monotonic()
    await device.move_to(START + 2_000)
    assert (await device.status()).moving
    assert await arrives(device) == START + 2_000
    expected_s = 2_000 / SPEED_STEPS_S
    assert expected_s <= clock.monotonic() - start < expected_s + SLACK_S

    await device.move_by(-500)
    assert await arrives(device) == START + 1_500
    await device.move_by(300)
    assert await arrives(device) == START + 1_800


async def test_halt_stops_part_way(devices, clock) -> None:
    device = devices.focuser
    await device.move_to(START + 4_000)  # 40 simulated seconds
    await clock.sleep(10.0)
    await device.halt()
    status = await device.status()
    assert not status.moving and status.position is not None
    assert START + 500 <= status.position < START + 3_500
    await clock.sleep(20.0)
    assert (await device.status()).position == status.position  # it stays where it stopped


async def test_moves_beyond_the_limits_are_refused_and_nothing_moves(devices) -> None:
    device = devices.focuser
    for position in (-1, MAX_STEP + 1, START + MAX_INCREMENT + 1):
        with pytest.raises(InvalidDeviceValueError):
            await device.move_to(position)
    for steps in (MAX_INCREMENT + 1, -(MAX_INCREMENT + 1)):
        with pytest.raises(InvalidDeviceValueError):
            await device.move_by(steps)
    status = await device.status()
    assert status.position == START and not status.moving


async def test_temperature_follows_the_configured_drift(devices, clock) -> None:
    device = devices.focuser
    start = clock.monotonic()
    t0 = (await device.status()).temperature_c
    await clock.sleep(360.0)  # six minutes of simulated time, 3.6 s of real time
    t1 = (await device.status()).temperature_c
    assert t0 is not None and t1 is not None
    hours = (clock.monotonic() - start) / 3600.0
    assert t1 - t0 == pytest.approx(DRIFT_C_PER_H * hours, abs=0.02)
    assert START_C - 0.5 < t0 <= START_C


async def test_no_temperature_compensation_to_switch_on(devices) -> None:
    device = devices.focuser
    with pytest.raises(DeviceNotImplementedError):
        await device.set_temp_comp(True)
    await device.set_temp_comp(False)  # off is what it is: no error
    assert not (await device.status()).temp_comp


async def test_commands_need_a_connection(devices) -> None:
    device = devices.focuser
    await device.disconnect()
    with pytest.raises(DeviceNotConnectedError):
        await device.halt()
    await device.connect()
    await device.halt()
