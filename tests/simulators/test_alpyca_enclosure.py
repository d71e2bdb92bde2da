"""Unmodified alpyca (the ASCOM Initiative's client) drives our simulated dome and weather."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from alpaca import management
from alpaca.dome import Dome, ShutterState
from alpaca.exceptions import InvalidValueException, NotImplementedException
from alpaca.observingconditions import ObservingConditions

from obsctl.config import (
    SimulatedCameraConfig,
    SimulatedDomeConfig,
    SimulatedWeatherConfig,
    SimulatorConfig,
)

from ..conftest import SPEED

SHUTTER_S = 60.0


def _wait(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def simulators(kind: str) -> SimulatorConfig:
    return SimulatorConfig(
        start="never",
        port=0,
        discovery_port=None,
        speed=SPEED,
        camera=SimulatedCameraConfig(width_px=64, height_px=48),
        dome=SimulatedDomeConfig(kind=kind, shutter_time_s=SHUTTER_S, rotation_rate_deg_s=3.0),
        weather=SimulatedWeatherConfig(missing=("sky_quality_mag_arcsec2",)),
    )


@pytest.fixture(params=["roll_off", "rotating"])
def sim_config(request) -> SimulatorConfig:
    return simulators(request.param)


def dome_session(address: str) -> dict[str, object]:
    """What a third-party client does with a dome; runs in a thread (alpyca blocks)."""
    out: dict[str, object] = {"devices": management.configureddevices(address)}
    dome = Dome(address, 0)
    dome.Connected = True
    out["abilities"] = (dome.CanSetAzimuth, dome.CanPark, dome.CanSetShutter, dome.CanSlave)
    out["closed"] = dome.ShutterStatus
    dome.OpenShutter()
    out["opening"] = (dome.ShutterStatus, dome.Slewing)
    _wait(lambda: dome.ShutterStatus == ShutterState.shutterOpen)
    out["open"] = dome.Slewing
    if dome.CanSetAzimuth:
        dome.SlewToAzimuth(123.5)
        _wait(lambda: not dome.Slewing)
        out["azimuth"] = (dome.Azimuth, dome.AtPark)
        dome.Park()
        _wait(lambda: dome.AtPark)
        out["parked_at"] = dome.Azimuth
    else:
        try:
            dome.SlewToAzimuth(123.5)
        except NotImplementedException:
            out["azimuth"] = "not implemented"
    dome.CloseShutter()
    out["closing"] = dome.ShutterStatus
    _wait(lambda: dome.ShutterStatus == ShutterState.shutterClosed)
    out["state"] = {item["Name"]: item["Value"] for item in dome.DeviceState}
    dome.Connected = False
    return out


async def test_alpyca_drives_the_dome(sims, sim_config) -> None:
    out = await asyncio.to_thread(dome_session, f"127.0.0.1:{sims.port}")
    kinds = {d["DeviceType"] for d in out["devices"]}
    assert {"Dome", "ObservingConditions"} <= kinds
    rotates = sim_config.dome.kind == "rotating"
    assert out["abilities"] == (rotates, rotates, True, False)
    assert out["closed"] == ShutterState.shutterClosed
    assert out["opening"] == (ShutterState.shutterOpening, True)
    assert out["open"] is False
    assert out["closing"] == ShutterState.shutterClosing
    assert out["state"]["ShutterStatus"] == ShutterState.shutterClosed.value
    if rotates:
        azimuth, at_park = out["azimuth"]
        assert azimuth == pytest.approx(123.5) and at_park is False
        assert out["parked_at"] == pytest.approx(0.0)
        assert out["state"]["AtPark"] is True
    else:
        assert out["azimuth"] == "not implemented"
        assert "Azimuth" not in out["state"]  # DeviceState leaves out what is not implemented


def weather_session(address: str) -> dict[str, object]:
    """What a third-party client does with a weather station; runs in a thread."""
    out: dict[str, object] = {}
    station = ObservingConditions(address, 0)
    station.Connected = True
    out["values"] = (station.RainRate, station.Humidity, station.WindGust, station.AveragePeriod)
    out["age"] = station.TimeSinceLastUpdate("RainRate")
    out["description"] = station.SensorDescription("RainRate")
    for name, read in (
        ("SkyQuality", lambda: station.SkyQuality),
        ("Pressure", lambda: station.Pressure),
        ("SkyQualityAge", lambda: station.TimeSinceLastUpdate("SkyQuality")),
    ):
        try:
            read()
        except NotImplementedException:
            out[name] = "not implemented"
    try:
        station.TimeSinceLastUpdate("Nonsense")
    except InvalidValueException:
        out["Nonsense"] = "invalid"
    out["state"] = {item["Name"]: item["Value"] for item in station.DeviceState}
    station.Connected = False
    return out


@pytest.mark.parametrize("sim_config", ["roll_off"], indirect=True)
async def test_alpyca_reads_the_weather_station(sims) -> None:
    address = f"127.0.0.1:{sims.port}"
    # Values set through the control API, as a test or an operator sets them.
    async with aiohttp.ClientSession(base_url=sims.url) as session:
        body = {"rain_rate_mm_h": 3.25, "humidity_pct": 97.5, "wind_gust_m_s": 21.0}
        async with session.put("/sim/v1/observingconditions/0/readings", json=body) as reply:
            assert reply.status == 200, await reply.text()
    out = await asyncio.to_thread(weather_session, address)
    assert out["values"] == (3.25, 97.5, 21.0, 0.0)
    assert 0.0 <= out["age"] < 10.0
    assert isinstance(out["description"], str) and out["description"]
    assert out["SkyQuality"] == out["Pressure"] == out["SkyQualityAge"] == "not implemented"
    assert out["Nonsense"] == "invalid"
    state = out["state"]
    assert state["RainRate"] == 3.25 and state["Humidity"] == 97.5
    assert "SkyQuality" not in state and "Pressure" not in state and "TimeStamp" in state
