"""`obsctl reprocess` on a real Dask LocalCluster, and `obsctl export parquet`.

A small simulated night (`obsctl.simulators.archive`) is processed by the live pipeline's
code (`process_logged_frames`: frame after frame, as the runner does) once per
module; each test works on a copy of it. The Dask tests share one LocalCluster of two worker
processes on 127.0.0.1 (its start costs seconds); the command-line tests start their own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from obsctl.cli import main
from obsctl.embedded import reference_catalog
from obsctl.pipeline.reprocess import Selection, reprocess
from obsctl.pipeline.stages import build_stages
from obsctl.simulators.archive import take_night, write_config
from obsctl.store.datadir import DataDir
from obsctl.store.schema import FRAME_METRIC_COLUMNS

from ..pipeline_helpers import process_logged_frames

N_FRAMES = 8


def rows(data: Path, sql: str, args: tuple = ()) -> list[tuple]:
    con = sqlite3.connect(DataDir(data).log_path)
    try:
        with con:  # a write is committed
            return con.execute(sql, args).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A night of N_FRAMES light frames, processed by the live path."""
    root = tmp_path_factory.mktemp("archive")
    config = write_config(root / "obsctl.toml", root / "data")
    take_night(config, N_FRAMES)
    process_logged_frames(config)
    return root


@pytest.fixture
def night(archive: Path, tmp_path: Path):
    """A copy of the archive of its own: (config, data folder, config file)."""
    shutil.copytree(archive / "data", tmp_path / "data")
    config = write_config(tmp_path / "obsctl.toml", tmp_path / "data")
    return config, tmp_path / "data", tmp_path / "obsctl.toml"


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            scheduler_kwargs={"dashboard": False},
        ) as cluster,
        Client(cluster) as dask,
    ):
        yield dask


def run(config, client, **options):
    data_dir = DataDir(config.data.directory)
    log_db = data_dir.open_log(existing=True)
    try:
        return reprocess(
            log_db,
            data_dir,
            lambda: build_stages(config, data_dir, reference_catalog(config)),
            config.pipeline.stages,
            options.pop("selection", Selection()),
            cluster=lambda: contextlib.nullcontext(client),
            **options,
        )
    finally:
        log_db.close()


def metrics(data: Path) -> dict[int, tuple]:
    columns = ", ".join(FRAME_METRIC_COLUMNS)
    return {
        r[0]: r[1:] for r in rows(data, f"SELECT exposure_id, {columns}, flags FROM frame_metrics")
    }


def measured(data: Path) -> dict[int, tuple]:
    """Per frame: sources, and the sums of their positions, fluxes, magnitudes and classes."""
    return {
        r[0]: r[1:]
        for r in rows(
            data,
            "SELECT exposure_id, COUNT(*), SUM(x), SUM(y), SUM(flux), SUM(mag), "
            "SUM(source_class = 'star'), SUM(ra_deg) FROM measurements GROUP BY exposure_id",
        )
    }


def assert_same(a: dict[int, tuple], b: dict[int, tuple]) -> None:
    assert a.keys() == b.keys()
    for eid in a:
        for x, y in zip(a[eid], b[eid], strict=True):
            if isinstance(x, float) and isinstance(y, float):
                assert x == pytest.approx(y, rel=1e-9, abs=1e-9), eid
            else:
                assert x == y, eid


def test_a_night_reprocessed_on_a_local_cluster_equals_the_live_pipeline(night, client) -> None:
    config, data, _ = night
    live_metrics, live_measured = metrics(data), measured(data)
    assert len(live_metrics) == N_FRAMES and all(m[5] > 30 for m in live_metrics.values())
    rows(data, "DELETE FROM measurements")  # what is checked must be what the run wrote
    calibrated = sorted((data / "reduced").rglob("*_cal.fits"))
    for path in calibrated:
        path.unlink()

    summary = run(config, client, refit_nights=False)

    assert (summary.n_frames, summary.done, summary.failed, summary.remaining) == (8, 8, 0, 0)
    assert_same(metrics(data), live_metrics)
    assert_same(measured(data), live_measured)
    assert rows(data, "SELECT state, COUNT(*) FROM processing GROUP BY state") == [("done", 8)]
    assert rows(data, "SELECT state, n_frames FROM reprocess_runs") == [("done", 8)]
    assert all(p.exists() for p in calibrated)  # written again, by the workers
    assert rows(data, "SELECT COUNT(*) FROM reprocess_frames WHERE state = 'done'") == [(8,)]


