"""Reprocessing runs in the exposure log: what a run chose, and what became of each frame.

A run is known by its key, the canonical text of its selection and options: the same
``obsctl reprocess`` command finds its unfinished run again and goes on with the frames still
``pending``; a frame ``done`` or ``failed`` is not redone. The frames are chosen once, at the
run's start, so that a selection by processing state (``--state failed``) still names the same
frames when half of them have been redone.

States of a run: ``running`` (started, or interrupted), ``done``. Of a frame: ``pending``,
``done``, ``failed`` (with the stage and the reason, as in the processing queue).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from obsctl.store.exposure_log import ExposureLog

__all__ = ["ReprocessRuns", "Run"]

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Run:
    """One reprocessing run.

    Attributes
    ----------
    id : int
        Its row.
    key : str
        Its selection and options as canonical JSON.
    resumed : bool
        Whether it was found unfinished (True) or just created.
    n_frames : int
        Frames it chose at its start.
    """

    id: int
    key: str
    resumed: bool
    n_frames: int


class ReprocessRuns:
    """The ``reprocess_runs`` and ``reprocess_frames`` tables.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log (schema version 8 or later).
    """

    def __init__(self, log_db: ExposureLog) -> None:
        self.log_db = log_db

    @staticmethod
    def key_of(selection: Mapping[str, Any]) -> str:
        """Return the key of a selection and its options: canonical JSON."""
        return json.dumps(dict(selection), sort_keys=True, separators=(",", ":"))

    def unfinished(self, key: str) -> Run | None:
        """Return the newest run of ``key`` that did not finish, if any."""
        rows = self.log_db.query(
            "SELECT id, n_frames FROM reprocess_runs WHERE key = ? AND state = 'running' "
            "ORDER BY id DESC LIMIT 1",
            (key,),
        )
        if not rows:
            return None
        return Run(int(rows[0]["id"]), key, True, int(rows[0]["n_frames"]))

    def start(
        self,
        selection: Mapping[str, Any],
        exposure_ids: Sequence[int],
        *,
        from_stage: str | None,
        new: bool = False,
    ) -> Run:
        """Return the unfinished run of this selection, or create one over ``exposure_ids``.

        Parameters
        ----------
        selection : mapping
            The selection and options (JSON-serialisable): the run's key.
        exposure_ids : sequence of int
            The frames the selection names now; recorded only when a run is created.
        from_stage : str or None
            The first stage redone; None for all.
        new : bool
            Create a run even when an unfinished one exists (which is then left as it is).
        """
        key = self.key_of(selection)
        found = None if new else self.unfinished(key)
        if found is not None:
            return found
        now = _now()
        with self.log_db.batch():
            run_id = self.log_db.execute(
                "INSERT INTO reprocess_runs (key, selection, from_stage, state, n_frames, "
                "created_utc, updated_utc) VALUES (?, ?, ?, 'running', ?, ?, ?)",
                (key, key, from_stage, len(exposure_ids), now, now),
            )
            self.log_db.executemany(
                "INSERT INTO reprocess_frames (run_id, exposure_id, state) "
                "VALUES (?, ?, 'pending')",
                ((run_id, eid) for eid in exposure_ids),
            )
            # A frame never processed gets its queue row, so that its outcome is recorded
            # there too (`store_result`); were the run stopped, the daemon processes it.
            self.log_db.executemany(
                "INSERT OR IGNORE INTO processing (exposure_id, state, updated_utc) "
                "VALUES (?, 'queued', ?)",
                ((eid, now) for eid in exposure_ids),
            )
        return Run(run_id, key, False, len(exposure_ids))

    def select(
        self,
        *,
        first_night: str | None = None,
        last_night: str | None = None,
        target: str | None = None,
        filter_name: str | None = None,
        image_type: str | None = "LIGHT",
        state: str | None = None,
    ) -> list[int]:
        """Return the logged frames every given criterion matches, oldest first.

        Parameters
        ----------
        first_night, last_night : str or None
            Nights (``YYYY-MM-DD``) from and to, both included.
        target, filter_name, image_type : str or None
            Exact names, case-insensitive.
        state : str or None
            Processing state (``done``, ``failed``, ``queued``, ``running``), or ``none`` for
            frames never queued.
        """
        where: list[str] = []
        args: list[Any] = []
        if first_night is not None:
            where.append("e.night >= ?")
            args.append(first_night)
        if last_night is not None:
            where.append("e.night <= ?")
            args.append(last_night)
        for column, value in (
            ("target", target),
            ("filter", filter_name),
            ("image_type", image_type),
        ):
            if value is not None:
                where.append(f"e.{column} = ? COLLATE NOCASE")
                args.append(value)
        if state == "none":
            where.append("p.state IS NULL")
        elif state is not None:
            where.append("p.state = ?")
            args.append(state)
        sql = "SELECT e.id FROM exposures e LEFT JOIN processing p ON p.exposure_id = e.id"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [int(r["id"]) for r in self.log_db.query(sql + " ORDER BY e.id", args)]

    def files(self, exposure_ids: Sequence[int]) -> dict[int, str]:
        """Return the logged file paths (relative to the data directory) of frames."""
        out: dict[int, str] = {}
        ids = list(exposure_ids)
        for i in range(0, len(ids), 500):  # SQLite's bound on variables per statement
            chunk = ids[i : i + 500]
            rows = self.log_db.query(
                f"SELECT id, file_path FROM exposures WHERE id IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            out.update({int(r["id"]): str(r["file_path"]) for r in rows})
        return out

    def nights(self, exposure_ids: Sequence[int]) -> list[str]:
        """Return the nights of light frames among ``exposure_ids``, in order."""
        ids = list(exposure_ids)
        nights: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self.log_db.query(
                "SELECT DISTINCT night FROM exposures WHERE image_type = 'LIGHT' AND id IN "
                f"({', '.join('?' * len(chunk))})",
                chunk,
            )
            nights.update(str(r["night"]) for r in rows)
        return sorted(nights)

    def pending(self, run_id: int) -> list[int]:
        """Return the frames of a run still to do, oldest first."""
        rows = self.log_db.query(
            "SELECT exposure_id FROM reprocess_frames WHERE run_id = ? AND state = 'pending' "
            "ORDER BY exposure_id",
            (run_id,),
        )
        return [int(r["exposure_id"]) for r in rows]

    def finish_frame(
        self,
        run_id: int,
        exposure_id: int,
        *,
        failed_stage: str | None,
        reason: str | None,
        seconds: float | None,
    ) -> None:
        """Record a frame's outcome in a run (inside the writer's batch)."""
        self.log_db.execute(
            "UPDATE reprocess_frames SET state = ?, stage = ?, reason = ?, seconds = ?, "
            "updated_utc = ? WHERE run_id = ? AND exposure_id = ?",
            (
                "done" if failed_stage is None else "failed",
                failed_stage,
                reason,
                seconds,
                _now(),
                run_id,
                exposure_id,
            ),
        )

    def finish(self, run_id: int) -> None:
        """Mark a run done (every frame has its outcome)."""
        self.log_db.execute(
            "UPDATE reprocess_runs SET state = 'done', updated_utc = ? WHERE id = ?",
            (_now(), run_id),
        )

    def counts(self, run_id: int) -> dict[str, int]:
        """Return the number of a run's frames in each state."""
        rows = self.log_db.query(
            "SELECT state, COUNT(*) AS n FROM reprocess_frames WHERE run_id = ? GROUP BY state",
            (run_id,),
        )
        return {str(r["state"]): int(r["n"]) for r in rows}
