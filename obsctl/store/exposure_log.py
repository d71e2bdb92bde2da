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
from obsctl.store.schema import (
    FRAME_METRIC_COLUMNS,
    MIGRATIONS,
    NIGHT_FIT_COLUMNS,
    NIGHT_FIT_FRAME_COLUMNS,
)

__all__ = [
    "SCHEMA_VERSION",
    "ExposureLog",
    "ExposureRecord",
    "FailureRecord",
]

log = logging.getLogger(__name__)

#: A page of a listing: ``(offset, count)`` rows.
Window = tuple[int, int]

SCHEMA_VERSION = len(MIGRATIONS)


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
    dome_az_deg: float | None = None
    dome_err_deg: float | None = None
    dome_ok: bool | None = None


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


#: Columns of ``drift_visits`` (``id`` is assigned).
_DRIFT_VISIT_COLUMNS = (
    "night",
    "sequence_id",
    "target",
    "frames",
    "corrections",
    "refused",
    "rms_px",
    "max_px",
    "corrected_x_px",
    "corrected_y_px",
)

#: Columns of ``centring_runs`` a run may set (``id`` is assigned).
_CENTRING_RUN_COLUMNS = (
    "night",
    "started_utc",
    "target",
    "ra_deg",
    "dec_deg",
    "method",
    "pier_side",
    "frames",
    "corrections",
    "error_arcsec",
    "outcome",
    "reason",
)

#: Columns of ``focus_runs`` a run may set (``id`` is assigned).
_FOCUS_RUN_COLUMNS = (
    "night",
    "started_utc",
    "trigger",
    "filter",
    "temperature_c",
    "start_position",
    "points",
    "best_position",
    "best_hfr_px",
    "half_width_steps",
    "fit_rms_px",
    "parabola_position",
    "final_position",
    "check_hfr_px",
    "outcome",
    "reason",
)


