"""The control API: status, sequences, exposure log and server-sent events, over aiohttp.

aiohttp rather than a second web stack: the simulators and the Alpaca drivers already use it,
and it streams server-sent events natively.

| method | path | what |
| --- | --- | --- |
| GET | /api/status | activity, safety (why, time to safe, weather), devices, health, queue |
| GET | /api/sequences | sequences, their states and definitions (paged) |
| POST | /api/sequences | queue a sequence (JSON body); 201 with its id |
| POST | /api/sequences/{id}/stop | stop a pending or running sequence |
| POST | /api/abort | abort the running exposure and its sequence |
| POST | /api/too | a target of opportunity for the plan being run (a plan target, JSON); 201 |
| GET | /api/exposures | the exposure log (``night``, ``target``, ``filter``, ``type``; paged) |
| GET | /api/failures | recorded failures (paged) |
| GET | /api/metrics | per-frame metrics: FWHM, background, zero point, transparency (paged) |
| GET | /api/extinction | a night's photometric solution per filter and its frames (``night``) |
| GET | /api/lightcurves | monitored targets and their statistics (paged) |
| GET | /api/lightcurve | one target's points (``target``) |
| GET | /api/alerts | alerts, newest first (paged) |
| GET | /api/events | server-sent events (activity, frame, safety, failure...) |

**Listings** are paged: ``limit`` rows (default 100, at most 1000; sequences, which carry
their definitions, 20 and 100) from ``offset`` (0-based), oldest first except alerts. While
more rows follow, the reply has a ``Link: <next page>; rel="next"`` header.

**Access** (`obsctl.web._access`): the server binds to 127.0.0.1 unless configured otherwise;
the Host header must name the bound address or a name of ``[server] allowed_hosts``; POST
requests need ``Content-Type: application/json`` and a same-origin (or no) ``Origin``; with a
token, they need ``Authorization: Bearer <token>``, and beyond loopback every request does.
Bodies are strict JSON: ``NaN``, ``Infinity`` and out-of-range numbers are a 400. Every error
is a JSON ``{"error": ...}`` with a 4xx status (5xx only for a fault of the daemon).

The quick-look page (``/``) and its data routes come from `obsctl.web`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiohttp import web

from obsctl.acquisition.running import RunningState
from obsctl.acquisition.safety import SafetySupervisor
from obsctl.acquisition.sequence import Sequence, parse_sequence
from obsctl.acquisition.transparency import TransparencyWatch
from obsctl.config import Config
from obsctl.devices import DeviceSet
from obsctl.errors import ConfigError, DeviceError, ScheduleError
from obsctl.pipeline.queue import ProcessingQueue
from obsctl.processing.zeropoint import transparency
from obsctl.store.datadir import DataDir
from obsctl.store.exposure_log import ExposureLog
from obsctl.web import QuickLook, add_quicklook
from obsctl.web._access import access_middleware
from obsctl.web._http import (
    BadRequestError,
    Page,
    error_response,
    errors_middleware,
    json_response,
    page_response,
    path_id,
    query_page,
    read_json_body,
    serialize_rows,
    server_logger,
)

__all__ = ["Observatory", "build_app", "start_api"]

log = logging.getLogger(__name__)


class Observatory(Protocol):
    """What the control API reads and drives: the running daemon (`obsctl.daemon.Daemon`)."""

    @property
    def config(self) -> Config:
        """The configuration (server token, pipeline)."""
        ...

    @property
    def data_dir(self) -> DataDir:
        """The data directory the quick-look page serves frames from."""
        ...

    @property
    def running(self) -> RunningState:
        """The devices, exposure log, activity, events, supervisor and frame writer."""
        ...

    def enqueue(self, sequence: Sequence) -> int:
        """Queue a sequence; return its id."""
        ...

    async def stop_sequence(self, sequence_id: int) -> bool:
        """Stop a pending or running sequence; False when there is none."""
        ...

    async def abort_exposure(self) -> None:
        """Abort the running exposure and its sequence."""
        ...

    def night_status(self) -> dict[str, Any] | None:
        """Return the plan being run and its step; None without a plan."""
        ...

    def post_target(self, data: dict[str, Any]) -> dict[str, Any]:
        """Add a target of opportunity; `ConfigError` or `ScheduleError` when refused."""
        ...


STATE: web.AppKey[Observatory] = web.AppKey("observatory")
_STATUS_TIMEOUT_S = 1.0
#: Sequences listed in the status, at most: the queue can be long, the status stays small.
_STATUS_SEQUENCES = 20
#: Page sizes of the sequence listing: each row carries a whole definition.
_SEQUENCES_PAGE = 20
_SEQUENCES_PAGE_MAX = 100
#: A night as the exposure log names it (DAY-OBS): ASCII digits only.
_NIGHT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


async def _read(name: str, call: Callable[[], Awaitable[Any]]) -> tuple[str, Any]:
    try:
        async with asyncio.timeout(_STATUS_TIMEOUT_S):
            value = await call()
    except (DeviceError, TimeoutError) as exc:
        return name, {"error": str(exc) or type(exc).__name__}
    return name, value


def _log(request: web.Request) -> ExposureLog:
    return request.app[STATE].running.log_db


async def device_status(d: DeviceSet) -> dict[str, Any]:
    """Read every device's state concurrently, each under a short deadline."""
    calls: list[Awaitable[tuple[str, Any]]] = []

    async def camera() -> dict[str, Any]:
        st = await d.camera.status()
        return {
            "name": d.camera.name,
            "state": st.state.name,
            "percent_completed": st.percent_completed,
            "image_ready": st.image_ready,
            "ccd_temperature_c": st.ccd_temperature_c,
            "set_temperature_c": st.set_temperature_c,
            "cooler_on": st.cooler_on,
            "cooler_power_pct": st.cooler_power_pct,
        }

    calls.append(_read("camera", camera))
    if d.filter_wheel is not None:
        wheel = d.filter_wheel

        async def filter_wheel() -> dict[str, Any]:
            names, position = await asyncio.gather(wheel.names(), wheel.position())
            current = None if position is None else names[position]
            return {"name": wheel.name, "position": position, "filter": current, "names": names}

        calls.append(_read("filter_wheel", filter_wheel))
    if d.mount is not None:
        mount = d.mount

        async def mount_status() -> dict[str, Any]:
            ms = await mount.status()
            return {
                "name": mount.name,
                "ra_deg": ms.ra_deg,
                "dec_deg": ms.dec_deg,
                "alt_deg": ms.alt_deg,
                "az_deg": ms.az_deg,
                "slewing": ms.slewing,
                "tracking": ms.tracking,
                "at_park": ms.at_park,
                "pier_side": ms.pier_side.name,
            }

        calls.append(_read("mount", mount_status))
    if d.dome is not None:
        dome = d.dome

        async def dome_status() -> dict[str, Any]:
            ds = await dome.status()
            return {
                "name": dome.name,
                "shutter": None if ds.shutter is None else ds.shutter.name,
                "azimuth_deg": ds.azimuth_deg,
                "slewing": ds.slewing,
                "at_park": ds.at_park,
            }

        calls.append(_read("dome", dome_status))
    if d.cover_calibrator is not None:
        panel = d.cover_calibrator

        async def panel_status() -> dict[str, Any]:
            ps = await panel.status()
            return {
                "name": panel.name,
                "cover": ps.cover.name,
                "calibrator": ps.calibrator.name,
                "brightness": ps.brightness,
            }

        calls.append(_read("cover_calibrator", panel_status))
    if d.focuser is not None:
        focuser = d.focuser

        async def focuser_status() -> dict[str, Any]:
            fs = await focuser.status()
            return {
                "name": focuser.name,
                "position": fs.position,
                "moving": fs.moving,
                "temperature_c": fs.temperature_c,
                "temp_comp": fs.temp_comp,
            }

        calls.append(_read("focuser", focuser_status))
    return dict(await asyncio.gather(*calls))


