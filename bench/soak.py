"""Soak: simulated nights at high speed with device faults, unsafe spells, API traffic, pipeline.

One daemon runs for ``--minutes`` of real time on a simulated clock ``--speed`` times faster
than real time (1000: a day in 86 s, several nights in a few minutes), with the pipeline on.
Around it:

- the Alpaca simulators, served from a thread and event loop of their own: the safety
  supervisor has its own thread too, and simulators on the daemon's loop would tie the park
  to that loop again (a slow daemon would look like a slow safety monitor);
- a night runner (`obsctl.night.runner.NightRunner`) for each night in turn against the one
  running daemon, not a daemon restarted between nights: memory must stay flat across nights
  in one process, and a restart would hide a slow leak (restarts are `tests/test_crash.py`'s);
- random device faults through the simulators' fault injectors (HTTP 500, dropped
  connections, hangs, delays, ASCOM errors, corrupt and truncated images, a stuck readout,
  slow downloads) on the camera, filter wheel, mount and safety monitor, and unsafe spells;
- a client on a thread of its own hammering the control API: status, paged listings
  followed through their ``Link`` headers, the event stream, previews, and sequences POSTed
  (some stopped again).

When the time is up the night is cut, the faults cleared, the sequences stopped, the
pipeline drained (at most ``--drain-minutes``) and the daemon shut down. Then it prints:

- frames taken, stored, logged and processed. Taken is what the daemon downloaded in full
  (its ``downloaded`` events, tied to the sequence, step and frame of the activity before
  them); the camera simulator's own log says how many exposures it started, read out and had
  aborted. Stored is files in ``raw/``, logged is exposure rows, processed is processing rows
  ``done`` or ``failed`` with a reason. Flats are special: a flat whose level is off is a test
  exposure, downloaded and by design not stored, so for flats stored is checked to be a
  subset of what was downloaded, and the others must match frame for frame;
- failures by kind (the failures table), the API's replies by status;
- unsafe -> park latency: from the monitor turning unsafe to the supervisor sending the park
  (`SafetySupervisor.last_park_sent`), and to the park arriving at the mount simulator (while
  the mount was not parked already); spells are only measured while neither the mount nor the
  safety monitor has a fault (either would be the park's own path failing);
- the process's memory (VmRSS; the daemon with the simulators and the API client, which run
  in this process; and the blocks Python's allocator holds, to tell its heap from native
  memory) and the pipeline workers' over time, with the slope per hour after the first night
  (start-up, imports, the first masters and the caches filling).

"nothing lost" is printed only when the figures agree. Nothing is asserted: the exit code is
0 unless the script itself crashed.

Usage: ``python bench/soak.py [--minutes N] [--speed X] [--seed N] [--workers W] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import contextlib
import json
import logging
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
from simulated import free_port

from obsctl.acquisition.safety import SafetySupervisor
from obsctl.clock import ScaledClock
from obsctl.config import Config
from obsctl.daemon import Daemon
from obsctl.events import Event
from obsctl.night.ephemeris import cached_night
from obsctl.night.plan import Plan, parse_plan
from obsctl.night.runner import NightRunner, NightSummary
from obsctl.night.timeline import first_event, simulation_config
from obsctl.simulators.faults import Fault
from obsctl.simulators.mount_model import local_sidereal_time_deg
from obsctl.simulators.observatory import RunningSimulators, running_simulators
from obsctl.store.exposure_log import ExposureLog

FIRST_NIGHT = date(2026, 11, 25)
LATITUDE, LONGITUDE = 28.76, -17.88
Key = tuple[int, int, int]  # sequence, step, frame: one frame of a sequence


def soak_config(data: Path, sim_port: int, speed: float, workers: int) -> Config:
    alpaca = {
        "driver": "alpaca",
        "address": f"127.0.0.1:{sim_port}",
        "timeout_s": 2.0,
        "connect_timeout_s": 10.0,
        "download_timeout_s": 10.0,
    }
    config = Config.model_validate(
        {
            "version": 1,
            "site": {
                "name": "Soak",
                "latitude_deg": LATITUDE,
                "longitude_deg": LONGITUDE,
                "elevation_m": 2326,
            },
            "telescope": {"name": "Soak scope", "focal_length_mm": 800, "aperture_mm": 200},
            "data": {"directory": str(data)},
            "server": {"port": free_port()},
            "devices": {
                "camera": alpaca,
                "filter_wheel": alpaca,
                "mount": alpaca,
                "safety_monitor": {**alpaca, "timeout_s": 1.0},
            },
            # Real-second polls: 5 ms is 5 simulated seconds at 1000x.
            "sequencer": {"poll_s": 0.005, "backoff_s": 5.0},
            "safety": {"poll_s": 0.02, "read_timeout_s": 1.0, "resume_delay_s": 300.0},
            "pipeline": {"workers": workers, "reference_catalog": "synthetic"},
            "night": {"cooler_set_point_c": -10.0},
            "simulator": {
                "start": "never",  # served from the simulator thread below
                "port": sim_port,
                "discovery_port": None,
                "speed": speed,
                "camera": {"width_px": 640, "height_px": 480, "readout_time_s": 2.0},
                "sky": {"follow_sun_moon": True},
                "mount": {"slew_rate_deg_s": 4.0, "settle_s": 5.0},
            },
        }
    )
    return simulation_config(config, speed)


def soak_plan() -> Plan:
    """Targets around the sky, each repeated through the night: the pipeline is never idle."""

    def target(name: str, priority: int, every_min: float, *steps: tuple[str, float, int]):
        return {
            "name": name,
            "catalog": name,
            "priority": priority,
            "constraints": {"min_alt_deg": 25},
            "repeat": {"every_min": every_min},
            "dither_arcsec": 20.0,
            "steps": [{"filter": f, "exposure_s": s, "count": n} for f, s, n in steps],
        }

    return parse_plan(
        {
            "version": 1,
            "name": "soak",
            "night": {"overhead_s": 30, "slew_s": 60},
            "calibration": {
                "flats": {
                    "when": ["dusk", "dawn"],
                    "filters": ["V", "R"],
                    "count": 3,
                    "sun_alt_max_deg": -2,
                    "sun_alt_min_deg": -9,
                },
                "darks": {"bias_count": 5, "dark_count": 3},
            },
            "targets": [
                target("M 31", 5, 90, ("V", 120, 3), ("R", 120, 2)),
                target("NGC 7789", 4, 60, ("V", 90, 3)),
                target("M 45", 3, 75, ("B", 60, 2), ("V", 60, 2)),
                target("M 42", 4, 60, ("V", 60, 4)),
                target("M 67", 3, 60, ("R", 120, 3)),
                target("M 81", 2, 45, ("V", 90, 2)),
                target("NGC 188", 1, 30, ("V", 60, 2)),
            ],
        },
        source="soak plan",
    )


# --------------------------------------------------------------------------- simulators


class SimulatorLog(logging.Handler):
    """The simulators' own account, from their log: exposures, and parks as they arrive."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.exposures: collections.Counter[str] = collections.Counter()
        self.parks: list[float] = []  # time.monotonic() of each park reaching the mount

    def emit(self, record: logging.LogRecord) -> None:
        # "simulated exposure %d started: ...", "... %d ready", "... aborted", "... failed"
        words = str(record.msg).split()
        if words[:2] == ["simulated", "exposure"] and len(words) > 3:
            self.exposures[words[3].rstrip(":")] += 1
        elif record.msg == "simulated mount parking":
            self.parks.append(time.monotonic())


