"""The LX200 command set (OnStep or generic Meade flavour) in front of a `MountModel`.

An independent implementation of the replies documented in `obsctl.drivers.serial.lx200`
(it shares no parsing code with the driver, so a formatting bug on one side shows up as a
refused command on the other). The wire speaks coordinates of date (JNow); the model holds
J2000 (the sky the simulated camera renders), so right ascension and declination are
converted at the model's simulated time.

Flavours: ``onstep`` answers like OnStep (``:GU#``, ``:Gm#``, ``:GRa#``/``:GDe#``, park,
unpark, tracking switches, single-digit goto errors, ``0`` for unknown commands); ``meade``
answers like an Autostar II in polar mode (tracking from the start, degree sign 0xDF, ``:MS#``
errors with a message, ``:hP#`` without a reply, the ``:SC#`` planetary-data strings, silence
for unknown commands).

Both take guide pulses (``:Mg<d><ms>#``, no reply): a pulse the model refuses (parked,
slewing, not tracking) is ignored, as OnStep ignores one while parked; OnStep's ``:GU#``
shows ``G`` while a pulse runs.

Site and time commands are accepted and recorded (`LX200Interpreter.site_latitude_deg`, ...)
but do not change the simulation: the model's site and clock come from the configuration. A
serial device has no connect handshake, so the model is marked connected when the
interpreter is made.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Literal

from obsctl.coords import j2000_to_jnow, jnow_to_j2000
from obsctl.devices import PierSide
from obsctl.simulators.models import (
    INVALID_OPERATION,
    INVALID_VALUE,
    INVALID_WHILE_PARKED,
    NOT_CONNECTED,
    AscomError,
)
from obsctl.simulators.mount_model import MountModel, hadec_to_altaz

__all__ = ["LX200Interpreter"]

log = logging.getLogger(__name__)

_ACK = b"\x06"
_MAX_COMMAND = 64  # a longer run without '#' is noise
_SEXA = r"(\d{2}):(\d{2})(?:\.(\d)|:(\d{2})(?:\.(\d{1,6}))?)"
_RA_RE = re.compile(r"^" + _SEXA + r"$")
_DMS_RE = re.compile(r"^([+-])(\d{2})[*\xdf:](\d{2})(?:[:'](\d{2})(?:\.(\d{1,6}))?)?$")
_AZ_RE = re.compile(r"^(\d{3})[*\xdf:](\d{2})(?:[:'](\d{2})(?:\.(\d{1,6}))?)?$")
_LAT_RE = re.compile(r"^([+-])(\d{2})[*\xdf:](\d{2})$")
_LON_RE = re.compile(r"^([+-]?)(\d{3})[*\xdf:](\d{2})$")
_OFFSET_RE = re.compile(r"^([+-])(\d{2})(?:\.(\d)|:(\d{2}))?$")
_TIME_RE = re.compile(r"^(\d{2}):(\d{2}):(\d{2})$")
_DATE_RE = re.compile(r"^(\d{2})/(\d{2})/(\d{2})$")
_PULSE_RE = re.compile(r"^Mg([nsew])(\d{1,5})$")
# :Mg direction letters as ASCOM GuideDirections (north 0, south 1, east 2, west 3).
_GUIDE_DIRECTIONS = {"n": 0, "s": 1, "e": 2, "w": 3}
# Longest pulse each flavour takes: OnStep's 16399 ms, Meade's four digits.
_MAX_PULSE_MS = {"onstep": 16399, "meade": 9999}


def _hms(value_h: float, *, decimals: int) -> str:
    """``HH:MM:SS`` (decimals 0), ``HH:MM:SS.ssss`` (decimals 4), or ``HH:MM.T`` (-1)."""
    value_h %= 24.0
    if decimals < 0:
        tenths = round(value_h * 600) % (24 * 600)
        h, rest = divmod(tenths, 600)
        return f"{h:02d}:{rest // 10:02d}.{rest % 10}"
    scale = 10**decimals
    units = round(value_h * 3600 * scale) % (24 * 3600 * scale)
    seconds, frac = divmod(units, scale)
    h, rest = divmod(seconds, 3600)
    text = f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return text + (f".{frac:0{decimals}d}" if decimals else "")


def _dms(value: float, *, signed: bool, digits: int, seconds: bool, deg: str, sec: str) -> str:
    sign = "-" if value < 0 else "+"
    if seconds:
        total = round(abs(value) * 3600)
        d, rest = divmod(total, 3600)
        text = f"{d:0{digits}d}{deg}{rest // 60:02d}{sec}{rest % 60:02d}"
    else:
        total = round(abs(value) * 60)
        d, m = divmod(total, 60)
        text = f"{d:0{digits}d}{deg}{m:02d}"
    if signed:
        return ("+" if total == 0 else sign) + text
    return text


def _parse_hms(text: str, *, fraction: bool) -> float | None:
    match = _RA_RE.match(text)
    if match is None or (match.group(5) is not None and not fraction):
        return None
    h, m = int(match.group(1)), int(match.group(2))
    if h > 23 or m > 59:
        return None
    if match.group(3) is not None:
        return h + m / 60 + int(match.group(3)) / 600
    s = int(match.group(4)) + float("0." + (match.group(5) or "0"))
    return None if s >= 60 else h + m / 60 + s / 3600


def _parse_signed_dms(text: str, limit: float) -> float | None:
    match = _DMS_RE.match(text)
    if match is None:
        return None
    d, m = int(match.group(2)), int(match.group(3))
    s = int(match.group(4) or 0) + float("0." + (match.group(5) or "0"))
    if m > 59 or s >= 60:
        return None
    value = (d + m / 60 + s / 3600) * (-1 if match.group(1) == "-" else 1)
    return value if abs(value) <= limit else None


def _goto_code(exc: AscomError) -> str:
    """OnStep's goto reply digit for a model refusal."""
    return {
        INVALID_WHILE_PARKED: "4",
        INVALID_OPERATION: "8",
        INVALID_VALUE: "6",
        NOT_CONNECTED: "3",
    }.get(exc.number, "9")


