"""`AlpacaObservingConditions`: the `obsctl.devices.ObservingConditions` protocol over Alpaca.

ASCOM lets a weather station implement any subset of its sensors (IObservingConditionsV2): a
sensor that answers NotImplemented (0x400, or HTTP 404 from servers that say it so) reads as
None, one sensor at a time, so a station without a rain sensor still gives its humidity.
"""

from __future__ import annotations

import math
from typing import Any

from obsctl.devices import WeatherReadings
from obsctl.drivers.alpaca._device import AlpacaDevice
from obsctl.errors import DeviceNotImplementedError

__all__ = ["AlpacaObservingConditions"]

# Alpaca member -> field of WeatherReadings; the units are ASCOM's, which are the fields'.
_SENSORS = {
    "cloudcover": "cloud_cover_pct",
    "skytemperature": "sky_temperature_c",
    "temperature": "temperature_c",
    "dewpoint": "dew_point_c",
    "humidity": "humidity_pct",
    "windspeed": "wind_speed_m_s",
    "windgust": "wind_gust_m_s",
    "rainrate": "rain_rate_mm_h",
    "skyquality": "sky_quality_mag_arcsec2",
    "averageperiod": "average_period_h",
}


def _number(value: Any) -> float | None:
    """Return a sensor's value as a float; NaN for one that is not a number.

    A driver that answers ``"n/a"`` or ``true`` for a sensor has a sensor that says nothing
    usable: NaN trips every limit on it (`obsctl.acquisition.weather`), where an exception
    would lose the other sensors' values.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return math.nan
    try:
        return float(value)
    except ValueError:
        return math.nan


class AlpacaObservingConditions(AlpacaDevice):
    """A weather station on an Alpaca server (see `AlpacaDevice` for parameters)."""

    device_type = "observingconditions"

    async def readings(self) -> WeatherReadings:
        """Read every sensor concurrently; a sensor not implemented is None."""
        values = await self._get_all((), optional=tuple(_SENSORS))
        return WeatherReadings(**{f: _number(values[m]) for m, f in _SENSORS.items()})

    async def time_since_last_update_s(self, sensor: str = "") -> float | None:
        """Read ``TimeSinceLastUpdate`` in seconds; None when not implemented.

        Parameters
        ----------
        sensor : str
            ASCOM sensor name (``"RainRate"``); empty for the latest update of any sensor.

        Raises
        ------
        InvalidDeviceValueError
            When the station does not know the sensor name.
        """
        try:
            value = await self._get("timesincelastupdate", SensorName=sensor)
        except DeviceNotImplementedError:
            return None
        return float(value)
