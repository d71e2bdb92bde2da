"""`AlpacaDome`: the `obsctl.devices.Dome` protocol over Alpaca (IDomeV3).

A roll-off roof is a dome with a shutter and nothing else: it answers NotImplemented for
``Azimuth`` (and often for ``Slaved``), which the status reads as None and False.
"""

from __future__ import annotations

import math
from typing import Any

from obsctl.devices import DomeInfo, DomeStatus, ShutterState
from obsctl.drivers.alpaca._device import AlpacaDevice
from obsctl.errors import InvalidDeviceValueError

__all__ = ["AlpacaDome"]


def _shutter(value: Any) -> ShutterState | None:
    if value is None:
        return None
    try:
        return ShutterState(int(value))
    except (TypeError, ValueError):
        # A number outside the enumeration says the dome does not know: no safe reading.
        return ShutterState.ERROR


class AlpacaDome(AlpacaDevice):
    """A dome or roll-off roof on an Alpaca server (see `AlpacaDevice` for parameters)."""

    device_type = "dome"

    async def info(self) -> DomeInfo:
        """Read ``CanSetAzimuth``, ``CanSetShutter``, ``CanPark`` and ``CanSlave``."""
        values = await self._get_all(("cansetazimuth", "cansetshutter", "canpark", "canslave"))
        return DomeInfo(
            can_set_azimuth=bool(values["cansetazimuth"]),
            can_set_shutter=bool(values["cansetshutter"]),
            can_park=bool(values["canpark"]),
            can_slave=bool(values["canslave"]),
        )

    async def status(self) -> DomeStatus:
        """Read the shutter, azimuth, motion, park and slaving state concurrently.

        ``ShutterStatus`` and ``Azimuth`` are None when not implemented (a dome without a
        controllable shutter, a roll-off roof); ``Slaved`` is then False.
        """
        values = await self._get_all(
            ("slewing", "atpark"), optional=("shutterstatus", "azimuth", "slaved")
        )
        azimuth = values["azimuth"]
        return DomeStatus(
            shutter=_shutter(values["shutterstatus"]),
            azimuth_deg=None if azimuth is None else float(azimuth),
            slewing=bool(values["slewing"]),
            at_park=bool(values["atpark"]),
            slaved=bool(values["slaved"]),
        )

    async def open_shutter(self) -> None:
        """Start ``OpenShutter``."""
        await self._put("openshutter")

    async def close_shutter(self) -> None:
        """Start ``CloseShutter``."""
        await self._put("closeshutter")

    async def slew_to_azimuth(self, az_deg: float) -> None:
        """Start ``SlewToAzimuth`` in degrees (any finite value; it is wrapped to [0, 360)).

        Raises
        ------
        InvalidDeviceValueError
            When the azimuth is not finite (checked here) or the dome refuses it.
        DeviceNotImplementedError
            When the dome does not rotate.
        """
        if not math.isfinite(az_deg):
            raise InvalidDeviceValueError(f"azimuth {az_deg!r} is not finite", device=self.name)
        await self._put("slewtoazimuth", Azimuth=repr(float(az_deg) % 360.0))

    async def abort_slew(self) -> None:
        """``AbortSlew``: stops rotation and shutter."""
        await self._put("abortslew")

    async def park(self) -> None:
        """Start ``Park``."""
        await self._put("park")

    async def set_slaved(self, on: bool) -> None:
        """Set ``Slaved``."""
        await self._put("slaved", Slaved=str(bool(on)))
