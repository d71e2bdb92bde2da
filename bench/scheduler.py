"""Scheduling costs, and obsctl's dispatchers against astroplan's schedulers on the same plans.

Part 1, costs: a night's ephemeris, the constraint masks of 100 targets, one decision, and a
whole predicted timeline. Decisions must stay far below the per-frame overhead (milliseconds)
so that the dispatch loop never delays acquisition; the ephemeris is paid once per night.

Part 2, comparison (issue 22): on night 2026-11-25 at the embedded site (La Palma-like), for
``configs/plans/demo.toml`` and two seeded synthetic plans, four schedulers plan the night:

- obsctl greedy and obsctl look-ahead (``[night] dispatch``), `NightSchedule.timeline`;
- astroplan's ``PriorityScheduler`` and ``SequentialScheduler`` on ``ObservingBlock``\\ s built
  from the same plan (`astroplan_blocks` says how: one block per visit, goals as the visits
  they need, monitors as one block per due time with a start window of 5 % of the cadence).

For each the table gives, over the dark time (``night_start`` to ``night_end`` of the
`NightSchedule`): the open-shutter fraction (exposure seconds / dark seconds), the fraction
in visits (with slews and per-frame overheads), the visits, the goals met by the night's end
(targets whose goal frames are all counted / targets with goals) and the goal frames
collected, the monitoring cadence error (start-to-start intervals of every target with
``repeat.every_min``, resumed parts of pre-empted visits skipped: median |error| in % of
``every_min``, the worst, and the share within 5 %), and the wall time of the scheduling
itself (median of a few runs; obsctl: masks and timeline, the ephemeris cached; astroplan:
the scheduler call on a fresh ``Observer``, constraints included, blocks built beforehand).

Offline: astropy and astroplan use only the packaged IERS tables (`quiet_astropy`).

Run: ``python bench/scheduler.py [--sequential-everywhere]`` (needs the ``bench`` extra for
astroplan; about five minutes). astroplan's ``SequentialScheduler`` evaluates every block's
constraints at every step: it runs on the demo plan only, unless asked (it took 650 s on
synthetic-25 on a 2-core machine, far longer on synthetic-40).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from obsctl.config import SiteConfig
from obsctl.night.ephemeris import NightEphemeris, cached_night, quiet_astropy
from obsctl.night.plan import Plan, PlanTarget, load_plan, parse_plan
from obsctl.night.schedule import NightSchedule, TargetHistory, Timeline

SITE = SiteConfig(name="bench", latitude_deg=28.76, longitude_deg=-17.88, elevation_m=2326)
NIGHT = date(2026, 11, 25)
DEMO_PLAN = Path(__file__).resolve().parent.parent / "configs" / "plans" / "demo.toml"
#: astroplan's time grid (PriorityScheduler) and step when idle (SequentialScheduler).
RESOLUTION_S = 60.0
#: Slew (deg) that takes obsctl's flat ``slew_s``: sets astroplan's slew rate.
TYPICAL_SLEW_DEG = 60.0
#: Start window of a monitor's block in astroplan, as obsctl's default tolerance.
CADENCE_WINDOW = 0.05

T = TypeVar("T")


def timed(fn: Callable[[], T], repeat: int = 5, *, budget_s: float = 1e9) -> tuple[float, T]:
    """Return the median wall time of ``repeat`` calls (fewer once ``budget_s`` is spent)."""
    times: list[float] = []
    out: T | None = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        if sum(times) > budget_s:
            break
    assert out is not None
    return statistics.median(times), out


# -- part 1: costs --------------------------------------------------------------------------


def costs() -> None:
    rng = np.random.default_rng(1)
    targets: list[dict[str, Any]] = []
    for i in range(100):
        t: dict[str, Any] = {
            "name": f"T{i}",
            "ra_deg": float(rng.uniform(0, 360)),
            "dec_deg": float(rng.uniform(-30, 80)),
            "priority": int(rng.integers(1, 6)),
            "constraints": {"min_alt_deg": 30, "min_moon_sep_deg": 20},
            "steps": [{"filter": "V", "exposure_s": 120, "count": 3}],
        }
        if i % 5 == 0:
            t["repeat"] = {"every_min": 60}
        targets.append(t)
    plan = parse_plan({"version": 1, "name": "bench", "targets": targets})
    t_eph, eph = timed(lambda: NightEphemeris(SITE, NIGHT), repeat=3)
    t_sched, sched = timed(lambda: NightSchedule(plan, eph), repeat=3)
    when = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
    history = {
        f"T{i}": TargetHistory(total=1, tonight=1, last_start=when - timedelta(minutes=70))
        for i in range(0, 100, 5)
    }
    t_choose, _ = timed(lambda: sched.choose(when, history), repeat=50)
    t_timeline, tl = timed(lambda: sched.timeline(), repeat=3)
    print("scheduling costs")
    print(f"  ephemeris of one night (sun, moon; 2 min grid): {t_eph * 1e3:8.1f} ms (median)")
    print(f"  constraint masks for 100 targets:               {t_sched * 1e3:8.1f} ms")
    print(f"  one decision among 100 targets:                 {t_choose * 1e3:8.2f} ms")
    print(
        f"  predicted timeline of the night:                {t_timeline * 1e3:8.1f} ms "
        f"({len(tl.visits)} visits)"
    )


# -- plans ----------------------------------------------------------------------------------


def synthetic_plan(name: str, seed: int, n: int, monitors: int, goals: int, fillers: int) -> Plan:
    """A seeded random plan: monitors (priority 6-9), goals (3-5), fillers (1), singles (1-5).

    Coordinates are spread over the sky visible on a late-November night (RA 300 to 160 deg
    through 0), declination -20 to +70 deg, so most targets rise at some point.
    """
    rng = np.random.default_rng(seed)
    filters = ["B", "V", "R", "I"]
    targets: list[dict[str, Any]] = []
    for i in range(n):
        ra = float((300.0 + rng.uniform(0.0, 220.0)) % 360.0)
        t: dict[str, Any] = {
            "ra_deg": ra,
            "dec_deg": float(rng.uniform(-20.0, 70.0)),
            "constraints": {
                "min_alt_deg": float(rng.choice([25, 30, 35, 40])),
                "min_moon_sep_deg": float(rng.choice([15, 20, 30])),
            },
        }
        if rng.random() < 0.3:
            t["constraints"]["max_airmass"] = float(rng.choice([1.5, 1.8, 2.0]))
        if i < monitors:
            every = float(rng.choice([20, 30, 45, 60, 90, 120]))
            t |= {
                "name": f"mon{i:02d}",
                "priority": int(rng.integers(6, 10)),
                "repeat": {"every_min": every},
                "steps": [
                    {"filter": "V", "exposure_s": float(rng.choice([30, 60, 90])), "count": 1}
                ],
            }
        elif i < monitors + goals:
            chosen = rng.choice(filters, size=int(rng.integers(1, 3)), replace=False)
            t |= {
                "name": f"goal{i:02d}",
                "priority": int(rng.integers(3, 6)),
                "goal": {"frames": int(rng.integers(4, 13))},
                "steps": [
                    {
                        "filter": str(f),
                        "exposure_s": float(rng.choice([120, 180, 300])),
                        "count": int(rng.integers(2, 5)),
                    }
                    for f in chosen
                ],
            }
        elif i < monitors + goals + fillers:
            t |= {
                "name": f"fill{i:02d}",
                "priority": 1,
                "repeat": {"per_night": 10},
                "steps": [{"filter": "R", "exposure_s": 120.0, "count": 2}],
            }
        else:
            t |= {
                "name": f"single{i:02d}",
                "priority": int(rng.integers(1, 6)),
                "steps": [
                    {
                        "filter": str(rng.choice(filters)),
                        "exposure_s": float(rng.choice([60, 120, 300, 600])),
                        "count": int(rng.integers(1, 5)),
                    }
                ],
            }
        targets.append(t)
    return parse_plan({"version": 1, "name": name, "targets": targets}, source=name)


def with_dispatch(plan: Plan, dispatch: str) -> Plan:
    """Return ``plan`` with ``[night] dispatch`` set (validated again)."""
    data = plan.model_dump(mode="json", exclude_none=True)
    data["night"]["dispatch"] = dispatch
    return parse_plan(data, source=f"{plan.name} ({dispatch})")


# -- outcomes and metrics -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Visit:
    """One visit, whoever scheduled it."""

    target: str
    start: datetime
    end: datetime
    exposure_s: float
    resumed: bool = False


@dataclass
class Outcome:
    """What one scheduler made of one plan's night."""

    scheduler: str
    visits: list[Visit]
    #: Goal frames counted per target and filter by the night's end.
    counted: dict[str, Counter[str]]
    #: Time in slews between visits not inside `visits` (astroplan's transitions).
    transition_s: float
    seconds: float


