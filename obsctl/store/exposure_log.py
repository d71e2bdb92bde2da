"""The exposure log: a SQLite database (WAL) with one row per stored frame.

The database is the searchable record of the night: every raw frame on disk has a row, every
failed step has a row with its reason, and sequences keep their progress here so that a
restart resumes where it stopped. The schema carries a version and is migrated forward on
open; a database from a newer obsctl is refused rather than damaged.

The class is synchronous and cheap per call (milliseconds); the daemon runs it through
``asyncio.to_thread`` so that a slow disk never stalls the event loop.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from obsctl.errors import StorageError

__all__ = [
    "SCHEMA_VERSION",
    "ExposureLog",
    "ExposureRecord",
    "FailureRecord",
]

log = logging.getLogger(__name__)

# Each entry migrates from version i to i + 1. Append; never edit a released step.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE exposures (
        id INTEGER PRIMARY KEY,
        night TEXT NOT NULL,
        file_path TEXT NOT NULL UNIQUE,
        target TEXT,
        image_type TEXT NOT NULL,
        filter TEXT,
        exposure_s REAL NOT NULL,
        date_obs TEXT NOT NULL,
        mjd_start REAL NOT NULL,
        mjd_mid REAL NOT NULL,
        ra_deg REAL,
        dec_deg REAL,
        alt_deg REAL,
        az_deg REAL,
        airmass REAL,
        bin_x INTEGER NOT NULL,
        bin_y INTEGER NOT NULL,
        gain INTEGER,
        offset INTEGER,
        ccd_temp_c REAL,
        camera TEXT,
        mount TEXT,
        filter_wheel TEXT,
        sequence_id INTEGER,
        step_index INTEGER,
        frame_index INTEGER,
        status TEXT NOT NULL,
        created_utc TEXT NOT NULL
    );
    CREATE INDEX exposures_night ON exposures (night);
    CREATE INDEX exposures_target ON exposures (target, night);
    CREATE INDEX exposures_filter ON exposures (filter, night);
    CREATE INDEX exposures_type ON exposures (image_type, night);
    CREATE INDEX exposures_step ON exposures (sequence_id, step_index);
    CREATE TABLE failures (
        id INTEGER PRIMARY KEY,
        time_utc TEXT NOT NULL,
        night TEXT,
        sequence_id INTEGER,
        step_index INTEGER,
        device TEXT,
        operation TEXT NOT NULL,
        error_type TEXT NOT NULL,
        message TEXT NOT NULL,
        action TEXT NOT NULL
    );
    CREATE INDEX failures_sequence ON failures (sequence_id);
    CREATE TABLE sequences (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        definition TEXT NOT NULL,
        state TEXT NOT NULL,
        created_utc TEXT NOT NULL,
        updated_utc TEXT NOT NULL
    );
    """,
    # 2: the per-frame pipeline: processing queue, frame metrics, source measurements, masters.
    """
    CREATE TABLE processing (
        exposure_id INTEGER PRIMARY KEY REFERENCES exposures (id),
        state TEXT NOT NULL,
        stage TEXT,
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        calibrated_path TEXT,
        catalog_path TEXT,
        updated_utc TEXT NOT NULL
    );
    CREATE INDEX processing_state ON processing (state);
    CREATE TABLE frame_metrics (
        exposure_id INTEGER PRIMARY KEY REFERENCES exposures (id),
        fwhm_px REAL,
        fwhm_arcsec REAL,
        hfr_px REAL,
        hfr_arcsec REAL,
        ellipticity REAL,
        star_count INTEGER,
        background REAL,
        background_rms REAL,
        zero_point REAL,
        zero_point_err REAL,
        limiting_mag REAL,
        wcs_rms_arcsec REAL,
        flags TEXT
    );
    CREATE TABLE measurements (
        id INTEGER PRIMARY KEY,
        exposure_id INTEGER NOT NULL REFERENCES exposures (id),
        x REAL NOT NULL,
        y REAL NOT NULL,
        ra_deg REAL,
        dec_deg REAL,
        flux REAL,
        flux_err REAL,
        flux_auto REAL,
        flux_auto_err REAL,
        mag REAL,
        mag_err REAL,
        fwhm_px REAL,
        flags INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX measurements_frame ON measurements (exposure_id);
    CREATE INDEX measurements_sky ON measurements (dec_deg, ra_deg);
    CREATE TABLE masters (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        file_path TEXT NOT NULL UNIQUE,
        night TEXT,
        camera TEXT,
        bin_x INTEGER,
        bin_y INTEGER,
        readout_mode TEXT,
        gain INTEGER,
        offset INTEGER,
        ccd_temp_c REAL,
        exposure_s REAL,
        filter TEXT,
        n_frames INTEGER NOT NULL,
        method TEXT NOT NULL,
        created_utc TEXT NOT NULL
    );
    CREATE INDEX masters_kind ON masters (kind, camera, bin_x, filter);
    """,
    # light curves (obsctl.timeseries): objects per field, their points, alerts. Points are
    # clustered by object and time (WITHOUT ROWID) so that one light curve is one range scan.
    """
    CREATE TABLE lc_objects (
        id INTEGER PRIMARY KEY,
        field TEXT NOT NULL,
        target TEXT,
        ra_deg REAL NOT NULL,
        dec_deg REAL NOT NULL,
        ref_mag REAL,
        first_exposure_id INTEGER,
        first_mjd REAL,
        n_points INTEGER NOT NULL DEFAULT 0,
        comp_weight REAL NOT NULL DEFAULT 0,
        wmean_mag REAL,
        wscatter_mag REAL,
        expected_mag REAL,
        chi2_red REAL,
        stetson_j REAL,
        period_d REAL,
        period_power REAL,
        amplitude_mag REAL,
        updated_utc TEXT
    );
    CREATE INDEX lc_objects_field ON lc_objects (field, dec_deg);
    CREATE UNIQUE INDEX lc_objects_target ON lc_objects (target) WHERE target IS NOT NULL;
    CREATE TABLE lc_points (
        object_id INTEGER NOT NULL,
        mjd REAL NOT NULL,
        exposure_id INTEGER NOT NULL,
        bjd_tdb REAL,
        filter TEXT,
        airmass REAL,
        inst_mag REAL,
        inst_mag_err REAL,
        mag REAL,
        mag_err REAL,
        quality TEXT,
        flags INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (object_id, mjd, exposure_id)
    ) WITHOUT ROWID;
    CREATE INDEX lc_points_exposure ON lc_points (exposure_id);
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        created_utc TEXT NOT NULL,
        kind TEXT NOT NULL,
        field TEXT,
        target TEXT,
        object_id INTEGER,
        exposure_id INTEGER,
        mjd REAL,
        mag REAL,
        delta_mag REAL,
        significance REAL,
        message TEXT NOT NULL,
        dedup_key TEXT NOT NULL UNIQUE,
        delivered TEXT
    );
    CREATE INDEX alerts_mjd ON alerts (mjd);
    """,
    # night plans (obsctl.night.runner): one row per visit of a target or calibration block, in
    # observatory (possibly simulated) time, so that a restart or the next night continues.
    """
    CREATE TABLE plan_visits (
        id INTEGER PRIMARY KEY,
        plan TEXT NOT NULL,
        night TEXT NOT NULL,
        target TEXT NOT NULL,
        kind TEXT NOT NULL,
        sequence_id INTEGER,
        state TEXT NOT NULL,
        frames_planned INTEGER NOT NULL,
        started_utc TEXT NOT NULL,
        ended_utc TEXT,
        reason TEXT
    );
    CREATE INDEX plan_visits_target ON plan_visits (plan, target, night);
    CREATE INDEX plan_visits_night ON plan_visits (plan, night, state);
    """,
    # source classification (obsctl.classify): class and calibrated probabilities per
    # measurement; class counts and the quality grade per frame.
    """
    ALTER TABLE measurements ADD COLUMN source_class TEXT;
    ALTER TABLE measurements ADD COLUMN p_star REAL;
    ALTER TABLE measurements ADD COLUMN p_galaxy REAL;
    ALTER TABLE measurements ADD COLUMN p_cosmic_ray REAL;
    ALTER TABLE measurements ADD COLUMN p_hot_pixel REAL;
    ALTER TABLE measurements ADD COLUMN p_artifact REAL;
    ALTER TABLE frame_metrics ADD COLUMN n_star INTEGER;
    ALTER TABLE frame_metrics ADD COLUMN n_galaxy INTEGER;
    ALTER TABLE frame_metrics ADD COLUMN n_cosmic_ray INTEGER;
    ALTER TABLE frame_metrics ADD COLUMN n_hot_pixel INTEGER;
    ALTER TABLE frame_metrics ADD COLUMN n_artifact INTEGER;
    ALTER TABLE frame_metrics ADD COLUMN artifact_fraction REAL;
    ALTER TABLE frame_metrics ADD COLUMN quality_score REAL;
    ALTER TABLE frame_metrics ADD COLUMN quality_grade TEXT;
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)


@dataclass(frozen=True, slots=True)
class ExposureRecord:
    """One stored frame, as logged. Field meanings match the FITS keywords of the frame."""

    night: str
    file_path: str
    image_type: str
    exposure_s: float
    date_obs: str
    mjd_start: float
    mjd_mid: float
    bin_x: int
    bin_y: int
    status: str = "stored"
    target: str | None = None
    filter: str | None = None
    ra_deg: float | None = None
    dec_deg: float | None = None
    alt_deg: float | None = None
    az_deg: float | None = None
    airmass: float | None = None
    gain: int | None = None
    offset: int | None = None
    ccd_temp_c: float | None = None
    camera: str | None = None
    mount: str | None = None
    filter_wheel: str | None = None
    sequence_id: int | None = None
    step_index: int | None = None
    frame_index: int | None = None


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """A failed operation: what failed, why, and what the policy did about it."""

    operation: str
    error_type: str
    message: str
    action: str
    device: str | None = None
    night: str | None = None
    sequence_id: int | None = None
    step_index: int | None = None


_EXPOSURE_FIELDS = tuple(f.name for f in fields(ExposureRecord))
_FAILURE_FIELDS = tuple(f.name for f in fields(FailureRecord))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ExposureLog:
    """The SQLite exposure log.

    Parameters
    ----------
    path : str or pathlib.Path
        The database file; created (with its directory) when missing.

    Raises
    ------
    StorageError
        When the file is not a database or its schema is newer than this obsctl.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the daemon's worker threads, serialised by a lock.
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a power cut may lose the last transactions but never
            # corrupts the file; the raw FITS files are fsynced and rescanned at start.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{self.path}: cannot open exposure log: {exc}") from exc

    def close(self) -> None:
        """Checkpoint and close the database."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        """The database's schema version."""
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self.path}: schema version {version} is newer than this obsctl "
                f"understands ({SCHEMA_VERSION}); upgrade obsctl"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            log.info("migrating %s to schema version %d", self.path, target)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {target}")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a read-only statement and return its rows as dicts (for modules with tables)."""
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one writing statement in its own transaction; return the last row id."""
        with self._transaction() as db:
            return int(db.execute(sql, args).lastrowid or 0)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many rows in a single transaction."""
        with self._transaction() as db:
            db.executemany(sql, rows)

    def add_exposure(self, record: ExposureRecord) -> int:
        """Insert one exposure and return its id."""
        values = asdict(record)
        names = (*_EXPOSURE_FIELDS, "created_utc")
        sql = f"INSERT INTO exposures ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
        with self._transaction() as db:
            cursor = db.execute(sql, [values[n] for n in _EXPOSURE_FIELDS] + [_now()])
            return int(cursor.lastrowid or 0)

    def has_file(self, file_path: str) -> bool:
        """Return whether a frame file is logged."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM exposures WHERE file_path = ?", (file_path,)
            ).fetchone()
        return row is not None

    def set_status(self, exposure_id: int, status: str) -> None:
        """Change an exposure's status (``stored``, ``processed``, ``failed``...)."""
        with self._transaction() as db:
            db.execute("UPDATE exposures SET status = ? WHERE id = ?", (status, exposure_id))

    def exposures(
        self,
        *,
        night: str | None = None,
        target: str | None = None,
        filter_name: str | None = None,
        image_type: str | None = None,
        sequence_id: int | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Query the log; every given criterion must match. Newest last.

        Parameters
        ----------
        night : str or None
            Night as ``YYYY-MM-DD`` (the DAY-OBS of the frames).
        target : str or None
            Target name, case-insensitive.
        filter_name : str or None
            Filter name, case-insensitive.
        image_type : str or None
            ``LIGHT``, ``DARK``, ``BIAS`` or ``FLAT``, case-insensitive.
        sequence_id : int or None
            Frames of one sequence.
        limit : int or None
            Return only the newest ``limit`` rows.

        Returns
        -------
        list of dict
            One mapping per exposure with every column.
        """
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("night", night),
            ("target", target),
            ("filter", filter_name),
            ("image_type", image_type),
        ):
            if value is not None:
                where.append(f"{column} = ? COLLATE NOCASE")
                args.append(value)
        if sequence_id is not None:
            where.append("sequence_id = ?")
            args.append(sequence_id)
        sql = "SELECT * FROM exposures"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [dict(r) for r in reversed(rows)]

    def frames_done(self, sequence_id: int) -> dict[int, int]:
        """Return the number of stored frames per step index of a sequence."""
        with self._lock:
            rows = self._db.execute(
                "SELECT step_index, COUNT(*) FROM exposures WHERE sequence_id = ? "
                "GROUP BY step_index",
                (sequence_id,),
            ).fetchall()
        return {int(r[0]): int(r[1]) for r in rows if r[0] is not None}

    def add_failure(self, record: FailureRecord) -> int:
        """Record a failure and return its id."""
        values = asdict(record)
        names = (*_FAILURE_FIELDS, "time_utc")
        sql = f"INSERT INTO failures ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
        with self._transaction() as db:
            cursor = db.execute(sql, [values[n] for n in _FAILURE_FIELDS] + [_now()])
            return int(cursor.lastrowid or 0)

    def failures(self, *, sequence_id: int | None = None) -> list[dict[str, Any]]:
        """Return recorded failures, oldest first."""
        sql = "SELECT * FROM failures"
        args: Sequence[Any] = ()
        if sequence_id is not None:
            sql += " WHERE sequence_id = ?"
            args = (sequence_id,)
        with self._lock:
            return [dict(r) for r in self._db.execute(sql + " ORDER BY id", args).fetchall()]

    def add_sequence(self, name: str, definition: str, state: str = "pending") -> int:
        """Store a sequence definition (JSON text) and return its id."""
        now = _now()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO sequences (name, definition, state, created_utc, updated_utc) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, definition, state, now, now),
            )
            return int(cursor.lastrowid or 0)

    def set_sequence_state(self, sequence_id: int, state: str) -> None:
        """Change a sequence's state (``pending``, ``running``, ``done``, ``aborted``...)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE sequences SET state = ?, updated_utc = ? WHERE id = ?",
                (state, _now(), sequence_id),
            )

    def sequences(self, *, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Return sequences, oldest first, optionally only those in the given states."""
        sql = "SELECT * FROM sequences"
        args: list[Any] = []
        if states:
            sql += f" WHERE state IN ({', '.join('?' for _ in states)})"
            args.extend(states)
        with self._lock:
            return [dict(r) for r in self._db.execute(sql + " ORDER BY id", args).fetchall()]

    def sequence(self, sequence_id: int) -> Mapping[str, Any] | None:
        """Return one sequence row, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM sequences WHERE id = ?", (sequence_id,)
            ).fetchone()
        return None if row is None else dict(row)
