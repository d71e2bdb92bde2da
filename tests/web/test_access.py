"""Who may talk to the daemon, over real HTTP: Host, Origin, Content-Type and the token."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from pathlib import Path

import aiohttp
import pytest

from obsctl.config import load_config
from obsctl.errors import ConfigError
from obsctl.store.datadir import DataDir

from ..daemon_helpers import daemon_config, running_daemon, standard_sequence, write_config
from .web_helpers import NIGHT, make_frame

SEQUENCE = json.loads(standard_sequence(lights=1).model_dump_json())


def pending(daemon) -> list[str]:
    return [str(r["name"]) for r in daemon.state.log_db.sequences()]


async def raw_request(port: int, head: str) -> tuple[int, bytes]:
    """Send a request exactly as written (no client fixes its Host) and read the reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        await writer.drain()
        reply = await reader.read()
    finally:
        writer.close()
    status = int(reply.split(b" ", 2)[1])
    return status, reply.partition(b"\r\n\r\n")[2]


async def test_the_host_must_name_this_server(tmp_path) -> None:
    config = daemon_config(tmp_path / "data", server={"allowed_hosts": ["Obs.Example.org"]})
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        port = config.server.port
        url = f"http://127.0.0.1:{port}/api/status"
        for host in (
            f"127.0.0.1:{port}",
            "127.0.0.1",
            f"localhost:{port}",
            "LOCALHOST.",
            f"[::1]:{port}",
            "[::ffff:127.0.0.1]",
            f"obs.example.org:{port}",
            "OBS.EXAMPLE.ORG",
        ):
            async with http.get(url, headers={"Host": host}) as resp:
                assert resp.status == 200, host
        for host in (
            f"evil.example:{port}",  # DNS rebinding: a foreign name resolved to 127.0.0.1
            "127.0.0.1.nip.io",
            "example.org",
            f"[fe80::1]:{port}",  # an address, but not this server's
            "192.0.2.7",
            "[::1",  # malformed: unclosed bracket, bare IPv6, bad port, empty
            f"::1:{port}",
            "localhost:99999",
            "localhost:http",
            ":8080",
        ):
            async with http.get(url, headers={"Host": host}) as resp:
                assert resp.status == 400, host
                assert "host" in (await resp.json())["error"].lower()
            # The page, the event stream and frame files alike.
            for path in ("/", "/api/events", f"/data/raw/{NIGHT}/frame_001.fits"):
                async with http.get(
                    f"http://127.0.0.1:{port}{path}", headers={"Host": host}
                ) as resp:
                    assert resp.status == 400, (host, path)
        async with http.post(
            f"http://127.0.0.1:{port}/api/sequences",
            json=SEQUENCE,
            headers={"Host": f"evil.example:{port}"},
        ) as resp:
            assert resp.status == 400
        status, _ = await raw_request(port, "GET /api/status HTTP/1.0\n")  # no Host at all
        assert status == 400
        assert pending(daemon) == []


async def test_cross_site_requests_change_nothing(tmp_path) -> None:
    async with (
        running_daemon(daemon_config(tmp_path / "data")) as daemon,
        aiohttp.ClientSession() as http,
    ):
        url = daemon.api_url
        body = json.dumps(SEQUENCE)
        # What any page may send without asking: forms and text/plain, from anywhere.
        for content_type in (
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            None,
        ):
            headers = {"Origin": "http://evil.example"}
            if content_type:
                headers["Content-Type"] = content_type
            for path in ("/api/sequences", "/api/abort", "/api/sequences/1/stop"):
                async with http.post(f"{url}{path}", data=body, headers=headers) as resp:
                    assert resp.status in (403, 415), (content_type, path)
                    assert (await resp.json())["error"]
            # Without an Origin (not a browser), still not JSON: refused, and said why.
            plain = {} if content_type is None else {"Content-Type": content_type}
            async with http.post(f"{url}/api/sequences", data=body, headers=plain) as resp:
                assert resp.status == 415, content_type
                assert "application/json" in (await resp.json())["error"]
        # JSON from another origin, a sandboxed frame ("null") or two origins at once.
        for origin in (
            "http://evil.example",
            "null",
            f"http://localhost.evil.example:{daemon.api_url.rsplit(':', 1)[1]}",
            "http://127.0.0.1:1",
            "file://",
        ):
            async with http.post(
                f"{url}/api/sequences", json=SEQUENCE, headers={"Origin": origin}
            ) as resp:
                assert resp.status == 403, origin
                assert "cross-origin" in (await resp.json())["error"]
        assert pending(daemon) == []
        # Same origin, or no Origin at all, with JSON: accepted (the scheme's case is free).
        for headers in (
            {"Origin": url},
            {"Origin": url.upper().replace("HTTP://", "Http://")},
            {},
            {"Content-Type": "Application/JSON; charset=utf-8"},
        ):
            async with http.post(
                f"{url}/api/sequences",
                data=body,
                headers={"Content-Type": "application/json", **headers},
            ) as resp:
                assert resp.status == 201, headers
        assert len(pending(daemon)) == 4


