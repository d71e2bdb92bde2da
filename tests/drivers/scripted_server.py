"""A real Alpaca HTTP server on 127.0.0.1 whose one device answers what a test scripts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from obsctl.drivers.alpaca import AlpacaClient


class ScriptedServer:
    """Answers for one device's members.

    A value in ``answers`` is the reply's ``Value``; an int in ``statuses`` is an HTTP status
    sent instead (404 or 400 for a member the driver lacks); ``errors`` holds ASCOM error
    numbers to answer with HTTP 200. Every PUT is recorded in ``puts`` with its form.
    """

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}
        self.statuses: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.puts: list[tuple[str, dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        member = request.match_info["member"]
        if member in self.statuses:
            return web.Response(status=self.statuses[member], text=f"no member {member}")
        if request.method == "PUT":
            form = await request.post()
            self.puts.append((member, {k: str(v) for k, v in form.items()}))
        reply: dict[str, Any] = {"ClientTransactionID": 0, "ServerTransactionID": 1}
        if member in self.errors:
            reply |= {"ErrorNumber": self.errors[member], "ErrorMessage": "scripted"}
        else:
            reply |= {"ErrorNumber": 0, "ErrorMessage": ""}
            if request.method == "GET":
                reply["Value"] = self.answers.get(member)
        return web.json_response(reply)


@contextlib.asynccontextmanager
async def serving(server: ScriptedServer, device_type: str) -> AsyncIterator[AlpacaClient]:
    """Serve ``server`` as ``device_type``/0 for the block; yield a client of it."""
    app = web.Application()
    app.router.add_route("*", f"/api/v1/{device_type}/0/{{member}}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    client = AlpacaClient(f"127.0.0.1:{runner.addresses[0][1]}")
    try:
        yield client
    finally:
        await client.close()
        await runner.cleanup()