class LX200Interpreter:
    """Answers LX200 commands for one `MountModel`.

    Parameters
    ----------
    model : MountModel
        The mount physics (shared with the Alpaca simulator).
    flavor : {"onstep", "meade"}
        Which firmware to imitate (see the module docs).
    high_precision : bool or None
        Initial precision; None: high for OnStep, low for Meade (their power-on defaults).
    """

    terminator = b"#"

    def __init__(
        self,
        model: MountModel,
        *,
        flavor: Literal["onstep", "meade"] = "onstep",
        high_precision: bool | None = None,
    ) -> None:
        self.model = model
        self.flavor = flavor
        self.high_precision = flavor == "onstep" if high_precision is None else high_precision
        model.connected = True
        if flavor == "meade":
            # An LX200 in polar mode tracks from power-on and has no command to stop.
            model.set_tracking(True)
        self._deg = "*" if flavor == "onstep" else "\xdf"
        self._target_ra_deg: float | None = None  # JNow
        self._target_dec_deg: float | None = None
        self._target_alt_deg: float | None = None
        self._target_az_deg: float | None = None
        self._parking = False
        self.site_latitude_deg: float | None = None
        self.site_longitude_west_deg: float | None = None
        self.utc_offset_h: float | None = None
        self.local_time: str | None = None
        self.date: str | None = None
        self.commands: list[str] = []  # every command received, for tests

    @property
    def onstep(self) -> bool:
        """Whether the OnStep flavour is imitated."""
        return self.flavor == "onstep"

    # --- framing -------------------------------------------------------------------------

    def split(self, buffer: bytearray) -> list[bytes]:
        """Take ``:...#`` commands and ACK bytes (0x06) off the front of ``buffer``."""
        commands: list[bytes] = []
        while buffer:
            if buffer[0] == 0x06:
                commands.append(_ACK)
                del buffer[0]
                continue
            if buffer[0] != ord(":"):
                del buffer[0]  # '#' separators and noise between commands
                continue
            end = buffer.find(b"#")
            if end < 0:
                if len(buffer) > _MAX_COMMAND:
                    del buffer[:1]
                    continue
                break
            commands.append(bytes(buffer[1:end]))
            del buffer[: end + 1]
        return commands

    # --- replies -------------------------------------------------------------------------

    async def reply(self, command: bytes) -> bytes | None:
        """Execute one command (without ``:`` and ``#``) and return the reply."""
        if command == _ACK:
            return b"G" if self.onstep else b"P"
        text = command.decode("latin-1")
        self.commands.append(text)
        try:
            answer = self._dispatch(text)
        except AscomError as exc:
            log.info("simulated LX200 %r: %s", text, exc)
            answer = "0" if self.onstep else None
        return None if answer is None else answer.encode("latin-1")

    def _dispatch(self, text: str) -> str | None:
        getters: dict[str, Callable[[], str]] = {
            "GVP": lambda: "On-Step#" if self.onstep else "LX200GPS#",
            "GVN": lambda: "4.24a#" if self.onstep else "4.2g#",
            "GR": self._get_ra,
            "GD": self._get_dec,
            "GA": self._get_alt,
            "GZ": self._get_az,
            "GS": lambda: _hms(self.model.sidereal_time_h, decimals=0) + "#",
            "GW": lambda: "G" + ("T" if self.model.tracking else "N") + "1#",
            "D": lambda: "\x7f#" if self.model.slewing else "#",
        }
        if self.onstep:
            getters |= {
                "GRa": lambda: self._get_ra(fine=True),
                "GDe": lambda: self._get_dec(fine=True),
                "GU": self._get_status,
                "Gm": self._get_pier_side,
            }
        setters: dict[str, Callable[[str], bool]] = {
            "Sr": self._set_ra,
            "Sd": self._set_dec,
            "Sa": self._set_alt,
            "Sz": self._set_az,
            "St": self._set_latitude,
            "Sg": self._set_longitude,
            "SG": self._set_utc_offset,
            "SL": self._set_local_time,
        }
        if text in getters:
            return getters[text]()
        if text[:2] in setters:
            return "1" if setters[text[:2]](text[2:]) else "0"
        commands: dict[str, Callable[[], str | None]] = {
            "U": self._toggle_precision,
            "MS": self._goto_radec,
            "MA": self._goto_altaz,
            "Q": self._abort,
            "CM": self._sync,
            "hP": self._park,
        }
        if self.onstep:
            commands |= {
                "hR": self._unpark,
                "Te": lambda: self._track(True),
                "Td": lambda: self._track(False),
            }
        if text in commands:
            return commands[text]()
        if text.startswith("SC"):
            return self._set_date(text[2:])
        if text.startswith("Mg"):
            self._pulse_guide(text)
            return None  # no reply, whether the pulse runs or not
        log.info("simulated LX200: unknown command %r", text)
        return "0" if self.onstep else None

    # --- position --------------------------------------------------------------------

    def _radec_now(self) -> tuple[float, float]:
        pointing = self.model.pointing()
        return j2000_to_jnow(pointing.ra_deg, pointing.dec_deg, self.model.clock.now())

    def _get_ra(self, *, fine: bool = False) -> str:
        ra_deg, _ = self._radec_now()
        decimals = 4 if fine else (0 if self.high_precision else -1)
        return _hms(ra_deg / 15.0, decimals=decimals) + "#"

    def _get_dec(self, *, fine: bool = False) -> str:
        _, dec_deg = self._radec_now()
        if fine:
            total = round(abs(dec_deg) * 3600 * 1000)
            d, rest = divmod(total, 3600 * 1000)
            m, ms = divmod(rest, 60 * 1000)
            sign = "-" if dec_deg < 0 and total else "+"
            return f"{sign}{d:02d}{self._deg}{m:02d}:{ms // 1000:02d}.{ms % 1000:03d}#"
        return (
            _dms(
                dec_deg,
                signed=True,
                digits=2,
                seconds=self.high_precision,
                deg=self._deg,
                sec=":",
            )
            + "#"
        )

    def _get_alt(self) -> str:
        alt = self.model.pointing().alt_deg
        text = _dms(alt, signed=True, digits=2, seconds=self.high_precision, deg=self._deg, sec="'")
        return text + "#"

    def _get_az(self) -> str:
        az = self.model.pointing().az_deg
        text = _dms(az, signed=False, digits=3, seconds=self.high_precision, deg=self._deg, sec="'")
        return text.replace("360", "000", 1) + "#" if text.startswith("360") else text + "#"

    def _get_status(self) -> str:
        model = self.model
        slewing, at_park = model.slewing, model.at_park
        if not slewing:
            self._parking = False
        flags = "" if model.tracking else "n"
        flags += "" if slewing else "N"
        flags += "P" if at_park else ("I" if self._parking else "p")
        flags += "G" if model.is_pulse_guiding else ""
        flags += "E"  # a German equatorial mount
        if at_park:
            flags += "o"
        else:
            flags += "T" if model.side_of_pier == PierSide.EAST else "W"
        return flags + "0#"  # last error: none

    def _get_pier_side(self) -> str:
        if self.model.at_park:
            return "N#"
        return ("E" if self.model.side_of_pier == PierSide.EAST else "W") + "#"

    # --- targets, site and time --------------------------------------------------------

    def _set_ra(self, arg: str) -> bool:
        value = _parse_hms(arg, fraction=self.onstep)
        if value is None:
            return False
        self._target_ra_deg = value * 15.0
        return True

    def _set_dec(self, arg: str) -> bool:
        value = _parse_signed_dms(arg, 90.0)
        if value is None:
            return False
        self._target_dec_deg = value
        return True

    def _set_alt(self, arg: str) -> bool:
        value = _parse_signed_dms(arg, 90.0)
        if value is None:
            return False
        self._target_alt_deg = value
        return True

    def _set_az(self, arg: str) -> bool:
        match = _AZ_RE.match(arg)
        if match is None:
            return False
        d, m = int(match.group(1)), int(match.group(2))
        s = int(match.group(3) or 0) + float("0." + (match.group(4) or "0"))
        if d > 359 or m > 59 or s >= 60:
            return False
        self._target_az_deg = d + m / 60 + s / 3600
        return True

    def _set_latitude(self, arg: str) -> bool:
        match = _LAT_RE.match(arg)
        if match is None:
            return False
        value = (int(match.group(2)) + int(match.group(3)) / 60) * (
            -1 if match.group(1) == "-" else 1
        )
        if abs(value) > 90:
            return False
        self.site_latitude_deg = value
        if abs(value - self.model.site.latitude_deg) > 1 / 60 + 1e-9:
            log.warning(
                "simulated LX200: latitude set to %.3f but the simulation stays at %.3f",
                value,
                self.model.site.latitude_deg,
            )
        return True

    def _set_longitude(self, arg: str) -> bool:
        match = _LON_RE.match(arg)
        if match is None or (self.flavor == "meade" and match.group(1)):
            return False
        value = (int(match.group(2)) + int(match.group(3)) / 60) * (
            -1 if match.group(1) == "-" else 1
        )
        if not -180 <= value <= 360:
            return False
        self.site_longitude_west_deg = value
        east = -value if value <= 180 else 360 - value
        if abs(east - self.model.site.longitude_deg) > 1 / 60 + 1e-9:
            log.warning(
                "simulated LX200: longitude set to %.3f E but the simulation stays at %.3f E",
                east,
                self.model.site.longitude_deg,
            )
        return True

    def _set_utc_offset(self, arg: str) -> bool:
        match = _OFFSET_RE.match(arg)
        if match is None:
            return False
        if self.onstep and match.group(3) is not None:
            return False  # OnStep takes sHH or sHH:MM
        if not self.onstep and match.group(3) is None:
            return False  # Meade takes sHH.H
        hours = int(match.group(2)) + int(match.group(3) or 0) / 10 + int(match.group(4) or 0) / 60
        self.utc_offset_h = -hours if match.group(1) == "-" else hours
        return abs(self.utc_offset_h) <= 24

    def _set_local_time(self, arg: str) -> bool:
        match = _TIME_RE.match(arg)
        if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
            return False
        if int(match.group(3)) > 59:
            return False
        self.local_time = arg
        return True

    def _set_date(self, arg: str) -> str:
        match = _DATE_RE.match(arg)
        if (
            match is None
            or not 1 <= int(match.group(1)) <= 12
            or not 1 <= int(match.group(2)) <= 31
        ):
            return "0"
        self.date = arg
        if self.onstep:
            return "1"
        return "1Updating Planetary Data#" + " " * 30 + "#"

    def _toggle_precision(self) -> None:
        self.high_precision = not self.high_precision
        return None

    # --- motion ------------------------------------------------------------------------

    def _refusal(self, code: str, message: str) -> str:
        """Return a refusal: OnStep sends the digit, Meade ``1`` or ``2`` and a message."""
        if self.onstep:
            return code
        return ("1" if code == "1" else "2") + message + "#"

    def _goto_radec(self) -> str:
        if self._target_ra_deg is None or self._target_dec_deg is None:
            return self._refusal("9", "No target")
        ra, dec = jnow_to_j2000(self._target_ra_deg, self._target_dec_deg, self.model.clock.now())
        ha = (self.model.pointing().lst_deg - ra + 180.0) % 360.0 - 180.0
        alt, _ = hadec_to_altaz(ha, dec, self.model.site.latitude_deg)
        if alt < self.model.config.min_alt_deg:
            return self._refusal("1", "Object Below Horizon")
        try:
            self.model.slew_to_radec(ra, dec)
        except AscomError as exc:
            return self._refusal(_goto_code(exc), exc.message)
        self._parking = False
        return "0"

    def _goto_altaz(self) -> str:
        if self._target_alt_deg is None or self._target_az_deg is None:
            return "9" if self.onstep else "1"
        try:
            self.model.slew_to_altaz(self._target_alt_deg, self._target_az_deg)
        except AscomError as exc:
            if not self.onstep:
                return "1"
            below = exc.number == INVALID_VALUE and self._target_alt_deg < (
                self.model.config.min_alt_deg
            )
            return "1" if below else _goto_code(exc)
        self._parking = False
        return "0"

    def _abort(self) -> None:
        self._parking = False
        try:
            self.model.abort_slew()
        except AscomError as exc:
            log.info("simulated LX200 :Q#: %s", exc)
        return None

    def _sync(self) -> str:
        if self._target_ra_deg is None or self._target_dec_deg is None:
            return "E9#" if self.onstep else "#"
        ra, dec = jnow_to_j2000(self._target_ra_deg, self._target_dec_deg, self.model.clock.now())
        try:
            self.model.sync_to_radec(ra, dec)
        except AscomError as exc:
            return f"E{_goto_code(exc)}#" if self.onstep else "#"
        return "N/A#" if self.onstep else " Coordinates     matched.        #"

    def _pulse_guide(self, text: str) -> None:
        """``:Mg<d><ms>#``: start a guide pulse; no reply, whether it runs or not.

        Like OnStep, the mount ignores a pulse it cannot run (parked, slewing, a duration
        out of range); this simulated one also while not tracking (`MountModel.pulse_guide`).
        """
        match = _PULSE_RE.match(text)
        if match is None or int(match.group(2)) > _MAX_PULSE_MS[self.flavor]:
            log.info("simulated LX200: bad pulse command %r ignored", text)
            return None
        try:
            self.model.pulse_guide(_GUIDE_DIRECTIONS[match.group(1)], int(match.group(2)))
        except AscomError as exc:
            log.info("simulated LX200 %r ignored: %s", text, exc)
        return None

    def _park(self) -> str | None:
        try:
            self.model.park()
        except AscomError as exc:
            log.info("simulated LX200 :hP#: %s", exc)
            return "0" if self.onstep else None
        self._parking = not self.model.at_park
        return "1" if self.onstep else None

    def _unpark(self) -> str:
        if not (self.model.at_park or self._parking):
            return "0"  # OnStep refuses :hR# when it is not parked
        self.model.unpark()
        self._parking = False
        return "1"

    def _track(self, on: bool) -> str:
        if on and self.model.at_park:
            return "0"  # OnStep will not track while parked
        self.model.set_tracking(on)
        return "1"
