"""What every serial driver shares: naming, the command line, connection and resynchronisation."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from obsctl.drivers.serial._line import CommandLine, Exchange
from obsctl.drivers.serial.transport import ByteTransport
from obsctl.errors import DeviceConnectionError, DeviceError, DeviceTimeoutError

log = logging.getLogger(__name__)


class SerialDevice:
    """Base of the serial drivers: one device on one serial line.

    Parameters
    ----------
    name : str
        The device's configured name (used in errors and logs).
    transport : ByteTransport
        The line to the device (not opened here; `connect` opens it).
    timeout_s : float
        Deadline of one command (write and whole reply) in seconds.
    """

    def __init__(self, name: str, transport: ByteTransport, *, timeout_s: float) -> None:
        self._name = name
        self._transport = transport
        self.timeout_s = timeout_s
        self._line = CommandLine(transport, device=name, timeout_s=timeout_s, resync=self._resync)
        self._connected = False

    @property
    def name(self) -> str:
        """The device's configured name."""
        return self._name

    @property
    def transport(self) -> ByteTransport:
        """The line to the device."""
        return self._transport

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, {self._transport.url!r})"

    def _garbled(self, command: str, raw: bytes, exc: Exception) -> DeviceError:
        return DeviceError(f"garbled reply to {command}: {raw[:40]!r} ({exc})", device=self._name)

    async def _reopen(self) -> None:
        """Open the line afresh with nothing in its input; the device counts as disconnected."""
        self._connected = False
        await self._transport.reopen()
        self._line.dirty = False
        await self._transport.reset_input()

    async def _resync(self, ex: Exchange) -> None:
        """Bring the line back in step after a fault (see `CommandLine`)."""
        raise NotImplementedError

    async def _read_to_answer(self, probe: str, answered: Callable[[], Awaitable[bool]]) -> None:
        """Read past stale replies and noise until ``answered`` finds the reply to ``probe``.

        Parameters
        ----------
        probe : str
            The command just sent, for the error message.
        answered : callable
            ``async answered()`` reads one reply and returns whether it is the probe's.

        Raises
        ------
        DeviceError
            When the deadline passes after noise was heard (the line is garbled).
        DeviceTimeoutError
            When the deadline passes in silence.
        DeviceConnectionError
            When the line drops.
        """
        heard = False
        while True:
            try:
                if await answered():
                    return
            except DeviceTimeoutError as exc:
                if heard:
                    raise DeviceError(
                        f"line garbled: no clean answer to {probe} while resynchronising",
                        device=self._name,
                    ) from exc
                raise
            except DeviceConnectionError:
                raise
            except DeviceError:
                pass  # noise without the reply's ending; keep reading until the deadline
            heard = True

    async def _probe(self) -> None:
        """Ask the device something cheap; raise `DeviceError` when it does not answer."""
        raise NotImplementedError

    async def disconnect(self) -> None:
        """Close the line; never raises."""
        self._connected = False
        await self._transport.close()
        log.info("%s disconnected", self._name)

    async def is_connected(self) -> bool:
        """Return whether the line is open and the device answers `_probe`."""
        if not self._connected:
            return False
        try:
            await self._probe()
        except DeviceError as exc:
            log.info("%s: not answering: %s", self._name, exc)
            return False
        return True