def _queued(log_db: ExposureLog) -> tuple[list[dict[str, Any]], int]:
    """Return the first running and pending sequences (id, name, state) and their number."""
    rows = log_db.sequences(states=("running", "pending"), definitions=False)
    first = [{"id": r["id"], "name": r["name"], "state": r["state"]} for r in rows]
    return first[:_STATUS_SEQUENCES], len(rows)


async def _status(request: web.Request) -> web.Response:
    state = request.app[STATE]
    running = state.running
    # Off the event loop: a worker thread may hold the database for a while.
    queued, in_queue = await asyncio.to_thread(_queued, running.log_db)
    processing = await asyncio.to_thread(_processing_counts, state)
    safety = running.supervisor
    return json_response(
        {
            "activity": running.activity.as_dict(),
            "safety": _safety(safety, running.transparency),
            "devices": await device_status(running.devices),
            # Connected, last error and since when, per role: what waits for which device.
            "health": None if running.health is None else running.health.as_dict(),
            # The plan being run: what the night runner does between visits, until when.
            "night": state.night_status(),
            "queue": {
                "sequences": queued,
                "sequences_total": in_queue,
                "frames_to_store": running.writer.pending,
                "processing": processing,
            },
        }
    )


def _safety(supervisor: SafetySupervisor, transparency: TransparencyWatch | None) -> dict[str, Any]:
    """Safe or not and why, the time to safe (s), the weather, the clouds in the frames.

    ``transparency`` is None without ``[safety.transparency]``.
    """
    weather = supervisor.weather
    return {
        "transparency": None if transparency is None else transparency.as_dict(),
        "safe": supervisor.is_safe,
        "reason": supervisor.reason,
        "safe_in_s": supervisor.safe_in_s,
        "weather": None
        if weather is None
        else {k: v for k, v in weather.values.items() if v is not None and math.isfinite(v)},
        "unwatched": [] if weather is None else list(weather.unwatched),
    }


