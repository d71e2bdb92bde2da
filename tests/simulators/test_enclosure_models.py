"""The dome and weather-station models on a clock the test moves by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from obsctl.config import SimulatedDomeConfig, SimulatedWeatherConfig
from obsctl.devices import ShutterState
from obsctl.simulators import AscomError, DomeModel, WeatherModel


class HandClock:
    """Simulated time that moves only when the test says."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.t)

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_dome_needs_a_connection() -> None:
    dome = DomeModel(SimulatedDomeConfig(kind="rotating"), HandClock())
    for command in (dome.open_shutter, dome.close_shutter, dome.park, dome.abort_slew):
        with pytest.raises(AscomError) as info:
            command()
        assert info.value.number == 0x407


def test_shutter_timing_and_reversal() -> None:
    clock = HandClock()
    dome = DomeModel(SimulatedDomeConfig(shutter_time_s=20.0), clock)
    dome.connected = True
    dome.open_shutter()
    clock.t += 19.9
    assert dome.shutter_state == ShutterState.OPENING and dome.slewing
    clock.t += 0.1
    assert dome.shutter_state == ShutterState.OPEN and not dome.slewing
    dome.close_shutter()
    clock.t += 5.0  # a quarter closed, then opened again: 5 s back to open
    dome.open_shutter()
    assert dome.shutter_state == ShutterState.OPENING
    assert dome.shutter_fraction == pytest.approx(0.75)
    clock.t += 4.9
    assert dome.shutter_state == ShutterState.OPENING
    clock.t += 0.1
    assert dome.shutter_state == ShutterState.OPEN
    dome.open_shutter()  # open already: nothing moves
    assert not dome.slewing


def test_rotation_takes_the_short_way_and_parks() -> None:
    clock = HandClock()
    dome = DomeModel(
        SimulatedDomeConfig(kind="rotating", rotation_rate_deg_s=10.0, park_az_deg=350.0), clock
    )
    dome.connected = True
    assert dome.at_park and dome.azimuth_deg == 350.0
    dome.slew_to_azimuth(20.0)  # 30 degrees east through north
    assert not dome.at_park
    clock.t += 1.5
    assert dome.azimuth_deg == pytest.approx(5.0) and dome.rotating
    clock.t += 1.5
    assert dome.azimuth_deg == pytest.approx(20.0) and not dome.rotating
    dome.park()
    clock.t += 2.9
    assert not dome.at_park
    clock.t += 0.1
    assert dome.at_park and dome.azimuth_deg == pytest.approx(350.0)


def test_roll_off_roof_has_no_azimuth() -> None:
    dome = DomeModel(SimulatedDomeConfig(kind="roll_off"), HandClock())
    dome.connected = True
    assert not dome.at_park and not dome.rotates
    for call in (lambda: dome.azimuth_deg, lambda: dome.slew_to_azimuth(10.0), dome.park):
        with pytest.raises(AscomError) as info:
            call()
        assert info.value.number == 0x400


def test_weather_ages_refresh_and_stall() -> None:
    clock = HandClock()
    weather = WeatherModel(SimulatedWeatherConfig(update_interval_s=10.0), clock)
    clock.t += 25.0
    assert weather.time_since_update_s("Humidity") == pytest.approx(5.0)
    weather.set_values(humidity_pct=80.0)
    clock.t += 3.0
    assert weather.time_since_update_s("humidity") == pytest.approx(3.0)  # any case
    assert weather.time_since_update_s("") == pytest.approx(3.0)  # the freshest sensor
    assert weather.time_since_update_s("RainRate") == pytest.approx(8.0)
    weather.set_stalled(True)
    clock.t += 100.0
    # Last refreshed 3 s before the stall, for humidity; 8 s before for the rain sensor.
    assert weather.time_since_update_s("Humidity") == pytest.approx(103.0)
    assert weather.time_since_update_s("RainRate") == pytest.approx(108.0)
    weather.set_stalled(False)
    assert weather.time_since_update_s("RainRate") == 0.0


def test_weather_values_are_checked() -> None:
    weather = WeatherModel(SimulatedWeatherConfig(missing=("rain_rate_mm_h",)), HandClock())
    assert weather.readings()["rain_rate_mm_h"] is None
    with pytest.raises(AscomError) as info:
        weather.value("rain_rate_mm_h")
    assert info.value.number == 0x400
    with pytest.raises(ValueError, match="no sensor"):
        weather.set_values(rain=1.0)
    with pytest.raises(ValueError, match="finite"):
        weather.set_values(humidity_pct=float("nan"))
    assert weather.readings()["humidity_pct"] == 50.0  # nothing was set by a refused call
    with pytest.raises(AscomError) as info:
        weather.time_since_update_s("Nonsense")
    assert info.value.number == 0x401
