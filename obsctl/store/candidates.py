"""Difference imaging's results in the exposure log: per frame, and per candidate.

One place for the SQL of ``difference_frames`` and ``difference_candidates`` (the difference
stage's outcome, stored by the pipeline runner; read by alerts, tracks and the page).
"""

from __future__ import annotations

import math
from typing import Any

from obsctl.frame import DifferenceOutcome
from obsctl.store.exposure_log import ExposureLog

__all__ = ["frame_candidates", "save_difference"]

_CANDIDATE_COLUMNS = (
    "exposure_id", "row", "kind", "target", "x", "y", "ra_deg", "dec_deg", "score", "flux",
    "flux_err", "snr", "mag", "mag_err",
)  # fmt: skip


def _number(value: Any) -> float | None:
    """Return a finite float, or None (SQLite stores NaN as NULL anyway)."""
    number = float(value)
    return number if math.isfinite(number) else None


def save_difference(
    log_db: ExposureLog, exposure_id: int, outcome: DifferenceOutcome, path: str
) -> None:
    """Store a frame's difference outcome, replacing what an earlier run of it stored.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log.
    exposure_id : int
        The frame.
    outcome : DifferenceOutcome
        What the difference stage found (its cutouts are in the file, not stored here).
    path : str
        The candidates' file (relative to the data directory as logged).
    """
    rows = []
    for i, c in enumerate(outcome.candidates):
        target = str(c["target"]) or None
        rows.append(
            (
                exposure_id, i, "detection" if i < outcome.detections else "target", target,
                float(c["x"]), float(c["y"]), *(_number(c[n]) for n in _CANDIDATE_COLUMNS[6:]),
            )
        )  # fmt: skip
    with log_db.batch():
        log_db.execute("DELETE FROM difference_candidates WHERE exposure_id = ?", (exposure_id,))
        log_db.execute(
            "INSERT OR REPLACE INTO difference_frames (exposure_id, reference_id, path, "
            "detections, truncated, flux_ratio, sky_noise) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                exposure_id, outcome.reference_id, path, outcome.detections, outcome.truncated,
                float(outcome.flux_ratio), float(outcome.sky_noise),
            ),
        )  # fmt: skip
        log_db.executemany(
            f"INSERT INTO difference_candidates ({', '.join(_CANDIDATE_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _CANDIDATE_COLUMNS)})",
            rows,
        )


def frame_candidates(log_db: ExposureLog, exposure_id: int) -> list[dict[str, Any]]:
    """Return a frame's candidates and forced targets, in their file's row order."""
    return log_db.query(
        "SELECT * FROM difference_candidates WHERE exposure_id = ? ORDER BY row", (exposure_id,)
    )
