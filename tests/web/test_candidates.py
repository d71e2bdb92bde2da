"""Difference candidates on the web and the command line: routes, the page's panel, the CLI.

The field is the difference stage's test field (`tests.difference_helpers`): a supernova at
its peak on a galaxy and an asteroid crossing four new frames, processed by the pipeline's
code, then the transient watch run over them as the daemon does. Truth is the simulator's:
the supernova's position, magnitude and host offset, the asteroid's positions and motion.
The routes are served over real HTTP on 127.0.0.1; the page is checked in Debian's headless
Chromium against a running daemon. Field names in the database are made hostile (markup,
scripts, emoji) to check they stay text.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from astropy.time import Time
from PIL import Image

from obsctl.cli import main
from obsctl.config import Config
from obsctl.events import EventBus
from obsctl.simulators.transients import Transient, asteroids_from_config
from obsctl.store.datadir import DataDir
from obsctl.timeseries.matching import separation_arcsec
from obsctl.timeseries.transients import TransientWatch
from obsctl.web import QuickLook, add_quicklook
from obsctl.web._http import errors_middleware

from ..daemon_helpers import daemon_config, running_daemon
from ..difference_helpers import PEAK_MAG, difference_night

# The routes and the page share one server and one event loop; the CLI tests are synchronous.
module_loop = pytest.mark.asyncio(loop_scope="module")

# What a field name may hold: markup that would run script if parsed as HTML, other scripts.
HOSTILE = 'Champ <script>window.__xss = 1</script><b id="injected">☄</b> «星» & "q"'
MPC_CODE = "J95"
CUTOUT = 21  # the difference stage's cutout side (px)
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "quicklook"


@dataclass
class Field:
    root: Path
    config: Config
    sn: Transient
    new_ids: list[int]
    night: str
    #: A bogus detection given a low real/bogus score, and one given an infinite flux error.
    bogus_id: int
    infinite_id: int


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory) -> Field:
    root = tmp_path_factory.mktemp("candidates")
    config, sn, _, new_ids = difference_night(root)
    data_dir = DataDir(config.data.directory)
    log_db = data_dir.open_log(existing=True)
    try:
        watch = TransientWatch(log_db, config.difference, data_dir)
        for eid in new_ids:
            watch.process_exposure(eid)
        marks = ", ".join("?" for _ in new_ids)
        # Scores as a real/bogus classifier would leave them, after the watch used them.
        detections = log_db.query(
            f"SELECT id, transient_id, track_id FROM difference_candidates WHERE exposure_id "
            f"IN ({marks}) AND kind = 'detection' ORDER BY id",
            new_ids,
        )
        bogus = [d["id"] for d in detections if d["transient_id"] is None and d["track_id"] is None]
        log_db.execute(
            f"UPDATE difference_candidates SET real_bogus = 0.9 WHERE exposure_id IN ({marks})",
            new_ids,
        )
        log_db.execute(
            "UPDATE difference_candidates SET real_bogus = 0.1 WHERE id = ?", (bogus[0],)
        )
        log_db.execute(
            "UPDATE difference_candidates SET flux_err = ? WHERE id = ?", (math.inf, bogus[1])
        )
        log_db.execute(
            f"UPDATE exposures SET target = ? WHERE id IN ({marks})", [HOSTILE, *new_ids]
        )
        log_db.execute("UPDATE transients SET field = ?", (HOSTILE,))
        log_db.execute("UPDATE moving_objects SET field = ?", (HOSTILE,))
        night = log_db.exposure(new_ids[0])["night"]
    finally:
        log_db.close()
    return Field(root, config, sn, new_ids, night, bogus[0], bogus[1])


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(field: Field) -> AsyncIterator[TestClient]:
    data_dir = DataDir(field.config.data.directory)
    log_db = data_dir.open_log(existing=True)
    app = web.Application(middlewares=[errors_middleware])
    add_quicklook(
        app, QuickLook(log_db=log_db, data_dir=data_dir, events=EventBus(), mpc_code=MPC_CODE)
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        log_db.close()


def _strict(text: str) -> Any:
    """Parse standard JSON only: NaN or Infinity in a reply fails the test."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a JSON reply")

    return json.loads(text, parse_constant=refuse)


