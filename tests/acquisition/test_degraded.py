"""Degraded operation (issue 15): a device down costs only what needs it, and comes back.

Every test runs the daemon against the Alpaca simulators over real HTTP; "a device down" is
an address where nothing listens (then a simulator started there) or an injected fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from astropy.io import fits
from playwright.async_api import async_playwright

from obsctl.acquisition.health import HealthBoard, Reconnector
from obsctl.acquisition.sequence import ExposureStep, Sequence
from obsctl.cli import main
from obsctl.clock import ScaledClock
from obsctl.config import Config
from obsctl.daemon import Daemon
from obsctl.devices import DeviceSet
from obsctl.drivers.registry import open_devices
from obsctl.events import EventBus
from obsctl.operations import Operations
from obsctl.simulators.faults import Fault
from obsctl.simulators.observatory import RunningSimulators, running_simulators
from obsctl.store.datadir import DataDir

from ..daemon_helpers import (
    SPEED,
    daemon_config,
    free_port,
    overhead_target,
    running_daemon,
    standard_sequence,
    wait_for,
    write_config,
)
from ..web.conftest import CHROMIUM, CHROMIUM_ARGS, require_chromium

# Reconnection every few simulated seconds: a fraction of a real second at the test speed.
# A wide readout margin: on a loaded machine a light frame may take longer than 0.6 real
# seconds to render, and a retake is not what these tests are about.
RECONNECT = {"reconnect_s": 5.0, "reconnect_max_s": 20.0, "readout_margin_s": 300.0}


def config_down_at(data_dir: Path, role: str, port: int) -> Config:
    """A test config with the device of ``role`` at ``127.0.0.1:port`` (nothing listens yet)."""
    device = {
        "driver": "alpaca",
        "address": f"127.0.0.1:{port}",
        "timeout_s": 1.0,
        "connect_timeout_s": 2.0,
        "download_timeout_s": 5.0,
    }
    return daemon_config(data_dir, sequencer=RECONNECT, devices={role: device})


@asynccontextmanager
async def simulators_at(config: Config, port: int) -> AsyncIterator[RunningSimulators]:
    """Start a second simulated observatory at ``port``: the device that was down is back."""
    assert config.simulator is not None
    async with running_simulators(
        config.simulator, config.site, config.telescope, port=port
    ) as sims:
        yield sims


async def status(daemon: Daemon) -> dict[str, Any]:
    """GET /api/status from the daemon's control API."""
    async with aiohttp.ClientSession() as http, http.get(f"{daemon.api_url}/api/status") as r:
        assert r.status == 200
        return dict(await r.json())


def device_events(daemon: Daemon) -> list[tuple[str, str]]:
    """The ``device`` events published so far: (role, state)."""
    recent = daemon.running.events.recent
    return [(e["role"], e["state"]) for e in recent if e["kind"] == "device"]


def stored_types(daemon: Daemon) -> list[str]:
    return [r["image_type"] for r in daemon.running.log_db.exposures()]


def waiting_for(daemon: Daemon, role: str) -> bool:
    activity = daemon.running.activity
    reason = activity.paused_reason or ""
    return activity.state == "waiting_device" and f"{role} down" in reason


