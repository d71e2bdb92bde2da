"""A running daemon under generated requests, then still storing frames.

Part of the fuzz suite, which crosses rooms (web, acquisition, store, the daemon) and
mirrors none. One daemon with its simulators runs on a thread and event loop of its own,
as it would in its own process, for the whole module; the tests send it requests over
plain sockets, built byte by byte so that any Host, Origin, Content-Type, Authorization,
path, query and body can be sent. Every reply must come within `DEADLINE_S` and be a 2xx,
or a 4xx whose body is JSON ``{"error": ...}``: never a 5xx. Sequences it accepts are short
and stopped at once. The last test runs a normal sequence on the same daemon and finds its
frames on disk and in the exposure log, and that nothing was logged with a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from obsctl.config import Config
from obsctl.daemon import Daemon
from obsctl.store.datadir import DataDir

from ..daemon_helpers import daemon_config, running_daemon, standard_sequence
from .documents import HOSTILE_TEXTS, garbled, hostile, json_body, mutated
from .outcomes import logged_tracebacks
from .profiles import examples
from .valid import sequences

TOKEN = "fuzz-t0ken"
#: Longest a reply may take (s): far above a normal one (milliseconds), far below a hang.
DEADLINE_S = 10.0
#: Frames of `standard_sequence(lights=1)`: 1 V, 1 R, 2 darks, 2 biases.
FRAMES = 6

JSON_GETS = [
    "/api/status",
    "/api/sequences",
    "/api/exposures",
    "/api/failures",
    "/api/metrics",
    "/api/lightcurves",
    "/api/lightcurve",
    "/api/alerts",
    "/api/quicklook/info",
    "/api/quicklook/log",
    "/api/quicklook/latest",
    "/api/quicklook/frames/{id}",
    "/api/quicklook/frames/{id}/sources",
    "/api/quicklook/frames/{id}/pixel",
]
OTHER_GETS = [
    "/api/quicklook/frames/{id}/preview.png",
    "/data/{path}",
    "/",
    "/static/{path}",
    "/api/events",
    "/{path}",
]
POSTS = ["/api/sequences", "/api/sequences/{id}/stop", "/api/abort", "/api/too"]
QUERY_NAMES = [
    "limit",
    "offset",
    "night",
    "target",
    "filter",
    "type",
    "stretch",
    "size",
    "x0",
    "y0",
    "x1",
    "y1",
    "x",
    "y",
]
# Text as it may stand in a path or a query (any code point; percent-encoded on the wire).
TEXT = st.one_of(
    st.sampled_from(HOSTILE_TEXTS),
    st.sampled_from(["0", "1", "-1", "1e308", "nan", "inf", "99999999999999999999", "1.5"]),
    st.integers().map(str),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=30),
    st.sampled_from(["x" * 10_000, "9" * 5000]),
)
# Bytes a header value may hold (RFC 9110: visible ASCII, space, tab and obs-text).
_CONTROLS = "".join(chr(c) for c in range(32) if c != 9) + "\x7f"
HEADER_TEXT = st.text(
    st.characters(codec="latin-1", exclude_characters=_CONTROLS), max_size=60
).map(lambda text: text.encode("latin-1"))


@dataclass
class Fuzzed:
    """The daemon under test and what the tests need to reach it."""

    daemon: Daemon
    config: Config
    port: int
    frames: list[int]  # exposure ids stored before the fuzzing: the frame routes' real ids
    tracebacks: list[Any]


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes
    seconds: float


@contextlib.contextmanager
def daemon_on_thread(config: Config) -> Iterator[Daemon]:
    """Run a daemon on a thread and event loop of its own, as if in another process."""
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        async with running_daemon(config) as daemon:
            stop = asyncio.Event()
            box.update(daemon=daemon, loop=asyncio.get_running_loop(), stop=stop)
            started.set()
            await stop.wait()

    def thread() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            box["error"] = exc
        finally:
            started.set()

    runner = threading.Thread(target=thread, name="fuzzed-daemon")
    runner.start()
    started.wait(60)
    try:
        if "daemon" not in box:
            raise RuntimeError("the daemon did not start") from box.get("error")
        yield box["daemon"]
    finally:
        if "stop" in box:
            box["loop"].call_soon_threadsafe(box["stop"].set)
        runner.join(60)
        assert not runner.is_alive(), "the daemon did not stop"
        if "error" in box:
            raise box["error"]


def send(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, bytes]],
    body: bytes | None = None,
    *,
    stream: bool = False,
) -> Reply:
    """Send one request exactly as given (no Host added) and read the whole reply.

    The request goes out in one write, as a browser's would. With ``stream`` only the
    status and headers are read (an event stream never ends).
    """
    lines = [f"{method} {target} HTTP/1.1".encode()]
    lines += [name.encode() + b": " + value for name, value in headers]
    if body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")
    request = b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as sock:
        # The server may answer before reading it all (a refusal) and close: the answer is
        # in the socket already.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        content = b"" if stream else response.read()
        content_type = response.getheader("Content-Type", "")
    return Reply(response.status, content_type, content, time.monotonic() - start)


#: Longest request line or header line aiohttp's HTTP parser reads (bytes).
MAX_LINE_BYTES = 8190


def not_http(target: str, headers: list[tuple[str, bytes]]) -> bool:
    """Whether a request is no HTTP/1.1 the server reads: no Host, a header given twice, or
    a line too long.

    aiohttp's parser refuses it with a plain-text 400 before any route sees it (of the
    headers sent here, only duplicates of Host and Content-Type; the others reach the access
    checks, which refuse them as JSON).
    """
    names = [name.lower() for name, _ in headers]
    too_long = len(target) + 20 > MAX_LINE_BYTES or any(
        len(value) + 20 > MAX_LINE_BYTES for _, value in headers
    )
    return "host" not in names or len(names) != len(set(names)) or too_long


def check(reply: Reply, *, json_expected: bool = True, not_http: bool = False) -> Any:
    """Assert that a reply is a timely 2xx, or a 4xx with a JSON error; return its JSON.

    A request that is ``not_http`` may get the HTTP parser's plain-text 400 instead. The
    JSON returned is the body of a 2xx when ``json_expected``, the ``{"error": ...}`` of a
    4xx, else None.
    """
    assert reply.seconds < DEADLINE_S, reply
    assert 200 <= reply.status < 500 and not 300 <= reply.status < 400, reply
    if reply.status == 400 and not_http and reply.content_type.startswith("text/plain"):
        return None
    if reply.status >= 400:
        assert reply.content_type.partition(";")[0] == "application/json", reply
        if not reply.body:  # a reply to HEAD: the same headers, no body
            return None
        found = json.loads(reply.body)
        assert isinstance(found["error"], str) and found["error"], reply
        return found
    if json_expected:
        return json.loads(reply.body)
    return None


def good_headers(fuzzed: Fuzzed) -> list[tuple[str, bytes]]:
    return [
        ("Host", f"127.0.0.1:{fuzzed.port}".encode()),
        ("Authorization", f"Bearer {TOKEN}".encode()),
        ("Content-Type", b"application/json"),
    ]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory) -> Iterator[Fuzzed]:
    data = tmp_path_factory.mktemp("fuzz-daemon") / "data"
    config = daemon_config(data, token=TOKEN)
    with logged_tracebacks() as tracebacks, daemon_on_thread(config) as daemon:
        target = Fuzzed(daemon, config, config.server.port, [], tracebacks)
        sid = post_sequence(target, standard_sequence(lights=1).model_dump_json().encode())
        wait_until_ended(target, sid)
        target.frames = frames_of(target, sid)
        assert len(target.frames) == FRAMES
        yield target


def post_sequence(fuzzed: Fuzzed, body: bytes) -> int:
    reply = send(fuzzed.port, "POST", "/api/sequences", good_headers(fuzzed), body)
    assert reply.status == 201, reply
    return int(json.loads(reply.body)["id"])


def wait_until_ended(fuzzed: Fuzzed, sid: int, timeout_s: float = 60.0) -> str:
    """Wait for a sequence to leave the queue; return how it ended (from the API)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # Listed oldest first, one row per id from 1: sequence `sid` is row `sid - 1`.
        target = f"/api/sequences?offset={sid - 1}&limit=1"
        (row,) = check(send(fuzzed.port, "GET", target, good_headers(fuzzed)))
        assert row["id"] == sid
        if row["state"] not in ("pending", "running"):
            return str(row["state"])
        time.sleep(0.05)
    raise AssertionError(f"sequence {sid} still queued after {timeout_s} s")


