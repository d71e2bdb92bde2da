"""The reference images' records (``reference_images``) and the frames a reference is made of.

One place for the SQL of difference imaging's references (`obsctl.pipeline.reference` builds
them, the difference stage reads them): which frames of a field are good enough to combine,
the reference in use for a field, filter and camera, and recording a new one (the previous
one is kept, no longer current).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from obsctl.store.exposure_log import ExposureLog

__all__ = [
    "REFERENCE_COLUMNS",
    "add_reference",
    "current_reference",
    "field_filters",
    "reference_frames",
    "references",
]

#: Columns of ``reference_images`` a build sets (``id``, ``built_utc`` and ``current`` are
#: assigned).
REFERENCE_COLUMNS: tuple[str, ...] = (
    "field",
    "filter",
    "camera",
    "path",
    "trigger",
    "exposure_ids",
    "n_frames",
    "grid_exposure_id",
    "fwhm_px",
    "zero_point",
    "limiting_mag",
    "n_sources",
)


def reference_frames(
    log_db: ExposureLog,
    field: str,
    filter_name: str | None,
    *,
    grades: Sequence[str],
    camera: str | None = None,
) -> list[dict[str, Any]]:
    """Return the processed light frames of a field that a reference may combine, best first.

    A frame qualifies when the pipeline finished it (a calibrated file exists), astrometry
    solved it (``wcs_rms_arcsec`` is set), a zero point was fitted, and its quality grade is one
    of ``grades``. Best first: highest quality score, then smallest FWHM.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log.
    field : str
        The exposures' target (``OBJECT``).
    filter_name : str or None
        The filter; None for frames taken without one.
    grades : sequence of str
        Quality grades accepted (``"A"``, ``"B"``...).
    camera : str or None, optional
        Only this camera's frames when given.

    Returns
    -------
    list of dict
        ``exposure_id``, ``calibrated_path`` (relative to the data directory as logged),
        ``catalog_path``, ``camera``, ``mjd_mid``, ``fwhm_px``, ``zero_point``,
        ``limiting_mag``, ``quality_score`` and ``quality_grade``.
    """
    if not grades:
        return []
    sql = (
        "SELECT e.id AS exposure_id, p.calibrated_path, p.catalog_path, e.camera, e.mjd_mid, "
        "m.fwhm_px, m.zero_point, m.limiting_mag, m.quality_score, m.quality_grade "
        "FROM exposures e JOIN processing p ON p.exposure_id = e.id "
        "JOIN frame_metrics m ON m.exposure_id = e.id "
        "WHERE e.image_type = 'LIGHT' AND e.target = ? AND e.filter IS ? "
        "AND p.state = 'done' AND p.calibrated_path IS NOT NULL "
        "AND m.wcs_rms_arcsec IS NOT NULL AND m.zero_point IS NOT NULL "
        f"AND m.quality_grade IN ({', '.join('?' for _ in grades)})"
    )
    args: list[Any] = [field, filter_name, *grades]
    if camera is not None:
        sql += " AND e.camera IS ?"
        args.append(camera)
    sql += " ORDER BY m.quality_score DESC, m.fwhm_px ASC, e.id ASC"
    return log_db.query(sql, args)


def field_filters(log_db: ExposureLog, field: str) -> list[str | None]:
    """Return the filters of a field's light frames (None for frames without one), sorted."""
    rows = log_db.query(
        "SELECT DISTINCT filter FROM exposures WHERE image_type = 'LIGHT' AND target = ?",
        (field,),
    )
    return sorted((r["filter"] for r in rows), key=lambda f: (f is not None, f or ""))


def add_reference(log_db: ExposureLog, values: Mapping[str, Any]) -> int:
    """Record a new reference as the current one of its field, filter and camera.

    The previous current reference stays in the table with ``current = 0``; both writes are
    one transaction.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log.
    values : mapping
        The columns of `REFERENCE_COLUMNS`; ``exposure_ids`` as a sequence of int.

    Returns
    -------
    int
        The new reference's id.

    Raises
    ------
    ValueError
        When `values` names a column the table does not have or lacks one.
    """
    missing = set(REFERENCE_COLUMNS) - set(values)
    unknown = set(values) - set(REFERENCE_COLUMNS)
    if missing or unknown:
        raise ValueError(
            f"reference_images: missing {sorted(missing)}, unknown {sorted(unknown)} column(s)"
        )
    row = {**values, "exposure_ids": json.dumps([int(i) for i in values["exposure_ids"]])}
    names = (*REFERENCE_COLUMNS, "built_utc")
    row["built_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    with log_db.batch():
        log_db.execute(
            "UPDATE reference_images SET current = 0 "
            "WHERE field = ? AND filter IS ? AND camera IS ? AND current = 1",
            (row["field"], row["filter"], row["camera"]),
        )
        return log_db.execute(
            f"INSERT INTO reference_images ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)})",
            [row[n] for n in names],
        )


def _parsed(row: dict[str, Any]) -> dict[str, Any]:
    row["exposure_ids"] = json.loads(row["exposure_ids"])
    return row


def current_reference(
    log_db: ExposureLog, field: str, filter_name: str | None, camera: str | None
) -> dict[str, Any] | None:
    """Return the reference in use for a field, filter and camera; None when there is none.

    The row's columns, ``exposure_ids`` as a list of int.
    """
    rows = log_db.query(
        "SELECT * FROM reference_images WHERE field = ? AND filter IS ? AND camera IS ? "
        "AND current = 1 ORDER BY id DESC LIMIT 1",
        (field, filter_name, camera),
    )
    return _parsed(rows[0]) if rows else None


def references(log_db: ExposureLog, field: str | None = None) -> list[dict[str, Any]]:
    """Return every reference (of one field, or all), oldest first, current or not."""
    if field is None:
        rows = log_db.query("SELECT * FROM reference_images ORDER BY id")
    else:
        rows = log_db.query("SELECT * FROM reference_images WHERE field = ? ORDER BY id", (field,))
    return [_parsed(r) for r in rows]
