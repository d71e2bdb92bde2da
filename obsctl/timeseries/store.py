"""Read light curves, targets and alerts from the exposure log.

A light curve is one lookup of the target's object (unique index on ``target``) and one
range scan of ``lc_points`` (clustered on ``object_id, mjd``), so its cost depends on its own
length, not on the size of the archive.
"""

from __future__ import annotations

import logging
from typing import Any

from obsctl.store.exposure_log import ExposureLog

__all__ = ["list_alerts", "list_light_curves", "load_light_curve", "object_for_target"]

log = logging.getLogger(__name__)

_POINT_SQL = (
    "SELECT mjd, bjd_tdb, mag, mag_err, filter, flags AS flag, airmass, exposure_id, quality, "
    "inst_mag, inst_mag_err, object_id FROM lc_points WHERE object_id = ? ORDER BY mjd"
)


def object_for_target(db: ExposureLog, target: str) -> dict[str, Any] | None:
    """Return the light-curve object of a monitored target, None when unknown."""
    rows = db.query("SELECT * FROM lc_objects WHERE target = ?", (target,))
    return rows[0] if rows else None


def load_light_curve(db: ExposureLog, target: str) -> list[dict[str, Any]]:
    """Return a target's points in time order.

    Parameters
    ----------
    db : ExposureLog
        The exposure log.
    target : str
        Monitored target name.

    Returns
    -------
    list of dict
        One mapping per point: ``mjd`` (UTC, mid-exposure), ``bjd_tdb`` (Julian date),
        ``mag``, ``mag_err`` (differential magnitude on the calibrated scale; None when the
        frame had no ensemble), ``filter``, ``flag`` (bit mask, 0 is good; see
        `obsctl.timeseries.monitor`), ``airmass``, ``exposure_id``, ``quality``,
        ``inst_mag``, ``inst_mag_err`` (the frame's own magnitude of the star: calibrated
        with the frame's zero point when it has one, else instrumental), ``object_id``.
        Empty for an unknown target.
    """
    obj = object_for_target(db, target)
    if obj is None:
        return []
    return db.query(_POINT_SQL, (obj["id"],))


def list_light_curves(db: ExposureLog) -> list[dict[str, Any]]:
    """Return every monitored target with its point count and variability statistics."""
    return db.query(
        "SELECT target, field, ra_deg, dec_deg, n_points, wmean_mag, wscatter_mag, "
        "expected_mag, chi2_red, stetson_j, period_d, period_power, amplitude_mag, "
        "first_mjd, updated_utc FROM lc_objects WHERE target IS NOT NULL ORDER BY target"
    )


def list_alerts(db: ExposureLog, *, limit: int = 100) -> list[dict[str, Any]]:
    """Return the latest alerts, newest first."""
    return db.query(
        "SELECT id, created_utc, kind, field, target, object_id, exposure_id, mjd, mag, "
        "delta_mag, significance, message, delivered FROM alerts ORDER BY id DESC LIMIT ?",
        (limit,),
    )
