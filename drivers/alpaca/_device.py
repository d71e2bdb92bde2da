"""What every Alpaca driver shares: naming, connection handling and deadlines."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar, Literal

from obsctl.drivers.alpaca._http import AlpacaClient
from obsctl.errors import (
    DeviceError,
    DeviceNotConnectedError,
    DeviceNotImplementedError,
    DeviceTimeoutError,
    InvalidDeviceValueError,
)

log = logging.getLogger(__name__)

_CONNECT_POLL_S = 0.05


@dataclass(eq=False, repr=False)
class AlpacaDevice:
    """Base of the Alpaca drivers: one device on one Alpaca server.

    Parameters
    ----------
    name : str
        The device's configured name (used in errors and logs).
    client : AlpacaClient
        The server's client, shared with the server's other devices.
    device_number : int
        Device number on the server.
    timeout_s : float
        Deadline of one control call in seconds.
    connect_timeout_s : float
        Deadline of connecting in seconds.
    """

    device_type: ClassVar[str] = ""

    name: str
    client: AlpacaClient
    device_number: int = 0
    _: KW_ONLY
    timeout_s: float = 5.0
    connect_timeout_s: float = 30.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.client.address}, #{self.device_number})"

    async def _get(self, member: str, **params: str) -> Any:
        return await self._call("GET", member, params)

    async def _put(self, member: str, **data: str) -> Any:
        return await self._call("PUT", member, data)

    async def _call(
        self, method: Literal["GET", "PUT"], member: str, fields: dict[str, str]
    ) -> Any:
        return await self.client.call(
            method,
            self.device_type,
            self.device_number,
            member,
            device=self.name,
            timeout_s=self.timeout_s,
            fields=fields,
        )

    async def _get_optional(self, member: str) -> Any:
        """Read a property that a device may not implement; None when it does not."""
        try:
            return await self._get(member)
        except DeviceNotImplementedError:
            return None

    async def _get_all(
        self, members: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """Read properties concurrently; those in ``optional`` are None when not implemented."""
        values = await asyncio.gather(
            *(self._get(m) for m in members), *(self._get_optional(m) for m in optional)
        )
        return dict(zip(members + optional, values, strict=True))

    async def connect(self) -> None:
        """Connect, by Platform 7 ``Connect``/``Connecting`` or else ``Connected = True``.

        Raises
        ------
        DeviceTimeoutError
            When the device is not connected within ``connect_timeout_s``.
        DeviceConnectionError
            When the server cannot be reached.
        """
        # Platform 6 servers lack Connect/Connecting; they answer 404, 400 or 422 for them.
        try:
            await self._put("connect")
        except (DeviceNotImplementedError, InvalidDeviceValueError):
            try:
                await self._put("connected", Connected="True")
            except DeviceNotImplementedError as exc:
                # Every device implements Connected: the server has no such device (some
                # answer 404, some HTTP 200 with 0x400). It may appear later: reconnect.
                raise DeviceNotConnectedError(
                    f"the Alpaca server at {self.client.address} has no "
                    f"{self.device_type} #{self.device_number} "
                    f"({str(exc).removeprefix(self.name + ': ')}); check address and "
                    "device_number",
                    device=self.name,
                    ascom_error=exc.ascom_error,
                ) from exc
        deadline = time.monotonic() + self.connect_timeout_s
        while True:
            try:
                connecting = bool(await self._get("connecting"))
            except (DeviceNotImplementedError, InvalidDeviceValueError):
                connecting = False
            if not connecting and await self.is_connected():
                log.info("%s connected", self.name)
                return
            if time.monotonic() > deadline:
                raise DeviceTimeoutError(
                    f"not connected after {self.connect_timeout_s:g} s", device=self.name
                )
            await asyncio.sleep(_CONNECT_POLL_S)

    async def disconnect(self) -> None:
        """Disconnect; an unreachable device is logged, not raised."""
        try:
            try:
                await self._put("disconnect")
            except (DeviceNotImplementedError, InvalidDeviceValueError):
                await self._put("connected", Connected="False")
        except DeviceError as exc:
            log.warning("%s: disconnect failed: %s", self.name, exc)

    async def is_connected(self) -> bool:
        """Return the device's ``Connected`` property."""
        return bool(await self._get("connected"))
