"""Simulated weather station: values that a scenario, tests and the control API set, and ages.

A scenario (``[[simulator.weather.scenario]]``) changes values at set times of the simulated
clock, applied when the station is next read.

The station "refreshes" every ``update_interval_s`` of simulated time, so the age of a value
(ASCOM ``TimeSinceLastUpdate``) climbs and falls back to 0 as a real station's does, until
`WeatherModel.set_stalled` stops the feed: then the ages grow without bound, as they do when
a station's cable is cut. A value is instantaneous (``AveragePeriod`` 0).
"""

from __future__ import annotations

import logging
import math

from obsctl.clock import Clock
from obsctl.config import SimulatedWeatherConfig
from obsctl.simulators.models import (
    INVALID_VALUE,
    NOT_IMPLEMENTED,
    AscomError,
    ConnectableModel,
)

__all__ = ["SENSORS", "WeatherModel"]

log = logging.getLogger(__name__)

#: The sensors the station can have: ASCOM property name -> field of
#: `obsctl.devices.WeatherReadings` (and of `SimulatedWeatherConfig`).
SENSORS: dict[str, str] = {
    "CloudCover": "cloud_cover_pct",
    "SkyTemperature": "sky_temperature_c",
    "Temperature": "temperature_c",
    "DewPoint": "dew_point_c",
    "Humidity": "humidity_pct",
    "WindSpeed": "wind_speed_m_s",
    "WindGust": "wind_gust_m_s",
    "RainRate": "rain_rate_mm_h",
    "SkyQuality": "sky_quality_mag_arcsec2",
}
#: ASCOM sensors no simulated station has (they always answer NotImplemented).
ABSENT_SENSORS = ("Pressure", "SkyBrightness", "StarFWHM", "WindDirection")


class WeatherModel(ConnectableModel):
    """A weather station with ASCOM ``IObservingConditionsV2`` semantics.

    Parameters
    ----------
    config : SimulatedWeatherConfig
        Initial values, refresh interval and the sensors the station lacks.
    clock : Clock
        Source of simulated time.
    """

    def __init__(self, config: SimulatedWeatherConfig, clock: Clock) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        now = clock.monotonic()
        self._values: dict[str, float | None] = {
            field: None if field in config.missing else float(getattr(config, field))
            for field in SENSORS.values()
        }
        self._set_at: dict[str, float] = dict.fromkeys(SENSORS.values(), now)
        self._stalled_at: float | None = None
        self._scenario = list(config.scenario)  # changes still to come, in time order

    def _play(self) -> None:
        """Apply the scenario's changes whose time has come (reads call it: lazy, exact)."""
        now = self.clock.now()
        while self._scenario and self._scenario[0].at <= now:
            change = self._scenario.pop(0)
            log.info("simulated weather scenario at %s", change.at.isoformat())
            self.set_values(**change.values())

    def value(self, field: str) -> float:
        """Return one sensor's value, by its `SENSORS` field name.

        Raises
        ------
        AscomError
            0x400 when the station has no such sensor.
        """
        self._play()
        value = self._values[field]
        if value is None:
            raise AscomError(NOT_IMPLEMENTED, f"this station has no {field} sensor")
        return value

    def readings(self) -> dict[str, float | None]:
        """Return every sensor's value by field name; None for a sensor the station lacks."""
        self._play()
        return dict(self._values)

    def set_values(self, **values: float | None) -> None:
        """Set sensor values (a new reading now); None removes the sensor.

        Parameters
        ----------
        **values : float or None
            New values by `SENSORS` field name (``rain_rate_mm_h=2.0``).

        Raises
        ------
        ValueError
            When a name is no sensor or a value is not finite.
        """
        for field, value in values.items():
            if field not in self._values:
                raise ValueError(f"{field!r} is no sensor; expected one of {list(self._values)}")
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{field}: expected a finite number, got {value!r}")
        now = self.clock.monotonic()
        for field, value in values.items():
            self._values[field] = None if value is None else float(value)
            self._set_at[field] = now
        log.info("simulated weather: %s", ", ".join(f"{k}={v}" for k, v in values.items()))

    @property
    def stalled(self) -> bool:
        """Whether the feed has stopped (ages grow without bound)."""
        return self._stalled_at is not None

    def set_stalled(self, stalled: bool) -> None:
        """Stop or restart the station's refreshes.

        Parameters
        ----------
        stalled : bool
            True stops the feed: values keep their last reading and their ages grow.
        """
        if stalled and self._stalled_at is None:
            self._stalled_at = self.clock.monotonic()
            log.info("simulated weather feed stalled")
        elif not stalled and self._stalled_at is not None:
            # The feed comes back with a fresh reading of every sensor.
            now = self.clock.monotonic()
            self._set_at = dict.fromkeys(self._set_at, now)
            self._stalled_at = None
            log.info("simulated weather feed restored")

    def _age_s(self, field: str) -> float:
        now = self.clock.monotonic()
        set_at = self._set_at[field]
        refreshed_until = now if self._stalled_at is None else max(set_at, self._stalled_at)
        interval = self.config.update_interval_s
        last = set_at + math.floor((refreshed_until - set_at) / interval) * interval
        return now - last

    def time_since_update_s(self, sensor_name: str) -> float:
        """Return the age of a sensor's latest reading in seconds (ASCOM TimeSinceLastUpdate).

        Parameters
        ----------
        sensor_name : str
            ASCOM sensor name (any case); empty for the latest update of any sensor.

        Raises
        ------
        AscomError
            0x401 for an unknown name, 0x400 for a sensor the station lacks.
        """
        self._play()
        fitted = [f for f, v in self._values.items() if v is not None]
        if not sensor_name:
            if not fitted:
                raise AscomError(NOT_IMPLEMENTED, "this station has no sensors")
            return min(self._age_s(f) for f in fitted)
        field = _field_of(sensor_name)
        if field not in fitted:
            raise AscomError(NOT_IMPLEMENTED, f"this station has no {sensor_name} sensor")
        return self._age_s(field)

    def sensor_description(self, sensor_name: str) -> str:
        """Return a description of a sensor (ASCOM SensorDescription).

        Raises
        ------
        AscomError
            0x401 for an unknown name, 0x400 for a sensor the station lacks.
        """
        field = _field_of(sensor_name)
        if self._values.get(field) is None:
            raise AscomError(NOT_IMPLEMENTED, f"this station has no {sensor_name} sensor")
        return f"obsctl simulated {field} sensor"


def _field_of(sensor_name: str) -> str:
    """Return the field of an ASCOM sensor name, or "" for one no simulated station has."""
    for name, field in SENSORS.items():
        if name.lower() == sensor_name.lower():
            return field
    if any(name.lower() == sensor_name.lower() for name in ABSENT_SENSORS):
        return ""
    raise AscomError(INVALID_VALUE, f"{sensor_name!r} is no ObservingConditions sensor")
