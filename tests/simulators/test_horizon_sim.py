"""The simulated camera behind the site's local horizon: sky glow, no stars."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from obsctl.clock import ScaledClock
from obsctl.config import (
    SimulatedCameraConfig,
    SimulatedMountConfig,
    SimulatedSkyConfig,
    SiteConfig,
)
from obsctl.simulators import CameraModel, MountModel

# A 60 deg wall from east through south to west, open (5 deg) to the north.
WALL = "0 5\n80 5\n90 60\n270 60\n280 5\n360 5\n"


def observatory(horizon: Path | None) -> tuple[CameraModel, MountModel]:
    site = SiteConfig(name="Test", latitude_deg=48.0, longitude_deg=11.0, horizon=horizon)
    clock = ScaledClock(1000.0)
    mount = MountModel(SimulatedMountConfig(), site, clock)
    mount.connected = True
    # A dense sky, so a small frame holds many stars when nothing hides them.
    sky = SimulatedSkyConfig(star_density_per_deg2=200_000.0)
    camera = CameraModel(
        SimulatedCameraConfig(width_px=128, height_px=96),
        sky,
        focal_length_mm=800.0,
        clock=clock,
        mount=mount,
    )
    camera.connected = True
    return camera, mount


async def expose(camera: CameraModel, mount: MountModel, alt: float, az: float) -> int:
    """Point at (alt, az) with tracking off, take a 1 s light; return the true star count."""
    mount.slew_to_altaz(alt, az)
    async with asyncio.timeout(10):
        while mount.slewing:
            await asyncio.sleep(0.001)
        camera.start_exposure(1.0, True)
        while not camera.image_ready:
            await asyncio.sleep(0.001)
    truth = camera.last_truth
    assert truth is not None
    return len(truth.stars)


async def test_no_stars_behind_the_horizon(tmp_path: Path) -> None:
    file = tmp_path / "wall.hrz"
    file.write_text(WALL)
    camera, mount = observatory(file)
    assert await expose(camera, mount, 30.0, 180.0) == 0  # behind the southern wall
    image = np.asarray(camera.image, dtype=np.float64)
    assert np.median(image) > 0  # the sky's glow and the bias remain
    assert await expose(camera, mount, 30.0, 0.0) > 0  # the open north
    assert await expose(camera, mount, 70.0, 180.0) > 0  # above the wall


async def test_without_a_horizon_nothing_changes() -> None:
    camera, mount = observatory(None)
    assert await expose(camera, mount, 30.0, 180.0) > 0
