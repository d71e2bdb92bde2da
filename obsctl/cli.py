"""The ``obsctl`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from obsctl.clock import SystemClock, night_of, parse_night
from obsctl.config import MAX_SPEED, Config, SimulatedSkyConfig, load_config, offset_ports
from obsctl.devices import DeviceSet, ExposureSettings
from obsctl.errors import ConfigError, DeviceError, ObsctlError, ReferenceImageError
from obsctl.operations import Operations
from obsctl.store.datadir import DataDir

if TYPE_CHECKING:
    from obsctl.daemon import Daemon
    from obsctl.store.refcat import RefCatalog

__all__ = ["main"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Largest ``--limit`` of the listing commands (SQLite takes 64-bit integers only).
_MAX_ROWS = 1_000_000_000
#: Largest random seed (numpy takes 32-bit seeds for the simulated sky).
_MAX_SEED = 2**32 - 1
#: Real seconds the simulated clock of ``run --plan --speed N`` starts before the first dusk.
_START_REAL_S = 3.0
#: Most stars ``catalog import-synthetic`` generates at once (memory, not the sky, limits it).
_MAX_SYNTHETIC_STARS = 5_000_000


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _bounded(
    value: float, option: str, low: float, high: float, *, above: bool = False, unit: str = ""
) -> None:
    """Check a numeric argument: finite and from ``low`` (or above it, with ``above``) to ``high``.

    Raises
    ------
    ConfigError
        Naming the option, the range expected and the value given.
    """
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        finite = False
    if finite and (value > low if above else value >= low) and value <= high:
        return
    lo, hi = (f"{x:,}" if isinstance(x, int) else f"{x:g}" for x in (low, high))
    want = f"above {lo} and at most {hi}" if above else f"from {lo} to {hi}"
    raise ConfigError(f"{option}: expected a number {want}{unit}, got {value!r}")


def _night_arg(text: str, option: str) -> date:
    """Return the night a ``YYYY-MM-DD`` argument names, within the years plans may use.

    Raises
    ------
    ConfigError
        When it is no such date, or lies outside `obsctl.night.plan.NIGHT_YEARS`.
    """
    from obsctl.night.plan import NIGHT_YEARS

    try:
        night = parse_night(text)
    except ConfigError as exc:
        raise ConfigError(f"{option}: {exc}") from exc
    first, last = NIGHT_YEARS
    if not first <= night.year <= last:
        raise ConfigError(f"{option}: expected a night in the years {first}-{last}, got {text!r}")
    return night


async def _describe(role: str, devices: DeviceSet) -> str:
    device = getattr(devices, role)
    await device.connect()
    try:
        if role == "camera":
            info = await device.info()
            st = await device.status()
            temp = "n/a" if st.ccd_temperature_c is None else f"{st.ccd_temperature_c:.1f} C"
            return (
                f"{info.sensor_name} {info.width_px}x{info.height_px} "
                f"{info.pixel_size_x_um:g} um, state {st.state.name}, sensor {temp}, "
                f"cooler {'on' if st.cooler_on else 'off'}"
            )
        if role == "filter_wheel":
            names = await device.names()
            position = await device.position()
            current = "moving" if position is None else names[position]
            return f"filters {', '.join(names)}; current {current}"
        if role == "mount":
            ms = await device.status()
            return (
                f"RA {ms.ra_deg:.4f} Dec {ms.dec_deg:+.4f} deg, alt {ms.alt_deg:.2f} "
                f"az {ms.az_deg:.2f}, tracking {'on' if ms.tracking else 'off'}, "
                f"{'parked' if ms.at_park else 'unparked'}, pier {ms.pier_side.name}"
            )
        if role == "dome":
            ds = await device.status()
            shutter = "unknown" if ds.shutter is None else ds.shutter.name.lower()
            azimuth = "" if ds.azimuth_deg is None else f", azimuth {ds.azimuth_deg:.1f} deg"
            parked = ", parked" if ds.at_park else ""
            return f"shutter {shutter}{azimuth}{', moving' if ds.slewing else ''}{parked}"
        if role == "weather":
            readings = dataclasses.asdict(await device.readings())
            shown = [f"{k} {v:g}" for k, v in readings.items() if v is not None]
            return "; ".join(shown) or "no sensors"
        if role == "cover_calibrator":
            cs = await device.status()
            top = (await device.info()).max_brightness
            return (
                f"cover {cs.cover.name.lower()}, panel {cs.calibrator.name.lower()} "
                f"at {cs.brightness}/{top}"
            )
        if role == "focuser":
            fs = await device.status()
            where = "relative" if fs.position is None else f"at {fs.position}"
            temp = "" if fs.temperature_c is None else f", {fs.temperature_c:.1f} C"
            return f"{where}/{(await device.info()).max_step} steps{temp}" + (
                ", moving" if fs.moving else ""
            )
        return "SAFE" if await device.is_safe() else "UNSAFE"
    finally:
        await device.disconnect()


async def _devices(config: Config) -> int:
    from obsctl.drivers.registry import ROLES
    from obsctl.embedded import session

    failures = 0
    async with session(config) as running:
        devices = running.devices
        for role in ROLES:
            if getattr(devices, role) is None:
                continue
            try:
                _out(f"{role:16s} {await _describe(role, devices)}")
            except DeviceError as exc:
                failures += 1
                _out(f"{role:16s} ERROR {exc}")
    return 1 if failures else 0


async def _expose(config: Config, args: argparse.Namespace) -> int:
    from obsctl.acquisition.sequence import MAX_EXPOSURE_S
    from obsctl.embedded import session
    from obsctl.store.fitsfile import write_fits_atomic
    from obsctl.store.headers import FrameContext, raw_header

    image_type = args.type.upper()
    if image_type != "BIAS":  # a bias takes the camera's shortest exposure instead
        _bounded(args.exptime, "--exptime", 0, MAX_EXPOSURE_S, above=True, unit=" s")
    _bounded(args.bin, "--bin", 1, 16)
    if args.out.is_dir():
        raise ConfigError(f"--out: {args.out} is a folder; give the name of the FITS file")
    mount_status = None
    ops = Operations(config.sequencer, SystemClock())
    async with session(config) as running:
        devices = running.devices
        camera = devices.camera
        await camera.connect()
        filter_name: str | None = None
        try:
            if args.filter:
                if devices.filter_wheel is None:
                    raise ConfigError("--filter given but no filter_wheel is configured")
                await devices.filter_wheel.connect()
                await ops.select_filter(devices.filter_wheel, args.filter)
                filter_name = args.filter
            await camera.configure(ExposureSettings(bin_x=args.bin, bin_y=args.bin))
            light = image_type in ("LIGHT", "FLAT")
            exposure_s = args.exptime
            if image_type == "BIAS":
                exposure_s = (await camera.info()).exposure_min_s
            # A dark or a bias needs neither the mount nor its position (issue 15): one
            # taken while the mount is down must not fail.
            if devices.mount is not None and light:
                await devices.mount.connect()
                mount_status = await devices.mount.status()
                await devices.mount.disconnect()
            start = datetime.now(UTC)
            await ops.expose(camera, exposure_s, light=light)
            image = await camera.download()
        finally:
            await camera.disconnect()
            if devices.filter_wheel is not None:
                await devices.filter_wheel.disconnect()
    header = raw_header(
        FrameContext(
            image=image,
            image_type=image_type,
            site=config.site,
            telescope=config.telescope,
            frame_number=1,
            start_time=image.metadata.start_time or start,
            filter_name=filter_name,
            mount=mount_status,
        )
    )
    path = write_fits_atomic(args.out, image.data, header)
    data = image.data
    _out(
        f"wrote {path}: {image_type} {data.shape[1]}x{data.shape[0]} {data.dtype}, "
        f"{image.metadata.exposure_s:g} s, median {float(np.median(data)):.1f} ADU, "
        f"max {int(data.max())} ADU"
    )
    return 0


@contextlib.asynccontextmanager
async def _announced(daemon: Daemon) -> AsyncIterator[None]:
    """Say where the control API and the quick-look page are, once the daemon runs."""

    async def announce() -> None:
        await daemon.started.wait()
        if daemon.api_url:
            _out(f"obsctl running; control API at {daemon.api_url} (Ctrl-C stops)")
            _out(f"quick-look: {daemon.api_url}/")

    announcer = asyncio.create_task(announce())
    try:
        yield
    finally:
        announcer.cancel()


@contextlib.asynccontextmanager
async def _skip_reasons(daemon: Daemon) -> AsyncIterator[dict[int, list[str]]]:
    """Collect, per sequence id, why its steps were skipped or why it failed, while it runs.

    The reasons come from the daemon's events: a step skipped for a filter the wheel lacks or
    a flat level out of reach leaves no failure in the database.
    """
    reasons: dict[int, list[str]] = {}

    def note(event: dict[str, Any]) -> None:
        if event["kind"] == "step_skipped":
            reasons.setdefault(event["id"], []).append(
                f"step {event['step']} skipped: {event['reason']}"
            )
        elif event["kind"] == "sequence":
            # Every sequence this run worked on is listed: how it ended sets the exit code.
            noted = reasons.setdefault(event["id"], [])
            if event.get("reason"):
                noted.append(str(event["reason"]))

    async def collect() -> None:
        await daemon.started.wait()
        events = daemon.running.events
        async with events.subscribe() as queue:
            for event in list(events.recent):  # published before we listened
                note(event)
            while True:
                note(await queue.get())

    collector = asyncio.create_task(collect())
    try:
        yield reasons
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector


# Why a sequence ended so when nothing was published about it: only an operator does this.
_NO_REASON = {
    "stopped": "stopped through the control API",
    "aborted": "aborted through the control API",
}


def _unfinished(
    config: Config, sequence_ids: list[int], reasons: dict[int, list[str]]
) -> list[str]:
    """Return a line for each of these sequences that ended other than ``done``: which, and why.

    A sequence a shutdown interrupted has not ended: it resumes at the next start, and
    ``obsctl stopped`` already names it.
    """
    if not sequence_ids:
        return []
    db = DataDir(config.data.directory).open_log(existing=True)
    try:
        rows = [db.sequence(sid) for sid in sequence_ids]
    finally:
        db.close()
    lines = []
    for sid, row in zip(sequence_ids, rows, strict=True):
        if row is None or row["state"] in ("done", "pending", "running"):
            continue
        state = str(row["state"])
        why = "; ".join(reasons.get(sid, [])) or _NO_REASON.get(state, "see the daemon's log")
        lines.append(f"sequence {row['name']!r} (#{sid}) ended {state}: {why}")
    return lines


async def _run(config: Config, args: argparse.Namespace) -> int:
    from obsctl.acquisition.sequence import load_sequence
    from obsctl.daemon import Daemon

    plan = args.plan if args.plan is not None else config.night.plan
    if plan is not None:
        if args.sequence or args.until_idle:
            raise ConfigError(
                "--plan: runs nights until stopped (--nights N: N nights); --sequence and "
                "--until-idle do not go with it (post sequences to the control API)"
            )
        return await _run_plan(config, args, plan)
    for option, value in (
        ("--date", args.date),
        ("--speed", args.speed),
        ("--nights", args.nights),
    ):
        if value is not None:
            raise ConfigError(f"{option}: goes with --plan (or [night] plan in the config)")
    sequences = [load_sequence(path) for path in args.sequence]
    daemon = Daemon(config)

    async with _announced(daemon), _skip_reasons(daemon) as reasons:
        await daemon.run(sequences, until_idle=args.until_idle)
    left = ", ".join(daemon.left_running)
    _out(
        f"obsctl stopped: {daemon.frames_stored} frame(s) stored this run"
        + (f"; left to resume at the next start: {left}" if left else "")
    )
    # Scripts run `obsctl run --sequence ... --until-idle` and read the exit code: every
    # sequence given or run (resumed from the last run, posted to the API) counts.
    ran = list(dict.fromkeys([*daemon.given_ids, *reasons]))
    unfinished = _unfinished(config, ran, reasons)
    for line in unfinished:
        sys.stderr.write(f"obsctl: {line}\n")
    return 1 if unfinished else 0


def _night_lines(summary: Any) -> list[str]:
    """Describe a night's summary: what it took, its failures, time lost, work left."""
    visits = ", ".join(f"{n} {k}" for k, n in sorted(summary.visits.items()))
    frames = ", ".join(f"{n} {k}" for k, n in sorted(summary.frames.items()))
    lines = [
        f"night {summary.night} done: visits: {visits or 'none'}; frames: {frames or 'none'}; "
        f"{summary.failures} failure(s); {summary.time_lost_s / 60:.0f} min lost "
        f"(weather {summary.unsafe_s / 60:.0f}, failed visits {summary.failed_visit_s / 60:.0f})"
    ]
    if summary.open_shutter is not None:
        lines.append(f"  shutter open {summary.open_shutter:.0%} of the dark time")
    lines += [f"  cadence of {item}" for item in summary.cadence]
    lines += [f"  weather {item}" for item in summary.weather]
    lines += [f"  incomplete: {item}" for item in summary.incomplete]
    return lines