async def _json(client: TestClient, path: str, status: int = 200) -> Any:
    reply = await client.get(path)
    text = await reply.text()
    assert reply.status == status, text
    assert reply.content_type == "application/json"
    return _strict(text)


def _rock(field: Field) -> Any:
    assert field.config.simulator is not None
    (rock,) = asteroids_from_config(field.config.simulator.sky.asteroids)
    return rock


# -- routes --------------------------------------------------------------------------------


@module_loop
async def test_the_nights_candidates_transient_and_moving_object(field: Field, client) -> None:
    body = await _json(client, "/api/quicklook/candidates")
    assert body["night"] == field.night  # the latest night with a difference
    rows = body["candidates"]
    assert 0 < len(rows) == body["total"] <= 50
    assert all(r["kind"] == "detection" and r["field"] == HOSTILE for r in rows)
    assert all(r["cutouts"] == f"/api/candidates/{r['id']}/cutouts.png" for r in rows)
    # Newest frames first.
    times = [r["mjd_mid"] for r in rows]
    assert times == sorted(times, reverse=True)
    assert {r["exposure_id"] for r in rows} == set(field.new_ids)
    # Infinity in the database is null in the reply.
    (infinite,) = (r for r in rows if r["id"] == field.infinite_id)
    assert infinite["flux_err"] is None
    # The supernova, alerted once seen twice: its position, magnitude and host (the truth's).
    (sn,) = body["transients"]
    assert separation_arcsec(sn["ra_deg"], sn["dec_deg"], field.sn.ra_deg, field.sn.dec_deg) < 0.5
    assert sn["peak_mag"] == pytest.approx(PEAK_MAG, abs=0.15)
    assert sn["host_offset_arcsec"] == pytest.approx(1.5, abs=0.7)
    assert sn["alerted"] == 1 and sn["field"] == HOSTILE
    assert sn["cutouts"] == f"/api/candidates/{sn['candidate_id']}/cutouts.png"
    assert sn["lightcurve"] == f"/api/transients/{sn['id']}/lightcurve"
    newest = [r for r in rows if r["transient_id"] == sn["id"]]
    assert newest and sn["candidate_id"] == newest[0]["id"]
    # The asteroid: 5 arcsec/min towards PA 45 in the simulator.
    (rock,) = body["moving_objects"]
    assert rock["rate_arcsec_min"] == pytest.approx(5.0, rel=0.05)
    assert rock["pa_deg"] == pytest.approx(45.0, abs=3.0)
    assert rock["candidate_id"] in {r["id"] for r in rows if r["track_id"] == rock["id"]}
    assert body["mpc"] == f"/api/moving/{field.night}/mpc"


@module_loop
async def test_limit_and_real_bogus_select_candidates(field: Field, client) -> None:
    everything = await _json(client, f"/api/quicklook/candidates?night={field.night}&limit=500")
    two = await _json(client, f"/api/quicklook/candidates?night={field.night}&limit=2")
    assert [r["id"] for r in two["candidates"]] == [r["id"] for r in everything["candidates"][:2]]
    assert two["total"] == everything["total"]
    real = await _json(client, "/api/quicklook/candidates?min_real_bogus=0.5&limit=500")
    assert real["total"] == everything["total"] - 1
    assert field.bogus_id not in {r["id"] for r in real["candidates"]}
    none = await _json(client, "/api/quicklook/candidates?night=2020-01-01")
    assert none["total"] == 0 and none["candidates"] == none["moving_objects"] == []
    assert none["mpc"] is None


@module_loop
@pytest.mark.parametrize(
    "query",
    [
        "limit=-1", "limit=0", "limit=501", "limit=99999999999999999999", "limit=Infinity",
        "limit=1e2", "limit=%EF%BC%91", "limit=+5", "night=..%2F..%2Fetc", "night=2026-1-1",
        "night=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-01-01", "night=2026-01-01%00",
        "min_real_bogus=Infinity", "min_real_bogus=NaN", "min_real_bogus=-0.1",
        "min_real_bogus=1.5", "min_real_bogus=1e-1", "min_real_bogus=0_5",
        "min_real_bogus=%D9%A0.5", "min_real_bogus=%20.5",
    ],
)  # fmt: skip
async def test_hostile_queries_are_refused(client, query: str) -> None:
    body = await _json(client, f"/api/quicklook/candidates?{query}", status=400)
    assert isinstance(body["error"], str) and body["error"]