def _processing_counts(state: Observatory) -> dict[str, int] | None:
    """Frames per pipeline state (queued, running, done, failed); None without a pipeline."""
    if not state.config.pipeline.enabled:
        return None
    return ProcessingQueue(state.running.log_db).counts()


async def _sequences(request: web.Request) -> web.Response:
    log_db = _log(request)
    page = query_page(request, default=_SEQUENCES_PAGE, maximum=_SEQUENCES_PAGE_MAX)

    def fetch(rows: Page) -> list[dict[str, Any]]:
        found = log_db.sequences(window=(rows.offset, rows.limit))
        for row in found:
            # Stored as the JSON the daemon wrote: passed on as it is, never parsed again.
            row["definition"] = orjson.Fragment(row["definition"])
        return found

    return await page_response(request, page, fetch)


async def _add_sequence(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await read_json_body(request)
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object: a sequence")
    try:
        # In a thread: a long sequence takes a while to validate.
        sequence = await asyncio.to_thread(parse_sequence, body, source="request")
    except ConfigError as exc:
        raise BadRequestError(str(exc)) from None
    sid = state.enqueue(sequence)
    return json_response({"id": sid, "name": sequence.name, "state": "pending"}, status=201)


async def _stop_sequence(request: web.Request) -> web.Response:
    sid = path_id(request, "sequence")
    if not await request.app[STATE].stop_sequence(sid):
        return error_response(404, f"no pending or running sequence {sid}")
    return json_response({"id": sid, "state": "stopped"})


async def _add_target(request: web.Request) -> web.Response:
    body = await read_json_body(request)
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object: a plan target with a priority")
    try:
        # On the loop, not in a thread: it publishes an event (the bus is not thread-safe).
        added = request.app[STATE].post_target(body)
    except ConfigError as exc:
        raise BadRequestError(str(exc)) from None
    except ScheduleError as exc:  # no plan runs, or the name is taken
        return error_response(409, str(exc))
    return json_response(added, status=201)


async def _abort(request: web.Request) -> web.Response:
    await request.app[STATE].abort_exposure()
    return json_response({"aborted": True})


async def _exposures(request: web.Request) -> web.Response:
    q = request.query
    log_db = _log(request)
    page = query_page(request)

    def fetch(rows: Page) -> list[dict[str, Any]]:
        found = log_db.exposures(
            night=q.get("night") or None,
            target=q.get("target") or None,
            filter_name=q.get("filter") or None,
            image_type=q.get("type") or None,
            window=(rows.offset, rows.limit),
        )
        return found

    return await page_response(request, page, fetch)


async def _metrics(request: web.Request) -> web.Response:
    log_db = _log(request)
    nominal = request.app[STATE].config.pipeline.nominal_zero_point
    night = request.query.get("night") or None
    page = query_page(request)

    def fetch(rows: Page) -> list[dict[str, Any]]:
        # The whole night's rows: a filter's best zero point is the reference of every page.
        found = log_db.metrics(night)
        add_transparency(found, nominal)
        return found[rows.offset : rows.end]

    return await page_response(request, page, fetch)


def add_transparency(rows: list[dict[str, Any]], nominal: dict[str, float]) -> None:
    """Add ``transparency`` to frame-metric rows: the zero point's trend as a cloud indicator.

    Transparency is ``10**(-0.4 * (reference - zero_point))``: 1 under a clear sky, 0.5 when
    clouds take half the light. The reference is the configured clear-sky zero point of the
    filter, or else the best zero point of that filter and night.
    """
    best: dict[tuple[str, str], float] = {}
    for row in rows:
        if row.get("zero_point") is not None:
            key = (str(row.get("night")), str(row.get("filter")))
            best[key] = max(best.get(key, -99.0), float(row["zero_point"]))
    for row in rows:
        zp = row.get("zero_point")
        reference = nominal.get(str(row.get("filter")))
        if reference is None:
            reference = best.get((str(row.get("night")), str(row.get("filter"))))
        row["transparency"] = (
            None if zp is None or reference is None else transparency(float(zp), reference)
        )


async def _extinction(request: web.Request) -> web.Response:
    """Reply with a night's extinction and colour terms per filter, and its frames' zero points.

    ``{"night", "filters": [night_fits rows], "frames": [night_fit_frames rows]}``; empty
    lists for a night without a fit yet. The night is required, as ``YYYY-MM-DD``.
    """
    night = request.query.get("night")
    if not night:
        raise BadRequestError("night is required (?night=YYYY-MM-DD)")
    if len(night) != 10 or not _NIGHT.fullmatch(night):
        raise BadRequestError(f"night must be YYYY-MM-DD, got {night[:40]!r}")
    log_db = _log(request)

    def body() -> bytes:
        # A night's frames are a few thousand rows at most: one document, made in a thread.
        fits = serialize_rows(log_db.night_fits(night))
        frames = serialize_rows(log_db.night_fit_frames(night))
        return orjson.dumps(
            {"night": night, "filters": orjson.Fragment(fits), "frames": orjson.Fragment(frames)}
        )

    return web.Response(body=await asyncio.to_thread(body), content_type="application/json")


async def _failures(request: web.Request) -> web.Response:
    log_db = _log(request)
    page = query_page(request)

    def fetch(rows: Page) -> list[dict[str, Any]]:
        return log_db.failures(window=(rows.offset, rows.limit))

    return await page_response(request, page, fetch)


async def _lightcurves(request: web.Request) -> web.Response:
    from obsctl.timeseries.store import list_light_curves

    log_db = _log(request)
    page = query_page(request)

    def fetch(rows: Page) -> list[dict[str, Any]]:
        return list_light_curves(log_db)[rows.offset : rows.end]

    return await page_response(request, page, fetch)


async def _lightcurve(request: web.Request) -> web.Response:
    from obsctl.timeseries.store import load_light_curve

    target = request.query.get("target")
    if not target:
        raise BadRequestError("target is required (?target=NAME)")

    def body() -> bytes | None:
        points = load_light_curve(_log(request), target)
        if not points:
            return None
        # Years of points make a long list: serialized here, in a worker thread.
        return orjson.dumps({"target": target, "points": orjson.Fragment(serialize_rows(points))})

    found = await asyncio.to_thread(body)
    if found is None:
        return error_response(404, f"no light curve for target {target!r}")
    return web.Response(body=found, content_type="application/json")


async def _alerts(request: web.Request) -> web.Response:
    from obsctl.timeseries.store import list_alerts

    log_db = _log(request)
    page = query_page(request)

    def fetch(rows: Page) -> list[dict[str, Any]]:
        # Newest first: the newest `end` rows hold the page.
        return list_alerts(log_db, limit=rows.end)[rows.offset :]

    return await page_response(request, page, fetch)


async def _events(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    async with state.running.events.subscribe() as queue:
        try:
            await response.write(b": connected\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=15.0)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")  # lets clients see life
                    continue
                payload = orjson.dumps(event, default=str)
                await response.write(f"event: {event['kind']}\ndata: ".encode() + payload + b"\n\n")
        except ConnectionResetError:  # the client went away (a closed page): no error
            log.debug("event stream client gone")
    return response


def build_app(state: Observatory) -> web.Application:
    """Return the control API application for a running daemon."""
    # errors first: it turns the access checks' refusals and every other failure into JSON.
    app = web.Application(middlewares=[errors_middleware, access_middleware(state.config.server)])
    app[STATE] = state
    app.router.add_get("/api/status", _status)
    app.router.add_get("/api/sequences", _sequences)
    app.router.add_post("/api/sequences", _add_sequence)
    app.router.add_post("/api/sequences/{id}/stop", _stop_sequence)
    app.router.add_post("/api/abort", _abort)
    app.router.add_post("/api/too", _add_target)
    app.router.add_get("/api/exposures", _exposures)
    app.router.add_get("/api/failures", _failures)
    app.router.add_get("/api/metrics", _metrics)
    app.router.add_get("/api/extinction", _extinction)
    app.router.add_get("/api/events", _events)
    app.router.add_get("/api/lightcurves", _lightcurves)
    app.router.add_get("/api/lightcurve", _lightcurve)
    app.router.add_get("/api/alerts", _alerts)
    # The quick-look page and its data (/, /static/, /api/quicklook/..., /data/...).
    running = state.running
    add_quicklook(
        app,
        QuickLook(
            log_db=running.log_db,
            data_dir=state.data_dir,
            events=running.events,
            pipeline_enabled=state.config.pipeline.enabled,
            mpc_code=state.config.difference.mpc_code,
        ),
    )
    return app


async def start_api(state: Observatory) -> tuple[web.AppRunner, str]:
    """Serve the API on the configured host and port; return the runner and its URL."""
    server = state.config.server
    # handler_cancellation ends an event stream as soon as its client goes; the short
    # shutdown timeout keeps a lingering stream from delaying the daemon's exit.
    runner = web.AppRunner(
        build_app(state),
        handle_signals=False,
        access_log=None,
        logger=server_logger(),
        handler_cancellation=True,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, server.host, server.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"cannot serve the control API on {server.host}:{server.port}: {exc.strerror} "
            "(another daemon there? set [server] port)"
        ) from exc
    port = server.port
    if runner.addresses:
        port = int(runner.addresses[0][1])
    return runner, f"http://{server.host}:{port}"
