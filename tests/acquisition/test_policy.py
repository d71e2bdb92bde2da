"""The fault policy and the exposure procedure: what is retried, and what is refused at once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from obsctl.acquisition.policy import FaultPolicy, with_policy
from obsctl.clock import ScaledClock
from obsctl.config import (
    SequencerConfig,
    SimulatedCameraConfig,
    SimulatorConfig,
    SiteConfig,
    TelescopeConfig,
)
from obsctl.errors import (
    DeviceError,
    DeviceNotImplementedError,
    DeviceTimeoutError,
    InvalidDeviceValueError,
)
from obsctl.operations import Operations
from obsctl.simulators import SimulatedCamera, SimulatedObservatory

POLICY = FaultPolicy(retries=2, backoff_s=1.0, backoff_factor=2.0, reconnect=True)


class CountingDevice:
    """A device that only counts its reconnections."""

    name = "camera"

    def __init__(self) -> None:
        self.connects = 0
        self.disconnects = 0

    async def connect(self) -> None:
        self.connects += 1

    async def disconnect(self) -> None:
        self.disconnects += 1

    async def is_connected(self) -> bool:
        return True


async def run_failing(error: DeviceError) -> tuple[int, list[str], CountingDevice]:
    """Run a call that always fails with ``error``; return the attempts, actions and device."""
    device = CountingDevice()
    attempts = 0
    actions: list[str] = []

    async def call() -> None:
        nonlocal attempts
        attempts += 1
        raise error

    async def report(operation: str, exc: DeviceError, action: str) -> None:
        assert operation == "expose" and exc is error
        actions.append(action)

    with pytest.raises(type(error)):
        await with_policy(
            "expose", device, call, policy=POLICY, clock=ScaledClock(1000.0), report=report
        )
    return attempts, actions, device


@pytest.mark.parametrize(
    "refused",
    [
        InvalidDeviceValueError("exposure 5000 s is out of range", device="camera"),
        # A member the server does not have (HTTP 404, ASCOM 0x400): it will not appear.
        DeviceNotImplementedError("gains: HTTP 404: not found", device="camera"),
    ],
)
async def test_a_refused_value_or_a_missing_member_is_given_up_at_once(
    refused: DeviceError,
) -> None:
    attempts, actions, device = await run_failing(refused)
    assert attempts == 1
    assert actions == ["skip"]
    assert (device.disconnects, device.connects) == (0, 0)


async def test_a_timeout_is_retried_then_reconnected() -> None:
    attempts, actions, device = await run_failing(DeviceTimeoutError("slow", device="camera"))
    assert attempts == 4
    assert actions == ["retry", "retry", "reconnect", "skip"]
    assert (device.disconnects, device.connects) == (1, 1)


@pytest.fixture
async def camera() -> AsyncIterator[SimulatedCamera]:
    sim = SimulatorConfig(
        camera=SimulatedCameraConfig(width_px=64, height_px=48, exposure_max_s=3600.0)
    )
    obs = SimulatedObservatory.from_config(
        sim,
        SiteConfig(name="Test", latitude_deg=48.0, longitude_deg=11.0),
        TelescopeConfig(focal_length_mm=800.0, aperture_mm=200.0),
        ScaledClock(1000.0),
    )
    cam = SimulatedCamera(obs.camera, name="camera")
    await cam.connect()
    try:
        yield cam
    finally:
        await cam.disconnect()
        await obs.close()


@pytest.mark.parametrize("exposure_s", [5000.0, 1e-9])
async def test_an_exposure_the_camera_cannot_take_is_refused_before_it_starts(
    camera: SimulatedCamera, monkeypatch: pytest.MonkeyPatch, exposure_s: float
) -> None:
    started: list[float] = []
    start = camera.start_exposure

    async def counting_start(exposure_s: float, *, light: bool = True) -> None:
        started.append(exposure_s)
        await start(exposure_s, light=light)

    monkeypatch.setattr(camera, "start_exposure", counting_start)
    ops = Operations(SequencerConfig(poll_s=0.001), ScaledClock(1000.0))
    with pytest.raises(
        InvalidDeviceValueError, match=r"camera: exposure .* s is outside the camera's range"
    ):
        await ops.expose(camera, exposure_s, light=False)
    assert started == []
    await ops.expose(camera, 1.0, light=False)  # within the range: taken
    assert started == [1.0]
