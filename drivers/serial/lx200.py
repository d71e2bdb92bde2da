"""`SerialLX200Mount`: the `obsctl.devices.Mount` protocol over the Meade LX200 command set.

The module has two layers: pure functions that format commands and parse replies (no I/O,
they raise `ValueError` on text they cannot parse), and the driver, which sends commands one
at a time on a `ByteTransport` and turns bad replies into obsctl errors.

The command subset, from the Meade "Telescope Serial Command Protocol" (LX200 classic,
Autostar, Autostar II / LX200GPS) and the OnStep command reference (``Command.ino`` of
OnStep; OnStepX keeps the same commands):

===================  =====================================================  ========================
command              reply                                                  used for
===================  =====================================================  ========================
``:GVP#``            product name ``...#`` (``On-Step#`` on OnStep)         identify, resync
``:GR#``             ``HH:MM.T#`` (low) or ``HH:MM:SS#`` (high precision)   RA, precision
``:GD#``             ``sDD*MM#`` or ``sDD*MM:SS#`` / ``sDD*MM'SS#``         Dec
``:GRa#``            ``HH:MM:SS.ss...#`` (OnStep only)                      RA, fine
``:GDe#``            ``sDD*MM:SS.s...#`` (OnStep only)                      Dec, fine
``:GA#``/``:GZ#``    ``sDD*MM'SS#`` / ``DDD*MM'SS#`` (or low precision)     altitude, azimuth
``:GS#``             ``HH:MM:SS#``                                          sidereal time
``:U#``              none; toggles low/high precision                       high precision
``:Sr...#``          ``1`` valid / ``0`` invalid                            target RA
``:Sd...#``          ``1`` / ``0``                                          target Dec
``:Sa...#``          ``1`` / ``0``                                          target altitude
``:Sz...#``          ``1`` / ``0``                                          target azimuth
``:MS#``             ``0`` ok; Meade ``1<msg>#`` below horizon,             slew to RA/Dec
                     ``2<msg>#`` other limit; OnStep one digit 0-9
``:MA#``             ``0`` ok; Meade ``1`` fault; OnStep one digit 0-9      slew to alt/az
``:Q#``              none                                                   abort
``:CM#``             any ``...#`` (Meade); OnStep ``N/A#`` or ``E<n>#``     sync
``:Mg<d><ms>#``      none; ``d`` one of ``nsew``, ``ms`` four or more digits   guide pulse
``:D#``              bar characters while slewing, ``#`` alone otherwise    slewing (Meade)
``:GW#``             ``<mount><T|N><align>#`` (Autostar II)                 tracking (Meade)
``:GU#``             OnStep status flags ``...#``                           state (OnStep)
``:Gm#``             ``E#``, ``W#``, ``N#`` (none), ``?#`` (flipping)       pier side (OnStep)
``:hP#``             none (Meade); ``1`` / ``0`` (OnStep)                   park
``:hR#``             ``1`` / ``0`` (OnStep)                                 unpark
``:Te#``/``:Td#``    ``1`` / ``0`` (OnStep)                                 tracking on / off
``:St``/``:Sg``      ``1`` / ``0``                                          site latitude, longitude
``:SG``/``:SL``      ``1`` / ``0``                                          UTC offset, local time
``:SC...#``          OnStep ``1`` / ``0``; Meade ``1`` and two ``...#``     date
===================  =====================================================  ========================

A guide pulse (``:Mgn0500#``: north for 500 ms) moves at the mount's guide rate and has no
reply, so a mount that ignores it (OnStep while parked or in a goto) cannot say so: the
driver asks first (OnStep ``:GU#``, Meade ``:D#`` and its own park record) and refuses.
OnStep reports a pulse in progress with the ``G`` flag of ``:GU#``; for a Meade the driver
counts the pulse's length itself. Pulses are at most 16399 ms on OnStep (its limit) and
9999 ms on a Meade (four digits). The guide rate is not read: both are taken to guide at
ASCOM's default, 0.5 x sidereal.

OnStep's single-digit goto replies mean: 0 ok, 1 below the horizon limit, 2 above the
overhead limit, 3 controller in standby, 4 parked, 5 goto in progress, 6 outside limits,
7 hardware fault, 8 already in motion, 9 unspecified.

What differs by flavour (told by ``:GVP#`` at connect):

* OnStep: park, unpark and tracking on/off are supported; RA is set with fractional seconds
  (``HH:MM:SS.SSSS``, which OnStepX accepts; the driver falls back to whole seconds if the
  mount refuses) and read with ``:GRa#``/``:GDe#``, so pointing round-trips to well under an
  arcsecond.
* Generic Meade: RA has one-second resolution (15 arcsec). ``:hP#`` parks, after which the
  driver refuses slews (a Meade cannot be unparked without a power cycle, so `unpark` of a
  parked Meade raises `DeviceNotImplementedError`); tracking cannot be switched; tracking state
  comes from ``:GW#`` where the mount answers it; pier side is unknown. LX200 classic firmware
  without ``:GVP#`` is not supported.

LX200 mounts work in coordinates of date (JNow); the driver converts to and from J2000 with
`obsctl.coords`. At connect it sets high precision, and, when given a site, the site and the
time (UTC offset 0, so local time is UTC). After a timeout, a garbled reply or a dropped line,
the next command first flushes the input and reads past stale replies to a fresh ``:GVP#``
(see `obsctl.drivers.serial._line`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar

from obsctl.clock import Clock, SystemClock
from obsctl.config import SiteConfig
from obsctl.coords import j2000_to_jnow, jnow_to_j2000
from obsctl.devices import (
    DEFAULT_GUIDE_RATE_ARCSEC_S,
    GuideDirection,
    MountStatus,
    PierSide,
    pulse_duration_ms,
)
from obsctl.drivers.serial._device import SerialDevice
from obsctl.drivers.serial._line import Exchange
from obsctl.drivers.serial.transport import ByteTransport
from obsctl.errors import (
    DeviceBusyError,
    DeviceError,
    DeviceNotConnectedError,
    DeviceNotImplementedError,
    DeviceParkedError,
    DeviceTimeoutError,
    InvalidDeviceValueError,
)

__all__ = [
    "Flavor",
    "OnStepStatus",
    "Precision",
    "SerialLX200Mount",
    "format_altitude",
    "format_azimuth",
    "format_date",
    "format_dec",
    "format_latitude",
    "format_longitude",
    "format_ra",
    "format_time",
    "format_utc_offset",
    "goto_error",
    "parse_alignment_tracking",
    "parse_altitude",
    "parse_azimuth",
    "parse_dec",
    "parse_distance_bars",
    "parse_onstep_status",
    "parse_onstep_sync",
    "parse_pier_side",
    "parse_ra",
    "ra_precision",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

Precision = Literal["low", "high", "highest"]
Flavor = Literal["onstep", "meade"]

# Longest reply the driver accepts (Meade's :SC# messages are the longest, ~33 bytes).
_MAX_REPLY = 96
_DEGREE_SEPARATORS = "*\xdf\xb0:"  # '*', 0xDF (the Meade degree sign, 'ß' in Latin-1), '°', ':'

_RA_RE = re.compile(r"^(\d{2}):(\d{2})(?:\.(\d)|:(\d{2})(?:\.(\d+))?)$")
_DMS_RE = re.compile(
    r"^(?P<sign>[+-])?(?P<deg>\d{2,3})(?P<sep>[" + _DEGREE_SEPARATORS + r"])(?P<min>\d{2})"
    r"(?:[:'](?P<sec>\d{2})(?:\.(?P<frac>\d+))?)?$"
)
# 'G' pulse guide active, 'g' any guiding (OnStepX sends both while a pulse runs).
_ONSTEP_FLAGS = set("nNpIPFRHSGgfrstwuzaEKkAoTW/,~;^0123456789")
_GUIDE_LETTERS = {
    GuideDirection.NORTH: "n",
    GuideDirection.SOUTH: "s",
    GuideDirection.EAST: "e",
    GuideDirection.WEST: "w",
}
# Longest pulse each flavour takes in one :Mg command (OnStep's limit; Meade's four digits).
_MAX_PULSE_MS = {"onstep": 16399, "meade": 9999}
_DISTANCE_BARS = set("\x7f\xff|")


# --- formatting ----------------------------------------------------------------------------


def _split_units(value: float, units_per_whole: int, wrap: int | None) -> tuple[int, int]:
    """Round ``value`` to ``1/units_per_whole`` and return (whole part, remainder in units)."""
    total = round(abs(value) * units_per_whole)
    if wrap is not None:
        total %= wrap * units_per_whole
    return divmod(total, units_per_whole)


def format_ra(ra_h: float, precision: Precision = "high") -> str:
    """Format a right ascension as LX200 sends it.

    Parameters
    ----------
    ra_h : float
        Right ascension in hours (wrapped into [0, 24)).
    precision : {"low", "high", "highest"}
        ``HH:MM.T`` (tenths of a minute), ``HH:MM:SS``, or ``HH:MM:SS.SSSS`` (OnStep).

    Returns
    -------
    str
        The formatted value, rounded (never truncated) to the last digit.
    """
    ra_h %= 24.0
    if precision == "low":
        h, tenths = _split_units(ra_h, 600, 24)
        return f"{h:02d}:{tenths // 10:02d}.{tenths % 10:d}"
    if precision == "high":
        h, s = _split_units(ra_h, 3600, 24)
        return f"{h:02d}:{s // 60:02d}:{s % 60:02d}"
    h, units = _split_units(ra_h, 3600 * 10000, 24)
    s, frac = divmod(units, 10000)
    return f"{h:02d}:{s // 60:02d}:{s % 60:02d}.{frac:04d}"


def _format_dms(
    value_deg: float,
    *,
    deg_digits: int,
    signed: bool,
    seconds: bool,
    sec_sep: str,
    deg_sep: str = "*",
) -> str:
    if seconds:
        d, s = _split_units(value_deg, 3600, None)
        body = f"{d:0{deg_digits}d}{deg_sep}{s // 60:02d}{sec_sep}{s % 60:02d}"
        zero = d == 0 and s == 0
    else:
        d, m = _split_units(value_deg, 60, None)
        body = f"{d:0{deg_digits}d}{deg_sep}{m:02d}"
        zero = d == 0 and m == 0
    if not signed:
        return body
    return ("-" if value_deg < 0 and not zero else "+") + body


def _format_signed_deg(value_deg: float, what: str, precision: Precision, sec_sep: str) -> str:
    """``sDD*MM`` or ``sDD*MM:SS`` for an angle in [-90, 90] deg (declination, altitude)."""
    if not -90.0 <= value_deg <= 90.0:
        raise ValueError(f"{what} {value_deg} is outside [-90, 90]")
    return _format_dms(
        value_deg, deg_digits=2, signed=True, seconds=precision != "low", sec_sep=sec_sep
    )


def format_dec(dec_deg: float, precision: Precision = "high", *, sec_sep: str = ":") -> str:
    """Format a declination as ``sDD*MM`` (low) or ``sDD*MM:SS`` (high, highest).

    Parameters
    ----------
    dec_deg : float
        Declination in degrees, [-90, 90].
    precision : {"low", "high", "highest"}
        Low drops the seconds; highest is the same as high (whole arcseconds).
    sec_sep : str
        Separator before the seconds: ``:`` (LX200, OnStep) or ``'`` (Autostar).

    Returns
    -------
    str
        The formatted value.

    Raises
    ------
    ValueError
        When the declination is outside [-90, 90].
    """
    return _format_signed_deg(dec_deg, "declination", precision, sec_sep)


def format_altitude(alt_deg: float, precision: Precision = "high", *, sec_sep: str = ":") -> str:
    """Format an altitude for ``:Sa`` as `format_dec` formats a declination (same errors)."""
    return _format_signed_deg(alt_deg, "altitude", precision, sec_sep)


def format_azimuth(az_deg: float, precision: Precision = "high", *, sec_sep: str = ":") -> str:
    """Format an azimuth (north 0, east 90, wrapped into [0, 360)) for ``:Sz``: ``DDD*MM:SS``."""
    az = az_deg % 360.0
    text = _format_dms(az, deg_digits=3, signed=False, seconds=precision != "low", sec_sep=sec_sep)
    # Rounding up from 359:59:59.6 gives 360:00:00, which is north again.
    return text.replace("360*", "000*", 1) if text.startswith("360*") else text


def format_latitude(latitude_deg: float) -> str:
    """Format a site latitude for ``:St``: ``sDD*MM`` (north positive)."""
    if not -90.0 <= latitude_deg <= 90.0:
        raise ValueError(f"latitude {latitude_deg} is outside [-90, 90]")
    return _format_dms(latitude_deg, deg_digits=2, signed=True, seconds=False, sec_sep=":")


def format_longitude(longitude_east_deg: float, *, signed: bool) -> str:
    """Format a site longitude for ``:Sg``, in the LX200 convention (west positive).

    Parameters
    ----------
    longitude_east_deg : float
        Longitude in degrees, east positive (as in `SiteConfig`).
    signed : bool
        True: ``sDDD*MM`` in [-180, 180] (OnStep); False: ``DDD*MM`` in [0, 360) (Meade).

    Returns
    -------
    str
        The formatted west-positive longitude.
    """
    west = -longitude_east_deg
    if signed:
        west = (west + 180.0) % 360.0 - 180.0
        return _format_dms(west, deg_digits=3, signed=True, seconds=False, sec_sep=":")
    text = _format_dms(west % 360.0, deg_digits=3, signed=False, seconds=False, sec_sep=":")
    return "000*00" if text == "360*00" else text


def format_utc_offset(hours: float, flavor: Flavor) -> str:
    """Format the hours added to local time to give UTC, for ``:SG``.

    OnStep takes ``sHH`` (or ``sHH:MM`` for half hours), Meade ``sHH.H``.
    """
    sign = "-" if hours < 0 else "+"
    if flavor == "meade":
        return f"{sign}{abs(hours):04.1f}"
    whole, minutes = divmod(round(abs(hours) * 60), 60)
    return f"{sign}{whole:02d}" + (f":{minutes:02d}" if minutes else "")


def format_time(when: datetime) -> str:
    """Format a time of day for ``:SL``: ``HH:MM:SS``."""
    return f"{when:%H:%M:%S}"


def format_date(when: datetime) -> str:
    """Format a date for ``:SC``: ``MM/DD/YY``."""
    return f"{when:%m/%d/%y}"


# --- parsing -------------------------------------------------------------------------------


def ra_precision(text: str) -> Precision:
    """Tell the precision of a right ascension reply (``:GR#``) by its form.

    Raises
    ------
    ValueError
        When ``text`` is not a right ascension.
    """
    match = _RA_RE.match(text)
    if match is None:
        raise ValueError(f"not a right ascension: {text!r}")
    if match.group(3) is not None:
        return "low"
    return "highest" if match.group(5) is not None else "high"


def parse_ra(text: str) -> float:
    """Parse a right ascension reply: ``HH:MM.T``, ``HH:MM:SS`` or ``HH:MM:SS.s...``.

    Parameters
    ----------
    text : str
        The reply without its ``#``.

    Returns
    -------
    float
        Right ascension in hours, [0, 24).

    Raises
    ------
    ValueError
        When ``text`` is not one of those forms or a field is out of range.
    """
    match = _RA_RE.match(text)
    if match is None:
        raise ValueError(f"not a right ascension: {text!r}")
    hours, minutes = int(match.group(1)), int(match.group(2))
    tenths, seconds, frac = match.group(3), match.group(4), match.group(5)
    if hours >= 24 or minutes >= 60:
        raise ValueError(f"right ascension out of range: {text!r}")
    value = hours + minutes / 60.0
    if tenths is not None:
        value += int(tenths) / 600.0
    elif seconds is not None:
        sec = int(seconds) + (float(f"0.{frac}") if frac else 0.0)
        if sec >= 60:
            raise ValueError(f"right ascension out of range: {text!r}")
        value += sec / 3600.0
    return value


def _parse_dms(text: str, *, signed: bool, deg_digits: int, low: float, high: float) -> float:
    match = _DMS_RE.match(text.strip())
    if match is None or len(match["deg"]) != deg_digits:
        raise ValueError(f"not a sexagesimal angle: {text!r}")
    if match["sign"] is not None and not signed:
        raise ValueError(f"unexpected sign: {text!r}")
    if signed and match["sign"] is None and match["sep"] == ":":
        # Unsigned and all colons is how a time or right ascension reads: refuse the guess.
        raise ValueError(f"unsigned angle with ':' separators: {text!r}")
    minutes = int(match["min"])
    seconds = 0.0
    if match["sec"] is not None:
        seconds = int(match["sec"]) + (float(f"0.{match['frac']}") if match["frac"] else 0.0)
    if minutes >= 60 or seconds >= 60:
        raise ValueError(f"minutes or seconds out of range: {text!r}")
    value = int(match["deg"]) + minutes / 60.0 + seconds / 3600.0
    if match["sign"] == "-":
        value = -value
    if not low <= value <= high:
        raise ValueError(f"angle out of range [{low:g}, {high:g}]: {text!r}")
    return value


def parse_dec(text: str) -> float:
    """Parse a declination reply: ``sDD*MM``, ``sDD*MM:SS``, ``sDD*MM'SS`` or with fractions.

    The degree separator may be ``*``, ``ß`` (0xDF, the Meade degree sign), ``°`` or ``:``;
    the seconds separator ``:`` or ``'``. The sign is optional (some clones drop ``+``),
    except with ``:`` after the degrees, where an unsigned value reads like a time.

    Returns
    -------
    float
        Declination in degrees.

    Raises
    ------
    ValueError
        When ``text`` is not such a value or is outside [-90, 90].
    """
    return _parse_dms(text, signed=True, deg_digits=2, low=-90.0, high=90.0)


def parse_altitude(text: str) -> float:
    """Parse an altitude reply (``:GA#``), in the forms of `parse_dec`, in degrees."""
    return _parse_dms(text, signed=True, deg_digits=2, low=-90.0, high=90.0)


def parse_azimuth(text: str) -> float:
    """Parse an azimuth reply (``:GZ#``): ``DDD*MM`` or ``DDD*MM'SS``, degrees in [0, 360)."""
    return _parse_dms(text, signed=False, deg_digits=3, low=0.0, high=360.0) % 360.0


@dataclass(frozen=True, slots=True)
class OnStepStatus:
    """The state OnStep reports in its ``:GU#`` flags.

    Attributes
    ----------
    tracking : bool
        No ``n`` (not tracking) flag.
    slewing : bool
        No ``N`` (no goto) flag, or ``I`` (parking in progress).
    parked : bool
        ``P``.
    park_failed : bool
        ``F``.
    pulse_guiding : bool
        ``G`` (a guide pulse in progress).
    """

    tracking: bool
    slewing: bool
    parked: bool
    park_failed: bool
    pulse_guiding: bool = False


def parse_onstep_status(text: str) -> OnStepStatus:
    """Parse OnStep's ``:GU#`` reply.

    Exactly one of the park flags ``p`` (not parked), ``I`` (parking), ``P`` (parked) and
    ``F`` (park failed) is always present, which also tells a status reply from noise.

    Raises
    ------
    ValueError
        For characters OnStep does not send, or not exactly one park flag.
    """
    unknown = set(text) - _ONSTEP_FLAGS
    if unknown or not text:
        raise ValueError(f"not an OnStep status: {text!r}")
    park_flags = [c for c in text if c in "pIPF"]
    if len(park_flags) != 1:
        raise ValueError(f"OnStep status without exactly one park flag: {text!r}")
    return OnStepStatus(
        tracking="n" not in text,
        slewing="N" not in text or park_flags[0] == "I",
        parked=park_flags[0] == "P",
        park_failed=park_flags[0] == "F",
        pulse_guiding="G" in text,
    )


def parse_pier_side(text: str) -> PierSide:
    """Parse OnStep's ``:Gm#`` reply: ``E``, ``W``, or ``N``/``?`` (none, flipping)."""
    sides = {"E": PierSide.EAST, "W": PierSide.WEST, "N": PierSide.UNKNOWN, "?": PierSide.UNKNOWN}
    if text not in sides:
        raise ValueError(f"not a pier side: {text!r}")
    return sides[text]


def parse_distance_bars(text: str) -> bool:
    """Parse the ``:D#`` reply: True (slewing) when it holds bar characters, False when empty."""
    if set(text) - _DISTANCE_BARS:
        raise ValueError(f"not a distance-bar reply: {text!r}")
    return bool(text)


def parse_onstep_sync(text: str) -> str | None:
    """Parse OnStep's ``:CM#`` reply: None for ``N/A`` (synced), the digit of ``E<n>``."""
    if text == "N/A":
        return None
    if len(text) == 2 and text[0] == "E" and text[1] in "123456789":
        return text[1]
    raise ValueError(f"not a sync reply: {text!r}")


def parse_alignment_tracking(text: str) -> bool:
    """Parse the Autostar II ``:GW#`` reply ``<A|P|G|L><T|N><0-3>`` and return tracking."""
    if len(text) != 3 or text[0] not in "APGL" or text[1] not in "TN" or not text[2].isdigit():
        raise ValueError(f"not an alignment status: {text!r}")
    return text[1] == "T"


_ONSTEP_GOTO_ERRORS: dict[str, tuple[type[DeviceError], str]] = {
    "1": (InvalidDeviceValueError, "target is below the horizon limit"),
    "2": (InvalidDeviceValueError, "target is above the overhead limit"),
    "3": (DeviceError, "controller in standby"),
    "4": (DeviceBusyError, "mount is parked"),
    "5": (DeviceBusyError, "goto in progress"),
    "6": (InvalidDeviceValueError, "target is outside the mount's limits"),
    "7": (DeviceError, "hardware fault"),
    "8": (DeviceBusyError, "mount is already in motion"),
    "9": (DeviceError, "unspecified error"),
}


def goto_error(code: str, *, device: str, command: str, message: str = "") -> DeviceError:
    """Return the error for a refused goto (``:MS#``, ``:MA#``) or sync (``:CM#`` ``E<n>``).

    Parameters
    ----------
    code : str
        The reply digit (not ``0``).
    device : str
        Device name for the error.
    command : str
        The command, for the message.
    message : str
        The mount's own text (Meade sends one after ``1`` and ``2``).

    Returns
    -------
    DeviceError
        `InvalidDeviceValueError` for a target beyond a limit, `DeviceBusyError` when parked
        or moving, `DeviceError` otherwise (not raised).
    """
    cls, meaning = _ONSTEP_GOTO_ERRORS.get(code, (DeviceError, f"unknown reply {code!r}"))
    text = f"{command} refused: {meaning}"
    if message:
        text += f" ({message.strip()})"
    return cls(text, device=device)


# --- the driver ----------------------------------------------------------------------------


def _printable(text: str) -> str:
    if not text or not all(" " <= c <= "~" for c in text):
        raise ValueError(f"not printable ASCII: {text!r}")
    return text


def _any_text(text: str) -> str:
    return text


class SerialLX200Mount(SerialDevice):
    """A telescope mount speaking the LX200 command set on a serial line.

    Parameters
    ----------
    name, transport, timeout_s
        See `SerialDevice`.
    site : SiteConfig or None
        When given, `connect` sends the site's latitude and longitude.
    set_time : bool
        Whether `connect` sets the mount's date and time (UTC offset 0), when ``site`` is given.
    clock : Clock or None
        Time for the J2000/JNow conversion and for setting the mount's clock; None uses the
        system clock.
    """

    def __init__(
        self,
        name: str,
        transport: ByteTransport,
        *,
        timeout_s: float = 2.0,
        site: SiteConfig | None = None,
        set_time: bool = True,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name, transport, timeout_s=timeout_s)
        self.site = site
        self.set_time = set_time
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._product = ""
        self._flavor: Flavor | None = None
        self._ra_fraction = True  # OnStep: set RA with fractional seconds until refused
        self._has_alignment_status = False  # Meade: whether :GW# answers
        self._park_requested = False  # Meade: :hP# sent, the mount accepts no slews now
        # Meade: the clock's monotonic time at which the last guide pulse ends (it cannot
        # be asked whether one runs).
        self._pulse_end_s = -math.inf

    @property
    def flavor(self) -> Flavor | None:
        """``"onstep"`` or ``"meade"``, learned at connect; None before."""
        return self._flavor

    @property
    def product(self) -> str:
        """The product name the mount reported (``:GVP#``)."""
        return self._product

    # --- one place where replies become values or errors -------------------------------

    async def _read_text(self, ex: Exchange, command: str) -> str:
        raw = await ex.read_until(b"#", max_bytes=_MAX_REPLY)
        return raw[:-1].decode("latin-1")

    async def _query(self, command: str, parse: Callable[[str], T]) -> T:
        """Send a command with a ``#``-terminated reply and parse the reply."""
        async with self._line.exchange(command) as ex:
            await ex.write(command.encode("latin-1"))
            raw = await ex.read_until(b"#", max_bytes=_MAX_REPLY)
            try:
                return parse(raw[:-1].decode("latin-1"))
            except ValueError as exc:
                raise self._garbled(command, raw, exc) from exc

    async def _query_bool(self, command: str) -> bool:
        """Send a command answered by ``1`` (valid) or ``0`` (invalid)."""
        async with self._line.exchange(command) as ex:
            await ex.write(command.encode("latin-1"))
            raw = await ex.read_exactly(1)
            if raw not in (b"0", b"1"):
                raise self._garbled(command, raw, ValueError("expected 0 or 1"))
            return raw == b"1"

    async def _set(self, command: str) -> None:
        if not await self._query_bool(command):
            raise InvalidDeviceValueError(f"{command} rejected by the mount", device=self._name)

    async def _send(self, command: str) -> None:
        """Send a command that has no reply."""
        async with self._line.exchange(command) as ex:
            await ex.write(command.encode("latin-1"))

    async def _goto(self, command: str) -> None:
        """Send ``:MS#`` or ``:MA#`` and raise for a refusal (see `goto_error`)."""
        async with self._line.exchange(command) as ex:
            await ex.write(command.encode("latin-1"))
            raw = await ex.read_exactly(1)
            if raw == b"0":
                return
            if not raw.isdigit():
                raise self._garbled(command, raw, ValueError("expected a digit"))
            code = raw.decode()
            message = ""
            if self._flavor == "meade" and command == ":MS#":
                # Meade follows 1 and 2 with a '#'-terminated message; OnStep sends the digit.
                message = await self._read_text(ex, command)
            if self._flavor == "meade":
                # Meade's codes: 1 below the horizon, 2 below the "higher" limit (or a fault
                # for :MA#); both mean the target is refused.
                raise InvalidDeviceValueError(
                    f"{command} refused (code {code}): {message or 'target out of limits'}",
                    device=self._name,
                )
            raise goto_error(code, device=self._name, command=command, message=message)

    async def _resync(self, ex: Exchange) -> None:
        """Read past stale replies until the answer to a fresh ``:GVP#`` arrives."""
        await ex.write(b":GVP#")

        async def answered() -> bool:
            raw = await ex.read_until(b"#", max_bytes=_MAX_REPLY)
            # A stale one-character reply ("1", "0") may run into the product name.
            return bool(self._product) and raw[:-1].decode("latin-1").endswith(self._product)

        await self._read_to_answer(":GVP#", answered)

    def _require(self) -> Flavor:
        if not self._connected or self._flavor is None:
            raise DeviceNotConnectedError("not connected; call connect() first", device=self._name)
        return self._flavor

    # --- Device ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the line, identify the mount, set high precision, site and time.

        Raises
        ------
        DeviceTimeoutError
            When the mount does not answer.
        DeviceConnectionError
            When the port cannot be opened.
        DeviceError
            When the mount's replies are garbled or it stays in low precision.
        """
        await self._reopen()
        self._product = await self._query(":GVP#", _printable)
        compact = self._product.lower().replace("-", "").replace(" ", "")
        self._flavor = "onstep" if compact.startswith("onstep") else "meade"
        self._park_requested = False
        await self._ensure_high_precision()
        if self._flavor == "meade":
            try:
                await self._query(":GW#", parse_alignment_tracking)
                self._has_alignment_status = True
            except DeviceTimeoutError:
                log.info("%s: no :GW# alignment status; tracking is reported on", self._name)
                self._has_alignment_status = False
        if self.site is not None:
            await self._set_site(self.site)
            if self.set_time:
                await self._set_clock(self._clock.now())
        self._connected = True
        log.info("%s connected: %s (%s flavour)", self._name, self._product, self._flavor)

    async def _ensure_high_precision(self) -> None:
        for _ in range(2):
            if await self._query(":GR#", ra_precision) != "low":
                return
            await self._send(":U#")  # toggles; the second look confirms it took
        raise DeviceError("mount stays in low precision after :U#", device=self._name)

    async def _set_site(self, site: SiteConfig) -> None:
        assert self._flavor is not None
        await self._set(f":St{format_latitude(site.latitude_deg)}#")
        signed = self._flavor == "onstep"
        await self._set(f":Sg{format_longitude(site.longitude_deg, signed=signed)}#")

    async def _set_clock(self, now_utc: datetime) -> None:
        assert self._flavor is not None
        await self._set(f":SG{format_utc_offset(0.0, self._flavor)}#")
        await self._set(f":SL{format_time(now_utc)}#")
        command = f":SC{format_date(now_utc)}#"
        async with self._line.exchange(command) as ex:
            await ex.write(command.encode("latin-1"))
            raw = await ex.read_exactly(1)
            if raw not in (b"0", b"1"):
                raise self._garbled(command, raw, ValueError("expected 0 or 1"))
            if raw == b"1" and self._flavor == "meade":
                # "Updating planetary data#" and a line of blanks follow a valid Meade date.
                await self._read_text(ex, command)
                await self._read_text(ex, command)
        if raw != b"1":
            raise InvalidDeviceValueError(f"{command} rejected by the mount", device=self._name)

    async def _probe(self) -> None:
        """Ask for the product name (``:GVP#``): the mount answers it in any state."""
        await self._query(":GVP#", _any_text)

    # --- Mount -------------------------------------------------------------------------

    async def status(self) -> MountStatus:
        """Read position, motion, park state, pier side and sidereal time.

        Raises
        ------
        DeviceTimeoutError, DeviceConnectionError
            When the mount does not answer or the line fails.
        DeviceError
            When a reply is garbled.
        """
        flavor = self._require()
        if flavor == "onstep":
            ra_h = await self._query(":GRa#", parse_ra)
            dec = await self._query(":GDe#", parse_dec)
        else:
            ra_h = await self._query(":GR#", parse_ra)
            dec = await self._query(":GD#", parse_dec)
        alt = await self._query(":GA#", parse_altitude)
        az = await self._query(":GZ#", parse_azimuth)
        if flavor == "onstep":
            state = await self._query(":GU#", parse_onstep_status)
            slewing, tracking, at_park = state.slewing, state.tracking, state.parked
            pier = await self._query(":Gm#", parse_pier_side)
        else:
            slewing = await self._query(":D#", parse_distance_bars)
            tracking = True
            if self._has_alignment_status:
                tracking = await self._query(":GW#", parse_alignment_tracking)
            at_park = self._park_requested and not slewing
            pier = PierSide.UNKNOWN
        lst_h = await self._query(":GS#", parse_ra)
        ra_deg, dec_deg = jnow_to_j2000(ra_h * 15.0, dec, self._clock.now())
        return MountStatus(
            ra_deg=ra_deg,
            dec_deg=dec_deg,
            alt_deg=alt,
            az_deg=az,
            slewing=slewing,
            tracking=tracking,
            at_park=at_park,
            pier_side=pier,
            sidereal_time_h=lst_h,
        )

    async def _set_target(self, ra_deg: float, dec_deg: float) -> None:
        """Convert J2000 to JNow and send ``:Sr``/``:Sd``."""
        if not -90.0 <= dec_deg <= 90.0 or not math.isfinite(ra_deg):
            raise InvalidDeviceValueError(
                f"RA {ra_deg} / Dec {dec_deg} out of range", device=self._name
            )
        ra_now, dec_now = j2000_to_jnow(ra_deg % 360.0, dec_deg, self._clock.now())
        ra_h = ra_now / 15.0
        if self._flavor == "onstep" and self._ra_fraction:
            if await self._query_bool(f":Sr{format_ra(ra_h, 'highest')}#"):
                await self._set(f":Sd{format_dec(dec_now)}#")
                return
            log.info("%s: mount refuses fractional RA seconds; using whole seconds", self._name)
            self._ra_fraction = False
        await self._set(f":Sr{format_ra(ra_h, 'high')}#")
        await self._set(f":Sd{format_dec(dec_now)}#")

    def _refuse_if_parked_meade(self) -> None:
        if self._flavor == "meade" and self._park_requested:
            raise DeviceBusyError(
                "mount is parked (a Meade stays parked until power-cycled)", device=self._name
            )

    async def slew_to_radec(self, ra_deg: float, dec_deg: float) -> None:
        """Start a slew to J2000 coordinates in degrees (``:Sr``, ``:Sd``, ``:MS#``).

        Raises
        ------
        InvalidDeviceValueError
            When the target is out of range or below the mount's limits.
        DeviceBusyError
            When the mount is parked or already moving.
        """
        self._require()
        self._refuse_if_parked_meade()
        await self._set_target(ra_deg, dec_deg)
        await self._goto(":MS#")

    async def slew_to_altaz(self, alt_deg: float, az_deg: float) -> None:
        """Start a slew to altitude and azimuth in degrees (``:Sa``, ``:Sz``, ``:MA#``).

        Raises the errors `slew_to_radec` lists; an OnStep whose firmware is configured so
        also refuses while tracking (`DeviceBusyError`), as ASCOM does.
        """
        flavor = self._require()
        self._refuse_if_parked_meade()
        if not -90.0 <= alt_deg <= 90.0 or not math.isfinite(az_deg):
            raise InvalidDeviceValueError(
                f"alt {alt_deg} / az {az_deg} out of range", device=self._name
            )
        sec_sep = ":" if flavor == "onstep" else "'"
        await self._set(f":Sa{format_altitude(alt_deg, sec_sep=sec_sep)}#")
        await self._set(f":Sz{format_azimuth(az_deg, sec_sep=sec_sep)}#")
        await self._goto(":MA#")

    async def abort_slew(self) -> None:
        """Stop any slew (``:Q#``)."""
        self._require()
        await self._send(":Q#")

    async def set_tracking(self, on: bool) -> None:
        """Switch sidereal tracking (OnStep ``:Te#``/``:Td#``).

        Raises
        ------
        DeviceNotImplementedError
            On a generic Meade mount, which has no tracking switch.
        DeviceBusyError
            When the mount refuses (for example while parked).
        """
        if self._require() != "onstep":
            raise DeviceNotImplementedError(
                "tracking cannot be switched on a generic LX200 mount", device=self._name
            )
        command = ":Te#" if on else ":Td#"
        if not await self._query_bool(command):
            raise DeviceBusyError(f"{command} refused by the mount", device=self._name)

    async def park(self) -> None:
        """Start the slew to the park position (``:hP#``); `status` tells arrival.

        Raises
        ------
        DeviceError
            When OnStep refuses to park.
        """
        if self._require() == "meade":
            await self._send(":hP#")
            self._park_requested = True
            return
        if not await self._query_bool(":hP#"):
            raise DeviceError(":hP# refused by the mount (park failed)", device=self._name)

    async def unpark(self) -> None:
        """Leave the park state (OnStep ``:hR#``); does nothing on an unparked mount.

        Raises
        ------
        DeviceNotImplementedError
            For a parked generic Meade mount, which needs a power cycle.
        DeviceBusyError
            When OnStep refuses while parked.
        """
        if self._require() == "meade":
            if self._park_requested:
                raise DeviceNotImplementedError(
                    "a parked Meade mount is unparked by a power cycle", device=self._name
                )
            return
        if await self._query_bool(":hR#"):
            return
        # OnStep refuses :hR# when it is not parked; that is success here.
        state = await self._query(":GU#", parse_onstep_status)
        if state.parked or state.park_failed:
            raise DeviceBusyError(":hR# refused by the mount", device=self._name)

    async def pulse_guide(self, direction: GuideDirection, duration_s: float) -> None:
        """Start a guide pulse at the mount's guide rate (``:Mg<d><ms>#``, no reply).

        The mount cannot refuse a pulse in its reply, so its state is asked first. A pulse
        of 0 ms is no move and nothing is sent.

        Raises
        ------
        InvalidDeviceValueError
            When the duration is negative, not finite, or longer than one command takes
            (16399 ms on OnStep, 9999 ms on a Meade).
        DeviceParkedError
            When OnStep says it is parked, or a Meade was sent `park`.
        DeviceBusyError
            When the mount is slewing or parking (OnStep ``:GU#``, Meade ``:D#``), or
            OnStep reports a failed park.
        """
        flavor = self._require()
        duration_ms = pulse_duration_ms(duration_s, device=self._name)
        limit = _MAX_PULSE_MS[flavor]
        if duration_ms > limit:
            raise InvalidDeviceValueError(
                f"guide pulse of {duration_ms} ms: this mount takes at most {limit} ms",
                device=self._name,
            )
        if flavor == "meade" and self._park_requested:
            raise DeviceParkedError(
                "mount is parked (a Meade stays parked until power-cycled)", device=self._name
            )
        if flavor == "onstep":
            # OnStep ignores :Mg unless it is "not parked" and not in a goto.
            state = await self._query(":GU#", parse_onstep_status)
            if state.parked:
                raise DeviceParkedError("mount is parked", device=self._name)
            if state.park_failed:
                raise DeviceBusyError(
                    "mount reports a failed park; unpark it first", device=self._name
                )
            slewing = state.slewing  # also a park in progress
        else:
            slewing = await self._query(":D#", parse_distance_bars)
        if slewing:
            raise DeviceBusyError("cannot pulse guide while slewing", device=self._name)
        if duration_ms == 0:
            return
        letter = _GUIDE_LETTERS[GuideDirection(direction)]
        await self._send(f":Mg{letter}{duration_ms:04d}#")
        self._pulse_end_s = self._clock.monotonic() + duration_ms / 1000.0

    async def guide_rates(self) -> tuple[float, float]:
        """Return ASCOM's default guide rate (0.5 x sidereal, arcsec/s) for both axes.

        Neither flavour's guide rate is read (see the module docs).
        """
        self._require()
        return DEFAULT_GUIDE_RATE_ARCSEC_S, DEFAULT_GUIDE_RATE_ARCSEC_S

    async def is_pulse_guiding(self) -> bool:
        """Return whether a guide pulse runs: OnStep's ``G`` flag; a Meade's sent length."""
        if self._require() == "onstep":
            return (await self._query(":GU#", parse_onstep_status)).pulse_guiding
        return self._clock.monotonic() < self._pulse_end_s

    async def sync_to_radec(self, ra_deg: float, dec_deg: float) -> None:
        """Declare that the mount points at J2000 coordinates in degrees (``:CM#``).

        Raises
        ------
        InvalidDeviceValueError
            When the coordinates are out of range, or OnStep refuses them.
        DeviceBusyError
            When the mount is parked or moving: OnStep says so (``E<n>``, as `goto_error`);
            a Meade is refused here once `park` was sent, as its reply cannot tell.
        DeviceError
            When OnStep refuses for another reason.
        """
        flavor = self._require()
        self._refuse_if_parked_meade()
        await self._set_target(ra_deg, dec_deg)
        if flavor == "meade":
            await self._query(":CM#", _any_text)  # Meade answers with an object description
            return
        code = await self._query(":CM#", parse_onstep_sync)
        if code is not None:
            raise goto_error(code, device=self._name, command=":CM#")