async def _run_plan(config: Config, args: argparse.Namespace, plan_path: Path) -> int:
    """``obsctl run --plan``: every night of the plan, until stopped or ``--nights`` are run."""
    from obsctl.daemon import Daemon
    from obsctl.night.campaign import Campaign, run_campaign
    from obsctl.night.control import NightControl
    from obsctl.night.timeline import night_clock, simulation_config

    night = _night_arg(args.date, "--date") if args.date else None
    if args.nights is not None:
        _bounded(args.nights, "--nights", 1, 100_000)
    night_config = config.night
    control = NightControl.from_file(
        plan_path, start_hooks=night_config.start_hooks, end_hooks=night_config.end_hooks
    )
    if args.speed is not None:
        _bounded(args.speed, "--speed", 0, MAX_SPEED, above=True, unit=" (simulated s per s)")
        # The clock starts before the first dusk by at least a few real seconds: the
        # daemon's start (simulators, devices, ephemeris) must not make the night late.
        lead_s = max(900.0, _START_REAL_S * args.speed)
        clock, night = await asyncio.to_thread(
            night_clock, config, control.plan, night, speed=args.speed, lead_s=lead_s
        )
        daemon = Daemon(simulation_config(config, args.speed), clock=clock)
    else:
        daemon = Daemon(config)  # the simulators' speed, else real time
    _out(
        f"plan {control.plan.name!r} ({plan_path}) night after night"
        + (f", {args.nights} night(s)" if args.nights else "")
        + f"; clock at {daemon.clock.now():%Y-%m-%d %H:%M} UTC"
    )
    campaign = Campaign(daemon, control, night=night, nights=args.nights)
    async with _announced(daemon):
        summaries = await run_campaign(campaign)
    incomplete = False
    for summary in summaries:
        for line in _night_lines(summary):
            _out(line)
        incomplete |= bool(summary.incomplete)
    for skipped, why in campaign.skipped:
        _out(f"night {skipped} skipped: {why}")
    _out(f"obsctl stopped: {len(summaries)} night(s) run, {daemon.frames_stored} frame(s) stored")
    # Without --nights only a signal ends it: that is no failure (systemd's Restart=on-failure).
    return 1 if args.nights is not None and (incomplete or campaign.skipped) else 0


