"""An in-process event bus: state changes for the control API's server-sent events.

Publishing never blocks and never fails: each subscriber has a bounded queue, and a
subscriber that falls behind loses its oldest events rather than slowing acquisition.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

__all__ = ["Event", "EventBus"]

log = logging.getLogger(__name__)

Event = dict[str, Any]


class EventBus:
    """Fan-out of events to any number of subscribers.

    Parameters
    ----------
    history : int
        How many recent events to keep for late subscribers and status pages.
    queue_size : int
        Events buffered per subscriber before its oldest are dropped.
    """

    def __init__(self, *, history: int = 200, queue_size: int = 1000) -> None:
        self.recent: deque[Event] = deque(maxlen=history)
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Event]] = set()

    def publish(self, kind: str, **data: Any) -> Event:
        """Publish an event of ``kind`` with JSON-serialisable ``data``; return it."""
        event: Event = {"kind": kind, "time": datetime.now(UTC).isoformat(), **data}
        self.recent.append(event)
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()  # drop the oldest: a slow reader must not stall us
            queue.put_nowait(event)
        log.debug("event %s %s", kind, data)
        return event

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        """Yield a queue that receives every event published while subscribed."""
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=self._queue_size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
