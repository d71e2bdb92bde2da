"""`AlpacaMount`: the `obsctl.devices.Mount` protocol over Alpaca (ITelescopeV4)."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from obsctl.clock import Clock, SystemClock
from obsctl.coords import j2000_to_jnow, jnow_to_j2000
from obsctl.devices import (
    DEFAULT_GUIDE_RATE_ARCSEC_S,
    GuideDirection,
    MountStatus,
    PierSide,
    pulse_duration_ms,
)
from obsctl.drivers.alpaca._device import AlpacaDevice
from obsctl.errors import DeviceError, InvalidDeviceValueError

__all__ = ["AlpacaMount", "EquatorialSetting", "check_radec"]

log = logging.getLogger(__name__)

# ASCOM EquatorialCoordinateType
_EQU_OTHER = 0
_EQU_TOPOCENTRIC = 1
_EQU_J2000 = 2

#: The config key ``equatorial_system`` of an Alpaca mount: ``driver`` trusts the
#: driver's EquatorialSystem, the others override it.
EquatorialSetting = Literal["driver", "j2000", "topocentric"]
_SETTING_SYSTEMS = {"j2000": _EQU_J2000, "topocentric": _EQU_TOPOCENTRIC}


def _guide_rate_arcsec_s(value: Any) -> float:
    """Return an ASCOM guide rate (degrees per second) in arcsec per second.

    Lenient, as the other readings: a rate the driver does not implement, or answers with
    something that is no positive finite number, is taken as ASCOM's default (0.5 x
    sidereal) rather than failing the guiding that does not depend on knowing it exactly.
    """
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | str):
        return DEFAULT_GUIDE_RATE_ARCSEC_S
    try:
        rate_deg_s = float(value)
    except ValueError:
        return DEFAULT_GUIDE_RATE_ARCSEC_S
    if not math.isfinite(rate_deg_s) or rate_deg_s <= 0:
        return DEFAULT_GUIDE_RATE_ARCSEC_S
    return rate_deg_s * 3600.0


def check_radec(ra_deg: float, dec_deg: float, *, device: str) -> None:
    """Refuse J2000 coordinates that are no position on the sky.

    Checked on the caller's coordinates before any conversion: precessing Dec 95 to the
    equinox of date gives a valid-looking position on the far side of the pole.

    Parameters
    ----------
    ra_deg, dec_deg : float
        J2000 right ascension (any finite value; it is wrapped) and declination in degrees.
    device : str
        Device name for the error.

    Raises
    ------
    InvalidDeviceValueError
        When RA is not finite or Dec is outside [-90, 90].
    """
    if not math.isfinite(ra_deg) or not -90.0 <= dec_deg <= 90.0:
        raise InvalidDeviceValueError(
            f"RA {ra_deg!r} / Dec {dec_deg!r} deg is no J2000 position "
            "(RA finite, Dec from -90 to 90)",
            device=device,
        )


@dataclass(eq=False, repr=False, kw_only=True)
class AlpacaMount(AlpacaDevice):
    """A telescope mount on an Alpaca server.

    The protocol speaks J2000; a mount that works in topocentric (JNow) coordinates is
    converted on the way in and out.

    Parameters
    ----------
    name, client, device_number, timeout_s, connect_timeout_s
        See `AlpacaDevice`.
    equatorial_system : {"driver", "j2000", "topocentric"}
        The coordinates the mount takes: ``driver`` believes its EquatorialSystem (0,
        "other", is taken as J2000 with a warning); the others override a driver whose answer
        is wrong.
    clock : Clock
        The date of topocentric coordinates (the daemon's, simulated or not).
    """

    device_type = "telescope"

    equatorial_system: EquatorialSetting = "driver"
    clock: Clock = field(default_factory=SystemClock)
    _system_number: int | None = field(default=None, init=False)

    async def connect(self) -> None:
        """Connect and learn the mount's equatorial system.

        Raises
        ------
        DeviceError
            When the driver reports an equatorial system obsctl does not know (B1950 and the
            like) and ``equatorial_system`` does not override it.
        """
        await super().connect()
        self._system_number = None
        await self._system()

    async def _system(self) -> int:
        if self._system_number is not None:
            return self._system_number
        fixed = _SETTING_SYSTEMS.get(self.equatorial_system)
        if fixed is not None:
            self._system_number = fixed
            return fixed
        system = int(await self._get("equatorialsystem"))
        if system == _EQU_OTHER:
            log.warning(
                "%s: the driver reports EquatorialSystem 0 (other); assuming J2000. Set "
                'equatorial_system = "j2000" or "topocentric" in [devices.%s] to say which',
                self.name,
                self.name,
            )
            system = _EQU_J2000
        elif system not in (_EQU_TOPOCENTRIC, _EQU_J2000):
            raise DeviceError(
                f"EquatorialSystem {system} is not supported (J2000 or topocentric only); "
                f'set equatorial_system = "j2000" or "topocentric" in [devices.{self.name}] '
                "if the driver misreports it",
                device=self.name,
            )
        self._system_number = system
        return system

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
            ra_deg, dec_deg = jnow_to_j2000(ra_deg, dec_deg, self.clock.now())
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
        """Start ``SlewToCoordinatesAsync`` to J2000 coordinates in degrees.

        Raises
        ------
        InvalidDeviceValueError
            When the coordinates are no sky position (checked before any conversion), or the
            mount refuses them.
        DeviceParkedError
            When the mount is parked.
        """
        check_radec(ra_deg, dec_deg, device=self.name)
        if await self._system() == _EQU_TOPOCENTRIC:
            ra_deg, dec_deg = j2000_to_jnow(ra_deg, dec_deg, self.clock.now())
        await self._put(
            "slewtocoordinatesasync",
            RightAscension=repr((ra_deg % 360.0) / 15.0),
            Declination=repr(float(dec_deg)),
        )

    async def sync_to_radec(self, ra_deg: float, dec_deg: float) -> None:
        """``SyncToCoordinates`` at J2000 coordinates in degrees.

        Raises
        ------
        InvalidDeviceValueError
            When the coordinates are no sky position (checked before any conversion), or the
            mount refuses them.
        DeviceNotImplementedError
            When the mount cannot sync (ASCOM requires 0x400 when ``CanSync`` is false).
        DeviceParkedError
            When the mount is parked.
        DeviceBusyError
            When the mount is slewing.
        """
        check_radec(ra_deg, dec_deg, device=self.name)
        if await self._system() == _EQU_TOPOCENTRIC:
            ra_deg, dec_deg = j2000_to_jnow(ra_deg, dec_deg, self.clock.now())
        await self._put(
            "synctocoordinates",
            RightAscension=repr((ra_deg % 360.0) / 15.0),
            Declination=repr(float(dec_deg)),
        )

    async def pulse_guide(self, direction: GuideDirection, duration_s: float) -> None:
        """Start ``PulseGuide`` (Direction as ASCOM ``GuideDirections``, Duration in ms).

        The duration is rounded to whole milliseconds, which ASCOM takes as an integer.

        Raises
        ------
        InvalidDeviceValueError
            When the duration is negative or not finite (checked before sending), or the
            mount refuses it.
        DeviceNotImplementedError
            When the mount cannot pulse guide (ASCOM requires 0x400 when ``CanPulseGuide``
            is false).
        DeviceParkedError
            When the mount is parked.
        DeviceBusyError
            When the mount refuses in its present state (slewing, not tracking).
        """
        duration_ms = pulse_duration_ms(duration_s, device=self.name)
        await self._put("pulseguide", Direction=str(int(direction)), Duration=str(duration_ms))

    async def guide_rates(self) -> tuple[float, float]:
        """Read ``GuideRateRightAscension`` and ``GuideRateDeclination`` in arcsec/s.

        ASCOM gives them in degrees per second. A rate the driver does not implement or
        answers with no positive number is ASCOM's default, 0.5 x sidereal.
        """
        ra, dec = await asyncio.gather(
            self._get_optional("guideraterightascension"),
            self._get_optional("guideratedeclination"),
        )
        return _guide_rate_arcsec_s(ra), _guide_rate_arcsec_s(dec)

    async def is_pulse_guiding(self) -> bool:
        """Read ``IsPulseGuiding``; False for a driver that does not implement it."""
        value = await self._get_optional("ispulseguiding")
        if isinstance(value, str):  # a driver that sends "True"/"False" as text
            return value.strip().lower() == "true"
        return bool(value)

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
