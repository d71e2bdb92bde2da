"""Building blocks for daemon tests: tiny fast observatory configs and target picking."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from obsctl.acquisition.sequence import ExposureStep, Sequence, Target
from obsctl.clock import Clock
from obsctl.config import Config
from obsctl.daemon import Daemon
from obsctl.simulators.mount_model import local_sidereal_time_deg

SPEED = 100.0
LONGITUDE = -17.88


def free_port() -> int:
    """Return a free TCP port of 127.0.0.1 below Linux's ephemeral range (32768-60999).

    A port from ``bind(0)`` is an ephemeral one, which outgoing connections (the daemon's
    own HTTP clients) draw from too: in CI one took the control API's port between this
    call and the daemon's bind ("address already in use").
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32768)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port of 127.0.0.1 in 20000-32767")


# The head of every test config file; `write_config` adds the devices and the rest.
_CONFIG_HEAD = """\
version = 1
[site]
name = "Test"
latitude_deg = {latitude_deg}
longitude_deg = {longitude_deg}
[telescope]
focal_length_mm = 800
aperture_mm = 200
"""


def write_config(
    directory: Path,
    body: str = "",
    *,
    camera: str = "127.0.0.1:1",
    also: tuple[str, ...] = (),
    latitude_deg: float = 28.76,
    longitude_deg: float = LONGITUDE,
    filename: str = "obsctl.toml",
) -> Path:
    """Write a config file: version, site, telescope and Alpaca devices, then ``body``.

    ``camera`` is the ``host:port`` of the Alpaca server of the camera and of the roles in
    ``also`` (``filter_wheel``, ``mount``, ``safety_monitor``); nothing need listen there
    unless the test connects. ``body`` starts inside the ``[devices.camera]`` table, so it
    may add keys to the camera before its first table header.
    """
    path = directory / filename
    head = _CONFIG_HEAD.format(latitude_deg=latitude_deg, longitude_deg=longitude_deg)
    devices = "".join(
        f'[devices.{role}]\ndriver = "alpaca"\naddress = "{camera}"\n' for role in (*also, "camera")
    )
    path.write_text(head + devices + body)
    return path


def daemon_config(data_dir: Path, *, token: str | None = None, **sections: Any) -> Config:
    port = free_port()
    address = f"127.0.0.1:{port}"
    alpaca = {
        "driver": "alpaca",
        "address": address,
        "timeout_s": 1.0,
        "connect_timeout_s": 2.0,
        "download_timeout_s": 5.0,
    }
    data: dict[str, Any] = {
        "version": 1,
        "site": {
            "name": "Test",
            "latitude_deg": 28.76,
            "longitude_deg": LONGITUDE,
            "elevation_m": 2326,
        },
        "telescope": {"name": "Test scope", "focal_length_mm": 800, "aperture_mm": 200},
        "data": {"directory": str(data_dir)},
        "server": {"host": "127.0.0.1", "port": free_port(), "token": token},
        "devices": {
            role: dict(alpaca) for role in ("camera", "filter_wheel", "mount", "safety_monitor")
        },
        "sequencer": {"poll_s": 0.005, "backoff_s": 1.0, "readout_margin_s": 60.0},
        # Pipeline tests turn it on; elsewhere its worker processes only cost start-up time.
        "pipeline": {"enabled": False, "workers": 1, "reference_catalog": "synthetic"},
        "safety": {"poll_s": 0.02, "read_timeout_s": 0.5, "resume_delay_s": 10.0},
        "simulator": {
            "start": "always",
            "port": port,
            "discovery_port": None,
            "speed": SPEED,
            "camera": {"width_px": 128, "height_px": 96, "readout_time_s": 0.5},
        },
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return Config.model_validate(data)


#: The weather limits of `enclosure_config`: rain (2 min), humidity (90 %, 5 % back, 1 min).
RAIN_WAIT_MIN = 2.0
RESUME_DELAY_S = 10.0
FEED_DEADLINE_S = 60.0


def enclosure_config(data_dir: Path, *, humidity_wait_min: float = 1.0, **weather: Any) -> Config:
    """`daemon_config` with a simulated roll-off roof and weather station over Alpaca.

    ``weather`` sets the station's `SimulatedWeatherConfig` (initial values, ``missing``).
    """
    alpaca = {"driver": "alpaca", "timeout_s": 1.0}
    config = daemon_config(
        data_dir,
        safety={
            "resume_delay_s": RESUME_DELAY_S,
            "weather": {
                "limits": [
                    {"quantity": "rain_rate_mm_h", "above": 0.0, "wait_min": RAIN_WAIT_MIN},
                    {
                        "quantity": "humidity_pct",
                        "above": 90,
                        "hysteresis": 5,
                        "wait_min": humidity_wait_min,
                    },
                ],
                "feed_deadline_s": FEED_DEADLINE_S,
            },
        },
    )
    data = config.model_dump(mode="json", exclude_unset=True)
    address = data["devices"]["camera"]["address"]
    data["devices"] |= {role: alpaca | {"address": address} for role in ("dome", "weather")}
    data["simulator"] |= {
        "dome": {"kind": "roll_off", "shutter_time_s": 20.0},
        "weather": {"update_interval_s": 5.0, **weather},
    }
    return Config.model_validate(data)


def overhead_target(name: str = "Zenith field") -> Target:
    """A target on the meridian, high in the sky now (the simulated clock starts at now)."""
    lst = local_sidereal_time_deg(datetime.now(UTC), LONGITUDE)
    return Target(name=name, ra_deg=(lst + 10.0) % 360.0, dec_deg=30.0)


def standard_sequence(lights: int = 2, exposure_s: float = 1.0) -> Sequence:
    return Sequence(
        name="test-sequence",
        target=overhead_target(),
        steps=(
            ExposureStep(image_type="LIGHT", filter="V", exposure_s=exposure_s, count=lights),
            ExposureStep(image_type="LIGHT", filter="R", exposure_s=exposure_s, count=lights),
            ExposureStep(image_type="DARK", exposure_s=exposure_s, count=2),
            ExposureStep(image_type="BIAS", count=2),
        ),
    )


@asynccontextmanager
async def running_daemon(
    config: Config, *, clock: Clock | None = None, **run_kwargs: Any
) -> AsyncIterator[Daemon]:
    """Start a daemon (on `clock`, else the config's) in the background; stop it after."""
    daemon = Daemon(config, clock=clock)
    task = asyncio.create_task(daemon.run(install_signal_handlers=False, **run_kwargs))
    try:
        async with asyncio.timeout(30):
            started = asyncio.create_task(daemon.started.wait())
            await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()
        yield daemon
    finally:
        daemon.request_stop()
        async with asyncio.timeout(30):
            await task


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


def on_each_light_frame(running: Any, record: Callable[[], None]) -> asyncio.Task[None]:
    """Call `record` once as each light frame of a running daemon starts exposing.

    The daemon's activity is polled every millisecond (real time); cancel the task after.
    Tests read the simulators' truth (focus, pointing) in `record`.
    """

    async def watch() -> None:
        seen = None
        while True:
            a = running.activity
            if a.state == "exposing" and a.image_type == "LIGHT":
                key = (a.sequence_id, a.step_index, a.frame_index)
                if key != seen:
                    seen = key
                    record()
            await asyncio.sleep(0.001)

    return asyncio.create_task(watch())
