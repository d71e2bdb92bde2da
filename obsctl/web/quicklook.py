"""The quick-look page and its data, served by the daemon beside the control API.

| method | path | what |
| --- | --- | --- |
| GET | / | the page (``static/index.html``; its scripts under /static/) |
| GET | /api/quicklook/info | what the page needs to start: routes, pipeline, nights, sizes |
| GET | /api/quicklook/log | a night's exposure log with processing results (paged) |
| GET | /api/quicklook/latest | the frame to show first |
| GET | /api/quicklook/frames/{id} | one frame: log row, metrics, key header cards, WCS, files |
| GET | /api/quicklook/frames/{id}/preview.png | the frame stretched (``stretch``, ``size``) |
| GET | /api/quicklook/frames/{id}/sources | the frame's measured sources and their classes |
| GET | /api/quicklook/frames/{id}/pixel | one pixel's value (``x``, ``y``, 0-based) |
| GET | /api/quicklook/focus | a night's focus runs, newest first, with points and fit |
| GET | /api/quicklook/candidates | a night's difference detections, transients, moving objects |
| GET | /api/candidates/{id}/cutouts.png | a candidate's new, reference and difference cutouts |
| GET | /api/transients/{id}/lightcurve | a transient's detections and forced measurements |
| GET | /api/moving/{night}/mpc | a night's moving objects as an MPC 80-column report (text) |
| GET | /data/{path} | a FITS file of the data directory (anything else, or outside it: 404) |

The log is paged like the control API's listings: ``limit`` rows (default 100, at most 1000)
from ``offset``, oldest first, and a ``Link: <...>; rel="next"`` header while more follow.

The focus runs are those of ``night`` (``YYYY-MM-DD``; absent: the latest night with a run),
the newest ``limit`` of them (default 20, at most 100), as `obsctl.web.focus.focus_runs`
gives them; the page reloads them on each ``focus`` event.

The candidates are those of ``night`` (absent: the latest night with a difference), the
newest ``limit`` detections (default 50, at most 500) scored at least ``min_real_bogus``
real (0 to 1; those not scored pass), with the night's alerted transients and moving
objects, as `obsctl.web.candidates.night_candidates` gives them; the page reloads them on
each ``alert`` and ``processed`` event. A candidate's cutouts are one PNG, new frame |
reference | difference, each ``size`` pixels wide (21 to 420, default 105; rounded down to
whole pixels of the cutout, enlarged nearest-neighbour). The MPC report names the
observatory by ``code`` (three capitals or digits; default ``[difference] mpc_code``).

A preview with ``x0, y0, x1, y1`` is that part of the frame only, sharper, for zooming in.
Live updates reach the page through the control API's ``/api/events`` stream; when a frame's
``processed`` event is published, its preview is made at once in every stretch at one fixed
size (``preview_size_px`` of ``/info``, what the page asks for), so the page's request finds
it made or being made. A request's ``size`` shapes its own reply only, never what is made
for the others. A frame whose file is missing is a 404, one whose file is truncated or
unreadable a 422, each with a JSON ``error`` naming the problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from obsctl.events import EventBus
from obsctl.processing.display import STRETCHES, Stretch
from obsctl.store import candidates as store_candidates
from obsctl.store.datadir import DataDir
from obsctl.store.exposure_log import ExposureLog
from obsctl.store.schema import FRAME_METRIC_COLUMNS
from obsctl.timeseries.transients import night_mpc_report
from obsctl.web import candidates, frames
from obsctl.web._http import (
    BadRequestError,
    NotFoundError,
    Page,
    error_response,
    json_response,
    page_response,
    path_id,
    query_page,
    serialize_rows,
)
from obsctl.web.focus import focus_runs
from obsctl.web.frames import FrameFileError
from obsctl.web.previews import PreviewCache, bin_region

__all__ = ["QUICKLOOK", "QuickLook", "add_quicklook", "static_dir"]

log = logging.getLogger(__name__)

_MIN_SIZE_PX = 64
_MAX_SIZE_PX = 4096
#: Pixel coordinates and sizes in a query, at most (in magnitude).
_MAX_COORDINATE = 2**31
#: Focus runs in a reply: by default, and at most.
_FOCUS_RUNS = 20
_FOCUS_RUNS_MAX = 100
#: Difference detections in a reply: by default, and at most.
_CANDIDATES = 50
_CANDIDATES_MAX = 500
#: A cutout's side in the cutouts PNG (pixel): by default, at least and at most.
_CUTOUT_SIZE_PX = 105
_CUTOUT_MIN_PX = 21
_CUTOUT_MAX_PX = 420
#: A real/bogus score as a query writes it: ASCII, no exponent, sign or underscores.
_SCORE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{0,12})?|\.[0-9]{1,12}")
#: An MPC observatory code.
_MPC_CODE = re.compile(r"[0-9A-Z]{3}")
#: A night as the exposure log names it (DAY-OBS): ASCII digits only.
_NIGHT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_LIMIT = re.compile(r"[0-9]{1,3}")


def static_dir() -> Path:
    """Return the folder of the page's static files (shipped as package data)."""
    return Path(str(resources.files("obsctl.web") / "static"))


