"""The Alpaca transport: one async HTTP client per Alpaca server, with deadlines.

Why not alpyca's ``Device._get``/``_put`` for control calls: alpyca 3.1.3 holds one
class-level lock (``Device._ctid_lock``) for the whole of every request in the process, with a
fixed 5 s timeout. A device that hangs therefore stalls every other device's calls for 5 s,
and a large image download stalls them for its whole duration (a 7.9 ms safety-monitor read
waited 1250 ms behind a 52 MB download). The safety supervisor cannot live with that, so the
drivers speak Alpaca over aiohttp here: independent connections, a deadline on every call,
ClientID and ClientTransactionID on every request, and one place (`raise_for_reply`) where
ASCOM error numbers and transport failures become obsctl errors. alpyca remains the
reference client: discovery uses it, and the interoperability tests run it unmodified against
our simulators.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Mapping
from typing import Any, Literal

import aiohttp
import orjson

from obsctl.errors import (
    DeviceBusyError,
    DeviceConnectionError,
    DeviceError,
    DeviceNotConnectedError,
    DeviceNotImplementedError,
    DeviceTimeoutError,
    InvalidDeviceValueError,
)

__all__ = ["AlpacaClient", "error_for_ascom", "raise_for_reply"]

log = logging.getLogger(__name__)

# ASCOM error numbers (Alpaca API reference, "ASCOM error numbers").
NOT_IMPLEMENTED = 0x400
INVALID_VALUE = 0x401
VALUE_NOT_SET = 0x402
NOT_CONNECTED = 0x407
PARKED = 0x408
SLAVED = 0x409
INVALID_OPERATION = 0x40B
ACTION_NOT_IMPLEMENTED = 0x40C

_ERROR_TYPES: dict[int, type[DeviceError]] = {
    NOT_IMPLEMENTED: DeviceNotImplementedError,
    ACTION_NOT_IMPLEMENTED: DeviceNotImplementedError,
    INVALID_VALUE: InvalidDeviceValueError,
    VALUE_NOT_SET: InvalidDeviceValueError,
    NOT_CONNECTED: DeviceNotConnectedError,
    PARKED: DeviceBusyError,
    SLAVED: DeviceBusyError,
    INVALID_OPERATION: DeviceBusyError,
}


def error_for_ascom(number: int, message: str, *, device: str) -> DeviceError:
    """Return the obsctl error for an ASCOM error number.

    Parameters
    ----------
    number : int
        ASCOM error number (0x400-0xFFF).
    message : str
        The device's error message.
    device : str
        Device name for the error's context.

    Returns
    -------
    DeviceError
        The typed error (not raised).
    """
    cls = _ERROR_TYPES.get(number, DeviceError)
    return cls(f"ASCOM error 0x{number:X}: {message}", device=device, ascom_error=number)


def raise_for_reply(status: int, body: bytes, *, device: str, member: str) -> Any:
    """Check one Alpaca JSON reply and return its ``Value``.

    Parameters
    ----------
    status : int
        HTTP status code.
    body : bytes
        The response body.
    device : str
        Device name for error context.
    member : str
        The Alpaca member called, for error context.

    Returns
    -------
    object
        The reply's ``Value`` (None for methods).

    Raises
    ------
    InvalidDeviceValueError
        HTTP 400: the server rejected the request's parameters.
    DeviceNotImplementedError
        HTTP 404: the server has no such device or member.
    DeviceConnectionError
        HTTP 5xx or another unexpected status.
    DeviceError
        A reply that is not Alpaca JSON, or the ASCOM error it carries (typed by number).
    """
    text = body[:300].decode("utf-8", "replace").strip()
    if status == 400:
        raise InvalidDeviceValueError(f"{member}: HTTP 400: {text}", device=device)
    if status == 404:
        raise DeviceNotImplementedError(f"{member}: HTTP 404: {text}", device=device)
    if status != 200:
        raise DeviceConnectionError(f"{member}: HTTP {status}: {text}", device=device)
    try:
        reply = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DeviceError(f"{member}: reply is not JSON: {text!r}", device=device) from exc
    if not isinstance(reply, dict):
        raise DeviceError(f"{member}: reply is not a JSON object: {text!r}", device=device)
    number = reply.get("ErrorNumber", 0)
    if number:
        raise error_for_ascom(int(number), str(reply.get("ErrorMessage", "")), device=device)
    return reply.get("Value")


class AlpacaClient:
    """Async HTTP access to one Alpaca server (``host:port``), shared by its devices.

    Every request carries ClientID and a fresh ClientTransactionID and runs under a deadline;
    requests to different devices never wait for one another.

    Parameters
    ----------
    address : str
        ``host:port`` of the Alpaca server.
    client_id : int or None
        The ClientID to send; None picks a random one per client.
    """

    def __init__(self, address: str, *, client_id: int | None = None) -> None:
        self.address = address
        self.base_url = f"http://{address}"
        self.client_id = client_id if client_id is not None else random.randint(1, 65535)
        self._transactions = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """Return the HTTP session, opening it on first use (inside the running loop)."""
        if self._session is None or self._session.closed:
            # No connection cap per host: a hung request must never make another device's
            # call wait for a free connection.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None)
            )
        return self._session

    async def close(self) -> None:
        """Close the HTTP session and its connections."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def next_transaction(self) -> int:
        """Return a new ClientTransactionID."""
        return next(self._transactions)

    def device_url(self, device_type: str, number: int, member: str) -> str:
        """Return the URL of one device member."""
        return f"{self.base_url}/api/v1/{device_type}/{number}/{member}"

    def ids(self) -> dict[str, str]:
        """Return the ClientID and a fresh ClientTransactionID as request parameters."""
        return {
            "ClientID": str(self.client_id),
            "ClientTransactionID": str(self.next_transaction()),
        }

    async def call(
        self,
        method: Literal["GET", "PUT"],
        device_type: str,
        number: int,
        member: str,
        *,
        device: str,
        timeout_s: float,
        fields: Mapping[str, str] | None = None,
    ) -> Any:
        """GET a device property, or PUT one or call a method, and return the reply's value.

        Parameters
        ----------
        method : {"GET", "PUT"}
            GET reads a property; PUT sets one or calls a method.
        device_type : str
            Alpaca device type (``camera``, ``filterwheel``, ``telescope``, ...).
        number : int
            Device number on the server.
        member : str
            Lower-case member name.
        device : str
            Device name for error context.
        timeout_s : float
            Deadline of the whole call in seconds.
        fields : mapping or None
            Extra parameters: a GET's go in the query string, a PUT's in the form body, where
            Alpaca's names are case-sensitive.

        Returns
        -------
        object
            The reply's ``Value`` (None when it has none).

        Raises
        ------
        DeviceTimeoutError, DeviceConnectionError, DeviceError
            See `raise_for_reply`.
        """
        values = {**self.ids(), **(fields or {})}
        where = "params" if method == "GET" else "data"
        url = self.device_url(device_type, number, member)
        status, body = await self.send(
            method, url, device=device, member=member, timeout_s=timeout_s, **{where: values}
        )
        return raise_for_reply(status, body, device=device, member=member)

    async def send(
        self,
        method: str,
        url: str,
        *,
        device: str,
        member: str,
        timeout_s: float,
        **kwargs: Any,
    ) -> tuple[int, bytes]:
        """Send one request under a deadline and return ``(status, body)``.

        Transport failures become `DeviceConnectionError`, a missed deadline
        `DeviceTimeoutError`.
        """
        session = self.session()
        try:
            async with asyncio.timeout(timeout_s):
                async with session.request(method, url, **kwargs) as resp:
                    body = await resp.read()
                    status = resp.status
        except TimeoutError as exc:
            raise DeviceTimeoutError(
                f"{member}: no answer within {timeout_s:g} s", device=device
            ) from exc
        except aiohttp.ClientError as exc:
            raise DeviceConnectionError(
                f"{member}: {type(exc).__name__}: {exc}", device=device
            ) from exc
        except OSError as exc:
            raise DeviceConnectionError(f"{member}: {exc}", device=device) from exc
        return status, body