@module_loop
async def test_cutouts_png_shows_the_supernova_new_not_in_the_reference(field, client) -> None:
    body = await _json(client, "/api/quicklook/candidates")
    (sn,) = body["transients"]
    reply = await client.get(f"{sn['cutouts']}?size=105")
    assert reply.status == 200 and reply.content_type == "image/png"
    image = np.asarray(Image.open(io.BytesIO(await reply.read())))
    gap = 2
    assert image.shape == (105, 3 * 105 + 2 * gap) and image.dtype == np.uint8
    assert reply.headers["X-Factor"] == "5"
    new, ref, diff = (image[:, i * (105 + gap) : i * (105 + gap) + 105] for i in range(3))
    core = (slice(45, 60), slice(45, 60))  # the central 3x3 cutout pixels
    # The supernova is new light: bright in the new frame and the difference (above mid grey),
    # fainter in the reference, where only its host is.
    assert diff[50:55, 50:55].min() > 240  # the centre: the peak, full white
    assert diff[core].mean() > 160
    assert new[core].mean() > ref[core].mean() + 20
    # Each pixel is enlarged five times, nearest neighbour.
    assert (new[::5, ::5].repeat(5, 0).repeat(5, 1) == new).all()
    # The size is bounded, not refused: tiny is one pixel a pixel, huge is 20.
    for size, factor in (("-5", 1), ("0", 1), ("100000", 20), ("43", 2)):
        reply = await client.get(f"{sn['cutouts']}?size={size}")
        assert reply.status == 200, size
        shape = np.asarray(Image.open(io.BytesIO(await reply.read()))).shape
        assert shape == (CUTOUT * factor, 3 * CUTOUT * factor + 2 * gap), size


@module_loop
@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/candidates/0/cutouts.png", 404),
        ("/api/candidates/-1/cutouts.png", 404),
        ("/api/candidates/99999999/cutouts.png", 404),
        ("/api/candidates/99999999999999999999999/cutouts.png", 404),
        ("/api/candidates/%EF%BC%91/cutouts.png", 404),
        ("/api/candidates/..%2F..%2Fetc%2Fpasswd/cutouts.png", 404),
        ("/api/candidates/1/cutouts.png?size=Infinity", 400),
        ("/api/candidates/1/cutouts.png?size=NaN", 400),
        ("/api/transients/0/lightcurve", 404),
        ("/api/transients/..%2F1/lightcurve", 404),
        ("/api/transients/1e3/lightcurve", 404),
        ("/api/moving/..%2F..%2Fetc/mpc", 404),
        ("/api/moving/2026-01-01%3Bx/mpc", 404),
        ("/api/moving/2020-01-01/mpc", 404),  # no moving objects that night
    ],
)
async def test_unknown_or_hostile_ids_are_json_errors(client, path: str, status: int) -> None:
    reply = await client.get(path)
    assert reply.status == status, await reply.text()
    assert reply.content_type == "application/json"
    assert _strict(await reply.text())["error"]


@module_loop
async def test_a_missing_or_truncated_cutouts_file(field: Field, client) -> None:
    data_dir = DataDir(field.config.data.directory)
    log_db = data_dir.open_log(existing=True)
    eid = field.new_ids[0]
    (row,) = log_db.query("SELECT path FROM difference_frames WHERE exposure_id = ?", (eid,))
    (cid,) = (
        r["id"]
        for r in log_db.query(
            "SELECT id FROM difference_candidates WHERE exposure_id = ? AND row = 0", (eid,)
        )
    )
    original = data_dir.path(row["path"])
    truncated = original.with_name("truncated_diff.fits")
    blob = original.read_bytes()
    truncated.write_bytes(blob[: len(blob) - 3000])
    try:
        for path, status in (("reduced/gone_diff.fits", 404), (str(truncated), 422)):
            log_db.execute(
                "UPDATE difference_frames SET path = ? WHERE exposure_id = ?", (path, eid)
            )
            body = await _json(client, f"/api/candidates/{cid}/cutouts.png", status=status)
            assert f"candidate {cid}" in body["error"]
    finally:
        log_db.execute(
            "UPDATE difference_frames SET path = ? WHERE exposure_id = ?", (row["path"], eid)
        )
        log_db.close()
        truncated.unlink()


