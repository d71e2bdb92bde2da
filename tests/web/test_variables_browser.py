"""The light-curve panel says what kind of variable each target is, in a real headless Chromium.

Two monitored targets are logged with their points, period and class as the monitor stores
them (`LightCurveStore.save_statistics` and `save_class`): an eclipsing binary whose panel
shows its class, probability, period and method and a fold on that period, and an odd light
curve flagged as unusual, without a fold (no period).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page

from obsctl.store.datadir import DataDir
from obsctl.timeseries.store import FramePoint, LightCurveStore, SolvedPoint

from ..daemon_helpers import daemon_config, running_daemon

pytestmark = pytest.mark.asyncio(loop_scope="module")

POINTS = 40
PERIOD_D = 1.37


def log_target(store: LightCurveStore, target: str, mags: np.ndarray, first_id: int) -> None:
    obj = store.add_target_object("FIELD", target, 150.0, 20.0)
    mjd = 61000.0 + np.arange(mags.size) * 0.173
    for k, (t, m) in enumerate(zip(mjd, mags, strict=True)):
        eid = first_id + k
        point = FramePoint(obj, float(t), eid, float(t) + 2400000.5, "V", 1.1, float(m), 0.01,
                           "good", 0)  # fmt: skip
        store.replace_points(eid, [point])
        store.set_differential_mags([SolvedPoint(obj, eid, float(m), 0.01, 0)], flag=4)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def page(tmp_path_factory, browser: Browser) -> AsyncIterator[Page]:
    data_dir = tmp_path_factory.mktemp("variables") / "data"
    log_db = DataDir(data_dir).open_log()
    store = LightCurveStore(log_db)
    phase = (np.arange(POINTS) * 0.173 / PERIOD_D) % 1.0
    eclipses = 13.0 + 0.5 * (np.abs(phase - 0.5) > 0.47)
    log_target(store, "VECL", eclipses, 1)
    stats = {"wmean_mag": 13.0, "wscatter_mag": 0.1, "expected_mag": 0.01, "chi2_red": 90.0,
             "stetson_j": 3.0, "period_power": 0.8, "amplitude_mag": 0.25}  # fmt: skip
    store.save_statistics("VECL", period_d=PERIOD_D, period_method="bls", period_fap=1e-9,
                          **stats)  # fmt: skip
    store.save_class("VECL", var_class="ea", probability=0.97,
                     probabilities={"ea": 0.97, "ew": 0.03}, anomaly_score=-0.1)  # fmt: skip
    log_target(store, "ODD", 12.0 + 2.0 * (np.arange(POINTS) > POINTS // 2), 1000)
    store.save_statistics("ODD", period_d=None, **stats)
    store.save_class("ODD", var_class="irregular", probability=0.41,
                     probabilities={"irregular": 0.41}, anomaly_score=0.2)  # fmt: skip
    config = daemon_config(data_dir, pipeline={"enabled": False})
    try:
        async with running_daemon(config) as daemon:
            tab = await browser.new_page(viewport={"width": 1400, "height": 1200})
            errors: list[str] = []
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
            try:
                await tab.goto(f"{daemon.api_url}/")
                await tab.wait_for_selector("body[data-ready]", timeout=15_000)
                yield tab
                assert errors == []
            finally:
                await tab.close()
    finally:
        log_db.close()


async def test_each_light_curve_says_its_class_period_and_fold(page: Page) -> None:
    panel = page.locator('#lightcurves .plot[data-target="VECL"]')
    await panel.wait_for(timeout=15_000)
    title = await panel.locator(".title").inner_text()
    assert "VECL (40)" in title and "ea 97 %" in title and "P = 1.37000 d (bls)" in title
    assert "unusual" not in title
    # The fold: every point twice (two cycles), on the phase axis.
    fold = panel.locator("canvas.fold")
    assert await fold.get_attribute("data-points") == str(2 * POINTS)


async def test_an_unusual_light_curve_is_flagged_without_a_fold(page: Page) -> None:
    panel = page.locator('#lightcurves .plot[data-target="ODD"]')
    await panel.wait_for(timeout=15_000)
    title = await panel.locator(".title").inner_text()
    assert "irregular 41 %" in title and "unusual" in title and "P =" not in title
    assert await panel.locator("canvas.fold").count() == 0
    assert await panel.locator("canvas").first.get_attribute("data-points") == str(POINTS)
