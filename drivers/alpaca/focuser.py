"""`AlpacaFocuser`: the `obsctl.devices.Focuser` protocol over Alpaca (IFocuserV3/V4).

Moves are checked here before anything is sent (ASCOM lets a driver either refuse a position
beyond ``MaxStep`` or quietly go to ``MaxStep``; obsctl wants one behaviour, the refusal).
Readings a driver gets wrong are tolerated: ``Position``, ``MaxStep`` or ``MaxIncrement``
answered as an integral float or a numeric string are read as integers, a ``Temperature`` or
``StepSize`` that is not a finite number (or NotImplemented) reads as None, and a driver
without temperature compensation that refuses ``TempComp = False`` is taken as off.
"""

from __future__ import annotations

import math
from typing import Any

from obsctl.devices import FocuserInfo, FocuserStatus
from obsctl.drivers.alpaca._device import AlpacaDevice
from obsctl.errors import DeviceNotImplementedError, InvalidDeviceValueError

__all__ = ["AlpacaFocuser"]


def _whole(value: Any) -> int | None:
    """Return a whole number of steps, or None for anything else (true, 2.5, "in")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return _whole(float(value.strip()))
        except ValueError:
            return None
    return None


def _finite(value: Any) -> float | None:
    """Return a finite float, or None for a missing or non-numeric reading."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _check_steps(steps: int, name: str) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"{name} must be an int, not {steps!r}")


class AlpacaFocuser(AlpacaDevice):
    """A focuser on an Alpaca server (see `AlpacaDevice` for parameters)."""

    device_type = "focuser"

    async def _limits(self) -> tuple[bool, int, int]:
        """Read ``Absolute``, ``MaxStep`` and ``MaxIncrement``.

        Raises
        ------
        InvalidDeviceValueError
            When the driver's limits are not whole numbers of steps.
        """
        values = await self._get_all(("absolute", "maxstep", "maxincrement"))
        max_step, max_increment = _whole(values["maxstep"]), _whole(values["maxincrement"])
        if max_step is None or max_increment is None or max_step < 0 or max_increment < 0:
            raise InvalidDeviceValueError(
                f"MaxStep {values['maxstep']!r} and MaxIncrement {values['maxincrement']!r} "
                "are not step counts",
                device=self.name,
            )
        return bool(values["absolute"]), max_step, max_increment

    async def info(self) -> FocuserInfo:
        """Read the limits, ``StepSize`` (None when not implemented), ``TempCompAvailable``."""
        absolute, max_step, max_increment = await self._limits()
        values = await self._get_all((), optional=("stepsize", "tempcompavailable"))
        return FocuserInfo(
            absolute=absolute,
            max_step=max_step,
            max_increment=max_increment,
            step_size_um=_finite(values["stepsize"]),
            temp_comp_available=bool(values["tempcompavailable"]),
        )

    async def status(self) -> FocuserStatus:
        """Read ``IsMoving``, ``Position``, ``Temperature`` and ``TempComp`` concurrently.

        ``Position`` is None for a relative focuser (NotImplemented) or a reading that is
        not a whole number; ``Temperature`` None without a probe.
        """
        values = await self._get_all(
            ("ismoving",), optional=("position", "temperature", "tempcomp")
        )
        return FocuserStatus(
            position=_whole(values["position"]),
            moving=bool(values["ismoving"]),
            temperature_c=_finite(values["temperature"]),
            temp_comp=bool(values["tempcomp"]),
        )

    async def move_to(self, position: int) -> None:
        """Start ``Move`` to a position, checked against ``MaxStep`` and ``MaxIncrement``.

        Raises
        ------
        InvalidDeviceValueError
            When the position is outside 0 to ``MaxStep`` or farther than ``MaxIncrement``
            from the current position (checked here, nothing is sent), or the driver refuses.
        DeviceNotImplementedError
            For a relative focuser.
        TypeError
            When ``position`` is not an int.
        """
        _check_steps(position, "position")
        absolute, max_step, max_increment = await self._limits()
        if not absolute:
            raise DeviceNotImplementedError(
                "a relative focuser has no positions; move by steps", device=self.name
            )
        if not 0 <= position <= max_step:
            raise InvalidDeviceValueError(
                f"focuser position {position} not in 0..{max_step}", device=self.name
            )
        now = _whole(await self._get("position"))
        if now is not None and abs(position - now) > max_increment:
            raise InvalidDeviceValueError(
                f"a move from {now} to {position} is longer than MaxIncrement {max_increment}",
                device=self.name,
            )
        await self._put("move", Position=str(position))

    async def move_by(self, steps: int) -> None:
        """Start a move by ``steps`` (an absolute focuser: to its position plus ``steps``).

        Raises
        ------
        InvalidDeviceValueError
            When the move is longer than ``MaxIncrement`` or would end outside 0 to
            ``MaxStep`` (checked here), or the driver refuses it.
        TypeError
            When ``steps`` is not an int.
        """
        _check_steps(steps, "steps")
        absolute, _, max_increment = await self._limits()
        if abs(steps) > max_increment:
            raise InvalidDeviceValueError(
                f"a move of {steps} steps is longer than MaxIncrement {max_increment}",
                device=self.name,
            )
        if not absolute:
            await self._put("move", Position=str(steps))
            return
        now = _whole(await self._get("position"))
        if now is None:
            raise InvalidDeviceValueError(
                "the focuser's Position is not a step count; cannot move from it",
                device=self.name,
            )
        await self.move_to(now + steps)

    async def halt(self) -> None:
        """``Halt``."""
        await self._put("halt")

    async def set_temp_comp(self, on: bool) -> None:
        """Set ``TempComp``; switching off a focuser without compensation is a no-op.

        Raises
        ------
        DeviceNotImplementedError
            When switching on and the focuser has no compensation.
        """
        try:
            await self._put("tempcomp", TempComp="True" if on else "False")
        except DeviceNotImplementedError:
            if on:
                raise