@dataclass
class QuickLook:
    """What the quick-look routes read.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log.
    data_dir : DataDir or pathlib.Path
        The data directory: frames are read and served from here only.
    events : EventBus
        The daemon's events (a ``processed`` event triggers the new frame's preview).
    pipeline_enabled : bool
        Whether frames get processed (else the page shows raw frames as they arrive).
    mpc_code : str
        The observatory's MPC code, for MPC reports that name none (``[difference]``).
    """

    log_db: ExposureLog
    data_dir: DataDir
    events: EventBus
    pipeline_enabled: bool = True
    mpc_code: str = "XXX"
    cache: PreviewCache = field(default_factory=PreviewCache)

    def __post_init__(self) -> None:
        self.data_dir = DataDir(self.data_dir)


QUICKLOOK: web.AppKey[QuickLook] = web.AppKey("quicklook", QuickLook)
#: The page's files (``static/``) by name.
STATIC_FILES: web.AppKey[dict[str, Path]] = web.AppKey("static_files", dict)


def _int(request: web.Request, name: str, default: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise BadRequestError(f"query parameter {name!r} is required")
        return default
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):  # not a number, or inf / 1e400
        raise BadRequestError(f"{name} must be a number, got {raw!r}") from None
    if abs(value) > _MAX_COORDINATE:  # no frame is that large, and orjson writes 64 bits
        raise BadRequestError(f"{name} must be within ±{_MAX_COORDINATE}, got {raw!r}")
    return value


def _file_error(eid: int, exc: FrameFileError) -> web.Response:
    """Return the reply for a frame whose file cannot be read: 404 when gone, else 422."""
    return error_response(404 if exc.missing else 422, f"exposure {eid}: {exc}")


async def _frame(request: web.Request) -> tuple[QuickLook, int, dict[str, Any]]:
    ql = request.app[QUICKLOOK]
    eid = path_id(request, "exposure")
    row = await asyncio.to_thread(ql.log_db.frame_row, eid)
    if row is None:
        raise NotFoundError(f"no exposure {eid}")
    return ql, eid, row


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(static_dir() / "index.html", headers={"Cache-Control": "no-cache"})


async def _static(request: web.Request) -> web.FileResponse:
    # Only the files shipped, looked up by name: aiohttp's static route answered a missing
    # file with an empty 404 and a name too long for the file system with a 500.
    path = request.app[STATIC_FILES].get(request.match_info["name"])
    if path is None:
        raise NotFoundError(f"no static file {request.match_info['name']!r}")
    return web.FileResponse(path)


