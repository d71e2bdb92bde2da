"""Fault injection: the Python API, the HTTP control API and each fault kind's behaviour."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from obsctl.clock import ScaledClock
from obsctl.config import SimulatedCameraConfig, SimulatorConfig, SiteConfig, TelescopeConfig
from obsctl.simulators import Fault, RunningSimulators, running_simulators

SITE = SiteConfig(name="Test site", latitude_deg=48.0, longitude_deg=11.0)
TELESCOPE = TelescopeConfig(focal_length_mm=800.0, aperture_mm=200.0)
IMAGEBYTES = {"Accept": "application/imagebytes"}
IMAGE_BYTES_LEN = 44 + 128 * 96 * 2


@contextlib.asynccontextmanager
async def served() -> AsyncIterator[tuple[RunningSimulators, aiohttp.ClientSession]]:
    sim = SimulatorConfig(
        port=0,
        discovery_port=None,
        camera=SimulatedCameraConfig(width_px=128, height_px=96),
    )
    async with (
        running_simulators(sim, SITE, TELESCOPE, clock=ScaledClock(1000.0)) as running,
        aiohttp.ClientSession(
            base_url=running.url, timeout=aiohttp.ClientTimeout(total=10)
        ) as session,
    ):
        yield running, session


async def get(session: aiohttp.ClientSession, path: str, **kw: Any) -> dict[str, Any]:
    async with session.get(path, **kw) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def put(session: aiohttp.ClientSession, path: str, **form: Any) -> dict[str, Any]:
    async with session.put(path, data={k: str(v) for k, v in form.items()}) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def expose(session: aiohttp.ClientSession) -> None:
    await put(session, "/api/v1/camera/0/connected", Connected=True)
    await put(session, "/api/v1/camera/0/startexposure", Duration=1, Light=True)
    async with asyncio.timeout(10):
        while not (await get(session, "/api/v1/camera/0/imageready"))["Value"]:
            await asyncio.sleep(0.005)


def test_fault_validation_and_normalisation() -> None:
    fault = Fault("delay", seconds=0.1, members=frozenset({"ImageArray", "Name"}))
    assert fault.members == frozenset({"imagearray", "name"})
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="count"):
        Fault("drop", count=0)
    with pytest.raises(ValueError, match="unknown fault field"):
        Fault.from_mapping({"kind": "drop", "when": "now"})
    with pytest.raises(ValueError, match="seconds"):
        Fault.from_mapping({"kind": "delay", "seconds": "soon"})
    parsed = Fault.from_mapping({"kind": "ascom_error", "error_number": 1025, "members": ["x"]})
    assert parsed == Fault("ascom_error", error_number=0x401, members=frozenset({"x"}))
    assert Fault.from_mapping(parsed.to_dict()) == parsed


async def test_delay_applies_to_selected_members_only() -> None:
    async with served() as (running, session):
        running.faults("camera", 0).set(Fault("delay", seconds=0.3, members=frozenset({"name"})))
        t0 = time.monotonic()
        assert (await get(session, "/api/v1/camera/0/description"))["ErrorNumber"] == 0
        fast = time.monotonic() - t0
        t0 = time.monotonic()
        assert (await get(session, "/api/v1/camera/0/name"))["ErrorNumber"] == 0
        slow = time.monotonic() - t0
        assert slow >= 0.3
        assert fast < slow


async def test_hang_blocks_only_that_device_until_cleared() -> None:
    async with served() as (running, session):
        faults = running.faults("camera", 0)
        faults.set(Fault("hang"))
        with pytest.raises(asyncio.TimeoutError):
            await get(session, "/api/v1/camera/0/name", timeout=aiohttp.ClientTimeout(total=0.3))
        hung = asyncio.create_task(get(session, "/api/v1/camera/0/name"))
        await asyncio.sleep(0.1)
        assert not hung.done()
        # Other devices answer while the camera hangs.
        assert (await get(session, "/api/v1/telescope/0/name"))["ErrorNumber"] == 0
        assert (await get(session, "/management/v1/description"))["ErrorNumber"] == 0
        faults.clear()
        reply = await asyncio.wait_for(hung, 2)
        assert reply["Value"] == "Simulated camera"


async def test_drop_closes_connection() -> None:
    async with served() as (running, session):
        running.faults("telescope", 0).set(Fault("drop"))
        with pytest.raises(aiohttp.ClientConnectionError):
            await get(session, "/api/v1/telescope/0/name")
        running.faults("telescope", 0).clear()
        assert (await get(session, "/api/v1/telescope/0/name"))["ErrorNumber"] == 0


async def test_http500_and_count() -> None:
    async with served() as (running, session):
        running.faults("filterwheel", 0).set(Fault("http500", message="boom", count=2))
        for _ in range(2):
            async with session.get("/api/v1/filterwheel/0/name") as r:
                assert r.status == 500
                assert await r.text() == "boom"
        assert (await get(session, "/api/v1/filterwheel/0/name"))["ErrorNumber"] == 0
        assert running.faults("filterwheel", 0).fault is None


async def test_ascom_error_json_and_imagebytes() -> None:
    async with served() as (running, session):
        await expose(session)
        running.faults("camera", 0).set(Fault("ascom_error", error_number=0x500, message="bad"))
        reply = await get(session, "/api/v1/camera/0/camerastate")
        assert (reply["ErrorNumber"], reply["ErrorMessage"]) == (0x500, "bad")
        async with session.get("/api/v1/camera/0/imagearray", headers=IMAGEBYTES) as r:
            body = await r.read()
        header = struct.unpack("<11i", body[:44])
        assert header[1] == 0x500 and body[44:] == b"bad"


async def test_corrupt_image_header_inconsistent_with_body() -> None:
    async with served() as (running, session):
        await expose(session)
        running.faults("camera", 0).set(Fault("corrupt_image", count=2))
        async with session.get("/api/v1/camera/0/imagearray", headers=IMAGEBYTES) as r:
            body = await r.read()
        header = struct.unpack("<11i", body[:44])
        assert len(body) == IMAGE_BYTES_LEN
        assert header[8] * header[9] * 2 != len(body) - header[4]
        async with session.get("/api/v1/camera/0/imagearray") as r:
            text = await r.read()
        with pytest.raises(ValueError):
            __import__("json").loads(text)
        # Other members are untouched by image faults.
        assert (await get(session, "/api/v1/camera/0/imageready"))["Value"] is True


async def test_truncate_image_sends_half_then_closes() -> None:
    async with served() as (running, session):
        await expose(session)
        running.faults("camera", 0).set(Fault("truncate_image"))
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.get("/api/v1/camera/0/imagearray", headers=IMAGEBYTES) as r:
                assert int(r.headers["Content-Length"]) == IMAGE_BYTES_LEN
                await r.read()


async def test_throttle_image_limits_rate() -> None:
    async with served() as (running, session):
        await expose(session)
        running.faults("camera", 0).set(Fault("throttle_image", rate_mb_s=0.1))
        t0 = time.monotonic()
        async with session.get("/api/v1/camera/0/imagearray", headers=IMAGEBYTES) as r:
            body = await r.read()
        elapsed = time.monotonic() - t0
        assert len(body) == IMAGE_BYTES_LEN
        assert elapsed >= 0.8 * IMAGE_BYTES_LEN / 0.1e6


async def test_image_never_ready_until_cleared() -> None:
    async with served() as (running, session):
        running.faults("camera", 0).set(Fault("image_never_ready"))
        await put(session, "/api/v1/camera/0/connected", Connected=True)
        await put(session, "/api/v1/camera/0/startexposure", Duration=1, Light=True)
        await asyncio.sleep(0.2)  # 200 simulated seconds: far past exposure and readout
        assert (await get(session, "/api/v1/camera/0/camerastate"))["Value"] == 3  # Reading
        assert (await get(session, "/api/v1/camera/0/imageready"))["Value"] is False
        running.faults("camera", 0).clear()
        async with asyncio.timeout(5):
            while not (await get(session, "/api/v1/camera/0/imageready"))["Value"]:
                await asyncio.sleep(0.005)
        assert (await get(session, "/api/v1/camera/0/camerastate"))["Value"] == 0


async def test_http_control_api() -> None:
    async with served() as (running, session):
        path = "/sim/v1/telescope/0/fault"
        body = {"kind": "ascom_error", "error_number": 1031, "members": ["Slewing"], "count": 1}
        async with session.put(path, json=body) as r:
            assert r.status == 200
            listed = await r.json()
        assert listed[0]["kind"] == "ascom_error" and listed[0]["members"] == ["slewing"]
        async with session.get(path) as r:
            assert (await r.json())[0]["remaining"] == 1
        assert (await get(session, "/api/v1/telescope/0/slewing"))["ErrorNumber"] == 0x407
        async with session.put(path, json={"kind": "hang"}) as r:
            assert r.status == 200
        async with session.delete(path) as r:
            assert await r.json() == []
        assert running.faults("telescope").fault is None
        async with session.put(path, json={"kind": "nonsense"}) as r:
            assert r.status == 400
        async with session.put(path, data=b"not json") as r:
            assert r.status == 400
        async with session.put("/sim/v1/dome/0/fault", json={"kind": "drop"}) as r:
            assert r.status == 404
