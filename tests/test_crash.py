"""SIGKILL mid-sequence, restart: consistent database, every frame kept, resumed, no leftovers.

The daemon runs as a subprocess with its pipeline on; a full disk is a real one (a small
tmpfs filled to its last byte).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from obsctl.store.unstored import temporary_folder

from .daemon_helpers import free_port, overhead_target, write_config
from .mounts import fill, tmpfs

# Added to the head `write_config` writes, inside its [devices.camera] table.
CONFIG = """\
timeout_s = 2
[data]
directory = "{data}"
[server]
port = {api_port}
[sequencer]
poll_s = 0.005
[pipeline]
enabled = true
workers = 1
reference_catalog = "synthetic"
[simulator]
start = "always"
port = {port}
discovery_port = {discovery}
speed = 20.0
[simulator.camera]
width_px = 128
height_px = 96
readout_time_s = 0.2
"""

SEQUENCE = """
name = "crash"
[target]
name = "Field"
ra_deg = {ra}
dec_deg = {dec}
[[steps]]
filter = "V"
exposure_s = 1
count = 12
[[steps]]
filter = "R"
exposure_s = 1
count = 6
"""


def count_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute("SELECT COUNT(*) FROM exposures").fetchone()[0])
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0  # schema not created yet


def wait_until(check: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert process.poll() is None, process.stdout.read().decode()
        assert time.monotonic() < deadline, f"{what}: not in time"
        time.sleep(0.02)


def pool_workers(pid: int) -> set[int]:
    """The pipeline's worker processes among a process's children."""
    workers = set()
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            with contextlib.suppress(FileNotFoundError):
                if b"multiprocessing.spawn" in Path(f"/proc/{child}/cmdline").read_bytes():
                    workers.add(int(child))
    return workers


def running(pid: int) -> bool:
    """Whether a process exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def api_status(tmp: Path) -> dict:
    config = tomllib.loads((tmp / "obsctl.toml").read_text())
    url = f"http://127.0.0.1:{config['server']['port']}/api/status"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def kept_outside(data: Path) -> Iterator[Path]:
    """The fallback folder for frames outside the data directory (its disk may be full)."""
    folder = temporary_folder(data)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def start(tmp: Path, *args: str, verbose: bool = False) -> subprocess.Popen[bytes]:
    logging = ["-v"] if verbose else []
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "obsctl.cli",
            "--config",
            str(tmp / "obsctl.toml"),
            *logging,
            "run",
            *args,
        ],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def prepare(tmp_path: Path) -> tuple[Path, Path]:
    """Write the config and the sequence; return the data directory and the database path."""
    data = tmp_path / "data"
    api_port, port, discovery = free_port(), free_port(), free_port()
    body = CONFIG.format(data=data, api_port=api_port, port=port, discovery=discovery)
    write_config(tmp_path, body, camera=f"127.0.0.1:{port}", also=("filter_wheel", "mount"))
    target = overhead_target()
    (tmp_path / "seq.toml").write_text(SEQUENCE.format(ra=target.ra_deg, dec=target.dec_deg))
    return data, data / "obsctl.sqlite"


