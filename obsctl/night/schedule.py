"""What is observable when, and which target to observe next: logic, no I/O but one file.

`NightSchedule` evaluates a plan's constraints on the night's ephemeris grid once (one boolean
mask per constraint and target), so each decision is a few array lookups. Besides each
target's own constraints, the site's limits hold for every target: its local horizon (the
``[site] horizon`` file, read once through `obsctl.night.horizon.site_horizon`, the only file
this module touches) and the mount's ``min_alt_deg`` and ``max_alt_deg``. A target may start
a visit only if every constraint holds from the start to the estimated end of the visit
(exposures plus per-frame overhead and a slew). Among the targets that may start and whose
repetition rules and goals allow a visit, the highest merit leads:

``merit = priority + 0.5 * overdue + 0.3 * altitude / 90 + 0.2 * urgency``

where ``overdue`` (0 to 1) grows with the time past a monitoring target's due time, and
``urgency`` (0 to 1) grows as the target's remaining observable time shrinks (below 8 h).
The extra terms add up to less than one, so priority always decides first and they only
break ties between equal priorities.

Dispatch looks ahead (``[night] dispatch = "lookahead"``, the default): a visit is chosen
if it ends before any target of higher priority must start (a monitor by its due time plus
``tolerance_min``; a target rising into its constraints) within ``lookahead_min``, so a
short visit fills the gap before it. A longer visit may start when the one it runs into is
a monitor: the monitor pre-empts it between two frames, early enough to start within its
tolerance, and the rest of the visit resumes later. ``greedy`` takes the best candidate
now, whatever comes next, and never pre-empts (for comparison).

Goals (``[targets.goal]``) count accepted frames per filter over all nights; a visit takes
only the frames still missing, and a target whose goal is met is not visited again.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from obsctl.acquisition.sequence import ExposureStep
from obsctl.night.ephemeris import NightEphemeris, TargetTrack
from obsctl.night.horizon import Horizon, site_horizon
from obsctl.night.plan import FlatBlock, MoonAvoidance, Plan, PlanTarget

__all__ = [
    "Candidate",
    "Gap",
    "NightSchedule",
    "PlannedVisit",
    "TargetHistory",
    "Timeline",
    "advance_due",
    "cadence_intervals_min",
    "describe_cadence",
    "goal_missing",
    "repeat_allows",
    "visit_steps",
]

#: One frame of a visit: (filter, exposure in s).
Frame = tuple[str | None, float]

#: Hours of hour angle per second of time (a sidereal day is 86164.09 s).
_SIDEREAL_H_PER_S = 24.0 / 86164.0905
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
    last_start : datetime or None
        Start of the last completed visit, any night (monitoring cadence carries over and
        counts start to start).
    counted : mapping of str to int
        Frames per filter that count towards the target's goal: accepted by the pipeline,
        or still waiting for it.
    resume : tuple of (filter, exposure_s) or None
        The frames an interrupted visit still has to take (it resumes with them), None
        when no visit is interrupted.
    due : datetime or None
        When a monitor's next visit is due (`advance_due`); None: ``every_min`` after
        ``last_start``.
    """

    total: int = 0
    tonight: int = 0
    failed_tonight: int = 0
    last_start: datetime | None = None
    counted: Mapping[str, int] = field(default_factory=dict)
    resume: tuple[Frame, ...] | None = None
    due: datetime | None = None


def goal_missing(target: PlanTarget, history: TargetHistory) -> dict[str, int]:
    """Return the accepted frames still missing per filter (empty: no goal, or it is met)."""
    out = {}
    for name, goal in target.goal_frames().items():
        left = goal - history.counted.get(name, 0)
        if left > 0:
            out[name] = left
    return out


