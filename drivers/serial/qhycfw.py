"""`SerialFilterWheel`: the `obsctl.devices.FilterWheel` protocol over the QHY CFW serial protocol.

The QHY CFW2/CFW3 filter wheels (USB-serial or RS-232, 9600 baud 8N1) speak a tiny ASCII
protocol with no terminators. The subset used here is the one INDI's ``indi_qhycfw2_wheel``
and ``indi_qhycfw3_wheel`` drivers speak to firmware 2014-09 and later:

==========  ========================================  =====================================
sent        reply                                     meaning
==========  ========================================  =====================================
``0``-``9``  the same digit, sent when the wheel       move to that slot (0-based)
            arrives (nothing while it moves)
``VRS``     8 ASCII characters (a firmware date)       firmware version
``MXP``     1 character: the number of slots           slot count (INDI reads ``F`` as 16)
``NOW``     1 digit: the current slot (0-based)        position
==========  ========================================  =====================================

The protocol carries no filter names or focus offsets, so they come from the configuration.
A move is asynchronous: `SerialFilterWheel.move` sends the digit and returns, and
`SerialFilterWheel.position` returns None until the echo arrives (it polls the input without
sending anything, because the wheel answers nothing else while it turns), or raises
`DeviceTimeoutError` when no echo comes within ``move_timeout_s``. One digit addresses at most
ten slots, so larger wheels are refused at connect. INDI also waits (up to 25 s) for the byte
the wheel sends when its power-on homing ends; this driver flushes the input at connect
instead, so connect to a wheel that has finished homing. After a fault the driver
resynchronises by sending ``VRS`` and reading up to the known version string.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from obsctl.drivers.serial._device import SerialDevice
from obsctl.drivers.serial._line import Exchange
from obsctl.drivers.serial.transport import ByteTransport
from obsctl.errors import (
    DeviceBusyError,
    DeviceError,
    DeviceNotConnectedError,
    DeviceTimeoutError,
    InvalidDeviceValueError,
)

__all__ = ["SerialFilterWheel", "parse_position", "parse_slot_count", "parse_version"]

log = logging.getLogger(__name__)

_VERSION_LENGTH = 8
_MAX_SLOTS = 10  # one ASCII digit per slot


def parse_version(raw: bytes) -> str:
    """Parse the ``VRS`` reply: eight printable ASCII characters.

    Raises
    ------
    ValueError
        For anything else.
    """
    if len(raw) != _VERSION_LENGTH or not all(0x20 < b < 0x7F for b in raw):
        raise ValueError(f"not a firmware version: {raw!r}")
    return raw.decode("ascii")


def parse_slot_count(raw: bytes) -> int:
    """Parse the ``MXP`` reply: a digit ``1``-``9`` is the slot count, ``F`` means 16 (INDI).

    Raises
    ------
    ValueError
        For anything else.
    """
    if raw == b"F":
        return 16
    if len(raw) != 1 or not b"1" <= raw <= b"9":
        raise ValueError(f"not a slot count: {raw!r}")
    return int(raw)


def parse_position(raw: bytes, slots: int) -> int:
    """Parse a ``NOW`` reply or a move echo: one digit below ``slots``.

    Raises
    ------
    ValueError
        For anything else.
    """
    if len(raw) != 1 or not b"0" <= raw <= b"9" or int(raw) >= slots:
        raise ValueError(f"not a slot of a {slots}-slot wheel: {raw!r}")
    return int(raw)


class SerialFilterWheel(SerialDevice):
    """A QHY CFW filter wheel on a serial line.

    Parameters
    ----------
    name, transport, timeout_s
        See `SerialDevice`.
    names : sequence of str
        Filter names by slot; empty names the slots ``Filter 1``... after the wheel reports
        its slot count.
    focus_offsets : sequence of int
        Focuser offsets in steps by slot; empty means zeros.
    move_timeout_s : float
        Longest a move may take before `position` raises, in seconds.
    """

    def __init__(
        self,
        name: str,
        transport: ByteTransport,
        *,
        names: Sequence[str] = (),
        focus_offsets: Sequence[int] = (),
        timeout_s: float = 2.0,
        move_timeout_s: float = 60.0,
    ) -> None:
        if focus_offsets and len(focus_offsets) != len(names):
            raise ValueError(
                f"{len(focus_offsets)} focus offsets for {len(names)} filter names; they must match"
            )
        super().__init__(name, transport, timeout_s=timeout_s)
        self._configured_names = list(names)
        self._configured_offsets = [int(n) for n in focus_offsets]
        self.move_timeout_s = move_timeout_s
        self._version = ""
        self._slots = 0
        self._moving_to: int | None = None
        self._move_deadline = 0.0  # event-loop time

    @property
    def version(self) -> str:
        """The firmware version the wheel reported (``VRS``)."""
        return self._version

    async def _ask(self, ex: Exchange, command: str, size: int) -> bytes:
        await ex.write(command.encode("ascii"))
        return await ex.read_exactly(size)

    async def _resync(self, ex: Exchange) -> None:
        """Read past stale echoes until the answer to a fresh ``VRS`` arrives."""
        # The flush before this may have swallowed a move's echo: ask NOW instead.
        self._moving_to = None
        await ex.write(b"VRS")

        async def answered() -> bool:
            await ex.read_until(self._version.encode("ascii"), max_bytes=64)
            return True

        await self._read_to_answer("VRS", answered)

    def _require(self) -> int:
        if not self._connected:
            raise DeviceNotConnectedError("not connected; call connect() first", device=self._name)
        return self._slots

    # --- Device ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the line and read the firmware version, slot count and position.

        Raises
        ------
        DeviceTimeoutError, DeviceConnectionError
            When the wheel cannot be reached.
        DeviceError
            When replies are garbled, or the wheel's slot count does not match the
            configured names or exceeds ten.
        """
        self._moving_to = None
        await self._reopen()
        async with self._line.exchange("VRS") as ex:
            raw = await self._ask(ex, "VRS", _VERSION_LENGTH)
            try:
                self._version = parse_version(raw)
            except ValueError as exc:
                raise self._garbled("VRS", raw, exc) from exc
        async with self._line.exchange("MXP") as ex:
            raw = await self._ask(ex, "MXP", 1)
            try:
                slots = parse_slot_count(raw)
            except ValueError as exc:
                raise self._garbled("MXP", raw, exc) from exc
        if slots > _MAX_SLOTS:
            raise DeviceError(
                f"wheel reports {slots} slots; one-digit commands reach only {_MAX_SLOTS}",
                device=self._name,
            )
        if self._configured_names and len(self._configured_names) != slots:
            raise DeviceError(
                f"wheel reports {slots} slots but {len(self._configured_names)} filter names "
                "are configured",
                device=self._name,
            )
        self._slots = slots
        self._connected = True
        try:
            position = await self.position()
        except BaseException:
            self._connected = False
            raise
        log.info(
            "%s connected: QHY CFW firmware %s, %d slots, at slot %s",
            self._name,
            self._version,
            slots,
            position,
        )

    async def disconnect(self) -> None:
        """Close the line; never raises."""
        self._moving_to = None
        await super().disconnect()

    async def _probe(self) -> None:
        """Read the position: the wheel answers it, or is known to be moving."""
        await self.position()

    # --- FilterWheel -------------------------------------------------------------------

    async def names(self) -> list[str]:
        """Return the filter names by slot (configured, or ``Filter N`` after connecting).

        Raises
        ------
        DeviceNotConnectedError
            When no names are configured and the slot count is not yet known.
        """
        if self._configured_names:
            return list(self._configured_names)
        return [f"Filter {i + 1}" for i in range(self._require())]

    async def focus_offsets(self) -> list[int]:
        """Return the configured focus offsets in focuser steps (zeros when none are)."""
        if self._configured_offsets:
            return list(self._configured_offsets)
        return [0] * len(await self.names())

    async def _poll_arrival(self, ex: Exchange) -> int | None:
        """Take the move's echo if it has come; None while the wheel still turns."""
        target = self._moving_to
        assert target is not None
        raw = await ex.transport.read_available()
        if raw:
            self._moving_to = None
            try:
                arrived = parse_position(raw, self._slots)
            except ValueError as exc:
                raise self._garbled(f"move to {target}", raw, exc) from exc
            if arrived != target:
                raise DeviceError(
                    f"wheel reports slot {arrived} after a move to {target}", device=self._name
                )
            log.debug("%s at slot %d", self._name, arrived)
            return arrived
        if asyncio.get_running_loop().time() > self._move_deadline:
            self._moving_to = None
            raise DeviceTimeoutError(
                f"move to slot {target} not finished within {self.move_timeout_s:g} s",
                device=self._name,
            )
        return None

    async def position(self) -> int | None:
        """Return the current slot (0-based), or None while the wheel moves.

        Raises
        ------
        DeviceTimeoutError
            When the wheel does not answer, or a move has not ended within
            ``move_timeout_s``.
        DeviceError
            When a reply is garbled.
        """
        slots = self._require()
        async with self._line.exchange("NOW") as ex:
            if self._moving_to is not None:
                return await self._poll_arrival(ex)
            raw = await self._ask(ex, "NOW", 1)
            try:
                return parse_position(raw, slots)
            except ValueError as exc:
                raise self._garbled("NOW", raw, exc) from exc

    async def move(self, position: int) -> None:
        """Send the slot digit and return at once; poll `position` for arrival.

        Raises
        ------
        InvalidDeviceValueError
            When the slot does not exist.
        DeviceBusyError
            When the previous move has not ended.
        """
        slots = self._require()
        if not 0 <= position < slots:
            raise InvalidDeviceValueError(
                f"slot {position} is not in 0..{slots - 1}", device=self._name
            )
        async with self._line.exchange(f"move to {position}") as ex:
            if self._moving_to is not None and await self._poll_arrival(ex) is None:
                raise DeviceBusyError(f"still moving to slot {self._moving_to}", device=self._name)
            await ex.write(str(position).encode("ascii"))
            self._moving_to = position
            self._move_deadline = asyncio.get_running_loop().time() + self.move_timeout_s
        log.debug("%s moving to slot %d", self._name, position)
