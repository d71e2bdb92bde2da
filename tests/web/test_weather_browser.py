"""The quick-look page says why it is unsafe, when it will be safe, the weather and the roof.

Real headless Chromium against a daemon with a simulated roll-off roof and weather station
over Alpaca HTTP; the weather changes on the simulator's model.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from obsctl.daemon import Daemon

from ..daemon_helpers import enclosure_config, running_daemon, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def daemon(tmp_path_factory) -> AsyncIterator[Daemon]:
    # A 30 min wait after humidity clears: 18 s of real time, for the page to count it down.
    config = enclosure_config(tmp_path_factory.mktemp("weather") / "data", humidity_wait_min=30)
    async with running_daemon(config) as running:
        await wait_for(lambda: running.running.supervisor.is_safe)
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser, daemon: Daemon) -> AsyncIterator[Page]:
    tab = await browser.new_page()
    await tab.goto(f"{daemon.api_url}/")
    yield tab
    await tab.close()


async def test_the_page_shows_the_weather_the_roof_and_the_time_to_safe(
    page: Page, daemon: Daemon
) -> None:
    state = page.locator("#state")
    await expect(state).to_contain_text("SAFE")
    await expect(state).to_contain_text("humidity_pct 50.0")
    await expect(state).to_contain_text("roof")
    await expect(state).to_contain_text("closed")
    obs = daemon.simulators.observatory  # type: ignore[union-attr]
    obs.weather.set_values(humidity_pct=96.0)
    await expect(state).to_contain_text("UNSAFE", timeout=10_000)
    await expect(state).to_contain_text("humidity 96 % (limit above 90 %)")
    await expect(state).to_contain_text("unknown (waiting for the values to clear)")
    obs.weather.set_values(humidity_pct=70.0)
    # Clear: the 30 min wait and the 10 s resume delay are counted down on the page.
    await expect(state).to_contain_text("humidity clear for", timeout=10_000)
    await expect(state).to_contain_text(re.compile(r"safe in\s*(2\d|30) min"))
