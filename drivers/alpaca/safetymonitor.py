"""`AlpacaSafetyMonitor`: the `obsctl.devices.SafetyMonitor` protocol over Alpaca."""

from __future__ import annotations

from obsctl.drivers.alpaca._device import AlpacaDevice

__all__ = ["AlpacaSafetyMonitor"]


class AlpacaSafetyMonitor(AlpacaDevice):
    """A safety monitor on an Alpaca server (see `AlpacaDevice` for parameters)."""

    device_type = "safetymonitor"

    async def is_safe(self) -> bool:
        """Return ``IsSafe``."""
        return bool(await self._get("issafe"))
