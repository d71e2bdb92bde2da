"""A simulated clock the test moves by hand, for models that never wait on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SteppedClock:
    """Simulated time that moves only when the test sets or advances it."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> datetime:
        return datetime(2026, 11, 25, 22, 0, tzinfo=UTC) + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return self.seconds

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("nothing here waits on the simulated clock")

    def advance(self, seconds: float) -> None:
        self.seconds += seconds
