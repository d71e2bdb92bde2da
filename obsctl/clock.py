"""Clocks shared by the simulators, the sequencer and the scheduler, and the night a moment is in.

A `ScaledClock` runs faster than real time so that a simulated exposure, slew or night takes
a fraction of its nominal duration; tests use it instead of sleeping for real time.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from obsctl.errors import ConfigError

__all__ = ["Clock", "ScaledClock", "SystemClock", "night_of", "parse_night", "real_seconds"]


class Clock(Protocol):
    """A source of time that can also wait."""

    def now(self) -> datetime:
        """Return the current time as a timezone-aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Return a monotonic time in (simulated) seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait for ``seconds`` of (simulated) time."""
        ...


class SystemClock:
    """Real time."""

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Return `time.monotonic`."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep for real."""
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Time that passes ``speed`` times faster than real time, from a chosen start.

    Parameters
    ----------
    speed : float
        Simulated seconds per real second (> 0).
    start : datetime or None
        Simulated UTC time at construction; None starts at the real current time.
    """

    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self._start = start if start is not None else datetime.now(UTC)
        self._real0 = time.monotonic()

    def monotonic(self) -> float:
        """Return simulated seconds since construction."""
        return (time.monotonic() - self._real0) * self.speed

    def now(self) -> datetime:
        """Return the simulated UTC time."""
        return self._start + timedelta(seconds=self.monotonic())

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds / speed`` of real time."""
        await asyncio.sleep(max(0.0, seconds) / self.speed)


def real_seconds(clock: Clock, seconds: float) -> float:
    """Return the real seconds in which ``clock`` counts ``seconds`` (for a real timeout).

    A `ScaledClock` counts ``speed`` times faster than real time; any other clock keeps it.
    """
    return seconds / float(getattr(clock, "speed", 1.0))


def night_of(when: datetime, longitude_deg: float) -> str:
    """Return the night's date, ``YYYY-MM-DD``: the local-mean-time date at the night's start.

    The night runs from local noon to local noon, so a frame taken at 02:00 belongs to the
    previous evening's date (the DAY-OBS convention).

    Parameters
    ----------
    when : datetime
        Timezone-aware time.
    longitude_deg : float
        Site longitude in degrees, east positive.
    """
    local_mean = when + timedelta(hours=longitude_deg / 15.0 - 12.0)
    return local_mean.strftime("%Y-%m-%d")


def parse_night(text: str) -> date:
    """Return the night a ``YYYY-MM-DD`` text names (as `night_of` gives it and tables keep it).

    Raises
    ------
    ConfigError
        When the text is not such a date.
    """
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"night {text!r}: expected a date as YYYY-MM-DD") from exc
