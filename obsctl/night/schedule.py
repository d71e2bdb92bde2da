"""What is observable when, and which target to observe next: logic, no I/O but one file.

`NightSchedule` evaluates a plan's constraints on the night's ephemeris grid once (one boolean
mask per constraint and target), so each decision is a few array lookups. Besides each
target's own constraints, the site's limits hold for every target: its local horizon (the
``[site] horizon`` file, read once through `obsctl.night.horizon.site_horizon`, the only file
this module touches) and the mount's ``min_alt_deg`` and ``max_alt_deg``. A target may start
a visit only if every constraint holds from the start to the estimated end of the visit
(exposures plus per-frame overhead and a slew). Among the targets that may start and whose
repetition rules allow a visit, the highest merit wins:

``merit = priority + 0.5 * overdue + 0.3 * altitude / 90 + 0.2 * urgency``

where ``overdue`` (0 to 1) grows with the time past a monitoring target's cadence, and
``urgency`` (0 to 1) grows as the target's remaining observable time shrinks (below 8 h).
The extra terms add up to less than one, so priority always decides first and they only
break ties between equal priorities.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from obsctl.night.ephemeris import NightEphemeris, TargetTrack
from obsctl.night.horizon import Horizon, site_horizon
from obsctl.night.plan import FlatBlock, MoonAvoidance, Plan, PlanTarget

__all__ = [
    "Candidate",
    "NightSchedule",
    "PlannedVisit",
    "TargetHistory",
    "Timeline",
    "repeat_allows",
]

_URGENCY_HORIZON_S = 8 * 3600.0


@dataclass(frozen=True, slots=True)
class TargetHistory:
    """A target's visits so far (from the database), as the rules need them.

    Attributes
    ----------
    total : int
        Completed visits over all nights.
    tonight : int
        Completed visits this night.
    failed_tonight : int
        Failed visits this night (re-queued while within the plan's ``requeue_failed``).
    last_end : datetime or None
        End of the last completed visit, any night (monitoring cadence carries over).
    """

    total: int = 0
    tonight: int = 0
    failed_tonight: int = 0
    last_end: datetime | None = None


def repeat_allows(
    target: PlanTarget,
    history: TargetHistory,
    night: date,
    when: datetime,
    *,
    requeue_failed: int = 1,
) -> tuple[bool, str]:
    """Return whether the repetition rules allow a visit at ``when``, and why not.

    Without ``[repeat]`` a target is observed once. With ``every_min`` it is visited at
    most every ``every_min`` minutes (counted from the end of the last visit, across
    nights); ``per_night`` caps visits per night (1 unless ``every_min`` is given),
    ``total`` caps all visits, and ``until`` ends the visits after that night.
    """
    if history.failed_tonight > requeue_failed:
        return False, f"failed {history.failed_tonight} times tonight"
    rep = target.repeat
    if rep is None:
        return (history.total < 1, "observed already")
    if rep.until is not None and night > rep.until:
        return False, f"repeat ended on {rep.until}"
    if rep.total is not None and history.total >= rep.total:
        return False, f"all {rep.total} visits done"
    per_night = rep.per_night if rep.per_night is not None else (None if rep.every_min else 1)
    if per_night is not None and history.tonight >= per_night:
        return False, f"{per_night} visit(s) done tonight"
    if rep.every_min is not None and history.last_end is not None:
        due = history.last_end + timedelta(minutes=rep.every_min)
        if when < due:
            return False, f"next visit due at {due:%H:%M} UTC"
    return True, ""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A target that may start a visit now, with its merit."""

    target: PlanTarget
    merit: float
    alt_deg: float
    airmass: float
    end: datetime


@dataclass(frozen=True, slots=True)
class PlannedVisit:
    """One visit of a predicted timeline."""

    target: str
    start: datetime
    end: datetime
    alt_deg: float
    airmass: float


@dataclass
class Timeline:
    """A predicted night: events, visits, and why targets were left out."""

    events: list[tuple[str, datetime | None]]
    visits: list[PlannedVisit]
    unobserved: dict[str, str] = field(default_factory=dict)


class NightSchedule:
    """A plan's constraints evaluated on one night's ephemeris.

    Parameters
    ----------
    plan : Plan
        Targets, constraints and night limits.
    ephemeris : NightEphemeris
        Sun, moon and grid of the night; its site gives the horizon and mount limits.

    Raises
    ------
    ConfigError
        When the site's horizon file cannot be read or is invalid.
    """

    def __init__(self, plan: Plan, ephemeris: NightEphemeris) -> None:
        self.plan = plan
        self.eph = ephemeris
        #: The site's local horizon, None when it has none.
        self.horizon: Horizon | None = site_horizon(ephemeris.site)
        limits = plan.night
        start = ephemeris.crossing(limits.start_sun_alt_deg).dusk
        end = ephemeris.crossing(limits.end_sun_alt_deg).dawn
        #: Start and end of the observing night; None when the sun never gets low enough.
        self.night_start = start
        self.night_end = end
        t = ephemeris.t_s
        in_night = np.zeros(t.size, dtype=bool)
        if start is not None and end is not None:
            in_night = (t >= ephemeris.seconds(start)) & (t <= ephemeris.seconds(end))
        self._in_night = in_night
        self.tracks: dict[str, TargetTrack] = {}
        self.masks: dict[str, dict[str, NDArray[np.bool_]]] = {}
        coords = [t.coordinates for t in plan.targets]
        tracks = ephemeris.tracks([c[0] for c in coords], [c[1] for c in coords])
        for target, track in zip(plan.targets, tracks, strict=True):
            self.tracks[target.name] = track
            self.masks[target.name] = self._constraint_masks(target, track)

    # -- constraints ----------------------------------------------------------------------

    def _constraint_masks(
        self, target: PlanTarget, track: TargetTrack
    ) -> dict[str, NDArray[np.bool_]]:
        c = target.constraints
        eph = self.eph
        masks: dict[str, NDArray[np.bool_]] = {
            "night": self._in_night,
            "above horizon": track.alt_deg > 0,
        }
        site = eph.site
        if self.horizon is not None:
            name = Path(self.horizon.source).name
            masks[f"above the local horizon ({name})"] = self.horizon.above(
                track.alt_deg, track.az_deg
            )
        if site.min_alt_deg is not None:
            masks[f"altitude >= {site.min_alt_deg:g} deg (site limit)"] = (
                track.alt_deg >= site.min_alt_deg
            )
        if site.max_alt_deg is not None:
            masks[f"altitude <= {site.max_alt_deg:g} deg (site limit)"] = (
                track.alt_deg <= site.max_alt_deg
            )
        if c.min_alt_deg is not None:
            masks[f"altitude >= {c.min_alt_deg:g} deg"] = track.alt_deg >= c.min_alt_deg
        if c.max_airmass is not None:
            masks[f"airmass <= {c.max_airmass:g}"] = track.airmass <= c.max_airmass
        if c.max_sun_alt_deg is not None:
            masks[f"sun below {c.max_sun_alt_deg:g} deg"] = eph.sun_alt_deg <= c.max_sun_alt_deg
        if c.min_moon_sep_deg is not None:
            # The moon below the horizon does not light the sky.
            masks[f"moon separation >= {c.min_moon_sep_deg:g} deg"] = (
                track.moon_sep_deg >= c.min_moon_sep_deg
            ) | (eph.moon_alt_deg <= 0)
        if c.moon_avoidance is not None:
            masks[self._avoidance_name(c.moon_avoidance)] = (
                track.moon_sep_deg >= c.moon_avoidance.separation_deg(eph.moon_age_days)
            ) | (eph.moon_alt_deg <= 0)
        if c.max_moon_illumination is not None:
            masks[f"moon illumination <= {c.max_moon_illumination:g} (or moon down)"] = (
                eph.moon_illumination <= c.max_moon_illumination
            ) | (eph.moon_alt_deg <= 0)
        if c.min_hour_angle_h is not None:
            masks[f"hour angle >= {c.min_hour_angle_h:g} h"] = (
                track.hour_angle_h >= c.min_hour_angle_h
            )
        if c.max_hour_angle_h is not None:
            masks[f"hour angle <= {c.max_hour_angle_h:g} h"] = (
                track.hour_angle_h <= c.max_hour_angle_h
            )
        if c.windows:
            t = eph.t_s
            inside = np.zeros(t.size, dtype=bool)
            for start, end in c.windows:
                inside |= (t >= eph.seconds(start)) & (t <= eph.seconds(end))
            masks["time window"] = inside
        return masks

    def _avoidance_name(self, rule: MoonAvoidance) -> str:
        """Name the moon-avoidance mask with tonight's numbers (at the middle of the night)."""
        eph = self.eph
        inside = np.flatnonzero(self._in_night)
        i = int(inside[inside.size // 2]) if inside.size else eph.t_s.size // 2
        age = float(eph.moon_age_days[i])
        need = float(rule.separation_deg(age))
        return (
            f"moon separation >= {need:.0f} deg (or moon down; Lorentzian "
            f"{rule.distance_deg:g} deg at full moon, width {rule.width_days:g} d, "
            f"moon {age:.1f} d old)"
        )

    def observable(self, target: PlanTarget) -> NDArray[np.bool_]:
        """Return the grid points where every constraint of ``target`` holds."""
        masks = list(self.masks[target.name].values())
        out: NDArray[np.bool_] = np.logical_and.reduce(masks)
        return out

    def visit_duration_s(self, target: PlanTarget) -> float:
        """Return the estimated duration of one visit in seconds (exposures, overheads, slew)."""
        limits = self.plan.night
        return target.visit_exposure_s + target.visit_frames * limits.overhead_s + limits.slew_s

    def _span(self, start: datetime, duration_s: float) -> NDArray[np.intp]:
        """Return the grid indices inside ``[start, start + duration]`` (the nearest one if none).

        Constraints are sampled on the grid, so a visit may begin or end up to one grid
        step (2 min by default) beyond a limit, never more.
        """
        eph = self.eph
        t0 = eph.seconds(start)
        step = float(eph.t_s[1] - eph.t_s[0])
        lo = int(np.ceil(t0 / step - 1e-9))
        hi = int(np.floor((t0 + duration_s) / step + 1e-9))
        if hi < lo:
            lo = hi = round(t0 / step)
        if lo < 0 or hi >= eph.t_s.size:
            return np.array([-1], dtype=np.intp)
        return np.arange(lo, hi + 1, dtype=np.intp)

    def blocking(self, target: PlanTarget, start: datetime) -> list[str]:
        """Return the constraints failing during a visit starting at ``start`` (none: go)."""
        span = self._span(start, self.visit_duration_s(target))
        if span[0] < 0:
            return ["outside this night"]
        return [name for name, mask in self.masks[target.name].items() if not mask[span].all()]

    def never_reason(self, target: PlanTarget) -> str | None:
        """Return why ``target`` cannot be observed at all tonight, or None when it can."""
        masks = self.masks[target.name]
        if not self._in_night.any():
            return "the sun never gets low enough for the night's limits"
        failing = [name for name, m in masks.items() if not (m & self._in_night).any()]
        if failing:
            return "never " + ", never ".join(failing) + " during the night"
        if not self.observable(target).any():
            return "its constraints never hold at the same time"
        duration = self.visit_duration_s(target)
        step = float(self.eph.t_s[1] - self.eph.t_s[0])
        longest = _longest_run(self.observable(target)) * step
        if longest < duration:
            return (
                f"observable for at most {longest / 60:.0f} min at a time, a visit needs "
                f"{duration / 60:.0f} min"
            )
        return None

    # -- selection ------------------------------------------------------------------------

    def remaining_s(self, target: PlanTarget, when: datetime) -> float:
        """Return the seconds from ``when`` until the target's observability next ends."""
        obs = self.observable(target)
        i = self.eph.index(when)
        if i >= obs.size or not obs[i]:
            return 0.0
        off = np.flatnonzero(~obs[i:])
        end_i = i + int(off[0]) if off.size else obs.size - 1
        return max(0.0, float(self.eph.t_s[end_i]) - self.eph.seconds(when))

    def candidates(
        self, when: datetime, history: Mapping[str, TargetHistory]
    ) -> tuple[list[Candidate], dict[str, str]]:
        """Return the targets that may start a visit at ``when``, best first, and why not."""
        out: list[Candidate] = []
        why: dict[str, str] = {}
        for target in self.plan.targets:
            hist = history.get(target.name, TargetHistory())
            ok, reason = repeat_allows(
                target,
                hist,
                self.eph.night,
                when,
                requeue_failed=self.plan.requeue_failed,
            )
            if not ok:
                why[target.name] = reason
                continue
            failing = self.blocking(target, when)
            if failing:
                why[target.name] = "not " + ", not ".join(failing)
                continue
            track = self.tracks[target.name]
            alt = float(np.interp(self.eph.seconds(when), self.eph.t_s, track.alt_deg))
            overdue = 0.0
            rep = target.repeat
            if rep is not None and rep.every_min is not None and hist.last_end is not None:
                cadence_s = rep.every_min * 60.0
                late = (when - hist.last_end).total_seconds() - cadence_s
                overdue = min(max(late / cadence_s, 0.0), 1.0)
            urgency = 1.0 - min(self.remaining_s(target, when) / _URGENCY_HORIZON_S, 1.0)
            merit = target.priority + 0.5 * overdue + 0.3 * max(alt, 0.0) / 90.0 + 0.2 * urgency
            end = when + timedelta(seconds=self.visit_duration_s(target))
            airmass = float(1.0 / np.sin(np.radians(max(alt, 1e-3))))
            out.append(Candidate(target, merit, alt, airmass, end))
        out.sort(key=lambda c: c.merit, reverse=True)
        return out, why

    def choose(self, when: datetime, history: Mapping[str, TargetHistory]) -> Candidate | None:
        """Return the highest-merit target that may start a visit at ``when``, or None."""
        best, _ = self.candidates(when, history)
        return best[0] if best else None

    # -- flats ------------------------------------------------------------------------------

    def flat_window(self, block: FlatBlock, when: str) -> tuple[datetime, datetime] | None:
        """Return when the sun is between the block's altitudes at ``"dusk"`` or ``"dawn"``."""
        hi = self.eph.crossing(block.sun_alt_max_deg)
        lo = self.eph.crossing(block.sun_alt_min_deg)
        if when == "dusk":
            return (hi.dusk, lo.dusk) if hi.dusk and lo.dusk else None
        return (lo.dawn, hi.dawn) if lo.dawn and hi.dawn else None

    # -- prediction -----------------------------------------------------------------------

    def timeline(
        self, history: Mapping[str, TargetHistory] | None = None, *, idle_step_s: float = 120.0
    ) -> Timeline:
        """Predict the night with the same rules the night runner applies.

        Parameters
        ----------
        history : mapping or None
            Visits before the night (for repetition rules); None means none.
        idle_step_s : float
            How far to advance when nothing can start.
        """
        twilights = self.eph.twilights()
        events: list[tuple[str, datetime | None]] = [("sunset", twilights.sunset.dusk)]
        flats = self.plan.calibration.flats
        if flats is not None and "dusk" in flats.when:
            window = self.flat_window(flats, "dusk")
            events.append(("dusk flats start", window[0] if window else None))
            events.append(("dusk flats end", window[1] if window else None))
        events += [
            ("civil dusk (-6)", twilights.civil.dusk),
            ("nautical dusk (-12)", twilights.nautical.dusk),
            ("astronomical dusk (-18)", twilights.astronomical.dusk),
            ("night start", self.night_start),
            ("night end", self.night_end),
            ("astronomical dawn (-18)", twilights.astronomical.dawn),
            ("nautical dawn (-12)", twilights.nautical.dawn),
            ("civil dawn (-6)", twilights.civil.dawn),
        ]
        if flats is not None and "dawn" in flats.when:
            window = self.flat_window(flats, "dawn")
            events.append(("dawn flats start", window[0] if window else None))
            events.append(("dawn flats end", window[1] if window else None))
        events.append(("sunrise", twilights.sunset.dawn))
        events.sort(key=lambda e: (e[1] is None, e[1] or self.eph.start))
        hist = dict(history or {})
        visits: list[PlannedVisit] = []
        last_why: dict[str, str] = {}
        if self.night_start is not None and self.night_end is not None:
            now = self.night_start
            while now < self.night_end:
                cands, why = self.candidates(now, hist)
                last_why.update(why)
                if not cands:
                    now += timedelta(seconds=idle_step_s)
                    continue
                best = cands[0]
                visits.append(
                    PlannedVisit(best.target.name, now, best.end, best.alt_deg, best.airmass)
                )
                h = hist.get(best.target.name, TargetHistory())
                hist[best.target.name] = TargetHistory(
                    h.total + 1, h.tonight + 1, h.failed_tonight, best.end
                )
                now = best.end
        observed = {v.target for v in visits}
        unobserved: dict[str, str] = {}
        for target in self.plan.targets:
            if target.name in observed:
                continue
            unobserved[target.name] = (
                self.never_reason(target) or last_why.get(target.name) or "lower merit"
            )
        return Timeline(events, visits, unobserved)


def _longest_run(mask: NDArray[np.bool_]) -> int:
    """Length of the longest run of True values (grid steps between its ends)."""
    best = run = 0
    for value in mask.tolist():
        run = run + 1 if value else 0
        best = max(best, run)
    return max(best - 1, 0)
