"""The autofocus panel in a real headless Chromium: a run's V-curve, the night's runs, live.

The runs are the daemon's rows (`FocusRun.row`, fitted by `fit_focus_curve`) over
noise-free points of a known V, written to the daemon's SQLite log; a new run is published
as the daemon publishes it (a ``focus`` event with the row's fields). The truth for the
drawn curve is that V. Screenshots go to ``artifacts/quicklook/``.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Page

from obsctl.daemon import Daemon
from obsctl.store.datadir import DataDir
from obsctl.store.exposure_log import ExposureLog

from ..daemon_helpers import daemon_config, running_daemon
from .web_helpers import NIGHT, focus_row, make_frame, v_curve

pytestmark = pytest.mark.asyncio(loop_scope="module")

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "quicklook"
POSITIONS = [29_850, 29_900, 29_950, 30_000, 30_050, 30_100, 30_150]
BEST, HFR_PX, HALF_WIDTH = 30_010.0, 1.8, 120.0
# Markup that would run script if the page parsed a reason as HTML.
REASON = 'no V — 星 ✨ <img src=x onerror="window.__xss = 1"><b id="injected">bold</b>'
CANVAS = "#focus-plot"


@dataclass
class Session:
    daemon: Daemon
    page: Page
    errors: list[str]
    log_db: ExposureLog
    ids: list[int]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def session(tmp_path_factory, browser) -> AsyncIterator[Session]:
    data_dir = tmp_path_factory.mktemp("focus") / "data"
    log_db = DataDir(data_dir).open_log()
    make_frame(data_dir, log_db, 1)  # the latest frame: the page opens its night
    focused = focus_row(POSITIONS, best=BEST, hfr_px=HFR_PX, half_width=HALF_WIDTH, minute=1)
    # Refused at the fit: the two outer frames without stars (NaN), no curve.
    points = [[p, math.nan if i in (0, 6) else 2.0 + 0.1 * i, 3] for i, p in enumerate(POSITIONS)]
    refused = focused | {
        "started_utc": f"{NIGHT}T21:30:00+00:00",
        "trigger": "temperature change 1.2 degC",
        "filter": "R",
        "temperature_c": math.nan,
        "points": json.dumps(points),
        "best_position": None,
        "best_hfr_px": None,
        "half_width_steps": None,
        "fit_rms_px": None,
        "final_position": 30_000,
        "check_hfr_px": None,
        "outcome": "refused",
        "reason": REASON,
    }
    ids = [log_db.add_focus_run(focused), log_db.add_focus_run(refused)]
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
                yield Session(daemon, page, errors, log_db, ids)
            finally:
                await page.close()
    finally:
        log_db.close()


async def _drawn_run(page: Page, run_id: int, points: int) -> None:
    await page.wait_for_function(
        f"(c => c.dataset.run === '{run_id}' && c.dataset.points === '{points}')"
        f"(document.querySelector('{CANVAS}'))",
        timeout=10_000,
    )


async def test_the_newest_run_is_drawn_and_its_reason_is_text(session: Session) -> None:
    page = session.page
    # The refused run, newest: its five frames with stars, no curve, the reason as text.
    await _drawn_run(page, session.ids[1], 5)
    assert await page.get_attribute(CANVAS, "data-curve") == "0"
    assert await page.inner_text("#focus-outcome") == "refused"
    assert await page.inner_text("#focus-trigger") == "temperature change 1.2 degC"
    assert await page.inner_text("#focus-filter") == "R"
    assert await page.inner_text("#focus-temperature") == "—"
    assert await page.inner_text("#focus-reason") == REASON
    assert await page.locator("#focus-panel img, #injected").count() == 0
    assert await page.evaluate("window.__xss === undefined")
    assert await page.inner_text("#focus-night") == f"night {NIGHT}"
    # The night's runs, newest first, the one drawn marked.
    rows = page.locator("#focus-runs tbody tr")
    assert await rows.count() == 2
    assert [await rows.nth(i).get_attribute("data-id") for i in range(2)] == [
        str(i) for i in session.ids[::-1]
    ]
    assert await rows.nth(0).get_attribute("class") == "current"
    # The vertical mark where the focuser was left is drawn even without a fit.
    drawn = await page.evaluate(f"document.querySelector('{CANVAS}')._drawn.map(d => d.p.x)")
    assert sorted(drawn) == POSITIONS[1:6]
    await page.locator("#focus-panel").scroll_into_view_if_needed()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.locator("#focus-panel").screenshot(path=str(ARTIFACTS / "20-focus-refused.png"))
    assert session.errors == []


async def test_a_focused_runs_v_curve_goes_through_its_points(session: Session) -> None:
    page = session.page
    await page.click(f"#focus-runs tbody tr[data-id='{session.ids[0]}']")
    await _drawn_run(page, session.ids[0], len(POSITIONS))
    assert await page.inner_text("#focus-outcome") == "focused"
    assert await page.locator("#focus-reason").count() == 0
    assert await page.inner_text("#focus-temperature") == "8.3 °C"
    assert int(await page.get_attribute(CANVAS, "data-curve") or 0) > 10
    # The curve the page draws from the stored fit is the truth's V, over the positions.
    curve = await page.evaluate(f"document.querySelector('{CANVAS}')._curve")
    assert curve[0][0] == pytest.approx(POSITIONS[0]) and curve[-1][0] == pytest.approx(
        POSITIONS[-1]
    )
    for x, y in curve:
        assert y == pytest.approx(v_curve(x, BEST, HFR_PX, HALF_WIDTH), rel=1e-3), x
    points = await page.evaluate(
        f"document.querySelector('{CANVAS}')._drawn.map(d => [d.p.x, d.p.y])"
    )
    assert [p[0] for p in points] == POSITIONS
    for x, y in points:
        assert y == pytest.approx(v_curve(x, BEST, HFR_PX, HALF_WIDTH))
    await page.locator("#focus-panel").screenshot(path=str(ARTIFACTS / "21-focus.png"))
    assert session.errors == []


async def test_a_new_run_is_drawn_as_it_is_published(session: Session) -> None:
    page = session.page
    await page.evaluate("window.__sameDocument = true")
    positions = [29_750 + 50 * i for i in range(9)]
    row = focus_row(
        positions, best=29_960.0, hfr_px=2.1, half_width=150.0, minute=50, trigger="interval"
    )
    run_id = session.log_db.add_focus_run(row)
    # As the daemon publishes it: the row's fields (its night among them), no id.
    session.daemon.state.events.publish("focus", **row)
    await _drawn_run(page, run_id, len(positions))
    assert await page.inner_text("#focus-trigger") == "interval"
    assert await page.locator("#focus-runs tbody tr").count() == 3
    current = page.locator("#focus-runs tbody tr.current")
    assert await current.get_attribute("data-id") == str(run_id)
    curve = await page.evaluate(f"document.querySelector('{CANVAS}')._curve")
    for x, y in curve:
        assert y == pytest.approx(v_curve(x, 29_960.0, 2.1, 150.0), rel=1e-3), x
    # A run of another night, while the page follows live: that night's runs are shown.
    other = focus_row(positions, night="2026-01-02", minute=5)
    other_id = session.log_db.add_focus_run(other)
    session.daemon.state.events.publish("focus", **other)
    await _drawn_run(page, other_id, len(positions))
    assert await page.inner_text("#focus-night") == "night 2026-01-02"
    assert await page.locator("#focus-runs tbody tr").count() == 1
    assert await page.evaluate("window.__sameDocument === true")
    await page.locator("#focus-panel").screenshot(path=str(ARTIFACTS / "22-focus-live.png"))
    assert session.errors == []
