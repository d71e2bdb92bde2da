"""Simulated filter wheel: slots, focus offsets and a move that takes simulated time."""

from __future__ import annotations

import logging

from obsctl.clock import Clock
from obsctl.config import SimulatedFilterWheelConfig
from obsctl.simulators.models import INVALID_VALUE, AscomError, ConnectableModel

__all__ = ["FilterWheelModel"]

log = logging.getLogger(__name__)


class FilterWheelModel(ConnectableModel):
    """A filter wheel whose position is computed lazily from the clock.

    A move takes ``move_time_s`` of simulated time per slot, counted the short way round the
    wheel; `position` is -1 while it moves (as ASCOM ``IFilterWheelV3.Position``).

    Parameters
    ----------
    config : SimulatedFilterWheelConfig
        Filter names, focus offsets and the move time per slot.
    clock : Clock
        Source of simulated time.
    """

    def __init__(self, config: SimulatedFilterWheelConfig, clock: Clock) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        self._target = 0
        self._arrival = clock.monotonic()

    @property
    def names(self) -> list[str]:
        """Filter names, indexed by slot."""
        return list(self.config.names)

    @property
    def focus_offsets(self) -> list[int]:
        """Focuser offsets in focuser steps, indexed by slot."""
        return list(self.config.focus_offsets)

    @property
    def moving(self) -> bool:
        """Whether the wheel is between slots."""
        return self.clock.monotonic() < self._arrival

    @property
    def position(self) -> int:
        """Current slot (0-based), or -1 while moving."""
        return -1 if self.moving else self._target

    @property
    def target(self) -> int:
        """The slot the wheel is at or moving to."""
        return self._target

    @property
    def current_filter(self) -> str:
        """Name of the filter in (or coming into) the beam."""
        return self.config.names[self._target]

    def move(self, position: int) -> None:
        """Start moving to a slot.

        Parameters
        ----------
        position : int
            Target slot, 0-based.

        Raises
        ------
        AscomError
            0x401 when the slot does not exist, 0x407 when not connected.
        """
        self.require_connected()
        slots = len(self.config.names)
        if not 0 <= position < slots:
            raise AscomError(INVALID_VALUE, f"position {position} is not in 0..{slots - 1}")
        # A move requested mid-move starts from the slot the wheel was heading to: the
        # simulation has no partial positions.
        steps = abs(position - self._target)
        distance = min(steps, slots - steps)
        self._target = position
        self._arrival = self.clock.monotonic() + distance * self.config.move_time_s
        log.debug("filter wheel moving to %d (%d slots)", position, distance)
