"""The simulators' quirks on the wire, and alpyca (the reference client) against them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import numpy as np
import pytest
from alpaca.camera import Camera
from alpaca.exceptions import AlpacaRequestException, NotImplementedException
from alpaca.telescope import EquatorialCoordinateType, Telescope

from obsctl.config import SimulatorConfig, SiteConfig
from obsctl.simulators.alpaca_server import AlpacaServer
from obsctl.simulators.observatory import SimulatedObservatory
from obsctl.simulators.quirks import ALL_QUIRKS, Quirks


@pytest.fixture
async def quirky(sim_config, site, telescope, clock) -> AsyncIterator[AlpacaServer]:
    """A server with every quirk on (times at UTC-1)."""
    observatory = SimulatedObservatory.from_config(sim_config, site, telescope, clock)
    server = AlpacaServer(observatory, port=0, quirks=Quirks.all(utc_offset_h=-1))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **fields: str
) -> tuple[int, object]:
    kwargs = {"params": fields} if method == "GET" else {"data": fields}
    async with http.request(method, url, **kwargs) as resp:
        ctype = resp.headers.get("Content-Type", "")
        body = await resp.json() if "json" in ctype else await resp.text()
        return resp.status, body


def com(number: int) -> int:
    return (0x80040000 | number) - (1 << 32)


async def test_every_quirk_on_the_wire(quirky: AlpacaServer) -> None:
    api = f"{quirky.url}/api/v1"
    async with aiohttp.ClientSession() as http:
        # missing_device_200 (+ com_error_numbers): HTTP 200, 0x400 as an HResult.
        status, body = await call(http, "GET", f"{api}/telescope/7/connected")
        assert status == 200 and body["ErrorNumber"] == com(0x400)
        # unknown_member_404: a Platform 6 server; not-implemented members are 404 too.
        assert (await call(http, "PUT", f"{api}/camera/0/connect"))[0] == 404
        assert (await call(http, "GET", f"{api}/camera/0/devicestate"))[0] == 404
        status, body = await call(
            http, "PUT", f"{api}/camera/0/connected", Connected="True", ClientTransactionID="9"
        )
        # transaction_id_zero
        assert status == 200 and body["ClientTransactionID"] == 0
        assert body["ServerTransactionID"] == 0
        assert (await call(http, "GET", f"{api}/camera/0/gains"))[0] == 404
        # status_422: a FastAPI-style validation reply naming the parameter.
        status, body = await call(http, "PUT", f"{api}/camera/0/binx", BinX="two")
        assert status == 422 and body["detail"][0]["loc"] == ["body", "BinX"]
        # invalid_value_400: a refused value is an HTTP error, not 0x401.
        status, _ = await call(http, "PUT", f"{api}/camera/0/binx", BinX="99")
        assert status == 400
        # action_not_implemented (+ com_error_numbers): 0x40C where 0x40B is meant.
        status, body = await call(http, "GET", f"{api}/camera/0/imagearray")
        assert status == 200 and body["ErrorNumber"] == com(0x40C)
        # timestamp_utc_offset: local time at UTC-1 with its offset.
        await call(http, "PUT", f"{api}/telescope/0/connected", Connected="True")
        _, body = await call(http, "GET", f"{api}/telescope/0/utcdate")
        text = body["Value"]
        assert text.endswith("-01:00")
        sent = datetime.fromisoformat(text[:26] + text[27:])
        truth = quirky.observatory.clock.now()
        assert abs(sent - truth) < timedelta(minutes=1)
        # equatorial_other
        _, body = await call(http, "GET", f"{api}/telescope/0/equatorialsystem")
        assert body["Value"] == 0
        # The management API still says who the server is.
        _, body = await call(http, "GET", f"{quirky.url}/management/v1/description")
        assert body["Value"]["ServerName"] == "obsctl simulators"


async def test_clean_server_follows_the_spec(sims) -> None:
    api = f"{sims.url}/api/v1"
    async with aiohttp.ClientSession() as http:
        assert (await call(http, "GET", f"{api}/telescope/7/connected"))[0] == 404
        status, body = await call(http, "PUT", f"{api}/camera/0/connect", ClientTransactionID="9")
        assert status == 200 and body["ClientTransactionID"] == 9
        assert body["ServerTransactionID"] > 0
        status, body = await call(http, "GET", f"{api}/camera/0/gains")
        assert status == 200 and body["ErrorNumber"] == 0x400
        assert (await call(http, "PUT", f"{api}/camera/0/binx", BinX="two"))[0] == 400
        status, body = await call(http, "PUT", f"{api}/camera/0/binx", BinX="99")
        assert status == 200 and body["ErrorNumber"] == 0x401
        _, body = await call(http, "GET", f"{api}/camera/0/imagearray")
        assert body["ErrorNumber"] == 0x40B
        await call(http, "PUT", f"{api}/telescope/0/connect")
        _, body = await call(http, "GET", f"{api}/telescope/0/utcdate")
        assert body["Value"].endswith("Z") and len(body["Value"]) == 28
        _, body = await call(http, "GET", f"{api}/telescope/0/equatorialsystem")
        assert body["Value"] == 2


def test_quirks_come_from_the_config() -> None:
    site = SiteConfig(name="T", latitude_deg=0.0, longitude_deg=-75.0)
    quirks = Quirks.from_config(SimulatorConfig(quirks=("status_422", "equatorial_other")), site)
    assert quirks.flags == {"status_422", "equatorial_other"}
    assert quirks.utc_offset_h == -5
    assert "transaction_id_zero" not in quirks
    assert Quirks.all().flags == set(ALL_QUIRKS)
    when = datetime(2026, 11, 25, 21, 30, 5, 123456, tzinfo=UTC)
    assert Quirks().timestamp(when) == "2026-11-25T21:30:05.1234560"
    assert (
        Quirks(frozenset({"timestamp_utc_offset"}), utc_offset_h=-5).timestamp(when)
        == "2026-11-25T16:30:05.1234560-05:00"
    )


def alpyca_on_quirks(address: str) -> dict[str, object]:
    """What alpyca does against a server with every quirk the spec leaves room for."""
    out: dict[str, object] = {}
    cam = Camera(address, 0)
    cam.Connected = True  # Connect() is a Platform 7 member this server lacks
    cam.StartExposure(1.0, True)
    deadline = time.monotonic() + 10
    while not cam.ImageReady:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    out["image"] = np.array(cam.ImageArray).T
    out["start"] = cam.LastExposureStartTime
    try:
        cam.BinX = 99
    except AlpacaRequestException as exc:
        out["binx"] = exc.number
    scope = Telescope(address, 0)
    scope.Connected = True
    out["system"] = scope.EquatorialSystem
    out["utc"] = scope.UTCDate
    try:
        Telescope(address, 5).Connected = True
    except NotImplementedException:
        out["missing"] = "NotImplementedException"
    cam.Connected = False
    return out


async def test_alpyca_against_quirks_the_spec_allows(sim_config, site, telescope, clock) -> None:
    # Not com_error_numbers: HResults are no Alpaca numbers, and alpyca rightly does not
    # map them.
    flags = frozenset(q for q in ALL_QUIRKS if q != "com_error_numbers")
    observatory = SimulatedObservatory.from_config(sim_config, site, telescope, clock)
    server = AlpacaServer(observatory, port=0, quirks=Quirks(flags, utc_offset_h=-1))
    await server.start()
    try:
        out = await asyncio.to_thread(alpyca_on_quirks, f"127.0.0.1:{server.port}")
    finally:
        await server.stop()
    np.testing.assert_array_equal(out["image"], observatory.camera.last_image)
    assert str(out["start"]).endswith("-01:00")
    assert out["binx"] == 400
    assert out["system"] == EquatorialCoordinateType.equOther
    assert abs(out["utc"] - clock.now()) < timedelta(minutes=1)
    assert out["missing"] == "NotImplementedException"