async def test_the_token_is_needed_to_change_anything(tmp_path) -> None:
    config = daemon_config(tmp_path / "data", token="s3cret")
    async with running_daemon(config) as daemon, aiohttp.ClientSession() as http:
        url = f"{daemon.api_url}/api/sequences"
        for authorization in (
            None,
            "Bearer",
            "Bearer ",
            "Bearer wrong",
            "Bearer s3cret2",
            "Token s3cret",
            "s3cret",
            "Basic " + base64.b64encode(b"observer:wrong").decode(),
            "Basic not-base64!",
            "Bearer s3crét",
        ):
            headers = {} if authorization is None else {"Authorization": authorization}
            async with http.post(url, json=SEQUENCE, headers=headers) as resp:
                assert resp.status == 401, authorization
                assert resp.headers.getall("WWW-Authenticate")[0].startswith("Basic ")
        assert pending(daemon) == []
        async with http.get(f"{daemon.api_url}/api/status") as resp:
            assert resp.status == 200  # on loopback, reading needs no token
        for authorization in (
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER   s3cret ",
            "Basic " + base64.b64encode(b"anyone:s3cret").decode(),
            "basic " + base64.b64encode(b":s3cret").decode(),
        ):
            async with http.post(
                url, json=SEQUENCE, headers={"Authorization": authorization}
            ) as resp:
                assert resp.status == 201, authorization


@pytest.fixture
def wildcard_port() -> int:
    """A port free on every interface (the daemon below binds to all of them)."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


async def test_beyond_loopback_every_request_needs_the_token(tmp_path, wildcard_port) -> None:
    data = tmp_path / "data"
    log_db = DataDir(data).open_log()
    make_frame(data, log_db, 1)
    log_db.close()
    config = daemon_config(
        data, server={"host": "0.0.0.0", "port": wildcard_port, "token": "s3cret"}
    )
    assert not config.server.loopback
    base = f"http://127.0.0.1:{wildcard_port}"
    paths = (
        "/",
        "/static/app.js",
        "/api/status",
        "/api/sequences",
        "/api/exposures",
        f"/api/extinction?night={NIGHT}",
        "/api/quicklook/info",
        "/api/quicklook/log",
        "/api/quicklook/frames/1/preview.png",
        f"/data/raw/{NIGHT}/frame_001.fits",
        "/api/events",
    )
    async with running_daemon(config), aiohttp.ClientSession() as http:
        for path in paths:
            async with http.get(base + path) as resp:
                assert resp.status == 401, path
                # A browser answers the Basic challenge with its login prompt.
                assert "Basic" in resp.headers.getall("WWW-Authenticate")[0]
                assert b"SIMPLE" not in await resp.read()
            async with http.get(base + path, headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401, path
        for authorization in (
            "bearer s3cret",
            "Basic " + base64.b64encode(b"observer:s3cret").decode(),
        ):
            for path in paths[:-1]:
                async with http.get(base + path, headers={"Authorization": authorization}) as resp:
                    assert resp.status == 200, (authorization, path)
            events = base + "/api/events"
            async with http.get(events, headers={"Authorization": authorization}) as resp:
                assert resp.status == 200
                assert await resp.content.readline() == b": connected\n"


def test_blank_tokens_and_bad_host_names_are_refused_at_start(tmp_path: Path) -> None:
    for token in ('""', '"   "', '"\\t"', '"two words"', '"caf\\u00e9"'):
        path = write_config(tmp_path, f"[server]\ntoken = {token}\n")
        with pytest.raises(ConfigError) as failure:
            load_config(path)
        assert "server" in str(failure.value) and "token" in str(failure.value), token
    path = write_config(tmp_path, '[server]\nhost = "0.0.0.0"\ntoken = "  "\n')
    with pytest.raises(ConfigError, match="token"):
        load_config(path)
    secret = write_config(tmp_path, '[server]\ntoken = "my secret"\n')
    with pytest.raises(ConfigError) as failure:
        load_config(secret)
    assert "my secret" not in str(failure.value)  # a secret is never printed
    for entry in ('"obs.example.org:8080"', '"http://obs"', '"*.example.org"', '""', '"a b"'):
        path = write_config(tmp_path, f"[server]\nallowed_hosts = [{entry}]\n")
        with pytest.raises(ConfigError, match="allowed_hosts"):
            load_config(path)
    path = write_config(
        tmp_path, '[server]\nallowed_hosts = ["Obs.Example.org.", "[::1]", "192.0.2.10"]\n'
    )
    assert load_config(path).server.allowed_hosts == ("obs.example.org", "::1", "192.0.2.10")
