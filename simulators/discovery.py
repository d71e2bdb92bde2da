"""ASCOM Alpaca discovery responder (UDP).

A client sends a datagram beginning ``alpacadiscovery1`` (the protocol version is the last
character); the responder answers the sender with ``{"AlpacaPort": N}``. Anything else is
ignored. It binds to 127.0.0.1 by default, so only local clients (unicast) find it; bind to
``0.0.0.0`` to answer broadcasts on the network.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import orjson

__all__ = ["DISCOVERY_PREFIX", "DiscoveryResponder"]

log = logging.getLogger(__name__)

DISCOVERY_PREFIX = b"alpacadiscovery1"


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, reply: bytes) -> None:
        self._reply = reply
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if not data.startswith(DISCOVERY_PREFIX) or self._transport is None:
            return
        log.debug("alpaca discovery request from %s", addr)
        self._transport.sendto(self._reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.warning("alpaca discovery socket error: %s", exc)


class DiscoveryResponder:
    """Answers Alpaca discovery datagrams with the HTTP port.

    Parameters
    ----------
    alpaca_port : int
        The Alpaca HTTP port to announce.
    host : str
        Address to bind.
    port : int
        UDP port (32227 is the Alpaca standard; 0 picks a free one).
    """

    def __init__(self, alpaca_port: int, *, host: str = "127.0.0.1", port: int = 32227) -> None:
        self.alpaca_port = alpaca_port
        self.host = host
        self._requested_port = port
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def port(self) -> int:
        """The bound UDP port (valid after `start`)."""
        if self._transport is None:
            raise RuntimeError("discovery responder is not running")
        sockname = self._transport.get_extra_info("sockname")
        return int(sockname[1])

    async def start(self) -> None:
        """Bind the UDP socket and start answering.

        Raises
        ------
        OSError
            When the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        reply = orjson.dumps({"AlpacaPort": self.alpaca_port})
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(reply), local_addr=(self.host, self._requested_port)
        )
        self._transport = transport
        log.info("alpaca discovery on udp://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Close the socket."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
