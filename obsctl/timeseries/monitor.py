"""Per-frame light-curve bookkeeping in the exposure log: points, ensemble, statistics, alerts.

`LightCurveMonitor.process_exposure` runs after the pipeline stored a frame's measurements.
It matches the frame's sources to the field's known objects by sky position (new ones become
objects), stores one point per object, solves the differential-photometry ensemble of the
field in that filter, rewrites the points of this frame and of the monitored targets with the
new solution, updates the targets' variability statistics and periodograms, and evaluates
the alert rules. It is synchronous and touches only the database; the daemon runs it in a
thread, off the acquisition path.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from obsctl.config import MonitoredTargetConfig, MonitoringConfig, SiteConfig
from obsctl.pipeline.zeropoint import CALIBRATION_REJECT_FLAGS
from obsctl.processing.photometry import FLAG_CROWDED
from obsctl.store.exposure_log import ExposureLog
from obsctl.timeseries.alerts import Alert, baseline, brightness_change, transit_dip
from obsctl.timeseries.classifier import VariableClassifier, VariableModelError
from obsctl.timeseries.differential import choose_comparisons, differential_photometry
from obsctl.timeseries.features import light_curve_features, search_light_curve_period
from obsctl.timeseries.matching import match_positions, separation_arcsec
from obsctl.timeseries.periods import (
    PeriodSearchResult,
    minima_per_cycle,
    period_is_determined,
)
from obsctl.timeseries.stats import variability_stats
from obsctl.timeseries.store import FramePoint, LightCurveStore, SolvedPoint
from obsctl.timeseries.times import bjd_tdb

__all__ = [
    "CONSTANT_CLASS",
    "CONTACT_MAX_PERIOD_D",
    "FLAG_BAD_FRAME",
    "FLAG_NO_ENSEMBLE",
    "FLAG_PHOTOMETRY",
    "PERIOD_RESEARCH_GROWTH",
    "LightCurveMonitor",
    "class_period",
    "frame_is_bad",
]

log = logging.getLogger(__name__)

#: Longest period of a contact (W UMa) binary (day): they lie between a sharp cut-off at
#: 0.22 d and about a day (Rucinski 2007, MNRAS 382, 393; GCVS EW). A sinusoid-like curve
#: the classifier calls ``ew`` whose doubled period is longer is left at its own period.
CONTACT_MAX_PERIOD_D = 1.0

FLAG_PHOTOMETRY = 1
"""The source's photometry is flagged (saturated, blended, truncated, ...)."""
FLAG_BAD_FRAME = 2
"""The frame has a bad quality grade or a failed pipeline stage."""
FLAG_NO_ENSEMBLE = 4
"""Too few comparison stars in the frame for a differential magnitude."""

CONSTANT_CLASS = "constant"
"""The variable classifier's class of a constant star: what a target is until alerted."""

_MIN_SNR_NEW_OBJECT = 5.0
_NEW_SOURCE_REJECT_FLAGS = CALIBRATION_REJECT_FLAGS & ~FLAG_CROWDED
_LOG10 = 2.5 / math.log(10.0)  # magnitude error per fractional flux error
# Frames whose ensemble is solved together: enough history to weigh the comparison stars,
# bounded so a frame's work does not grow with the archive.
_ENSEMBLE_FRAMES = 400
PERIOD_RESEARCH_GROWTH = 0.05
"""A target's period is searched again once its good points grew by this fraction (5 %).

Or changed otherwise: a point dropped, an earlier one added. A search costs 0.1-0.5 s; on
every frame, 1,000 targets would cost minutes a frame. In between, the last search's period
and figures stand (found on up to 5 % fewer points; their magnitudes may have been solved
again since). The record lives in memory: after a restart every target is searched again.
"""


def frame_is_bad(grade: str | None, flags: str | None, bad_grades: Collection[str]) -> bool:
    """Return True for a bad frame: a bad grade, or (without a grade) a failed stage.

    Parameters
    ----------
    grade : str or None
        The frame's quality grade (``A`` best .. ``D``), None when it was not graded.
    flags : str or None
        The frame's pipeline flags ("; "-separated), where a stage run under the ``mark``
        policy leaves ``"<stage> failed: ..."``.
    bad_grades : collection of str
        Grades that make a frame bad (case-insensitive).
    """
    if grade is not None:
        return grade.strip().upper() in {g.upper() for g in bad_grades}
    return flags is not None and "failed" in flags


