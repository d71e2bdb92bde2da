"""Serial device simulators: a pseudo-terminal and a TCP port in front of a command interpreter.

A `SerialSimulator` opens a pseudo-terminal (so a driver talks to a real tty device through
pyserial, termios and all) and optionally listens on a TCP port for pyserial's
``socket://host:port``. Both feed the same interpreter (`LX200Interpreter` for the mount,
`QhyCfwInterpreter` for the filter wheel), which drives the physics models shared with the
Alpaca simulators. The pty is reached through a stable symbolic link (`SerialSimulator.path`)
that is re-pointed when the pty is re-created, the way a udev rule names a USB-serial adapter.

Faults (`SerialFault`), set at run time through `SerialSimulator.faults`:

``silence``
    commands take effect but their replies are lost (a broken transmit wire).
``garbage``
    each reply is replaced by as many random bytes with the high bit set (line noise, a
    baud-rate mismatch), followed by the protocol's terminator when the reply has one.
``slow``
    each reply is sent ``seconds`` of real time late, or at once when the fault is cleared
    or replaced.
``drop``
    the line drops on the next command, which is not executed: a TCP connection is closed;
    the pty is closed and its link removed (opening it fails, like an unplugged adapter).
    While the fault stays, every command on a new TCP connection is dropped too and the pty
    stays away; when it is cleared (or its ``count`` is used up) a fresh pty appears under
    the same link.

Replies are what faults act on: ``silence``, ``garbage`` and ``slow`` count (``count``) and
touch only commands that have a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import tempfile
import tty
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args

from obsctl.config import SerialSimulatorConfig
from obsctl.simulators.faults import FaultSlot, check_fault
from obsctl.simulators.filterwheel_model import FilterWheelModel
from obsctl.simulators.mount_model import MountModel
from obsctl.simulators.serial_cfw import QhyCfwInterpreter
from obsctl.simulators.serial_lx200 import LX200Interpreter

__all__ = [
    "CommandInterpreter",
    "RunningSerialSimulators",
    "SerialFault",
    "SerialFaultInjector",
    "SerialFaultKind",
    "SerialSimulator",
    "running_serial_simulators",
]

log = logging.getLogger(__name__)

SerialFaultKind = Literal["silence", "garbage", "slow", "drop"]
_KINDS: frozenset[str] = frozenset(get_args(SerialFaultKind))
_READ_SIZE = 4096


@dataclass(frozen=True)
class SerialFault:
    """One injected serial-line fault (see the module docs for the kinds).

    Parameters
    ----------
    kind : {"silence", "garbage", "slow", "drop"}
        What goes wrong.
    seconds : float
        Reply delay in real seconds (``slow``).
    count : int or None
        How many replies (or, for ``drop``, line drops) the fault applies to; None until
        cleared.

    Raises
    ------
    ValueError
        For an unknown kind or an out-of-range number.
    """

    kind: SerialFaultKind
    seconds: float = 0.0
    count: int | None = None

    def __post_init__(self) -> None:
        check_fault(self.kind, _KINDS, seconds=self.seconds, count=self.count)


class SerialFaultInjector(FaultSlot[SerialFault]):
    """The fault slot of one serial simulator.

    Parameters
    ----------
    on_change : callable or None
        Called with the new fault (or None) after every `set`, `clear` and used-up count.
    label : str
        What the slot belongs to, for logs.
    """

    def __init__(
        self,
        on_change: Callable[[SerialFault | None], None] | None = None,
        *,
        label: str = "serial line",
    ) -> None:
        super().__init__(label, on_change)

    def take(self) -> SerialFault | None:
        """Return the active fault for one reply (or drop), counting it against ``count``."""
        return self._use()


class CommandInterpreter(Protocol):
    """A device's command set: framing of the input and one reply per command."""

    @property
    def terminator(self) -> bytes | None:
        """What ends a reply (``b"#"`` for LX200), kept after garbage; None when nothing."""
        ...

    def split(self, buffer: bytearray) -> list[bytes]:
        """Remove the complete commands from the front of ``buffer`` and return them."""
        ...

    async def reply(self, command: bytes) -> bytes | None:
        """Execute one command and return its reply (None for commands without one)."""
        ...


class _Link(Protocol):
    async def read(self) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class _TcpLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self) -> bytes:
        try:
            return await self.reader.read(_READ_SIZE)
        except ConnectionError:
            return b""

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


