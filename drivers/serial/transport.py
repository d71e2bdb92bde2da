"""Byte-stream transports for serial devices, and the pyserial one used in production.

Serial drivers never open ports themselves: they receive a `ByteTransport`, so tests hand them
a scripted fake and production hands them a `PySerialTransport`. The transport is the one
place where port failures become obsctl errors: a missed deadline becomes
`DeviceTimeoutError`, a port that cannot be opened or that fails (``SerialException``,
``OSError``: an unplugged adapter, a closed pseudo-terminal, a dropped TCP connection) becomes
`DeviceConnectionError`. A port that failed is closed and reopened by the next call, so a
driver recovers from a dropped line without being rebuilt.

pyserial is blocking. `PySerialTransport` runs every port call on its own single worker
thread (so calls to one port stay in order and never touch the port at once) and keeps the
calls short: a read waits at most ``poll_s`` for the first byte, then takes whatever else is
already there. Deadlines are kept by the event loop around those short calls, so a cancelled
read leaves no thread blocked for long, and bytes that such a read still collects land in the
transport's buffer, where `ByteTransport.reset_input` discards them with the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar, runtime_checkable

import serial

from obsctl.errors import DeviceConnectionError, DeviceError, DeviceTimeoutError

__all__ = ["ByteTransport", "PySerialTransport"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Longest a single blocking pyserial read may wait for its first byte: it bounds how long a
# worker thread stays busy after the event loop has given up on a read.
_POLL_S = 0.02
# Most bytes drained from the port in one worker call, so a flood of noise cannot pin it.
_CHUNK_MAX = 4096


@runtime_checkable
class ByteTransport(Protocol):
    """An ordered byte stream to one device, with deadlines.

    Every method with a ``timeout_s`` raises `DeviceTimeoutError` when the deadline passes
    (None means the transport's default) and `DeviceConnectionError` when the line fails;
    after a failure the next call reopens the line. Reads return bytes already received
    before later ones: nothing is reordered or duplicated.
    """

    @property
    def url(self) -> str:
        """Where the transport leads (a pyserial URL or a description), for logs."""
        ...

    async def write(self, data: bytes, *, timeout_s: float | None = None) -> None:
        """Send all of ``data``."""
        ...

    async def read_until(
        self, terminator: bytes, *, max_bytes: int, timeout_s: float | None = None
    ) -> bytes:
        """Return the bytes up to and including the first ``terminator``.

        Raises
        ------
        DeviceError
            When ``max_bytes`` arrive without the terminator (they are consumed).
        """
        ...

    async def read_exactly(self, n: int, *, timeout_s: float | None = None) -> bytes:
        """Return the next ``n`` bytes."""
        ...

    async def read_available(self) -> bytes:
        """Return whatever has arrived, at once (empty when nothing has)."""
        ...

    async def reset_input(self) -> None:
        """Discard everything received and not yet read."""
        ...

    async def reopen(self) -> None:
        """Close the line if it is open, then open it again."""
        ...

    async def close(self) -> None:
        """Close the line. Never raises."""
        ...


class PySerialTransport:
    """A `ByteTransport` over a pyserial port opened by URL.

    The port opens on first use (or `reopen`), not at construction, and reopens on the call
    after a failure.

    Parameters
    ----------
    url : str
        A device path (``/dev/ttyUSB0``, ``/dev/pts/3``) or a pyserial URL
        (``socket://host:port``, ``rfc2217://host:port``).
    baudrate : int
        Line speed in bits per second (ignored by ``socket://``).
    timeout_s : float
        Default deadline of one read or write, in seconds.
    device : str or None
        Device name for errors and logs; None uses the URL.
    poll_s : float
        Longest one blocking pyserial read waits, in seconds (see the module docs).
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 9600,
        timeout_s: float = 2.0,
        device: str | None = None,
        poll_s: float = _POLL_S,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._url = url
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.device = device if device is not None else url
        self.poll_s = poll_s
        self._port: Any = None  # serial.Serial or a URL handler's subclass of it
        self._buffer = bytearray()
        self._buffer_lock = threading.Lock()  # the worker thread appends, the loop consumes
        self._executor: ThreadPoolExecutor | None = None
        self._closing: Future[None] | None = None

    @property
    def url(self) -> str:
        """The pyserial URL or device path."""
        return self._url

    def __repr__(self) -> str:
        return f"PySerialTransport({self._url!r}, baudrate={self.baudrate})"

    # --- plumbing ------------------------------------------------------------------------

    async def _run(self, func: Callable[[], T], what: str) -> T:
        """Run one port call on the port's worker thread, mapping port failures."""
        if self._closing is not None:
            # The previous worker may still be closing the old port: let it finish first.
            closing, self._closing = self._closing, None
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(closing)
        if self._executor is None:
            # One thread per port: calls stay in order and never overlap on the port.
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"serial:{self.device}")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, func)
        except serial.SerialTimeoutException as exc:
            # A write that cannot drain (flow control holding it) is a silent device, not a
            # failed port.
            raise DeviceTimeoutError(f"{what}: {self._url}: {exc}", device=self.device) from exc
        except (serial.SerialException, OSError) as exc:
            await self._drop(exc)
            raise DeviceConnectionError(f"{what}: {self._url}: {exc}", device=self.device) from exc

    async def _drop(self, exc: BaseException) -> None:
        log.warning(
            "%s: line %s failed (%s); it reopens on the next call", self.device, self._url, exc
        )
        # Queued, not awaited: the error is reported at once (pyserial's socket close sleeps
        # 0.3 s), and the next call runs after the close on the same worker.
        if self._executor is not None:
            self._executor.submit(self._close_port)

    @asynccontextmanager
    async def _deadline(self, timeout_s: float | None, what: str) -> AsyncIterator[None]:
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(max(0.0, limit)):
                yield
        except TimeoutError as exc:
            raise DeviceTimeoutError(
                f"{what}: no answer within {limit:g} s on {self._url}", device=self.device
            ) from exc

    def _open_port(self) -> None:
        """Open the port if it is not open (worker thread)."""
        if self._port is not None:
            return
        # `timeout` bounds one blocking read (see _POLL_S); `write_timeout` one blocking write.
        port = serial.serial_for_url(
            self._url,
            baudrate=self.baudrate,
            timeout=self.poll_s,
            write_timeout=self.timeout_s,
            do_not_open=True,
        )
        port.open()
        with self._buffer_lock:
            self._buffer.clear()
        self._port = port
        log.info("%s: opened %s", self.device, self._url)

    def _close_port(self) -> None:
        """Close the port, ignoring errors (worker thread)."""
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:
                log.debug("%s: closing %s: %s", self.device, self._url, exc)

    def _write(self, data: bytes) -> None:
        # No flush(): pyserial's write already returns only when the kernel has every byte
        # (bounded by write_timeout), while tcdrain could block without bound on a stuck line.
        self._open_port()
        self._port.write(data)

    def _fill(self) -> None:
        """Wait up to ``poll_s`` for input, then take all that is there (worker thread)."""
        self._open_port()
        first = self._port.read(1)
        if first:
            self._drain_now(bytearray(first))

    def _drain_now(self, data: bytearray | None = None) -> None:
        """Take whatever input is there without waiting (worker thread).

        Parameters
        ----------
        data : bytearray or None
            Input already read, kept ahead of the rest.
        """
        self._open_port()
        port = self._port
        data = bytearray() if data is None else data
        while len(data) < _CHUNK_MAX:
            waiting = port.in_waiting
            if waiting <= 0:
                break
            data += port.read(min(waiting, _CHUNK_MAX - len(data)))
        if data:
            with self._buffer_lock:
                self._buffer += data

    def _reset_input(self) -> None:
        self._open_port()
        self._port.reset_input_buffer()
        with self._buffer_lock:
            self._buffer.clear()

    def _take(self, n: int) -> bytes:
        with self._buffer_lock:
            out = bytes(self._buffer[:n])
            del self._buffer[:n]
        return out

    # --- ByteTransport -------------------------------------------------------------------

    async def write(self, data: bytes, *, timeout_s: float | None = None) -> None:
        """Send all of ``data``; see `ByteTransport`."""
        async with self._deadline(timeout_s, f"writing {data[:20]!r}"):
            await self._run(lambda: self._write(data), "write")

    async def read_until(
        self, terminator: bytes, *, max_bytes: int, timeout_s: float | None = None
    ) -> bytes:
        """Return the bytes up to and including ``terminator``; see `ByteTransport`."""
        if not terminator:
            raise ValueError("terminator must not be empty")
        async with self._deadline(timeout_s, f"waiting for {terminator!r}"):
            while True:
                with self._buffer_lock:
                    index = self._buffer.find(terminator)
                    size = len(self._buffer)
                if 0 <= index <= max_bytes - len(terminator):
                    return self._take(index + len(terminator))
                if size >= max_bytes:
                    junk = self._take(max_bytes)
                    raise DeviceError(
                        f"no {terminator!r} within {max_bytes} bytes from {self._url}: "
                        f"{junk[:40]!r}",
                        device=self.device,
                    )
                await self._run(self._fill, "read")

    async def read_exactly(self, n: int, *, timeout_s: float | None = None) -> bytes:
        """Return the next ``n`` bytes; see `ByteTransport`."""
        async with self._deadline(timeout_s, f"waiting for {n} byte(s)"):
            while True:
                with self._buffer_lock:
                    size = len(self._buffer)
                if size >= n:
                    return self._take(n)
                await self._run(self._fill, "read")

    async def read_available(self) -> bytes:
        """Return whatever has arrived, without waiting; see `ByteTransport`."""
        async with self._deadline(None, "polling input"):
            await self._run(self._drain_now, "read")
        return self._take(_CHUNK_MAX)

    async def reset_input(self) -> None:
        """Discard pending input; see `ByteTransport`."""
        async with self._deadline(None, "flushing input"):
            await self._run(self._reset_input, "flush")

    async def reopen(self) -> None:
        """Close and open the port again; see `ByteTransport`."""

        def cycle() -> None:
            self._close_port()
            self._open_port()

        async with self._deadline(None, "opening"):
            await self._run(cycle, "open")

    async def close(self) -> None:
        """Close the port and stop its worker thread; never raises."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # The close runs after any read in flight (which ends within poll_s), without
        # holding up the caller; a later reopen waits for it (see `_run`).
        self._closing = executor.submit(self._close_port)
        executor.shutdown(wait=False)
        log.info("%s: closing %s", self.device, self._url)