def test_a_run_stopped_part_way_is_resumed_without_redoing_what_finished(night, client) -> None:
    config, data, _ = night
    live_measured = measured(data)
    first = run(config, client, limit=3, batch_size=2)
    assert (first.done, first.remaining, first.resumed) == (3, 5, False)
    finished = dict(
        rows(data, "SELECT exposure_id, updated_utc FROM reprocess_frames WHERE state = 'done'")
    )
    assert len(finished) == 3
    outputs = {
        eid: (data / path).stat().st_mtime_ns
        for eid, path in rows(data, "SELECT exposure_id, calibrated_path FROM processing")
    }

    second = run(config, client)
    assert (second.run_id, second.resumed, second.finished_before) == (first.run_id, True, 3)
    assert (second.done, second.remaining) == (5, 0)
    again = dict(rows(data, "SELECT exposure_id, updated_utc FROM reprocess_frames"))
    assert all(again[eid] == when for eid, when in finished.items())  # not redone
    for eid, path in rows(data, "SELECT exposure_id, calibrated_path FROM processing"):
        changed = (data / path).stat().st_mtime_ns != outputs[eid]
        assert changed == (eid not in finished)
    assert {k: v[0] for k, v in measured(data).items()} == {
        k: v[0] for k, v in live_measured.items()
    }  # nothing lost, nothing twice
    assert rows(data, "SELECT state FROM reprocess_runs") == [("done",)]

    third = run(config, client)  # the run is complete: the same command starts a new one
    assert third.run_id != first.run_id and not third.resumed and third.done == N_FRAMES


def test_from_stage_classify_leaves_calibration_and_photometry_alone(night, client) -> None:
    config, data, _ = night
    live_metrics, live_measured = metrics(data), measured(data)
    pixels = {p.name: fits.getdata(p) for p in sorted((data / "reduced").rglob("*_cal.fits"))}
    # What the run redoes is seen to be redone: classes and magnitudes are cleared first.
    rows(data, "UPDATE measurements SET source_class = NULL, mag = NULL, ra_deg = NULL")
    rows(data, "UPDATE frame_metrics SET zero_point = NULL, n_star = NULL")

    summary = run(config, client, from_stage="classify", refit_nights=False)

    assert (summary.done, summary.failed) == (N_FRAMES, 0)
    assert_same(measured(data), live_measured)  # positions, fluxes, classes, mags as live
    assert_same(metrics(data), live_metrics)
    for path in sorted((data / "reduced").rglob("*_cal.fits")):
        header = fits.getheader(path)
        assert np.array_equal(fits.getdata(path), pixels[path.name])
        assert header["PIPEPROV"] == "calibrate,photometry,classify,astrometry,zeropoint"
    assert rows(data, "SELECT from_stage FROM reprocess_runs") == [("classify",)]