def visit_steps(target: PlanTarget, history: TargetHistory) -> tuple[ExposureStep, ...]:
    """Return the steps of a new visit: the target's, cut to the frames its goal misses.

    Without a goal every step is taken whole. With one, each step takes at most the frames
    its filter still misses (in order, so two steps of one filter share them); steps of a
    filter whose goal is met are left out. Empty when the goal is met.
    """
    if target.goal is None:
        return target.steps
    missing = goal_missing(target, history)
    out = []
    for step in target.steps:
        n = min(step.count, missing.get(str(step.filter), 0))
        if n > 0:
            missing[str(step.filter)] -= n
            out.append(step.model_copy(update={"count": n}))
    return tuple(out)


def _frames(steps: tuple[ExposureStep, ...]) -> tuple[Frame, ...]:
    return tuple((s.filter, s.exposure_s) for s in steps for _ in range(s.count))


def due_time(target: PlanTarget, history: TargetHistory) -> datetime | None:
    """Return when a monitor's next visit is due (start to start), None when it is due now."""
    rep = target.repeat
    if rep is None or rep.every_min is None or history.last_start is None:
        return None
    if history.due is not None:
        return history.due
    return history.last_start + timedelta(minutes=rep.every_min)


def advance_due(target: PlanTarget, due: datetime | None, start: datetime) -> datetime | None:
    """Return when the visit after one started at ``start`` is due (was due at ``due``).

    Within the tolerance of its due time the series keeps its phase (``due + every_min``);
    otherwise it starts again from ``start``. None for a target without a cadence.
    """
    rep = target.repeat
    if rep is None or rep.every_min is None:
        return None
    every = timedelta(minutes=rep.every_min)
    if due is not None and abs((start - due).total_seconds()) <= rep.tolerance_s:
        return due + every
    return start + every


def repeat_allows(
    target: PlanTarget,
    history: TargetHistory,
    night: date,
    when: datetime,
    *,
    requeue_failed: int = 1,
) -> tuple[bool, str]:
    """Return whether the repetition rules and the goal allow a visit at ``when``, and why not.

    An interrupted visit may always resume (within ``requeue_failed``). Without ``[repeat]``
    a target is observed once, or, with a goal, until the goal is met. With ``every_min``
    it is visited every ``every_min`` minutes start to start (across nights, from when it
    is due, `advance_due`); ``per_night`` caps visits per night (1 unless ``every_min`` is
    given), ``total`` caps all visits, and ``until`` ends the visits after that night. A
    target whose goal is met is not visited again.
    """
    if history.failed_tonight > requeue_failed:
        return False, f"failed {history.failed_tonight} times tonight"
    if history.resume is not None:
        return True, ""
    if target.goal is not None and not goal_missing(target, history):
        done = ", ".join(f"{f} {n}/{n}" for f, n in target.goal_frames().items())
        return False, f"goal met ({done})"
    rep = target.repeat
    if rep is None:
        if target.goal is not None:
            return True, ""
        return (history.total < 1, "observed already")
    if rep.until is not None and night > rep.until:
        return False, f"repeat ended on {rep.until}"
    if rep.total is not None and history.total >= rep.total:
        return False, f"all {rep.total} visits done"
    per_night = rep.per_night if rep.per_night is not None else (None if rep.every_min else 1)
    if per_night is not None and history.tonight >= per_night:
        return False, f"{per_night} visit(s) done tonight"
    due = due_time(target, history)
    if due is not None and when < due:
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
    """One visit of a predicted timeline (or the part of one before it was pre-empted)."""

    target: str
    start: datetime
    end: datetime
    alt_deg: float
    airmass: float
    exposure_s: float = 0.0
    frames: int = 0
    preempted_by: str | None = None
    #: The rest of a visit pre-empted earlier (not a visit of its own).
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class Gap:
    """Idle time of a predicted night, and why nothing could start when it began."""

    start: datetime
    end: datetime
    why: str