async def _status(config: Config, args: argparse.Namespace) -> int:
    import aiohttp

    server = config.server
    # A wildcard bind is reached on this machine's loopback address.
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(server.host, server.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal in a URL
    url = args.url or f"http://{host}:{server.port}"
    headers = {"Authorization": f"Bearer {server.token}"} if server.token else {}
    try:
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            asyncio.timeout(5),
            http.get(f"{url}/api/status") as resp,
        ):
            if resp.status != 200:
                reason = (await resp.text())[:200]
                raise ObsctlError(f"the daemon at {url} refused the status: {resp.status} {reason}")
            status = await resp.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ObsctlError(f"no obsctl daemon answers at {url}: {exc}") from exc
    a = status["activity"]
    safety = status["safety"]
    _out(
        f"activity  {a['state']}"
        + (
            f"  sequence {a['sequence_name']} (#{a['sequence_id']}) step {a['step_index']} "
            f"frame {a['frame_index']}"
            if a.get("sequence_id") is not None
            else ""
        )
    )
    _out(f"safety    {'SAFE' if safety['safe'] else 'UNSAFE'} ({safety['reason']})")
    for line in _plan_status(status.get("night")):
        _out(line)
    for role, value in status["devices"].items():
        _out(f"{role:9s} {_format_status(value)}")
    for role, health in (status.get("health") or {}).items():
        _out(f"{'health':9s} {_format_health(role, health)}")
    queue = status["queue"]
    names = ", ".join(f"{q['name']} ({q['state']})" for q in queue["sequences"]) or "empty"
    _out(f"queue     {names}; frames waiting for disk: {queue['frames_to_store']}")
    return 0


def _clock_time(iso: str | None) -> str:
    """``2026-11-25 22:10:00 UTC`` for an ISO time (None: the empty text)."""
    if not iso:
        return ""
    return f"{datetime.fromisoformat(iso).astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _plan_status(night: dict[str, Any] | None) -> list[str]:
    """Describe the plan being run: the runner's step and until when, a refused edit, ToOs."""
    if not night:
        return []
    step = night.get("step") or {}
    until = _clock_time(step.get("until"))
    lines = [
        f"plan      {night['plan']!r} night {step.get('night') or '-'}: "
        f"{step.get('doing', '?')}" + (f" until {until}" if until else "")
    ]
    refused = night.get("refused_edit")
    if refused:
        lines.append(
            f"plan      edit refused at {_clock_time(refused['time'])}, plan kept: "
            f"{refused['reason']}"
        )
    for too in night.get("targets_of_opportunity") or []:
        lines.append(
            f"plan      target of opportunity {too['name']} (priority {too['priority']}, "
            f"night {too['night']})"
        )
    return lines


def _format_health(role: str, health: dict[str, Any]) -> str:
    """``mount DOWN since ...: reason`` or ``camera connected`` (with its last error, if any)."""
    since = _clock_time(health.get("since"))
    error = health.get("last_error")
    if health.get("connected"):
        return f"{role} connected" + (f" (last error: {error})" if error else "")
    return f"{role} DOWN" + (f" since {since}" if since else "") + f": {error or 'not connected'}"


def _format_status(value: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in value.items() if k != "name")


async def _lightcurve(config: Config, args: argparse.Namespace) -> int:
    from obsctl.timeseries.export import plot_folds, plot_light_curve, write_light_curve
    from obsctl.timeseries.features import search_light_curve_period
    from obsctl.timeseries.store import load_light_curve

    data_dir = DataDir(config.data.directory)
    db = data_dir.open_log(existing=True)
    try:
        points = load_light_curve(db, args.target)
    finally:
        db.close()
    if not points:
        raise ObsctlError(f"no light curve for target {args.target!r} in {data_dir.log_path}")
    text = write_light_curve(args.target, points, args.format, args.out)
    if args.out is None:
        sys.stdout.write(text)
    else:
        sys.stderr.write(f"{len(points)} point(s) of {args.target} written to {args.out}\n")
    if args.plot is not None:
        known = next((t.period_d for t in config.monitoring.targets if t.name == args.target), None)
        if args.fold and known is None:
            good = [p for p in points if p["flag"] == 0 and p["mag"] is not None]
            # The monitor's search (periods up to the span), so the folds show its candidates.
            result = search_light_curve_period(
                [p["bjd_tdb"] - 2400000.5 for p in good],
                [p["mag"] for p in good],
                [p["mag_err"] for p in good],
                min_period_d=config.monitoring.min_period_d,
            )
            if result is None:
                raise ObsctlError(
                    f"--fold: {args.target}: {len(good)} good point(s) are too few, or span "
                    "too short a time, for a period search"
                )
            folds = plot_folds(args.target, points, result, args.plot)
            periods = ", ".join(f"{method} {period:.6f} d" for method, period in folds.items())
            sys.stderr.write(f"folded on {periods} (chosen: {result.method})\n")
        else:
            plot_light_curve(args.target, points, args.plot, period_d=known)
        sys.stderr.write(f"plot written to {args.plot}\n")
    return 0


async def _alerts(config: Config, args: argparse.Namespace) -> int:
    from obsctl.timeseries.store import list_alerts

    _bounded(args.limit, "--limit", 0, _MAX_ROWS)
    db = DataDir(config.data.directory).open_log(existing=True)
    try:
        rows = list_alerts(db, limit=args.limit)
    finally:
        db.close()
    for row in rows:
        sys.stdout.write(f"{row['created_utc']}  {row['kind']:<10}  {row['message']}\n")
    if not rows:
        _out("no alerts")
    return 0


async def _transients(config: Config, args: argparse.Namespace) -> int:
    from obsctl.store.candidates import moving_objects, night_transients

    night = None if args.night is None else _night_arg(args.night, "--night").isoformat()
    db = DataDir(config.data.directory).open_log(existing=True)
    try:
        transients = night_transients(db, night, alerted_only=not args.all)
        objects = moving_objects(db, night)
    finally:
        db.close()
    where = f" on {night}" if night else ""
    for t in transients:
        offset, pa = t["host_offset_arcsec"], t["host_pa_deg"]
        host = "no host" if offset is None else f"host {offset:.1f} arcsec PA {pa or 0:.0f}"
        _out(
            f"transient {t['id']:<5d} {_text_cell(t['field'])}  RA {t['ra_deg']:.5f} "
            f"Dec {t['dec_deg']:+.5f}  peak {_mag_cell(t['peak_mag'])}  "
            f"{t['detections']} detection(s)  {host}{'  alerted' if t['alerted'] else ''}"
        )
    for m in objects:
        _out(
            f"moving    {m['id']:<5d} {_text_cell(m['field'])}  RA {m['ra_deg']:.5f} "
            f"Dec {m['dec_deg']:+.5f}  {m['rate_arcsec_min']:.2f} arcsec/min PA {m['pa_deg']:.0f}  "
            f"{_mag_cell(m['mag'])}  {m['detections']} detection(s)  night {m['night']}"
        )
    alerted = "" if args.all else " alerted"
    _out(f"{len(transients)}{alerted} transient(s), {len(objects)} moving object(s){where}")
    return 0