class ExposureLog:
    """The SQLite exposure log.

    Parameters
    ----------
    path : str or pathlib.Path
        The database file; created (with its directory) when missing.

    Raises
    ------
    StorageError
        When the file cannot be opened or created, is damaged or not a database, or its
        schema is newer than this obsctl. Every method raises it, naming the file and what
        is wrong, when the database fails (damaged pages, a full disk, a read-only folder).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot create its folder: {exc}") from exc
        # One connection shared by the daemon's worker threads, serialised by a lock;
        # re-entrant so that the writes inside `batch` join its transaction.
        self._lock = threading.RLock()
        self._batch_depth = 0
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._storage_error(exc) from exc
        try:
            with self._locked() as db:
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode: a power cut may lose the last transactions but never
                # corrupts the file; the raw FITS files are fsynced and rescanned at start.
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA foreign_keys=ON")
                # Read the schema now: damage there is said at open, not at the first query.
                db.execute("SELECT sql FROM sqlite_master").fetchall()
                self._migrate(db)
        except BaseException:
            self._db.close()
            raise

    def _storage_error(self, exc: sqlite3.Error | UnicodeDecodeError) -> StorageError:
        """Return the `StorageError` that says, naming the file, what a database failure means."""
        code = getattr(exc, "sqlite_errorcode", None)
        primary = None if code is None else code & 0xFF  # an extended code keeps it there
        # SQLite hands damaged text (in the schema, or in a row) back as it finds it.
        undecodable = isinstance(exc, UnicodeDecodeError) or "decode to UTF-8" in str(exc)
        if undecodable or primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            detail = f"text that is not UTF-8: {exc}" if undecodable else str(exc)
            what = (
                f"it is damaged ({detail}); move it aside (and restore a backup): the daemon "
                "logs the raw frames on disk again from their headers at its next start"
            )
        elif primary == sqlite3.SQLITE_FULL:
            what = f"the disk is full ({exc})"
        elif primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
            what = f"it cannot be written ({exc}); is its folder read-only?"
        else:
            what = f"{type(exc).__name__}: {exc}"
        return StorageError(f"exposure log {self.path}: {what}")

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """Hold the connection; a database failure becomes a `StorageError` naming the file."""
        with self._lock:
            try:
                yield self._db
            except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
                raise  # a constraint or a statement of ours: the caller's to handle or a bug
            except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
                raise self._storage_error(exc) from exc

    def close(self) -> None:
        """Checkpoint and close the database."""
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.DatabaseError as exc:
                # The WAL stays beside the file and is replayed at the next open.
                log.error("%s", self._storage_error(exc))
            finally:
                self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._locked() as db:
            if self._batch_depth:  # inside `batch`: part of its transaction
                yield db
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make every write inside the block, from this thread, one transaction.

        One commit for many results (the reprocessing writer's batches) instead of one per
        statement; other threads wait until the block ends. A failure rolls back all of it.
        """
        with self._transaction():
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1

    @property
    def schema_version(self) -> int:
        """The database's schema version."""
        with self._locked() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self.path}: schema version {version} is newer than this obsctl "
                f"understands ({SCHEMA_VERSION}); upgrade obsctl"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            db.execute("BEGIN IMMEDIATE")
            # Read again under the write lock: another process (a pipeline worker opening the
            # same file) may have migrated since, and a migration run twice fails.
            if int(db.execute("PRAGMA user_version").fetchone()[0]) >= target:
                db.execute("COMMIT")
                continue
            log.info("migrating %s to schema version %d", self.path, target)
            try:
                for statement in MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a read-only statement and return its rows as dicts (for modules with tables)."""
        with self._locked() as db:
            return [dict(r) for r in db.execute(sql, args).fetchall()]

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
        with self._locked() as db:
            row = db.execute("SELECT 1 FROM exposures WHERE file_path = ?", (file_path,)).fetchone()
        return row is not None

    def has_exposure(self, date_obs: str, image_type: str) -> bool:
        """Return whether a frame of a type started at ``date_obs`` (DATE-OBS) is logged.

        The camera of a data directory starts one frame in a millisecond: this names one
        frame whatever its file is called.
        """
        with self._locked() as db:
            row = db.execute(
                "SELECT 1 FROM exposures WHERE date_obs = ? AND image_type = ?",
                (date_obs, image_type.upper()),
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
        window: Window | None = None,
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
        window : tuple of int or None
            ``(offset, count)``: only these rows of the oldest-first list (a page).

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
        if window is not None:
            return self._select(sql + " ORDER BY id", args, window)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return self._select(sql, args)[::-1]

    def _select(
        self, sql: str, args: Sequence[Any], window: Window | None = None
    ) -> list[dict[str, Any]]:
        """Run a query, limited to a window of ``(offset, count)`` rows when given."""
        if window is not None:
            sql += " LIMIT ? OFFSET ?"
            args = [*args, window[1], window[0]]
        with self._locked() as db:
            return [dict(r) for r in db.execute(sql, args).fetchall()]

    def frames_done(self, sequence_id: int) -> dict[int, int]:
        """Return the number of stored frames per step index of a sequence."""
        with self._locked() as db:
            rows = db.execute(
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

    def failures(
        self, *, sequence_id: int | None = None, window: Window | None = None
    ) -> list[dict[str, Any]]:
        """Return recorded failures, oldest first (``window``: ``(offset, count)`` of them)."""
        sql = "SELECT * FROM failures"
        args: Sequence[Any] = ()
        if sequence_id is not None:
            sql += " WHERE sequence_id = ?"
            args = (sequence_id,)
        return self._select(sql + " ORDER BY id", args, window)

    def add_focus_run(self, values: Mapping[str, Any]) -> int:
        """Record a focus run (the columns of ``focus_runs``) and return its id.

        Raises
        ------
        ValueError
            When `values` names a column ``focus_runs`` does not have.
        """
        return self._insert("focus_runs", _FOCUS_RUN_COLUMNS, values)

    def add_centring_run(self, values: Mapping[str, Any]) -> int:
        """Record a centring run (the columns of ``centring_runs``) and return its id.

        Raises
        ------
        ValueError
            When `values` names a column ``centring_runs`` does not have.
        """
        return self._insert("centring_runs", _CENTRING_RUN_COLUMNS, values)

    def centring_runs(self, night: str | None = None) -> list[dict[str, Any]]:
        """Return the centring runs (of one night, or all), oldest first."""
        if night is None:
            return self.query("SELECT * FROM centring_runs ORDER BY id")
        return self.query("SELECT * FROM centring_runs WHERE night = ? ORDER BY id", (night,))

    def put_drift_visit(self, values: Mapping[str, Any]) -> None:
        """Record a visit's drift so far (``drift_visits``), replacing its previous row.

        Raises
        ------
        ValueError
            When `values` names a column ``drift_visits`` does not have.
        """
        unknown = set(values) - set(_DRIFT_VISIT_COLUMNS)
        if unknown:
            raise ValueError(f"drift_visits has no column(s) {sorted(unknown)}")
        names = [n for n in _DRIFT_VISIT_COLUMNS if n in values]
        kept = ("sequence_id", "target")
        sql = (
            f"INSERT INTO drift_visits ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)}) ON CONFLICT (sequence_id, target) "
            f"DO UPDATE SET {', '.join(f'{n} = excluded.{n}' for n in names if n not in kept)}"
        )
        with self._transaction() as db:
            db.execute(sql, [values[n] for n in names])

    def drift_visits(self, night: str | None = None) -> list[dict[str, Any]]:
        """Return the visits' drift records (of one night, or all), oldest first."""
        if night is None:
            return self.query("SELECT * FROM drift_visits ORDER BY id")
        return self.query("SELECT * FROM drift_visits WHERE night = ? ORDER BY id", (night,))

    def _insert(self, table: str, columns: tuple[str, ...], values: Mapping[str, Any]) -> int:
        """Insert a row of `values` (a subset of `columns`) into `table`; return its id."""
        unknown = set(values) - set(columns)
        if unknown:
            raise ValueError(f"{table} has no column(s) {sorted(unknown)}")
        names = [n for n in columns if n in values]
        marks = ", ".join("?" for _ in names)
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})"
        with self._transaction() as db:
            cursor = db.execute(sql, [values[n] for n in names])
            return int(cursor.lastrowid or 0)

    def focus_runs(self, night: str | None = None) -> list[dict[str, Any]]:
        """Return the focus runs (of one night, or all), oldest first."""
        if night is None:
            return self.query("SELECT * FROM focus_runs ORDER BY id")
        return self.query("SELECT * FROM focus_runs WHERE night = ? ORDER BY id", (night,))

    def recent_focus_runs(
        self, night: str | None = None, *, limit: int = 20
    ) -> list[dict[str, Any]]:
        """Return a night's latest focus runs, newest first, at most `limit` of them.

        Each row carries ``night_runs``, the night's number of runs (beyond the `limit`
        too). `night` None is the latest night with a run; no run at all: an empty list.
        """
        args: tuple[Any, ...] = (limit,) if night is None else (night, limit)
        where = "night = (SELECT MAX(night) FROM focus_runs)" if night is None else "night = ?"
        # The window's count is taken before the LIMIT: the whole night's.
        return self.query(
            f"SELECT *, COUNT(*) OVER () AS night_runs FROM focus_runs WHERE {where} "
            "ORDER BY id DESC LIMIT ?",
            args,
        )

    def recent_hfr(self, night: str, filter_name: str | None, since_mjd: float) -> list[float]:
        """Return the pipeline's HFR (pixel) of the night's light frames started after a time.

        Parameters
        ----------
        night : str
            The night.
        filter_name : str or None
            Only frames through this filter (None: frames without a filter).
        since_mjd : float
            Frames that started after this MJD (observatory time), oldest first.
        """
        rows = self.query(
            "SELECT m.hfr_px FROM frame_metrics m JOIN exposures e ON e.id = m.exposure_id "
            "WHERE e.night = ? AND e.image_type = 'LIGHT' AND e.filter IS ? "
            "AND e.mjd_start > ? AND m.hfr_px IS NOT NULL ORDER BY e.mjd_start",
            (night, filter_name, since_mjd),
        )
        return [float(r["hfr_px"]) for r in rows]

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

    def sequences(
        self,
        *,
        states: Sequence[str] | None = None,
        window: Window | None = None,
        definitions: bool = True,
    ) -> list[dict[str, Any]]:
        """Return sequences, oldest first, optionally only those in the given states.

        ``window`` is ``(offset, count)`` of them; without ``definitions`` the rows leave out
        the (possibly long) JSON definition.
        """
        columns = "*" if definitions else "id, name, state, created_utc, updated_utc"
        sql = f"SELECT {columns} FROM sequences"
        args: list[Any] = []
        if states:
            sql += f" WHERE state IN ({', '.join('?' for _ in states)})"
            args.extend(states)
        return self._select(sql + " ORDER BY id", args, window)

    def sequence(self, sequence_id: int) -> Mapping[str, Any] | None:
        """Return one sequence row, or None."""
        with self._locked() as db:
            row = db.execute("SELECT * FROM sequences WHERE id = ?", (sequence_id,)).fetchone()
        return None if row is None else dict(row)

    # -- exposures, by what the night runner and the daemon ask ---------------------------------

    def exposure(self, exposure_id: int) -> dict[str, Any] | None:
        """Return one exposure row, or None."""
        rows = self.query("SELECT * FROM exposures WHERE id = ?", (exposure_id,))
        return rows[0] if rows else None

    def calibration_types(self, sequence_id: int) -> dict[str, list[str]]:
        """Return, per night, the calibration image types (BIAS, DARK, FLAT) a sequence took."""
        rows = self.query(
            "SELECT night, GROUP_CONCAT(DISTINCT image_type) AS types FROM exposures "
            "WHERE sequence_id = ? AND image_type IN ('BIAS', 'DARK', 'FLAT') GROUP BY night",
            (sequence_id,),
        )
        return {str(r["night"]): str(r["types"]).split(",") for r in rows}

    def exposure_times(self, night: str, image_type: str) -> list[float]:
        """Return the distinct exposure times (s) of a night's frames of one type."""
        rows = self.query(
            "SELECT DISTINCT exposure_s FROM exposures WHERE image_type = ? AND night = ?",
            (image_type, night),
        )
        return [float(r["exposure_s"]) for r in rows]

    def last_exposure_s(self, night: str, image_type: str, filter_name: str) -> float | None:
        """Return the exposure time (s) of the night's newest frame of a type and filter."""
        rows = self.query(
            "SELECT exposure_s FROM exposures WHERE image_type = ? AND filter = ? "
            "AND night = ? ORDER BY id DESC LIMIT 1",
            (image_type, filter_name, night),
        )
        return float(rows[0]["exposure_s"]) if rows else None

    def counts_by_type(self, night: str) -> dict[str, int]:
        """Return the number of a night's frames per image type."""
        rows = self.query(
            "SELECT image_type, COUNT(*) AS n FROM exposures WHERE night = ? GROUP BY image_type",
            (night,),
        )
        return {str(r["image_type"]): int(r["n"]) for r in rows}

    def frames_of_sequences(self, sequence_ids: Sequence[int]) -> int:
        """Return the number of frames stored by the given sequences."""
        if not sequence_ids:
            return 0
        marks = ", ".join("?" for _ in sequence_ids)
        rows = self.query(
            f"SELECT COUNT(*) AS n FROM exposures WHERE sequence_id IN ({marks})", sequence_ids
        )
        return int(rows[0]["n"])

    # -- calibration masters ------------------------------------------------------------------

    def masters_for(
        self,
        kind: str,
        *,
        camera: str | None,
        bin_x: int,
        bin_y: int,
        readout_mode: str | None,
        gain: int | None,
        offset: int | None,
    ) -> list[dict[str, Any]]:
        """Return the masters of a kind made with the same camera setup (None matches None)."""
        return self.query(
            "SELECT * FROM masters WHERE kind = ? AND camera IS ? AND bin_x = ? AND bin_y = ? "
            "AND readout_mode IS ? AND gain IS ? AND offset IS ?",
            (kind, camera, bin_x, bin_y, readout_mode, gain, offset),
        )

    def master_files(self, kind: str) -> list[str]:
        """Return the files (relative to the data directory) of every master of a kind."""
        rows = self.query("SELECT file_path FROM masters WHERE kind = ?", (kind,))
        return [str(r["file_path"]) for r in rows]

    def put_master(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Record a master, replacing the row of the same file; return the stored row.

        Rebuilding a master replaces its file and its row: the file name is its identity.
        """
        names = list(values)
        self.execute(
            f"INSERT INTO masters ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)}) "
            "ON CONFLICT (file_path) DO UPDATE SET "
            + ", ".join(f"{n} = excluded.{n}" for n in names if n != "file_path"),
            [values[n] for n in names],
        )
        return self.query("SELECT * FROM masters WHERE file_path = ?", (values["file_path"],))[0]

    def lights_flagged(self, night: str, flag_text: str) -> list[int]:
        """Return the ids of a night's processed light frames whose flags mention a text."""
        rows = self.query(
            "SELECT e.id FROM exposures e JOIN frame_metrics m ON m.exposure_id = e.id "
            "WHERE e.night = ? AND e.image_type = 'LIGHT' AND m.flags LIKE ? ORDER BY e.id",
            (night, f"%{flag_text}%"),
        )
        return [int(r["id"]) for r in rows]

    # -- frame metrics and measurements -------------------------------------------------------

    def best_metrics_of_field(self, exposure_id: int) -> dict[str, Any]:
        """Return the best metrics of the other frames of a frame's target, filter and camera.

        Keys ``fwhm`` (smallest, px), ``stars`` (largest count) and ``zp`` (largest zero
        point, mag); None where no other frame has one.
        """
        rows = self.query(
            "SELECT MIN(m.fwhm_px) AS fwhm, MAX(m.star_count) AS stars, MAX(m.zero_point) AS zp "
            "FROM frame_metrics m JOIN exposures e ON e.id = m.exposure_id "
            "JOIN exposures me ON me.id = ? "
            "WHERE e.target IS me.target AND e.filter IS me.filter AND e.camera IS me.camera "
            "AND m.exposure_id != ?",
            (exposure_id, exposure_id),
        )
        return rows[0] if rows else {}

    def metrics(self, night: str | None = None) -> list[dict[str, Any]]:
        """Return every frame's metrics with its night, time, target, filter and airmass."""
        columns = ", ".join(f"m.{c}" for c in FRAME_METRIC_COLUMNS)
        sql = (
            "SELECT e.id AS exposure_id, e.night, e.date_obs, e.mjd_mid, e.target, e.filter, "
            f"e.airmass, {columns}, m.flags FROM frame_metrics m "
            "JOIN exposures e ON e.id = m.exposure_id"
        )
        args: tuple[str, ...] = ()
        if night is not None:
            sql += " WHERE e.night = ?"
            args = (night,)
        return self.query(sql + " ORDER BY e.id", args)

    def frame_metric(self, exposure_id: int) -> dict[str, Any] | None:
        """Return one frame's metrics with its type, start time and filter; None if unknown.

        Keys ``exposure_id``, ``image_type``, ``date_obs``, ``filter`` and every metric
        column (None where the pipeline has not measured it).
        """
        columns = ", ".join(f"m.{c}" for c in FRAME_METRIC_COLUMNS)
        rows = self.query(
            "SELECT e.id AS exposure_id, e.image_type, e.date_obs, e.filter, "
            f"{columns} FROM exposures e LEFT JOIN frame_metrics m ON m.exposure_id = e.id "
            "WHERE e.id = ?",
            (exposure_id,),
        )
        return rows[0] if rows else None

    def measurement_columns(self) -> list[dict[str, Any]]:
        """Return the ``measurements`` table's columns (``name``, ``type``, ``cid``)."""
        return self.query("PRAGMA table_info(measurements)")

    def frame_sources(self, exposure_id: int, class_column: str | None) -> list[dict[str, Any]]:
        """Return a frame's measured sources in catalog order.

        Keys ``x``, ``y``, ``mag``, ``mag_err``, ``fwhm_px``, ``flags`` and ``class`` (the
        value of ``class_column``; None without one).
        """
        klass = "NULL" if class_column is None else '"' + class_column.replace('"', '""') + '"'
        return self.query(
            f"SELECT x, y, mag, mag_err, fwhm_px, flags, {klass} AS class FROM measurements "
            "WHERE exposure_id = ? ORDER BY id",
            (exposure_id,),
        )

    # -- the night's photometric solution (obsctl.pipeline.nightfit) ------------------------

    def night_calibration_stars(self, night: str) -> list[tuple[Any, ...]]:
        """Return the calibration stars of a night's processed light frames.

        Only stars that entered their frame's zero point (``zp_used``), on frames with an
        airmass. Rows ``(filter, exposure_id, airmass, inst_mag, inst_mag_err, ref_mag,
        ref_mag_err, ref_colour)`` as tuples (None for NULL), ordered by frame.
        """
        sql = (
            "SELECT e.filter, m.exposure_id, e.airmass, m.inst_mag, m.inst_mag_err, m.ref_mag, "
            "m.ref_mag_err, m.ref_colour FROM exposures e "
            "JOIN processing p ON p.exposure_id = e.id "
            "JOIN measurements m ON m.exposure_id = e.id "
            "WHERE e.night = ? AND e.image_type = 'LIGHT' AND p.state = 'done' "
            "AND e.airmass IS NOT NULL AND m.zp_used = 1 ORDER BY m.exposure_id"
        )
        with self._locked() as db:
            cursor = db.cursor()
            cursor.row_factory = None  # plain tuples: tens of thousands of rows
            return list(cursor.execute(sql, (night,)).fetchall())

    def put_night_fit(
        self,
        night: str,
        fits: Sequence[Mapping[str, Any]],
        frames: Sequence[Mapping[str, Any]],
    ) -> None:
        """Replace a night's photometric solution, in one transaction.

        Parameters
        ----------
        night : str
            The night (``YYYY-MM-DD``); its earlier solution (every filter) is replaced.
        fits : sequence of mapping
            One row per filter with the keys of `NIGHT_FIT_COLUMNS` but ``night`` and
            ``fitted_utc`` (missing keys are NULL).
        frames : sequence of mapping
            One row per frame with the keys of `NIGHT_FIT_FRAME_COLUMNS` but ``night``.
        """
        now = _now()
        fit_rows = [
            [
                night if c == "night" else now if c == "fitted_utc" else f.get(c)
                for c in NIGHT_FIT_COLUMNS
            ]
            for f in fits
        ]
        frame_rows = [
            [night if c == "night" else f.get(c) for c in NIGHT_FIT_FRAME_COLUMNS] for f in frames
        ]
        marks = ", ".join("?" for _ in NIGHT_FIT_COLUMNS)
        frame_marks = ", ".join("?" for _ in NIGHT_FIT_FRAME_COLUMNS)
        with self._transaction() as db:
            db.execute("DELETE FROM night_fits WHERE night = ?", (night,))
            db.execute("DELETE FROM night_fit_frames WHERE night = ?", (night,))
            db.executemany(
                f"INSERT INTO night_fits ({', '.join(NIGHT_FIT_COLUMNS)}) VALUES ({marks})",
                fit_rows,
            )
            db.executemany(
                f"INSERT OR REPLACE INTO night_fit_frames ({', '.join(NIGHT_FIT_FRAME_COLUMNS)}) "
                f"VALUES ({frame_marks})",
                frame_rows,
            )

    def night_fits(self, night: str) -> list[dict[str, Any]]:
        """Return a night's photometric solution, one row per filter (by filter name)."""
        return self.query("SELECT * FROM night_fits WHERE night = ? ORDER BY filter", (night,))

    def night_fit_frames(self, night: str) -> list[dict[str, Any]]:
        """Return each frame's zero point in a night's solution, with its time and target."""
        return self.query(
            "SELECT f.*, e.mjd_mid, e.target FROM night_fit_frames f "
            "JOIN exposures e ON e.id = f.exposure_id WHERE f.night = ? "
            "ORDER BY f.filter, f.exposure_id",
            (night,),
        )

    def night_colour_term(self, night: str, filter_name: str) -> tuple[float, str] | None:
        """Return a fitted colour term of a filter and the night it is from, or None.

        The given night's when it has one, else the latest other night's.
        """
        rows = self.query(
            "SELECT colour_term, night FROM night_fits WHERE filter = ? AND colour_fitted = 1 "
            "AND colour_term IS NOT NULL ORDER BY night = ? DESC, night DESC LIMIT 1",
            (filter_name, night),
        )
        return (float(rows[0]["colour_term"]), str(rows[0]["night"])) if rows else None

    # -- the quick-look page ------------------------------------------------------------------

    def nights(self) -> list[dict[str, Any]]:
        """Return the nights in the log, newest first, with their frame counts."""
        return self.query(
            "SELECT night, COUNT(*) AS frames, MIN(date_obs) AS first, MAX(date_obs) AS last "
            "FROM exposures GROUP BY night ORDER BY night DESC"
        )

    def latest_frame(self) -> int | None:
        """Return the newest processed light frame, else the newest light frame, else None."""
        rows = self.query(
            "SELECT e.id FROM exposures e JOIN processing p ON p.exposure_id = e.id "
            "WHERE p.state = 'done' ORDER BY e.id DESC LIMIT 1"
        )
        if not rows:
            rows = self.query(
                "SELECT id FROM exposures WHERE image_type = 'LIGHT' ORDER BY id DESC LIMIT 1"
            )
        return int(rows[0]["id"]) if rows else None

    def night_log(self, night: str | None) -> list[dict[str, Any]]:
        """Return the exposures of a night (all for None) with their processing results."""
        sql = (
            "SELECT e.id, e.night, e.date_obs, e.mjd_mid, e.target, e.image_type, e.filter, "
            "e.exposure_s, e.airmass, e.status, e.file_path, p.state AS processing, "
            "m.fwhm_arcsec, m.star_count, m.zero_point FROM exposures e "
            "LEFT JOIN processing p ON p.exposure_id = e.id "
            "LEFT JOIN frame_metrics m ON m.exposure_id = e.id"
        )
        args: tuple[str, ...] = ()
        if night is not None:
            sql += " WHERE e.night = ?"
            args = (night,)
        return self.query(sql + " ORDER BY e.id", args)

    def frame_row(self, exposure_id: int) -> dict[str, Any] | None:
        """Return one exposure with its processing state and frame metrics, or None."""
        metrics = ", ".join(f"m.{c}" for c in FRAME_METRIC_COLUMNS)
        rows = self.query(
            f"SELECT e.*, p.state AS processing, p.stage AS failed_stage, p.reason, "
            f"p.calibrated_path, p.catalog_path, m.flags AS metric_flags, {metrics} "
            "FROM exposures e LEFT JOIN processing p ON p.exposure_id = e.id "
            "LEFT JOIN frame_metrics m ON m.exposure_id = e.id WHERE e.id = ?",
            (exposure_id,),
        )
        return rows[0] if rows else None
