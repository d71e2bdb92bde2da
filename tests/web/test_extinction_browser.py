"""The night's extinction fit: its route, and its panel on the page in a real headless Chromium.

The night is synthetic, with known extinction and colour terms per filter
(tests/processing/test_extinction.py), logged as processed frames with their calibration
stars; the fit is made by `refit_night` as the pipeline runner makes it. One frame with a
real FITS file is the page's latest frame. Screenshots go to ``artifacts/quicklook/``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Page

from obsctl.daemon import Daemon
from obsctl.pipeline.nightfit import refit_night
from obsctl.store.datadir import DataDir
from obsctl.store.exposure_log import ExposureLog

from ..daemon_helpers import daemon_config, running_daemon
from ..processing.test_extinction import TRUTH
from ..store.test_exposure_log import log_night
from .web_helpers import NIGHT, make_frame

pytestmark = pytest.mark.asyncio(loop_scope="module")

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "quicklook"
FRAMES = 20  # per filter


@dataclass
class Session:
    daemon: Daemon
    page: Page
    errors: list[str]
    log_db: ExposureLog


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def session(tmp_path_factory, browser) -> AsyncIterator[Session]:
    data_dir = tmp_path_factory.mktemp("extinction") / "data"
    log_db = DataDir(data_dir).open_log()
    log_night(log_db, NIGHT, frames=FRAMES, stars=40)
    make_frame(data_dir, log_db, 1)  # the latest frame: the page opens its night
    refit_night(log_db, NIGHT)
    config = daemon_config(data_dir, pipeline={"enabled": False})
    try:
        async with running_daemon(config) as daemon:
            page = await browser.new_page(viewport={"width": 1400, "height": 1400})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
            try:
                reply = await page.goto(f"{daemon.api_url}/")
                assert reply is not None and reply.status == 200
                await page.wait_for_selector("body[data-ready]", timeout=15_000)
                yield Session(daemon, page, errors, log_db)
            finally:
                await page.close()
    finally:
        log_db.close()


async def test_extinction_route_gives_the_fit_and_its_frames(session: Session) -> None:
    request = session.page.request
    base = session.daemon.api_url
    reply = await request.get(f"{base}/api/extinction?night={NIGHT}")
    assert reply.status == 200
    body = await reply.json()
    assert body["night"] == NIGHT
    fits = {f["filter"]: f for f in body["filters"]}
    assert sorted(fits) == sorted(TRUTH)
    for filt, truth in TRUTH.items():
        assert fits[filt]["k"] == pytest.approx(truth["k"], abs=0.01)
        assert fits[filt]["colour_term"] == pytest.approx(-truth["c"], abs=0.01)
        assert fits[filt]["photometric"] == 1 and fits[filt]["mode"] == "all-sky"
    assert len(body["frames"]) == FRAMES * len(TRUTH)
    assert {"exposure_id", "airmass", "zero_point", "residual", "used"} <= set(body["frames"][0])
    # A night without a fit: empty, not an error (the page asks for every night).
    empty = await (await request.get(f"{base}/api/extinction?night=2020-01-01")).json()
    assert empty == {"night": "2020-01-01", "filters": [], "frames": []}


async def test_extinction_route_refuses_hostile_nights(session: Session) -> None:
    request = session.page.request
    base = session.daemon.api_url
    for query in (
        "",
        "?night=",
        "?night=2026-01-01'%20OR%201=1--",
        "?night=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-01-01",  # full-width digits
        "?night=2026-01-01%00",
        "?night=../../etc",
        "?night=" + "9" * 5000,
        "?night=%ED%A0%80",  # a lone surrogate, undecodable
    ):
        reply = await request.get(f"{base}/api/extinction{query}")
        assert reply.status == 400, query[:40]
        assert "night" in (await reply.json())["error"], query[:40]
    info = await (await request.get(f"{base}/api/quicklook/info")).json()
    assert "/api/extinction" in info["routes"]


async def test_panel_plots_zero_points_against_airmass_with_the_fitted_lines(
    session: Session,
) -> None:
    page = session.page
    stored = {r["filter"]: r for r in session.log_db.night_fits(NIGHT)}
    canvas = "#extinction-plot"
    await page.wait_for_function(
        f"document.querySelector('{canvas}').dataset.points === '{FRAMES * len(TRUTH)}'"
    )
    assert await page.get_attribute(canvas, "data-lines") == str(len(TRUTH))
    residuals = await page.get_attribute("#extinction-residuals", "data-points")
    assert residuals == str(FRAMES * len(TRUTH))  # every filter all-sky: every frame
    rows = page.locator("#extinction-fits tbody tr")
    assert await rows.count() == len(TRUTH)
    for filt, row in stored.items():
        tr = page.locator(f"#extinction-fits tbody tr[data-filter='{filt}']")
        assert await tr.get_attribute("data-mode") == "all-sky"
        k = await tr.locator("td[data-key='k']").inner_text()
        assert k.startswith(f"{row['k']:.3f} ± ")
        colour = await tr.locator("td[data-key='colour_term']").inner_text()
        assert colour.startswith(f"{row['colour_term']:.3f}")
        assert "photometric" in await tr.inner_text()
        assert "not photometric" not in await tr.inner_text()
        assert await tr.locator("td[data-key='frames']").inner_text() == (
            f"{row['n_frames_used']}/{FRAMES}"
        )
    # The plotted points are the stored zero points, at their airmass.
    drawn = await page.evaluate(
        f"document.querySelector('{canvas}')._drawn.map((d) => [d.p.id, d.p.x, d.p.y])"
    )
    frames = {f["exposure_id"]: f for f in session.log_db.night_fit_frames(NIGHT)}
    assert len(drawn) == len(frames)
    for eid, x, y in drawn:
        assert x == pytest.approx(frames[eid]["airmass"])
        assert y == pytest.approx(frames[eid]["zero_point"])
    await page.locator("#extinction-panel").scroll_into_view_if_needed()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.locator("#extinction-panel").screenshot(path=str(ARTIFACTS / "10-extinction.png"))
    assert session.errors == []


async def test_panel_follows_a_refit_live(session: Session) -> None:
    page = session.page
    await page.evaluate("window.__sameDocument = true")
    # Clouds come: the V frames of the night are refitted as a cloudy night.
    log_night(
        session.log_db,
        NIGHT,
        filters=("V",),
        frames=FRAMES,
        stars=40,
        clouds=0.6,
        cloudy_fraction=0.8,
        seed=50,
        first_frame=FRAMES,
    )
    refit_night(session.log_db, NIGHT)
    (v_fit,) = [r for r in session.log_db.night_fits(NIGHT) if r["filter"] == "V"]
    assert v_fit["photometric"] == 0
    session.daemon.state.events.publish("nightfit", night=NIGHT, filters={})
    tr = "#extinction-fits tbody tr[data-filter='V']"
    await page.wait_for_function(
        f"(document.querySelector(\"{tr}\") || {{}}).dataset?.mode === 'differential'"
    )
    assert "not photometric" in await page.inner_text(tr)
    assert await page.inner_text(f"{tr} td[data-key='k']") == "—"
    assert await page.inner_text(f"{tr} td[data-key='frames']") == str(2 * FRAMES)
    note = await page.inner_text("#extinction-notes li[data-filter='V']")
    assert "not photometric" in note and "frames off it" in note
    assert await page.get_attribute("#extinction-plot", "data-lines") == str(len(TRUTH) - 1)
    residuals = await page.get_attribute("#extinction-residuals", "data-points")
    assert residuals == str(FRAMES * (len(TRUTH) - 1))  # V has no line now
    assert await page.evaluate("window.__sameDocument === true")
    await page.locator("#extinction-panel").screenshot(
        path=str(ARTIFACTS / "11-extinction-cloudy.png")
    )
    assert session.errors == []
