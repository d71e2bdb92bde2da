"""PySerialTransport on a real pseudo-terminal and on socket://: reads, deadlines, failures."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty
from collections.abc import AsyncIterator, Iterator

import pytest

from obsctl.drivers.serial import ByteTransport, PySerialTransport
from obsctl.errors import DeviceConnectionError, DeviceError, DeviceTimeoutError

SLACK_S = 0.5


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    path = os.ttyname(slave)
    try:
        yield master, path
    finally:
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


async def read_master(master: int, n: int, timeout_s: float = 2.0) -> bytes:
    data = b""
    async with asyncio.timeout(timeout_s):
        while len(data) < n:
            try:
                data += os.read(master, n - len(data))
            except BlockingIOError:
                await asyncio.sleep(0.001)
    return data


@pytest.fixture
async def pty_transport(pty_pair) -> AsyncIterator[PySerialTransport]:
    transport = PySerialTransport(pty_pair[1], baudrate=9600, timeout_s=0.3, device="dev")
    try:
        yield transport
    finally:
        await transport.close()


def test_is_a_byte_transport() -> None:
    transport: ByteTransport = PySerialTransport("/dev/null")
    assert isinstance(transport, ByteTransport)
    assert transport.url == "/dev/null"
    with pytest.raises(ValueError, match="timeout_s"):
        PySerialTransport("/dev/null", timeout_s=0)


async def test_write_and_framed_reads_over_a_pty(pty_pair, pty_transport) -> None:
    master, _ = pty_pair
    await pty_transport.write(b":GR#")
    assert await read_master(master, 4) == b":GR#"
    os.write(master, b"12:34:56#1ABC")
    assert await pty_transport.read_until(b"#", max_bytes=32) == b"12:34:56#"
    assert await pty_transport.read_exactly(1) == b"1"
    assert await pty_transport.read_exactly(3) == b"ABC"
    assert await pty_transport.read_available() == b""
    os.write(master, b"\x7f")
    async with asyncio.timeout(2):
        while not (got := await pty_transport.read_available()):
            await asyncio.sleep(0.001)
    assert got == b"\x7f"


async def test_read_collects_a_reply_sent_in_pieces(pty_pair, pty_transport) -> None:
    master, _ = pty_pair

    async def dribble() -> None:
        for piece in (b"+45", b"*30", b":15#"):
            await asyncio.sleep(0.03)
            os.write(master, piece)

    task = asyncio.create_task(dribble())
    assert await pty_transport.read_until(b"#", max_bytes=32) == b"+45*30:15#"
    await task


async def test_silence_is_a_timeout_within_the_deadline(pty_transport) -> None:
    start = time.monotonic()
    with pytest.raises(DeviceTimeoutError, match=r"no answer within 0\.3 s") as info:
        await pty_transport.read_until(b"#", max_bytes=32)
    assert time.monotonic() - start < 0.3 + SLACK_S
    assert info.value.device == "dev"
    start = time.monotonic()
    with pytest.raises(DeviceTimeoutError):
        await pty_transport.read_exactly(1, timeout_s=0.05)
    assert time.monotonic() - start < 0.05 + SLACK_S


async def test_a_run_without_terminator_is_refused(pty_pair, pty_transport) -> None:
    master, _ = pty_pair
    await pty_transport.reset_input()  # opening a port flushes what came before
    os.write(master, b"\xaa" * 10 + b"ok#")
    with pytest.raises(DeviceError, match="no b'#' within 8 bytes"):
        await pty_transport.read_until(b"#", max_bytes=8)
    assert await pty_transport.read_until(b"#", max_bytes=8) == b"\xaa\xaaok#"


async def test_reset_input_discards_pending_bytes(pty_pair, pty_transport) -> None:
    master, _ = pty_pair
    await pty_transport.reset_input()  # opens the port
    os.write(master, b"stale#")
    await asyncio.sleep(0.02)
    await pty_transport.read_available()  # some into the transport's buffer...
    os.write(master, b"more#")
    await asyncio.sleep(0.02)
    await pty_transport.reset_input()  # ...and some still in the tty: both go
    os.write(master, b"fresh#")
    assert await pty_transport.read_until(b"#", max_bytes=32) == b"fresh#"


async def test_a_port_that_cannot_open_is_a_connection_error(tmp_path) -> None:
    transport = PySerialTransport(str(tmp_path / "ttyUSB9"), timeout_s=0.3, device="dev")
    try:
        with pytest.raises(DeviceConnectionError, match="ttyUSB9"):
            await transport.write(b":GR#")
        with pytest.raises(DeviceConnectionError):
            await transport.reopen()
    finally:
        await transport.close()
        await transport.close()  # twice: still quiet


async def test_a_closed_pty_is_a_connection_error(pty_pair, pty_transport) -> None:
    master, _ = pty_pair
    await pty_transport.reset_input()
    os.close(master)  # the far end hangs up
    with pytest.raises(DeviceConnectionError):
        await pty_transport.read_until(b"#", max_bytes=32)


@pytest.fixture
async def tcp_device() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A TCP peer that answers every line with 'ok#'; its writers are exposed to close them."""
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(64):
                writer.write(b"ok#")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], writers
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def test_socket_url_reopens_after_a_dropped_connection(tcp_device) -> None:
    port, writers = tcp_device
    # A timeout long enough for a reconnection on a loaded machine (0.5 s was not, in CI): the
    # drop itself must be told at once, not after the timeout.
    transport = PySerialTransport(f"socket://127.0.0.1:{port}", timeout_s=3.0, device="dev")
    try:
        await transport.write(b"x")
        assert await transport.read_until(b"#", max_bytes=8) == b"ok#"
        writers[0].close()  # the line drops
        await asyncio.sleep(0.05)
        start = time.monotonic()
        with pytest.raises(DeviceConnectionError, match="socket"):
            await transport.read_until(b"#", max_bytes=8)
        assert time.monotonic() - start < 0.5 + SLACK_S
        await transport.write(b"y")  # a fresh connection
        assert await transport.read_until(b"#", max_bytes=8) == b"ok#"
        assert len(writers) == 2
    finally:
        await transport.close()


async def test_socket_url_to_nothing_is_a_connection_error() -> None:
    transport = PySerialTransport("socket://127.0.0.1:9", timeout_s=0.5, device="dev")
    try:
        with pytest.raises(DeviceConnectionError, match="Could not open port"):
            await transport.reopen()
    finally:
        await transport.close()


async def test_a_cancelled_read_loses_nothing_that_reset_would_keep(pty_pair, pty_transport):
    master, _ = pty_pair
    await pty_transport.reset_input()
    task = asyncio.create_task(pty_transport.read_until(b"#", max_bytes=32, timeout_s=5))
    await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    os.write(master, b"late#")
    os.write(master, b"next#")
    # A late byte may land in the buffer of the abandoned read: it is still read in order.
    assert await pty_transport.read_until(b"#", max_bytes=32) == b"late#"
    assert await pty_transport.read_until(b"#", max_bytes=32) == b"next#"