async def test_mount_down_at_start_darks_run_lights_wait_then_complete(tmp_path) -> None:
    dead = free_port()
    config = config_down_at(tmp_path / "data", "mount", dead)
    async with running_daemon(config) as daemon:
        assert device_events(daemon) == [("mount", "down")]
        sid = daemon.enqueue(standard_sequence(lights=1))
        # Darks and biases are stored; the lights (which need the mount) wait.
        await wait_for(lambda: len(stored_types(daemon)) == 4 and waiting_for(daemon, "mount"))
        assert stored_types(daemon) == ["DARK", "DARK", "BIAS", "BIAS"]
        seen = await status(daemon)
        assert "mount down" in seen["activity"]["paused_reason"]
        assert seen["activity"]["state"] == "waiting_device"
        mount = seen["health"]["mount"]
        assert mount["connected"] is False and mount["since"]
        assert f"127.0.0.1:{dead}" in mount["last_error"] or "mount" in mount["last_error"]
        assert seen["health"]["camera"]["connected"] is True
        assert daemon.running.log_db.sequence(sid)["state"] == "running"

        async with simulators_at(config, dead):  # the mount is back
            await wait_for(lambda: daemon.running.log_db.sequence(sid)["state"] == "done")
            seen = await status(daemon)
        assert seen["health"]["mount"]["connected"] is True
        assert seen["activity"]["paused_reason"] is None
        assert device_events(daemon) == [("mount", "down"), ("mount", "up")]
        rows = daemon.running.log_db.exposures()
    assert [r["image_type"] for r in rows] == ["DARK", "DARK", "BIAS", "BIAS", "LIGHT", "LIGHT"]
    for row in rows[4:]:  # taken with the mount: its position is in the header
        header = fits.getheader(tmp_path / "data" / row["file_path"])
        assert "RA" in header and header["OBJECT"] == "Zenith field"


async def test_camera_down_the_daemon_waits_and_does_not_exit(tmp_path) -> None:
    dead = free_port()
    config = config_down_at(tmp_path / "data", "camera", dead)
    darks = Sequence(
        name="darks", steps=(ExposureStep(image_type="DARK", exposure_s=1.0, count=2),)
    )
    async with running_daemon(config) as daemon:
        sid = daemon.enqueue(darks)
        await wait_for(lambda: waiting_for(daemon, "camera"))
        await daemon.clock.sleep(30.0)  # several reconnection attempts: nothing is taken
        assert stored_types(daemon) == []
        seen = await status(daemon)
        assert seen["health"]["camera"]["connected"] is False
        assert "camera down" in seen["activity"]["paused_reason"]
        async with simulators_at(config, dead):
            await wait_for(lambda: daemon.running.log_db.sequence(sid)["state"] == "done")
        assert device_events(daemon) == [("camera", "down"), ("camera", "up")]
        assert stored_types(daemon) == ["DARK", "DARK"]


