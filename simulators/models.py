"""What the simulated device models share: the ASCOM error and its numbers, a timed motion.

The models (`CameraModel`, `FilterWheelModel`, `MountModel`, `SafetyMonitorModel`) speak
ASCOM semantics: they raise `AscomError` with an ASCOM error number, and both adapters (the
Alpaca server and the in-process Protocol implementations) translate it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "INVALID_OPERATION",
    "INVALID_VALUE",
    "INVALID_WHILE_PARKED",
    "NOT_CONNECTED",
    "NOT_IMPLEMENTED",
    "VALUE_NOT_SET",
    "AscomError",
    "ConnectableModel",
    "Motion",
    "ascom_datetime",
]

log = logging.getLogger(__name__)

NOT_IMPLEMENTED = 0x400
INVALID_VALUE = 0x401
VALUE_NOT_SET = 0x402
NOT_CONNECTED = 0x407
INVALID_WHILE_PARKED = 0x408
INVALID_OPERATION = 0x40B


@dataclass(frozen=True, slots=True)
class Motion:
    """A motion along one axis: ``start`` at ``t_start`` to ``target`` at ``t_end``.

    The models compute positions lazily from their clock: every read interpolates at the
    current simulated time (a dome's shutter and azimuth, a telescope cover).
    """

    start: float
    target: float
    t_start: float
    t_end: float

    def at(self, t: float) -> float:
        """Return the position at simulated time ``t`` (s)."""
        if t >= self.t_end:
            return self.target  # exactly: start + (target - start) can miss it by an ulp
        f = max(0.0, (t - self.t_start) / (self.t_end - self.t_start))
        return self.start + f * (self.target - self.start)


class AscomError(Exception):
    """A device-level failure with an ASCOM error number.

    Parameters
    ----------
    number : int
        ASCOM error number (for example ``0x401`` for an invalid value).
    message : str
        What went wrong, for a human.
    """

    def __init__(self, number: int, message: str) -> None:
        super().__init__(message)
        self.number = number
        self.message = message

    def __repr__(self) -> str:
        return f"AscomError(0x{self.number:X}, {self.message!r})"


class ConnectableModel:
    """The ASCOM ``Connected`` flag every model carries."""

    def __init__(self) -> None:
        self.connected = False

    def require_connected(self) -> None:
        """Raise unless the device is connected.

        Raises
        ------
        AscomError
            0x407 when not connected.
        """
        if not self.connected:
            raise AscomError(NOT_CONNECTED, "device is not connected")


def ascom_datetime(value: datetime) -> str:
    """Format a UTC datetime as ASCOM does: ``YYYY-MM-DDTHH:MM:SS.fffffff``.

    Parameters
    ----------
    value : datetime.datetime
        A UTC time.

    Returns
    -------
    str
        The time with seven fractional digits and no zone suffix.
    """
    # ASCOM uses .NET's seven-digit ticks; Python has microseconds, so pad one zero.
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond:06d}0"
