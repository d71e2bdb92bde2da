"""The focus-run route over real HTTP, on a real SQLite exposure log written by the daemon's API."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from obsctl.events import EventBus
from obsctl.store.exposure_log import ExposureLog
from obsctl.web import QuickLook, add_quicklook

from .web_helpers import NIGHT, focus_row

POSITIONS = [29_850, 29_900, 29_950, 30_000, 30_050, 30_100, 30_150]
# What a reason may hold: any script, an emoji, markup, quotes, a right-to-left override.
REASON = 'Sterne zu schwach — 星が少ない ✨ <img src=x onerror="alert(1)"> & \u202e"fin"'


def _strict(text: str) -> Any:
    """Parse standard JSON only: NaN or Infinity in a reply fails the test."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a JSON reply")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
async def site(tmp_path) -> AsyncIterator[tuple[TestClient, ExposureLog, list[int]]]:
    log_db = ExposureLog(tmp_path / "data" / "obsctl.sqlite")
    ids = [
        log_db.add_focus_run(focus_row(POSITIONS, minute=1)),
        # Refused: its frames had too few stars at the ends (NaN HFR, as a hand-made row
        # or an older daemon wrote them), no fit, and the numbers SQLite keeps as inf.
        log_db.add_focus_run(
            focus_row(POSITIONS, minute=20)
            | {
                "points": json.dumps(
                    [[p, math.nan if i in (0, 6) else 2.0 + i, 3] for i, p in enumerate(POSITIONS)]
                ),
                "best_position": None,
                "best_hfr_px": math.inf,
                "half_width_steps": -math.inf,
                "fit_rms_px": math.nan,
                "temperature_c": math.nan,
                "final_position": 30_010,
                "check_hfr_px": None,
                "outcome": "refused",
                "reason": REASON,
            }
        ),
        log_db.add_focus_run(focus_row(POSITIONS[1:], minute=40, trigger="temperature")),
    ]
    log_db.add_focus_run(focus_row(POSITIONS, night="2025-12-31"))
    app = web.Application()
    add_quicklook(app, QuickLook(log_db=log_db, data_dir=tmp_path / "data", events=EventBus()))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, log_db, ids
    finally:
        await client.close()
        log_db.close()


async def _get(client: TestClient, query: str = "") -> tuple[int, Any]:
    reply = await client.get(f"/api/quicklook/focus{query}")
    assert reply.content_type == "application/json"
    return reply.status, _strict(await reply.text())


async def test_a_nights_runs_newest_first_with_points_and_fit(site) -> None:
    client, _, ids = site
    status, body = await _get(client, f"?night={NIGHT}")
    assert status == 200
    assert body["night"] == NIGHT and body["total"] == 3
    assert [r["id"] for r in body["runs"]] == ids[::-1]
    newest, refused, focused = body["runs"]
    assert newest["trigger"] == "temperature" and len(newest["points"]) == len(POSITIONS) - 1
    # The focused run: its points as taken, its fit the V's (noise-free points: the truth).
    assert [p["position"] for p in focused["points"]] == POSITIONS
    assert focused["points"][3] == {
        "position": 30_000,
        "hfr_px": pytest.approx(1.8 * math.sqrt(1 + 3 * (10 / 120) ** 2)),
        "n_stars": 30,
    }
    assert focused["best_position"] == pytest.approx(30_010.0, abs=0.01)
    assert focused["best_hfr_px"] == pytest.approx(1.8, rel=1e-5)
    assert focused["half_width_steps"] == pytest.approx(120.0, rel=1e-4)
    assert focused["final_position"] == 30_010 and focused["outcome"] == "focused"
    assert focused["filter"] == "V" and focused["temperature_c"] == 8.25
    assert focused["started_utc"] == f"{NIGHT}T21:01:00+00:00" and focused["reason"] is None
    # The refused run: no number that is not finite reaches JSON, the reason as stored.
    assert refused["outcome"] == "refused" and refused["reason"] == REASON
    assert [p["hfr_px"] for p in refused["points"]] == [None, 3.0, 4.0, 5.0, 6.0, 7.0, None]
    assert [p["position"] for p in refused["points"]] == POSITIONS
    for key in ("best_position", "best_hfr_px", "half_width_steps", "fit_rms_px"):
        assert refused[key] is None, key
    assert refused["temperature_c"] is None and refused["check_hfr_px"] is None
    assert "night_runs" not in refused


async def test_the_newest_night_by_default_and_a_bounded_count(site) -> None:
    client, log_db, ids = site
    # Without a night: the latest night with a run (its frames may not exist yet).
    _, body = await _get(client)
    assert body["night"] == NIGHT and [r["id"] for r in body["runs"]] == ids[::-1]
    _, body = await _get(client, "?night=2025-12-31")
    assert body["total"] == 1 and body["runs"][0]["night"] == "2025-12-31"
    _, body = await _get(client, f"?night={NIGHT}&limit=1")
    assert body["total"] == 3 and [r["id"] for r in body["runs"]] == [ids[-1]]
    for _ in range(110):
        log_db.add_focus_run(focus_row(POSITIONS, minute=50))
    _, body = await _get(client, "?limit=100")
    assert body["total"] == 113 and len(body["runs"]) == 100
    _, body = await _get(client)
    assert len(body["runs"]) == 20  # the default
    status, body = await _get(client, "?night=2020-01-01")
    assert status == 200 and body == {"night": "2020-01-01", "total": 0, "runs": []}


async def test_no_runs_at_all(tmp_path) -> None:
    log_db = ExposureLog(tmp_path / "obsctl.sqlite")
    app = web.Application()
    add_quicklook(app, QuickLook(log_db=log_db, data_dir=tmp_path, events=EventBus()))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        status, body = await _get(client)
        assert status == 200 and body == {"night": None, "total": 0, "runs": []}
        reply = await client.get("/api/quicklook/info")
        assert "/api/quicklook/focus" in (await reply.json())["routes"]
    log_db.close()


async def test_malformed_points_and_hostile_queries(site) -> None:
    client, log_db, _ = site
    bad = log_db.add_focus_run(focus_row(POSITIONS, minute=59) | {"points": "not json"})
    odd = log_db.add_focus_run(
        focus_row(POSITIONS, minute=59)
        | {"points": json.dumps([[1, 2], "x", [], [math.inf, 1.0, 2], [5, "a", None]])}
    )
    status, body = await _get(client, "?limit=2")
    assert status == 200
    runs = {r["id"]: r for r in body["runs"]}
    assert runs[bad]["points"] == []
    assert runs[odd]["points"] == [
        {"position": 1, "hfr_px": 2, "n_stars": None},
        {"position": 5, "hfr_px": None, "n_stars": None},
    ]
    for query in (
        "?night=2026-1-1",
        "?night=2026-01-01'%20OR%201=1--",
        "?night=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-01-01",  # full-width digits
        "?night=" + "9" * 5000,
        "?limit=0",
        "?limit=101",
        "?limit=-1",
        "?limit=1e2",
        "?limit=%EF%BC%91",
    ):
        status, body = await _get(client, query)
        assert status == 400, query[:40]
        assert ("night" in body["error"]) or ("limit" in body["error"]), query[:40]