@dataclass
class Timeline:
    """A predicted night: events, visits, idle gaps, and why targets were left out."""

    events: list[tuple[str, datetime | None]]
    visits: list[PlannedVisit]
    unobserved: dict[str, str] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    #: The targets' histories at the end of the night (for the next night's prediction).
    history: dict[str, TargetHistory] = field(default_factory=dict)


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
        #: Per target, the grid points where every constraint holds.
        self._observable: dict[str, NDArray[np.bool_]] = {}
        for target, track in zip(plan.targets, tracks, strict=True):
            self.tracks[target.name] = track
            self.masks[target.name] = self._constraint_masks(target, track)
            self._observable[target.name] = np.logical_and.reduce(
                list(self.masks[target.name].values())
            )

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
        return self._observable[target.name]

    def visit_frames(
        self, target: PlanTarget, history: TargetHistory | None = None
    ) -> tuple[Frame, ...]:
        """Return the frames of the target's next visit: an interrupted one's rest, or new."""
        hist = history or TargetHistory()
        if hist.resume is not None:
            return hist.resume
        return _frames(visit_steps(target, hist))

    def frames_duration_s(self, frames: tuple[Frame, ...]) -> float:
        """Return the estimated duration (s) of a visit taking ``frames`` (with overheads, slew)."""
        limits = self.plan.night
        return sum(e for _, e in frames) + len(frames) * limits.overhead_s + limits.slew_s

    def visit_duration_s(self, target: PlanTarget, history: TargetHistory | None = None) -> float:
        """Return the estimated duration (s) of the next visit (exposures, overheads, slew).

        Without a history, of a whole visit of the target's steps.
        """
        if history is None:
            return self.frames_duration_s(_frames(target.steps))
        return self.frames_duration_s(self.visit_frames(target, history))

    def hour_angle_h(self, target: PlanTarget, when: datetime) -> float:
        """Return the target's hour angle (h, west positive, in [-12, 12)) at ``when``."""
        eph = self.eph
        t = eph.seconds(when)
        i = min(max(int(np.searchsorted(eph.t_s, t)) - 1, 0), eph.t_s.size - 1)
        # From the grid point before, at the sidereal rate: no interpolation across +-12 h.
        ha = float(self.tracks[target.name].hour_angle_h[i])
        ha += (t - float(eph.t_s[i])) * _SIDEREAL_H_PER_S
        return (ha + 12.0) % 24.0 - 12.0

    def flip_s(self, target: PlanTarget, start: datetime, duration_s: float) -> float:
        """Return the meridian flip's cost (s) in a visit: ``meridian_flip_s`` if it crosses.

        The visit crosses when the target is east of the meridian at ``start`` and west of it
        by the end (the flip itself is made a few minutes past the meridian).
        """
        cost = self.plan.night.meridian_flip_s
        if cost == 0:
            return 0.0
        ha = self.hour_angle_h(target, start)
        return cost if ha < 0.0 <= ha + duration_s * _SIDEREAL_H_PER_S else 0.0

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

    def blocking(
        self, target: PlanTarget, start: datetime, duration_s: float | None = None
    ) -> list[str]:
        """Return the constraints failing during a visit starting at ``start`` (none: go)."""
        if duration_s is None:
            duration_s = self.visit_duration_s(target)
        span = self._span(start, duration_s)
        if span[0] < 0:
            return ["outside this night"]
        if self._observable[target.name][span].all():
            return []
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
            duration_s = self.visit_duration_s(target, hist)
            duration_s += self.flip_s(target, when, duration_s)
            failing = self.blocking(target, when, duration_s)
            if failing:
                why[target.name] = "not " + ", not ".join(failing)
                continue
            track = self.tracks[target.name]
            alt = float(np.interp(self.eph.seconds(when), self.eph.t_s, track.alt_deg))
            overdue = 0.0
            due = due_time(target, hist)
            rep = target.repeat
            if due is not None and rep is not None and rep.every_min is not None:
                cadence_s = rep.every_min * 60.0
                late = (when - due).total_seconds()
                overdue = min(max(late / cadence_s, 0.0), 1.0)
            urgency = 1.0 - min(self.remaining_s(target, when) / _URGENCY_HORIZON_S, 1.0)
            merit = target.priority + 0.5 * overdue + 0.3 * max(alt, 0.0) / 90.0 + 0.2 * urgency
            end = when + timedelta(seconds=duration_s)
            airmass = float(1.0 / np.sin(np.radians(max(alt, 1e-3))))
            out.append(Candidate(target, merit, alt, airmass, end))
        out.sort(key=lambda c: c.merit, reverse=True)
        return out, why

    def earliest_start(
        self,
        target: PlanTarget,
        history: TargetHistory,
        after: datetime,
        until: datetime,
    ) -> datetime | None:
        """Return the first time in ``[after, until]`` a visit of ``target`` may start.

        The repetition rules must allow it (a monitor once it is due) and every constraint
        must hold for the whole visit; the search is on the ephemeris grid. None when it
        cannot start.
        """
        if not repeat_allows(target, history, self.eph.night, until)[0]:
            return None  # the rules forbid it until then (cadence rules only open with time)
        start = after
        due = due_time(target, history)
        if due is not None and history.resume is None:
            start = max(start, due)
        if start > until:
            return None
        eph = self.eph
        step = float(eph.t_s[1] - eph.t_s[0])
        need = int(np.ceil(self.visit_duration_s(target, history) / step))
        lo = int(np.ceil(eph.seconds(start) / step - 1e-9))
        hi = int(np.floor(eph.seconds(until) / step))
        obs = self._observable[target.name]
        if lo >= obs.size or hi < lo:
            return None
        # fits[i]: the constraints hold on every grid point from i to i + need.
        bad = np.concatenate(([0], np.cumsum(~obs)))
        first = np.arange(lo, min(hi, obs.size - 1 - need) + 1)
        fits = first[bad[first + need + 1] - bad[first] == 0]
        if fits.size == 0:
            return None
        i = int(fits[0])
        return start if i == lo else eph.start + timedelta(seconds=float(eph.t_s[i]))

    def _deadlines(
        self, when: datetime, history: Mapping[str, TargetHistory], skip: set[str]
    ) -> list[tuple[datetime, PlanTarget]]:
        """Return by when each target not among ``skip`` must start, looking ahead.

        That is when it can first start within ``lookahead_min``, or for a monitor as late
        as its tolerance allows; targets that cannot start by then are left out.
        """
        until = when + timedelta(minutes=self.plan.night.lookahead_min)
        out = []
        for target in self.plan.targets:
            if target.name in skip:
                continue
            hist = history.get(target.name, TargetHistory())
            at = self.earliest_start(target, hist, when, until)
            if at is not None:
                out.append((max(at, self._latest_start(target, hist) or at), target))
        return out

    @staticmethod
    def _latest_start(target: PlanTarget, history: TargetHistory) -> datetime | None:
        """Return the latest start within a monitor's tolerance; None without a due time."""
        due = due_time(target, history)
        if due is None or target.repeat is None or history.resume is not None:
            return None
        return due + timedelta(seconds=target.repeat.tolerance_s)

    def choose(self, when: datetime, history: Mapping[str, TargetHistory]) -> Candidate | None:
        """Return the visit to start at ``when``, or None when nothing should start now.

        Greedy dispatch takes the best candidate. Look-ahead takes, best first, a candidate
        whose visit ends before any target of higher priority must start within
        ``lookahead_min``, or one that a monitor will pre-empt and that gets at least one
        frame done before then. A candidate that would delay a higher-priority target that
        cannot pre-empt it (one rising into its constraints) is passed over, so a short
        visit fills the gap. None when no candidate qualifies: wait (`next_start`).
        """
        cands, _ = self.candidates(when, history)
        if not cands or self.plan.night.dispatch == "greedy":
            return cands[0] if cands else None
        deadlines = self._deadlines(when, history, {c.target.name for c in cands})
        limits = self.plan.night
        for cand in cands:
            higher = [d for d in deadlines if d[1].priority > cand.target.priority]
            if not higher:
                return cand
            deadline, first = min(higher, key=lambda d: d[0])
            if cand.end <= deadline:
                return cand
            if first.repeat is None or first.repeat.every_min is None:
                continue  # it would wait for this visit: leave the gap to a shorter one
            frames = self.visit_frames(cand.target, history.get(cand.target.name))
            first_s = limits.slew_s + (frames[0][1] if frames else 0.0) + limits.overhead_s
            if when + timedelta(seconds=first_s) <= deadline:
                return cand  # the monitor pre-empts it; its first frames are done by then
        return None

    def next_start(
        self, when: datetime, history: Mapping[str, TargetHistory], until: datetime
    ) -> tuple[datetime, str] | None:
        """Return when to look again while waiting: the first time a target may start.

        Of the targets not candidates at ``when``, the first start after ``when`` up to
        ``until``, and the target's name; None when none may start by then.
        """
        names = {c.target.name for c in self.candidates(when, history)[0]}
        best: tuple[datetime, str] | None = None
        for target in self.plan.targets:
            if target.name in names:
                continue
            hist = history.get(target.name, TargetHistory())
            at = self.earliest_start(target, hist, when, until)
            if at is not None and at > when and (best is None or at < best[0]):
                best = (at, target.name)
        return best

    def preemption(
        self,
        current: PlanTarget,
        frames: tuple[Frame, ...],
        after: datetime,
        until: datetime,
        history: Mapping[str, TargetHistory],
    ) -> tuple[datetime, str] | None:
        """Return when to stop a visit of ``current`` between frames, and for which monitor.

        A monitor of higher priority must start by its due time plus ``tolerance_min``; a
        visit that would run past that (it ends at ``until``) takes no frame that would
        end after it. The visit is therefore stopped at the end of the frame running one
        frame length (the longest of ``frames``, with its overhead) before then. None with
        greedy dispatch, or when nothing pre-empts the visit.
        """
        if self.plan.night.dispatch == "greedy":
            return None
        longest = max((e for _, e in frames), default=0.0) + self.plan.night.overhead_s
        best: tuple[datetime, str] | None = None
        for target in self.plan.targets:
            rep = target.repeat
            if target.priority <= current.priority or rep is None or rep.every_min is None:
                continue
            hist = history.get(target.name, TargetHistory())
            at = self.earliest_start(target, hist, after, until)
            if at is None:
                continue
            deadline = max(at, self._latest_start(target, hist) or at)
            if until <= deadline:
                continue
            stop = max(after, deadline - timedelta(seconds=longest))
            if best is None or stop < best[0]:
                best = (stop, target.name)
        return best

    # -- flats ------------------------------------------------------------------------------

    def flat_window(self, block: FlatBlock, when: str) -> tuple[datetime, datetime] | None:
        """Return when the block's flats are taken at ``"dusk"`` or ``"dawn"``; None: never.

        Sky flats: while the sun is between the block's altitudes. Panel flats: from sunset
        to the night's start, and from the night's end to sunrise (the roof stays closed).
        """
        if block.source == "panel":
            sun = self.eph.twilights().sunset
            if when == "dusk":
                start, end = sun.dusk, self.night_start
            else:
                start, end = self.night_end, sun.dawn
            return (start, end) if start and end and start < end else None
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
            How far at most to advance when nothing can start (to the next start, if sooner).
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
        gaps: list[Gap] = []
        first_start: dict[str, datetime] = {}  # of an interrupted visit, for its cadence
        last_why: dict[str, str] = {}
        limits = self.plan.night
        if self.night_start is not None and self.night_end is not None:
            now = self.night_start
            idle_from: tuple[datetime, str] | None = None
            while now < self.night_end:
                cands, why = self.candidates(now, hist)
                last_why.update(why)
                best = self.choose(now, hist) if cands else None
                if best is None:
                    nxt = self.next_start(now, hist, self.night_end)
                    if idle_from is None:
                        wait = f"waiting for {nxt[1]} (from {nxt[0]:%H:%M})" if nxt else ""
                        idle_from = (now, wait if cands else _why_idle(why))
                    step = now + timedelta(seconds=idle_step_s)
                    now = min(nxt[0], step) if nxt is not None else self.night_end
                    continue
                if idle_from is not None:
                    gaps.append(Gap(idle_from[0], now, idle_from[1]))
                    idle_from = None
                target = best.target
                h = hist.get(target.name, TargetHistory())
                frames = self.visit_frames(target, h)
                cut = self.preemption(target, frames, now, best.end, hist)
                # Frame ends: the slew, then each exposure and its overhead (and the flip,
                # between the frames, once the target is past the meridian).
                ends = now + timedelta(seconds=limits.slew_s)
                east = self.hour_angle_h(target, now) < 0.0
                done = 0
                for _, exposure_s in frames:
                    if cut is not None and ends >= cut[0] and done > 0:
                        break
                    if east and self.hour_angle_h(target, ends) >= 0.0:
                        ends += timedelta(seconds=limits.meridian_flip_s)
                        east = False
                    ends += timedelta(seconds=exposure_s + limits.overhead_s)
                    done += 1
                preempted = done < len(frames)
                taken = frames[:done]
                visits.append(
                    PlannedVisit(
                        target.name,
                        now,
                        ends,
                        best.alt_deg,
                        best.airmass,
                        exposure_s=sum(e for _, e in taken),
                        frames=done,
                        preempted_by=cut[1] if preempted and cut is not None else None,
                        resumed=h.resume is not None,
                    )
                )
                counted = dict(h.counted)
                for name, _ in taken:
                    if name is not None:
                        counted[name] = counted.get(name, 0) + 1
                start = first_start.pop(target.name, now)
                if preempted:
                    first_start[target.name] = start
                    hist[target.name] = replace(h, counted=counted, resume=frames[done:])
                else:
                    hist[target.name] = TargetHistory(
                        h.total + 1,
                        h.tonight + 1,
                        h.failed_tonight,
                        start,
                        counted,
                        due=advance_due(target, due_time(target, h), start),
                    )
                now = ends
            if idle_from is not None:
                gaps.append(Gap(idle_from[0], self.night_end, idle_from[1]))
        observed = {v.target for v in visits}
        unobserved: dict[str, str] = {}
        for target in self.plan.targets:
            if target.name in observed:
                continue
            unobserved[target.name] = (
                self.never_reason(target) or last_why.get(target.name) or "lower merit"
            )
        return Timeline(events, visits, unobserved, gaps, hist)