@dataclass(frozen=True)
class _Target:
    name: str
    field: str
    ra_deg: float
    dec_deg: float


def _night(mjd: float, longitude_deg: float) -> int:
    """Local night number: the MJD of local noon before the observation."""
    return math.floor(mjd + longitude_deg / 360.0 - 0.5)


class LightCurveMonitor:
    """Keep the light curves of monitored fields in the exposure log.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log (with its measurements).
    config : MonitoringConfig
        Targets, thresholds.
    site : SiteConfig
        Where the observatory is (for BJD_TDB and night boundaries).
    """

    def __init__(self, log_db: ExposureLog, config: MonitoringConfig, site: SiteConfig) -> None:
        self.db = log_db
        self.store = LightCurveStore(log_db)
        self.config = config
        self.site = site
        self._classifier: VariableClassifier | None = None
        self._classifier_failed = False
        # Per target: the last confident class and for how many classifications in a row.
        self._class_streak: dict[str, tuple[str, int]] = {}
        # Per target: the times of its last period search's points, and what it found.
        self._searched: dict[str, tuple[NDArray[np.float64], PeriodSearchResult | None]] = {}

    # --- targets -------------------------------------------------------------------------

    def _targets_for(self, exposure: dict[str, Any]) -> list[_Target]:
        name = exposure.get("target")
        if name is None:
            return []
        out = [
            _Target(t.name, t.field or t.name, t.ra_deg, t.dec_deg)
            for t in self.config.targets
            if (t.field or t.name) == name
        ]
        if not out and self.config.auto and exposure.get("ra_deg") is not None:
            out = [_Target(name, name, float(exposure["ra_deg"]), float(exposure["dec_deg"]))]
        return out

    def target_config(self, name: str) -> MonitoredTargetConfig | None:
        """Return the configured target of that name, if any."""
        return next((t for t in self.config.targets if t.name == name), None)

    # --- the frame -----------------------------------------------------------------------

    def pending_exposures(self) -> list[int]:
        """Return the processed light frames of monitored fields without points, oldest first.

        After a crash between storing a frame's measurements and adding its points, these
        are the frames to add again.
        """
        fields = {t.field or t.name for t in self.config.targets}
        rows = self.store.pending_exposures()
        return [int(r["id"]) for r in rows if self.config.auto or r["target"] in fields]

    def process_exposure(self, exposure_id: int) -> list[Alert]:
        """Add a processed frame's points to its field's light curves; return new alerts.

        Parameters
        ----------
        exposure_id : int
            A frame whose measurements are stored.

        Returns
        -------
        list of Alert
            Alerts raised by this frame that were not raised before (already stored).
        """
        exposure = self.db.exposure(exposure_id)
        if exposure is None or exposure["image_type"] != "LIGHT":
            return []
        targets = self._targets_for(exposure)
        if not targets:
            return []
        field = targets[0].field
        grade, frame_flags = self.store.frame_grade(exposure_id)
        bad_frame = frame_is_bad(grade, frame_flags, self.config.bad_grades)
        quality = grade if grade is not None else ("bad" if bad_frame else "good")
        meas = self.store.measurements(exposure_id)
        mjd = float(exposure["mjd_mid"])
        n_prior = self.store.frames_in_field(field, exposure["filter"], before_mjd=mjd)
        objects = self._objects(field)
        alerts: list[Alert] = []
        ra = np.array([m["ra_deg"] for m in meas], dtype=np.float64)
        dec = np.array([m["dec_deg"] for m in meas], dtype=np.float64)
        snr = np.array([m["flux"] / m["flux_err"] for m in meas], dtype=np.float64)
        index = match_positions(
            ra,
            dec,
            objects["ra_deg"],
            objects["dec_deg"],
            radius_arcsec=self.config.match_radius_arcsec,
        )
        object_ids = [int(objects["id"][i]) if i >= 0 else -1 for i in index]
        first_seen: set[int] = {
            int(objects["id"][i]) for i in index if i >= 0 and objects["n_points"][i] == 0
        }
        for k, m in enumerate(meas):
            if object_ids[k] < 0 and snr[k] >= _MIN_SNR_NEW_OBJECT:
                object_ids[k] = self.store.add_object(
                    field,
                    m["ra_deg"],
                    m["dec_deg"],
                    ref_mag=m["mag"],
                    exposure_id=exposure_id,
                    mjd=mjd,
                )
                first_seen.add(object_ids[k])
        self._assign_targets(targets, field, exposure_id, mjd)
        bjd = float(
            bjd_tdb(
                mjd,
                float(exposure["ra_deg"] if exposure["ra_deg"] is not None else targets[0].ra_deg),
                float(
                    exposure["dec_deg"] if exposure["dec_deg"] is not None else targets[0].dec_deg
                ),
                latitude_deg=self.site.latitude_deg,
                longitude_deg=self.site.longitude_deg,
                elevation_m=self.site.elevation_m,
            )[0]
        )
        calibrated = all(m["inst_mag"] is not None and m["zero_point"] is not None for m in meas)
        points: list[FramePoint] = []
        for k, m in enumerate(meas):
            if object_ids[k] < 0:
                continue
            flagged = m["flags"] & CALIBRATION_REJECT_FLAGS
            flags = (FLAG_PHOTOMETRY if flagged else 0) | (FLAG_BAD_FRAME if bad_frame else 0)
            # The frame's own magnitude: instrumental plus the frame's zero point when it has
            # one (the ensemble then lands on the calibrated scale of this filter), else
            # instrumental; either way a per-frame constant the ensemble takes out. Not the
            # calibrated `mag`: its colour term is fitted per frame, and its error would not
            # cancel between stars of other colours (it made a constant star 15 % noisier).
            inst = m["inst_mag"] + m["zero_point"] if calibrated else -2.5 * math.log10(m["flux"])
            inst_err = _LOG10 * m["flux_err"] / m["flux"]
            points.append(
                FramePoint(object_ids[k], mjd, exposure_id, bjd, exposure["filter"],
                           exposure["airmass"], inst, inst_err, quality, flags)
            )  # fmt: skip
        self.store.replace_points(exposure_id, points)
        self._solve_ensemble(field, exposure["filter"], exposure_id)
        # New sources near a target, once the field has a reference of earlier frames.
        if n_prior >= self.config.min_reference_frames and not bad_frame:
            alerts += self._new_sources(
                field, targets, exposure_id, mjd, first_seen, meas, object_ids, snr
            )
        features: dict[str, NDArray[np.float32]] = {}
        for target in targets:
            alerts += self._target_alerts(target, exposure_id, exposure["filter"], mjd)
            vector = self.update_stats(target.name)
            if vector is not None:
                features[target.name] = vector
        alerts += self._classify(features, field, exposure_id, mjd)
        return [a for a in alerts if self._store_alert(a)]

    def _objects(self, field: str) -> dict[str, NDArray[Any]]:
        rows = self.store.objects(field)
        return {
            "id": np.array([r["id"] for r in rows], dtype=np.int64),
            "ra_deg": np.array([r["ra_deg"] for r in rows], dtype=np.float64),
            "dec_deg": np.array([r["dec_deg"] for r in rows], dtype=np.float64),
            "n_points": np.array([r["n_points"] for r in rows], dtype=np.int64),
        }

    def _assign_targets(
        self, targets: list[_Target], field: str, exposure_id: int, mjd: float
    ) -> None:
        """Give each target its object: the nearest object, else one at its position."""
        for t in targets:
            if self.store.target_object_id(t.name) is not None:
                continue
            objects = self._objects(field)
            if objects["id"].size:
                sep = separation_arcsec(t.ra_deg, t.dec_deg, objects["ra_deg"], objects["dec_deg"])
                k = int(np.argmin(sep))
                if sep[k] <= self.config.match_radius_arcsec:
                    self.store.assign_target(int(objects["id"][k]), t.name)
                    continue
            # Not detected (yet): the object waits at the target's position.
            self.store.add_target_object(field, t.name, t.ra_deg, t.dec_deg)

    # --- the ensemble --------------------------------------------------------------------

    def _solve_ensemble(self, field: str, filter_name: str | None, exposure_id: int) -> None:
        frame_ids = self.store.latest_frames(field, filter_name, limit=_ENSEMBLE_FRAMES)
        if not frame_ids:
            return
        pts = self.store.field_points(field, frame_ids)
        obj_ids = sorted({int(p["object_id"]) for p in pts})
        col = {o: j for j, o in enumerate(obj_ids)}
        row = {e: i for i, e in enumerate(frame_ids)}
        shape = (len(frame_ids), len(obj_ids))
        m = np.full(shape, np.nan)
        e = np.full(shape, np.nan)
        usable = np.zeros(shape, dtype=bool)
        targets: set[int] = set()
        for p in pts:
            i, j = row[int(p["exposure_id"])], col[int(p["object_id"])]
            m[i, j], e[i, j] = p["inst_mag"], p["inst_mag_err"]
            # The ensemble's own verdict (no comparison stars yet) is not a reason to leave out.
            usable[i, j] = (p["flags"] & ~FLAG_NO_ENSEMBLE) == 0
            if p["target"] is not None:
                targets.add(j)
        comps = choose_comparisons(
            m,
            e,
            usable,
            exclude=np.array(sorted(targets), dtype=np.intp),
            max_count=self.config.max_comparisons,
        )
        if comps.size < 2:
            return
        # Each star's typical magnitude in this filter anchors the scale (a median, so frames
        # without a zero point, on the instrumental scale, do not move it).
        ref = np.full(m.shape[1], np.nan)
        seen = (usable & np.isfinite(m)).any(axis=0)
        ref[seen] = np.nanmedian(np.where(usable, m, np.nan)[:, seen], axis=0)
        result = differential_photometry(m, e, usable, comps, ref_mag=ref)
        self.store.set_comparison_weights({o: float(result.weights[j]) for o, j in col.items()})
        # This frame's points and every point of the targets get the new solution.
        updates: list[SolvedPoint] = []
        for p in pts:
            i, j = row[int(p["exposure_id"])], col[int(p["object_id"])]
            if int(p["exposure_id"]) != exposure_id and j not in targets:
                continue
            mag = result.mag[i, j]
            no_ensemble = not math.isfinite(result.frame_offset[i])
            updates.append(
                SolvedPoint(int(p["object_id"]), int(p["exposure_id"]), _finite(mag),
                            _finite(result.mag_err[i, j]), FLAG_NO_ENSEMBLE if no_ensemble else 0)
            )  # fmt: skip
        self.store.set_differential_mags(updates, flag=FLAG_NO_ENSEMBLE)

    # --- statistics ----------------------------------------------------------------------

    def light_curve(self, target: str) -> list[dict[str, Any]]:
        """Return a target's points in time order (see `obsctl.timeseries.store`)."""
        return self.store.light_curve(target)

    def update_stats(self, target: str) -> NDArray[np.float32] | None:
        """Recompute a target's variability statistics and period from its good points.

        Returns
        -------
        numpy.ndarray of float32 or None
            The light curve's features for the classifier (`light_curve_features`, with the
            same period), None while it has too few points or classification is off.
        """
        pts = [p for p in self.light_curve(target) if p["flag"] == 0 and p["mag"] is not None]
        if not pts:
            return None
        t = np.array([p["bjd_tdb"] - 2400000.5 for p in pts])
        mag = np.array([p["mag"] for p in pts])
        err = np.array([p["mag_err"] for p in pts])
        stats = variability_stats(t, mag, err)
        best = None
        if stats.n_points >= self.config.periodogram_min_points:
            last_t, best = self._searched.get(target, (t[:0], None))
            # Searched again unless the points are the last search's plus under 5 % more.
            grown = t.size >= last_t.size * (1.0 + PERIOD_RESEARCH_GROWTH)
            if grown or last_t.size == 0 or not np.array_equal(t[: last_t.size], last_t):
                # The search the classifier was trained with: its features mean the same.
                best = search_light_curve_period(t, mag, err, min_period_d=self.config.min_period_d)
                self._searched[target] = (t, best)
        # A period the data do not settle (one eclipse, a close rival) is not reported.
        found = best if best is not None and period_is_determined(best) else None
        self.store.save_statistics(
            target,
            wmean_mag=_finite(stats.wmean_mag),
            wscatter_mag=_finite(stats.wscatter_mag),
            expected_mag=_finite(stats.expected_mag),
            chi2_red=_finite(stats.chi2_red),
            stetson_j=_finite(stats.stetson_j),
            period_d=found.period_d if found else None,
            period_power=found.power if found else None,
            amplitude_mag=found.amplitude_mag if found else None,
            period_method=found.method if found else None,
            period_fap=_finite(found.false_alarm) if found else None,
        )
        if not self.config.classify or stats.n_points < self.config.classify_min_points:
            return None
        return light_curve_features(t, mag, err, best)

    # --- classes -------------------------------------------------------------------------

    def _variable_classifier(self) -> VariableClassifier | None:
        """Return the shipped light-curve classifier, loaded once; None (logged) if it fails."""
        if self._classifier is None and not self._classifier_failed:
            try:
                self._classifier = VariableClassifier()
            except VariableModelError as exc:
                self._classifier_failed = True
                log.error("light curves are not classified: %s", exc)
        return self._classifier

    def _classify(
        self, features: dict[str, NDArray[np.float32]], field: str, exposure_id: int, mjd: float
    ) -> list[Alert]:
        """Classify the targets' light curves; store the classes and alert on a new one.

        A class reached at ``class_alert_probability`` or more that differs from the last
        one alerted (at first, `CONSTANT_CLASS`) is alerted once it held for
        ``class_alert_frames`` classifications in a row; a light curve beyond the
        anomaly model's threshold (unlike every class) is alerted once per target.
        """
        model = self._variable_classifier() if features else None
        if model is None:
            return []
        names = list(features)
        labels, probabilities, scores = model.classify(np.stack([features[n] for n in names]))
        out: list[Alert] = []
        for name, label, row, score in zip(names, labels, probabilities, scores, strict=True):
            label = str(label)
            probability = float(row.max())
            anomaly = float(score) - model.anomaly_threshold  # above 0: unusual
            self.store.save_class(
                name,
                var_class=label,
                probability=probability,
                probabilities=dict(zip(model.classes, row.tolist(), strict=True)),
                anomaly_score=anomaly,
                period_d=class_period(label, self._searched.get(name, (None, None))[1]),
            )
            obj = self.store.target_object_id(name)
            # A confident class must hold for `class_alert_frames` frames in a row: young
            # light curves flip between classes, each flip confident.
            confident = probability >= self.config.class_alert_probability
            held, count = self._class_streak.get(name, ("", 0))
            count = count + 1 if confident and label == held else int(confident)
            self._class_streak[name] = (label, count)
            # Before any alert a star counts as constant: that it stays so is no news.
            previous = self.store.alerted_class(name) or CONSTANT_CLASS
            if count >= self.config.class_alert_frames and label != previous:
                was = f" (was {previous})"
                out.append(
                    Alert("class", field, name, obj, exposure_id, mjd, None, None, probability,
                          f"{name} is a {label} variable ({probability:.0%}){was}",
                          f"class:{name}:{label}:{exposure_id}")
                )  # fmt: skip
                self.store.set_alerted_class(name, label)
            if anomaly > 0.0:
                out.append(
                    Alert("anomaly", field, name, obj, exposure_id, mjd, None, None, anomaly,
                          f"{name}'s light curve is unlike every class (anomaly score "
                          f"{anomaly:+.3f} over the threshold; most like {label})",
                          f"anomaly:{name}")
                )  # fmt: skip
        return out

    # --- alerts --------------------------------------------------------------------------

    def _target_alerts(
        self, target: _Target, exposure_id: int, filter_name: str | None, mjd: float
    ) -> list[Alert]:
        pts = [
            p
            for p in self.light_curve(target.name)
            if p["filter"] == filter_name and p["flag"] == 0 and p["mag"] is not None
        ]
        if not pts or pts[-1]["exposure_id"] != exposure_id:
            return []  # not measured (or flagged) in this frame
        mag = np.array([p["mag"] for p in pts])
        err = np.array([p["mag_err"] for p in pts])
        night = _night(mjd, self.site.longitude_deg)
        obj = int(pts[-1]["object_id"])
        out: list[Alert] = []
        base = baseline(mag[:-1], err[:-1])
        if base is None:
            return out
        cfg = self.config
        change = brightness_change(
            float(mag[-1]), float(err[-1]), base, threshold_mag=cfg.brighten_fade_mag,
            sigma=cfg.alert_sigma,
        )  # fmt: skip
        if change is not None:
            kind, delta, sig = change
            out.append(
                Alert(kind, target.field, target.name, obj, exposure_id, mjd, float(mag[-1]),
                      delta, sig,
                      f"{target.name} {'brightened' if kind == 'brighten' else 'faded'} by "
                      f"{abs(delta):.3f} mag to {mag[-1]:.3f} ({sig:.1f} sigma)",
                      f"{kind}:{obj}:{night}")
            )  # fmt: skip
        tonight = np.flatnonzero([_night(p["mjd"], self.site.longitude_deg) == night for p in pts])
        # A dip is measured against the same night's earlier points when there are enough
        # (nights differ by a few mmag of calibration), else against all earlier points.
        faint_tail = 0
        while faint_tail < tonight.size and mag[tonight[-1 - faint_tail]] > base.mag:
            faint_tail += 1
        local = tonight[: tonight.size - faint_tail]
        ref = baseline(mag[local], err[local]) if local.size >= 3 else None
        dip = transit_dip(
            mag[tonight], err[tonight], ref if ref is not None else base,
            min_points=cfg.dip_min_points, depth_mag=cfg.dip_depth_mag, sigma=cfg.dip_sigma,
        )  # fmt: skip
        if dip is not None and change is None:
            depth, sig = dip
            out.append(
                Alert("dip", target.field, target.name, obj, exposure_id, mjd, float(mag[-1]),
                      depth, sig,
                      f"{target.name}: transit-like dip of {1000 * depth:.1f} mmag "
                      f"({sig:.1f} sigma)", f"dip:{obj}:{night}")
            )  # fmt: skip
        return out

    def _new_sources(
        self,
        field: str,
        targets: list[_Target],
        exposure_id: int,
        mjd: float,
        first_seen: set[int],
        meas: list[dict[str, Any]],
        object_ids: list[int],
        snr: NDArray[np.float64],
    ) -> list[Alert]:
        out: list[Alert] = []
        limit = self.store.limiting_mag(exposure_id)
        for k, m in enumerate(meas):
            obj = object_ids[k]
            if obj not in first_seen or snr[k] < self.config.new_source_snr:
                continue
            # A new source may well sit beside a star (crowded), but not be saturated, cut by
            # the edge, sharper than a star (a cosmic ray) or split off a blend (a known star
            # that good seeing separated from its neighbour).
            if m["flags"] & _NEW_SOURCE_REJECT_FLAGS:
                continue
            # Near the frame's 50 % completeness limit a known faint star caught by its noise
            # is as likely as anything new; the margin asks for near-complete detection.
            if limit is None or m["mag"] is None:
                continue
            if m["mag"] > limit - self.config.new_source_margin_mag:
                continue
            for t in targets:
                sep = float(separation_arcsec(t.ra_deg, t.dec_deg, m["ra_deg"], m["dec_deg"]))
                if sep <= self.config.new_source_radius_arcsec:
                    out.append(
                        Alert("new_source", field, t.name, obj, exposure_id, mjd, m["mag"], None,
                              float(snr[k]),
                              f"new source {sep:.1f} arcsec from {t.name}, mag "
                              f"{m['mag'] if m['mag'] is not None else float('nan'):.2f} "
                              f"(S/N {snr[k]:.0f})", f"new_source:{obj}")
                    )  # fmt: skip
                    break
        return out

    def _store_alert(self, alert: Alert) -> bool:
        """Store an alert unless its key is known; True when it is new."""
        if not self.store.add_alert(alert):
            return False
        log.warning("alert: %s", alert.message)
        return True


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def class_period(label: str, result: PeriodSearchResult | None) -> float | None:
    """Return the period a class implies when it differs from the period search's (day).

    A contact binary (``ew``) has two minima a cycle, nearly alike; when they are alike
    within the errors the search reports half the period, whose model has one minimum (see
    `obsctl.timeseries.periods`), and the binary's period is twice that, as catalogues
    (GCVS, ASAS-SN, ZTF) report it. None when the search's period stands, is not determined
    (`obsctl.timeseries.periods.period_is_determined`), or doubled would be longer than a
    contact binary's (`CONTACT_MAX_PERIOD_D`: then the one minimum is the star's own).
    """
    if label != "ew" or result is None or not period_is_determined(result):
        return None
    doubled = 2.0 * result.period_d
    if minima_per_cycle(result) == 1 and doubled <= CONTACT_MAX_PERIOD_D:
        return doubled
    return None
