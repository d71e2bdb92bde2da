"""The page and the daemon's guards in a real headless Chromium.

Other sites' pages must not drive the daemon or read it (a cross-site page, DNS rebinding);
the quick-look page itself must keep working, beyond loopback too (HTTP Basic with the token),
print numbers as people read them and say loudly why acquisition is paused.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from obsctl.acquisition.sequence import ExposureStep, Sequence
from obsctl.daemon import Daemon
from obsctl.store.datadir import DataDir

from ..daemon_helpers import daemon_config, overhead_target, running_daemon, standard_sequence
from .conftest import CHROMIUM, CHROMIUM_ARGS, require_chromium
from .web_helpers import NIGHT, make_frame

pytestmark = pytest.mark.asyncio(loop_scope="module")

# A sum with binary rounding noise, as a flat's scaled exposure time can be.
NOISY_S = 0.1 + 0.2
# Names that the browser resolves to 127.0.0.1: another site, and a rebound name.
RESOLVER = "--host-resolver-rules=MAP attacker.test 127.0.0.1, MAP rebound.test 127.0.0.1"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def chromium() -> AsyncIterator[Browser]:
    """Chromium that resolves the test's other site names to this machine."""
    require_chromium()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, RESOLVER]
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def daemon(tmp_path_factory) -> AsyncIterator[Daemon]:
    """A daemon on loopback whose log holds one processed frame of a noisy exposure time."""
    data = DataDir(tmp_path_factory.mktemp("guards") / "data")
    data.create()
    db = data.open_log()
    make_frame(data.root, db, 1, exposure_s=NOISY_S)
    db.close()
    async with running_daemon(daemon_config(data.root)) as running:
        yield running


async def open_page(browser: Browser, url: str, errors: list[str], **context: object) -> Page:
    page = await (await browser.new_context(**context)).new_page()  # type: ignore[arg-type]
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    reply = await page.goto(url)
    assert reply is not None and reply.status == 200
    await page.wait_for_selector("body[data-ready]", timeout=15_000)
    return page


async def test_numbers_are_printed_as_people_read_them(chromium: Browser, daemon: Daemon) -> None:
    assert str(NOISY_S) == "0.30000000000000004"
    errors: list[str] = []
    page = await open_page(chromium, f"{daemon.api_url}/", errors)
    try:
        await page.wait_for_function("document.querySelector('#overlay-canvas').dataset.exposure")
        title = await page.inner_text("#frame-title")
        assert " 0.3s " in title, title
        await page.wait_for_selector("#log tbody tr")
        cells = await page.eval_on_selector_all(
            "#log tbody tr td", "tds => tds.map(t => t.innerText)"
        )
        assert "0.3" in cells and str(NOISY_S) not in cells
        cards = await page.inner_text("#header-cards")
        assert "EXPTIME 0.3" in " ".join(cards.split()), cards
        assert "0000000" not in title + cards + " ".join(cells)
        shown = await page.evaluate(
            """() => [0.30000000000000004, 10.000000000000002, 300, 0.001, 1.5e-5, 123.4567]
                .map(window.ObsFormat.seconds)"""
        )
        assert shown == ["0.3", "10", "300", "0.001", "0.000015", "123.457"]
        numbers = await page.evaluate(
            """() => [61041.90012345678, 2.5e-4, -2.7000000000000003e-4, 4096, 0.1 + 0.7]
                .map(window.ObsFormat.number)"""
        )
        assert numbers == ["61041.9001235", "0.00025", "-0.00027", "4096", "0.8"]
        assert errors == []
    finally:
        await page.context.close()


async def test_the_reason_of_a_pause_is_shown_at_the_top(chromium: Browser, daemon: Daemon) -> None:
    errors: list[str] = []
    page = await open_page(chromium, f"{daemon.api_url}/", errors)
    running = daemon.state
    try:
        await page.wait_for_function(
            "document.querySelector('#state').textContent.includes('SAFE')"
        )
        assert await page.is_hidden("#paused")
        reason = "cannot store frames: No space left on device (/data/raw)"
        running.activity.paused_reason = reason
        running.events.publish("activity", **running.activity.as_dict())
        await page.wait_for_selector("#paused", state="visible", timeout=10_000)
        assert await page.inner_text("#paused") == f"acquisition paused: {reason}"
        # It is at the top of the page, above the frame, in the first screenful.
        box = await page.locator("#paused").bounding_box()
        assert box is not None and box["y"] < 100 and box["width"] > 1000
        running.activity.paused_reason = None
        running.events.publish("activity", **running.activity.as_dict())
        await page.wait_for_selector("#paused", state="hidden", timeout=10_000)

        # A daemon from before the field (no paused_reason at all): no banner, no error.
        async def without_the_field(route) -> None:  # type: ignore[no-untyped-def]
            reply = await route.fetch()
            status = await reply.json()
            status["activity"].pop("paused_reason", None)
            await route.fulfill(response=reply, json=status)

        await page.route("**/api/status", without_the_field)
        await page.reload()
        await page.wait_for_selector("body[data-ready]")
        await page.wait_for_function(
            "document.querySelector('#state').textContent.includes('SAFE')"
        )
        assert await page.is_hidden("#paused")
        assert errors == []
    finally:
        running.activity.paused_reason = None
        await page.context.close()