def _text_cell(value: object) -> str:
    """Return database text for a terminal: control characters (escapes) shown, not sent."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))


def _mag_cell(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f} mag"


async def _mpc(config: Config, args: argparse.Namespace) -> int:
    from obsctl.timeseries.transients import night_mpc_report

    night = _night_arg(args.night, "--night").isoformat()
    code = config.difference.mpc_code if args.code is None else args.code
    if not (len(code) == 3 and code.isascii() and code.isalnum() and code == code.upper()):
        raise ConfigError(f"--code: expected three capitals or digits, got {code!r}")
    db = DataDir(config.data.directory).open_log(existing=True)
    try:
        report, lines = night_mpc_report(db, night, observatory_code=code)
    finally:
        db.close()
    if not lines:
        sys.stderr.write(f"no moving objects on night {night}: no report written\n")
        return 0
    if args.out is None:
        sys.stdout.write(report)
    else:
        args.out.write_text(report, encoding="ascii")
        sys.stderr.write(f"{lines} observation(s) of night {night} written to {args.out}\n")
    return 0


async def _log(config: Config, args: argparse.Namespace) -> int:
    import csv

    night = None if args.night is None else _night_arg(args.night, "--night").isoformat()
    if args.limit is not None:
        _bounded(args.limit, "--limit", 0, _MAX_ROWS)
    db = DataDir(config.data.directory).open_log(existing=True)
    try:
        rows = db.exposures(
            night=night,
            target=args.target,
            filter_name=args.filter,
            image_type=args.type,
            limit=args.limit,
        )
    finally:
        db.close()
    columns = [
        "id",
        "night",
        "date_obs",
        "image_type",
        "target",
        "filter",
        "exposure_s",
        "airmass",
        "ccd_temp_c",
        "status",
        "file_path",
    ]
    if args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else columns)
        writer.writeheader()
        writer.writerows(rows)
        return 0
    table = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in table]) for i, c in enumerate(columns)]
    _out("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in table:
        _out("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    _out(f"{len(rows)} exposure(s)")
    return 0


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


async def _calib(config: Config, args: argparse.Namespace) -> int:
    from obsctl.calibration.build import build_configured_masters

    night = None if args.night is None else _night_arg(args.night, "--night").isoformat()
    data_dir = DataDir(config.data.directory)
    db = data_dir.open_log(existing=True)
    try:
        masters = await asyncio.to_thread(
            build_configured_masters,
            db,
            data_dir,
            config.calibration,
            night=night,
            method=args.method,
        )
    finally:
        db.close()
    for m in masters:
        _out(f"{m.kind:5s} {m.n_frames:3d} frames  {m.method:6s}  {m.file_path}")
    _out(f"{len(masters)} master(s) built")
    return 0


async def _reference(config: Config, args: argparse.Namespace) -> int:
    from obsctl.store.references import field_filters, references

    data_dir = DataDir(config.data.directory)
    db = data_dir.open_log(existing=True)
    try:
        if args.reference_command == "build":
            from obsctl.pipeline.reference import build_reference

            filters = [args.filter] if args.filter is not None else field_filters(db, args.field)
            if not filters:
                raise ReferenceImageError(f"no light frames of field {args.field!r}")
            rows = [
                await asyncio.to_thread(
                    build_reference,
                    data_dir,
                    db,
                    args.field,
                    name,
                    camera=args.camera,
                    settings=config.difference,
                    saturation_adu=config.pipeline.saturation_adu,
                )
                for name in filters
            ]
        else:
            rows = await asyncio.to_thread(references, db, args.field)
    finally:
        db.close()
    for r in rows:
        current = "" if r.get("current", 1) else "  (replaced)"
        limit = "-" if r["limiting_mag"] is None else f"{r['limiting_mag']:.2f}"
        fwhm = "-" if r["fwhm_px"] is None else f"{r['fwhm_px']:.2f}"
        _out(
            f"{r['id']:4d}  {r['field']}  {r['filter'] or '-'}  {r['n_frames']:3d} frames  "
            f"FWHM {fwhm} px  limit {limit} mag  {r['path']}{current}"
        )
    if not rows:
        _out("no reference images")
    return 0


async def _model(config: Config, args: argparse.Namespace) -> int:
    _bounded(args.seed, "--seed", 0, _MAX_SEED)
    try:
        if args.model == "variables":
            from obsctl.classify.training.variables import train_variable_model
        elif args.model == "realbogus":
            from obsctl.classify.training.realbogus import train_realbogus
        else:
            from obsctl.classify.training.train import train_model
    except ImportError as exc:  # torch, scikit-learn and onnx come with the extra only
        raise ConfigError(
            f"obsctl model train needs the training extra (pip install 'obsctl[train]'): {exc}"
        ) from exc
    if args.model == "variables":
        card = await asyncio.to_thread(train_variable_model, args.out, seed=args.seed)
        m = card["metrics"]
        _out(
            f"wrote the variable-star classifier ({card['model_family']}), its anomaly model "
            "and their card; "
            f"held-out macro-F1 (>= 50 points) {m['macro_f1_min50']}, by points "
            + ", ".join(f"{n}: {f1}" for n, f1 in m["f1_vs_points"].items())
        )
        return 0
    if args.model == "realbogus":
        card = await asyncio.to_thread(train_realbogus, args.out, seed=args.seed)
        m = card["metrics_test"]
        _out(
            f"wrote {card['file']} ({card['size_bytes']} bytes, sha256 {card['sha256'][:12]}) and "
            f"its card; held-out AUC {m['auc']}, at threshold {m['threshold']:.3g} completeness "
            f"{m['completeness']} with {m['bogus_per_frame']} bogus per frame"
        )
        return 0
    card = await asyncio.to_thread(train_model, args.out, seed=args.seed)
    m = card["metrics_test"]
    _out(
        f"wrote {card['file']} ({card['size_bytes']} bytes, sha256 {card['sha256'][:12]}) and "
        f"its card; held-out macro-F1 (S/N > 20) {m['macro_f1_snr_gt_20']}, cosmic-ray recall "
        f"(S/N > 10) {m['cosmic_ray_recall_snr_gt_10']}, star->cosmic ray "
        f"{m['star_to_cosmic_ray_snr_gt_10']}"
    )
    return 0


def _check_synthetic_args(config: Config, args: argparse.Namespace) -> None:
    """Check ``catalog import-synthetic``'s centre, radius and seed before generating stars."""
    _bounded(args.ra, "--ra", 0, 360, unit=" deg")
    _bounded(args.dec, "--dec", -90, 90, unit=" deg")
    _bounded(args.radius, "--radius", 0, 180, above=True, unit=" deg")
    if args.seed is not None:
        _bounded(args.seed, "--seed", 0, _MAX_SEED)
    sky = config.simulator.sky if config.simulator is not None else SimulatedSkyConfig()
    cap = 2 * math.pi * (1 - math.cos(math.radians(args.radius)))  # steradians
    expected = sky.star_density_per_deg2 * cap * (180 / math.pi) ** 2
    if expected > _MAX_SYNTHETIC_STARS:
        raise ConfigError(
            f"--radius: {args.radius:g} deg holds about {expected:.3g} synthetic stars, more "
            f"than {_MAX_SYNTHETIC_STARS:,} at once; import smaller fields"
        )


