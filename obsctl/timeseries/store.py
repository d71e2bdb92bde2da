"""The time-series repository: light curves, targets and alerts in the exposure log.

Every statement of `obsctl.timeseries` lives here, behind `LightCurveStore`: the light-curve
tables (``lc_objects``, ``lc_points``, ``alerts``) and the reads of the frame tables the
monitor works from (``exposures``, ``processing``, ``frame_metrics``, ``measurements``). The
module functions at the end are the read API of the command line and the web API.

A light curve is one lookup of the target's object (unique index on ``target``) and one
range scan of ``lc_points`` (clustered on ``object_id, mjd``), so its cost depends on its own
length, not on the size of the archive.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from obsctl.store.exposure_log import ExposureLog
from obsctl.timeseries.alerts import Alert

__all__ = [
    "FramePoint",
    "LightCurveStore",
    "SolvedPoint",
    "list_alerts",
    "list_light_curves",
    "load_light_curve",
    "object_for_target",
]

log = logging.getLogger(__name__)

_GRADE_COLUMN = "quality_grade"  # filled by the classification stage when it runs

_POINT_SQL = (
    "SELECT mjd, bjd_tdb, mag, mag_err, filter, flags AS flag, airmass, exposure_id, quality, "
    "inst_mag, inst_mag_err, object_id FROM lc_points WHERE object_id = ? ORDER BY mjd"
)


class FramePoint(NamedTuple):
    """One object's point in one frame, before the ensemble solved its magnitude.

    The fields are the ``lc_points`` columns `LightCurveStore.replace_points` writes, in
    the order of its statement.
    """

    object_id: int
    mjd: float
    """Mid-exposure, UTC (MJD)."""
    exposure_id: int
    bjd_tdb: float
    """Mid-exposure, barycentric (Julian date, TDB)."""
    filter: str | None
    airmass: float | None
    inst_mag: float
    """The frame's own magnitude of the object (mag)."""
    inst_mag_err: float
    """Its error (mag)."""
    quality: str
    """The frame's grade, else ``"good"`` or ``"bad"``."""
    flags: int
    """Bit mask, 0 is good (see `obsctl.timeseries.monitor`)."""


class SolvedPoint(NamedTuple):
    """A point's differential magnitude from an ensemble solution."""

    object_id: int
    exposure_id: int
    mag: float | None
    """Differential magnitude (mag); None when the frame had no solution."""
    mag_err: float | None
    """Its error (mag)."""
    flag: int
    """The ensemble's flag bit when the frame had no solution, else 0."""


def _now(timespec: str) -> str:
    return datetime.now(UTC).isoformat(timespec=timespec)


