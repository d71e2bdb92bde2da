"""Simulated absolute focuser with backlash, on the simulated clock.

The motor's position is computed lazily from the injected clock, as the dome's shutter and
the dust cover are: a move is a start, a target and a time window, and every read
interpolates at the current simulated time. The motor runs at ``speed_steps_s``; a move while
one is under way goes to the new target from where the motor is.

The optics sit on a drawtube coupled to the motor through ``backlash_steps`` of slack. The
optics are at the motor's position when the slack was last taken up moving outward (higher
positions) and ``backlash_steps`` farther out when it was last taken up moving inward; on
reversing, the first ``backlash_steps`` of motor travel cross the slack and leave the optics
where they are. ASCOM ``Position`` is the motor's; `FocuserModel.defocus_steps` is the
optics' distance from the best focus, which follows the focuser's temperature.
"""

from __future__ import annotations

import logging

from obsctl.clock import Clock
from obsctl.config import SimulatedFocuserConfig
from obsctl.simulators.models import (
    INVALID_VALUE,
    NOT_IMPLEMENTED,
    AscomError,
    ConnectableModel,
    Motion,
)

__all__ = ["FocuserModel"]

log = logging.getLogger(__name__)

_SECONDS_PER_HOUR = 3600.0


class FocuserModel(ConnectableModel):
    """An absolute stepper focuser with ASCOM ``IFocuserV4`` semantics.

    It starts at rest at ``start_position`` with the slack taken up outward (the optics at
    the motor's position). It has a temperature probe and no temperature compensation.

    Parameters
    ----------
    config : SimulatedFocuserConfig
        Travel, speed, backlash, best focus and temperature.
    clock : Clock
        Source of simulated time.
    """

    def __init__(self, config: SimulatedFocuserConfig, clock: Clock) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        now = clock.monotonic()
        self._t0 = now  # the temperature drifts from the model's start
        start = float(config.start_position)
        self._motor = Motion(start, start, now, now)
        # Where the optics were when `_motor` started (steps): with the motor's position it
        # fixes the optics' position all along the move (see `_optics_at`).
        self._optics_start = start

    # --- motion ------------------------------------------------------------------------

    def _optics_at(self, t: float) -> float:
        """Return the optics' position (steps) at simulated time ``t``.

        Within one move the motor goes one way, so the optics stay put until the motor
        reaches their side of the slack and then ride on it: the optics are always within
        ``[motor, motor + backlash_steps]``, as near to where they were as that allows.
        """
        motor = self._motor.at(t)
        return min(max(self._optics_start, motor), motor + self.config.backlash_steps)

    def _stop_here(self, now: float) -> float:
        """End the current move at ``now``, on a whole step; return the motor's position."""
        optics = self._optics_at(now)
        # A stepper stands on a whole step: what `position` reports is where it stops.
        here = float(round(self._motor.at(now)))
        self._motor = Motion(here, here, now, now)
        self._optics_start = min(max(optics, here), here + self.config.backlash_steps)
        return here

    @property
    def is_moving(self) -> bool:
        """Whether the motor moves (ASCOM ``IsMoving``)."""
        return self.clock.monotonic() < self._motor.t_end

    @property
    def position(self) -> int:
        """The motor's position in steps, rounded (ASCOM ``Position``)."""
        return round(self._motor.at(self.clock.monotonic()))

    @property
    def optics_position(self) -> float:
        """Where the optics are, in motor steps (differs from `position` by the slack)."""
        return self._optics_at(self.clock.monotonic())

    def move(self, position: int) -> None:
        """Start a move to ``position`` steps (ASCOM ``Move``), from where the motor is.

        Parameters
        ----------
        position : int
            Target in steps, 0 to ``max_step`` and at most ``max_increment`` from the
            current position.

        Raises
        ------
        AscomError
            0x401 when the target is out of range or too far, 0x407 when not connected.
        """
        self.require_connected()
        top = self.config.max_step
        if not 0 <= position <= top:
            raise AscomError(INVALID_VALUE, f"position {position} not in 0..{top}")
        now = self.clock.monotonic()
        here = round(self._motor.at(now))
        if abs(position - here) > self.config.max_increment:
            raise AscomError(
                INVALID_VALUE,
                f"move from {here} to {position} is more than "
                f"MaxIncrement {self.config.max_increment} steps",
            )
        start = self._stop_here(now)  # only now: a refused move leaves a running one alone
        duration = abs(position - start) / self.config.speed_steps_s
        self._motor = Motion(start, float(position), now, now + duration)
        log.info("simulated focuser moving to %d", position)

    def halt(self) -> None:
        """Stop the motor where it is (ASCOM ``Halt``).

        Raises
        ------
        AscomError
            0x407 when not connected.
        """
        self.require_connected()
        if self.is_moving:
            log.info("simulated focuser halted")
        self._stop_here(self.clock.monotonic())

    # --- temperature and focus ---------------------------------------------------------

    @property
    def temperature_c(self) -> float:
        """The focuser's temperature probe (Celsius, ASCOM ``Temperature``)."""
        hours = (self.clock.monotonic() - self._t0) / _SECONDS_PER_HOUR
        return self.config.temperature_c + self.config.temperature_drift_c_per_h * hours

    @property
    def best_focus_steps(self) -> float:
        """Where the optics are in focus now, in steps (it moves with the temperature)."""
        c = self.config
        return c.best_focus_steps + c.steps_per_c * (self.temperature_c - c.reference_temperature_c)

    @property
    def defocus_steps(self) -> float:
        """The optics' distance from best focus in steps (positive: too far out)."""
        return self.optics_position - self.best_focus_steps

    @property
    def temp_comp_available(self) -> bool:
        """Whether the focuser compensates for temperature (ASCOM ``TempCompAvailable``)."""
        return False

    @property
    def temp_comp(self) -> bool:
        """Whether temperature compensation is on (ASCOM ``TempComp``): never."""
        return False

    def set_temp_comp(self, on: bool) -> None:
        """Switch temperature compensation; there is none, so only off is accepted.

        Parameters
        ----------
        on : bool
            True to switch it on.

        Raises
        ------
        AscomError
            0x400 when ``on`` is True, 0x407 when not connected.
        """
        self.require_connected()
        if on:
            raise AscomError(NOT_IMPLEMENTED, "this focuser has no temperature compensation")
