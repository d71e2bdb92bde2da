"""The persistent processing queue: each frame's pipeline state lives in the exposure log.

States: ``queued`` → ``running`` → ``done`` or ``failed``. A frame left ``running`` by a
crash goes back to ``queued`` when the daemon starts, so every frame is processed once the
daemon is back. The raw frame is never touched.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from numpy.typing import NDArray

from obsctl.store.exposure_log import ExposureLog
from obsctl.store.schema import FRAME_METRIC_COLUMNS, MEASUREMENT_COLUMNS

__all__ = ["ProcessingQueue"]

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ProcessingQueue:
    """Queue operations on the ``processing`` table.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log (schema version 2 or later).
    """

    def __init__(self, log_db: ExposureLog) -> None:
        self.log_db = log_db

    def enqueue(self, exposure_id: int) -> None:
        """Queue a frame (again, if it was processed before)."""
        self.log_db.execute(
            "INSERT INTO processing (exposure_id, state, updated_utc) VALUES (?, 'queued', ?) "
            "ON CONFLICT (exposure_id) DO UPDATE SET state = 'queued', stage = NULL, "
            "reason = NULL, updated_utc = excluded.updated_utc",
            (exposure_id, _now()),
        )

    def enqueue_unprocessed(self, image_types: tuple[str, ...] = ("LIGHT",)) -> int:
        """Queue every logged frame of the given types that was never queued; return how many."""
        marks = ", ".join("?" for _ in image_types)
        rows = self.log_db.query(
            f"SELECT id FROM exposures WHERE image_type IN ({marks}) "
            "AND id NOT IN (SELECT exposure_id FROM processing)",
            image_types,
        )
        for row in rows:
            self.enqueue(int(row["id"]))
        return len(rows)

    def recover(self) -> int:
        """Put frames a crash left ``running`` back in the queue; return how many."""
        rows = self.log_db.query("SELECT exposure_id FROM processing WHERE state = 'running'")
        if rows:
            self.log_db.execute(
                "UPDATE processing SET state = 'queued', updated_utc = ? WHERE state = 'running'",
                (_now(),),
            )
            log.warning("%d frame(s) interrupted in processing are queued again", len(rows))
        return len(rows)

    def claim(self, limit: int) -> list[int]:
        """Mark up to ``limit`` queued frames ``running`` (oldest first) and return their ids."""
        rows = self.log_db.query(
            "SELECT exposure_id FROM processing WHERE state = 'queued' "
            "ORDER BY exposure_id LIMIT ?",
            (limit,),
        )
        ids = [int(r["exposure_id"]) for r in rows]
        for exposure_id in ids:
            self.log_db.execute(
                "UPDATE processing SET state = 'running', attempts = attempts + 1, "
                "updated_utc = ? WHERE exposure_id = ?",
                (_now(), exposure_id),
            )
        return ids

    def finish(
        self,
        exposure_id: int,
        *,
        state: str,
        stage: str | None = None,
        reason: str | None = None,
        calibrated_path: str | None = None,
        catalog_path: str | None = None,
    ) -> None:
        """Record a frame's outcome (``done`` or ``failed`` with the stage and reason)."""
        self.log_db.execute(
            "UPDATE processing SET state = ?, stage = ?, reason = ?, calibrated_path = ?, "
            "catalog_path = ?, updated_utc = ? WHERE exposure_id = ?",
            (state, stage, reason, calibrated_path, catalog_path, _now(), exposure_id),
        )

    def save_results(
        self,
        exposure_id: int,
        metrics: Mapping[str, Any],
        flags: Sequence[str],
        sources: NDArray[Any] | None,
        quality: tuple[float | None, str | None] | None = None,
    ) -> None:
        """Store a processed frame's metrics, quality grade and measured sources.

        Parameters
        ----------
        exposure_id : int
            The frame.
        metrics : mapping
            Its metrics; those of `FRAME_METRIC_COLUMNS` are stored, non-finite ones as NULL.
        flags : sequence of str
            Its warning flags.
        sources : numpy.ndarray or None
            Its source catalog; the columns of `MEASUREMENT_COLUMNS` it has are stored (and
            replace what an earlier run stored).
        quality : tuple or None
            Quality score and grade, when the frame was classified.
        """
        values = [_number_or_none(metrics.get(c)) for c in FRAME_METRIC_COLUMNS]
        self.log_db.execute(
            f"INSERT OR REPLACE INTO frame_metrics (exposure_id, "
            f"{', '.join(FRAME_METRIC_COLUMNS)}, flags) "
            f"VALUES ({', '.join('?' for _ in range(len(FRAME_METRIC_COLUMNS) + 2))})",
            [exposure_id, *values, "; ".join(flags) or None],
        )
        if quality is not None:
            self.log_db.execute(
                "UPDATE frame_metrics SET quality_score = ?, quality_grade = ? "
                "WHERE exposure_id = ?",
                (*quality, exposure_id),
            )
        self.log_db.execute("DELETE FROM measurements WHERE exposure_id = ?", (exposure_id,))
        if sources is not None and len(sources):
            names = sources.dtype.names or ()
            columns = [c for c in MEASUREMENT_COLUMNS if c in names]
            rows = zip(*(sources[c].tolist() for c in columns), strict=True)
            self.log_db.executemany(
                f"INSERT INTO measurements (exposure_id, {', '.join(columns)}) "
                f"VALUES (?, {', '.join('?' for _ in columns)})",
                ([exposure_id, *(_finite_or_none(v) for v in row)] for row in rows),
            )

    def counts(self) -> dict[str, int]:
        """Return the number of frames in each state."""
        rows = self.log_db.query("SELECT state, COUNT(*) AS n FROM processing GROUP BY state")
        return {str(r["state"]): int(r["n"]) for r in rows}


def _number_or_none(value: Any) -> float | None:
    """Return a finite number, None for anything else (SQL NULL)."""
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def _finite_or_none(value: Any) -> Any:
    """Return ``value``, None for NaN and infinities (SQL NULL)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