class _PtyLink:
    """The master side of one pseudo-terminal, read through the event loop."""

    def __init__(self, master: int, slave: int, loop: asyncio.AbstractEventLoop) -> None:
        self.master = master
        self.slave = slave  # held open so that the master never reads EIO between clients
        self.loop = loop
        self.closed = False
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        loop.add_reader(master, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.master, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            log.debug("pty read: %s", exc)
            data = b""
        if not data:
            self.loop.remove_reader(self.master)
        self._chunks.put_nowait(data)

    async def read(self) -> bytes:
        return await self._chunks.get()

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            os.write(self.master, data)
        except BlockingIOError:
            # The client does not read and the tty buffer is full: a real UART drops too.
            log.warning("pty output buffer full; %d byte(s) dropped", len(data))
        except OSError as exc:
            log.debug("pty write: %s", exc)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._chunks.put_nowait(b"")


class SerialSimulator:
    """One simulated serial device on a pseudo-terminal and/or a TCP port.

    Use as an async context manager (or `start` and `stop`).

    Parameters
    ----------
    interpreter : CommandInterpreter
        The device's command set, driving its model.
    name : str
        Name for logs and the pty link (``<link dir>/<name>``).
    pty : bool
        Whether to open a pseudo-terminal.
    tcp_port : int or None
        TCP port to listen on for ``socket://`` (0 picks a free one); None for no TCP.
    host : str
        Address the TCP port binds to.
    link_path : str, os.PathLike or None
        Where to put the pty's symbolic link; None makes one in a new temporary folder.
    seed : int
        Seed of the garbage bytes.
    """

    def __init__(
        self,
        interpreter: CommandInterpreter,
        *,
        name: str,
        pty: bool = True,
        tcp_port: int | None = None,
        host: str = "127.0.0.1",
        link_path: str | os.PathLike[str] | None = None,
        seed: int = 0,
    ) -> None:
        self.interpreter = interpreter
        self.name = name
        self.pty = pty
        self.host = host
        self._requested_port = tcp_port
        self._link_path = Path(link_path) if link_path is not None else None
        self._temp_dir: str | None = None
        self._rng = random.Random(seed)
        self.faults = SerialFaultInjector(self._fault_changed, label=f"serial {name}")
        self._pty_link: _PtyLink | None = None
        self._server: asyncio.Server | None = None
        self._tcp_links: set[_TcpLink] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.tcp_port: int | None = None
        self.pty_name: str | None = None
        self._running = False

    # --- life cycle ----------------------------------------------------------------------

    @property
    def path(self) -> str | None:
        """The pty's stable link (open this with pyserial); None without a pty."""
        return str(self._link_path) if self.pty and self._link_path is not None else None

    @property
    def tcp_url(self) -> str | None:
        """``socket://host:port`` for pyserial, or None without TCP."""
        return None if self.tcp_port is None else f"socket://{self.host}:{self.tcp_port}"

    async def start(self) -> None:
        """Open the pty and the TCP listener."""
        self._running = True
        if self.pty:
            if self._link_path is None:
                self._temp_dir = tempfile.mkdtemp(prefix="obsctl-serial-")
                self._link_path = Path(self._temp_dir) / self.name
            self._open_pty()
        if self._requested_port is not None:
            self._server = await asyncio.start_server(
                self._on_client, self.host, self._requested_port
            )
            self.tcp_port = int(self._server.sockets[0].getsockname()[1])
        log.info(
            "serial simulator %s: pty %s -> %s, tcp %s",
            self.name,
            self.path,
            self.pty_name,
            self.tcp_url,
        )

    async def stop(self) -> None:
        """Close the pty, the listener and every connection."""
        self._running = False
        if self._server is not None:
            self._server.close()
        for link in list(self._tcp_links):
            link.close()
        self._close_pty()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
        log.info("serial simulator %s stopped", self.name)

    async def __aenter__(self) -> SerialSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, link: _Link) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(link))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _open_pty(self) -> None:
        assert self._link_path is not None
        master, slave = os.openpty()
        # Raw mode: no echo, no line editing, no CR/LF translation; pyserial sets it again.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.pty_name = os.ttyname(slave)
        tmp = self._link_path.with_name(self._link_path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self.pty_name)
        tmp.replace(self._link_path)  # atomic: a client never sees a missing link here
        self._pty_link = _PtyLink(master, slave, asyncio.get_running_loop())
        self._spawn(self._pty_link)
        log.info("serial simulator %s: pty %s at %s", self.name, self.pty_name, self._link_path)

    def _close_pty(self) -> None:
        link, self._pty_link = self._pty_link, None
        if link is not None:
            link.close()
        if self._link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._link_path.unlink()
        self.pty_name = None

    def _fault_changed(self, fault: SerialFault | None) -> None:
        # A dropped pty comes back as soon as no drop fault is active.
        dropping = fault is not None and fault.kind == "drop"
        if self._running and self.pty and self._pty_link is None and not dropping:
            self._open_pty()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _TcpLink(reader, writer)
        self._tcp_links.add(link)
        log.info("serial simulator %s: tcp client %s", self.name, writer.get_extra_info("peername"))
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await self._serve(link)
        finally:
            self._tcp_links.discard(link)

    # --- serving -------------------------------------------------------------------------

    async def _serve(self, link: _Link) -> None:
        buffer = bytearray()
        try:
            while True:
                chunk = await link.read()
                if not chunk:
                    return
                buffer += chunk
                for command in self.interpreter.split(buffer):
                    if not await self._handle(link, command):
                        return
        finally:
            link.close()

    async def _handle(self, link: _Link, command: bytes) -> bool:
        """Run one command and deliver its reply through the active fault; False: dropped."""
        fault = self.faults.fault
        if fault is not None and fault.kind == "drop":
            self.faults.take()
            log.info("serial simulator %s: dropping the line at %r", self.name, command)
            if link is self._pty_link:
                self._close_pty()
                self._fault_changed(self.faults.fault)
            link.close()
            return False
        reply = await self.interpreter.reply(command)
        if reply is None:
            return True
        fault = self.faults.take()
        if fault is None:
            link.write(reply)
        elif fault.kind == "silence":
            log.debug("serial simulator %s: reply to %r lost", self.name, command)
        elif fault.kind == "garbage":
            link.write(self._garble(reply))
        elif fault.kind == "slow":
            await self.faults.wait_released(fault.seconds)
            link.write(reply)
        return True

    def _garble(self, reply: bytes) -> bytes:
        terminator = self.interpreter.terminator
        body = reply
        if terminator and reply.endswith(terminator):
            body = reply[: -len(terminator)]
        noise = bytes(self._rng.randrange(0x80, 0xFF) for _ in range(max(1, len(body))))
        return noise + (terminator if terminator and reply.endswith(terminator) else b"")


