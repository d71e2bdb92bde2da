"""Building blocks of the multi-night tests: a config file, plans, a webhook receiver."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..daemon_helpers import LONGITUDE, free_port


class Receiver:
    """A real HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver._lock:
                    receiver.received.append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notices"

    def notices(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.received)


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        thread.join(5)


def write_daemon_config(
    directory: Path, *, api_port: int, extra: str = "", width: int = 64, height: int = 48
) -> Path:
    """Write a config file: the simulators started in the daemon, fast deadlines, ``extra``."""
    sim_port = free_port()
    devices = "".join(
        f'[devices.{role}]\ndriver = "alpaca"\naddress = "127.0.0.1:{sim_port}"\n'
        "timeout_s = 1.0\nconnect_timeout_s = 2.0\ndownload_timeout_s = 5.0\n"
        for role in ("camera", "filter_wheel", "mount", "safety_monitor")
    )
    text = f"""\
version = 1
[site]
name = "Test"
latitude_deg = 28.76
longitude_deg = {LONGITUDE}
elevation_m = 2326
[telescope]
name = "Test scope"
focal_length_mm = 800
aperture_mm = 200
[data]
directory = "{directory / "data"}"
[server]
host = "127.0.0.1"
port = {api_port}
{devices}
[sequencer]
poll_s = 0.005
backoff_s = 1.0
[pipeline]
enabled = false
[safety]
poll_s = 0.02
# Real seconds: at 0.5 s a loaded CI machine read the monitor as silent, and a spurious
# unsafe spell cut a visit of the campaign test.
read_timeout_s = 2.0
resume_delay_s = 10.0
[simulator]
start = "always"
port = {sim_port}
discovery_port = 0
speed = 100.0
[simulator.camera]
width_px = {width}
height_px = {height}
readout_time_s = 0.5
{extra}
"""
    path = directory / "obsctl.toml"
    path.write_text(text)
    return path


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        result: dict[str, Any] = json.loads(reply.read())
        return result


def post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