def test_parquet_export_reads_back_with_units(night, tmp_path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.dataset as ds

    _, data, config_file = night
    con = sqlite3.connect(DataDir(data).log_path)
    with con:
        con.execute(
            "INSERT INTO lc_objects (id, field, target, ra_deg, dec_deg) "
            "VALUES (1, 'F', 'V1', 150.0, 20.0)"
        )
        con.executemany(
            "INSERT INTO lc_points (object_id, mjd, exposure_id, filter, mag, mag_err, flags) "
            "VALUES (1, ?, ?, 'V', ?, 0.01, 0)",
            [(61000.1 + i, i, 12.0 + 0.1 * i) for i in (1, 2)],
        )
    con.close()
    out = tmp_path / "export"
    assert main(["-c", str(config_file), "export", "parquet", "--out", str(out)]) == 0

    measurements = ds.dataset(out / "measurements", partitioning="hive").to_table()
    assert measurements.num_rows == rows(data, "SELECT COUNT(*) FROM measurements")[0][0]
    assert set(measurements.column("night").to_pylist()) == {"2026-11-25"}
    field = measurements.schema.field("flux")
    assert field.metadata[b"unit"] == b"adu" and field.type == pa.float64()
    assert measurements.schema.field("ra_deg").metadata[b"unit"] == b"deg"
    assert measurements.schema.field("zp_used").type == pa.bool_()

    frames = ds.dataset(out / "frame_metrics", partitioning="hive").to_table().to_pylist()
    want = dict(rows(data, "SELECT exposure_id, zero_point FROM frame_metrics"))
    assert {f["exposure_id"]: f["zero_point"] for f in frames} == want
    assert all(f["filter"] == "V" and f["exposure_s"] == 30.0 for f in frames)

    points = ds.dataset(out / "lc_points", partitioning="hive").to_table().to_pylist()
    assert sorted((p["exposure_id"], p["target"], p["mag"]) for p in points) == [
        (1, "V1", 12.1),
        (2, "V1", 12.2),
    ]
    pd = pytest.importorskip("pandas")
    frame = pd.read_parquet(out / "measurements")
    assert len(frame) == measurements.num_rows and "source_class" in frame.columns
    duckdb = pytest.importorskip("duckdb")
    per_night = duckdb.sql(
        f"SELECT night, COUNT(*), SUM(flux) FROM read_parquet('{out}/measurements/*/*.parquet', "
        "hive_partitioning = true) GROUP BY night"
    ).fetchall()
    ((night_value, n, flux),) = per_night
    assert str(night_value) == "2026-11-25" and n == measurements.num_rows
    assert flux == pytest.approx(rows(data, "SELECT SUM(flux) FROM measurements")[0][0])
    # A night exported again replaces its files, it does not add to them.
    assert main(["-c", str(config_file), "export", "parquet", "--out", str(out)]) == 0
    assert len(pd.read_parquet(out / "measurements")) == measurements.num_rows
    schema_doc = (Path(__file__).parents[2] / "docs" / "parquet.md").read_text()
    from obsctl.store.parquet import schema_markdown

    assert schema_doc == schema_markdown()  # the document is the code's


def test_cli_reprocesses_on_a_scheduler_by_address(night, client, capsys) -> None:
    _, data, config_file = night
    address = client.scheduler.address
    code = main(["-c", str(config_file), "reprocess", "--cluster", address, "--limit", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"Dask: {address}, 2 worker(s)" in out
    assert "2 frame(s) processed" in out and "6 still pending" in out
    assert rows(data, "SELECT COUNT(*) FROM reprocess_frames WHERE state = 'done'") == [(2,)]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--from-stage", "photometry"], 2, "--from-stage: expected one of calibrate, classify"),
        (["--from-stage", "nonsense"], 2, "got 'nonsense'"),
        (["--night", "2020-01-01"], 1, "no logged frame matches the selection"),
        (["--cluster", "scheduler:8786"], 2, "--cluster: expected 'local' or a scheduler"),
        (["--state", "failed", "--from-stage", "zeropoint"], 2, "needs frames processed"),
    ],
)
def test_cli_errors_say_what_is_wrong(night, capsys, argv, code, message) -> None:
    _, data, config_file = night
    assert main(["-c", str(config_file), "reprocess", *argv]) == code
    assert message in capsys.readouterr().err
    assert rows(data, "SELECT COUNT(*) FROM reprocess_runs") == [(0,)]


def test_cli_unreachable_scheduler_is_an_error_within_the_timeout(night, capsys) -> None:
    _, _, config_file = night
    with socket_closed() as port:
        start = time.monotonic()
        code = main(
            ["-c", str(config_file), "reprocess", "--cluster", f"tcp://127.0.0.1:{port}",
             "--connect-timeout", "1"]
        )  # fmt: skip
    assert code == 1 and time.monotonic() - start < 15
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err


@contextlib.contextmanager
def socket_closed() -> Iterator[int]:
    """A port of 127.0.0.1 that nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port


def test_a_killed_reprocess_is_resumed_with_nothing_redone_or_lost(tmp_path, capsys) -> None:
    config = write_config(tmp_path / "obsctl.toml", tmp_path / "data")
    take_night(config, 40)
    data = tmp_path / "data"
    argv = ["-c", str(tmp_path / "obsctl.toml"), "reprocess", "--no-dashboard"]
    process = subprocess.Popen(
        [sys.executable, "-m", "obsctl.cli", *argv, "--batch-size", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its cluster's processes with it, for the kill
    )
    try:
        deadline = time.monotonic() + 60
        done = 0
        while done < 4 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            with contextlib.suppress(sqlite3.OperationalError):  # not yet created
                done = rows(data, "SELECT COUNT(*) FROM reprocess_frames WHERE state = 'done'")[0][
                    0
                ]
        assert process.poll() is None, "the run ended before it could be killed"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    gone_by = time.monotonic() + 10
    while time.monotonic() < gone_by:  # the cluster's processes go with the group
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("processes of the killed run are left")
    finished = dict(
        rows(data, "SELECT exposure_id, updated_utc FROM reprocess_frames WHERE state = 'done'")
    )
    assert 4 <= len(finished) < 40

    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"(taken up again): 40 frame(s), every stage; {len(finished)} finished before" in out
    after = dict(rows(data, "SELECT exposure_id, updated_utc FROM reprocess_frames"))
    assert all(after[eid] == when for eid, when in finished.items())  # nothing redone
    assert rows(data, "SELECT state, COUNT(*) FROM reprocess_frames GROUP BY state") == [
        ("done", 40)
    ]
    per_frame = rows(data, "SELECT exposure_id, COUNT(*) FROM measurements GROUP BY exposure_id")
    assert len(per_frame) == 40 and all(n > 30 for _, n in per_frame)  # nothing lost
    assert rows(data, "SELECT state, COUNT(*) FROM processing GROUP BY state") == [("done", 40)]