class _HasModels(Protocol):
    @property
    def mount(self) -> MountModel: ...

    @property
    def filter_wheel(self) -> FilterWheelModel: ...


@dataclass
class RunningSerialSimulators:
    """The serial simulators of one observatory.

    Attributes
    ----------
    mount : SerialSimulator or None
        The LX200 (OnStep) mount, None when it has neither a pty nor a TCP port.
    filter_wheel : SerialSimulator or None
        The QHY CFW filter wheel, likewise.
    """

    mount: SerialSimulator | None
    filter_wheel: SerialSimulator | None


@asynccontextmanager
async def running_serial_simulators(
    observatory: _HasModels, config: SerialSimulatorConfig, *, host: str = "127.0.0.1"
) -> AsyncIterator[RunningSerialSimulators]:
    """Serve an observatory's mount and filter wheel models as serial devices.

    Parameters
    ----------
    observatory : SimulatedObservatory
        Anything with ``mount`` (`MountModel`) and ``filter_wheel`` (`FilterWheelModel`).
    config : SerialSimulatorConfig
        TCP ports (0 picks free ones) and whether to open pseudo-terminals.
    host : str
        Address the TCP ports bind to.

    Yields
    ------
    RunningSerialSimulators
        The running simulators, with their pty links and TCP ports.
    """
    async with AsyncExitStack() as stack:

        async def serve(
            interpreter: Callable[[], CommandInterpreter], name: str, tcp_port: int | None
        ) -> SerialSimulator | None:
            # The interpreter is built only when served: the wheel's connects its model.
            if not config.pty and tcp_port is None:
                return None
            simulator = SerialSimulator(
                interpreter(), name=name, pty=config.pty, tcp_port=tcp_port, host=host
            )
            return await stack.enter_async_context(simulator)

        mount = await serve(
            lambda: LX200Interpreter(observatory.mount), "mount", config.mount_tcp_port
        )
        wheel = await serve(
            lambda: QhyCfwInterpreter(observatory.filter_wheel),
            "filter_wheel",
            config.filter_wheel_tcp_port,
        )
        yield RunningSerialSimulators(mount=mount, filter_wheel=wheel)
