import sqlite3
from dataclasses import replace

import pytest

from obsctl.errors import StorageError
from obsctl.store.exposure_log import SCHEMA_VERSION, ExposureLog, ExposureRecord, FailureRecord

BASE = ExposureRecord(
    night="2026-11-25",
    file_path="raw/2026-11-25/m51_V_0001.fits",
    image_type="LIGHT",
    exposure_s=30.0,
    date_obs="2026-11-25T22:00:00.000",
    mjd_start=61004.9166667,
    mjd_mid=61004.9168403,
    bin_x=1,
    bin_y=1,
    target="M51",
    filter="V",
    sequence_id=1,
    step_index=0,
    frame_index=0,
)


@pytest.fixture
def db(tmp_path):
    log = ExposureLog(tmp_path / "obsctl.sqlite")
    yield log
    log.close()


def test_schema_and_wal(db, tmp_path) -> None:
    assert db.schema_version == SCHEMA_VERSION
    raw = sqlite3.connect(tmp_path / "obsctl.sqlite")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_query_by_night_target_filter_type(db) -> None:
    db.add_exposure(BASE)
    db.add_exposure(replace(BASE, file_path="b.fits", filter="R", frame_index=1))
    db.add_exposure(replace(BASE, file_path="c.fits", night="2026-11-26", target="M101"))
    db.add_exposure(replace(BASE, file_path="d.fits", image_type="DARK", target=None))
    assert len(db.exposures(night="2026-11-25")) == 3
    assert [r["file_path"] for r in db.exposures(target="m51", filter_name="r")] == ["b.fits"]
    assert [r["file_path"] for r in db.exposures(image_type="dark")] == ["d.fits"]
    assert [r["file_path"] for r in db.exposures(limit=2)] == ["c.fits", "d.fits"]
    assert db.has_file("b.fits") and not db.has_file("zzz.fits")


def test_duplicate_file_is_refused(db) -> None:
    db.add_exposure(BASE)
    with pytest.raises(sqlite3.IntegrityError):
        db.add_exposure(BASE)


def test_frames_done_per_step(db) -> None:
    for i in range(3):
        db.add_exposure(replace(BASE, file_path=f"{i}.fits", frame_index=i))
    db.add_exposure(replace(BASE, file_path="x.fits", step_index=1))
    assert db.frames_done(1) == {0: 3, 1: 1}
    assert db.frames_done(2) == {}


def test_failures_and_sequences(db) -> None:
    sid = db.add_sequence("m51", '{"target": "M51"}')
    db.add_failure(
        FailureRecord(
            operation="download",
            error_type="DeviceTimeoutError",
            message="no answer",
            action="retry",
            device="camera",
            sequence_id=sid,
        )
    )
    assert db.failures(sequence_id=sid)[0]["action"] == "retry"
    db.set_sequence_state(sid, "running")
    assert db.sequences(states=["running"])[0]["id"] == sid
    assert db.sequence(sid)["name"] == "m51"


def test_reopen_keeps_rows(tmp_path) -> None:
    path = tmp_path / "obsctl.sqlite"
    log = ExposureLog(path)
    log.add_exposure(BASE)
    log.close()
    again = ExposureLog(path)
    assert len(again.exposures()) == 1
    again.close()


def test_newer_schema_is_refused(tmp_path) -> None:
    path = tmp_path / "future.sqlite"
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StorageError, match="newer than this obsctl"):
        ExposureLog(path)


def test_not_a_database(tmp_path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match=r"junk.sqlite: it is damaged"):
        ExposureLog(path)


def damage(path, text: bytes) -> None:
    """Overwrite the first bytes of every ``text`` in the file with bytes that are not UTF-8."""
    data = bytearray(path.read_bytes())
    at = data.find(text)
    assert at >= 0, text
    while at >= 0:
        data[at : at + 2] = b"\xff\xfe"
        at = data.find(text, at + 1)
    path.write_bytes(bytes(data))


