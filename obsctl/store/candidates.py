"""Difference imaging's results in the exposure log: per frame, and per candidate.

One place for the SQL of ``difference_frames`` and ``difference_candidates`` (the difference
stage's outcome, stored by the pipeline runner; read by alerts, tracks and the page).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from obsctl.frame import DifferenceOutcome
from obsctl.store.exposure_log import ExposureLog

__all__ = [
    "add_transient",
    "candidate_cutout",
    "field_detections",
    "field_transients",
    "frame_candidates",
    "galaxies_near",
    "latest_difference_night",
    "link_candidates",
    "moving_objects",
    "night_candidates",
    "night_transients",
    "put_moving_object",
    "save_difference",
    "track_detections",
    "track_latest_candidates",
    "transient",
    "transient_points",
    "update_transient",
]

_CANDIDATE_COLUMNS = (
    "exposure_id", "row", "kind", "target", "transient_id", "x", "y", "ra_deg", "dec_deg",
    "score", "flux", "flux_err", "snr", "mag", "mag_err", "real_bogus",
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
        tid = int(c["transient_id"])
        kind = "detection" if i < outcome.detections else "target" if tid < 0 else "transient"
        rows.append(
            (
                exposure_id, i, kind, str(c["target"]) or None, None if tid < 0 else tid,
                float(c["x"]), float(c["y"]), *(_number(c[n]) for n in _CANDIDATE_COLUMNS[7:]),
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


def field_detections(
    log_db: ExposureLog,
    field: str,
    *,
    since_mjd: float,
    until_mjd: float,
    min_real_bogus: float | None,
) -> list[dict[str, Any]]:
    """Return a field's positive detections between two times, oldest first.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log.
    field : str
        The exposures' target.
    since_mjd, until_mjd : float
        Only frames whose middle is within these (MJD, both included).
    min_real_bogus : float or None
        Only candidates scored at least this real (those not scored pass); None: all.

    Returns
    -------
    list of dict
        The ``difference_candidates`` columns with the frame's ``mjd_mid``, ``night`` and
        ``filter``.
    """
    sql = (
        "SELECT c.*, e.mjd_mid, e.night, e.filter FROM difference_candidates c "
        "JOIN exposures e ON e.id = c.exposure_id WHERE e.target = ? AND e.mjd_mid BETWEEN ? AND ? "
        "AND c.kind = 'detection' AND c.score > 0 AND c.ra_deg IS NOT NULL"
    )
    args: list[Any] = [field, since_mjd, until_mjd]
    if min_real_bogus is not None:
        sql += " AND (c.real_bogus IS NULL OR c.real_bogus >= ?)"
        args.append(min_real_bogus)
    return log_db.query(sql + " ORDER BY e.mjd_mid, c.id", args)


def field_transients(log_db: ExposureLog, field: str) -> list[dict[str, Any]]:
    """Return a field's transients (``transients`` rows), oldest first."""
    return log_db.query("SELECT * FROM transients WHERE field = ? ORDER BY id", (field,))


def add_transient(log_db: ExposureLog, values: Mapping[str, Any]) -> int:
    """Record a new transient (columns of ``transients``); return its id."""
    names = list(values)
    return log_db.execute(
        f"INSERT INTO transients ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
        [values[n] for n in names],
    )


def update_transient(log_db: ExposureLog, transient_id: int, values: Mapping[str, Any]) -> None:
    """Set columns of a transient."""
    names = list(values)
    log_db.execute(
        f"UPDATE transients SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
        [*(values[n] for n in names), transient_id],
    )


def link_candidates(
    log_db: ExposureLog,
    *,
    transient: Mapping[int, int] | None = None,
    track: Mapping[int, int] | None = None,
) -> None:
    """Set candidates' transient and track ids (candidate id to transient or track id)."""
    with log_db.batch():
        for column, links in (("transient_id", transient or {}), ("track_id", track or {})):
            for candidate, value in links.items():
                log_db.execute(
                    f"UPDATE difference_candidates SET {column} = ? WHERE id = ?",
                    (value, candidate),
                )


