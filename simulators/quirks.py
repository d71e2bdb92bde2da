"""Deviations from the Alpaca spec that real servers show, for the simulators to reproduce.

The Alpaca simulators follow the spec to the letter unless ``[simulator] quirks`` lists one
or more of these flags; each flag is one deviation seen in real drivers and servers, so
that obsctl's client can be tested against it over HTTP:

``status_422``
    A malformed request (missing or unparseable parameter) is HTTP 422 with a JSON
    ``{"detail": [...]}`` body, as web frameworks that validate requests answer it, not
    HTTP 400 with a plain-text message.
``invalid_value_400``
    A value the device refuses (ASCOM 0x401 InvalidValue) is HTTP 400, not HTTP 200 with
    ``ErrorNumber`` 0x401.
``missing_device_200``
    A device type or number the server does not have is HTTP 200 with ErrorNumber 0x400
    (NotImplemented), not HTTP 404.
``unknown_member_404``
    A member the device does not implement is HTTP 404, not HTTP 200 with 0x400; and the
    server predates ASCOM Platform 7: Connect, Disconnect, Connecting and DeviceState (and a
    CoverCalibrator's CoverMoving and CalibratorChanging) are unknown members (HTTP 404).
``action_not_implemented``
    ErrorNumber 0x40C (ActionNotImplemented) where 0x40B (InvalidOperation) is meant: no
    image ready, a slew while parked, PercentCompleted with no exposure.
``com_error_numbers``
    ErrorNumber is the Windows COM HResult of the error (0x80040401 for 0x401, sent as the
    signed 32-bit integer .NET serialises), as drivers bridged from COM send it.
``transaction_id_zero``
    ClientTransactionID and ServerTransactionID are always 0 (JSON and ImageBytes).
``timestamp_utc_offset``
    Times (LastExposureStartTime, UTCDate, DeviceState's TimeStamp) are the site's mean
    local time to the hour with its UTC offset (``2026-11-25T21:00:00.0000000-01:00``), not
    UTC without a zone.
``equatorial_other``
    The mount's EquatorialSystem is 0 ("other") whatever coordinates it really takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import get_args

from obsctl.config import SimulatorConfig, SimulatorQuirk, SiteConfig
from obsctl.simulators.models import ascom_datetime

__all__ = ["ALL_QUIRKS", "Quirks"]

#: Every flag, in the order of the config's list.
ALL_QUIRKS: tuple[SimulatorQuirk, ...] = get_args(SimulatorQuirk)

ACTION_NOT_IMPLEMENTED = 0x40C
_INVALID_OPERATION = 0x40B
_COM_ERROR_BASE = 0x80040000


@dataclass(frozen=True)
class Quirks:
    """The deviations one Alpaca server shows.

    Parameters
    ----------
    flags : frozenset of str
        The flags on (see the module docstring).
    utc_offset_h : int
        The offset of ``timestamp_utc_offset`` times from UTC in hours.
    """

    flags: frozenset[SimulatorQuirk] = frozenset()
    utc_offset_h: int = 0

    @classmethod
    def from_config(cls, sim: SimulatorConfig, site: SiteConfig) -> Quirks:
        """Return the quirks ``[simulator] quirks`` lists; offsets from the site's longitude."""
        return cls(frozenset(sim.quirks), utc_offset_h=round(site.longitude_deg / 15.0))

    @classmethod
    def all(cls, utc_offset_h: int = -1) -> Quirks:
        """Return every quirk on (for tests)."""
        return cls(frozenset(ALL_QUIRKS), utc_offset_h=utc_offset_h)

    def __contains__(self, flag: object) -> bool:
        return flag in self.flags

    def error_number(self, number: int) -> int:
        """Return the ErrorNumber to send for an ASCOM error number."""
        if number == _INVALID_OPERATION and "action_not_implemented" in self:
            number = ACTION_NOT_IMPLEMENTED
        if "com_error_numbers" in self:
            # .NET serialises the HResult as a signed Int32.
            return (_COM_ERROR_BASE | number) - (1 << 32)
        return number

    def transaction_ids(self, client_id: int, server_id: int) -> tuple[int, int]:
        """Return the (ClientTransactionID, ServerTransactionID) to send."""
        if "transaction_id_zero" in self:
            return 0, 0
        return client_id, server_id

    def timestamp(self, when: datetime, *, zone_suffix: str = "") -> str:
        """Format a UTC time as the server sends it.

        Parameters
        ----------
        when : datetime
            A UTC time (naive or aware).
        zone_suffix : str
            What the spec-following form ends with (``"Z"`` for UTCDate, else nothing).

        Returns
        -------
        str
            ``YYYY-MM-DDTHH:MM:SS.fffffff`` plus the suffix; with ``timestamp_utc_offset``
            local time and its offset instead.
        """
        if "timestamp_utc_offset" in self:
            offset = timedelta(hours=self.utc_offset_h)
            local = when.replace(tzinfo=None) + offset
            sign = "-" if self.utc_offset_h < 0 else "+"
            zone = f"{sign}{abs(self.utc_offset_h):02d}:00"
            return f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond:06d}0{zone}"
        return ascom_datetime(when) + zone_suffix