async def _info(request: web.Request) -> web.Response:
    ql = request.app[QUICKLOOK]
    routes = sorted(
        {
            r.resource.canonical
            for r in request.app.router.routes()
            if r.method == "GET" and r.resource is not None
        }
    )
    nights = await asyncio.to_thread(ql.log_db.nights)
    return json_response(
        {
            "routes": routes,
            "pipeline_enabled": ql.pipeline_enabled,
            "nights": nights,
            "stretches": list(STRETCHES),
            "preview_size_px": ql.cache.size_px,
        }
    )


async def _log(request: web.Request) -> web.Response:
    ql = request.app[QUICKLOOK]
    night = request.query.get("night") or None
    page = query_page(request)

    def fetch(rows: Page) -> list[dict[str, Any]]:
        return ql.log_db.night_log(night)[rows.offset : rows.end]

    return await page_response(request, page, fetch)


async def _latest(request: web.Request) -> web.Response:
    ql = request.app[QUICKLOOK]
    return json_response({"exposure_id": await asyncio.to_thread(ql.log_db.latest_frame)})


def _data_url(relative: str | None) -> str | None:
    return None if not relative else "/data/" + relative.lstrip("/")


async def _frame_info(request: web.Request) -> web.Response:
    ql, eid, row = await _frame(request)
    path, kind = frames.image_path(ql.data_dir, row)
    try:
        header = await asyncio.to_thread(frames.frame_header, path)
    except FrameFileError as exc:
        return _file_error(eid, exc)
    catalog = row.get("catalog_path")
    count = None
    if catalog:
        count = await asyncio.to_thread(frames.catalog_count, ql.data_dir.path(catalog))
    return json_response(
        {
            "exposure_id": eid,
            "exposure": {k: v for k, v in row.items() if k not in FRAME_METRIC_COLUMNS},
            "metrics": {k: row.get(k) for k in FRAME_METRIC_COLUMNS},
            "image": kind,
            "shape": header["shape"],
            "cards": header["cards"],
            "wcs": header["wcs"],
            "catalog_count": count,
            "files": {
                "raw": _data_url(row.get("file_path")),
                "calibrated": _data_url(row.get("calibrated_path")),
                "catalog": _data_url(catalog),
            },
        }
    )


def _stretch(request: web.Request) -> Stretch:
    stretch = request.query.get("stretch", "zscale")
    for known in STRETCHES:
        if stretch == known:
            return known
    raise BadRequestError(f"stretch must be one of {', '.join(STRETCHES)}, got {stretch!r}")


async def _preview(request: web.Request) -> web.Response:
    ql, eid, row = await _frame(request)
    stretch = _stretch(request)
    # The size shapes this reply only: what is made ahead for every page stays the cache's.
    size = min(_MAX_SIZE_PX, max(_MIN_SIZE_PX, _int(request, "size", ql.cache.size_px)))
    path, _ = frames.image_path(ql.data_dir, row)
    box = [request.query.get(k) for k in ("x0", "y0", "x1", "y1")]
    try:
        if any(v is not None for v in box):
            x0, y0, x1, y1 = (_int(request, k) for k in ("x0", "y0", "x1", "y1"))
            # The display scale of the overview the page shows at this size: tiles match it.
            overview = await ql.cache.binned(eid, path, size)
            tile = await asyncio.to_thread(
                bin_region, path, (x0, y0, x1, y1), size, stretch, overview.limits[stretch]
            )
            headers = {
                "X-Factor": str(tile.factor),
                "X-Region": f"{tile.x0},{tile.y0},{tile.x1},{tile.y1}",
            }
            return web.Response(body=tile.png, content_type="image/png", headers=headers)
        blob, binned = await ql.cache.png(eid, path, size, stretch)
    except FrameFileError as exc:
        return _file_error(eid, exc)
    except ValueError as exc:  # a region outside the frame
        return error_response(400, f"exposure {eid}: {exc}")
    ny, nx = binned.data.shape
    headers = {
        "X-Factor": str(binned.factor),
        "X-Region": f"0,0,{nx * binned.factor},{ny * binned.factor}",
        "Server-Timing": f"bin;dur={binned.seconds * 1000:.1f}",
        "Cache-Control": "no-cache",
    }
    return web.Response(body=blob, content_type="image/png", headers=headers)


