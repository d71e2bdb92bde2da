"""The `ObservingConditions` contract: a weather station over every implementation."""

from __future__ import annotations

import pytest

from obsctl.config import SimulatedCameraConfig, SimulatedWeatherConfig, SimulatorConfig
from obsctl.devices import ObservingConditions, WeatherReadings
from obsctl.errors import InvalidDeviceValueError

from ..conftest import SPEED
from .conftest import NOT_SERIAL

UPDATE_S = 30.0

pytestmark = pytest.mark.parametrize("devices", NOT_SERIAL, indirect=True)


@pytest.fixture
def sim_config() -> SimulatorConfig:
    """The simulators with a weather station that has no sky-quality or cloud sensor."""
    return SimulatorConfig(
        start="never",
        port=0,
        discovery_port=None,
        speed=SPEED,
        camera=SimulatedCameraConfig(width_px=64, height_px=48),
        weather=SimulatedWeatherConfig(
            temperature_c=12.5,
            humidity_pct=61.0,
            update_interval_s=UPDATE_S,
            missing=("sky_quality_mag_arcsec2", "cloud_cover_pct"),
        ),
    )


async def test_reads_the_configured_values_and_none_for_missing_sensors(devices) -> None:
    station = devices.weather
    assert isinstance(station, ObservingConditions)
    assert await station.readings() == WeatherReadings(
        cloud_cover_pct=None,
        sky_temperature_c=-30.0,
        temperature_c=12.5,
        dew_point_c=0.0,
        humidity_pct=61.0,
        wind_speed_m_s=2.0,
        wind_gust_m_s=4.0,
        rain_rate_mm_h=0.0,
        sky_quality_mag_arcsec2=None,
        average_period_h=0.0,
    )


async def test_reflects_values_set_on_the_simulator(devices, sims) -> None:
    station = devices.weather
    sims.observatory.weather.set_values(
        rain_rate_mm_h=2.5, humidity_pct=93.0, wind_gust_m_s=17.25, cloud_cover_pct=80.0
    )
    readings = await station.readings()
    assert readings.rain_rate_mm_h == 2.5 and readings.humidity_pct == 93.0
    assert readings.wind_gust_m_s == 17.25
    assert readings.cloud_cover_pct == 80.0  # a sensor fitted later appears
    sims.observatory.weather.set_values(temperature_c=None)  # and one removed goes
    readings = await station.readings()
    assert readings.temperature_c is None and readings.rain_rate_mm_h == 2.5


async def test_time_since_last_update(devices, sims, clock) -> None:
    station = devices.weather
    weather = sims.observatory.weather
    weather.set_values(rain_rate_mm_h=0.0)
    age = await station.time_since_last_update_s("RainRate")
    assert age is not None and 0.0 <= age < UPDATE_S
    latest = await station.time_since_last_update_s()
    assert latest is not None and 0.0 <= latest < UPDATE_S
    # Refreshed every UPDATE_S: the age never passes it while the feed runs.
    await clock.sleep(2.5 * UPDATE_S)
    age = await station.time_since_last_update_s("Humidity")
    assert age is not None and age < UPDATE_S

    weather.set_stalled(True)
    await clock.sleep(3 * UPDATE_S)
    age = await station.time_since_last_update_s("Humidity")
    assert age is not None and age >= 3 * UPDATE_S
    latest = await station.time_since_last_update_s()
    assert latest is not None and latest >= 3 * UPDATE_S  # no sensor is fresher
    weather.set_stalled(False)
    age = await station.time_since_last_update_s("Humidity")
    assert age is not None and age < UPDATE_S


async def test_time_since_last_update_of_missing_and_unknown_sensors(devices) -> None:
    station = devices.weather
    assert await station.time_since_last_update_s("SkyQuality") is None  # not fitted
    assert await station.time_since_last_update_s("Pressure") is None  # never simulated
    with pytest.raises(InvalidDeviceValueError):
        await station.time_since_last_update_s("Nonsense")
