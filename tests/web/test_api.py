"""The control API over real HTTP: status, sequences, log, events, and the bearer token."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from obsctl.cli import main as cli_main

from ..daemon_helpers import (
    daemon_config,
    free_port,
    running_daemon,
    standard_sequence,
    write_config,
)


async def test_status_sequences_log_and_events(tmp_path) -> None:
    config = daemon_config(tmp_path / "data")
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        url = daemon.api_url
        async with http.get(f"{url}/api/status") as resp:
            status = await resp.json()
        assert status["activity"]["state"] == "idle"
        assert status["safety"]["safe"] is True
        assert set(status["devices"]) == {"camera", "filter_wheel", "mount"}
        assert status["devices"]["camera"]["state"] == "IDLE"

        events: list[dict] = []
        subscribed, finished = asyncio.Event(), asyncio.Event()

        async def listen() -> None:
            async with http.get(f"{url}/api/events") as resp:
                async for line in resp.content:
                    if line.startswith(b": connected"):  # sent once the stream is subscribed
                        subscribed.set()
                    elif line.startswith(b"data: "):
                        event = json.loads(line[6:])
                        events.append(event)
                        if event["kind"] == "sequence" and event["state"] == "done":
                            finished.set()

        listener = asyncio.create_task(listen())
        async with asyncio.timeout(10):
            await subscribed.wait()
        body = json.loads(standard_sequence(lights=1).model_dump_json())
        async with http.post(f"{url}/api/sequences", json=body) as resp:
            assert resp.status == 201
            sid = (await resp.json())["id"]
        async with asyncio.timeout(30):
            await finished.wait()
        listener.cancel()
        done = next(e for e in events if e["kind"] == "sequence" and e["state"] == "done")
        assert done["id"] == sid
        # A sequence is done once its frames are stored: their events come before.
        before = events[: events.index(done)]
        assert sum(e["kind"] == "frame" for e in before) == 6
        assert any(e["kind"] == "activity" and e["state"] == "exposing" for e in events)

        async with http.get(f"{url}/api/exposures", params={"type": "dark"}) as resp:
            darks = await resp.json()
        assert len(darks) == 2 and all(r["image_type"] == "DARK" for r in darks)
        async with http.get(f"{url}/api/sequences") as resp:
            assert (await resp.json())[0]["state"] == "done"
        async with http.post(f"{url}/api/sequences", json={"name": "x"}) as resp:
            assert resp.status == 400
            assert "steps" in (await resp.json())["error"]
        async with http.post(f"{url}/api/sequences/999/stop", json={}) as resp:
            assert resp.status == 404


async def test_mutations_need_the_token(tmp_path) -> None:
    config = daemon_config(tmp_path / "data", token="s3cret")
    body = json.loads(standard_sequence(lights=1).model_dump_json())
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        url = daemon.api_url
        async with http.post(f"{url}/api/sequences", json=body) as resp:
            assert resp.status == 401
        bad = {"Authorization": "Bearer wrong"}
        async with http.post(f"{url}/api/abort", json={}, headers=bad) as resp:
            assert resp.status == 401
        async with http.get(f"{url}/api/status") as resp:
            assert resp.status == 200  # reading needs no token
        good = {"Authorization": "Bearer s3cret"}
        async with http.post(f"{url}/api/sequences", json=body, headers=good) as resp:
            assert resp.status == 201
            sid = (await resp.json())["id"]
        async with http.post(f"{url}/api/sequences/{sid}/stop", json={}, headers=good) as resp:
            assert resp.status == 200
        assert daemon.state.log_db.sequence(sid)["state"] == "stopped"


async def test_obsctl_status_command(tmp_path, capsys) -> None:
    config = daemon_config(tmp_path / "data")
    async with running_daemon(config) as daemon:
        code = await asyncio.to_thread(cli_main, ["status", "--url", daemon.api_url])
    out = capsys.readouterr().out
    assert code == 0
    assert "activity  idle" in out and "SAFE" in out and "camera" in out


async def test_obsctl_status_reaches_a_daemon_bound_beyond_loopback(tmp_path, capsys) -> None:
    """A wildcard bind is asked on loopback, with the configured token."""
    port = free_port()
    server = {"host": "0.0.0.0", "port": port}
    config = daemon_config(tmp_path / "data", token="s3cret-token", server=server)
    body = f'\n[server]\nhost = "0.0.0.0"\nport = {port}\ntoken = "s3cret-token"\n'
    path = write_config(tmp_path, body)
    async with running_daemon(config):
        code = await asyncio.to_thread(cli_main, ["--config", str(path), "status"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "activity  idle" in captured.out


def test_transparency_from_zero_points() -> None:
    from obsctl.web.api import add_transparency

    rows = [
        {"night": "n1", "filter": "V", "zero_point": 21.0},
        {"night": "n1", "filter": "V", "zero_point": 20.2474},  # half the light: 0.7526 mag
        {"night": "n1", "filter": "R", "zero_point": 21.5},
        {"night": "n1", "filter": "R", "zero_point": None},
    ]
    add_transparency(rows, {})
    assert [r["transparency"] for r in rows[:3]] == pytest.approx([1.0, 0.5, 1.0], abs=1e-4)
    assert rows[3]["transparency"] is None
    add_transparency(rows, {"V": 21.7526})  # a clear-sky reference: even the best was 0.5
    assert rows[0]["transparency"] == pytest.approx(0.5, abs=1e-4)
    assert rows[2]["transparency"] == pytest.approx(1.0)  # no reference for R: night's best
