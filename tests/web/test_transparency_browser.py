"""The quick-look page: clouds seen in the frames pause light frames, why; the panel's cover.

Real headless Chromium against a daemon with ``[safety.transparency]`` on; the watch is fed
as the pipeline feeds it (`tests/acquisition/test_transparency_daemon.py` runs the whole
path from the simulated clouds).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from playwright.async_api import Browser, expect

from obsctl.config import Config
from obsctl.daemon import Daemon

from ..daemon_helpers import enclosure_config, running_daemon, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def daemon(tmp_path_factory) -> AsyncIterator[Daemon]:
    data = enclosure_config(tmp_path_factory.mktemp("clouds") / "data").model_dump(
        mode="json", exclude_unset=True
    )
    data["pipeline"] |= {"enabled": True, "nominal_zero_point": {"V": 21.0}}
    address = data["devices"]["camera"]["address"]
    data["devices"]["cover_calibrator"] = {"driver": "alpaca", "address": address}
    data["simulator"]["cover_calibrator"] = {"start_open": False}
    data["safety"]["transparency"] = {"enabled": True, "frames": 1}
    async with running_daemon(Config.model_validate(data)) as running:
        await wait_for(lambda: running.running.supervisor.is_safe)
        yield running


async def test_the_page_shows_lights_paused_by_clouds_and_the_transparency(
    browser: Browser, daemon: Daemon
) -> None:
    page = await browser.new_page()
    try:
        await page.goto(f"{daemon.api_url}/")
        state = page.locator("#state")
        await expect(state).to_contain_text("clouds in frames")
        await expect(state).to_contain_text("no frame measured yet")
        await expect(state).to_contain_text("closed, panel off")  # the flip-flat, as it is
        watch = daemon.running.transparency
        assert watch is not None
        now = datetime.now(UTC)
        watch.add(1, now, "V", 21.0 - 0.25, 120)
        daemon.running.events.publish("transparency", **watch.as_dict())
        await expect(state).to_contain_text("transparency 0.79 (V)")
        watch.add(2, now + timedelta(minutes=1), "V", 21.0 - 2.0, 30)
        daemon.running.events.publish("transparency", **watch.as_dict())
        await expect(state).to_contain_text("LIGHTS PAUSED")
        await expect(state).to_contain_text("the roof stays open")
    finally:
        await page.close()
