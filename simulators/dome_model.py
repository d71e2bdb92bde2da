"""Simulated enclosure: a roll-off roof or a rotating dome whose motions take simulated time.

Positions are computed lazily from the injected clock, as the filter wheel's are: a motion is
a start, a target and a time window, and every read interpolates at the current simulated
time. The shutter (or roof) has an opening fraction from 0 (closed) to 1 (open); stopped
anywhere between by `DomeModel.abort_slew` it reports `ShutterState.ERROR`, the ASCOM state
for "neither open nor closed", and a later open or close goes on from where it stopped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from obsctl.clock import Clock
from obsctl.config import SimulatedDomeConfig
from obsctl.devices import ShutterState
from obsctl.simulators.models import (
    INVALID_VALUE,
    NOT_IMPLEMENTED,
    AscomError,
    ConnectableModel,
)

__all__ = ["DomeModel"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Motion:
    """A motion along one axis: ``start`` at ``t_start`` to ``target`` at ``t_end``."""

    start: float
    target: float
    t_start: float
    t_end: float

    def at(self, t: float) -> float:
        if t >= self.t_end:
            return self.target  # exactly: start + (target - start) can miss it by an ulp
        f = max(0.0, (t - self.t_start) / (self.t_end - self.t_start))
        return self.start + f * (self.target - self.start)


def _shortest(from_deg: float, to_deg: float) -> float:
    """Return the signed rotation in degrees, in [-180, 180), from one azimuth to another."""
    return (to_deg - from_deg + 180.0) % 360.0 - 180.0


class DomeModel(ConnectableModel):
    """An enclosure with ASCOM ``IDomeV3`` semantics.

    A roll-off roof (``kind = "roll_off"``) has only the shutter: it has no azimuth and no
    park position, and answers NotImplemented (0x400) for them. A rotating dome turns the
    short way round at ``rotation_rate_deg_s``; it starts parked at ``park_az_deg``. Both
    start with the shutter closed. Neither can slave itself to the telescope.

    Parameters
    ----------
    config : SimulatedDomeConfig
        Kind, shutter time, rotation rate and park azimuth.
    clock : Clock
        Source of simulated time.
    """

    def __init__(self, config: SimulatedDomeConfig, clock: Clock) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        now = clock.monotonic()
        self._shutter = _Motion(0.0, 0.0, now, now)
        self._azimuth = _Motion(config.park_az_deg, config.park_az_deg, now, now)
        self._park_pending = False
        self._at_park = self.rotates

    # --- abilities ---------------------------------------------------------------------

    @property
    def rotates(self) -> bool:
        """Whether the dome turns to an azimuth (CanSetAzimuth, CanPark); False for a roof."""
        return self.config.kind == "rotating"

    def _require_rotation(self, member: str) -> None:
        if not self.rotates:
            raise AscomError(NOT_IMPLEMENTED, f"{member}: a roll-off roof does not rotate")

    # --- shutter -----------------------------------------------------------------------

    @property
    def shutter_fraction(self) -> float:
        """How far the shutter or roof is open, 0 (closed) to 1 (open)."""
        return self._shutter.at(self.clock.monotonic())

    @property
    def shutter_moving(self) -> bool:
        """Whether the shutter or roof is moving."""
        return self.clock.monotonic() < self._shutter.t_end

    @property
    def shutter_state(self) -> ShutterState:
        """The shutter's ASCOM state; ERROR when stopped part-way."""
        if self.shutter_moving:
            return ShutterState.OPENING if self._shutter.target > 0.5 else ShutterState.CLOSING
        fraction = self.shutter_fraction
        if fraction >= 1.0:
            return ShutterState.OPEN
        if fraction <= 0.0:
            return ShutterState.CLOSED
        return ShutterState.ERROR

    def _move_shutter(self, target: float) -> None:
        self.require_connected()
        now = self.clock.monotonic()
        fraction = self._shutter.at(now)
        if self._shutter.target == target and (now < self._shutter.t_end or fraction == target):
            return  # already there or on the way: ASCOM allows the repeated command
        # From where it is: a roof stopped half-way takes half the time to finish.
        duration = abs(target - fraction) * self.config.shutter_time_s
        self._shutter = _Motion(fraction, target, now, now + duration)
        log.info("simulated dome shutter %s", "opening" if target else "closing")

    def open_shutter(self) -> None:
        """Start opening the shutter or roof.

        Raises
        ------
        AscomError
            0x407 when not connected.
        """
        self._move_shutter(1.0)

    def close_shutter(self) -> None:
        """Start closing the shutter or roof.

        Raises
        ------
        AscomError
            0x407 when not connected.
        """
        self._move_shutter(0.0)

    # --- rotation ----------------------------------------------------------------------

    def _settle(self) -> None:
        if self._park_pending and self.clock.monotonic() >= self._azimuth.t_end:
            self._park_pending = False
            self._at_park = True
            log.info("simulated dome parked")

    @property
    def azimuth_deg(self) -> float:
        """Azimuth of the slit in degrees, [0, 360).

        Raises
        ------
        AscomError
            0x400 for a roll-off roof.
        """
        self._require_rotation("Azimuth")
        return self._azimuth.at(self.clock.monotonic()) % 360.0

    @property
    def rotating(self) -> bool:
        """Whether the dome turns."""
        return self.clock.monotonic() < self._azimuth.t_end

    @property
    def slewing(self) -> bool:
        """Whether any part moves, rotation or shutter (ASCOM ``Slewing``)."""
        return self.rotating or self.shutter_moving

    @property
    def at_park(self) -> bool:
        """Whether the dome is at its park position (always False for a roll-off roof)."""
        self._settle()
        return self._at_park

    def _rotate_to(self, az_deg: float) -> None:
        now = self.clock.monotonic()
        here = self._azimuth.at(now) % 360.0
        turn = _shortest(here, az_deg)
        duration = abs(turn) / self.config.rotation_rate_deg_s
        self._azimuth = _Motion(here, here + turn, now, now + duration)

    def slew_to_azimuth(self, az_deg: float) -> None:
        """Start turning the slit to an azimuth; leaves the park position.

        Parameters
        ----------
        az_deg : float
            Target azimuth in degrees, [0, 360).

        Raises
        ------
        AscomError
            0x400 for a roll-off roof, 0x401 when out of range, 0x407 when not connected.
        """
        self.require_connected()
        self._require_rotation("SlewToAzimuth")
        if not 0.0 <= az_deg < 360.0:
            raise AscomError(INVALID_VALUE, f"azimuth {az_deg:g} not in [0, 360)")
        self._park_pending = False
        self._at_park = False
        self._rotate_to(az_deg)
        log.debug("simulated dome turning to %.1f deg", az_deg)

    def park(self) -> None:
        """Start turning to the park azimuth; `at_park` becomes True on arrival.

        Raises
        ------
        AscomError
            0x400 for a roll-off roof, 0x407 when not connected.
        """
        self.require_connected()
        self._require_rotation("Park")
        if self.at_park:
            return
        self._rotate_to(self.config.park_az_deg)
        self._park_pending = True
        log.info("simulated dome parking")

    def abort_slew(self) -> None:
        """Stop every motion where it is: rotation, park and shutter.

        Raises
        ------
        AscomError
            0x407 when not connected.
        """
        self.require_connected()
        now = self.clock.monotonic()
        if self.slewing:
            log.info("simulated dome motion aborted")
        fraction = self._shutter.at(now)
        self._shutter = _Motion(fraction, fraction, now, now)
        here = self._azimuth.at(now) % 360.0
        self._azimuth = _Motion(here, here, now, now)
        self._park_pending = False