def test_damaged_schema_is_named_not_a_traceback(tmp_path) -> None:
    path = tmp_path / "obsctl.sqlite"
    ExposureLog(path).close()
    damage(path, b"image_type")  # a column name in the schema, on the first page
    with pytest.raises(StorageError, match=r"obsctl.sqlite: it is damaged \(text that is not"):
        ExposureLog(path)


def test_damaged_row_is_named_not_a_traceback(tmp_path) -> None:
    path = tmp_path / "obsctl.sqlite"
    db = ExposureLog(path)
    db.add_exposure(BASE)
    db.close()
    damage(path, b"m51_V_0001")  # the file name of the row
    db = ExposureLog(path)
    try:
        with pytest.raises(StorageError, match=r"obsctl.sqlite: it is damaged .*move it aside"):
            db.exposures()
    finally:
        db.close()


def test_read_only_folder_is_named(tmp_path) -> None:
    from ..mounts import remount_read_only, tmpfs

    with tmpfs(tmp_path / "data") as data:
        ExposureLog(data / "obsctl.sqlite").close()
        remount_read_only(data)
        with pytest.raises(StorageError, match=r"obsctl.sqlite: it cannot be written .*read-only"):
            ExposureLog(data / "obsctl.sqlite")


def log_night(
    log_db: ExposureLog,
    night_name: str = "2026-11-25",
    *,
    filters: tuple[str, ...] = ("B", "V", "R"),
    frames: int = 20,
    stars: int = 50,
    seed: int = 0,
    first_frame: int = 0,
    **kwargs,
) -> dict[str, list[int]]:
    """Log a processed night of synthetic calibration stars (tests/processing truth).

    Frames are numbered from ``first_frame`` (to add more to a night). Returns the exposure
    ids per filter, oldest first.
    """
    from tests.processing.test_extinction import night

    ids: dict[str, list[int]] = {}
    for n_filter, filt in enumerate(filters):
        data = night(filt, frames=frames, stars=stars, seed=seed + n_filter, **kwargs)
        ids[filt] = []
        for i in range(frames):
            rows = data.frame == i
            eid = log_db.add_exposure(
                replace(
                    BASE,
                    night=night_name,
                    file_path=f"raw/{night_name}/{filt}_{first_frame + i:04d}.fits",
                    filter=filt,
                    airmass=float(data.airmass[rows][0]),
                    mjd_mid=61004.8 + ((first_frame + i) * len(filters) + n_filter) * 1e-3,
                    frame_index=first_frame + i,
                )
            )
            ids[filt].append(eid)
            log_db.execute(
                "INSERT INTO processing (exposure_id, state, updated_utc) "
                "VALUES (?, 'done', 'now')",
                (eid,),
            )
            log_db.executemany(
                "INSERT INTO measurements (exposure_id, x, y, inst_mag, inst_mag_err, ref_mag, "
                "ref_mag_err, ref_colour, zp_used) VALUES (?, 0, 0, ?, ?, ?, NULL, ?, 1)",
                [
                    (eid, float(m), float(e), float(r), float(c))
                    for m, e, r, c in zip(
                        data.inst[rows],
                        data.err[rows],
                        data.ref[rows],
                        data.colour[rows],
                        strict=True,
                    )
                ],
            )
    return ids


