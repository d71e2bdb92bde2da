"""The simulated dome and weather station over real Alpaca HTTP, and their control API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from obsctl.clock import ScaledClock
from obsctl.config import (
    SimulatedCameraConfig,
    SimulatedDomeConfig,
    SimulatedWeatherConfig,
    SimulatorConfig,
)
from obsctl.simulators import RunningSimulators, running_simulators

from .test_alpaca_server import SITE, TELESCOPE, get, put

NOT_IMPLEMENTED = 0x400
INVALID_VALUE = 0x401


@contextlib.asynccontextmanager
async def served(
    *, dome: str | None = "roll_off", weather: bool = True
) -> AsyncIterator[tuple[RunningSimulators, aiohttp.ClientSession]]:
    sim = SimulatorConfig(
        port=0,
        discovery_port=None,
        camera=SimulatedCameraConfig(width_px=64, height_px=48),
        dome=None if dome is None else SimulatedDomeConfig(kind=dome),
        weather=SimulatedWeatherConfig(missing=("cloud_cover_pct",)) if weather else None,
    )
    async with (
        running_simulators(sim, SITE, TELESCOPE, clock=ScaledClock(1000.0)) as running,
        aiohttp.ClientSession(
            base_url=running.url, timeout=aiohttp.ClientTimeout(total=20)
        ) as session,
    ):
        yield running, session


async def control(session: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, str]:
    async with session.put(path, json=body) as response:
        return response.status, await response.text()


async def test_served_only_when_configured() -> None:
    async with served(dome=None, weather=False) as (_running, session):
        devices = (await get(session, "/management/v1/configureddevices"))["Value"]
        assert {d["DeviceType"] for d in devices} == {
            "Camera",
            "FilterWheel",
            "Telescope",
            "SafetyMonitor",
        }
        async with session.get("/api/v1/dome/0/shutterstatus") as response:
            assert response.status == 404
        status, _ = await control(session, "/sim/v1/observingconditions/0/readings", {})
        assert status == 404
    async with served() as (_running, session):
        devices = (await get(session, "/management/v1/configureddevices"))["Value"]
        named = {d["DeviceType"]: d for d in devices}
        assert named["Dome"]["DeviceName"] == "Simulated roll-off roof"
        assert named["ObservingConditions"]["DeviceNumber"] == 0
        assert (await get(session, "/api/v1/dome/0/interfaceversion"))["Value"] == 3
        assert (await get(session, "/api/v1/observingconditions/0/interfaceversion"))["Value"] == 2


async def test_dome_members_need_a_connection_and_follow_ascom() -> None:
    async with served(dome="roll_off") as (_running, session):
        base = "/api/v1/dome/0"
        assert (await get(session, f"{base}/shutterstatus"))["ErrorNumber"] == 0x407
        await put(session, f"{base}/connected", Connected=True)
        assert (await get(session, f"{base}/shutterstatus"))["Value"] == 1  # closed
        assert (await get(session, f"{base}/azimuth"))["ErrorNumber"] == NOT_IMPLEMENTED
        reply = await put(session, f"{base}/slewtoazimuth", Azimuth=90)
        assert reply["ErrorNumber"] == NOT_IMPLEMENTED
        assert (await put(session, f"{base}/slaved", Slaved=False))["ErrorNumber"] == 0
        assert (await put(session, f"{base}/slaved", Slaved=True))["ErrorNumber"] == (
            NOT_IMPLEMENTED
        )
        assert (await put(session, f"{base}/openshutter"))["ErrorNumber"] == 0
        assert (await get(session, f"{base}/shutterstatus"))["Value"] == 2  # opening
        async with session.put(f"{base}/slewtoazimuth", data={"azimuth": "90"}) as response:
            assert response.status == 400  # PUT keys are case-sensitive
        state = {
            i["Name"]: i["Value"] for i in (await get(session, f"{base}/devicestate"))["Value"]
        }
        assert state["ShutterStatus"] == 2 and state["Slewing"] is True
        assert "Azimuth" not in state and "Altitude" not in state


async def test_rotating_dome_refuses_an_azimuth_out_of_range() -> None:
    async with served(dome="rotating") as (_running, session):
        base = "/api/v1/dome/0"
        await put(session, f"{base}/connected", Connected=True)
        reply = await put(session, f"{base}/slewtoazimuth", Azimuth=360)
        assert reply["ErrorNumber"] == INVALID_VALUE
        assert (await get(session, f"{base}/atpark"))["Value"] is True


async def test_weather_control_api_sets_values_read_over_alpaca() -> None:
    async with served() as (running, session):
        base = "/api/v1/observingconditions/0"
        await put(session, f"{base}/connected", Connected=True)
        assert (await get(session, f"{base}/cloudcover"))["ErrorNumber"] == NOT_IMPLEMENTED
        status, text = await control(
            session,
            "/sim/v1/observingconditions/0/readings",
            {"rain_rate_mm_h": 4.5, "cloud_cover_pct": 75, "wind_speed_m_s": None},
        )
        assert status == 200, text
        assert (await get(session, f"{base}/rainrate"))["Value"] == 4.5
        assert (await get(session, f"{base}/cloudcover"))["Value"] == 75.0
        assert (await get(session, f"{base}/windspeed"))["ErrorNumber"] == NOT_IMPLEMENTED
        assert running.observatory.weather is not None
        assert running.observatory.weather.readings()["rain_rate_mm_h"] == 4.5

        status, _ = await control(session, "/sim/v1/observingconditions/0/stalled", {"stalled": 1})
        assert status == 400
        status, _ = await control(
            session, "/sim/v1/observingconditions/0/stalled", {"stalled": True}
        )
        assert status == 200 and running.observatory.weather.stalled


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rain_rate_mm_h": "heavy"}, "rain_rate_mm_h: expected a number or null"),
        ({"rain_rate_mm_h": True}, "rain_rate_mm_h: expected a number or null"),
        ({"rain": 1.0}, "'rain' is no sensor"),
        ({"average_period_h": 1.0}, "'average_period_h' is no sensor"),
        ([1, 2], "body must be a JSON object"),
    ],
)
async def test_weather_control_api_refuses_bad_bodies(body, message) -> None:
    async with served() as (running, session):
        status, text = await control(session, "/sim/v1/observingconditions/0/readings", body)
        assert status == 400 and message in text
        assert running.observatory.weather is not None
        assert running.observatory.weather.readings()["rain_rate_mm_h"] == 0.0


async def test_weather_average_period_and_sensor_names() -> None:
    async with served() as (_running, session):
        base = "/api/v1/observingconditions/0"
        await put(session, f"{base}/connected", Connected=True)
        assert (await get(session, f"{base}/averageperiod"))["Value"] == 0.0
        assert (await put(session, f"{base}/averageperiod", AveragePeriod=0))["ErrorNumber"] == 0
        reply = await put(session, f"{base}/averageperiod", AveragePeriod=1.5)
        assert reply["ErrorNumber"] == INVALID_VALUE
        age = await get(session, f"{base}/timesincelastupdate", SensorName="humidity")
        assert age["ErrorNumber"] == 0 and 0.0 <= age["Value"] < 10.0
        for name, error in (("CloudCover", NOT_IMPLEMENTED), ("Wind", INVALID_VALUE)):
            reply = await get(session, f"{base}/sensordescription", SensorName=name)
            assert reply["ErrorNumber"] == error
        assert (await get(session, f"{base}/starfwhm"))["ErrorNumber"] == NOT_IMPLEMENTED
        assert (await put(session, f"{base}/refresh"))["ErrorNumber"] == NOT_IMPLEMENTED
