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
    DeviceParkedError,
    DeviceTimeoutError,
    InvalidDeviceValueError,
)

__all__ = [
    "ASCOM_ERRORS",
    "HTTP_ERRORS",
    "AlpacaClient",
    "ascom_number",
    "error_for_ascom",
    "error_for_status",
    "raise_for_reply",
]

log = logging.getLogger(__name__)

# ASCOM error numbers (Alpaca API reference, "ASCOM error numbers"; alpyca's exceptions).
NOT_IMPLEMENTED = 0x400
INVALID_VALUE = 0x401
VALUE_NOT_SET = 0x402
NOT_CONNECTED = 0x407
PARKED = 0x408
SLAVED = 0x409
INVALID_OPERATION = 0x40B
ACTION_NOT_IMPLEMENTED = 0x40C
OPERATION_CANCELLED = 0x40E
# Windows ASCOM drivers add this to the Alpaca number (0x80040401 for 0x401); servers that
# pass a COM driver's error through sometimes send the whole HResult, signed or not.
_COM_ERROR_BASE = 0x80040000

#: The one table: what each ASCOM error number means to obsctl. 0x40C (ActionNotImplemented)
#: is only meaningful from ``Action``; elsewhere servers send it where 0x40B is meant
#: (see `error_for_ascom`). Numbers 0x500-0xFFF are the driver's own (alpyca's
#: DriverException), as is any other number: a plain `DeviceError`.
ASCOM_ERRORS: dict[int, type[DeviceError]] = {
    NOT_IMPLEMENTED: DeviceNotImplementedError,
    INVALID_VALUE: InvalidDeviceValueError,
    VALUE_NOT_SET: InvalidDeviceValueError,
    NOT_CONNECTED: DeviceNotConnectedError,
    PARKED: DeviceParkedError,
    SLAVED: DeviceBusyError,
    INVALID_OPERATION: DeviceBusyError,
    ACTION_NOT_IMPLEMENTED: DeviceNotImplementedError,
    # Another client's abort (or a stop) ended the operation: the device is idle again.
    OPERATION_CANCELLED: DeviceBusyError,
}

#: The same table for HTTP statuses other than 200. Any other 4xx is a request the server
#: refused (`InvalidDeviceValueError`: the same request fails again, so it is never retried
#: as a lost connection); any 5xx is the server's trouble (`DeviceConnectionError`: retry,
#: reconnect).
HTTP_ERRORS: dict[int, type[DeviceError]] = {
    # Unknown device type, number or member (the spec allows 400 or 404 for these).
    404: DeviceNotImplementedError,
    # A read-only property written (or a method read): no such member for this verb.
    405: DeviceNotImplementedError,
    # The server gave up waiting for the request: transport trouble, not a bad request.
    408: DeviceTimeoutError,
    # Rate limited: the request was fine, the server is busy; wait and retry.
    429: DeviceBusyError,
}


def ascom_number(raw: object) -> int:
    """Return an ASCOM error number as Alpaca defines it (0 for none).

    Tolerates a COM HResult (``0x80040401`` or its signed form) in place of the Alpaca
    number, and a number sent as a string; anything unreadable is returned as 0x4FF
    (UnspecifiedError), so that an error is never mistaken for success.

    Parameters
    ----------
    raw : object
        The reply's ``ErrorNumber``.

    Returns
    -------
    int
        The Alpaca error number.
    """
    if raw is None or isinstance(raw, bool):
        return 0x4FF if raw else 0
    try:
        if isinstance(raw, str):
            number = int(raw.strip(), 0)
        elif isinstance(raw, int | float):
            number = int(raw)
        else:
            return 0x4FF
    except (ValueError, OverflowError):
        return 0x4FF
    unsigned = number & 0xFFFFFFFF
    if unsigned & 0xFFFFF000 == _COM_ERROR_BASE:
        return unsigned & 0xFFF
    return number


def error_for_ascom(number: int, message: str, *, device: str, member: str = "") -> DeviceError:
    """Return the obsctl error for an ASCOM error number (the table `ASCOM_ERRORS`).

    Parameters
    ----------
    number : int
        ASCOM error number (0x400-0xFFF).
    message : str
        The device's error message.
    device : str
        Device name for the error's context.
    member : str
        The member called; 0x40C from any member but ``action`` is read as 0x40B.

    Returns
    -------
    DeviceError
        The typed error (not raised).
    """
    if number == ACTION_NOT_IMPLEMENTED and member and member != "action":
        cls: type[DeviceError] = DeviceBusyError
    else:
        cls = ASCOM_ERRORS.get(number, DeviceError)
    where = f"{member}: " if member else ""
    return cls(f"{where}ASCOM error 0x{number:X}: {message}", device=device, ascom_error=number)


def error_for_status(status: int, text: str, *, device: str, member: str) -> DeviceError:
    """Return the obsctl error for an HTTP status other than 200 (the table `HTTP_ERRORS`).

    Parameters
    ----------
    status : int
        The HTTP status.
    text : str
        The start of the reply body, for the message.
    device, member : str
        Context for the message.

    Returns
    -------
    DeviceError
        The typed error (not raised).
    """
    cls = HTTP_ERRORS.get(status)
    if cls is None:
        if 400 <= status < 500:
            cls = InvalidDeviceValueError
        elif status >= 500:
            cls = DeviceConnectionError
        else:  # 1xx, 3xx: nothing an Alpaca server should send
            cls = DeviceError
    return cls(f"{member}: HTTP {status}: {text}", device=device)


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
        HTTP 4xx (400, 422, ...): the server refused the request as it was.
    DeviceNotImplementedError
        HTTP 404 or 405: the server has no such device or member (for this verb).
    DeviceConnectionError
        HTTP 5xx.
    DeviceError
        A reply that is not Alpaca JSON, or the ASCOM error it carries (typed by
        `error_for_ascom`).
    """
    text = body[:300].decode("utf-8", "replace").strip()
    # 2xx other than 200 is not Alpaca, but its JSON is read as alpyca does (200-203).
    if not 200 <= status <= 203:
        raise error_for_status(status, text, device=device, member=member)
    try:
        reply = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DeviceError(f"{member}: reply is not JSON: {text!r}", device=device) from exc
    if not isinstance(reply, dict):
        raise DeviceError(f"{member}: reply is not a JSON object: {text!r}", device=device)
    number = ascom_number(reply.get("ErrorNumber", 0))
    if number:
        message = str(reply.get("ErrorMessage", ""))
        raise error_for_ascom(number, message, device=device, member=member)
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
