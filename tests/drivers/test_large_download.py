"""A 61 MP download in flight must not hold up other devices (the alpyca lock problem)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from obsctl.clock import ScaledClock
from obsctl.config import SimulatedCameraConfig, SimulatorConfig
from obsctl.drivers.alpaca import AlpacaCamera, AlpacaClient, AlpacaSafetyMonitor
from obsctl.simulators.faults import Fault
from obsctl.simulators.observatory import running_simulators

WIDTH, HEIGHT = 9576, 6388


@pytest.mark.slow
async def test_safety_reads_are_not_serialised_behind_a_61mp_download(site, telescope) -> None:
    sim = SimulatorConfig(
        start="never",
        port=0,
        discovery_port=None,
        speed=100.0,
        camera=SimulatedCameraConfig(width_px=WIDTH, height_px=HEIGHT, readout_time_s=0.1),
    )
    async with running_simulators(sim, site, telescope, clock=ScaledClock(100.0), port=0) as sims:
        client = AlpacaClient(f"127.0.0.1:{sims.port}")
        try:
            camera = AlpacaCamera("camera", client, timeout_s=5.0, download_timeout_s=60.0)
            monitor = AlpacaSafetyMonitor("safety_monitor", client, timeout_s=1.0)
            await camera.connect()
            await monitor.connect()
            await camera.start_exposure(0.1, light=False)
            async with asyncio.timeout(120):
                while not (await camera.status()).image_ready:
                    await asyncio.sleep(0.05)
            # ~122 MB at 60 MB/s: the download stays in flight for about two seconds.
            sims.faults("camera", 0).set(
                Fault(kind="throttle_image", rate_mb_s=60.0, members=frozenset({"imagearray"}))
            )
            download = asyncio.create_task(camera.download())
            await asyncio.sleep(0.2)
            reads_in_flight = 0
            latencies = []
            while not download.done():
                start = time.monotonic()
                assert await monitor.is_safe()
                latencies.append(time.monotonic() - start)
                if not download.done():
                    reads_in_flight += 1
                await asyncio.sleep(0.02)
            image = await download
        finally:
            await client.close()
    assert image.data.shape == (HEIGHT, WIDTH) and image.data.dtype == np.uint16
    # Several reads completed while the download was still running: not serialised behind it.
    assert reads_in_flight >= 5, latencies
    print(
        f"\nsafety reads during 61 MP download: n={len(latencies)} "
        f"median {1e3 * float(np.median(latencies)):.1f} ms, "
        f"max {1e3 * max(latencies):.1f} ms"
    )