@dataclass
class Chaos:
    """Random device faults and unsafe spells, run on the simulators' loop."""

    sims: RunningSimulators
    supervisor: Callable[[], SafetySupervisor]
    parks: list[float]
    rng: random.Random
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    spells: int = 0
    spells_while_unsafe: int = 0
    spells_with_fault: int = 0
    sent_s: list[float] = field(default_factory=list)
    arrived_s: list[float] = field(default_factory=list)
    no_park: int = 0
    _measuring: bool = False

    MENU: ClassVar[dict[str, tuple[str, ...]]] = {
        "camera": (
            "http500", "drop", "hang", "delay", "ascom_error", "corrupt_image",
            "truncate_image", "image_never_ready", "throttle_image",
        ),
        "filterwheel": ("http500", "drop", "hang", "delay", "ascom_error"),
        "telescope": ("http500", "drop", "hang", "delay", "ascom_error"),
        "safetymonitor": ("http500", "drop", "hang", "delay"),
    }  # fmt: skip
    PARK_PATH: ClassVar[tuple[str, ...]] = ("telescope", "safetymonitor")

    def _park_path_faulty(self) -> bool:
        return any(self.sims.faults(d).fault is not None for d in self.PARK_PATH)

    async def device_faults(self) -> None:
        while True:
            await asyncio.sleep(self.rng.expovariate(1 / 4.0))
            device = self.rng.choice(list(self.MENU))
            if self._measuring and device in self.PARK_PATH:
                continue
            kind = self.rng.choice(self.MENU[device])
            fault = Fault(
                kind=kind,  # type: ignore[arg-type]
                seconds=self.rng.uniform(0.1, 1.5),
                rate_mb_s=2.0,
                count=self.rng.choice((1, 2, 3, None)),
            )
            injector = self.sims.faults(device)
            injector.set(fault)
            self.faults[f"{device} {kind}"] += 1
            try:
                await asyncio.sleep(self.rng.uniform(0.3, 3.0))
            finally:
                injector.clear()  # a hang and a stuck readout last until cleared

    async def weather(self) -> None:
        monitor = self.sims.observatory.safety_monitor
        mount = self.sims.observatory.mount
        while True:
            await asyncio.sleep(self.rng.expovariate(1 / 12.0))
            self.spells += 1
            if self._park_path_faulty():
                self.spells_with_fault += 1
                await self._spell(monitor)
                continue
            self._measuring = True
            try:
                supervisor = self.supervisor()
                was_safe, parked = supervisor.is_safe, mount.at_park
                start = time.monotonic()
                monitor.set_safe(False)
                if not was_safe:
                    self.spells_while_unsafe += 1
                else:
                    await self._measure(supervisor, start, parked)
            finally:
                self._measuring = False
            await self._spell(monitor, already_unsafe=True)

    async def _measure(self, supervisor: SafetySupervisor, start: float, parked: bool) -> None:
        deadline = start + 10.0
        while time.monotonic() < deadline:
            sent = supervisor.last_park_sent
            if sent is not None and sent > start:
                self.sent_s.append(sent - start)
                break
            await asyncio.sleep(0.001)
        else:
            self.no_park += 1
            return
        if parked:
            return  # a parked mount is not parked again: nothing arrives
        while time.monotonic() < deadline:
            arrived = [t for t in self.parks if t > start]
            if arrived:
                self.arrived_s.append(arrived[0] - start)
                return
            await asyncio.sleep(0.001)

    async def _spell(self, monitor: Any, *, already_unsafe: bool = False) -> None:
        if not already_unsafe:
            monitor.set_safe(False)
        try:
            await asyncio.sleep(self.rng.uniform(0.5, 4.0))
        finally:
            monitor.set_safe(True)

    def calm(self) -> None:
        for device in self.MENU:
            self.sims.faults(device).clear()
        self.sims.observatory.safety_monitor.set_safe(True)