def frames_of(fuzzed: Fuzzed, sid: int) -> list[int]:
    """Return the exposure ids a sequence stored, from the exposure log over the API."""
    found: list[int] = []
    offset = 0
    while True:
        reply = send(
            fuzzed.port, "GET", f"/api/exposures?limit=1000&offset={offset}", good_headers(fuzzed)
        )
        rows = check(reply)
        found += [r["id"] for r in rows if r["sequence_id"] == sid]
        if len(rows) < 1000:
            return found
        offset += 1000


# -- what the requests carry -----------------------------------------------------------------


def encoded(text: str) -> str:
    """Percent-encode any text for a path segment or a query, lone surrogates included."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def short(doc: dict[str, Any]) -> dict[str, Any]:
    """Make a valid sequence quick to run: two frames a step, two seconds each at most."""
    for step in doc["steps"]:
        step["count"] = min(step.get("count", 1), 2)
        step["exposure_s"] = min(step.get("exposure_s", 0.0), 2.0)
        step["flat_max_exposure_s"] = min(step.get("flat_max_exposure_s", 60.0), 2.0)
        step["flat_min_exposure_s"] = min(
            step.get("flat_min_exposure_s", 0.01), step["flat_max_exposure_s"]
        )
    return doc


@st.composite
def headers(draw: st.DrawFn, fuzzed: Fuzzed) -> list[tuple[str, bytes]]:
    """Host, Origin, Content-Type and Authorization, each right, wrong, odd or missing."""
    port = fuzzed.port
    host = draw(
        st.one_of(
            st.just(f"127.0.0.1:{port}".encode()),
            st.sampled_from([f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "127.0.0.1"]).map(
                str.encode
            ),
            st.sampled_from(["evil.example", "127.0.0.1:99999", "[::1", "", ":", "@"]).map(
                str.encode
            ),
            HEADER_TEXT,
            st.none(),
        )
    )
    origin = draw(
        st.one_of(
            st.none(),
            st.just(f"http://127.0.0.1:{port}".encode()),
            st.sampled_from(["null", "http://evil.example", "file://", "http://[::1", ""]).map(
                str.encode
            ),
            HEADER_TEXT,
        )
    )
    content_type = draw(
        st.one_of(
            st.just(b"application/json"),
            st.sampled_from(
                [
                    "Application/JSON; charset=utf-8",
                    "application/json; charset=latin-1",
                    "text/plain",
                    "multipart/form-data; boundary=x",
                    "application/json;;;",
                    "",
                ]
            ).map(str.encode),
            HEADER_TEXT,
            st.none(),
        )
    )
    basic = base64.b64encode(f"anyone:{TOKEN}".encode())
    authorization = draw(
        st.one_of(
            st.just(f"Bearer {TOKEN}".encode()),
            st.sampled_from(
                [
                    f"bearer   {TOKEN}  ",
                    "Bearer wrong",
                    "Bearer",
                    "Basic !!!",
                    "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),
                    "Digest x",
                ]
            ).map(str.encode),
            st.just(b"Basic " + basic),
            HEADER_TEXT.map(lambda text: b"Bearer " + text),
            HEADER_TEXT,
            st.none(),
        )
    )
    chosen = [
        ("Host", host),
        ("Origin", origin),
        ("Content-Type", content_type),
        ("Authorization", authorization),
    ]
    found = [(name, value) for name, value in chosen if value is not None]
    if draw(st.booleans()) and found:  # a header twice
        found.append(draw(st.sampled_from(found)))
    return draw(st.permutations(found))


def some_headers(fuzzed: Fuzzed) -> st.SearchStrategy[list[tuple[str, bytes]]]:
    """The right headers three times in four (so that most requests reach a route), else any."""
    return st.sampled_from([True, True, True, False]).flatmap(
        lambda good: st.just(good_headers(fuzzed)) if good else headers(fuzzed)
    )


@st.composite
def targets(draw: st.DrawFn, fuzzed: Fuzzed, paths: list[str]) -> str:
    """A path of ``paths`` with its ``{id}`` or ``{path}`` filled in, and a query."""
    path = draw(st.sampled_from(paths))
    ids = st.one_of(st.sampled_from([str(i) for i in fuzzed.frames]), TEXT)
    path = path.replace("{id}", encoded(draw(ids)))
    if "{path}" in path:
        parts = draw(
            st.lists(
                st.one_of(
                    st.sampled_from(["raw", "..", ".", "", "obsctl.sqlite", "frame.fits"]), TEXT
                ),
                min_size=1,
                max_size=4,
            )
        )
        path = path.replace("{path}", "/".join(encoded(p) for p in parts))
    names = st.one_of(st.sampled_from(QUERY_NAMES), TEXT)
    query = draw(st.lists(st.tuples(names, TEXT), max_size=5))
    if query:
        path += "?" + "&".join(f"{encoded(k)}={encoded(v)}" for k, v in query)
    return path


@st.composite
def bodies(draw: st.DrawFn) -> bytes | None:
    """A JSON body: a short valid sequence, a mutated one, any value, or damaged bytes."""
    doc = draw(
        st.one_of(
            sequences().map(short),
            mutated(sequences().map(short)),
            hostile(),
        )
    )
    body = json_body(doc, ascii_only=draw(st.booleans()))
    kind = draw(st.sampled_from(["as is", "as is", "garbled", "none"]))
    if kind == "garbled":
        return draw(garbled(body))
    return None if kind == "none" else body


def stop_if_accepted(fuzzed: Fuzzed, reply: Reply) -> None:
    """Stop a sequence the daemon accepted, so that the queue stays short."""
    if reply.status == 201:
        sid = json.loads(reply.body)["id"]
        stopped = send(fuzzed.port, "POST", f"/api/sequences/{sid}/stop", good_headers(fuzzed), b"")
        assert stopped.status in (200, 404), stopped  # 404: it ended already


# -- the tests -------------------------------------------------------------------------------


@settings(max_examples=examples(2.0))
@given(data=st.data())
def test_posted_sequences(fuzzed: Fuzzed, data: st.DataObject) -> None:
    body = data.draw(bodies())
    header_list = data.draw(some_headers(fuzzed))
    reply = send(fuzzed.port, "POST", "/api/sequences", header_list, body)
    event(f"HTTP {reply.status}")
    check(reply, not_http=not_http("/api/sequences", header_list))
    stop_if_accepted(fuzzed, reply)


@settings(max_examples=examples(2.0))
@given(data=st.data())
def test_reads(fuzzed: Fuzzed, data: st.DataObject) -> None:
    json_route = data.draw(st.booleans())
    target = data.draw(targets(fuzzed, JSON_GETS if json_route else OTHER_GETS))
    header_list = data.draw(some_headers(fuzzed))
    method = data.draw(st.sampled_from(["GET", "GET", "HEAD"]))
    events = target.startswith("/api/events")
    reply = send(fuzzed.port, method, target, header_list, stream=events)
    event(f"HTTP {reply.status}")
    check(
        reply, json_expected=json_route and method == "GET", not_http=not_http(target, header_list)
    )


@settings(max_examples=examples(1.0))
@given(data=st.data())
def test_other_requests(fuzzed: Fuzzed, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(["POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    target = data.draw(targets(fuzzed, POSTS + JSON_GETS))
    header_list = data.draw(some_headers(fuzzed))
    body = data.draw(st.one_of(st.none(), st.just(b""), bodies()))
    reply = send(fuzzed.port, method, target, header_list, body)
    event(f"HTTP {reply.status}")
    check(reply, json_expected=False, not_http=not_http(target, header_list))
    stop_if_accepted(fuzzed, reply)


# -- what the fuzzer found, kept as plain tests ----------------------------------------------


def test_header_text_that_is_not_utf8_is_refused_as_json(fuzzed: Fuzzed) -> None:
    # The 415 quoted the Content-Type, which aiohttp keeps as a lone surrogate: a 500.
    headers = [*good_headers(fuzzed)[:2], ("Content-Type", b"\xa0")]
    reply = send(fuzzed.port, "POST", "/api/sequences", headers, b"{}")
    assert reply.status == 415
    assert "got '\\udca0'" in check(reply)["error"]


def test_static_files_are_served_by_name_only(fuzzed: Fuzzed) -> None:
    # aiohttp's static route: a missing file was an empty 404, a long name a 500.
    headers = good_headers(fuzzed)
    reply = send(fuzzed.port, "GET", "/static/app.js", headers)
    assert reply.status == 200 and reply.body
    for name in ("raw", "9" * 300, "..%2Fapi.py", "%00"):
        reply = send(fuzzed.port, "GET", f"/static/{name}", headers)
        assert reply.status == 404, name
        check(reply)
    reply = send(fuzzed.port, "GET", f"/data/{'x' * 300}.fits", headers)  # a 500 too
    assert reply.status == 404
    check(reply)


def test_a_huge_sequence_is_refused_at_once_and_briefly(fuzzed: Fuzzed) -> None:
    body = b'{"name": "x", "steps": [' + b",".join([b"0"] * 400_000) + b"]}"
    reply = send(fuzzed.port, "POST", "/api/sequences", good_headers(fuzzed), body)
    assert reply.status == 400 and len(reply.body) < 500
    assert "more than 20,000 values" in check(reply)["error"]


def test_a_request_that_is_not_http_is_logged_in_one_line(fuzzed: Fuzzed) -> None:
    # aiohttp logged each refusal of its HTTP parser as an error with a traceback.
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("obsctl.web.server")
    logger.addHandler(handler)
    try:
        reply = send(fuzzed.port, "GET", "/api/status", good_headers(fuzzed)[1:])  # no Host
    finally:
        logger.removeHandler(handler)
    assert reply.status == 400
    (record,) = records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "refused a malformed request" in record.getMessage()
    assert "Host" in record.getMessage()


def test_the_daemon_still_stores_frames(fuzzed: Fuzzed) -> None:
    sid = post_sequence(fuzzed, standard_sequence(lights=1).model_dump_json().encode())
    assert wait_until_ended(fuzzed, sid) == "done"
    ids = frames_of(fuzzed, sid)
    assert len(ids) == FRAMES
    data_dir = DataDir(fuzzed.config.data.directory)
    log_db = data_dir.open_log(existing=True)
    try:
        rows = [log_db.exposure(i) for i in ids]
    finally:
        log_db.close()
    assert sorted(r["image_type"] for r in rows if r) == ["BIAS"] * 2 + ["DARK"] * 2 + ["LIGHT"] * 2
    for row in rows:
        assert row is not None and row["status"] == "stored"
        assert Path(data_dir.path(row["file_path"])).stat().st_size > 2880
    assert not fuzzed.tracebacks, [r.getMessage() for r in fuzzed.tracebacks]
