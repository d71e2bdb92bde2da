"""`AlpacaMount`: the `obsctl.devices.Mount` protocol over Alpaca (ITelescopeV4)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from obsctl.coords import j2000_to_jnow, jnow_to_j2000
from obsctl.devices import MountStatus, PierSide
from obsctl.drivers.alpaca._device import AlpacaDevice
from obsctl.errors import DeviceError

__all__ = ["AlpacaMount"]

log = logging.getLogger(__name__)

# ASCOM EquatorialCoordinateType
_EQU_TOPOCENTRIC = 1
_EQU_J2000 = 2


class AlpacaMount(AlpacaDevice):
    """A telescope mount on an Alpaca server (see `AlpacaDevice` for parameters).

    The protocol speaks J2000; a mount that works in topocentric (JNow) coordinates is
    converted on the way in and out.
    """

    device_type = "telescope"
    _equatorial_system: int | None = None

    async def connect(self) -> None:
        """Connect and learn the mount's equatorial system."""
        await super().connect()
        system = int(await self._get("equatorialsystem"))
        if system not in (_EQU_TOPOCENTRIC, _EQU_J2000):
            raise DeviceError(
                f"EquatorialSystem {system} is not supported (J2000 or topocentric only)",
                device=self.name,
            )
        self._equatorial_system = system

    async def _system(self) -> int:
        if self._equatorial_system is None:
            self._equatorial_system = int(await self._get("equatorialsystem"))
        return self._equatorial_system

    async def status(self) -> MountStatus:
        """Read position, motion and park state concurrently."""
        ra_h, dec, alt, az, slewing, tracking, at_park, side, lst = await asyncio.gather(
            self._get("rightascension"),
            self._get("declination"),
            self._get("altitude"),
            self._get("azimuth"),
            self._get("slewing"),
            self._get("tracking"),
            self._get("atpark"),
            self._get_optional("sideofpier"),
            self._get_optional("siderealtime"),
        )
        ra_deg, dec_deg = float(ra_h) * 15.0, float(dec)
        if await self._system() == _EQU_TOPOCENTRIC:
            ra_deg, dec_deg = jnow_to_j2000(ra_deg, dec_deg, datetime.now(UTC))
        try:
            pier = PierSide(int(side)) if side is not None else PierSide.UNKNOWN
        except ValueError:
            pier = PierSide.UNKNOWN
        return MountStatus(
            ra_deg=ra_deg,
            dec_deg=dec_deg,
            alt_deg=float(alt),
            az_deg=float(az),
            slewing=bool(slewing),
            tracking=bool(tracking),
            at_park=bool(at_park),
            pier_side=pier,
            sidereal_time_h=None if lst is None else float(lst),
        )

    async def slew_to_radec(self, ra_deg: float, dec_deg: float) -> None:
        """Start ``SlewToCoordinatesAsync`` to J2000 coordinates in degrees."""
        if await self._system() == _EQU_TOPOCENTRIC:
            ra_deg, dec_deg = j2000_to_jnow(ra_deg, dec_deg, datetime.now(UTC))
        await self._put(
            "slewtocoordinatesasync",
            RightAscension=repr((ra_deg % 360.0) / 15.0),
            Declination=repr(float(dec_deg)),
        )

    async def slew_to_altaz(self, alt_deg: float, az_deg: float) -> None:
        """Start ``SlewToAltAzAsync`` in degrees."""
        await self._put(
            "slewtoaltazasync", Azimuth=repr(float(az_deg) % 360.0), Altitude=repr(float(alt_deg))
        )

    async def abort_slew(self) -> None:
        """``AbortSlew``."""
        await self._put("abortslew")

    async def set_tracking(self, on: bool) -> None:
        """Set ``Tracking``."""
        await self._put("tracking", Tracking=str(bool(on)))

    async def park(self) -> None:
        """Start ``Park``."""
        await self._put("park")

    async def unpark(self) -> None:
        """``Unpark``."""
        await self._put("unpark")
