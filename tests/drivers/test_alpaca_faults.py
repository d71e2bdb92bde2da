"""Every injected fault becomes the right typed error within its deadline, then recovers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from obsctl.devices import ExposureSettings
from obsctl.drivers.alpaca import AlpacaCamera, AlpacaClient, AlpacaSafetyMonitor
from obsctl.errors import (
    DeviceBusyError,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeoutError,
    ImageDownloadError,
)
from obsctl.simulators.faults import Fault

TIMEOUT_S = 0.3
# A deadline is kept when the error arrives before it plus this much scheduling slack.
SLACK_S = 0.5


@pytest.fixture
async def client(sims) -> AsyncIterator[AlpacaClient]:
    client = AlpacaClient(f"127.0.0.1:{sims.port}")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def camera(client) -> AlpacaCamera:
    cam = AlpacaCamera(
        "camera", client, 0, timeout_s=TIMEOUT_S, connect_timeout_s=2.0, download_timeout_s=1.0
    )
    await cam.connect()
    return cam


@pytest.fixture
async def monitor(client) -> AlpacaSafetyMonitor:
    mon = AlpacaSafetyMonitor("safety_monitor", client, 0, timeout_s=TIMEOUT_S)
    await mon.connect()
    return mon


async def take_image(camera: AlpacaCamera) -> None:
    await camera.configure(ExposureSettings())
    await camera.start_exposure(0.5)
    async with asyncio.timeout(5):
        while not (await camera.status()).image_ready:
            await asyncio.sleep(0.005)


async def raises_within(exc_type: type[BaseException], coro, deadline_s: float) -> BaseException:
    start = time.monotonic()
    with pytest.raises(exc_type) as info:
        await coro
    assert time.monotonic() - start < deadline_s + SLACK_S
    return info.value


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(kind="hang"), DeviceTimeoutError),
        (Fault(kind="delay", seconds=1.0), DeviceTimeoutError),
        (Fault(kind="drop"), DeviceConnectionError),
        (Fault(kind="http500"), DeviceConnectionError),
        (Fault(kind="ascom_error", error_number=0x40B, message="busy"), DeviceBusyError),
    ],
    ids=lambda v: getattr(v, "kind", None) or getattr(v, "__name__", ""),
)
async def test_control_call_faults(sims, monitor, fault, error) -> None:
    sims.faults("safetymonitor", 0).set(fault)
    await raises_within(error, monitor.is_safe(), TIMEOUT_S)
    sims.faults("safetymonitor", 0).clear()
    assert await monitor.is_safe()


async def test_driver_error_keeps_ascom_number(sims, monitor) -> None:
    sims.faults("safetymonitor", 0).set(
        Fault(kind="ascom_error", error_number=0x555, message="weather station offline")
    )
    err = await raises_within(DeviceError, monitor.is_safe(), TIMEOUT_S)
    assert type(err) is DeviceError
    assert err.ascom_error == 0x555 and "weather station offline" in str(err)
    assert err.device == "safety_monitor"


async def test_short_delay_is_tolerated(sims, monitor) -> None:
    sims.faults("safetymonitor", 0).set(Fault(kind="delay", seconds=0.05))
    assert await monitor.is_safe()


async def test_fault_with_count_clears_itself(sims, monitor) -> None:
    sims.faults("safetymonitor", 0).set(Fault(kind="http500", count=1))
    with pytest.raises(DeviceConnectionError):
        await monitor.is_safe()
    assert await monitor.is_safe()


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(kind="hang", members=frozenset({"imagearray"})), DeviceTimeoutError),
        (Fault(kind="drop", members=frozenset({"imagearray"})), DeviceConnectionError),
        (Fault(kind="http500", members=frozenset({"imagearray"})), DeviceConnectionError),
        (Fault(kind="corrupt_image"), ImageDownloadError),
        (Fault(kind="truncate_image"), ImageDownloadError),
        (Fault(kind="throttle_image", rate_mb_s=0.001), DeviceTimeoutError),
    ],
    ids=lambda v: getattr(v, "kind", None) or getattr(v, "__name__", ""),
)
async def test_download_faults(sims, camera, fault, error) -> None:
    await take_image(camera)
    sims.faults("camera", 0).set(fault)
    await raises_within(error, camera.download(), camera.download_timeout_s)
    sims.faults("camera", 0).clear()
    image = await camera.download()  # the image is still there: take it again
    assert image.data.shape == (96, 128)


async def test_image_never_ready(sims, camera) -> None:
    sims.faults("camera", 0).set(Fault(kind="image_never_ready"))
    await camera.start_exposure(0.2)
    await asyncio.sleep(0.1)  # 10 s of simulated time: far past exposure and readout
    status = await camera.status()
    assert not status.image_ready
    with pytest.raises(DeviceBusyError):
        await camera.download()
    sims.faults("camera", 0).clear()
    async with asyncio.timeout(5):
        while not (await camera.status()).image_ready:
            await asyncio.sleep(0.005)
    assert (await camera.download()).data.shape == (96, 128)


async def test_other_devices_answer_while_camera_hangs(sims, camera, monitor) -> None:
    sims.faults("camera", 0).set(Fault(kind="hang"))
    hung = asyncio.create_task(camera.status())
    await asyncio.sleep(0.02)
    start = time.monotonic()
    for _ in range(5):
        assert await monitor.is_safe()
    assert not hung.done()  # every safety read came back while the camera call hung
    with pytest.raises(DeviceTimeoutError):
        await hung
    assert time.monotonic() - start < TIMEOUT_S + SLACK_S


async def test_unreachable_server_is_a_connection_error() -> None:
    client = AlpacaClient("127.0.0.1:9")  # discard port: nothing listens
    try:
        mon = AlpacaSafetyMonitor("safety_monitor", client, timeout_s=TIMEOUT_S)
        await raises_within(DeviceConnectionError, mon.is_safe(), TIMEOUT_S)
    finally:
        await client.close()


async def test_connect_failure_is_not_mistaken_for_an_old_server(sims, client) -> None:
    # Only 400/404 mean "no Connect method here"; a 500 is a failure to report.
    sims.faults("safetymonitor", 0).set(
        Fault(kind="http500", members=frozenset({"connect", "connecting"}))
    )
    mon = AlpacaSafetyMonitor("safety_monitor", client, 0, timeout_s=TIMEOUT_S)
    with pytest.raises(DeviceConnectionError):
        await mon.connect()  # a 500 is a server failure, not a missing method
    sims.faults("safetymonitor", 0).clear()
    await mon.connect()
    assert await mon.is_connected()
