"""`AlpacaCoverCalibrator`: the `obsctl.devices.CoverCalibrator` protocol over Alpaca.

ICoverCalibratorV2 added ``CoverMoving`` and ``CalibratorChanging``; older drivers answer
NotImplemented, HTTP 404 or (servers before Platform 7) HTTP 400 for them, and the status then
reads them from the states: a cover that is `CoverState.MOVING` moves, a panel that is
`CalibratorState.NOT_READY` changes. A state number outside ASCOM's enumeration reads as
UNKNOWN, and a device without a panel (``MaxBrightness``, ``Brightness`` NotImplemented) has
brightness 0.
"""

from __future__ import annotations

import asyncio
from typing import Any

from obsctl.devices import (
    CalibratorState,
    CoverCalibratorInfo,
    CoverCalibratorStatus,
    CoverState,
)
from obsctl.drivers.alpaca._device import AlpacaDevice
from obsctl.errors import DeviceNotImplementedError, InvalidDeviceValueError

__all__ = ["AlpacaCoverCalibrator"]


def _state_number(value: Any) -> int | None:
    """Return an integral state number, or None for anything else (true, 2.5, "open")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _cover(value: Any) -> CoverState:
    number = _state_number(value)
    try:
        return CoverState(-1 if number is None else number)
    except ValueError:
        return CoverState.UNKNOWN  # nothing ASCOM defines: the device does not know


def _calibrator(value: Any) -> CalibratorState:
    number = _state_number(value)
    try:
        return CalibratorState(-1 if number is None else number)
    except ValueError:
        return CalibratorState.UNKNOWN


def _steps(value: Any) -> int:
    """Return a brightness in steps; 0 when absent or not a whole number."""
    number = _state_number(value)
    return 0 if number is None else number


class AlpacaCoverCalibrator(AlpacaDevice):
    """A flat panel and dust cover on an Alpaca server (see `AlpacaDevice` for parameters)."""

    device_type = "covercalibrator"

    async def _get_v2(self, member: str) -> Any:
        """Read a member ICoverCalibratorV2 added; None when the driver predates it."""
        try:
            return await self._get(member)
        except (DeviceNotImplementedError, InvalidDeviceValueError):
            return None

    async def info(self) -> CoverCalibratorInfo:
        """Read ``CoverState``, ``CalibratorState`` and ``MaxBrightness`` (0 without a panel)."""
        values = await self._get_all(("coverstate", "calibratorstate"), optional=("maxbrightness",))
        return CoverCalibratorInfo(
            max_brightness=_steps(values["maxbrightness"]),
            has_cover=_cover(values["coverstate"]) != CoverState.NOT_PRESENT,
            has_calibrator=_calibrator(values["calibratorstate"]) != CalibratorState.NOT_PRESENT,
        )

    async def status(self) -> CoverCalibratorStatus:
        """Read the states, the brightness and (V2) the motion flags concurrently."""
        values, moving, changing = await asyncio.gather(
            self._get_all(("coverstate", "calibratorstate"), optional=("brightness",)),
            self._get_v2("covermoving"),
            self._get_v2("calibratorchanging"),
        )
        cover = _cover(values["coverstate"])
        calibrator = _calibrator(values["calibratorstate"])
        return CoverCalibratorStatus(
            cover=cover,
            calibrator=calibrator,
            brightness=_steps(values["brightness"]),
            cover_moving=cover == CoverState.MOVING if moving is None else bool(moving),
            calibrator_changing=(
                calibrator == CalibratorState.NOT_READY if changing is None else bool(changing)
            ),
        )

    async def open_cover(self) -> None:
        """Start ``OpenCover``."""
        await self._put("opencover")

    async def close_cover(self) -> None:
        """Start ``CloseCover``."""
        await self._put("closecover")

    async def halt_cover(self) -> None:
        """``HaltCover``."""
        await self._put("haltcover")

    async def calibrator_on(self, brightness: int) -> None:
        """Start ``CalibratorOn`` at a brightness, checked against ``MaxBrightness`` first.

        Raises
        ------
        InvalidDeviceValueError
            When the brightness is outside 0 to ``MaxBrightness`` (checked here, nothing is
            sent) or the device refuses it.
        DeviceNotImplementedError
            When there is no panel.
        TypeError
            When ``brightness`` is not an int.
        """
        if isinstance(brightness, bool) or not isinstance(brightness, int):
            raise TypeError(f"brightness must be an int, not {brightness!r}")
        top = _state_number(await self._get("maxbrightness"))
        if brightness < 0 or (top is not None and brightness > top):
            raise InvalidDeviceValueError(
                f"brightness {brightness} not in 0..{top}", device=self.name
            )
        await self._put("calibratoron", Brightness=str(brightness))

    async def calibrator_off(self) -> None:
        """Start ``CalibratorOff``."""
        await self._put("calibratoroff")
