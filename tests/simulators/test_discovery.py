"""Alpaca UDP discovery, by unicast to 127.0.0.1."""

from __future__ import annotations

import asyncio
import json

from obsctl.clock import ScaledClock
from obsctl.config import SimulatorConfig, SiteConfig, TelescopeConfig
from obsctl.simulators import DiscoveryResponder, running_simulators

SITE = SiteConfig(name="Test site", latitude_deg=48.0, longitude_deg=11.0)
TELESCOPE = TelescopeConfig(focal_length_mm=800.0, aperture_mm=200.0)


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.replies.put_nowait(data)


async def ask(port: int, message: bytes, wait_s: float) -> bytes | None:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        _Client, remote_addr=("127.0.0.1", port)
    )
    try:
        transport.sendto(message)
        try:
            return await asyncio.wait_for(client.replies.get(), wait_s)
        except TimeoutError:
            return None
    finally:
        transport.close()


async def test_discovery_reports_alpaca_port() -> None:
    sim = SimulatorConfig(port=0, discovery_port=None)
    async with running_simulators(
        sim, SITE, TELESCOPE, clock=ScaledClock(100.0), discovery_port=0
    ) as running:
        assert running.discovery_port is not None and running.discovery_port > 0
        reply = await ask(running.discovery_port, b"alpacadiscovery1", 2.0)
        assert reply is not None
        assert json.loads(reply) == {"AlpacaPort": running.port}


async def test_discovery_ignores_other_datagrams() -> None:
    responder = DiscoveryResponder(4321, port=0)
    await responder.start()
    try:
        assert await ask(responder.port, b"hello", 0.2) is None
        assert await ask(responder.port, b"alpacadiscovery1", 2.0) == b'{"AlpacaPort":4321}'
    finally:
        await responder.stop()


async def test_no_discovery_when_not_configured() -> None:
    sim = SimulatorConfig(port=0, discovery_port=None)
    async with running_simulators(sim, SITE, TELESCOPE, clock=ScaledClock(100.0)) as running:
        assert running.discovery_port is None
        assert running.url == f"http://127.0.0.1:{running.port}"