class LightCurveStore:
    """The light-curve tables of the exposure log, behind named reads and writes.

    Each writing method runs its statements through `ExposureLog.execute` or
    `ExposureLog.executemany`, one transaction per statement.

    Parameters
    ----------
    db : ExposureLog
        The exposure log (with its measurements).
    """

    def __init__(self, db: ExposureLog) -> None:
        self.db = db
        self._grade_column: str | bool | None = False  # False: not looked up yet

    # --- frames --------------------------------------------------------------------------

    def pending_exposures(self) -> list[dict[str, Any]]:
        """Return the processed light frames that have no points yet, oldest first.

        Returns
        -------
        list of dict
            ``id`` and ``target`` of each frame, in order of mid-exposure time.
        """
        return self.db.query(
            "SELECT e.id, e.target FROM exposures e JOIN processing p ON p.exposure_id = e.id "
            "WHERE p.state = 'done' AND e.image_type = 'LIGHT' AND NOT EXISTS "
            "(SELECT 1 FROM lc_points l WHERE l.exposure_id = e.id) ORDER BY e.mjd_mid"
        )

    def frame_grade(self, exposure_id: int) -> tuple[str | None, str | None]:
        """Return a frame's quality grade and pipeline flags.

        Parameters
        ----------
        exposure_id : int
            The frame.

        Returns
        -------
        grade : str or None
            The classifier's grade; None when the frame was not graded or the database has
            no grade column (looked up once per store).
        flags : str or None
            The frame's pipeline flags ("; "-separated); None when it has no metrics.
        """
        if self._grade_column is False:
            cols = {r["name"] for r in self.db.query("PRAGMA table_info(frame_metrics)")}
            self._grade_column = _GRADE_COLUMN if _GRADE_COLUMN in cols else None
        column = self._grade_column if isinstance(self._grade_column, str) else None
        sql = (
            f"SELECT flags{', ' + column if column else ''} FROM frame_metrics WHERE exposure_id=?"
        )
        rows = self.db.query(sql, (exposure_id,))
        if not rows:
            return None, None
        grade = rows[0].get(column) if column else None
        return (None if grade is None else str(grade)), rows[0]["flags"]

    def limiting_mag(self, exposure_id: int) -> float | None:
        """Return a frame's limiting magnitude (mag), None when it has none."""
        rows = self.db.query(
            "SELECT limiting_mag FROM frame_metrics WHERE exposure_id = ?", (exposure_id,)
        )
        limit: float | None = rows[0]["limiting_mag"] if rows else None
        return limit

    def measurements(self, exposure_id: int) -> list[dict[str, Any]]:
        """Return a frame's measurements that have a sky position and a positive flux.

        Each is ``id``, ``ra_deg``, ``dec_deg`` (deg), ``flux``, ``flux_err`` (ADU, both > 0),
        ``mag`` (calibrated), ``inst_mag`` (e-/s scale) and the frame's ``zero_point`` (all
        None without a zero point), and ``flags`` (photometry bits).
        """
        return self.db.query(
            "SELECT m.id, m.ra_deg, m.dec_deg, m.flux, m.flux_err, m.mag, m.inst_mag, "
            "f.zero_point, m.flags FROM measurements m "
            "LEFT JOIN frame_metrics f USING (exposure_id) "
            "WHERE m.exposure_id = ? AND m.ra_deg IS NOT NULL AND m.flux > 0 AND m.flux_err > 0",
            (exposure_id,),
        )

    # --- objects -------------------------------------------------------------------------

    def objects(self, field: str) -> list[dict[str, Any]]:
        """Return a field's objects.

        Each is ``id``, ``ra_deg``, ``dec_deg`` (deg), ``n_points`` and ``target`` (None for
        an object that is not a monitored target).
        """
        return self.db.query(
            "SELECT id, ra_deg, dec_deg, n_points, target FROM lc_objects WHERE field = ?",
            (field,),
        )

    def add_object(
        self,
        field: str,
        ra_deg: float,
        dec_deg: float,
        *,
        ref_mag: float | None,
        exposure_id: int,
        mjd: float,
    ) -> int:
        """Add a source first detected in a frame as an object; return its id.

        Parameters
        ----------
        field : str
            The field.
        ra_deg, dec_deg : float
            Its position (deg).
        ref_mag : float or None
            Its magnitude in that frame (mag), None when the frame was not calibrated.
        exposure_id : int
            The frame.
        mjd : float
            The frame's mid-exposure time (MJD, UTC).
        """
        return self.db.execute(
            "INSERT INTO lc_objects (field, ra_deg, dec_deg, ref_mag, first_exposure_id, "
            "first_mjd) VALUES (?, ?, ?, ?, ?, ?)",
            (field, ra_deg, dec_deg, ref_mag, exposure_id, mjd),
        )

    def add_target_object(self, field: str, target: str, ra_deg: float, dec_deg: float) -> int:
        """Add a target's object, not detected yet, at the target's position; return its id.

        Parameters
        ----------
        field : str
            The field.
        target : str
            The monitored target's name.
        ra_deg, dec_deg : float
            The target's position (deg).
        """
        return self.db.execute(
            "INSERT INTO lc_objects (field, target, ra_deg, dec_deg) VALUES (?, ?, ?, ?)",
            (field, target, ra_deg, dec_deg),
        )

    def target_object_id(self, target: str) -> int | None:
        """Return the id of a monitored target's object, None when it has none yet."""
        rows = self.db.query("SELECT id FROM lc_objects WHERE target = ?", (target,))
        return int(rows[0]["id"]) if rows else None

    def assign_target(self, object_id: int, target: str) -> None:
        """Make an object the object of a monitored target.

        Parameters
        ----------
        object_id : int
            The object.
        target : str
            The monitored target's name.
        """
        self.db.execute("UPDATE lc_objects SET target = ? WHERE id = ?", (target, object_id))

    def object_for_target(self, target: str) -> dict[str, Any] | None:
        """Return the object (every column) of a monitored target, None when unknown."""
        rows = self.db.query("SELECT * FROM lc_objects WHERE target = ?", (target,))
        return rows[0] if rows else None

    # --- points --------------------------------------------------------------------------

    def frames_in_field(self, field: str, filter_name: str | None, *, before_mjd: float) -> int:
        """Return the number of frames with points of a field in a filter before a time.

        Parameters
        ----------
        field : str
            The field.
        filter_name : str or None
            The filter (None matches frames without one).
        before_mjd : float
            Count frames before this mid-exposure time (MJD, UTC).
        """
        rows = self.db.query(
            "SELECT COUNT(DISTINCT p.exposure_id) AS n FROM lc_points p JOIN lc_objects o "
            "ON o.id = p.object_id WHERE o.field = ? AND p.filter IS ? AND p.mjd < ?",
            (field, filter_name, before_mjd),
        )
        return int(rows[0]["n"])

    def replace_points(self, exposure_id: int, points: Iterable[FramePoint]) -> None:
        """Replace a frame's points and recount the points of its objects.

        Parameters
        ----------
        exposure_id : int
            The frame.
        points : iterable of FramePoint
            Its new points (without differential magnitudes).
        """
        self.db.execute("DELETE FROM lc_points WHERE exposure_id = ?", (exposure_id,))
        self.db.executemany(
            "INSERT INTO lc_points (object_id, mjd, exposure_id, bjd_tdb, filter, airmass, "
            "inst_mag, inst_mag_err, quality, flags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            points,
        )
        self.db.execute(
            "UPDATE lc_objects SET n_points = (SELECT COUNT(*) FROM lc_points p WHERE "
            "p.object_id = lc_objects.id) WHERE id IN (SELECT object_id FROM lc_points WHERE "
            "exposure_id = ?)",
            (exposure_id,),
        )

    def latest_frames(self, field: str, filter_name: str | None, *, limit: int) -> list[int]:
        """Return the latest frames with points of a field in a filter, newest first.

        Parameters
        ----------
        field : str
            The field.
        filter_name : str or None
            The filter (None matches frames without one).
        limit : int
            At most this many frames.
        """
        rows = self.db.query(
            "SELECT DISTINCT p.exposure_id AS e, p.mjd FROM lc_points p JOIN lc_objects o ON "
            "o.id = p.object_id WHERE o.field = ? AND p.filter IS ? ORDER BY p.mjd DESC LIMIT ?",
            (field, filter_name, limit),
        )
        return [int(r["e"]) for r in rows]

    def field_points(self, field: str, exposure_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Return the points of a field's objects in some frames.

        Parameters
        ----------
        field : str
            The field.
        exposure_ids : sequence of int
            The frames.

        Returns
        -------
        list of dict
            ``object_id``, ``exposure_id``, ``inst_mag``, ``inst_mag_err`` (mag), ``flags``
            and the object's ``target`` (None for other objects) of each point.
        """
        marks = ", ".join("?" for _ in exposure_ids)
        return self.db.query(
            f"SELECT p.object_id, p.exposure_id, p.inst_mag, p.inst_mag_err, p.flags, "
            f"o.target FROM lc_points p JOIN lc_objects o ON o.id = p.object_id "
            f"WHERE o.field = ? AND p.exposure_id IN ({marks})",
            (field, *exposure_ids),
        )

    def set_comparison_weights(self, weights: Mapping[int, float]) -> None:
        """Store each object's weight in its field's comparison ensemble.

        Parameters
        ----------
        weights : mapping of int to float
            Weight by object id (0 for an object that is not a comparison star).
        """
        self.db.executemany(
            "UPDATE lc_objects SET comp_weight = ? WHERE id = ?",
            [(w, o) for o, w in weights.items()],
        )

    def set_differential_mags(self, points: Iterable[SolvedPoint], *, flag: int) -> None:
        """Store points' differential magnitudes and set or clear their no-ensemble flag.

        Parameters
        ----------
        points : iterable of SolvedPoint
            The points, each with its magnitude and either ``flag`` or 0.
        flag : int
            The flag bit the ensemble owns; the other bits of each point are kept.
        """
        self.db.executemany(
            f"UPDATE lc_points SET mag = ?, mag_err = ?, flags = (flags & ~{int(flag)}) | ? "
            "WHERE object_id = ? AND exposure_id = ?",
            [(p.mag, p.mag_err, p.flag, p.object_id, p.exposure_id) for p in points],
        )

    def light_curve(self, target: str) -> list[dict[str, Any]]:
        """Return a target's points in time order (see `load_light_curve`)."""
        obj = self.object_for_target(target)
        if obj is None:
            return []
        return self.db.query(_POINT_SQL, (obj["id"],))

    # --- statistics ----------------------------------------------------------------------

    def save_statistics(
        self,
        target: str,
        *,
        wmean_mag: float | None,
        wscatter_mag: float | None,
        expected_mag: float | None,
        chi2_red: float | None,
        stetson_j: float | None,
        period_d: float | None,
        period_power: float | None,
        amplitude_mag: float | None,
        period_method: str | None = None,
        period_fap: float | None = None,
    ) -> None:
        """Store a target's variability statistics and period, stamped with the time now.

        Parameters
        ----------
        target : str
            The monitored target.
        wmean_mag, wscatter_mag, expected_mag : float or None
            Weighted mean, weighted scatter and expected scatter of its magnitudes (mag).
        chi2_red, stetson_j : float or None
            Reduced chi-square against a constant, Stetson J index.
        period_d, period_power, amplitude_mag : float or None
            Best period (d), its periodogram power and amplitude (mag); None without one.
        period_method : str or None
            The method that found the period (``ls``, ``ls-multi`` or ``bls``).
        period_fap : float or None
            The period's false-alarm probability.
        """
        self.db.execute(
            "UPDATE lc_objects SET wmean_mag = ?, wscatter_mag = ?, expected_mag = ?, "
            "chi2_red = ?, stetson_j = ?, period_d = ?, period_power = ?, amplitude_mag = ?, "
            "period_method = ?, period_fap = ?, updated_utc = ? WHERE target = ?",
            (
                wmean_mag,
                wscatter_mag,
                expected_mag,
                chi2_red,
                stetson_j,
                period_d,
                period_power,
                amplitude_mag,
                period_method,
                period_fap,
                _now("seconds"),
                target,
            ),
        )

    def save_class(
        self,
        target: str,
        *,
        var_class: str,
        probability: float,
        probabilities: Mapping[str, float],
        anomaly_score: float | None,
        period_d: float | None = None,
    ) -> None:
        """Store a target's variable class, its probabilities and anomaly score.

        Parameters
        ----------
        target : str
            The monitored target.
        var_class : str
            The most probable class.
        probability : float
            Its probability (0-1).
        probabilities : mapping of str to float
            Every class's probability, stored as JSON.
        anomaly_score : float or None
            The anomaly model's score less its threshold: above 0, the light curve is unlike
            every class.
        period_d : float or None, optional
            The period the class implies, replacing the stored one (day); None keeps it.
        """
        self.db.execute(
            "UPDATE lc_objects SET var_class = ?, var_class_prob = ?, var_probs = ?, "
            "anomaly_score = ?, period_d = COALESCE(?, period_d) WHERE target = ?",
            (
                var_class,
                probability,
                json.dumps({k: round(float(v), 4) for k, v in probabilities.items()}),
                anomaly_score,
                period_d,
                target,
            ),
        )

    def alerted_class(self, target: str) -> str | None:
        """Return the class last alerted for a target, None before the first."""
        rows = self.db.query("SELECT alerted_class FROM lc_objects WHERE target = ?", (target,))
        return rows[0]["alerted_class"] if rows else None

    def set_alerted_class(self, target: str, var_class: str) -> None:
        """Record the class alerted for a target: the next alert needs another class."""
        self.db.execute(
            "UPDATE lc_objects SET alerted_class = ? WHERE target = ?", (var_class, target)
        )

    def light_curves(self) -> list[dict[str, Any]]:
        """Return every monitored target with its point count, statistics and class, by name.

        ``var_probs`` is a mapping of class to probability (None before a classification).
        """
        rows = self.db.query(
            "SELECT target, field, ra_deg, dec_deg, n_points, wmean_mag, wscatter_mag, "
            "expected_mag, chi2_red, stetson_j, period_d, period_power, amplitude_mag, "
            "period_method, period_fap, var_class, var_class_prob, var_probs, anomaly_score, "
            "first_mjd, updated_utc FROM lc_objects WHERE target IS NOT NULL ORDER BY target"
        )
        for row in rows:
            row["var_probs"] = json.loads(row["var_probs"]) if row["var_probs"] else None
        return rows

    # --- alerts --------------------------------------------------------------------------

    def add_alert(self, alert: Alert) -> bool:
        """Store an alert, stamped with the time now, unless its key is known.

        Parameters
        ----------
        alert : Alert
            The alert.

        Returns
        -------
        bool
            True when it is new (stored now), False when an alert with its
            ``dedup_key`` was stored before.
        """
        before = self.db.query("SELECT id FROM alerts WHERE dedup_key = ?", (alert.dedup_key,))
        if before:
            return False
        self.db.execute(
            "INSERT OR IGNORE INTO alerts (created_utc, kind, field, target, object_id, "
            "exposure_id, mjd, mag, delta_mag, significance, message, dedup_key, ra_deg, "
            "dec_deg, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _now("milliseconds"),
                alert.kind,
                alert.field,
                alert.target,
                alert.object_id,
                alert.exposure_id,
                alert.mjd,
                alert.mag,
                alert.delta_mag,
                alert.significance,
                alert.message,
                alert.dedup_key,
                alert.ra_deg,
                alert.dec_deg,
                None if alert.details is None else json.dumps(alert.details),
            ),
        )
        return True

    def mark_delivered(self, dedup_key: str, outcome: str) -> None:
        """Record how an alert's delivery to the sinks went.

        Parameters
        ----------
        dedup_key : str
            The alert's key.
        outcome : str
            One ``"<sink>: ok"`` or ``"<sink>: <error>"`` per sink, "; "-separated.
        """
        self.db.execute("UPDATE alerts SET delivered = ? WHERE dedup_key = ?", (outcome, dedup_key))

    def alerts(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Return the latest alerts, newest first."""
        rows = self.db.query(
            "SELECT id, created_utc, kind, field, target, object_id, exposure_id, mjd, mag, "
            "delta_mag, significance, message, delivered, ra_deg, dec_deg, details FROM alerts "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        for row in rows:
            row["details"] = None if row["details"] is None else json.loads(row["details"])
        return rows


def object_for_target(db: ExposureLog, target: str) -> dict[str, Any] | None:
    """Return the light-curve object of a monitored target, None when unknown."""
    return LightCurveStore(db).object_for_target(target)


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
    return LightCurveStore(db).light_curve(target)


def list_light_curves(db: ExposureLog) -> list[dict[str, Any]]:
    """Return every monitored target with its point count and variability statistics."""
    return LightCurveStore(db).light_curves()


def list_alerts(db: ExposureLog, *, limit: int = 100) -> list[dict[str, Any]]:
    """Return the latest alerts, newest first."""
    return LightCurveStore(db).alerts(limit=limit)