def put_moving_object(log_db: ExposureLog, values: Mapping[str, Any], object_id: int | None) -> int:
    """Record a moving object (columns of ``moving_objects``), or update one; return its id."""
    names = list(values)
    if object_id is None:
        return log_db.execute(
            f"INSERT INTO moving_objects ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)})",
            [values[n] for n in names],
        )
    log_db.execute(
        f"UPDATE moving_objects SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
        [*(values[n] for n in names), object_id],
    )
    return object_id


def moving_objects(log_db: ExposureLog, night: str | None = None) -> list[dict[str, Any]]:
    """Return the moving objects (of one night, or all), oldest first."""
    if night is None:
        return log_db.query("SELECT * FROM moving_objects ORDER BY id")
    return log_db.query("SELECT * FROM moving_objects WHERE night = ? ORDER BY id", (night,))


def track_detections(log_db: ExposureLog, track_id: int) -> list[dict[str, Any]]:
    """Return a moving object's detections with their frames' times, oldest first."""
    return log_db.query(
        "SELECT c.*, e.mjd_mid, e.filter FROM difference_candidates c "
        "JOIN exposures e ON e.id = c.exposure_id WHERE c.track_id = ? ORDER BY e.mjd_mid",
        (track_id,),
    )


def galaxies_near(
    log_db: ExposureLog, exposure_id: int, ra_deg: float, dec_deg: float, radius_arcsec: float
) -> list[dict[str, Any]]:
    """Return a frame's sources classified as galaxies within a box around a position."""
    half = radius_arcsec / 3600.0
    reach = min(180.0, half / max(1e-6, math.cos(math.radians(dec_deg))))
    low, high = (ra_deg - reach) % 360.0, (ra_deg + reach) % 360.0
    # A box across RA 0 is two ranges.
    ra_test = "ra_deg BETWEEN ? AND ?" if low <= high else "(ra_deg >= ? OR ra_deg <= ?)"
    return log_db.query(
        "SELECT ra_deg, dec_deg, flux, mag FROM measurements WHERE exposure_id = ? "
        f"AND source_class = 'galaxy' AND dec_deg BETWEEN ? AND ? AND {ra_test}",
        (exposure_id, dec_deg - half, dec_deg + half, low, high),
    )


# -- reading for the page and the command line ----------------------------------------------


def latest_difference_night(log_db: ExposureLog) -> str | None:
    """Return the latest night with a difference, or None before the first."""
    rows = log_db.query(
        "SELECT MAX(e.night) AS night FROM difference_frames d "
        "JOIN exposures e ON e.id = d.exposure_id"
    )
    return rows[0]["night"] if rows else None


def night_candidates(
    log_db: ExposureLog, night: str, *, limit: int, min_real_bogus: float | None
) -> tuple[list[dict[str, Any]], int]:
    """Return a night's latest detections, newest frames first, and how many it has.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log.
    night : str
        The night (``YYYY-MM-DD``).
    limit : int
        Detections returned, at most.
    min_real_bogus : float or None
        Only detections scored at least this real (those not scored pass); None: all.

    Returns
    -------
    rows : list of dict
        The ``difference_candidates`` columns with the frame's ``mjd_mid``, ``date_obs``,
        ``night``, ``filter`` and ``field`` (its target); the strongest first within a frame.
    total : int
        The night's detections that pass ``min_real_bogus``, all of them.
    """
    where = "e.night = ? AND c.kind = 'detection'"
    args: list[Any] = [night]
    if min_real_bogus is not None:
        where += " AND (c.real_bogus IS NULL OR c.real_bogus >= ?)"
        args.append(min_real_bogus)
    join = "FROM difference_candidates c JOIN exposures e ON e.id = c.exposure_id"
    rows = log_db.query(
        f"SELECT c.*, e.mjd_mid, e.date_obs, e.night, e.filter, e.target AS field {join} "
        f"WHERE {where} ORDER BY e.mjd_mid DESC, c.exposure_id DESC, c.score DESC, c.id "
        "LIMIT ?",
        [*args, limit],
    )
    total = log_db.query(f"SELECT COUNT(*) AS n {join} WHERE {where}", args)[0]["n"]
    return rows, int(total)


