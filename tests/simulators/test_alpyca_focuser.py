"""Unmodified alpyca (the ASCOM Initiative's client) drives our simulated focuser."""

from __future__ import annotations

import asyncio
import time

import pytest
from alpaca import management
from alpaca.exceptions import InvalidValueException, NotImplementedException
from alpaca.focuser import Focuser

from obsctl.config import SimulatedCameraConfig, SimulatedFocuserConfig, SimulatorConfig

from ..conftest import SPEED

SPEED_STEPS_S = 100.0  # 10,000 steps per real second at SPEED


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return SimulatorConfig(
        start="never",
        port=0,
        discovery_port=None,
        speed=SPEED,
        camera=SimulatedCameraConfig(width_px=64, height_px=48),
        focuser=SimulatedFocuserConfig(
            max_step=40_000,
            max_increment=10_000,
            speed_steps_s=SPEED_STEPS_S,
            start_position=20_000,
            best_focus_steps=20_000.0,
            temperature_c=7.5,
        ),
    )


def focuser_session(address: str) -> dict[str, object]:
    """What a third-party client does with a focuser; runs in a thread (alpyca blocks)."""
    out: dict[str, object] = {"devices": management.configureddevices(address)}
    device = Focuser(address, 0)
    device.Connected = True
    out["version"] = device.InterfaceVersion
    out["info"] = (device.Absolute, device.MaxStep, device.MaxIncrement, device.StepSize)
    out["start"] = (device.Position, device.IsMoving, device.TempCompAvailable, device.TempComp)
    out["temperature"] = device.Temperature
    device.Move(21_000)  # 1000 steps: 10 simulated seconds, 0.1 s real
    out["moving"] = device.IsMoving
    deadline = time.monotonic() + 10.0
    while device.IsMoving and time.monotonic() < deadline:
        time.sleep(0.01)
    out["arrived"] = device.Position
    for wrong in (40_001, 31_001):
        try:
            device.Move(wrong)
        except InvalidValueException:
            out.setdefault("refused", []).append(wrong)  # type: ignore[union-attr]
    try:
        device.TempComp = True
    except NotImplementedException:
        out["temp_comp"] = "not implemented"
    device.Move(29_000)
    time.sleep(0.02)
    device.Halt()
    out["halted"] = (device.IsMoving, device.Position)
    out["state"] = {item["Name"]: item["Value"] for item in device.DeviceState}
    device.Connected = False
    return out


async def test_alpyca_drives_the_focuser(sims) -> None:
    out = await asyncio.to_thread(focuser_session, f"127.0.0.1:{sims.port}")
    assert "Focuser" in {d["DeviceType"] for d in out["devices"]}
    assert out["version"] == 4
    assert out["info"] == (True, 40_000, 10_000, 1.0)
    assert out["start"] == (20_000, False, False, False)
    assert out["temperature"] == pytest.approx(7.5, abs=0.01)
    assert out["moving"] is True and out["arrived"] == 21_000
    assert out["refused"] == [40_001, 31_001]
    assert out["temp_comp"] == "not implemented"
    moving, position = out["halted"]
    assert moving is False and 21_000 < position < 29_000
    assert out["state"]["Position"] == position and out["state"]["IsMoving"] is False
