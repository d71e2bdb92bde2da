"""Unmodified alpyca (the ASCOM Initiative's client) drives our simulators."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from alpaca import management
from alpaca.camera import Camera, CameraStates
from alpaca.filterwheel import FilterWheel
from alpaca.safetymonitor import SafetyMonitor
from alpaca.telescope import Telescope


def _wait(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def alpyca_session(address: str) -> dict[str, object]:
    """Everything a third-party client does first; runs in a thread (alpyca blocks)."""
    out: dict[str, object] = {
        "apiversions": management.apiversions(address),
        "description": management.description(address),
        "devices": management.configureddevices(address),
    }
    cam = Camera(address, 0)
    cam.Connected = True
    out["sensor"] = (cam.SensorName, cam.CameraXSize, cam.CameraYSize)
    cam.BinX = 1
    cam.BinY = 1
    cam.NumX, cam.NumY, cam.StartX, cam.StartY = cam.CameraXSize, cam.CameraYSize, 0, 0
    cam.StartExposure(1.0, True)
    _wait(lambda: cam.ImageReady)
    out["state"] = cam.CameraState
    out["image"] = np.array(cam.ImageArray).T  # alpyca returns [x][y]
    out["last_duration"] = cam.LastExposureDuration
    cam.Connected = False

    wheel = FilterWheel(address, 0)
    wheel.Connected = True
    wheel.Position = 3
    _wait(lambda: wheel.Position == 3)
    out["filters"] = wheel.Names

    scope = Telescope(address, 0)
    scope.Connected = True
    if scope.AtPark:
        scope.Unpark()
    scope.Tracking = True
    ra_h = (scope.SiderealTime + 1.0) % 24.0  # one hour east of the meridian
    scope.SlewToCoordinatesAsync(ra_h, 30.0)
    _wait(lambda: not scope.Slewing)
    out["pointing"] = (ra_h, scope.RightAscension, scope.Declination)

    monitor = SafetyMonitor(address, 0)
    monitor.Connected = True
    out["safe"] = monitor.IsSafe
    return out


async def test_alpyca_talks_to_our_simulators(sims) -> None:
    address = f"127.0.0.1:{sims.port}"
    out = await asyncio.to_thread(alpyca_session, address)
    assert out["apiversions"] == [1]
    assert "ServerName" in out["description"]
    kinds = {d["DeviceType"].lower() for d in out["devices"]}
    assert {"camera", "filterwheel", "telescope", "safetymonitor"} <= kinds
    _, width, height = out["sensor"]
    image = out["image"]
    assert image.shape == (height, width)
    expected = sims.observatory.camera.last_image
    np.testing.assert_array_equal(image, expected)
    assert out["state"] == CameraStates.cameraIdle
    assert out["last_duration"] == 1.0
    assert out["filters"] == ["L", "B", "V", "R", "I"]
    ra_target, ra, dec = out["pointing"]
    assert abs(ra - ra_target) < 1e-3 and abs(dec - 30.0) < 1e-3
    assert out["safe"] is True