async def _catalog_fetch(config: Config, args: argparse.Namespace) -> int:
    """``catalog fetch``: every target field of a plan from a TAP provider (see obsctl.catalogs)."""
    from obsctl.catalogs.prefetch import prefetch_plan
    from obsctl.night.plan import load_plan

    if args.margin_deg is not None and not 0.0 <= args.margin_deg <= 5.0:
        raise ConfigError(f"--margin-deg {args.margin_deg}: expected 0 to 5 degrees")
    plan = load_plan(args.plan)
    report = await asyncio.to_thread(
        prefetch_plan, config, plan, provider=args.provider, margin_deg=args.margin_deg
    )
    for cone in report.skipped:
        _out(f"{cone.name}: already in the catalogue ({report.provider}), skipped")
    for cone in report.fetched:
        _out(f"{cone.name}: fetched from {report.provider} ({cone.radius_deg:.3f} deg cone)")
    for cone, reason in report.failed:
        _out(f"{cone.name}: failed: {reason}")
    path = DataDir(config.data.directory).catalog_path
    _out(
        f"{len(report.fetched)} field(s) fetched ({report.stars} stars), "
        f"{len(report.skipped)} already covered, {len(report.failed)} failed, "
        f"{report.requeued} frame(s) queued again; catalogue {path}"
    )
    return 1 if report.failed else 0


async def _catalog(config: Config, args: argparse.Namespace) -> int:
    from obsctl.store.refcat import RefCatalog

    if args.catalog_command == "fetch":
        return await _catalog_fetch(config, args)
    path = DataDir(config.data.directory).catalog_path
    with RefCatalog(path) as catalog:
        if args.catalog_command == "import":
            columns: dict[str, str] = {}
            for item in args.column:
                target, sep, source = item.partition("=")
                if not sep or not target or not source:
                    raise ConfigError(f"--column {item!r}: expected TABLE_COLUMN=FILE_COLUMN")
                columns[target.strip()] = source.strip()
            n = catalog.import_table(args.file, catalog=args.name, columns=columns)
            what = str(args.file)
        else:
            from obsctl.embedded import import_synthetic_sky

            _check_synthetic_args(config, args)
            n = import_synthetic_sky(
                catalog, config, args.ra, args.dec, args.radius, seed=args.seed
            )
            what = f"the synthetic sky within {args.radius:g} deg of ({args.ra:g}, {args.dec:+g})"
        total = len(catalog)
    _out(f"imported {n} stars from {what} into {path}; it now holds {total} stars")
    return 0


async def _reduce(config: Config, args: argparse.Namespace) -> int:
    import functools

    from obsctl.embedded import reference_catalog
    from obsctl.pipeline.stages import Reference, build_stages, check_stages
    from obsctl.pipeline.worker import FrameResult, process_file, worker_pool

    if args.workers is not None:
        _bounded(args.workers, "--workers", 1, 64)
    config = _reduce_overrides(config, args)
    check_stages(config)
    data_dir = DataDir(config.data.directory)
    workers = max(1, min(args.workers or config.pipeline.workers, len(args.files)))
    loop = asyncio.get_running_loop()
    results: list[FrameResult] = []
    with contextlib.ExitStack() as stack:
        reference: Reference | None = reference_catalog(config)
        if args.catalog is not None:
            reference = stack.enter_context(_reference_file(args.catalog))
        factory = functools.partial(build_stages, config, data_dir, reference)
        pool = stack.enter_context(worker_pool(workers, factory, data_dir))
        pending = [loop.run_in_executor(pool, process_file, str(path)) for path in args.files]
        for done, future in enumerate(asyncio.as_completed(pending), start=1):
            result = await future
            results.append(result)
            _progress(done, len(pending), result)
    failed = [r for r in results if r.failed_stage is not None]
    _out(
        f"{len(results) - len(failed)} of {len(results)} frame(s) reduced"
        + (f"; {len(failed)} failed" if failed else "")
    )
    return 1 if failed else 0


@contextlib.contextmanager
def _reference_file(path: Path) -> Iterator[RefCatalog]:
    from obsctl.store.refcat import RefCatalog

    """Open ``reduce --catalog``: a catalog database as it is, a table imported for the run.

    Raises
    ------
    ConfigError
        When the table cannot be read or lacks positions or magnitudes.
    OSError
        When the file is missing or unreadable.
    """
    if path.suffix.lower() in (".sqlite", ".db", ".sqlite3"):
        if not path.is_file():
            raise FileNotFoundError(2, "No such file", str(path))
        with RefCatalog(path) as catalog:
            yield catalog
        return
    with (
        tempfile.TemporaryDirectory(prefix="obsctl-reduce-") as folder,
        RefCatalog(Path(folder) / "catalog.sqlite") as catalog,
    ):
        n = catalog.import_table(path)
        _out(f"{n} reference stars from {path}")
        yield catalog


def _reduce_overrides(config: Config, args: argparse.Namespace) -> Config:
    """Return the config with ``reduce``'s --gain, --apertures and --main-aperture applied.

    Raises
    ------
    ConfigError
        Naming the option when a value is not a finite number in its range.
    """
    pipeline = config.pipeline
    updates: dict[str, Any] = {}
    if args.gain is not None:
        _bounded(args.gain, "--gain", 0.0, 1000.0, above=True, unit=" e-/ADU")
        updates["gain_e_per_adu"] = args.gain
    radii = pipeline.aperture_fwhm
    if args.apertures is not None:
        try:
            radii = tuple(float(r) for r in args.apertures.split(","))
        except ValueError:
            raise ConfigError(
                f"--apertures: expected numbers separated by commas, got {args.apertures!r}"
            ) from None
        if not 1 <= len(radii) <= 16:
            raise ConfigError(f"--apertures: 1 to 16 radii, got {len(radii)}")
        for radius in radii:
            _bounded(radius, "--apertures", 0.0, 50.0, above=True, unit=" FWHM")
        updates["aperture_fwhm"] = radii
        updates["main_aperture"] = None  # the config's index may not fit the new list
    if args.main_aperture is not None:
        _bounded(args.main_aperture, "--main-aperture", 0, len(radii) - 1)
        updates["main_aperture"] = args.main_aperture
    if not updates:
        return config
    return config.model_copy(update={"pipeline": pipeline.model_copy(update=updates)})


