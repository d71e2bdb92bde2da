"""The QHY CFW serial protocol in front of a `FilterWheelModel`.

The command subset is the one documented in `obsctl.drivers.serial.qhycfw`: a digit moves the
wheel and is echoed when the wheel arrives; ``VRS``, ``MXP`` and ``NOW`` report the firmware
version, slot count and position. Like the firmware, the simulator does one thing at a time:
while the wheel turns it answers nothing, and commands wait until it has arrived. A digit
for a slot the wheel does not have is ignored (no reply). The model is marked connected when
the interpreter is made, because a serial wheel has no connect handshake.
"""

from __future__ import annotations

import asyncio
import logging

from obsctl.simulators.filterwheel_model import FilterWheelModel
from obsctl.simulators.models import AscomError

__all__ = ["QhyCfwInterpreter"]

log = logging.getLogger(__name__)

_WORDS = (b"VRS", b"MXP", b"NOW")
# Real seconds between looks at a moving wheel: moves take simulated time on the model's
# clock, and the model tells only whether it still moves.
_POLL_S = 0.001


class QhyCfwInterpreter:
    """Answers QHY CFW commands for one `FilterWheelModel`.

    Parameters
    ----------
    model : FilterWheelModel
        The wheel physics (shared with the Alpaca simulator).
    version : str
        The eight characters ``VRS`` answers.
    """

    terminator = None

    def __init__(self, model: FilterWheelModel, *, version: str = "20230415") -> None:
        if len(version) != 8:
            raise ValueError(f"version must have 8 characters, got {version!r}")
        self.model = model
        self.version = version
        self.commands: list[bytes] = []  # every command received, for tests
        model.connected = True

    def split(self, buffer: bytearray) -> list[bytes]:
        """Take digits and three-letter words off the front of ``buffer``; skip noise."""
        commands: list[bytes] = []
        while buffer:
            if 0x30 <= buffer[0] <= 0x39:
                commands.append(bytes(buffer[:1]))
                del buffer[:1]
                continue
            head = bytes(buffer[:3])
            if head in _WORDS:
                commands.append(head)
                del buffer[:3]
                continue
            if len(head) < 3 and any(word.startswith(head) for word in _WORDS):
                break  # the rest of a word is still on its way
            del buffer[:1]
        return commands

    async def _arrival(self) -> None:
        while self.model.moving:
            await asyncio.sleep(_POLL_S)

    async def reply(self, command: bytes) -> bytes | None:
        """Execute one command and return its reply (a move's echo comes on arrival)."""
        self.commands.append(command)
        slots = len(self.model.names)
        if command == b"VRS":
            return self.version.encode("ascii")
        if command == b"MXP":
            return str(slots).encode("ascii") if slots <= 9 else b"F"
        await self._arrival()
        if command == b"NOW":
            return str(self.model.position).encode("ascii")
        slot = int(command)
        if slot >= slots:
            log.info("simulated CFW: no slot %d; ignored", slot)
            return None
        try:
            self.model.move(slot)
        except AscomError as exc:
            log.info("simulated CFW: move to %d refused: %s", slot, exc)
            return None
        await self._arrival()
        return command
