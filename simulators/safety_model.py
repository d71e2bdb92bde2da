"""Simulated safety monitor: one flag that tests and the control API set."""

from __future__ import annotations

import logging

from obsctl.simulators.models import ConnectableModel

__all__ = ["SafetyMonitorModel"]

log = logging.getLogger(__name__)


class SafetyMonitorModel(ConnectableModel):
    """A safe/unsafe signal.

    Parameters
    ----------
    safe : bool
        Initial state.
    """

    def __init__(self, safe: bool = True) -> None:
        super().__init__()
        self._safe = safe

    @property
    def is_safe(self) -> bool:
        """Whether it is safe to observe; False while disconnected, as ASCOM requires."""
        return self.connected and self._safe

    def set_safe(self, safe: bool) -> None:
        """Set the simulated weather/roof state.

        Parameters
        ----------
        safe : bool
            True for safe.
        """
        if safe != self._safe:
            log.info("simulated safety monitor now %s", "safe" if safe else "UNSAFE")
        self._safe = safe
