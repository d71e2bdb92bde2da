"""Stars in a frame downloaded over Alpaca sit where the simulator's synthetic catalog says."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
import numpy as np
import pytest
import sep

from obsctl.clock import ScaledClock
from obsctl.config import SimulatedCameraConfig, SimulatedSkyConfig, SimulatorConfig
from obsctl.devices import ExposureSettings
from obsctl.drivers.alpaca import AlpacaCamera, AlpacaClient
from obsctl.simulators.observatory import running_simulators


def measured_centroid(sub: np.ndarray, x: float, y: float) -> tuple[float, float]:
    """Windowed centroid started from the brightest pixel near (x, y), not from the truth."""
    ix, iy = round(x), round(y)
    box = sub[iy - 2 : iy + 3, ix - 2 : ix + 3]
    py, px = np.unravel_index(np.argmax(box), box.shape)
    cx, cy, _ = sep.winpos(sub, [ix - 2 + px], [iy - 2 + py], [1.5])
    return float(cx[0]), float(cy[0])


@pytest.mark.parametrize("binning", [1, 2])
async def test_centroids_match_catalog(site, telescope, binning) -> None:
    sim = SimulatorConfig(
        start="never",
        port=0,
        discovery_port=None,
        speed=100.0,
        camera=SimulatedCameraConfig(width_px=512, height_px=512, readout_time_s=0.1),
        # A rich field: many test stars. The parked mount looks at the horizon (airmass ~37):
        # no extinction or airmass seeing, which would leave a dim, blurred field to centroid.
        sky=SimulatedSkyConfig(
            star_density_per_deg2=40000.0, extinction=False, seeing_airmass_exponent=0.0
        ),
    )
    # A fixed start time fixes the mount's parked pointing, hence the field: a repeatable test.
    clock = ScaledClock(100.0, start=datetime(2026, 11, 25, 22, 0, tzinfo=UTC))
    async with running_simulators(sim, site, telescope, clock=clock, port=0) as sims:
        client = AlpacaClient(f"127.0.0.1:{sims.port}")
        try:
            camera = AlpacaCamera("camera", client, timeout_s=5.0)
            await camera.connect()
            await camera.configure(ExposureSettings(bin_x=binning, bin_y=binning))
            await camera.start_exposure(60.0)
            async with asyncio.timeout(30):
                while not (await camera.status()).image_ready:
                    await asyncio.sleep(0.01)
            image = await camera.download()
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{sims.url}/sim/v1/camera/0/truth") as resp,
            ):
                truth = await resp.json()
            # Sensor defects are in the in-process truth only (the endpoint gives counts).
            result = sims.server.observatory.camera.last_truth
            assert result is not None
            hot = result.hot_pixels // binning  # (y, x) unbinned -> binned output pixels
            bad_x = result.bad_columns["x"] // binning
        finally:
            await client.close()
    stars = np.array([[s["x"], s["y"], s["flux_e"]] for s in truth["stars"]])
    data = np.ascontiguousarray(image.data, dtype=np.float32)
    sub = data - sep.Background(data)
    # Bright stars with no catalog neighbour within 6 binned pixels (>= 4 FWHM) and no brighter
    # one within 15 (whose wings would pull the centroid), off the edges, and no hot pixel or bad
    # column within 4 (the field depends on the wall-clock latency at 100x, so some runs put
    # a defect on a test star: 6 of 40 fields failed before this rule).
    ny, nx = data.shape
    errors = []
    for i, (x, y, flux) in enumerate(stars):
        others = np.delete(stars, i, axis=0)
        distance = np.hypot(others[:, 0] - x, others[:, 1] - y)
        isolated = not np.any((distance <= 6) | ((distance <= 15) & (others[:, 2] > flux)))
        inside = 8 < x < nx - 9 and 8 < y < ny - 9
        clean = not np.any(np.hypot(hot[:, 1] - x, hot[:, 0] - y) <= 4) and not np.any(
            np.abs(bad_x - x) <= 4
        )
        if flux < 3e3 or not (isolated and inside and clean):  # S/N above ~40
            continue
        cx, cy = measured_centroid(sub, x, y)
        errors.append(float(np.hypot(cx - x, cy - y)))
    assert len(errors) >= 5, errors
    assert max(errors) < 0.3, errors