@module_loop
async def test_a_transients_light_curve(field: Field, client) -> None:
    body = await _json(client, "/api/quicklook/candidates")
    (sn,) = body["transients"]
    curve = await _json(client, sn["lightcurve"])
    assert curve["transient"]["id"] == sn["id"]
    points = curve["points"]
    assert len(points) == sn["detections"] >= 2
    assert [p["mjd"] for p in points] == sorted(p["mjd"] for p in points)
    for p in points:
        assert p["kind"] == "detection" and p["filter"] == "V"
        assert p["mag"] == pytest.approx(PEAK_MAG, abs=0.15)
        assert p["flux"] > 0 and p["snr"] > 10 and p["mag_err"] > 0
        assert set(p) >= {"mjd", "filter", "mag", "mag_err", "flux", "flux_err", "snr", "kind"}


def _check_mpc_lines(field: Field, lines: list[str], code: str, detections: int) -> None:
    """Each observation: 80 columns, the code, and the truth's position at its time."""
    assert len(lines) == detections >= 3
    rock = _rock(field)
    for line in lines:
        assert len(line) == 80 and line.endswith(code) and line[:5] == " " * 5
        assert line[5:12] == "M00001 "  # the first moving object's temporary designation
        date = line[15:32]
        day = float(date[8:])
        mjd = Time(f"{date[:4]}-{date[5:7]}-01T00:00:00", scale="utc").mjd + day - 1.0
        h, m, s = (float(v) for v in line[32:44].split())
        sign = -1.0 if line[44] == "-" else 1.0
        d, dm, ds = (float(v) for v in line[45:56].split())
        ra, dec = 15.0 * (h + m / 60 + s / 3600), sign * (d + dm / 60 + ds / 3600)
        true_ra, true_dec = rock.position(mjd)
        assert separation_arcsec(ra, dec, float(true_ra), float(true_dec)) < 1.0
        assert line[70] == "V" and 14.0 < float(line[65:70]) < 17.0


@module_loop
async def test_the_nights_mpc_report(field: Field, client) -> None:
    body = await _json(client, "/api/quicklook/candidates")
    (rock,) = body["moving_objects"]
    for query, code in (("", MPC_CODE), ("?code=950", "950")):
        reply = await client.get(f"{body['mpc']}{query}")
        assert reply.status == 200 and reply.content_type == "text/plain"
        lines = (await reply.text()).splitlines()
        assert lines[0] == f"COD {code}" and lines[1].startswith("ACK ")
        _check_mpc_lines(field, lines[2:], code, rock["detections"])
        assert reply.headers["X-Observations"] == str(rock["detections"])
    for code in ("abc", "Infinity", "%EF%BC%99%EF%BC%95%EF%BC%90", "95", "9500", "<b>"):
        await _json(client, f"{body['mpc']}?code={code}", status=400)


# -- command line ----------------------------------------------------------------------------