class SimulatorThread:
    """The Alpaca simulators on a thread and event loop of their own."""

    def __init__(self, config: Config, clock: ScaledClock) -> None:
        self.config = config
        self.clock = clock
        self.sims: RunningSimulators | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="simulators", daemon=True)

    def start(self) -> RunningSimulators:
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure
        assert self.sims is not None
        return self.sims

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        sim = self.config.simulator
        assert sim is not None
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        site, telescope = self.config.site, self.config.telescope
        async with running_simulators(sim, site, telescope, clock=self.clock) as sims:
            self.sims = sims
            self._ready.set()
            await self._stop.wait()

    def run(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Run a coroutine on the simulators' loop; await the result from any loop."""
        assert self._loop is not None
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def call(self, fn: Callable[[], Any]) -> None:
        """Call ``fn`` on the simulators' loop and wait for it (the fault slots live there)."""
        assert self._loop is not None

        async def on_loop() -> Any:
            return fn()

        asyncio.run_coroutine_threadsafe(on_loop(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


# --------------------------------------------------------------------------- API client


class ApiClient:
    """A client hammering the control API from a thread of its own, as another program."""

    STRETCHES = ("zscale", "asinh")
    LISTINGS = (
        "/api/exposures",
        "/api/failures",
        "/api/metrics",
        "/api/sequences",
        "/api/quicklook/log",
    )

    def __init__(self, url: str, clock: ScaledClock, seed: int) -> None:
        self.url = url
        self.clock = clock
        self.rng = random.Random(seed)
        self.replies: collections.Counter[str] = collections.Counter()  # "GET 200"
        self.refusals: collections.Counter[str] = collections.Counter()  # 4xx and 5xx by route
        self.errors: collections.Counter[str] = collections.Counter()
        self.seconds = array.array("d")  # not a list of floats: those would be heap blocks
        self.slowest = ("", 0.0)
        self.events = 0
        self.posted = 0
        self.stopped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="api-client", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            tasks = [
                asyncio.create_task(self._stream(http)),
                asyncio.create_task(self._browse(http)),
                asyncio.create_task(self._post(http)),
            ]
            while not self._stop.is_set():
                await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _request(
        self, http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
    ) -> tuple[int, Any, str | None]:
        """One request: (status, JSON body or None, the next page's URL or None)."""
        url = path if path.startswith("http") else self.url + path
        start = time.perf_counter()
        try:
            async with http.request(method, url, **kwargs) as resp:
                body = await resp.read()
                status = resp.status
                following = resp.links.get("next", {}).get("url")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1
            return 0, None, None
        seconds = time.perf_counter() - start
        self.seconds.append(seconds)
        self.replies[f"{method} {status}"] += 1
        # The route: the path with its ids and query left out.
        route = method + " " + re.sub(r"/\d+", "/{id}", path.removeprefix(self.url).split("?")[0])
        if status >= 400:
            self.refusals[f"{route} {status}"] += 1
        if seconds > self.slowest[1]:
            self.slowest = (route, seconds)
        data = None
        if resp.content_type == "application/json":
            with contextlib.suppress(ValueError):
                data = json.loads(body)
        return status, data, None if following is None else str(following)

    async def _stream(self, http: aiohttp.ClientSession) -> None:
        while True:
            try:
                async with http.get(
                    self.url + "/api/events", timeout=aiohttp.ClientTimeout(total=None)
                ) as resp:
                    async for line in resp.content:
                        if line.startswith(b"data: "):
                            self.events += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.errors[f"events {type(exc).__name__}"] += 1
            await asyncio.sleep(0.5)

    async def _browse(self, http: aiohttp.ClientSession) -> None:
        rng = self.rng
        while True:
            roll = rng.random()
            if roll < 0.3:
                await self._request(http, "GET", "/api/status")
            elif roll < 0.7:
                path = rng.choice(self.LISTINGS)
                most = 100 if path == "/api/sequences" else 1000  # sequences carry definitions
                page: str | None = f"{path}?limit={rng.randint(1, most)}"
                for _ in range(rng.randint(1, 6)):  # follow the Link headers a while
                    assert page is not None
                    _, _, page = await self._request(http, "GET", page)
                    if page is None:
                        break
            else:
                _, latest, _ = await self._request(http, "GET", "/api/quicklook/latest")
                eid = latest.get("exposure_id") if isinstance(latest, dict) else None
                if eid is not None:
                    frame = f"/api/quicklook/frames/{rng.randint(max(1, eid - 50), eid)}"
                    size = rng.choice((None, 128, 256, 512, 900))
                    query = f"?stretch={rng.choice(self.STRETCHES)}"
                    query += "" if size is None else f"&size={size}"
                    for part in ("", "/preview.png" + query, "/sources", "/pixel?x=10&y=10"):
                        await self._request(http, "GET", frame + part)
            await asyncio.sleep(rng.uniform(0.005, 0.05))

    async def _post(self, http: aiohttp.ClientSession) -> None:
        rng = self.rng
        while True:
            await asyncio.sleep(rng.uniform(5.0, 20.0))
            kind = rng.choice(("BIAS", "DARK", "LIGHT"))
            body: dict[str, Any] = {"name": f"soak api {kind.lower()}"}
            if kind == "BIAS":
                body["steps"] = [{"image_type": "BIAS", "count": 2}]
            elif kind == "DARK":
                body["steps"] = [{"image_type": "DARK", "exposure_s": 30.0, "count": 1}]
            else:  # at the zenith, whatever the hour
                lst = local_sidereal_time_deg(self.clock.now(), LONGITUDE)
                body["target"] = {"name": "API zenith", "ra_deg": lst, "dec_deg": LATITUDE}
                body["steps"] = [{"filter": "V", "exposure_s": 30.0, "count": 2}]
            status, reply, _ = await self._request(http, "POST", "/api/sequences", json=body)
            if status != 201 or not isinstance(reply, dict):
                continue
            self.posted += 1
            if rng.random() < 0.3:  # changed one's mind (at once: it runs for milliseconds)
                await asyncio.sleep(rng.uniform(0.0, 0.05))
                stop = f"/api/sequences/{reply['id']}/stop"
                if (await self._request(http, "POST", stop, json={}))[0] == 200:
                    self.stopped += 1


# --------------------------------------------------------------------------- the daemon's side


@dataclass
class Downloads:
    """Frames the daemon downloaded in full, by frame, from its events."""

    by_key: dict[Key, list[str]] = field(default_factory=dict)
    stored_events: int = 0
    processed_events: int = 0
    activity: dict[str, Any] = field(default_factory=dict)

    def see(self, event: Event) -> None:
        kind = event["kind"]
        if kind == "activity":
            self.activity = event
        elif kind == "downloaded":
            a = self.activity
            key = (a["sequence_id"], a["step_index"], a["frame_index"])
            self.by_key.setdefault(key, []).append(a["image_type"])
        elif kind == "frame":
            self.stored_events += 1
        elif kind == "processed":
            self.processed_events += 1

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.by_key.values())


async def watch_events(daemon: Daemon, downloads: Downloads) -> None:
    async with daemon.running.events.subscribe() as queue:
        while True:
            downloads.see(await queue.get())


def rss_mb(pid: int | str = "self") -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # the process has just ended
        return 0.0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children_rss_mb() -> float:
    pids: set[str] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            pids.update((task / "children").read_text().split())
    return sum(rss_mb(pid) for pid in pids)


@dataclass
class Sample:
    real_s: float
    sim: datetime
    rss_mb: float
    workers_mb: float
    py_blocks: int  # blocks Python's allocator holds: its heap, apart from native memory
    stored: int
    processed: int


class MemorySampler:
    """Samples the memory every ``interval_s`` on a thread (the loop may be busy)."""

    def __init__(self, clock: ScaledClock, downloads: Downloads, interval_s: float) -> None:
        self.clock = clock
        self.downloads = downloads
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="memory", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._take()

    def _take(self) -> None:
        d = self.downloads
        sample = Sample(
            time.monotonic() - self._t0,
            self.clock.now(),
            rss_mb(),
            children_rss_mb(),
            sys.getallocatedblocks(),
            d.stored_events,
            d.processed_events,
        )
        self.samples.append(sample)

    def _main(self) -> None:
        per_minute = max(1, round(60 / self.interval_s))
        while not self._stop.wait(self.interval_s):
            self._take()
            if len(self.samples) % per_minute:
                continue
            s = self.samples[-1]
            print(
                f"  {s.real_s / 60:5.1f} min  {s.sim:%Y-%m-%d %H:%M} UTC  rss {s.rss_mb:6.0f} MB"
                f"  ({s.py_blocks / 1000:.0f} k Python blocks)  workers {s.workers_mb:6.0f} MB"
                f"  stored {s.stored:5d}  processed {s.processed:5d}",
                flush=True,
            )


# --------------------------------------------------------------------------- the run


async def nights(daemon: Daemon, plan: Plan, first: date, run: Run) -> None:
    night = first
    while True:
        try:
            run.nights.append(await NightRunner(daemon, plan, night).run())
        except Exception as exc:  # a finding to report, not the end of the soak
            logging.getLogger("soak").exception("night %s failed", night)
            run.night_failures.append(f"{night}: {type(exc).__name__}: {exc}")
        night += timedelta(days=1)


async def wind_down(daemon: Daemon, timeout_s: float) -> bool:
    """Stop what runs, let the pipeline finish (at most ``timeout_s``); True when drained."""
    log_db = daemon.running.log_db
    for row in log_db.sequences(states=("running", "pending")):
        await daemon.stop_sequence(int(row["id"]))
    try:
        async with asyncio.timeout(timeout_s):
            await daemon.drain()
    except TimeoutError:
        return False
    return True


@dataclass
class Run:
    config: Config
    minutes: float
    drained: bool = False
    nights: list[NightSummary] = field(default_factory=list)
    night_failures: list[str] = field(default_factory=list)
    downloads: Downloads = field(default_factory=Downloads)
    real_s: float = 0.0
    sim_start: datetime | None = None
    sim_end: datetime | None = None


async def soak(run: Run, seed: int, drain_minutes: float, sim_log: SimulatorLog) -> tuple:
    config = run.config
    assert config.simulator is not None
    plan = soak_plan()
    cached_night(config.site, FIRST_NIGHT)  # a second of astropy: before the fast clock runs
    start = first_event(config, plan, FIRST_NIGHT) - timedelta(minutes=20)
    clock = ScaledClock(config.simulator.speed, start=start)
    run.sim_start = start
    simulators = SimulatorThread(config, clock)
    sims = simulators.start()
    daemon = Daemon(config, clock=clock)
    daemon_task = asyncio.create_task(daemon.run(install_signal_handlers=False), name="daemon")
    started = asyncio.create_task(daemon.started.wait())
    await asyncio.wait({daemon_task, started}, return_when=asyncio.FIRST_COMPLETED)
    if daemon_task.done():
        daemon_task.result()
    assert daemon.api_url is not None
    chaos = Chaos(sims, lambda: daemon.running.supervisor, sim_log.parks, random.Random(seed))
    client = ApiClient(daemon.api_url, clock, seed + 1)
    sampler = MemorySampler(clock, run.downloads, interval_s=5.0)
    watcher = asyncio.create_task(watch_events(daemon, run.downloads), name="events")
    night_task = asyncio.create_task(nights(daemon, plan, FIRST_NIGHT, run))
    t0 = time.monotonic()
    sampler.start()
    client.start()
    troubles = [simulators.run(chaos.device_faults()), simulators.run(chaos.weather())]
    try:
        done, _ = await asyncio.wait({daemon_task, night_task, *troubles}, timeout=60 * run.minutes)
        for task in done:
            task.result()  # a crash of the daemon, the nights or the chaos ends the soak here
    finally:
        for trouble in troubles:
            trouble.cancel()
        await asyncio.gather(*troubles, return_exceptions=True)
        simulators.call(chaos.calm)
        night_task.cancel()
        await asyncio.gather(night_task, return_exceptions=True)
        client.stop()
        run.real_s = time.monotonic() - t0
        run.sim_end = clock.now()
        if not daemon_task.done():
            print(f"time is up after {run.real_s / 60:.1f} min; draining", flush=True)
            run.drained = await wind_down(daemon, 60 * drain_minutes)
            daemon.request_stop()
        await daemon_task
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        sampler.stop()
        simulators.stop()
    return chaos, client, sampler


# --------------------------------------------------------------------------- the report


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def slope_per_hour(samples: list[Sample], value: Callable[[Sample], float]) -> float:
    if len(samples) < 2:
        return float("nan")
    xs = [s.real_s / 3600 for s in samples]
    ys = [value(s) for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


def report(run: Run, chaos: Chaos, client: ApiClient, sampler: MemorySampler, log: SimulatorLog):
    data = Path(run.config.data.directory)
    db = ExposureLog(data / "obsctl.sqlite")
    try:
        rows = db.query(
            "SELECT id, file_path, image_type, sequence_id, step_index, frame_index FROM exposures"
        )
        processing = db.query("SELECT exposure_id, state, stage, reason FROM processing")
        failures = db.query(
            "SELECT operation, error_type, action, COUNT(*) AS n FROM failures "
            "GROUP BY operation, error_type, action ORDER BY n DESC"
        )
        sequences = db.query("SELECT state, COUNT(*) AS n FROM sequences GROUP BY state")
    finally:
        db.close()
    files = {str(p.relative_to(data)) for p in (data / "raw").rglob("*.fits")}
    logged_paths = {r["file_path"] for r in rows}
    by_type = collections.Counter(r["image_type"] for r in rows)
    stored_keys = {
        (r["sequence_id"], r["step_index"], r["frame_index"]): r["image_type"] for r in rows
    }
    downloads = run.downloads.by_key
    flat_downloads = sum(len(v) for k, v in downloads.items() if v[-1] == "FLAT")
    other = {k for k, v in downloads.items() if v[-1] != "FLAT"}
    twice = {k for k in other if len(downloads[k]) > 1}
    stored_other = {k for k, t in stored_keys.items() if t != "FLAT"}
    stored_flats = {k for k, t in stored_keys.items() if t == "FLAT"}
    lights = {r["id"] for r in rows if r["image_type"] == "LIGHT"}
    finished = {
        p["exposure_id"]
        for p in processing
        if p["state"] == "done" or (p["state"] == "failed" and p["reason"])
    }
    processing_states = collections.Counter(p["state"] for p in processing)
    taken = len(other) + len(stored_flats & set(downloads))

    days = (run.sim_end - run.sim_start).total_seconds() / 86400 if run.sim_end else 0
    print(
        f"\nran {run.real_s / 60:.1f} min of real time at {run.config.simulator.speed:g}x: "
        f"{run.sim_start:%Y-%m-%d %H:%M} to {run.sim_end:%Y-%m-%d %H:%M} UTC simulated "
        f"({days:.1f} days); {len(run.nights)} night(s) completed"
    )
    for s in run.nights:
        visits = ", ".join(f"{k} {v}" for k, v in sorted(s.visits.items()))
        frames = ", ".join(f"{k} {v}" for k, v in sorted(s.frames.items()))
        print(f"  night {s.night}: visits {visits}; frames {frames}; unsafe {s.unsafe_pauses}")
    for failure in run.night_failures:
        print(f"  NIGHT FAILED {failure}")

    cam = log.exposures
    print("\nframes")
    print(
        f"  camera simulator: {cam['started']} exposures started, {cam['ready']} read out, "
        f"{cam['aborted']} aborted"
    )
    print(
        f"  downloaded by the daemon: {run.downloads.count} ({flat_downloads} flats, of which "
        f"{flat_downloads - len(stored_flats)} level tests)"
    )
    print(f"  taken   {taken:6d}  (downloaded, less flat level tests)")
    print(f"  stored  {len(files):6d}  (files in raw/)")
    print(f"  logged  {len(rows):6d}  (exposure rows: {dict(sorted(by_type.items()))})")
    print(
        f"  processed {len(finished & lights):4d}  of {len(lights)} lights "
        f"(processing rows: {dict(sorted(processing_states.items()))})"
    )
    problems = []
    if files != logged_paths:
        problems.append(
            f"{len(files - logged_paths)} file(s) not logged "
            f"{sorted(files - logged_paths)[:3]}, {len(logged_paths - files)} row(s) without "
            f"a file {sorted(logged_paths - files)[:3]}"
        )
    if other != stored_other:
        problems.append(
            f"{len(other - stored_other)} downloaded frame(s) not stored "
            f"{sorted(other - stored_other)[:5]}; {len(stored_other - other)} stored "
            f"without a download seen {sorted(stored_other - other)[:5]}"
        )
    if twice:
        problems.append(f"{len(twice)} frame(s) downloaded twice {sorted(twice)[:5]}")
    if not stored_flats <= set(downloads):
        problems.append(f"stored flats never downloaded: {sorted(stored_flats - set(downloads))}")
    unprocessed = lights - finished
    if unprocessed:
        why = "the drain timed out" if not run.drained else "not processed"
        problems.append(f"{len(unprocessed)} light(s) {why}: {sorted(unprocessed)[:5]}")
    for name in ("unstored", "quarantine"):
        held = list((data / name).rglob("*")) if (data / name).exists() else []
        if [p for p in held if p.is_file()]:
            problems.append(f"{len(held)} file(s) in {name}/")
    if problems:
        print("  DIFFERENCES:")
        for p in problems:
            print(f"   - {p}")
    else:
        print("  nothing lost")
    print(
        "  (not taken, legitimately: exposures aborted for safety, stops and the shutdown; "
        "images whose download failed, which the daemon retakes; flat level tests)"
    )
    print(f"  sequences: {dict(sorted((r['state'], r['n']) for r in sequences))}")

    print("\nfailures by kind (failures table)")
    for f in failures:
        print(f"  {f['n']:5d}  {f['operation']:<10} {f['error_type']:<26} -> {f['action']}")
    print("\ninjected")
    for name, n in sorted(chaos.faults.items()):
        print(f"  {n:5d}  {name}")
    print(
        f"  {chaos.spells:5d}  unsafe spells ({chaos.spells_while_unsafe} while already unsafe,"
        f" {chaos.spells_with_fault} during a mount or monitor fault: not measured)"
    )

    def ms(values: list[float]) -> str:
        if not values:
            return "n=0"
        return (
            f"median {1e3 * median(values):.1f} ms, worst {1e3 * max(values):.1f} ms "
            f"(n={len(values)})"
        )

    print("\nunsafe -> park (real time)")
    print(f"  park command sent (supervisor):    {ms(chaos.sent_s)}")
    print(f"  park arrived at the mount (sim):   {ms(chaos.arrived_s)}")
    if chaos.no_park:
        print(f"  NO PARK within 10 s: {chaos.no_park} spell(s)")

    print("\ncontrol API (client thread)")
    replies = ", ".join(f"{k}: {v}" for k, v in sorted(client.replies.items()))
    print(f"  replies {replies}")
    for name, n in sorted(client.refusals.items()):
        print(f"    {n:5d}  {name}")
    if client.errors:
        print(f"  client-side errors {dict(client.errors)}")
    if client.seconds:
        q = statistics.quantiles(client.seconds, n=100)
        print(
            f"  request time median {1e3 * median(client.seconds):.1f} ms, p99 {1e3 * q[98]:.0f}"
            f" ms, worst {1e3 * client.slowest[1]:.0f} ms ({client.slowest[0]}); "
            f"{client.events} events streamed; "
            f"{client.posted} sequences posted, {client.stopped} stopped"
        )

    samples = sampler.samples
    print("\nmemory (VmRSS; 'process' is the daemon with the simulators and the API client)")
    print(
        "   real min  simulated (UTC)    process MB  Python blocks  workers MB  stored  processed"
    )
    step = max(1, len(samples) // 12)
    for s in [*samples[::step][:-1], samples[-1]] if samples else []:
        print(
            f"   {s.real_s / 60:8.1f}  {s.sim:%Y-%m-%d %H:%M}  {s.rss_mb:10.0f}  "
            f"{s.py_blocks / 1000:11.0f} k  {s.workers_mb:10.0f}  {s.stored:6d}  {s.processed:9d}"
        )
    first = run.nights[0].events if run.nights else []
    first_done = [t for name, t in first if name == "night done"][:1]
    if first_done:
        settled, after = [s for s in samples if s.sim >= first_done[0]], "the first night"
    else:
        settled, after = samples[len(samples) // 2 :], "the first half (no night completed)"

    def per_hour(value: Callable[[Sample], float]) -> str:
        return f"{slope_per_hour(settled, value):+.0f}"

    print(
        f"  slope after {after}: process {per_hour(lambda s: s.rss_mb)} MB/h, Python blocks "
        f"{per_hour(lambda s: s.py_blocks / 1000)} k/h, workers {per_hour(lambda s: s.workers_mb)}"
        f" MB/h (whole run: process {slope_per_hour(samples, lambda s: s.rss_mb):+.0f} MB/h)"
    )
    print(
        "  (the Python blocks include this script's own record of each frame downloaded, a few "
        "blocks a frame)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="real time of the soak")
    parser.add_argument("--speed", type=float, default=1000.0, help="simulated s per real s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="pipeline worker processes")
    parser.add_argument("--drain-minutes", type=float, default=3.0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the data (and log) here")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; soak of {args.minutes:g} min at {args.speed:g}x, "
        f"seed {args.seed}",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        if args.keep is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="obsctl-soak-")))
        else:
            work = args.keep
            work.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(
            filename=work / "soak.log",
            level=logging.INFO,
            format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s",
        )
        sim_log = SimulatorLog()
        for name in ("obsctl.simulators.camera_model", "obsctl.simulators.mount_model"):
            logger = logging.getLogger(name)
            logger.setLevel(logging.DEBUG)
            logger.addHandler(sim_log)
        config = soak_config(work / "data", free_port(), args.speed, args.workers)
        run = Run(config, args.minutes)
        chaos, client, sampler = asyncio.run(soak(run, args.seed, args.drain_minutes, sim_log))
        report(run, chaos, client, sampler, sim_log)
        if args.keep is not None:
            print(f"\ndata and log kept in {work}")


if __name__ == "__main__":
    main()
