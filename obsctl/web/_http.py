"""What every route shares: JSON replies, JSON errors, strict JSON bodies and paged listings.

A listing is never one document of unbounded size: it is served a page at a time (``limit``
rows from ``offset``) and serialized in a worker thread, one row at a time, so that neither
a big reply nor one long call holding the GIL stalls the event loop the safety supervisor
shares.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

__all__ = [
    "BadRequestError",
    "NotFoundError",
    "Page",
    "error_response",
    "errors_middleware",
    "json_response",
    "page_response",
    "path_id",
    "query_page",
    "read_json_body",
    "serialize_rows",
    "server_logger",
]

log = logging.getLogger(__name__)

# orjson: strict RFC 8259 output (NaN and infinities become null), numpy numbers as numbers,
# anything else (dates, paths) as its text.
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
#: Offsets past this are refused: no listing holds that many rows, and SQLite's LIMIT stays
#: far inside its 64-bit range.
_MAX_OFFSET = 10**12
_DIGITS = re.compile(r"[0-9]{1,13}")
#: Row ids are SQLite integers: 1 to 2**63 - 1.
_MAX_ID = 2**63 - 1


def _dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=str, option=_DUMPS_OPTIONS)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Return a small JSON reply (serialized here, on the event loop: keep it small)."""
    return web.Response(
        body=_dumps(data), status=status, content_type="application/json", headers=headers
    )


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """Return ``{"error": message}`` with an HTTP error status."""
    return web.Response(
        body=_error_json(message), status=status, content_type="application/json", headers=headers
    )


def _error_json(message: str) -> bytes:
    # Text a client sent undecodable (aiohttp keeps its bytes as lone surrogates) is written
    # as escapes: JSON cannot carry it, and the error must still reach the client.
    return _dumps({"error": message.encode("utf-8", "backslashreplace").decode("utf-8")})


class BadRequestError(web.HTTPBadRequest):
    """A request's query or body is invalid; the reply is a 400 with a JSON ``error``.

    Raise it from a handler or a helper it calls; the client should fix the request.
    """

    def __init__(self, message: str) -> None:
        super().__init__(text=_error_json(message).decode(), content_type="application/json")


class NotFoundError(web.HTTPNotFound):
    """What a request names does not exist; the reply is a 404 with a JSON ``error``."""

    def __init__(self, message: str) -> None:
        super().__init__(text=_error_json(message).decode(), content_type="application/json")