def test_cli_lists_transients_and_moving_objects(field: Field, capsys) -> None:
    config = str(field.root / "obsctl.toml")
    assert main(["--config", config, "transients", "--night", field.night]) == 0
    out = capsys.readouterr().out.splitlines()
    (sn,) = (line for line in out if line.startswith("transient "))
    assert HOSTILE in sn and sn.endswith("alerted")
    offset = float(sn.split("host ")[1].split(" arcsec")[0])
    assert offset == pytest.approx(1.5, abs=0.7)
    (rock,) = (line for line in out if line.startswith("moving "))
    rate = float(rock.split(" arcsec/min")[0].rsplit(" ", 1)[1])
    assert rate == pytest.approx(5.0, rel=0.05)
    assert out[-1] == f"1 alerted transient(s), 1 moving object(s) on {field.night}"
    # With those seen once (bogus, mostly): more, the supernova among them.
    assert main(["--config", config, "transients", "--all"]) == 0
    everything = capsys.readouterr().out.splitlines()
    assert sn in everything and len(everything) > len(out)
    assert everything[-1].endswith(" transient(s), 1 moving object(s)")
    assert main(["--config", config, "transients", "--night", "2020-01-01"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "0 alerted transient(s), 0 moving object(s) on 2020-01-01"
    ]
    assert main(["--config", config, "transients", "--night", "2026-02-30"]) == 2


def test_cli_writes_the_mpc_report(field: Field, capsys, tmp_path) -> None:
    config = str(field.root / "obsctl.toml")
    out = tmp_path / "mpc.txt"
    args = ["--config", config, "mpc", "--night", field.night]
    assert main([*args, "--code", "950", "--out", str(out)]) == 0
    lines = out.read_text(encoding="ascii").splitlines()
    assert lines[0] == "COD 950"
    _check_mpc_lines(field, lines[2:], "950", len(lines) - 2)
    assert "written to" in capsys.readouterr().err
    # The config's code ([difference] mpc_code, XXX by default), to stdout.
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines()[2:] == [line[:77] + "XXX" for line in lines[2:]]
    assert main([*args, "--code", "ab1"]) == 2
    assert main(["--config", config, "mpc", "--night", "2020-01-01"]) == 0
    assert "no moving objects" in capsys.readouterr().err


# -- the page ------------------------------------------------------------------------------


@module_loop
async def test_the_candidates_panel_shows_cutouts_and_moving_objects(field: Field, browser) -> None:
    config = daemon_config(Path(field.config.data.directory), pipeline={"enabled": False})
    async with running_daemon(config) as daemon:
        page = await browser.new_page(viewport={"width": 1400, "height": 1400})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
        try:
            reply = await page.goto(f"{daemon.api_url}/")
            assert reply is not None and reply.status == 200
            await page.wait_for_selector("body[data-ready]", timeout=15_000)
            panel = page.locator("#candidates-panel")
            await page.wait_for_function(
                "document.querySelector('#candidates-panel').dataset.count > 0", timeout=10_000
            )
            assert await panel.get_attribute("data-night") == field.night
            # The supernova's card: its cutouts loaded, three 84 px cutouts and their gaps.
            card = page.locator("#transients .candidate.transient")
            assert await card.count() == 1
            img = card.locator("img.cutouts")
            await page.wait_for_function(
                "(i => i.complete && i.naturalWidth > 0)"
                "(document.querySelector('#transients img.cutouts'))",
                timeout=10_000,
            )
            assert await img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [
                3 * 84 + 4,
                84,
            ]
            text = await card.inner_text()
            assert "host galaxy" in text and "transient #" in text
            # Field names from the database are text, not markup.
            assert await card.locator(".field").inner_text() == HOSTILE
            assert (
                await page.locator(
                    "#candidates-panel #injected, #candidates-panel b#injected"
                ).count()
                == 0
            )
            assert await page.evaluate("window.__xss === undefined")
            # Every detection's cutouts load.
            await page.wait_for_function(
                "[...document.querySelectorAll('#candidates img.cutouts')]"
                ".every(i => i.complete && i.naturalWidth > 0)",
                timeout=10_000,
            )
            # The asteroid's row: its rate and direction.
            rows = page.locator("#moving-objects tbody tr")
            assert await rows.count() == 1
            assert float(await rows.locator("td.rate").inner_text()) == pytest.approx(5.0, rel=0.05)
            assert float(await rows.locator("td.pa").inner_text()) == pytest.approx(45, abs=3)
            assert await rows.locator("td.field").inner_text() == HOSTILE
            href = await page.get_attribute("#mpc-link", "href")
            assert href == f"/api/moving/{field.night}/mpc"
            await panel.scroll_into_view_if_needed()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await panel.screenshot(path=str(ARTIFACTS / "30-candidates.png"))
            # Live: a new moving object's alert reloads the panel.
            log_db = DataDir(field.config.data.directory).open_log(existing=True)
            try:
                object_id = log_db.execute(
                    "INSERT INTO moving_objects (field, night, epoch_mjd, ra_deg, dec_deg, "
                    "rate_arcsec_min, pa_deg, rms_arcsec, detections) "
                    "VALUES ('other', ?, 61000.0, 150.0, 20.0, 12.5, 100.0, 0.2, 3)",
                    (field.night,),
                )
                daemon.state.events.publish("alert", alert={"kind": "moving_object"})
                await page.wait_for_function(
                    "document.querySelectorAll('#moving-objects tbody tr').length === 2",
                    timeout=10_000,
                )
            finally:
                log_db.execute("DELETE FROM moving_objects WHERE id = ?", (object_id,))
                log_db.close()
            assert errors == []
        finally:
            await page.close()
