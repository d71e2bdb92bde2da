"""The quick-look data routes over real HTTP, on a real exposure log and real FITS files."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from astropy.io import fits
from yarl import URL

from obsctl.events import Event, EventBus
from obsctl.processing.display import STRETCHES
from obsctl.store.exposure_log import ExposureLog
from obsctl.web import QuickLook, add_quicklook
from obsctl.web.frames import class_column, resolve_data_file
from obsctl.web.previews import PreviewCache

from .web_helpers import NIGHT, SHAPE, STARS, make_frame, png_size


@pytest.fixture
async def site(tmp_path) -> AsyncIterator[tuple[TestClient, Path, ExposureLog, list[int]]]:
    data_dir = tmp_path / "data"
    log_db = ExposureLog(data_dir / "obsctl.sqlite")
    ids = [make_frame(data_dir, log_db, 1), make_frame(data_dir, log_db, 2, filt="R")]
    app = web.Application()
    add_quicklook(app, QuickLook(log_db=log_db, data_dir=data_dir, events=EventBus()))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, data_dir, log_db, ids
    finally:
        await client.close()
        log_db.close()


async def test_frame_info_log_and_latest(site) -> None:
    client, _, _, ids = site
    info = await (await client.get(f"/api/quicklook/frames/{ids[0]}")).json()
    assert info["shape"] == list(SHAPE) and info["image"] == "calibrated"
    assert info["wcs"]["CTYPE1"] == "RA---TAN" and info["wcs"]["CD2_2"] == 2.5e-4
    cards = {c[0]: c[1] for c in info["cards"]}
    assert cards["FILTER"] == "V" and cards["PHOTZP"] == 21.0
    assert info["catalog_count"] == 3 and info["metrics"]["star_count"] == 3
    assert info["files"]["raw"] == f"/data/raw/{NIGHT}/frame_001.fits"
    latest = await (await client.get("/api/quicklook/latest")).json()
    assert latest == {"exposure_id": ids[1]}
    rows = await (await client.get("/api/quicklook/log", params={"night": NIGHT})).json()
    assert [r["id"] for r in rows] == ids and rows[1]["filter"] == "R"
    assert rows[0]["processing"] == "done" and rows[0]["star_count"] == 3
    resp = await client.get("/api/quicklook/frames/999")
    assert resp.status == 404 and "999" in (await resp.json())["error"]
    info = await (await client.get("/api/quicklook/info")).json()
    assert "/api/quicklook/frames/{id}/preview.png" in info["routes"]
    assert info["nights"][0]["night"] == NIGHT and info["nights"][0]["frames"] == 2


async def test_preview_png_sizes_stretches_and_tiles(site) -> None:
    client, _, _, ids = site
    resp = await client.get(
        f"/api/quicklook/frames/{ids[0]}/preview.png", params={"size": 64, "stretch": "asinh"}
    )
    assert resp.status == 200 and resp.content_type == "image/png"
    assert resp.headers["X-Factor"] == "2"  # 90 px into 64: blocks of 2
    assert resp.headers["X-Region"] == "0,0,90,60"
    assert png_size(await resp.read()) == (45, 30)
    tile = await client.get(
        f"/api/quicklook/frames/{ids[0]}/preview.png",
        params={"size": 256, "x0": 40, "y0": 25, "x1": 51, "y1": 36},
    )
    assert tile.status == 200 and tile.headers["X-Region"] == "40,25,51,36"
    assert png_size(await tile.read()) == (11, 11)
    bad = await client.get(f"/api/quicklook/frames/{ids[0]}/preview.png?stretch=log")
    assert bad.status == 400 and "zscale" in (await bad.json())["error"]
    bad = await client.get(f"/api/quicklook/frames/{ids[0]}/preview.png?size=big")
    assert bad.status == 400 and "size" in (await bad.json())["error"]


async def test_pixel_values_are_physical(site) -> None:
    client, data_dir, _, ids = site
    cal = fits.getdata(data_dir / f"reduced/{NIGHT}/frame_001_cal.fits")
    reply = await (await client.get(f"/api/quicklook/frames/{ids[0]}/pixel?x=45&y=30")).json()
    assert reply["value"] == pytest.approx(float(cal[30, 45])) and reply["value"] > 4000
    assert reply["image"] == "calibrated"
    outside = await (await client.get(f"/api/quicklook/frames/{ids[0]}/pixel?x=90&y=0")).json()
    assert outside["value"] is None
    # Without its calibrated frame, the raw one (uint16 stored as int16 + BZERO) is read.
    (data_dir / f"reduced/{NIGHT}/frame_001_cal.fits").unlink()
    raw = fits.getdata(data_dir / f"raw/{NIGHT}/frame_001.fits")
    reply = await (await client.get(f"/api/quicklook/frames/{ids[0]}/pixel?x=45&y=30")).json()
    assert reply["image"] == "raw" and reply["value"] == float(raw[30, 45])


async def test_out_of_range_numbers_are_client_errors(site) -> None:
    client, _, _, ids = site
    for query in ("x=inf&y=1", "x=1e400&y=1", "x=abc&y=1"):
        reply = await client.get(f"/api/quicklook/frames/{ids[0]}/pixel?{query}")
        assert reply.status == 400, query
    huge = await client.get("/api/quicklook/frames/99999999999999999999999/sources")
    assert huge.status == 404


async def test_sources_and_their_classes_from_the_schema(site) -> None:
    client, _, log_db, ids = site
    existing = class_column(log_db)
    if existing is not None:  # the schema of a database from before the classifier
        log_db.execute(f'ALTER TABLE measurements DROP COLUMN "{existing}"')
    src = await (await client.get(f"/api/quicklook/frames/{ids[0]}/sources")).json()
    assert src["count"] == 3 and src["class_column"] is None
    assert [r[:2] for r in src["rows"]] == [list(s) for s in STARS]
    assert {r[-1] for r in src["rows"]} == {"unclassified"}
    # The classifier adds a text column (and scores); the page follows the schema.
    log_db.execute("ALTER TABLE measurements ADD COLUMN class_prob REAL")
    log_db.execute("ALTER TABLE measurements ADD COLUMN source_class TEXT")
    log_db.execute("UPDATE measurements SET source_class = 'star' WHERE mag < 16.5")
    assert class_column(log_db) == "source_class"
    src = await (await client.get(f"/api/quicklook/frames/{ids[0]}/sources")).json()
    assert src["class_column"] == "source_class"
    assert [r[-1] for r in src["rows"]] == ["star", "star", "unclassified"]


async def test_frame_files_only_from_the_data_directory(site, tmp_path) -> None:
    client, data_dir, _, _ = site
    ok = await client.get(f"/data/raw/{NIGHT}/frame_001.fits")
    assert ok.status == 200 and (await ok.read()).startswith(b"SIMPLE  =")
    assert "attachment" in ok.headers["Content-Disposition"]
    secret = tmp_path / "secret.fits"
    secret.write_bytes(b"SIMPLE  = T")
    os.symlink(secret, data_dir / "raw" / "link.fits")
    refused = [
        "/data/%2e%2e/secret.fits",  # dot segments, encoded so that no client removes them
        "/data/raw/..%2F..%2Fsecret.fits",
        "/data/%2Fetc%2Fpasswd",  # an absolute path
        "/data/raw/link.fits",  # a link pointing out of the data directory
        "/data/obsctl.sqlite",  # inside, but not a frame
        f"/data/raw/{NIGHT}/missing.fits",
    ]
    for path in refused:
        resp = await client.get(URL(path, encoded=True))
        assert resp.status == 404, path
    assert resolve_data_file(data_dir, "../secret.fits") is None
    assert resolve_data_file(data_dir, f"raw/{NIGHT}/frame_001.fits") is not None


class WatchedBus(EventBus):
    """An event bus that says when someone subscribes (the preview watcher, at start-up)."""

    def __init__(self) -> None:
        super().__init__()
        self.subscribed = asyncio.Event()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        async with super().subscribe() as queue:
            self.subscribed.set()
            yield queue


class WatchedCache(PreviewCache):
    """A preview cache that hands on the id of each frame whose previews it made ahead."""

    def __init__(self) -> None:
        super().__init__()
        self.made: asyncio.Queue[int] = asyncio.Queue()

    async def make_ahead(self, exposure_id: int, path: Path) -> None:
        await super().make_ahead(exposure_id, path)
        self.made.put_nowait(exposure_id)


async def test_one_clients_sizes_never_change_what_is_made_for_the_others(tmp_path) -> None:
    data_dir = tmp_path / "data"
    log_db = ExposureLog(data_dir / "obsctl.sqlite")
    events = WatchedBus()
    cache = WatchedCache()
    quicklook = QuickLook(log_db=log_db, data_dir=data_dir, events=events, cache=cache)
    app = web.Application()
    add_quicklook(app, quicklook)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()

    async def processed(index: int) -> tuple[int, Path]:
        eid = make_frame(data_dir, log_db, index)
        path = data_dir / f"reduced/{NIGHT}/frame_{index:03d}_cal.fits"
        events.publish("processed", exposure_id=eid, failed_stage=None)
        async with asyncio.timeout(10):
            assert await cache.made.get() == eid
        assert all(cache.has_png(eid, path, cache.size_px, s) for s in STRETCHES)
        return eid, path

    try:
        async with asyncio.timeout(10):
            await events.subscribed.wait()  # the preview watcher listens
        info = await (await client.get("/api/quicklook/info")).json()
        assert info["preview_size_px"] == cache.size_px
        first, first_path = await processed(1)
        # Another client asks for small previews in the other stretch, many sizes of them.
        for size in range(64, 64 + 20):
            url = f"/api/quicklook/frames/{first}/preview.png?size={size}&stretch=asinh"
            assert (await client.get(url)).status == 200
        # What the page asks for is still made, and the next frame is made at the same size.
        assert all(cache.has_png(first, first_path, cache.size_px, s) for s in STRETCHES)
        second, second_path = await processed(2)
        assert not cache.has_png(second, second_path, 64, "asinh")
        # A request without a size is served the shared preview.
        reply = await client.get(f"/api/quicklook/frames/{second}/preview.png")
        assert reply.status == 200 and reply.headers["X-Region"] == f"0,0,{SHAPE[1]},{SHAPE[0]}"
    finally:
        await client.close()
        log_db.close()


@pytest.mark.filterwarnings("ignore:File may have been truncated")
async def test_truncated_corrupt_or_missing_frames_are_clear_errors(site) -> None:
    client, data_dir, _, ids = site
    calibrated = data_dir / f"reduced/{NIGHT}/frame_001_cal.fits"
    calibrated.write_bytes(calibrated.read_bytes()[: 2880 + 1000])  # the header and a bit
    base = f"/api/quicklook/frames/{ids[0]}"
    for path in (
        "/preview.png",
        "/preview.png?size=64&stretch=asinh",
        "/preview.png?x0=10&y0=10&x1=20&y1=20",
        "/pixel?x=45&y=30",
    ):
        reply = await client.get(base + path)
        assert reply.status == 422, path
        error = (await reply.json())["error"]
        assert "frame_001_cal.fits" in error and "truncated" in error, path
    info = await client.get(base)  # the header is whole: the frame's facts are shown
    assert info.status == 200 and (await info.json())["shape"] == list(SHAPE)

    calibrated.write_bytes(b"not a FITS file at all " * 200)
    for path in ("", "/preview.png", "/pixel?x=1&y=1"):
        reply = await client.get(base + path)
        assert reply.status == 422, path
        assert "not a readable FITS file" in (await reply.json())["error"], path

    calibrated.unlink()  # the raw frame is shown instead; then it too is gone
    (data_dir / f"raw/{NIGHT}/frame_001.fits").unlink()
    for path in ("", "/preview.png", "/pixel?x=1&y=1"):
        reply = await client.get(base + path)
        assert reply.status == 404, path
        assert "frame_001.fits: the file is not on disk" in (await reply.json())["error"], path


async def test_the_log_is_paged(site) -> None:
    client, data_dir, log_db, ids = site
    ids += [make_frame(data_dir, log_db, index) for index in range(3, 8)]
    rows, url, pages = [], f"/api/quicklook/log?night={NIGHT}&limit=3", 0
    while url:
        reply = await client.get(URL(url, encoded=True))
        assert reply.status == 200
        page = await reply.json()
        assert len(page) <= 3
        rows += page
        pages += 1
        url = reply.links.get("next", {}).get("url")
        url = None if url is None else str(URL(str(url)).relative())
    assert pages == 3 and [r["id"] for r in rows] == ids
    whole = await (await client.get("/api/quicklook/log", params={"night": NIGHT})).json()
    assert [r["id"] for r in whole] == ids  # fewer than the default limit: one page
    for bad in ("0", "1001", "-1", "1.5", "1e3", "Infinity", "99999999999999999999999", "٣"):
        reply = await client.get("/api/quicklook/log", params={"limit": bad})
        assert reply.status == 400, bad
        assert "limit" in (await reply.json())["error"]