def cadence_intervals_min(starts: list[datetime]) -> list[float]:
    """Return the minutes from the start of each visit to the start of the next."""
    return [(b - a).total_seconds() / 60.0 for a, b in itertools.pairwise(starts)]


def describe_cadence(target: PlanTarget, starts: list[datetime]) -> str | None:
    """Describe a monitor's achieved cadence, start to start; None without a cadence.

    For example ``every 60 min asked: 11 intervals, median 60.0 min, worst 62.9 min
    (+4.8 %), 11 of 11 within 5 %``.
    """
    rep = target.repeat
    if rep is None or rep.every_min is None:
        return None
    gaps = cadence_intervals_min(starts)
    asked = f"every {rep.every_min:g} min asked"
    if not gaps:
        return f"{asked}: fewer than two visits"
    worst = max(gaps, key=lambda g: abs(g - rep.every_min))  # type: ignore[operator]
    within = sum(abs(g - rep.every_min) <= 0.05 * rep.every_min for g in gaps)
    return (
        f"{asked}: {len(gaps)} interval(s), median {float(np.median(gaps)):.1f} min, worst "
        f"{worst:.1f} min ({(worst / rep.every_min - 1):+.1%}), {within} of {len(gaps)} "
        "within 5 %"
    )


def _why_idle(why: Mapping[str, str]) -> str:
    """Summarise why no target could start: the reasons, each with its targets."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in why.items():
        by_reason.setdefault(reason, []).append(name)
    return "; ".join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items())


def _longest_run(mask: NDArray[np.bool_]) -> int:
    """Length of the longest run of True values (grid steps between its ends)."""
    best = run = 0
    for value in mask.tolist():
        run = run + 1 if value else 0
        best = max(best, run)
    return max(best - 1, 0)