def test_night_fit_rows_replace_the_nights_earlier_fit(db) -> None:
    fit = {"filter": "V", "mode": "all-sky", "photometric": 1, "k": 0.15, "colour_term": -0.05}
    fit |= {"colour_fitted": 1, "n_frames": 2, "n_frames_used": 2, "n_stars": 10}
    ids = [db.add_exposure(replace(BASE, file_path=f"{i}.fits")) for i in range(3)]
    frames = [
        {"exposure_id": eid, "filter": "V", "airmass": 1.0 + i, "zero_point": 22.0 - 0.15 * i}
        | {"n_stars": 5, "used": 1}
        for i, eid in enumerate(ids[:2])
    ]
    db.put_night_fit("2026-11-25", [fit], frames)
    db.put_night_fit("2026-11-24", [fit | {"colour_term": -0.06}], [])
    db.put_night_fit(
        "2026-11-25",
        [fit | {"n_frames": 3}],
        [*frames, {"exposure_id": ids[2], "filter": "V", "n_stars": 5, "used": 0}],
    )
    (row,) = db.night_fits("2026-11-25")
    assert row["n_frames"] == 3 and row["k"] == 0.15 and row["fitted_utc"]
    assert row["zp0"] is None  # not given: NULL
    stored = db.night_fit_frames("2026-11-25")
    assert [r["exposure_id"] for r in stored] == ids and stored[0]["target"] == "M51"
    assert stored[1]["zero_point"] == pytest.approx(21.85)
    # The colour term held for a frame that cannot fit one: its night's, else the latest.
    assert db.night_colour_term("2026-11-25", "V") == (-0.05, "2026-11-25")
    assert db.night_colour_term("2026-11-26", "V") == (-0.05, "2026-11-25")
    assert db.night_colour_term("2026-11-25", "B") is None


def test_calibration_stars_of_a_night(db) -> None:
    ids = log_night(db, filters=("V",), frames=3, stars=4)
    db.execute("UPDATE measurements SET zp_used = 0 WHERE id = 1")  # not in its frame's fit
    db.execute("UPDATE processing SET state = 'failed' WHERE exposure_id = ?", (ids["V"][2],))
    rows = db.night_calibration_stars("2026-11-25")
    assert len(rows) == 4 + 4 - 1
    assert {r[0] for r in rows} == {"V"} and {r[1] for r in rows} == set(ids["V"][:2])
    assert all(len(r) == 8 and r[6] is None for r in rows)  # ref_mag_err NULL
    assert db.night_calibration_stars("2026-11-24") == []


def test_a_batch_is_one_transaction_and_rolls_back_whole(db, tmp_path) -> None:
    record = ExposureRecord(
        night="2026-11-25", file_path="raw/a.fits", image_type="LIGHT", exposure_s=1.0,
        date_obs="2026-11-25T22:00:00", mjd_start=61000.0, mjd_mid=61000.0, bin_x=1, bin_y=1,
    )  # fmt: skip
    other = ExposureLog(tmp_path / "obsctl.sqlite")  # another connection: sees commits only
    try:
        with db.batch():
            first = db.add_exposure(record)
            db.set_status(first, "processed")
            assert other.query("SELECT COUNT(*) AS n FROM exposures")[0]["n"] == 0
        assert other.exposure(first)["status"] == "processed"
        with pytest.raises(sqlite3.IntegrityError), db.batch():
            db.add_exposure(replace(record, file_path="raw/b.fits"))
            db.add_exposure(record)  # the same file again: refused, and the batch with it
        assert [r["file_path"] for r in db.exposures()] == ["raw/a.fits"]
    finally:
        other.close()


def test_logs_opening_an_old_schema_at_once_migrate_it_once(tmp_path) -> None:
    """Workers that open a log of an older schema together: one migrates, none fails.

    Each opener is a connection of its own, as a pipeline worker process has; threads
    started on a barrier make them read the old version together (sqlite releases the GIL).
    """
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from obsctl.store.schema import MIGRATIONS

    path = tmp_path / "old.sqlite"
    raw = sqlite3.connect(path)
    for version, script in enumerate(MIGRATIONS[:-1], start=1):
        raw.executescript(script)
        raw.execute(f"PRAGMA user_version = {version}")
    raw.execute("PRAGMA journal_mode = wal")
    raw.close()
    barrier = Barrier(8)

    def open_log() -> int | str:
        barrier.wait()
        try:
            log = ExposureLog(path)
        except StorageError as exc:
            return str(exc)
        try:
            return log.schema_version
        finally:
            log.close()

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: open_log(), range(8)))
    assert outcomes == [SCHEMA_VERSION] * 8
