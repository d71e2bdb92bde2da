"""Unmodified alpyca (the ASCOM Initiative's client) drives our simulated flat panel and cover."""

from __future__ import annotations

import asyncio
import time

import pytest
from alpaca import management
from alpaca.covercalibrator import CalibratorStatus, CoverCalibrator, CoverStatus
from alpaca.exceptions import InvalidValueException, NotImplementedException

from obsctl.config import SimulatedCameraConfig, SimulatedCoverCalibratorConfig, SimulatorConfig

from ..conftest import SPEED

COVER_S = 60.0
WARMUP_S = 30.0


def _wait(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture(params=[True, False], ids=["flip_flat", "panel_alone"])
def sim_config(request) -> SimulatorConfig:
    return SimulatorConfig(
        start="never",
        port=0,
        discovery_port=None,
        speed=SPEED,
        camera=SimulatedCameraConfig(width_px=64, height_px=48),
        cover_calibrator=SimulatedCoverCalibratorConfig(
            max_brightness=200,
            cover_time_s=COVER_S,
            warmup_s=WARMUP_S,
            has_cover=request.param,
            start_open=False,
        ),
    )


def panel_session(address: str) -> dict[str, object]:
    """What a third-party client does with a flip-flat; runs in a thread (alpyca blocks)."""
    out: dict[str, object] = {"devices": management.configureddevices(address)}
    device = CoverCalibrator(address, 0)
    device.Connected = True
    out["version"] = device.InterfaceVersion
    out["start"] = (device.CoverState, device.CalibratorState, device.MaxBrightness)
    if device.CoverState != CoverStatus.NotPresent:
        device.OpenCover()
        out["opening"] = (device.CoverState, device.CoverMoving)
        _wait(lambda: device.CoverState == CoverStatus.Open)
        out["open"] = device.CoverMoving
        device.CloseCover()
        time.sleep(0.1)  # 10 simulated seconds of the 60
        device.HaltCover()
        out["halted"] = (device.CoverState, device.CoverMoving)
    else:
        try:
            device.OpenCover()
        except NotImplementedException:
            out["opening"] = "not implemented"
    try:
        device.CalibratorOn(201)
    except InvalidValueException:
        out["too_bright"] = "invalid"
    device.CalibratorOn(150)
    out["warming"] = (device.CalibratorState, device.CalibratorChanging, device.Brightness)
    _wait(lambda: device.CalibratorState == CalibratorStatus.Ready)
    out["ready"] = (device.CalibratorChanging, device.Brightness)
    out["state"] = {item["Name"]: item["Value"] for item in device.DeviceState}
    device.CalibratorOff()
    out["off"] = (device.CalibratorState, device.Brightness)
    device.Connected = False
    return out


async def test_alpyca_drives_the_flat_panel(sims, sim_config) -> None:
    out = await asyncio.to_thread(panel_session, f"127.0.0.1:{sims.port}")
    assert "CoverCalibrator" in {d["DeviceType"] for d in out["devices"]}
    assert out["version"] == 2
    has_cover = sim_config.cover_calibrator.has_cover
    first = CoverStatus.Closed if has_cover else CoverStatus.NotPresent
    assert out["start"] == (first, CalibratorStatus.Off, 200)
    if has_cover:
        assert out["opening"] == (CoverStatus.Moving, True)
        assert out["open"] is False
        assert out["halted"] == (CoverStatus.Unknown, False)
    else:
        assert out["opening"] == "not implemented"
    assert out["too_bright"] == "invalid"
    assert out["warming"] == (CalibratorStatus.NotReady, True, 150)
    assert out["ready"] == (False, 150)
    state = out["state"]
    assert state["CalibratorState"] == CalibratorStatus.Ready.value
    assert state["Brightness"] == 150 and state["CoverMoving"] is False
    assert state["CoverState"] == (CoverStatus.Unknown if has_cover else first).value
    assert out["off"] == (CalibratorStatus.Off, 0)