ATTACK = """
async ({target, sequence, stop}) => {
  const out = {};
  // A "simple" request: no preflight, the browser sends it and hides the reply.
  await fetch(target + "/api/sequences", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body: JSON.stringify(sequence)});
  await fetch(target + "/api/abort", {method: "POST", mode: "no-cors"});
  // JSON needs a preflight, which the daemon never grants.
  try {
    await fetch(target + "/api/sequences", {method: "POST",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify(sequence)});
    out.json = "sent";
  } catch (err) { out.json = "blocked"; }
  try { out.read = await (await fetch(target + "/api/status")).text(); }
  catch (err) { out.read = "blocked"; }
  // A form whose text/plain body is JSON: {"x": "=1"}.
  const frame = document.createElement("iframe");
  frame.name = "sink";
  document.body.append(frame);
  const form = document.createElement("form");
  Object.assign(form, {method: "POST", action: stop, target: "sink", enctype: "text/plain"});
  const field = document.createElement("input");
  Object.assign(field, {name: '{"x": "', value: '1"}'});
  form.append(field);
  document.body.append(form);
  const loaded = new Promise((done) => frame.addEventListener("load", done));
  form.submit();
  await loaded;
  return out;
}
"""


async def attacker_site() -> tuple[web.AppRunner, int]:
    """Another web site on this machine: an empty page at http://attacker.test:<port>/."""
    app = web.Application()

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text="<!doctype html><title>elsewhere</title>", content_type="text/html"
        )

    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(runner.addresses[0][1])


async def test_another_site_cannot_drive_or_read_the_daemon(
    chromium: Browser, daemon: Daemon
) -> None:
    # A long exposure, running while the other site tries to stop it.
    long = Sequence(
        name="long",
        target=overhead_target(),
        steps=(ExposureStep(image_type="LIGHT", filter="V", exposure_s=3600.0),),
    )
    async with aiohttp.ClientSession() as http:
        body = json.loads(long.model_dump_json())
        async with http.post(f"{daemon.api_url}/api/sequences", json=body) as resp:
            assert resp.status == 201
            sid = (await resp.json())["id"]
    log_db = daemon.state.log_db
    async with asyncio.timeout(30):
        while daemon.state.activity.state != "exposing":
            await asyncio.sleep(0.02)
    before = log_db.sequences()
    runner, port = await attacker_site()
    page = await (await chromium.new_context()).new_page()
    try:
        await page.goto(f"http://attacker.test:{port}/")
        sequence = json.loads(standard_sequence(lights=1).model_dump_json())
        stop = f"{daemon.api_url}/api/sequences/{sid}/stop"
        out = await page.evaluate(
            ATTACK, {"target": daemon.api_url, "sequence": sequence, "stop": stop}
        )
        assert out == {"json": "blocked", "read": "blocked"}
        await asyncio.sleep(0.2)  # nothing the daemon might still be doing with them
        assert log_db.sequences() == before  # nothing queued, nothing stopped
        assert log_db.sequence(sid)["state"] == "running"
        assert daemon.state.activity.state == "exposing"  # not aborted

        # DNS rebinding: the other site's name now resolves to 127.0.0.1. Same origin for
        # the browser, but the daemon answers only to its own names.
        for path in ("/", "/api/status", "/api/events"):
            reply = await page.goto(f"http://rebound.test:{daemon.api_url.rsplit(':', 1)[1]}{path}")
            assert reply is not None and reply.status == 400, path
            assert "rebound.test" in (await reply.json())["error"]
    finally:
        await page.context.close()
        await runner.cleanup()
        async with aiohttp.ClientSession() as http:
            await http.post(f"{daemon.api_url}/api/sequences/{sid}/stop", json={})


@pytest.fixture
def wildcard_port() -> int:
    """A port free on every interface (the daemon below binds to all of them)."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


async def test_beyond_loopback_the_page_works_with_the_token(
    chromium: Browser, tmp_path: Path, wildcard_port: int
) -> None:
    data = DataDir(tmp_path / "data")
    data.create()
    db = data.open_log()
    frame = make_frame(data.root, db, 1)
    db.close()
    server = {"host": "0.0.0.0", "port": wildcard_port, "token": "s3cret"}
    url = f"http://127.0.0.1:{wildcard_port}/"
    async with running_daemon(daemon_config(data.root, server=server)):
        # Without the token: not even the page, and a challenge that makes a browser ask.
        context = await chromium.new_context()
        try:
            reply = await context.request.get(url)
            assert reply.status == 401 and reply.headers["www-authenticate"].startswith("Basic")
        finally:
            await context.close()
        # With it, as the browser's login prompt gives it: the page, its event stream, its
        # data and its downloads all carry it.
        errors: list[str] = []
        credentials = {"username": "observer", "password": "s3cret"}
        page = await open_page(chromium, url, errors, http_credentials=credentials)
        try:
            await page.wait_for_selector("#connection.on", timeout=10_000)
            await page.wait_for_function(
                "document.querySelector('#state').textContent.includes('SAFE')"
            )
            await page.wait_for_function(
                f"document.querySelector('#overlay-canvas').dataset.exposure === '{frame}'"
            )
            href = await page.get_attribute("#downloads a", "href")
            assert href == f"/data/raw/{NIGHT}/frame_001.fits"
            fetched = await page.evaluate(
                "async (href) => (await (await fetch(href)).text()).slice(0, 6)", href
            )
            assert fetched == "SIMPLE"
            assert errors == []
        finally:
            await page.context.close()
