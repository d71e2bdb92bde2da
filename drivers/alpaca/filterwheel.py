"""`AlpacaFilterWheel`: the `obsctl.devices.FilterWheel` protocol over Alpaca (IFilterWheelV3)."""

from __future__ import annotations

from obsctl.drivers.alpaca._device import AlpacaDevice

__all__ = ["AlpacaFilterWheel"]


class AlpacaFilterWheel(AlpacaDevice):
    """A filter wheel on an Alpaca server (see `AlpacaDevice` for parameters)."""

    device_type = "filterwheel"

    async def names(self) -> list[str]:
        """Return the filter names (``Names``)."""
        return [str(n) for n in await self._get("names")]

    async def focus_offsets(self) -> list[int]:
        """Return the focus offsets in focuser steps (``FocusOffsets``)."""
        return [int(n) for n in await self._get("focusoffsets")]

    async def position(self) -> int | None:
        """Return the slot, or None while moving (``Position`` = -1)."""
        position = int(await self._get("position"))
        return None if position < 0 else position

    async def move(self, position: int) -> None:
        """Start moving to a slot (``Position`` PUT) and return at once."""
        await self._put("position", Position=str(int(position)))