def path_id(request: web.Request, what: str) -> int:
    """Return the row id in a request's path (``{id}``).

    Raises
    ------
    NotFoundError
        When it is not a whole number that a row id can be (1 to 2**63 - 1): no such row.
    """
    raw = request.match_info["id"]
    # ASCII digits only (int() would take "+5", " 5", "1_0" and other scripts' digits), and
    # few enough that int() is quick: a longer number is past the range anyway.
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 19 else 0
    if not 0 < value <= _MAX_ID:
        raise NotFoundError(f"no {what} {raw!r}")
    return value


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error reply into JSON, and an unexpected failure into a logged JSON 500.

    aiohttp answers a wrong route, method or body size with plain text, and an exception with
    a bare 500; a client of a JSON API should always find ``{"error": ...}`` to show.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return error_response(exc.status, exc.text or exc.reason, headers=_kept_headers(exc))
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error (the daemon's log has the details)")


class _MalformedRequests(logging.Filter):
    """Log a request that is not valid HTTP as one warning line, without a traceback.

    aiohttp's HTTP parser refuses such a request (no Host header, a header given twice, a
    line too long) with a 400 before any route or middleware sees it, and logs the refusal
    as an error with a traceback: any client could fill the daemon's log with them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
            record.msg = "refused a malformed request from %s: %s"
            record.args = (remote, " ".join(exc.message.split()))
            record.exc_info = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def server_logger() -> logging.Logger:
    """Return the logger of the HTTP server (aiohttp's ``logger`` argument).

    Malformed requests are logged on it as one warning line each (`_MalformedRequests`).
    """
    logger = logging.getLogger("obsctl.web.server")
    if not any(isinstance(f, _MalformedRequests) for f in logger.filters):
        logger.addFilter(_MalformedRequests())
    return logger


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    # A 405 says which methods would do; a 401 how to authenticate.
    return {k: v for k, v in exc.headers.items() if k in ("Allow", "WWW-Authenticate")}


# -- JSON bodies -----------------------------------------------------------------------------


class _NotStandardJson(ValueError):
    """A JSON text uses a constant or number that standard JSON does not have."""


def _refuse_constant(name: str) -> float:
    raise _NotStandardJson(f"{name} is not a JSON value; send finite numbers only")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotStandardJson(f"the number {text} is out of range; send finite numbers only")
    return value


def _why_not_json(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    """Say what is wrong with a body orjson refused, naming NaN or Infinity when that is it.

    orjson is the strict parser (it also refuses invalid UTF-8 and lone surrogates, which
    the database cannot store); Python's parser, which accepts the JavaScript constants,
    re-reads the body only to name them.
    """
    try:
        json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NotStandardJson as named:
        return f"body is not standard JSON: {named}"
    except (ValueError, RecursionError):  # another error: orjson's message says where
        pass
    return f"body is not valid JSON: {exc}"


async def read_json_body(request: web.Request) -> Any:
    """Return the request's body parsed as strict JSON (RFC 8259).

    Raises
    ------
    BadRequestError
        When the body is empty or not standard JSON: a syntax error, ``NaN``, ``Infinity``,
        a number out of the float range, invalid UTF-8 or a lone surrogate.
    """
    raw = await request.read()
    if not raw.strip():
        raise BadRequestError("the body is empty; send a JSON document")
    # In a thread: a body may be a megabyte of JSON.
    return await asyncio.to_thread(_parse_json, raw)


def _parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(_why_not_json(raw, exc)) from None


# -- paged listings --------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """Which part of a listing a request asks for: ``limit`` rows from ``offset`` (0-based)."""

    limit: int
    offset: int

    @property
    def end(self) -> int:
        """One past the last row of the page."""
        return self.offset + self.limit


def _count(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name, "")
    if raw == "":  # absent or empty (a blank form field): the default
        return default
    # Plain ASCII digits only: int() would also take "1_000", " 7" and other scripts' digits.
    value = int(raw) if _DIGITS.fullmatch(raw) else None
    if value is None or not low <= value <= high:
        raise BadRequestError(f"{name} must be a whole number from {low} to {high}, got {raw!r}")
    return value


def query_page(request: web.Request, *, default: int = 100, maximum: int = 1000) -> Page:
    """Return the page a request asks for (``limit``, ``offset`` query parameters).

    Raises
    ------
    BadRequestError
        When ``limit`` is not a whole number from 1 to ``maximum``, or ``offset`` not one
        from 0 to 10**12.
    """
    return Page(
        limit=_count(request, "limit", default, 1, maximum),
        offset=_count(request, "offset", 0, 0, _MAX_OFFSET),
    )


def serialize_rows(rows: Sequence[Any]) -> bytes:
    """Return the JSON array of ``rows``, serialized one row at a time.

    One call per row rather than one for the whole list: a single call would hold the GIL
    for the whole page, while between rows the thread lets the event loop run.
    """
    return b"[" + b",".join(_dumps(row) for row in rows) + b"]"


async def page_response(
    request: web.Request, page: Page, fetch: Callable[[Page], list[Any]]
) -> web.Response:
    """Reply with one page of a listing: a JSON array, and a ``Link`` to the next page.

    Parameters
    ----------
    request : aiohttp.web.Request
        The request; the next page's link keeps its query and changes ``offset``.
    page : Page
        The page asked for.
    fetch : callable
        Called in a worker thread with a page one row longer than asked for; returns the
        rows from ``page.offset`` on, at most ``page.limit + 1`` (the extra row, not sent,
        says that a next page exists).
    """

    def work() -> tuple[bytes, bool]:
        rows = fetch(Page(limit=page.limit + 1, offset=page.offset))
        return serialize_rows(rows[: page.limit]), len(rows) > page.limit

    body, more = await asyncio.to_thread(work)
    headers = {}
    if more:
        following = request.rel_url.update_query(offset=page.end, limit=page.limit)
        headers["Link"] = f'<{following}>; rel="next"'
    return web.Response(body=body, content_type="application/json", headers=headers)
