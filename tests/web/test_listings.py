"""Listings come a page at a time; odd queries, ids and bodies are client errors, never a 500.

One daemon serves the module, on a data directory filled beforehand with more rows than a
page holds: sequences, exposures, failures, frame metrics and alerts in the real SQLite log.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from yarl import URL

from obsctl.daemon import Daemon
from obsctl.store.datadir import DataDir
from obsctl.store.exposure_log import ExposureRecord, FailureRecord

from ..daemon_helpers import daemon_config, running_daemon, standard_sequence
from .web_helpers import NIGHT, make_frame

pytestmark = pytest.mark.asyncio(loop_scope="module")

SEQUENCES, EXPOSURES, FAILURES, METRICS, ALERTS = 45, 230, 120, 150, 130
OTHER_NIGHT = "2026-01-02"


@dataclass
class Site:
    daemon: Daemon
    http: aiohttp.ClientSession
    frame: int  # an exposure with its files, for the frame routes

    @property
    def url(self) -> str:
        return str(self.daemon.api_url)

    async def pages(self, path: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        """Return every page of a listing, following its ``Link: rel="next"`` headers."""
        pages: list[list[Any]] = []
        url: URL | None = URL(self.url + path).update_query(params or {})
        while url is not None:
            async with self.http.get(url) as resp:
                assert resp.status == 200, url
                pages.append(await resp.json())
                following = resp.links.get("next")
            url = None if following is None else URL(str(following["url"]))
            assert len(pages) < 100, "the next links go round in circles"
        return pages


def fill(data: DataDir) -> int:
    """Write more rows than a page holds into every table a listing reads."""
    data.create()
    db = data.open_log()
    try:
        frame = make_frame(data.root, db, 1)  # night NIGHT, a processed light frame
        definition = standard_sequence(lights=1).model_dump_json()
        for i in range(SEQUENCES):
            db.add_sequence(f"old-{i}", definition, state="done")
        for i in range(EXPOSURES - 1):
            db.add_exposure(
                ExposureRecord(
                    night=NIGHT if i % 2 else OTHER_NIGHT,
                    file_path=f"raw/gone/{i:04d}.fits",
                    image_type="DARK" if i % 3 else "LIGHT",
                    exposure_s=0.1 * i,
                    date_obs=f"{NIGHT}T23:00:00",
                    mjd_start=61042.0 + i * 1e-4,
                    mjd_mid=61042.0 + i * 1e-4,
                    bin_x=1,
                    bin_y=1,
                    filter="V",
                )
            )
        for i in range(FAILURES):
            db.add_failure(FailureRecord("expose", "DeviceTimeoutError", f"failure {i}", "retry"))
        # Zero points rising through the night: the best (the reference) is the last.
        db.executemany(
            "INSERT OR REPLACE INTO frame_metrics (exposure_id, zero_point) VALUES (?, ?)",
            [(eid, 20.0 + eid / 1000) for eid in range(1, METRICS + 1)],
        )
        db.executemany(
            "INSERT INTO alerts (created_utc, kind, target, message, dedup_key) "
            "VALUES ('2026-01-01T23:00:00', 'brighten', 'STAR', ?, ?)",
            [(f"alert {i}", f"key-{i}") for i in range(ALERTS)],
        )
    finally:
        db.close()
    return frame


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def site(tmp_path_factory) -> AsyncIterator[Site]:
    data = DataDir(tmp_path_factory.mktemp("listings") / "data")
    frame = fill(data)
    async with (
        running_daemon(daemon_config(data.root)) as daemon,
        aiohttp.ClientSession() as http,
    ):
        yield Site(daemon, http, frame)


def ids(pages: list[list[Any]], key: str = "id") -> list[int]:
    return [row[key] for page in pages for row in page]


async def test_every_listing_comes_a_page_at_a_time(site: Site) -> None:
    sequences = await site.pages("/api/sequences")
    assert [len(p) for p in sequences] == [20, 20, 5]  # definitions are long: 20 a page
    assert ids(sequences) == list(range(1, SEQUENCES + 1))
    assert sequences[0][0]["definition"]["name"] == "test-sequence"

    exposures = await site.pages("/api/exposures")
    assert [len(p) for p in exposures] == [100, 100, 30]
    assert ids(exposures) == list(range(1, EXPOSURES + 1))
    darks = await site.pages("/api/exposures", {"type": "dark", "night": NIGHT, "limit": 7})
    assert all(len(p) <= 7 for p in darks) and len(darks) > 1
    assert all(r["image_type"] == "DARK" and r["night"] == NIGHT for p in darks for r in p)

    failures = await site.pages("/api/failures", {"limit": 50})
    assert [len(p) for p in failures] == [50, 50, 20]
    assert ids(failures) == list(range(1, FAILURES + 1))

    metrics = await site.pages("/api/metrics", {"limit": 1000})
    assert ids(metrics, "exposure_id") == list(range(1, METRICS + 1))
    paged = await site.pages("/api/metrics", {"limit": 40})
    # Each page's transparency is against the best zero point of the night, not of the page.
    assert [r["transparency"] for p in paged for r in p] == [
        r["transparency"] for p in metrics for r in p
    ]

    alerts = await site.pages("/api/alerts")
    assert [len(p) for p in alerts] == [100, 30]
    assert ids(alerts) == list(range(ALERTS, 0, -1))  # newest first
    async with site.http.get(f"{site.url}/api/alerts", params={"limit": 5}) as resp:
        assert ids([await resp.json()]) == list(range(ALERTS, ALERTS - 5, -1))

    log = await site.pages("/api/quicklook/log", {"night": NIGHT, "limit": 1000})
    assert len(log) == 1 and ids(log) == [
        r["id"] for p in exposures for r in p if r["night"] == NIGHT
    ]
    assert len(await site.pages("/api/quicklook/log")) == 3  # every night, 100 a page

    async with site.http.get(f"{site.url}/api/sequences", params={"offset": 10**12}) as resp:
        assert resp.status == 200 and await resp.json() == [] and "Link" not in resp.headers


ODD_VALUES = (
    "",
    "Infinity",
    "-Infinity",
    "NaN",
    "1e400",
    "-1",
    "0",
    "99999999999999999999999",
    "1" * 5000,  # past Python's limit on the digits of int()
    "1_000",
    " 5",
    "٣",  # an Arabic-Indic three
    "ñ🌙",
    "\x00",
    "' OR 1=1 --",
    "\ufffd",
)
GET_ROUTES = {
    "/api/status": (),
    "/api/sequences": ("limit", "offset"),
    "/api/exposures": ("limit", "offset", "night", "target", "filter", "type"),
    "/api/failures": ("limit", "offset"),
    "/api/metrics": ("limit", "offset", "night"),
    "/api/alerts": ("limit", "offset"),
    "/api/lightcurves": ("limit", "offset"),
    "/api/lightcurve": ("target",),
    "/api/quicklook/info": (),
    "/api/quicklook/latest": (),
    "/api/quicklook/log": ("limit", "offset", "night"),
    "/api/quicklook/frames/{frame}": (),
    "/api/quicklook/frames/{frame}/sources": (),
    "/api/quicklook/frames/{frame}/pixel": ("x", "y"),
    "/api/quicklook/frames/{frame}/preview.png": ("size", "stretch", "x0", "y0", "x1", "y1"),
}


async def test_odd_query_strings_are_never_a_server_error(site: Site) -> None:
    for route, names in GET_ROUTES.items():
        path = site.url + route.format(frame=site.frame)
        for name in names:
            for value in ODD_VALUES:
                query = {name: value}
                if name in ("x", "y"):
                    query = {"x": "1", "y": "1", name: value}
                if name in ("x0", "y0", "x1", "y1"):
                    query = {"x0": "0", "y0": "0", "x1": "10", "y1": "10", name: value}
                async with site.http.get(path, params=query) as resp:
                    assert resp.status < 500, (route, query)
                    if resp.status >= 400:
                        assert (await resp.json())["error"], (route, query)
        # The same parameter twice, and parameters nobody asked for.
        async with site.http.get(path + "?limit=1&limit=99999999999999999999&zzz=1") as resp:
            assert resp.status < 500, route
    for name, value in (("limit", "99999999999999999999999"), ("offset", "-1"), ("limit", "0")):
        async with site.http.get(f"{site.url}/api/exposures", params={name: value}) as resp:
            assert resp.status == 400
            assert name in (await resp.json())["error"]


async def test_out_of_range_ids_are_not_found(site: Site) -> None:
    for raw in ("99999999999999999999999", "9223372036854775808", "0", "-1", "1e3", "٣", "x"):
        async with site.http.post(f"{site.url}/api/sequences/{raw}/stop", json={}) as resp:
            assert resp.status == 404, raw
            assert "no sequence" in (await resp.json())["error"]
        for route in ("", "/sources", "/pixel?x=1&y=1", "/preview.png"):
            async with site.http.get(f"{site.url}/api/quicklook/frames/{raw}{route}") as resp:
                assert resp.status == 404, (raw, route)
                assert "no exposure" in (await resp.json())["error"]
    async with site.http.post(f"{site.url}/api/sequences/1/stop", json={}) as resp:
        assert resp.status == 404  # done long ago: nothing to stop
    async with site.http.get(f"{site.url}/api/no/such/route") as resp:
        assert resp.status == 404 and (await resp.json())["error"]
    async with site.http.delete(f"{site.url}/api/status", json={}) as resp:
        assert resp.status == 405 and (await resp.json())["error"]
        assert "GET" in resp.headers["Allow"]


async def test_bodies_must_be_standard_json(site: Site) -> None:
    good = json.dumps(json.loads(standard_sequence(lights=1).model_dump_json()))
    before = len(site.daemon.state.log_db.sequences())
    named = {
        "NaN": good.replace('"exposure_s": 1.0', '"exposure_s": NaN', 1),
        "Infinity": good.replace('"exposure_s": 1.0', '"exposure_s": Infinity', 1),
        "-Infinity": good.replace('"dec_deg": 30.0', '"dec_deg": -Infinity', 1),
        "1e400": good.replace('"exposure_s": 1.0', '"exposure_s": 1e400', 1),
    }
    for token, body in named.items():
        assert body != good, token
        async with site.http.post(
            f"{site.url}/api/sequences",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 400, token
            error = (await resp.json())["error"]
            assert "not standard JSON" in error and token in error, error
    for body in (
        b"",
        b"   ",
        b"{",
        b"[" * 100_000,  # deeper than any parser recurses
        good.replace('"test-sequence"', '"\\ud800"').encode(),  # a lone surrogate
        good.replace("test-sequence", "caf\xe9").encode("latin-1"),  # not UTF-8
        b"[1, 2]",
        b'"a sequence"',
        b"null",
    ):
        async with site.http.post(
            f"{site.url}/api/sequences",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 400, body[:40]
            assert (await resp.json())["error"], body[:40]
    too_big = io.BytesIO(b'{"name": "' + b"x" * 2_000_000 + b'"}')
    async with site.http.post(
        f"{site.url}/api/sequences", data=too_big, headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 413
        assert "body size" in (await resp.json())["error"]
    assert len(site.daemon.state.log_db.sequences()) == before
