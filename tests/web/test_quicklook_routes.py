"""The quick-look data routes over real HTTP, on a real exposure log and real FITS files."""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from astropy.io import fits
from astropy.table import Table
from yarl import URL

from obsctl.events import EventBus
from obsctl.store.exposure_log import ExposureLog, ExposureRecord
from obsctl.store.fitsfile import write_fits_atomic
from obsctl.web import QuickLook, add_quicklook
from obsctl.web.frames import class_column, resolve_data_file

NIGHT = "2026-01-01"
SHAPE = (60, 90)  # ny, nx
# Three stars at known pixels (0-based x, y) on a 1000 ADU sky.
STARS = [(10.0, 12.0), (45.0, 30.0), (80.0, 50.0)]


def wcs_header() -> fits.Header:
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 30.0
    h["CRPIX1"], h["CRPIX2"] = 45.5, 30.5
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -2.5e-4, 0.0, 0.0, 2.5e-4
    return h


def make_frame(data_dir: Path, log_db: ExposureLog, index: int, *, filt: str = "V") -> int:
    rng = np.random.default_rng(index)
    raw = rng.normal(1000.0, 5.0, SHAPE)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    for x, y in STARS:
        raw += 5000.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.0)
    rel = f"raw/{NIGHT}/frame_{index:03d}.fits"
    header = wcs_header()
    header["OBJECT"], header["FILTER"], header["EXPTIME"] = "Field", filt, 10.0
    write_fits_atomic(data_dir / rel, np.round(raw).astype(np.uint16), header)
    eid = log_db.add_exposure(
        ExposureRecord(
            night=NIGHT,
            file_path=rel,
            image_type="LIGHT",
            exposure_s=10.0,
            date_obs=f"{NIGHT}T22:00:{index:02d}",
            mjd_start=61041.9 + index * 1e-3,
            mjd_mid=61041.9 + index * 1e-3,
            bin_x=1,
            bin_y=1,
            target="Field",
            filter=filt,
            airmass=1.1,
        )
    )
    cal = f"reduced/{NIGHT}/frame_{index:03d}_cal.fits"
    cat = f"reduced/{NIGHT}/frame_{index:03d}_cat.fits"
    header["PHOTZP"] = (21.0, "[mag] zero point")
    write_fits_atomic(data_dir / cal, (raw - 1000.0).astype(np.float32), header, durable=False)
    Table({"x": [s[0] for s in STARS], "y": [s[1] for s in STARS]}).write(data_dir / cat)
    log_db.execute(
        "INSERT INTO processing (exposure_id, state, attempts, calibrated_path, catalog_path, "
        "updated_utc) VALUES (?, 'done', 1, ?, ?, 'now')",
        (eid, cal, cat),
    )
    log_db.execute(
        "INSERT INTO frame_metrics (exposure_id, fwhm_arcsec, star_count, zero_point) "
        "VALUES (?, 2.0, 3, 21.0)",
        (eid,),
    )
    log_db.executemany(
        "INSERT INTO measurements (exposure_id, x, y, mag, fwhm_px) VALUES (?, ?, ?, ?, 2.4)",
        [(eid, x, y, 15.0 + i) for i, (x, y) in enumerate(STARS)],
    )
    return eid


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


def png_size(blob: bytes) -> tuple[int, int]:
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", blob[16:24])


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


async def test_new_frame_preview_is_made_ahead(tmp_path) -> None:
    data_dir = tmp_path / "data"
    log_db = ExposureLog(data_dir / "obsctl.sqlite")
    events = EventBus()
    quicklook = QuickLook(log_db=log_db, data_dir=data_dir, events=events)
    app = web.Application()
    add_quicklook(app, quicklook)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        await asyncio.sleep(0.05)  # the watcher subscribes
        eid = make_frame(data_dir, log_db, 1)
        events.publish("processed", exposure_id=eid, failed_stage=None)
        async with asyncio.timeout(10):
            while not quicklook.cache._png:
                await asyncio.sleep(0.01)
        ((key, _),) = quicklook.cache._png.items()
        assert key[0] == eid and key[-2:] == (quicklook.cache.last_size_px, "zscale")
    finally:
        await client.close()
        log_db.close()