async def _sources(request: web.Request) -> web.Response:
    ql, eid, _ = await _frame(request)

    def body() -> bytes:
        # A big frame's sources are tens of thousands of rows: serialized here, in a thread.
        result = frames.sources(ql.log_db, eid)
        result["rows"] = orjson.Fragment(serialize_rows(result["rows"]))
        return orjson.dumps({**result, "exposure_id": eid})

    return web.Response(body=await asyncio.to_thread(body), content_type="application/json")


async def _pixel(request: web.Request) -> web.Response:
    ql, eid, row = await _frame(request)
    x, y = _int(request, "x"), _int(request, "y")
    path, kind = frames.image_path(ql.data_dir, row)
    try:
        value = await asyncio.to_thread(frames.pixel_value, path, x, y)
    except FrameFileError as exc:
        return _file_error(eid, exc)
    return json_response({"exposure_id": eid, "x": x, "y": y, "value": value, "image": kind})


async def _focus(request: web.Request) -> web.Response:
    ql = request.app[QUICKLOOK]
    night = _night(request)
    limit = _limit(request, _FOCUS_RUNS, _FOCUS_RUNS_MAX)
    return json_response(await asyncio.to_thread(focus_runs, ql.log_db, night, limit))


def _night(request: web.Request) -> str | None:
    night = request.query.get("night") or None
    if night is not None and not _NIGHT.fullmatch(night):
        raise BadRequestError(f"night must be YYYY-MM-DD, got {night[:40]!r}")
    return night


def _limit(request: web.Request, default: int, maximum: int) -> int:
    raw = request.query.get("limit") or str(default)
    limit = int(raw) if _LIMIT.fullmatch(raw) else 0
    if not 1 <= limit <= maximum:
        raise BadRequestError(f"limit must be a whole number from 1 to {maximum}, got {raw[:40]!r}")
    return limit


async def _candidates(request: web.Request) -> web.Response:
    ql = request.app[QUICKLOOK]
    night = _night(request)
    limit = _limit(request, _CANDIDATES, _CANDIDATES_MAX)
    raw = request.query.get("min_real_bogus") or None
    min_real_bogus = None
    if raw is not None:
        # Plain decimals only: float() would also take "inf", "nan", "1_0" and " 0.5".
        min_real_bogus = float(raw) if _SCORE.fullmatch(raw) else -1.0
        if not 0.0 <= min_real_bogus <= 1.0:
            raise BadRequestError(f"min_real_bogus must be a number from 0 to 1, got {raw[:40]!r}")
    reply = await asyncio.to_thread(
        candidates.night_candidates, ql.log_db, night, limit=limit, min_real_bogus=min_real_bogus
    )
    return json_response(reply)


async def _cutouts(request: web.Request) -> web.Response:
    ql = request.app[QUICKLOOK]
    cid = path_id(request, "candidate")
    size = _int(request, "size", _CUTOUT_SIZE_PX)
    size = min(_CUTOUT_MAX_PX, max(_CUTOUT_MIN_PX, size))
    row = await asyncio.to_thread(store_candidates.candidate_cutout, ql.log_db, cid)
    if row is None:
        raise NotFoundError(f"no candidate {cid}")
    path = ql.data_dir.path(str(row["path"]))
    try:
        planes = await asyncio.to_thread(candidates.read_cutouts, path, int(row["row"]))
    except FrameFileError as exc:
        return error_response(404 if exc.missing else 422, f"candidate {cid}: {exc}")
    blob, factor = await asyncio.to_thread(candidates.render_cutouts, planes, size)
    # Not cached for long: a frame processed again may reuse its candidates' ids (SQLite
    # gives the highest ids again once they are deleted) for other cutouts.
    headers = {"X-Factor": str(factor), "Cache-Control": "no-cache"}
    return web.Response(body=blob, content_type="image/png", headers=headers)


