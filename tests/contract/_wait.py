"""Polling helpers for contract tests (simulated time runs fast, so waits are short)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def until(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout_s`` real seconds."""
    async with asyncio.timeout(timeout_s):
        while not await predicate():
            await asyncio.sleep(0.005)