def test_sigkill_then_restart(tmp_path) -> None:
    data, db = prepare(tmp_path)

    first = start(tmp_path, "--sequence", str(tmp_path / "seq.toml"))
    try:
        wait_until(lambda: count_rows(db) >= 5, "frames stored", first)
        wait_until(lambda: bool(pool_workers(first.pid)), "pipeline workers started", first)
        workers = pool_workers(first.pid)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        first.stdout.close()
    # The workers go with the daemon, whatever killed it: none is left holding the database.
    deadline = time.monotonic() + 10
    while any(running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if running(pid)], "pipeline workers outlived the daemon"
    before = count_rows(db)
    night_dir = next((data / "raw").iterdir())
    # What an interrupted write leaves: a hidden temporary file.
    (night_dir / ".2026-01-01_9999_LIGHT_x.fits.abc.tmp").write_bytes(b"partial")
    for derived in ("reduced", "masters"):  # and what it leaves among the derived products
        (data / derived / night_dir.name).mkdir(parents=True, exist_ok=True)
        (data / derived / night_dir.name / ".x_cal.fits.abc.tmp").write_bytes(b"partial")

    second = start(tmp_path, "--until-idle")
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out.decode()

    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = con.execute(
            "SELECT step_index, frame_index, file_path FROM exposures ORDER BY id"
        ).fetchall()
        states = [r[0] for r in con.execute("SELECT state FROM sequences")]
    finally:
        con.close()
    assert before >= 5
    assert len(rows) == 18
    assert len({(s, f) for s, f, _ in rows}) == 18  # resumed, nothing taken twice
    assert all((data / p).exists() for _, _, p in rows)
    assert len(list((data / "raw").glob("*/*.fits"))) == 18
    assert not list(data.glob("*/*/.*.tmp"))
    assert states == ["done"]

    listing = subprocess.run(
        [
            sys.executable,
            "-m",
            "obsctl.cli",
            "--config",
            str(tmp_path / "obsctl.toml"),
            "log",
            "--filter",
            "R",
            "--csv",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = listing.stdout.strip().splitlines()
    assert lines[0].startswith("id,night,")
    assert len(lines) == 1 + 6
    table = subprocess.run(
        [sys.executable, "-m", "obsctl.cli", "--config", str(tmp_path / "obsctl.toml"), "log"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert table.stdout.strip().endswith("18 exposure(s)")


def test_sigterm_shuts_down_cleanly_and_resumes(tmp_path) -> None:
    data, db = prepare(tmp_path)
    daemon = start(tmp_path, "--sequence", str(tmp_path / "seq.toml"), verbose=True)
    deadline = time.monotonic() + 60
    while count_rows(db) < 3:
        assert daemon.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    daemon.send_signal(signal.SIGTERM)
    out, _ = daemon.communicate(timeout=60)
    text = out.decode()
    assert daemon.returncode == 0, text
    assert "shutdown requested" in text and "mount parked" in text
    con = sqlite3.connect(db)
    try:
        state = con.execute("SELECT state FROM sequences").fetchone()[0]
        stored = con.execute("SELECT COUNT(*) FROM exposures").fetchone()[0]
    finally:
        con.close()
    assert state == "running"  # interrupted, to be resumed
    assert stored == len(list((data / "raw").glob("*/*.fits")))  # every download was stored
    again = start(tmp_path, "--until-idle")
    again.communicate(timeout=120)
    assert again.returncode == 0
    assert count_rows(db) == 18


def test_sigterm_while_the_disk_is_full_keeps_the_frames(tmp_path) -> None:
    data, db = prepare(tmp_path)
    with tmpfs(data, size="8m"), kept_outside(data) as kept:
        daemon = start(tmp_path, "--sequence", str(tmp_path / "seq.toml"), verbose=True)
        wait_until(lambda: count_rows(db) >= 3, "frames stored", daemon)
        filler = fill(data)
        wait_until(lambda: bool(list(kept.glob("*.frame"))), "a frame kept", daemon)
        reason = api_status(tmp_path)["activity"]["paused_reason"]
        assert "No space left on device" in reason
        daemon.send_signal(signal.SIGTERM)
        out, _ = daemon.communicate(timeout=60)  # shutdown never waits on a full disk
        text = out.decode()
        assert "Traceback" not in text, text
        assert "not stored; kept for the next start" in text
        assert list(kept.glob("*.frame"))

        filler.unlink()
        again = start(tmp_path, "--until-idle")
        out, _ = again.communicate(timeout=180)
        assert again.returncode == 0, out.decode()
        assert_all_stored_once(data, db)
        assert not list(kept.glob("*.frame"))


def test_sigkill_while_the_disk_is_full_loses_nothing(tmp_path) -> None:
    data, db = prepare(tmp_path)
    with tmpfs(data, size="8m"), kept_outside(data) as kept:
        first = start(tmp_path, "--sequence", str(tmp_path / "seq.toml"))
        try:
            wait_until(lambda: count_rows(db) >= 3, "frames stored", first)
            filler = fill(data)
            wait_until(lambda: bool(list(kept.glob("*.frame"))), "a frame kept", first)
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
            first.stdout.close()

        filler.unlink()
        again = start(tmp_path, "--until-idle")
        out, _ = again.communicate(timeout=180)
        assert again.returncode == 0, out.decode()
        assert_all_stored_once(data, db)
        assert not list(kept.glob("*.frame"))


def assert_all_stored_once(data: Path, db: Path) -> None:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT step_index, frame_index, file_path FROM exposures").fetchall()
        states = [r[0] for r in con.execute("SELECT state FROM sequences")]
    finally:
        con.close()
    assert len(rows) == 18
    assert len({(s, f) for s, f, _ in rows}) == 18  # nothing taken twice, nothing lost
    assert all((data / p).exists() for _, _, p in rows)
    assert len(list((data / "raw").glob("*/*.fits"))) == 18
    assert states == ["done"]