async def _transient_lightcurve(request: web.Request) -> web.Response:
    ql = request.app[QUICKLOOK]
    tid = path_id(request, "transient")
    reply = await asyncio.to_thread(candidates.transient_lightcurve, ql.log_db, tid)
    if reply is None:
        raise NotFoundError(f"no transient {tid}")
    return json_response(reply)


async def _mpc(request: web.Request) -> web.Response:
    ql = request.app[QUICKLOOK]
    night = request.match_info["night"]
    if not _NIGHT.fullmatch(night):
        raise NotFoundError(f"no night {night[:40]!r} (nights are YYYY-MM-DD)")
    code = request.query.get("code") or ql.mpc_code
    if not _MPC_CODE.fullmatch(code):
        raise BadRequestError(f"code must be three capitals or digits, got {code[:40]!r}")
    report, lines = await asyncio.to_thread(
        night_mpc_report, ql.log_db, night, observatory_code=code
    )
    if not lines:
        raise NotFoundError(f"no moving objects on night {night}")
    headers = {
        "Content-Disposition": f'inline; filename="mpc_{night}.txt"',
        "X-Observations": str(lines),
    }
    return web.Response(text=report, content_type="text/plain", charset="utf-8", headers=headers)


async def _data_file(request: web.Request) -> web.StreamResponse:
    ql = request.app[QUICKLOOK]
    path = frames.resolve_data_file(ql.data_dir, request.match_info["path"])
    if path is None:
        log.info("refused to serve %r (not a FITS file inside the data directory)", request.path)
        return error_response(404, "no such frame file")
    return web.FileResponse(
        path, headers={"Content-Disposition": f'attachment; filename="{path.name}"'}
    )


async def _watch(ql: QuickLook) -> None:
    """Make each newly processed frame's preview at once, for the page's coming request."""
    async with ql.events.subscribe() as queue:
        while True:
            event = await queue.get()
            kind = event.get("kind")
            wanted = (kind == "processed" and not event.get("failed_stage")) or (
                kind == "frame" and not ql.pipeline_enabled and event.get("image_type") == "LIGHT"
            )
            if not wanted:
                continue
            try:
                eid = int(event["exposure_id"])
                row = await asyncio.to_thread(ql.log_db.frame_row, eid)
                if row is not None:
                    path, _ = frames.image_path(ql.data_dir, row)
                    await ql.cache.make_ahead(eid, path)
            except (FrameFileError, ValueError, KeyError) as exc:
                log.warning("no preview for exposure %s: %s", event.get("exposure_id"), exc)
            except Exception:  # a bug here must not end previews for the rest of the night
                log.exception("making the preview of exposure %s", event.get("exposure_id"))


async def _watcher(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_watch(app[QUICKLOOK]), name="quicklook-previews")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def add_quicklook(app: web.Application, quicklook: QuickLook) -> None:
    """Serve the quick-look page and its data from ``app``."""
    app[QUICKLOOK] = quicklook
    app.router.add_get("/", _index)
    app[STATIC_FILES] = {p.name: p for p in static_dir().iterdir() if p.is_file()}
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/quicklook/info", _info)
    app.router.add_get("/api/quicklook/log", _log)
    app.router.add_get("/api/quicklook/latest", _latest)
    app.router.add_get("/api/quicklook/frames/{id}", _frame_info)
    app.router.add_get("/api/quicklook/frames/{id}/preview.png", _preview)
    app.router.add_get("/api/quicklook/frames/{id}/sources", _sources)
    app.router.add_get("/api/quicklook/frames/{id}/pixel", _pixel)
    app.router.add_get("/api/quicklook/focus", _focus)
    app.router.add_get("/api/quicklook/candidates", _candidates)
    app.router.add_get("/api/candidates/{id}/cutouts.png", _cutouts)
    app.router.add_get("/api/transients/{id}/lightcurve", _transient_lightcurve)
    app.router.add_get("/api/moving/{night}/mpc", _mpc)
    app.router.add_get("/data/{path:.+}", _data_file)
    app.cleanup_ctx.append(_watcher)
