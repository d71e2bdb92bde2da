"""A small TAP server on 127.0.0.1 that replays recorded answers (tests/data/catalogs/).

It serves ``<service>/sync`` (GET or POST, the TAP 1.1 synchronous endpoint pyvo uses) for
these services, by the first path segment:

- ``/gaia/tap`` answers from ``gaia_dr3.vot``; ``/vizier/tap`` from ``apass_dr9.vot`` or
  ``atlas_refcat2.vot`` by the table in the query's FROM;
- ``/broken/tap`` answers HTTP 500; ``/refusing/tap`` a TAP error document (HTTP 400 with
  ``QUERY_STATUS`` ``ERROR``, as DALI asks); ``/stalling/tap`` waits `stall_s` before
  answering (for client timeouts).

A recorded answer is cut to the cone and the magnitude limits of the ADQL (its ``CIRCLE``
and ``<=``/``>=`` conditions, the only ones the providers write) and to MAXREC: a cut at
MAXREC is marked by a second ``QUERY_STATUS`` ``OVERFLOW`` after the table, as TAP 1.1
section 2.7.4 asks. Every request is recorded in `requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from aiohttp import web
from astropy.io.votable import parse
from astropy.io.votable.tree import Info, VOTableFile

DATA = Path(__file__).resolve().parents[1] / "data" / "catalogs"

_CIRCLE = re.compile(
    r"CIRCLE\('ICRS',\s*([-+\d.eE]+),\s*([-+\d.eE]+),\s*([-+\d.eE]+)\)", re.IGNORECASE
)
_POINT = re.compile(r"POINT\('ICRS',\s*([^,]+),\s*([^)]+)\)", re.IGNORECASE)
_LIMIT = re.compile(r"([\w.\"']+)\s*(<=|>=)\s*([-+\d.eE]+)")
_FROM = re.compile(r"FROM\s+(\"[^\"]+\"|[\w.]+)", re.IGNORECASE)

VOTABLE_TYPE = "application/x-votable+xml"


@dataclass
class Request:
    """One request the server received."""

    service: str
    query: str
    maxrec: int | None


@dataclass
class TapReplay:
    """The running server: its base URL and what it was asked."""

    base_url: str
    requests: list[Request] = field(default_factory=list)
    stall_s: float = 5.0

    def url(self, service: str) -> str:
        """The TAP base URL of a service (``gaia``, ``vizier``, ``broken``, ...)."""
        return f"{self.base_url}/{service}/tap"


def _column(name: str) -> str:
    """A column reference of the ADQL without its table alias and quotes."""
    return name.split(".")[-1].strip().strip('"')


def _answer(file: Path, query: str, maxrec: int | None) -> bytes:
    """The recorded answer cut to the query's cone, magnitude limits and MAXREC."""
    votable: VOTableFile = parse(str(file), verify="ignore")
    resource = votable.resources[0]
    table = resource.tables[0]
    data = table.array
    keep = np.ones(len(data), dtype=bool)
    circle, point = _CIRCLE.search(query), _POINT.search(query)
    if circle and point:
        ra0, dec0, radius = (float(v) for v in circle.groups())
        ra = np.radians(np.asarray(data[_column(point.group(1))], dtype=float))
        dec = np.radians(np.asarray(data[_column(point.group(2))], dtype=float))
        d0, r0 = np.radians(dec0), np.radians(ra0)
        hav = np.sin((dec - d0) / 2) ** 2 + np.cos(d0) * np.cos(dec) * np.sin((ra - r0) / 2) ** 2
        keep &= 2 * np.arcsin(np.sqrt(np.clip(hav, 0, 1))) <= np.radians(radius)
    where = query.split("WHERE", 1)[-1]
    for name, op, value in _LIMIT.findall(where):
        column = np.ma.filled(np.ma.asarray(data[_column(name)], dtype=float), np.nan)
        keep &= (column <= float(value)) if op == "<=" else (column >= float(value))
    rows = np.flatnonzero(keep)
    overflow = maxrec is not None and len(rows) > maxrec
    if overflow:
        rows = rows[:maxrec]
    table.array = data[rows]
    if overflow:
        # After the table: readers take the last QUERY_STATUS.
        resource.infos.append(Info(name="QUERY_STATUS", value="OVERFLOW"))
    out = io.BytesIO()
    votable.to_xml(out)
    return out.getvalue()


def _app(replay: TapReplay) -> web.Application:
    async def sync(request: web.Request) -> web.StreamResponse:
        service = request.match_info["service"]
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        query = params.get("QUERY", "")
        maxrec = int(params["MAXREC"]) if "MAXREC" in params else None
        replay.requests.append(Request(service, query, maxrec))
        if service == "broken":
            return web.Response(status=500, text="Internal Server Error: database offline")
        if service == "refusing":
            return web.Response(
                status=400, body=(DATA / "tap_error.vot").read_bytes(), content_type=VOTABLE_TYPE
            )
        if service == "stalling":
            await asyncio.sleep(replay.stall_s)
            return web.Response(status=500, text="too late")
        if service == "gaia":
            file = DATA / "gaia_dr3.vot"
        elif service == "vizier":
            table = _FROM.search(query)
            name = table.group(1).strip('"') if table else ""
            files = {"II/336/apass9": "apass_dr9.vot", "J/ApJ/867/105/refcat2": "atlas_refcat2.vot"}
            if name not in files:
                return web.Response(status=400, text=f"unknown table {name!r}")
            file = DATA / files[name]
        else:
            raise web.HTTPNotFound()
        body = await asyncio.to_thread(_answer, file, query, maxrec)
        return web.Response(body=body, content_type=VOTABLE_TYPE)

    app = web.Application()
    app.router.add_route("*", "/{service}/tap/sync", sync)
    return app


@contextlib.asynccontextmanager
async def tap_replay(*, stall_s: float = 5.0) -> AsyncIterator[TapReplay]:
    """Serve the recorded answers on a free port of 127.0.0.1 until the block ends."""
    runner: web.AppRunner | None = None
    replay = TapReplay(base_url="", stall_s=stall_s)
    try:
        runner = web.AppRunner(_app(replay), shutdown_timeout=1.0)
        await asyncio.wait_for(runner.setup(), 10)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await asyncio.wait_for(site.start(), 10)
        port = runner.addresses[0][1]
        replay.base_url = f"http://127.0.0.1:{port}"
        yield replay
    finally:
        if runner is not None:
            await asyncio.wait_for(runner.cleanup(), 10)