@dataclass(frozen=True, slots=True)
class Metrics:
    open_frac: float
    busy_frac: float
    visits: int
    goals_met: int
    goals: int
    goal_frames: int
    goal_frames_wanted: int
    cadence_median_pct: float
    cadence_worst_pct: float
    cadence_within: float
    intervals: int
    seconds: float


def metrics(sched: NightSchedule, outcome: Outcome) -> Metrics:
    start, end = sched.night_start, sched.night_end
    assert start is not None and end is not None
    dark_s = (end - start).total_seconds()
    open_s = sum(v.exposure_s for v in outcome.visits)
    busy_s = outcome.transition_s + sum(
        (min(v.end, end) - max(v.start, start)).total_seconds()
        for v in outcome.visits
        if v.end > start and v.start < end
    )
    goals = [t for t in sched.plan.targets if t.goal is not None]
    met = frames = wanted = 0
    for t in goals:
        counted = outcome.counted.get(t.name, Counter())
        want = t.goal_frames()
        met += all(counted[f] >= n for f, n in want.items())
        frames += sum(min(counted[f], n) for f, n in want.items())
        wanted += sum(want.values())
    errors: list[float] = []
    for t in sched.plan.targets:
        if t.repeat is None or t.repeat.every_min is None:
            continue
        starts = sorted(v.start for v in outcome.visits if v.target == t.name and not v.resumed)
        for a, b in itertools.pairwise(starts):
            gap_min = (b - a).total_seconds() / 60.0
            errors.append(100.0 * abs(gap_min - t.repeat.every_min) / t.repeat.every_min)
    return Metrics(
        open_frac=open_s / dark_s,
        busy_frac=busy_s / dark_s,
        visits=sum(not v.resumed for v in outcome.visits),
        goals_met=met,
        goals=len(goals),
        goal_frames=frames,
        goal_frames_wanted=wanted,
        cadence_median_pct=statistics.median(errors) if errors else math.nan,
        cadence_worst_pct=max(errors) if errors else math.nan,
        cadence_within=sum(e <= 5.0 + 1e-9 for e in errors) / len(errors) if errors else math.nan,
        intervals=len(errors),
        seconds=outcome.seconds,
    )


