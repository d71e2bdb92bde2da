"""A one-shot-colour camera over Alpaca: SensorType and BayerOffsetX/Y reach the FITS header
(BAYERPAT, XBAYROFF, YBAYROFF), and the pipeline finds the simulator's stars on the green plane.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
import numpy as np
import pytest

from obsctl.clock import ScaledClock
from obsctl.config import SimulatedCameraConfig, SimulatedSkyConfig, SimulatorConfig
from obsctl.devices import ExposureSettings
from obsctl.drivers.alpaca import AlpacaCamera, AlpacaClient
from obsctl.frame import Frame
from obsctl.pipeline.detector import bayer_pattern
from obsctl.pipeline.photometry import SepPhotometry
from obsctl.simulators.artefacts import bayer_channel_masks
from obsctl.simulators.observatory import running_simulators
from obsctl.store.headers import FrameContext, raw_header

SENSOR_PATTERN = "GBRG"


async def take(site, telescope, subframe, *, bayer: str | None = SENSOR_PATTERN):
    """One 60 s light frame over Alpaca, with the simulator's truth."""
    sim = SimulatorConfig(
        start="never",
        port=0,
        discovery_port=None,
        speed=100.0,
        camera=SimulatedCameraConfig(
            width_px=256, height_px=256, readout_time_s=0.1, bayer_pattern=bayer
        ),
        # The parked mount looks at the horizon: no extinction or airmass seeing, which would
        # leave a dim, blurred field. No galaxies or trails: the point is the stars.
        sky=SimulatedSkyConfig(
            star_density_per_deg2=80000.0,
            extinction=False,
            seeing_airmass_exponent=0.0,
            galaxies=False,
            satellite_trails=False,
        ),
    )
    clock = ScaledClock(100.0, start=datetime(2026, 11, 25, 22, 0, tzinfo=UTC))
    async with running_simulators(sim, site, telescope, clock=clock, port=0) as sims:
        client = AlpacaClient(f"127.0.0.1:{sims.port}")
        try:
            camera = AlpacaCamera("camera", client, timeout_s=5.0)
            await camera.connect()
            await camera.configure(ExposureSettings(subframe=subframe))
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
        finally:
            await client.close()
    ctx = FrameContext(
        image=image,
        image_type="LIGHT",
        site=site,
        telescope=telescope,
        frame_number=1,
        start_time=image.metadata.start_time or datetime(2026, 11, 25, 22, 0, tzinfo=UTC),
    )
    return image, raw_header(ctx), truth


@pytest.mark.parametrize("subframe", [None, (1, 3, 200, 180)])
async def test_bayer_pattern_reaches_the_header_and_the_pipeline(site, telescope, subframe):
    image, header, truth = await take(site, telescope, subframe)
    assert image.metadata.bayer_pattern == SENSOR_PATTERN
    start_x, start_y = subframe[:2] if subframe else (0, 0)
    assert header["BAYERPAT"] == SENSOR_PATTERN
    assert (header["XBAYROFF"], header["YBAYROFF"]) == (start_x % 2, start_y % 2)
    assert header["ROWORDER"] == "TOP-DOWN"

    # The pattern the pipeline reads is that of the image's first pixel: green where the
    # camera put its green filters (0.40 of the light against 0.30 red and 0.25 blue).
    pattern = bayer_pattern(header)
    assert pattern is not None
    data = image.data.astype(np.float64) - np.median(image.data)
    red, green, blue = bayer_channel_masks(data.shape, pattern)
    sensor_red, sensor_green, _ = bayer_channel_masks(
        data.shape, SENSOR_PATTERN, x_offset=start_x, y_offset=start_y
    )
    assert np.array_equal(green, sensor_green) and np.array_equal(red, sensor_red)
    sky = [float(np.median(image.data[m])) for m in (red, green, blue)]
    assert sky[1] > sky[0] > sky[2]

    frame = Frame(data=image.data.astype(np.float32), header=header, exposure_id=1)
    measured = SepPhotometry(read_noise_e=3.5, saturation_adu=60000.0, psf_fit="off").process(frame)
    assert measured.header["DEMOSAIC"] == pattern
    assert measured.sources is not None and len(measured.sources) > 10
    stars = np.array([[s["x"], s["y"], s["flux_e"]] for s in truth["stars"]])
    bright = stars[stars[:, 2] > 5e3]
    found = np.stack([measured.sources["x"], measured.sources["y"]], axis=1)
    assert len(bright) >= 8
    dx = found[:, None, 0] - bright[None, :, 0]
    dy = found[:, None, 1] - bright[None, :, 1]
    nearest = np.hypot(dx, dy).min(axis=0)
    # Nearly every bright star is found within half a pixel on the green plane.
    assert np.mean(nearest < 0.5) > 0.8, nearest


async def test_monochrome_camera_has_no_bayer_cards(site, telescope):
    image, header, _truth = await take(site, telescope, None, bayer=None)
    assert image.metadata.bayer_pattern is None
    assert "BAYERPAT" not in header and "XBAYROFF" not in header
    assert bayer_pattern(header) is None