def night_transients(
    log_db: ExposureLog, night: str | None, *, alerted_only: bool = True
) -> list[dict[str, Any]]:
    """Return the transients sighted on a night (or all), newest sighting first.

    Each row holds the ``transients`` columns, ``candidate_id`` (its newest detection, whose
    cutouts show it) and ``real_bogus`` (that detection's score).
    """
    sql = (
        "SELECT t.*, c.id AS candidate_id, c.real_bogus FROM transients t "
        "LEFT JOIN difference_candidates c ON c.id = (SELECT c2.id FROM difference_candidates c2 "
        "JOIN exposures e2 ON e2.id = c2.exposure_id WHERE c2.transient_id = t.id "
        "AND c2.kind = 'detection' ORDER BY e2.mjd_mid DESC, c2.id DESC LIMIT 1)"
    )
    conditions, args = [], []
    if alerted_only:
        conditions.append("t.alerted = 1")
    if night is not None:
        conditions.append(
            "EXISTS (SELECT 1 FROM difference_candidates c3 JOIN exposures e3 "
            "ON e3.id = c3.exposure_id WHERE c3.transient_id = t.id AND e3.night = ?)"
        )
        args.append(night)
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    return log_db.query(sql + " ORDER BY t.last_mjd DESC, t.id DESC", args)


def track_latest_candidates(log_db: ExposureLog, track_ids: list[int]) -> dict[int, int]:
    """Return each moving object's newest detection (track id to candidate id)."""
    if not track_ids:
        return {}
    rows = log_db.query(
        "SELECT c.track_id, c.id FROM difference_candidates c "
        "JOIN exposures e ON e.id = c.exposure_id "
        f"WHERE c.track_id IN ({', '.join('?' for _ in track_ids)}) ORDER BY e.mjd_mid, c.id",
        track_ids,
    )
    # Oldest first: each track's newest detection is written last.
    return {int(r["track_id"]): int(r["id"]) for r in rows}


def candidate_cutout(log_db: ExposureLog, candidate_id: int) -> dict[str, Any] | None:
    """Return where a candidate's cutouts are: its file (``path``) and ``row``; None if unknown."""
    rows = log_db.query(
        "SELECT c.id, c.exposure_id, c.row, c.kind, d.path FROM difference_candidates c "
        "JOIN difference_frames d ON d.exposure_id = c.exposure_id WHERE c.id = ?",
        (candidate_id,),
    )
    return rows[0] if rows else None


def transient(log_db: ExposureLog, transient_id: int) -> dict[str, Any] | None:
    """Return a transient's ``transients`` row, None if unknown."""
    rows = log_db.query("SELECT * FROM transients WHERE id = ?", (transient_id,))
    return rows[0] if rows else None


def transient_points(log_db: ExposureLog, transient_id: int) -> list[dict[str, Any]]:
    """Return a transient's detections and forced measurements, oldest first.

    Each row: ``candidate_id``, ``exposure_id``, ``kind`` (``detection`` or ``transient``,
    forced), ``mjd`` (the frame's middle), ``filter``, ``mag``, ``mag_err``, ``flux``,
    ``flux_err``, ``snr``, ``score`` and ``real_bogus``.
    """
    return log_db.query(
        "SELECT c.id AS candidate_id, c.exposure_id, c.kind, e.mjd_mid AS mjd, e.filter, "
        "c.mag, c.mag_err, c.flux, c.flux_err, c.snr, c.score, c.real_bogus "
        "FROM difference_candidates c JOIN exposures e ON e.id = c.exposure_id "
        "WHERE c.transient_id = ? ORDER BY e.mjd_mid, c.id",
        (transient_id,),
    )