async def test_mount_lost_mid_night_lights_wait_darks_run(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    config = daemon_config(tmp_path / "data", sequencer=RECONNECT)
    sequence = Sequence(
        name="lost mount",
        target=overhead_target(),
        steps=(
            ExposureStep(image_type="LIGHT", filter="V", exposure_s=1.0, count=2),
            ExposureStep(image_type="DARK", exposure_s=1.0, count=2),
        ),
    )
    async with running_daemon(config) as daemon:
        assert device_events(daemon) == []  # all connected at start: nothing announced
        faults = daemon.simulators.faults("telescope", 0)
        faults.set(Fault(kind="drop"))  # every request to the mount: connection closed
        sid = daemon.enqueue(sequence)
        await wait_for(lambda: stored_types(daemon) == ["DARK", "DARK"])
        await wait_for(lambda: waiting_for(daemon, "mount"))
        assert (await status(daemon))["health"]["mount"]["connected"] is False
        faults.clear()
        await wait_for(lambda: daemon.running.log_db.sequence(sid)["state"] == "done")
        assert device_events(daemon) == [("mount", "down"), ("mount", "up")]
        actions = [f["action"] for f in daemon.running.log_db.failures()]
        assert stored_types(daemon) == ["DARK", "DARK", "LIGHT", "LIGHT"]
    # The policy's retries, then its reconnection, then the wait instead of a skip.
    assert "wait for reconnection" in actions and "skip" not in actions


def test_expose_dark_needs_no_mount(tmp_path) -> None:
    port = free_port()
    body = f"""
[devices.mount]
driver = "alpaca"
address = "127.0.0.1:{free_port()}"
[simulator]
start = "always"
port = {port}
discovery_port = {free_port()}
speed = 100.0
[simulator.camera]
width_px = 64
height_px = 48
"""
    config = write_config(tmp_path, body, camera=f"127.0.0.1:{port}", also=("filter_wheel",))
    for kind in ("dark", "bias"):
        out = tmp_path / f"{kind}.fits"
        args = ["--config", str(config), "expose", "--type", kind, "--exptime", "1"]
        assert main([*args, "--out", str(out)]) == 0
        assert fits.getheader(out)["IMAGETYP"] == kind.upper()
    # A light does need the mount (its position goes in the header): a clear failure.
    args = ["--config", str(config), "expose", "--exptime", "1", "--out", str(tmp_path / "l")]
    assert main(args) != 0


async def test_the_page_says_what_waits_for_which_device(tmp_path) -> None:
    require_chromium()
    config = config_down_at(tmp_path / "data", "mount", free_port())
    async with running_daemon(config) as daemon, async_playwright() as pw:
        daemon.enqueue(standard_sequence(lights=1))
        await wait_for(lambda: waiting_for(daemon, "mount"))
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{daemon.api_url}/")
            await page.wait_for_selector("#paused", state="visible", timeout=15_000)
            banner = await page.inner_text("#paused")
            assert banner.startswith("acquisition paused: waiting for a device: mount down:")
            await page.wait_for_function(
                "document.querySelector('#state').textContent.includes('DOWN')"
            )
            state = await page.inner_text("#state")
            assert "mount" in state and "camera" in state and "up" in state
            assert errors == []
        finally:
            await browser.close()


async def test_reconnection_backs_off_then_connects(tmp_path, caplog) -> None:
    """Attempts at reconnect_s, doubling up to reconnect_max_s; announced down once, up once."""
    caplog.set_level(logging.INFO, logger="obsctl.acquisition.health")
    dead = free_port()
    config = config_down_at(tmp_path / "data", "camera", dead)
    assert config.simulator is not None
    config = config.model_copy(
        update={"simulator": config.simulator.model_copy(update={"start": "never"})}
    )
    clock = ScaledClock(SPEED)
    bus = EventBus()
    async with open_devices(config, clock=clock) as devices:
        board = HealthBoard(DeviceSet(camera=devices.camera), bus, clock)
        reconnector = Reconnector(
            board, Operations(config.sequencer, clock), config.sequencer, clock
        )
        await reconnector.connect_all()
        assert board.down().keys() == {"camera"}
        task = asyncio.create_task(reconnector.run())

        def waits() -> list[str]:
            lines = (r.getMessage() for r in caplog.records)
            return [line for line in lines if "next attempt in" in line]

        try:
            await wait_for(lambda: len(waits()) >= 4)
            # The first wait is reconnect_s (5 s), then 10 s, then reconnect_max_s (20 s).
            assert waits()[:4] == [
                f"camera still down; next attempt in {s} s" for s in (10, 20, 20, 20)
            ]
            async with simulators_at(config, dead):
                await wait_for(lambda: board.is_up("camera"))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    events = [(e["role"], e["state"], e["reason"][:7]) for e in bus.recent if e["kind"] == "device"]
    assert events == [("camera", "down", "camera:"), ("camera", "up", "connect")]
    assert board.as_dict()["camera"]["connected"] is True


async def test_until_idle_skips_what_waits_for_a_device_that_is_down(tmp_path) -> None:
    """``obsctl run --until-idle`` runs the queue once: a step that needs a device that is
    down is skipped (the sequence ends incomplete), not waited for forever."""
    config = config_down_at(tmp_path / "data", "mount", free_port())
    daemon = Daemon(config)
    sequences = [standard_sequence(lights=1)]
    async with asyncio.timeout(30):
        await daemon.run(sequences, until_idle=True, install_signal_handlers=False)
    log_db = DataDir(config.data.directory).open_log(existing=True)
    try:
        (row,) = log_db.sequences()
        types = [r["image_type"] for r in log_db.exposures()]
    finally:
        log_db.close()
    assert row["state"] == "incomplete"
    assert types == ["DARK", "DARK", "BIAS", "BIAS"]  # what needs only the camera was taken