# -- obsctl -----------------------------------------------------------------------------------


def run_obsctl(plan: Plan, dispatch: str, repeat: int = 3) -> tuple[NightSchedule, Outcome]:
    eph = cached_night(SITE, NIGHT)
    plan = with_dispatch(plan, dispatch)

    def once() -> tuple[NightSchedule, Timeline]:
        sched = NightSchedule(plan, eph)
        return sched, sched.timeline()

    seconds, (sched, tl) = timed(once, repeat=repeat)
    visits = [Visit(v.target, v.start, v.end, v.exposure_s, v.resumed) for v in tl.visits]
    counted = {name: Counter(h.counted) for name, h in tl.history.items()}
    name = "obsctl look-ahead" if dispatch == "lookahead" else "obsctl greedy"
    return sched, Outcome(name, visits, counted, 0.0, seconds)


# -- astroplan --------------------------------------------------------------------------------


def _runs(mask: np.ndarray) -> Iterator[tuple[int, int]]:
    """Yield (first, last) indices of the runs of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        yield int(a), int(b) - 1


def in_night(sched: NightSchedule) -> np.ndarray:
    """Return the mask of the ephemeris grid between night start and night end."""
    start, end = sched.night_start, sched.night_end
    assert start is not None and end is not None
    t = sched.eph.t_s
    return (t >= sched.eph.seconds(start)) & (t <= sched.eph.seconds(end))


def astroplan_constraints(sched: NightSchedule, target: PlanTarget) -> list[Any]:
    """Map a target's constraints to astroplan's (the night limits are global).

    astroplan has no moon-down relaxation (obsctl ignores the moon separation while the moon
    is below the horizon), no moon-avoidance Lorentzian (mapped to a fixed separation: the
    one obsctl asks at the middle of the night) and no hour-angle constraint (mapped to a
    `TimeConstraint` over the longest run of obsctl's hour-angle mask in the night).
    """
    import astropy.units as u
    from astroplan import (
        AirmassConstraint,
        AltitudeConstraint,
        AtNightConstraint,
        MoonIlluminationConstraint,
        MoonSeparationConstraint,
        TimeConstraint,
    )
    from astropy.time import Time

    c = target.constraints
    eph = sched.eph
    out: list[Any] = []
    if c.min_alt_deg is not None:
        out.append(AltitudeConstraint(min=c.min_alt_deg * u.deg))
    if c.max_airmass is not None:
        out.append(AirmassConstraint(max=c.max_airmass))
    if c.max_sun_alt_deg is not None:
        out.append(AtNightConstraint(max_solar_altitude=c.max_sun_alt_deg * u.deg))
    sep = c.min_moon_sep_deg or 0.0
    if c.moon_avoidance is not None:
        inside = np.flatnonzero(in_night(sched))
        mid = int(inside[inside.size // 2])
        sep = max(sep, float(c.moon_avoidance.separation_deg(eph.moon_age_days[mid])))
    if sep > 0:
        out.append(MoonSeparationConstraint(min=sep * u.deg))
    if c.max_moon_illumination is not None:
        out.append(MoonIlluminationConstraint(max=c.max_moon_illumination))
    if c.min_hour_angle_h is not None or c.max_hour_angle_h is not None:
        ha = sched.tracks[target.name].hour_angle_h
        mask = in_night(sched)
        if c.min_hour_angle_h is not None:
            mask &= ha >= c.min_hour_angle_h
        if c.max_hour_angle_h is not None:
            mask &= ha <= c.max_hour_angle_h
        runs = sorted(_runs(mask), key=lambda r: r[1] - r[0])
        if runs:
            a, b = runs[-1]
            out.append(TimeConstraint(Time(eph.time_at(eph.t_s[a])), Time(eph.time_at(eph.t_s[b]))))
    if c.windows:  # the first window of the night only (TimeConstraint takes one)
        start, end = sched.night_start, sched.night_end
        assert start is not None and end is not None
        for a, b in c.windows:
            if b > start and a < end:
                out.append(TimeConstraint(Time(a), Time(b)))
                break
    return out


def _frames_of(sched: NightSchedule, target: PlanTarget) -> Iterator[tuple[tuple[str, float], ...]]:
    """Yield the frames of each visit a goal target needs (as obsctl cuts the last ones)."""
    history = TargetHistory()
    while True:
        frames = sched.visit_frames(target, history)
        if not frames:
            return
        yield tuple((str(f), e) for f, e in frames)
        counted = Counter(history.counted)
        counted.update(str(f) for f, _ in frames)
        history = TargetHistory(counted=dict(counted))


def astroplan_blocks(sched: NightSchedule, resolution_s: float) -> list[Any]:
    """Build astroplan `ObservingBlock`\\ s from the plan, best obsctl priority first.

    - a target without ``repeat``: one block; with ``per_night`` (and no ``every_min``):
      that many blocks, at most as many as fit in the night;
    - a goal: one block per visit obsctl would need (its frames cut as obsctl cuts them);
    - a monitor: one block per due time, every ``every_min`` from night start, whose start
      must lie in [due, due + 5 % of every_min] (a `TimeConstraint` holds over the whole
      block in astroplan, so the window is that plus the block's duration).

    Duration: exposures plus the per-frame overhead (which includes filter changes, as in
    obsctl); obsctl's flat per-visit slew is astroplan's `Transitioner`. The duration is
    rounded up to the time resolution: PriorityScheduler floors it to the grid
    (``attempt_insert_block``), which would cut visits short and let blocks overlap.
    Priorities: astroplan's 1 is the highest, so obsctl's best maps to 1. The block order
    breaks ties: PriorityScheduler sorts stably, SequentialScheduler takes the first block
    of the best constraint score, so in this order it is a priority-first greedy scheduler.
    """
    import astropy.units as u
    from astroplan import FixedTarget, ObservingBlock, TimeConstraint
    from astropy.coordinates import SkyCoord
    from astropy.time import Time

    plan = sched.plan
    limits = plan.night
    start, end = sched.night_start, sched.night_end
    assert start is not None and end is not None
    dark_s = (end - start).total_seconds()
    top = max(t.priority for t in plan.targets)
    blocks: list[Any] = []
    for target in sorted(plan.targets, key=lambda t: -t.priority):
        ra, dec = target.coordinates
        fixed = FixedTarget(SkyCoord(ra * u.deg, dec * u.deg), name=target.name)
        constraints = astroplan_constraints(sched, target)
        whole = tuple((str(s.filter), s.exposure_s) for s in target.steps for _ in range(s.count))
        rep = target.repeat
        visits: list[tuple[tuple[str, float], ...]]
        windows: list[tuple[datetime, datetime] | None]
        if target.goal is not None:
            visits = list(_frames_of(sched, target))
            windows = [None] * len(visits)
        elif rep is not None and rep.every_min is not None:
            every = timedelta(minutes=rep.every_min)
            dues = []
            due = start
            while due < end and (rep.per_night is None or len(dues) < rep.per_night):
                dues.append(due)
                due += every
            visits = [whole] * len(dues)
            work = timedelta(seconds=sum(e for _, e in whole) + len(whole) * limits.overhead_s)
            late = every * CADENCE_WINDOW
            windows = [(d, d + late + work + timedelta(seconds=resolution_s)) for d in dues]
        else:
            n = 1 if rep is None else (rep.per_night or 1)
            work_s = sum(e for _, e in whole) + len(whole) * (limits.overhead_s) + limits.slew_s
            visits = [whole] * min(n, int(dark_s // work_s))
            windows = [None] * len(visits)
        for frames, window in zip(visits, windows, strict=True):
            work_s = sum(e for _, e in frames) + len(frames) * limits.overhead_s
            duration_s = math.ceil(work_s / resolution_s - 1e-9) * resolution_s
            cons = list(constraints)
            if window is not None:
                cons.append(TimeConstraint(Time(window[0]), Time(window[1])))
            config = {
                "filter": frames[0][0],
                "frames": Counter(f for f, _ in frames),
                "exposure_s": sum(e for _, e in frames),
                "work_s": work_s,
            }
            blocks.append(
                ObservingBlock(
                    fixed,
                    duration_s * u.s,
                    top + 1 - target.priority,
                    configuration=config,
                    constraints=cons,
                    name=target.name,
                )
            )
    return blocks


def run_astroplan(
    sched: NightSchedule, kind: str, blocks: list[Any], repeat: int = 3, budget_s: float = 20.0
) -> Outcome:
    import astropy.units as u
    from astroplan import (
        AtNightConstraint,
        Observer,
        PriorityScheduler,
        Schedule,
        SequentialScheduler,
        TransitionBlock,
        Transitioner,
    )
    from astropy.coordinates import EarthLocation
    from astropy.time import Time

    limits = sched.plan.night
    start, end = sched.night_start, sched.night_end
    assert start is not None and end is not None
    # Slew: obsctl's flat slew_s for a typical slew. No filter-change penalty: obsctl's
    # per-frame overhead_s includes the filter change, and it is in the blocks' durations.
    slew_rate = TYPICAL_SLEW_DEG / max(limits.slew_s, 1.0) * u.deg / u.s
    location = EarthLocation.from_geodetic(
        SITE.longitude_deg * u.deg, SITE.latitude_deg * u.deg, SITE.elevation_m * u.m
    )
    cls = PriorityScheduler if kind == "priority" else SequentialScheduler

    def once() -> Any:
        # A fresh observer (no cached alt/az) and constraint list each run: PriorityScheduler
        # appends an AltitudeConstraint to the global list it is given, every call.
        observer = Observer(location=location, name=SITE.name)
        night = [AtNightConstraint(max_solar_altitude=limits.start_sun_alt_deg * u.deg)]
        scheduler = cls(
            constraints=night,
            observer=observer,
            transitioner=Transitioner(slew_rate=slew_rate),
            gap_time=RESOLUTION_S * u.s,
            time_resolution=RESOLUTION_S * u.s,
        )
        # astroplan prints each block it cannot place; the table says what was placed.
        with quiet_astropy(), contextlib.redirect_stdout(io.StringIO()):
            return scheduler(blocks, Schedule(Time(start), Time(end)))

    seconds, schedule = timed(once, repeat=repeat, budget_s=budget_s)
    visits: list[Visit] = []
    counted: dict[str, Counter[str]] = {}
    for b in schedule.observing_blocks:
        s = b.start_time.to_datetime(timezone=UTC)
        visits.append(
            Visit(
                b.name,
                s,
                s + timedelta(seconds=b.configuration["work_s"]),
                b.configuration["exposure_s"],
            )
        )
        counted.setdefault(b.name, Counter()).update(b.configuration["frames"])
    transition_s = sum(
        float(slot.block.duration.to_value(u.s))
        for slot in schedule.slots
        if isinstance(slot.block, TransitionBlock)
    )
    return Outcome(f"astroplan {kind}", visits, counted, transition_s, seconds)


# -- the comparison -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    m: Metrics


def _pct(x: float) -> str:
    return "   -" if math.isnan(x) else f"{x:5.1f}"


def print_table(title: str, rows: list[Row]) -> None:
    print()
    print(title)
    head = (
        f"  {'scheduler':<22}{'open %':>7}{'visits %':>9}{'visits':>7}{'goals':>7}"
        f"{'goal fr.':>10}{'cad |err| %':>12}{'worst %':>8}{'in 5 %':>8}{'sched s':>9}"
    )
    print(head)
    for r in rows:
        m = r.m
        within = "   -" if math.isnan(m.cadence_within) else f"{m.cadence_within:6.0%}"
        print(
            f"  {r.name:<22}{100 * m.open_frac:7.1f}{100 * m.busy_frac:9.1f}{m.visits:7d}"
            f"{f'{m.goals_met}/{m.goals}':>7}{f'{m.goal_frames}/{m.goal_frames_wanted}':>10}"
            f"{_pct(m.cadence_median_pct):>12}{_pct(m.cadence_worst_pct):>8}{within:>8}"
            f"{m.seconds:9.2f}"
        )
    print(f"  (cadence intervals per scheduler: {', '.join(str(r.m.intervals) for r in rows)})")


def _ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b):
        return "n/a"
    if b == 0:
        return "inf" if a > 0 else "1.00"
    return f"{a / b:.2f}"


def print_ratios(rows: list[Row]) -> None:
    """Print the look-ahead dispatcher's open shutter and scheduling time against each other."""
    la = next(r.m for r in rows if r.name == "obsctl look-ahead")
    parts = [
        f"{r.name} open shutter x{_ratio(la.open_frac, r.m.open_frac)}, "
        f"time x{_ratio(la.seconds, r.m.seconds)}"
        for r in rows
        if r.name != "obsctl look-ahead"
    ]
    print("  look-ahead against " + "; ".join(parts))


def compare(plan: Plan, *, sequential: bool = True) -> None:
    rows: list[Row] = []
    for dispatch in ("greedy", "lookahead"):
        sched, out = run_obsctl(plan, dispatch)
        rows.append(Row(out.scheduler, metrics(sched, out)))
    blocks = astroplan_blocks(sched, RESOLUTION_S)
    for kind in ("priority", "sequential") if sequential else ("priority",):
        out = run_astroplan(sched, kind, blocks)
        rows.append(Row(out.scheduler, metrics(sched, out)))
    start, end = sched.night_start, sched.night_end
    assert start is not None and end is not None
    monitors = sum(t.repeat is not None and t.repeat.every_min is not None for t in plan.targets)
    goals = sum(t.goal is not None for t in plan.targets)
    title = (
        f"plan {plan.name!r}: {len(plan.targets)} targets ({monitors} monitors, {goals} goals), "
        f"{len(blocks)} astroplan blocks; dark {start:%H:%M}-{end:%H:%M} UTC "
        f"({(end - start).total_seconds() / 3600:.1f} h)"
    )
    print_table(title, rows)
    print_ratios(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sequential-everywhere",
        action="store_true",
        help="run astroplan's SequentialScheduler on the synthetic plans too (slow)",
    )
    args = parser.parse_args()
    costs()
    print()
    print(
        f"dispatchers compared on {NIGHT} at lat {SITE.latitude_deg}, lon "
        f"{SITE.longitude_deg}, {SITE.elevation_m:g} m; astroplan resolution "
        f"{RESOLUTION_S:g} s, slew {TYPICAL_SLEW_DEG:g} deg in slew_s"
    )
    compare(load_plan(DEMO_PLAN))
    for plan in (
        synthetic_plan("synthetic-25", seed=22, n=25, monitors=4, goals=6, fillers=3),
        synthetic_plan("synthetic-40", seed=23, n=40, monitors=6, goals=8, fillers=4),
    ):
        compare(plan, sequential=args.sequential_everywhere)


if __name__ == "__main__":
    main()
