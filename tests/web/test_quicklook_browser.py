"""The quick-look page in a real headless Chromium, against the daemon on simulators.

One daemon and one page serve the whole module: the page is opened before the first frame
exists, then a short sequence runs and the page must follow it without a reload. Screenshots
go to ``artifacts/quicklook/`` in the repository (git-ignored).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from playwright.async_api import Page

from obsctl.daemon import Daemon
from obsctl.store.datadir import DataDir

from ..daemon_helpers import daemon_config, running_daemon, standard_sequence

pytestmark = pytest.mark.asyncio(loop_scope="module")

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "quicklook"
PIPELINE = {
    "enabled": True,
    "workers": 1,
    "reference_catalog": "synthetic",
}
# A rich 512 px field, as in the pipeline tests: enough stars for astrometry and a zero point.
SIMULATOR = {
    "camera": {"width_px": 512, "height_px": 512, "readout_time_s": 0.5},
    "sky": {"star_density_per_deg2": 20000.0},
}
LIGHTS = 2  # the sequence: one V and one R light frame, two darks, two biases


@dataclass
class Session:
    """The shared daemon and page, the page's console errors, and the night's frames."""

    daemon: Daemon
    page: Page
    errors: list[str]
    data_dir: Path
    requests: list[str] = field(default_factory=list)  # the URLs the page asked for
    posted: asyncio.Task[None] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def db(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(DataDir(self.data_dir).log_path)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    async def run_night(self) -> None:
        """Run the sequence (once) and wait until it is stored and processed."""
        if self.posted is None:
            self.posted = asyncio.create_task(self._run())
        await self.posted

    async def _run(self) -> None:
        body = json.loads(standard_sequence(lights=1).model_dump_json())
        url = self.daemon.api_url
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/api/sequences", json=body) as resp:
                assert resp.status == 201
                sid = (await resp.json())["id"]
            async with asyncio.timeout(90):
                while True:
                    seq = self.db("SELECT state FROM sequences WHERE id = ?", (sid,))[0][0]
                    done = self.db("SELECT COUNT(*) FROM processing WHERE state = 'done'")[0][0]
                    if seq == "done" and done == LIGHTS:
                        return
                    await asyncio.sleep(0.05)

    async def screenshot(self, name: str, *, selector: str | None = None) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        if selector is None:
            await self.page.screenshot(path=str(path), full_page=True)
        else:
            await self.page.locator(selector).screenshot(path=str(path))
        print(f"screenshot: {path}")
        return path


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def session(tmp_path_factory, browser) -> AsyncIterator[Session]:
    data_dir = tmp_path_factory.mktemp("quicklook") / "data"
    config = daemon_config(data_dir, pipeline=PIPELINE, simulator=SIMULATOR)
    async with running_daemon(config) as daemon:
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        try:
            reply = await page.goto(f"{daemon.api_url}/")
            assert reply is not None and reply.status == 200
            await page.wait_for_selector("body[data-ready]", timeout=15_000)
            yield Session(daemon, page, errors, data_dir, requests)
        finally:
            await page.close()  # before the daemon stops: its end is no page error


async def test_page_loads_without_console_errors(session: Session) -> None:
    page = session.page
    await page.wait_for_selector("#connection.on", timeout=10_000)  # the event stream is open
    await page.wait_for_function("document.querySelector('#state').textContent.includes('SAFE')")
    assert await page.title() == "obsctl quick-look"
    assert "waiting for the first frame" in await page.inner_text("#viewer-empty")
    assert "no light curves yet" in await page.inner_text("#lightcurves")
    assert await page.get_attribute("#trend-fwhm_arcsec", "data-points") == "0"
    await session.screenshot("01-before-the-first-frame.png")
    assert session.errors == []


async def test_new_frame_appears_live_with_its_sources(session: Session, capsys) -> None:
    page = session.page
    # Survives only if the page is never reloaded; the observer records each trend point.
    await page.evaluate(
        """() => {
        window.__sameDocument = true;
        window.__starPoints = [];
        const canvas = document.querySelector('#trend-star_count');
        new MutationObserver(() => window.__starPoints.push(Number(canvas.dataset.points)))
            .observe(canvas, {attributes: true, attributeFilter: ['data-points']});
    }"""
    )
    await session.run_night()
    await page.wait_for_function(f"window.quicklook.shown.length >= {LIGHTS}", timeout=30_000)
    assert await page.evaluate("window.__sameDocument === true")
    shown = await page.evaluate("window.quicklook.shown")
    lights = [r[0] for r in session.db("SELECT id FROM exposures WHERE image_type = 'LIGHT'")]
    assert [s["exposure_id"] for s in shown] == lights

    # The overlay of the frame on screen: one marker per source in the database and catalog.
    last = lights[-1]
    await page.wait_for_function(
        f"document.querySelector('#overlay-canvas').dataset.exposure === '{last}'"
    )
    drawn = int(await page.get_attribute("#overlay-canvas", "data-count") or -1)
    in_db = session.db("SELECT COUNT(*) FROM measurements WHERE exposure_id = ?", (last,))[0][0]
    catalog = session.db("SELECT catalog_path FROM processing WHERE exposure_id = ?", (last,))
    in_catalog = len(Table.read(session.data_dir / catalog[0][0]))
    assert drawn == in_db == in_catalog > 0
    assert f"{in_db} sources" in await page.inner_text("#legend")

    # The star-count trend gained its points one by one, live.
    await page.wait_for_function(
        f"document.querySelector('#trend-star_count').dataset.points === '{LIGHTS}'"
    )
    history = await page.evaluate("window.__starPoints")
    assert history[0] == 0 or history[0] == 1
    assert sorted(set(history)) == list(range(history[0], LIGHTS + 1))
    # The other trends: one point per frame that has the metric (a zero point may fail).
    for key in ("fwhm_arcsec", "background", "zero_point", "limiting_mag"):
        expected = session.db(f"SELECT COUNT({key}) FROM frame_metrics")[0][0]
        assert await page.get_attribute(f"#trend-{key}", "data-points") == str(expected)
    assert await page.get_attribute("#trend-airmass", "data-points") == str(LIGHTS)

    # The page asks for each frame's preview at the size the server made ahead.
    made = (await page.evaluate("window.quicklook.info"))["preview_size_px"]
    previews = [u for u in session.requests if "/preview.png" in u and "x0=" not in u]
    assert len(previews) >= LIGHTS and all(f"size={made}" in u for u in previews)

    latencies = [s["latency_ms"] for s in shown]
    assert all(0 <= ms < 60_000 for ms in latencies)  # same machine clock: never negative
    with capsys.disabled():
        print(
            "\nquick-look latency, processed event -> frame shown in Chromium "
            f"({SIMULATOR['camera']['width_px']} px frames): "
            + ", ".join(f"#{s['exposure_id']} {s['latency_ms']:.0f} ms" for s in shown)
        )
    # The log table follows too: the last frame's row shows its processing result.
    await page.wait_for_function(
        f"(document.querySelector(\"#log tbody tr[data-id='{last}']\") || {{}})"
        ".textContent?.includes('done')"
    )
    await session.screenshot("02-live-frame-with-sources.png")
    assert session.errors == []


async def test_cursor_shows_pixel_value_and_sky_position(session: Session) -> None:
    await session.run_night()
    page = session.page
    frame = await page.evaluate("window.quicklook.frame")
    eid = frame["exposure_id"]
    cal = session.db("SELECT calibrated_path FROM processing WHERE exposure_id = ?", (eid,))[0][0]
    with fits.open(session.data_dir / cal) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float64)
        wcs = WCS(hdul[0].header)
    x, y = 200, 300
    await page.locator("#viewer").scroll_into_view_if_needed()
    screen = await page.evaluate(
        f"""() => {{
        const v = window.quicklook.view, r = document.querySelector('#viewer')
            .getBoundingClientRect();
        return [r.left + r.width / 2 + ({x} - v.cx) * v.scale,
                r.top + r.height / 2 - ({y} - v.cy) * v.scale];
    }}"""
    )
    await page.mouse.move(*screen)
    await page.wait_for_function("document.querySelector('#cursor').textContent.includes('value')")
    text = await page.inner_text("#cursor")
    assert f"x {x + 1}  y {y + 1}" in text
    value = float(re.search(r"value (\S+)", text).group(1))
    assert value == pytest.approx(data[y, x], rel=1e-3, abs=1e-2)
    ra, dec = (float(v) for v in re.search(r"\((\S+)°, (\S+)°\)", text).groups())
    ra_ref, dec_ref = wcs.all_pix2world(x, y, 0)
    assert ra == pytest.approx(float(ra_ref), abs=2e-5) and dec == pytest.approx(
        float(dec_ref), abs=2e-5
    )
    # The page's TAN-SIP evaluation against astropy, with real distortion terms.
    keys = {
        "CTYPE1": "RA---TAN-SIP",
        "CTYPE2": "DEC--TAN-SIP",
        "CRVAL1": 12.11,
        "CRVAL2": 85.255,
        "CRPIX1": 256.5,
        "CRPIX2": 256.5,
        "CD1_1": -2.7e-4,
        "CD1_2": 1.0e-5,
        "CD2_1": 1.2e-5,
        "CD2_2": 2.7e-4,
        "A_ORDER": 2,
        "B_ORDER": 2,
        "A_2_0": 2e-6,
        "A_1_1": -1e-6,
        "B_0_2": 3e-6,
    }
    reference = WCS(fits.Header(keys))
    assert reference.sip is not None
    pixels = [(0, 0), (511, 0), (100, 400), (511, 511)]
    page_sky = await page.evaluate(
        "([keys, pixels]) => pixels.map(([x, y]) => window.ObsWcs.fromKeys(keys).pixToSky(x, y))",
        [keys, pixels],
    )
    for (px, py), (pra, pdec) in zip(pixels, page_sky, strict=True):
        rra, rdec = reference.all_pix2world(px, py, 0)
        assert abs((pra - float(rra) + 180) % 360 - 180) * np.cos(np.radians(pdec)) < 1e-7
        assert pdec == pytest.approx(float(rdec), abs=1e-7)


async def test_log_table_filters_and_opens_frames(session: Session) -> None:
    await session.run_night()
    page = session.page
    total = session.db("SELECT COUNT(*) FROM exposures")[0][0]
    visible = "document.querySelectorAll('#log tbody tr:not([hidden])').length"
    await page.wait_for_function(f"{visible} === {total}")
    await page.select_option("#log-band", "R")
    r_frames = session.db("SELECT COUNT(*) FROM exposures WHERE filter = 'R'")[0][0]
    assert await page.evaluate(visible) == r_frames
    await page.select_option("#log-band", "")
    await page.fill("#log-filter", "dark")
    darks = session.db("SELECT COUNT(*) FROM exposures WHERE image_type = 'DARK'")[0][0]
    assert await page.evaluate(visible) == darks == 2
    assert await page.inner_text("#log-count") == f"2 of {total}"
    await session.screenshot("03-log-filtered.png", selector="#log-panel")
    await page.fill("#log-filter", "")
    first = session.db("SELECT MIN(id) FROM exposures WHERE image_type = 'LIGHT'")[0][0]
    await page.click(f"#log tbody tr[data-id='{first}']")
    await page.wait_for_function(
        f"document.querySelector('#overlay-canvas').dataset.exposure === '{first}'"
    )
    assert not await page.is_checked("#follow")  # a frame opened by hand stops following
    assert (await page.inner_text("#frame-title")).startswith(f"#{first} ")
    assert await page.get_attribute(f"#log tbody tr[data-id='{first}']", "class") == "current"
    assert session.errors == []


async def test_stretch_zoom_and_downloads(session: Session) -> None:
    await session.run_night()
    page = session.page
    loads = await page.evaluate("window.quicklook.loads")
    await page.select_option("#stretch", "asinh")
    await page.wait_for_function(f"window.quicklook.loads > {loads}")
    # Double-clicks zoom in around the brightest source of the frame (the log test scrolled).
    await page.locator("#viewer").scroll_into_view_if_needed()
    for _ in range(3):
        spot = await page.evaluate(
            """() => {
            const q = window.quicklook, r = document.querySelector('#viewer')
                .getBoundingClientRect();
            const mag = (s) => (s[2] === null ? 99 : s[2]);
            const [x, y] = q.sources.rows.reduce((a, b) => (mag(b) < mag(a) ? b : a));
            return [r.left + r.width / 2 + (x - q.view.cx) * q.view.scale,
                    r.top + r.height / 2 - (y - q.view.cy) * q.view.scale];
        }"""
        )
        await page.mouse.dblclick(*spot)
    # Magnified, the page fetches a sharp tile of the visible part of the frame.
    await page.wait_for_function("window.quicklook.tile !== null", timeout=10_000)
    tile = await page.evaluate("window.quicklook.tile.region")
    assert tile[2] - tile[0] < 512 and tile[3] - tile[1] < 512
    await session.screenshot("04-asinh-zoomed.png", selector="#viewer-panel")
    href = await page.get_attribute("#downloads a", "href")
    assert href is not None and href.startswith("/data/raw/")
    ok = await page.request.get(f"{session.daemon.api_url}{href}")
    assert ok.status == 200 and (await ok.body()).startswith(b"SIMPLE  =")
    assert session.errors == []


async def test_path_traversal_is_refused(session: Session) -> None:
    request = session.page.request
    base = session.daemon.api_url
    for path in (
        "/data/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/data/raw/..%2F..%2F..%2Fetc%2Fpasswd",
        "/data/%2Fetc%2Fpasswd",
        f"/data/{DataDir('.').log_path.name}",
    ):
        resp = await request.get(base + path)
        assert resp.status == 404, path
        assert b"root:" not in await resp.body()
