"""One command at a time on a serial line, each under one deadline, resynchronised after faults.

Serial protocols carry no request ids: a reply is known only by its place in the stream. A
timeout, a garbled reply or a cancelled call leaves the line in an unknown state (a late
reply may still be on its way), so the next command first flushes the input and then runs the
driver's resynchronisation (send a query whose reply is known and read until it appears),
which discards any late reply instead of taking it for the answer to the next command.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from obsctl.drivers.serial.transport import ByteTransport
from obsctl.errors import (
    DeviceBusyError,
    DeviceNotImplementedError,
    DeviceTimeoutError,
    InvalidDeviceValueError,
)

log = logging.getLogger(__name__)

# Errors raised after a complete, well-formed reply: the line is still in step.
_IN_STEP_ERRORS = (InvalidDeviceValueError, DeviceBusyError, DeviceNotImplementedError)


class Exchange:
    """The transport, seen through one command's deadline.

    Parameters
    ----------
    transport : ByteTransport
        The line.
    deadline : float
        Event-loop time (`asyncio.AbstractEventLoop.time`) by which the command must end.
    device : str
        Device name for errors.
    what : str
        The command, for error messages.
    """

    def __init__(self, transport: ByteTransport, deadline: float, device: str, what: str) -> None:
        self.transport = transport
        self.deadline = deadline
        self.device = device
        self.what = what

    def remaining_s(self) -> float:
        """Return the time left before the deadline in seconds.

        Raises
        ------
        DeviceTimeoutError
            When the deadline has passed.
        """
        left = self.deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise DeviceTimeoutError(f"{self.what}: deadline passed", device=self.device)
        return left

    async def write(self, data: bytes) -> None:
        """Send ``data`` within the deadline."""
        await self.transport.write(data, timeout_s=self.remaining_s())

    async def read_until(self, terminator: bytes, *, max_bytes: int) -> bytes:
        """Read through ``terminator`` within the deadline (see `ByteTransport.read_until`)."""
        return await self.transport.read_until(
            terminator, max_bytes=max_bytes, timeout_s=self.remaining_s()
        )

    async def read_exactly(self, n: int) -> bytes:
        """Read ``n`` bytes within the deadline."""
        return await self.transport.read_exactly(n, timeout_s=self.remaining_s())


Resync = Callable[[Exchange], Awaitable[None]]


class CommandLine:
    """Serialises commands on one transport and resynchronises it after a fault.

    Parameters
    ----------
    transport : ByteTransport
        The line.
    device : str
        Device name for errors and logs.
    timeout_s : float
        Deadline of one command (its write and all its reads), in seconds.
    resync : callable
        ``async resync(exchange)``: called (after the input is flushed) before the first
        command that follows a fault; it must read until the line is known to be in step, or
        raise.
    """

    def __init__(
        self, transport: ByteTransport, *, device: str, timeout_s: float, resync: Resync
    ) -> None:
        self.transport = transport
        self.device = device
        self.timeout_s = timeout_s
        self._resync = resync
        self._lock = asyncio.Lock()
        self.dirty = False

    @asynccontextmanager
    async def exchange(self, what: str, timeout_s: float | None = None) -> AsyncIterator[Exchange]:
        """Hold the line for one command and yield its `Exchange`.

        Parameters
        ----------
        what : str
            The command, for error messages.
        timeout_s : float or None
            This command's deadline in seconds; None uses the line's. The deadline starts
            when the line is free and covers any resynchronisation.
        """
        async with self._lock:
            limit = self.timeout_s if timeout_s is None else timeout_s
            deadline = asyncio.get_running_loop().time() + limit
            exchange = Exchange(self.transport, deadline, self.device, what)
            try:
                if self.dirty:
                    log.info("%s: resynchronising the line before %s", self.device, what)
                    await self.transport.reset_input()
                    await self._resync(exchange)
                    self.dirty = False
                yield exchange
            except _IN_STEP_ERRORS:
                raise
            except BaseException:
                # Timeout, garbage, dropped line or cancellation: a late reply may follow.
                self.dirty = True
                raise