def _finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def _progress(done: int, total: int, result: Any) -> None:
    width = 24
    bar = "#" * (width * done // total) + "." * (width - width * done // total)
    name = Path(result.path).name
    if result.failed_stage is not None:
        what = f"FAILED in {result.failed_stage}: {result.reason}"
    else:
        m = result.metrics
        parts = [f"{0 if result.sources is None else len(result.sources)} sources"]
        # A frame with no pixel scale (no WCS, no focal length) has its FWHM in pixels only.
        fwhm = (
            ("fwhm_arcsec", '{:.2f}"')
            if _finite(m.get("fwhm_arcsec"))
            else ("fwhm_px", "{:.2f} px")
        )
        for key, label, fmt in (
            (fwhm[0], "FWHM", fwhm[1]),
            ("zero_point", "ZP", "{:.3f}"),
            ("wcs_rms_arcsec", "WCS rms", '{:.2f}"'),
        ):
            if _finite(m.get(key)):
                parts.append(f"{label} {fmt.format(m[key])}")
        if result.flags:
            parts.append(f"flags: {'; '.join(result.flags)}")
        what = ", ".join(parts)
    sys.stderr.write(f"[{bar}] {done}/{total} {name}: {what}\n")
    sys.stderr.flush()


def _night_range(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """Return the nights of ``--night`` or ``--from-night``/``--to-night`` (both included).

    Raises
    ------
    ConfigError
        When a night is no date, or ``--night`` is given with a range.
    """
    if args.night is not None:
        if args.from_night is not None or args.to_night is not None:
            raise ConfigError("--night: give one night or a range (--from-night, --to-night)")
        night = _night_arg(args.night, "--night").isoformat()
        return night, night
    first = None if args.from_night is None else _night_arg(args.from_night, "--from-night")
    last = None if args.to_night is None else _night_arg(args.to_night, "--to-night")
    if first is not None and last is not None and first > last:
        raise ConfigError(f"--from-night {first} is after --to-night {last}")
    return (
        None if first is None else first.isoformat(),
        None if last is None else last.isoformat(),
    )


async def _reprocess(config: Config, args: argparse.Namespace) -> int:
    import functools
    import threading

    from obsctl.embedded import reference_catalog
    from obsctl.pipeline.reprocess import (
        Selection,
        Summary,
        check_cluster,
        check_from_stage,
        dask_client,
        reprocess,
    )
    from obsctl.pipeline.stages import build_stages, check_stages

    workers = args.workers if args.workers is not None else config.pipeline.workers
    _bounded(workers, "--workers", 1, 256)
    _bounded(args.batch_size, "--batch-size", 1, 100_000)
    _bounded(args.connect_timeout, "--connect-timeout", 0.0, 3600.0, above=True, unit=" s")
    if args.limit is not None:
        _bounded(args.limit, "--limit", 1, _MAX_ROWS)
    stage_names = tuple(config.pipeline.stages)
    check_from_stage(args.from_stage, stage_names)
    check_cluster(args.cluster)
    check_stages(config)
    first, last = _night_range(args)
    selection = Selection(
        first_night=first,
        last_night=last,
        target=args.target,
        filter_name=args.filter,
        image_type=args.type,
        state=args.state,
    )
    data_dir = DataDir(config.data.directory)
    factory = functools.partial(build_stages, config, data_dir, reference_catalog(config))
    stop = threading.Event()
    shown = [0.0, 0.0]  # last progress line, start of the tasks (time.monotonic)

    def connected(client: Any) -> None:
        where = "a local cluster" if args.cluster == "local" else args.cluster
        dashboard = "off" if args.no_dashboard else client.dashboard_link
        _out(f"Dask: {where}, {len(client.nthreads())} worker(s); dashboard {dashboard}")

    def progress(summary: Summary, result: Any) -> None:
        now = time.monotonic()
        if result is None:
            how = "taken up again" if summary.resumed else "new"
            _out(
                f"reprocess run {summary.run_id} ({how}): {summary.n_frames} frame(s)"
                + (f", from stage {args.from_stage}" if args.from_stage else ", every stage")
                + f"; {summary.finished_before} finished before"
            )
            shown[:] = [now, now]
            return
        if now - shown[0] < 1.0 and summary.remaining:  # one line a second at most
            return
        shown[0] = now
        total = summary.done + summary.remaining
        width = 24
        filled = width * summary.done // max(total, 1)
        rate = summary.done / max(now - shown[1], 1e-9)
        failed = f", {summary.failed} failed" if summary.failed else ""
        sys.stderr.write(
            f"[{'#' * filled}{'.' * (width - filled)}] {summary.done}/{total} "
            f"{rate:.1f} frames/s{failed}\n"
        )
        sys.stderr.flush()

    def run() -> Summary:
        with data_dir.lock():  # the one writer of the log: no daemon beside the run
            log_db = data_dir.open_log(existing=True)
            try:
                return reprocess(
                    log_db,
                    data_dir,
                    factory,
                    stage_names,
                    selection,
                    cluster=functools.partial(
                        dask_client,
                        args.cluster,
                        workers=workers,
                        dashboard=not args.no_dashboard,
                        connect_timeout_s=args.connect_timeout,
                    ),
                    from_stage=args.from_stage,
                    new=args.new,
                    limit=args.limit,
                    batch_size=args.batch_size,
                    on_client=connected,
                    progress=progress,
                    stop=stop,
                )
            finally:
                log_db.close()

    task = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        summary = await asyncio.shield(task)
    except asyncio.CancelledError:  # Ctrl-C: write what is in hand, leave the rest pending
        stop.set()
        stopped = await task
        sys.stderr.write(
            f"obsctl: run {stopped.run_id} stopped with {stopped.remaining} frame(s) pending: "
            "run the same command again to go on\n"
        )
        raise
    if summary.n_frames == 0:
        sys.stderr.write("obsctl: no logged frame matches the selection\n")
        return 1
    rate = summary.done / summary.wall_s if summary.wall_s > 0 else math.nan
    _out(
        f"run {summary.run_id}: {summary.done} frame(s) processed"
        + (f" ({summary.failed} failed)" if summary.failed else "")
        + f" in {summary.wall_s:.1f} s ({rate:.2f} frames/s); "
        + (
            f"{summary.remaining} still pending: run the same command again"
            if summary.remaining
            else f"the run is complete ({summary.n_frames} frames)"
        )
        + (
            f"; nights refitted: {', '.join(summary.nights_refitted)}"
            if summary.nights_refitted
            else ""
        )
    )
    return 1 if summary.failed else 0


async def _export(config: Config, args: argparse.Namespace) -> int:
    from obsctl.store.parquet import export_parquet

    first, last = _night_range(args)
    data_dir = DataDir(config.data.directory)
    out = args.out if args.out is not None else data_dir.root / "export" / "parquet"
    log_db = data_dir.open_log(existing=True)
    try:
        counts = await asyncio.to_thread(
            export_parquet, log_db, out, first_night=first, last_night=last
        )
    finally:
        log_db.close()
    _out(
        f"exported to {out}: "
        + ", ".join(f"{n} {table} row(s)" for table, n in counts.items())
        + "; schema in docs/parquet.md"
    )
    return 0


async def _plan(config: Config, args: argparse.Namespace) -> int:
    from obsctl.night.plan import load_plan
    from obsctl.night.progress import describe_status
    from obsctl.night.timeline import check_plan

    if args.plan_command == "check":
        night = _night_arg(args.night, "--night")
        _out(await asyncio.to_thread(check_plan, config, args.plan, night))
        return 0
    plan = load_plan(args.plan)
    if args.night is not None:
        night_text = _night_arg(args.night, "--night").isoformat()
    else:
        now = datetime.now(UTC)
        night_text = night_of(now, config.site.longitude_deg)
    db = DataDir(config.data.directory).open_log(existing=True)
    try:
        _out(await asyncio.to_thread(describe_status, db, plan, night_text))
    finally:
        db.close()
    return 0


async def _night(config: Config, args: argparse.Namespace) -> int:
    from obsctl.daemon import Daemon
    from obsctl.night.control import NightControl
    from obsctl.night.runner import NightRunner, run_night
    from obsctl.night.timeline import night_clock, simulation_config

    _bounded(args.speed, "--speed", 0, MAX_SPEED, above=True, unit=" (simulated s per s)")
    night = _night_arg(args.date, "--date") if args.date else None
    night_config = config.night
    control = NightControl.from_file(
        args.plan, start_hooks=night_config.start_hooks, end_hooks=night_config.end_hooks
    )
    plan = control.plan
    lead_s = max(900.0, _START_REAL_S * args.speed)  # the daemon's start must not be late
    clock, night = await asyncio.to_thread(
        night_clock, config, plan, night, speed=args.speed, lead_s=lead_s
    )
    daemon = Daemon(simulation_config(config, args.speed), clock=clock)
    _out(f"night {night} of plan {plan.name!r}, clock at {clock.now():%Y-%m-%d %H:%M} UTC")

    async with _announced(daemon):
        summary = await run_night(NightRunner(daemon, plan, night, control=control))
    for name, when in summary.events:
        _out(f"  {when:%H:%M:%S}  {name}")
    for line in _night_lines(summary):
        _out(line)
    # Scripts read the exit code: a target left failed or interrupted, darks not done.
    return 1 if summary.incomplete else 0


async def _simulate(config: Config) -> int:
    from obsctl.simulators.observatory import serve_forever

    # Where the simulators listen is the point of this command: say it without -v.
    logging.getLogger("obsctl.simulators.observatory").setLevel(logging.INFO)

    await serve_forever(config)
    return 0


def _text(value: str) -> str:
    """Return a text argument that the database is searched for or stores: UTF-8 only.

    A shell passes bytes that are not UTF-8 as lone surrogates, which SQLite cannot take.

    Raises
    ------
    argparse.ArgumentTypeError
        When the text is not UTF-8.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"not UTF-8 text: {value!r}") from None
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obsctl", description="Observatory-control daemon.")
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        help="TOML config (default: the embedded simulated observatory)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument(
        "--port-offset",
        type=int,
        default=0,
        metavar="N",
        help="move the control API, the simulators and discovery (and the devices that use "
        "the simulators) N ports off the config's, to run beside another obsctl",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("simulate", help="serve the configured Alpaca simulators until Ctrl-C")
    run = sub.add_parser("run", help="run the daemon: sequencer, safety supervisor, control API")
    run.add_argument(
        "--sequence",
        action="append",
        default=[],
        type=Path,
        help="sequence TOML to queue at start (repeatable)",
    )
    run.add_argument("--until-idle", action="store_true", help="exit when no sequence is left")
    run.add_argument(
        "--plan",
        type=Path,
        default=None,
        help="run every night of this plan TOML (default: [night] plan of the config)",
    )
    run.add_argument("--date", default=None, help="with --plan: the first night, YYYY-MM-DD")
    run.add_argument(
        "--speed",
        type=float,
        default=None,
        help="with --plan: simulated seconds per real second (a simulated clock from dusk)",
    )
    run.add_argument("--nights", type=int, default=None, help="with --plan: stop after N nights")
    status = sub.add_parser("status", help="ask the running daemon what it is doing")
    status.add_argument("--url", default=None, help="daemon URL (default: from the config)")
    log_cmd = sub.add_parser("log", help="query the exposure log")
    log_cmd.add_argument("--night", help="night as YYYY-MM-DD")
    log_cmd.add_argument("--target", type=_text)
    log_cmd.add_argument("--filter", type=_text)
    log_cmd.add_argument("--type", type=str.upper, choices=["LIGHT", "DARK", "BIAS", "FLAT"])
    log_cmd.add_argument("--limit", type=int, default=None, help="newest N only")
    log_cmd.add_argument("--csv", action="store_true", help="CSV with every column")
    sub.add_parser("devices", help="connect to each configured device and print its state")
    expose = sub.add_parser("expose", help="take one exposure and write it as FITS")
    expose.add_argument("--exptime", type=float, required=True, help="exposure time in seconds")
    expose.add_argument("--filter", default=None, help="filter name (needs a filter wheel)")
    expose.add_argument("--out", type=Path, required=True, help="output FITS file")
    expose.add_argument("--bin", type=int, default=1, help="binning factor (default 1)")
    expose.add_argument(
        "--type", default="light", choices=["light", "dark", "bias", "flat"], help="image type"
    )
    reduce = sub.add_parser("reduce", help="run the per-frame pipeline on FITS files")
    reduce.add_argument("files", nargs="+", type=Path, help="FITS files (from any tool)")
    reduce.add_argument("--workers", type=int, default=None, help="default: from the config")
    reduce.add_argument(
        "--catalog",
        type=Path,
        default=None,
        help="reference stars for astrometry and the zero point: an obsctl catalog database "
        "(.sqlite) or a table (CSV, ECSV, FITS, VOTable; columns as for `catalog import`) "
        "(default: the config's reference catalog)",
    )
    reduce.add_argument(
        "--gain",
        type=float,
        default=None,
        help="conversion gain in e-/ADU for every file (default: the header's EGAIN or GAIN; "
        "1 e-/ADU, flagged, when it has none)",
    )
    reduce.add_argument(
        "--apertures",
        default=None,
        help="aperture radii in units of the stellar FWHM, comma-separated (default 1,1.5,2,3)",
    )
    reduce.add_argument(
        "--main-aperture",
        type=int,
        default=None,
        help="index (0-based) of the aperture reported as flux and mag (default: 1.5 FWHM "
        "when listed, else the first)",
    )
    calib = sub.add_parser("calib", help="calibration masters")
    calib_sub = calib.add_subparsers(dest="calib_command", required=True)
    calib_build = calib_sub.add_parser("build", help="combine logged bias/dark/flat frames")
    calib_build.add_argument("--night", help="night as YYYY-MM-DD (default: every night)")
    calib_build.add_argument(
        "--method", choices=["median", "sigma"], default=None, help="default: from the config"
    )
    ref = sub.add_parser("reference", help="reference images of fields (difference imaging)")
    ref_sub = ref.add_subparsers(dest="reference_command", required=True)
    ref_build = ref_sub.add_parser("build", help="combine a field's best frames into its reference")
    ref_build.add_argument("field", type=_text, help="the frames' target (OBJECT)")
    ref_build.add_argument(
        "--filter", type=_text, default=None, help="default: each filter of the field's frames"
    )
    ref_build.add_argument("--camera", type=_text, default=None, help="default: the best frame's")
    ref_list = ref_sub.add_parser("list", help="list the reference images")
    ref_list.add_argument("field", type=_text, nargs="?", default=None, help="only this field")
    plan = sub.add_parser("plan", help="night plans")
    plan_sub = plan.add_subparsers(dest="plan_command", required=True)
    plan_check = plan_sub.add_parser("check", help="validate a plan and print its night")
    plan_check.add_argument("plan", type=Path, help="plan TOML")
    plan_check.add_argument("--night", required=True, help="night as YYYY-MM-DD")
    plan_status = plan_sub.add_parser(
        "status", help="a plan's progress from the log: visits, goals, cadence"
    )
    plan_status.add_argument("plan", type=Path, help="plan TOML")
    plan_status.add_argument("--night", help="night as YYYY-MM-DD (default: tonight)")
    night = sub.add_parser("night", help="run the daemon through one night of a plan")
    night.add_argument("--plan", type=Path, required=True, help="plan TOML")
    night.add_argument("--date", default=None, help="night as YYYY-MM-DD (default: tonight)")
    night.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated seconds per real second (!= 1: a simulated clock from dusk)",
    )
    catalog = sub.add_parser("catalog", help="fill the local reference-star catalog")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True)
    cat_import = catalog_sub.add_parser(
        "import", help="load a CSV/ECSV/FITS/VOTable extract (Gaia, APASS, ...)"
    )
    cat_import.add_argument("file", type=Path, help="the table file")
    cat_import.add_argument(
        "--name", type=_text, default=None, help="catalog name (default: file name)"
    )
    cat_import.add_argument(
        "--column",
        type=_text,
        action="append",
        default=[],
        metavar="TABLE=FILE",
        help="map a table column to a file column, e.g. mag_v=Vmag (repeatable)",
    )
    cat_synth = catalog_sub.add_parser(
        "import-synthetic", help="load the simulated sky's stars around a position"
    )
    cat_synth.add_argument("--ra", type=float, required=True, help="centre RA in degrees")
    cat_synth.add_argument("--dec", type=float, required=True, help="centre Dec in degrees")
    cat_synth.add_argument("--radius", type=float, required=True, help="radius in degrees")
    cat_synth.add_argument("--seed", type=int, default=None, help="sky seed (default: config)")
    cat_fetch = catalog_sub.add_parser(
        "fetch", help="fetch every target field of a plan from Gaia DR3, APASS or ATLAS (TAP)"
    )
    cat_fetch.add_argument("--plan", type=Path, required=True, help="night plan (TOML)")
    cat_fetch.add_argument(
        "--provider",
        choices=("gaia", "apass", "atlas"),
        default=None,
        help="catalogue (default: [catalogs] provider)",
    )
    cat_fetch.add_argument(
        "--margin-deg",
        type=float,
        default=None,
        help="added to the camera field's half diagonal (default: [catalogs] margin_deg)",
    )
    lc = sub.add_parser("lightcurve", help="print or write a monitored target's light curve")
    lc.add_argument("target", type=_text, help="monitored target name")
    lc.add_argument("--format", choices=("csv", "ecsv", "aavso"), default="csv")
    lc.add_argument("--out", type=Path, default=None, help="write to this file")
    lc.add_argument("--plot", type=Path, default=None, help="also write a PNG plot")
    lc.add_argument(
        "--fold",
        action="store_true",
        help="without a configured period, fold the plot on each method's best period",
    )
    alerts = sub.add_parser("alerts", help="list the latest light-curve alerts")
    alerts.add_argument("--limit", type=int, default=50)
    transients = sub.add_parser(
        "transients", help="list the transients and moving objects of the difference images"
    )
    transients.add_argument("--night", default=None, help="one night, YYYY-MM-DD (default: all)")
    transients.add_argument(
        "--all", action="store_true", help="also the transients not alerted (seen too few times)"
    )
    mpc = sub.add_parser("mpc", help="write a night's moving objects as an MPC 80-column report")
    mpc.add_argument("--night", required=True, help="the night, YYYY-MM-DD")
    mpc.add_argument(
        "--code", default=None, help="MPC observatory code (default: [difference] mpc_code)"
    )
    mpc.add_argument("--out", type=Path, default=None, help="write to this file (default: stdout)")
    model = sub.add_parser(
        "model", help="the ONNX source, variable-star and real/bogus classifiers"
    )
    model_sub = model.add_subparsers(dest="model_command", required=True)
    model_train = model_sub.add_parser(
        "train", help="train one on simulated data, export ONNX and its model card"
    )
    model_train.add_argument(
        "--model",
        choices=("sources", "variables", "realbogus"),
        default="sources",
        help="the source classifier (simulated frames), the light-curve classifier "
        "(a simulated variable-star population) or the real/bogus classifier of "
        "difference-imaging candidates (simulated fields through the pipeline)",
    )
    model_train.add_argument(
        "--out", type=Path, default=None, help="output folder (default: the shipped model's)"
    )
    model_train.add_argument("--seed", type=int, default=0, help="training seed")
    repro = sub.add_parser(
        "reprocess", help="run the pipeline again over logged frames, on a Dask cluster"
    )
    _night_options(repro)
    repro.add_argument("--target", type=_text, default=None, help="target name")
    repro.add_argument("--filter", type=_text, default=None, help="filter name")
    repro.add_argument(
        "--type",
        type=str.upper,
        choices=["LIGHT", "DARK", "BIAS", "FLAT"],
        default="LIGHT",
        help="image type (default LIGHT)",
    )
    repro.add_argument(
        "--state",
        choices=["done", "failed", "queued", "running", "none"],
        default=None,
        help="processing state (none: never queued; default: any)",
    )
    repro.add_argument(
        "--from-stage",
        default=None,
        metavar="NAME",
        help="run this stage and the ones after it on the stored results (classify, "
        "astrometry, zeropoint); default: every stage from the raw frame, calibrated with "
        "the masters the live pipeline picks today",
    )
    repro.add_argument(
        "--cluster",
        default="local",
        help="'local' (a Dask LocalCluster of processes on 127.0.0.1, the default) or a "
        "scheduler address, tcp://host:8786",
    )
    repro.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local cluster's worker processes (default: [pipeline] workers)",
    )
    repro.add_argument(
        "--limit", type=int, default=None, help="process at most N frames now; rerun for the rest"
    )
    repro.add_argument(
        "--batch-size", type=int, default=50, help="results written per transaction (default 50)"
    )
    repro.add_argument(
        "--new", action="store_true", help="start a new run even if the same one is unfinished"
    )
    repro.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to reach a remote scheduler (default 10)",
    )
    repro.add_argument("--no-dashboard", action="store_true", help="no Dask dashboard")
    export = sub.add_parser("export", help="export results for analysis")
    export_sub = export.add_subparsers(dest="export_command", required=True)
    export_pq = export_sub.add_parser(
        "parquet",
        help="measurements, frame metrics and light curves as Parquet, partitioned by night",
    )
    export_pq.add_argument(
        "--out", type=Path, default=None, help="folder (default: <data>/export/parquet)"
    )
    _night_options(export_pq)
    return parser


def _night_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--night", default=None, help="one night, YYYY-MM-DD")
    parser.add_argument("--from-night", default=None, help="first night, YYYY-MM-DD")
    parser.add_argument("--to-night", default=None, help="last night, YYYY-MM-DD (included)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = _parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commands: dict[str, Callable[[Config], Coroutine[Any, Any, int]]] = {
        "simulate": _simulate,
        "devices": _devices,
        "run": lambda config: _run(config, args),
        "status": lambda config: _status(config, args),
        "log": lambda config: _log(config, args),
        "expose": lambda config: _expose(config, args),
        "catalog": lambda config: _catalog(config, args),
        "calib": lambda config: _calib(config, args),
        "reference": lambda config: _reference(config, args),
        "reduce": lambda config: _reduce(config, args),
        "plan": lambda config: _plan(config, args),
        "night": lambda config: _night(config, args),
        "model": lambda config: _model(config, args),
        "lightcurve": lambda config: _lightcurve(config, args),
        "alerts": lambda config: _alerts(config, args),
        "transients": lambda config: _transients(config, args),
        "mpc": lambda config: _mpc(config, args),
        "reprocess": lambda config: _reprocess(config, args),
        "export": lambda config: _export(config, args),
    }
    try:
        config = offset_ports(load_config(args.config), args.port_offset)
        return asyncio.run(commands[args.command](config))
    except ConfigError as exc:
        sys.stderr.write(f"obsctl: {exc}\n")
        return 2
    except ObsctlError as exc:
        sys.stderr.write(f"obsctl: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `obsctl log | head`: the reader has gone, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file given on the command line: missing, unwritable, a folder
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"obsctl: {where}{exc.strerror or exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
