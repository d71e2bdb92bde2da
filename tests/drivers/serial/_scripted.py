"""A scripted `ByteTransport` fake: each expected write is answered with scripted bytes."""

from __future__ import annotations

from collections import deque

from obsctl.errors import DeviceError, DeviceTimeoutError


class ScriptedTransport:
    """Expects writes in order; a write's reply becomes readable at once.

    A reply of None (or a read with nothing suitable buffered) is silence: the read raises
    `DeviceTimeoutError` at once, so the tests need not wait for real deadlines.
    """

    def __init__(self, script: list[tuple[bytes, bytes | None]] | None = None) -> None:
        self.script: deque[tuple[bytes, bytes | None]] = deque(script or [])
        self.writes: list[bytes] = []
        self.input = bytearray()
        self.reopened = 0
        self.resets = 0
        self.closed = False

    @property
    def url(self) -> str:
        return "scripted://"

    def expect(self, write: bytes, reply: bytes | None = b"") -> ScriptedTransport:
        self.script.append((write, reply))
        return self

    def feed(self, data: bytes) -> None:
        """Bytes the device sends on its own (a move's echo, noise)."""
        self.input += data

    def done(self) -> bool:
        return not self.script

    async def write(self, data: bytes, *, timeout_s: float | None = None) -> None:
        self.writes.append(data)
        if not self.script:
            raise AssertionError(f"unexpected write {data!r}")
        expected, reply = self.script.popleft()
        assert data == expected, f"wrote {data!r}, script expected {expected!r}"
        if reply is not None:
            self.input += reply

    def _take(self, n: int) -> bytes:
        out = bytes(self.input[:n])
        del self.input[:n]
        return out

    async def read_until(
        self, terminator: bytes, *, max_bytes: int, timeout_s: float | None = None
    ) -> bytes:
        index = self.input.find(terminator)
        if 0 <= index <= max_bytes - len(terminator):
            return self._take(index + len(terminator))
        if len(self.input) >= max_bytes:
            raise DeviceError(f"no terminator: {self._take(max_bytes)!r}", device="scripted")
        raise DeviceTimeoutError("scripted silence", device="scripted")

    async def read_exactly(self, n: int, *, timeout_s: float | None = None) -> bytes:
        if len(self.input) < n:
            raise DeviceTimeoutError("scripted silence", device="scripted")
        return self._take(n)

    async def read_available(self) -> bytes:
        return self._take(len(self.input))

    async def reset_input(self) -> None:
        self.resets += 1
        self.input.clear()

    async def reopen(self) -> None:
        self.reopened += 1
        self.input.clear()

    async def close(self) -> None:
        self.closed = True
