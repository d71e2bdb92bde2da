"""A night ahead of time: the predicted timeline, the first event, a faster-than-real clock.

`check_plan` validates a plan and predicts its night without hardware (``obsctl plan
check``); `night_clock` and `simulation_config` set up a night run on a simulated clock
(``obsctl night --speed N``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from obsctl.clock import Clock, ScaledClock, SystemClock, night_of, parse_night
from obsctl.config import Config
from obsctl.errors import ScheduleError
from obsctl.night.ephemeris import cached_night
from obsctl.night.plan import Plan, load_plan
from obsctl.night.schedule import (
    NightSchedule,
    TargetHistory,
    Timeline,
    describe_cadence,
    goal_missing,
)

__all__ = [
    "check_plan",
    "describe_efficiency",
    "describe_timeline",
    "first_event",
    "night_clock",
    "project_goals",
    "simulation_config",
]

log = logging.getLogger(__name__)


def describe_timeline(schedule: NightSchedule, timeline: Timeline) -> str:
    """Render a predicted night as text: events, visits with altitude/airmass, left-outs."""
    eph = schedule.eph
    lines = [f"night {eph.night} at {eph.site.name} (times UTC)"]
    limits = []
    if schedule.horizon is not None:
        limits.append(
            f"local horizon {schedule.horizon.source} (up to {schedule.horizon.max_alt_deg:g} deg)"
        )
    if eph.site.min_alt_deg is not None:
        limits.append(f"altitude >= {eph.site.min_alt_deg:g} deg")
    if eph.site.max_alt_deg is not None:
        limits.append(f"altitude <= {eph.site.max_alt_deg:g} deg")
    if limits:
        lines.append("site limits: " + ", ".join(limits))
    start, end = schedule.night_start, schedule.night_end
    if start is None or end is None:
        start, end = eph.start, eph.end
    middle = start + (end - start) / 2
    lines += [
        f"moon at {middle:%H:%M}: {eph.moon_phase(middle):.0%} illuminated, "
        f"{eph.moon_age(middle):.1f} days old, altitude {eph.moon_alt(middle):.0f} deg",
        "",
    ]
    for name, when in timeline.events:
        lines.append(f"  {'--:--:--' if when is None else f'{when:%H:%M:%S}'}  {name}")
    lines += ["", "observations:"]
    if not timeline.visits:
        lines.append("  (none)")
    for v in timeline.visits:
        cut = f"  (pre-empted by {v.preempted_by})" if v.preempted_by else ""
        lines.append(
            f"  {v.start:%H:%M}-{v.end:%H:%M}  {v.target:<24} alt {v.alt_deg:5.1f} deg  "
            f"airmass {v.airmass:5.2f}  {v.frames} frame(s){cut}"
        )
    if timeline.unobserved:
        lines += ["", "not observed:"]
        for name, why in timeline.unobserved.items():
            lines.append(f"  {name}: {why}")
    lines += ["", *describe_efficiency(schedule, timeline)]
    return "\n".join(lines)


def describe_efficiency(
    schedule: NightSchedule, timeline: Timeline, *, min_gap_s: float = 300.0
) -> list[str]:
    """Describe how the predicted night uses the dark time.

    The open-shutter fraction (light exposures over the time from night start to night
    end), the time in visits (with slews and per-frame overheads), the idle gaps of at
    least ``min_gap_s`` and why, and each monitor's achieved cadence.
    """
    start, end = schedule.night_start, schedule.night_end
    if start is None or end is None:
        return ["efficiency: no night"]
    dark_s = (end - start).total_seconds()
    open_s = sum(v.exposure_s for v in timeline.visits)
    busy_s = sum(
        (min(v.end, end) - max(v.start, start)).total_seconds()
        for v in timeline.visits
        if v.end > start and v.start < end
    )
    idle = [g for g in timeline.gaps if (g.end - g.start).total_seconds() >= min_gap_s]
    lines = [
        f"efficiency: shutter open {open_s / dark_s:.0%} of the dark time "
        f"({open_s / 3600:.1f} of {dark_s / 3600:.1f} h), in visits {busy_s / dark_s:.0%}, "
        f"idle {sum((g.end - g.start).total_seconds() for g in timeline.gaps) / 60:.0f} min",
    ]
    if idle:
        lines.append(f"idle gaps of {min_gap_s / 60:.0f} min or more:")
        for g in idle:
            lines.append(f"  {g.start:%H:%M}-{g.end:%H:%M}  {g.why}")
    preempted = sum(v.preempted_by is not None for v in timeline.visits)
    if preempted:
        lines.append(f"visits pre-empted by a due monitor (resumed later): {preempted}")
    for target in schedule.plan.targets:
        starts = [v.start for v in timeline.visits if v.target == target.name and not v.resumed]
        text = describe_cadence(target, starts)
        if text is not None:
            lines.append(f"cadence of {target.name}: {text}")
    return lines


def project_goals(
    config: Config, plan: Plan, night: date, timeline: Timeline, *, max_nights: int = 30
) -> list[str]:
    """Predict by which night each target's goal completes, every frame accepted.

    The nights after ``night`` are predicted one by one, each from where the previous
    left off, until every goal is met or ``max_nights`` nights are predicted.
    """
    goals = [t for t in plan.targets if t.goal is not None]
    if not goals:
        return []
    done: dict[str, date] = {}
    history = timeline.history
    current = night
    for _ in range(max_nights):
        for t in goals:
            if t.name not in done and not goal_missing(t, history.get(t.name, TargetHistory())):
                done[t.name] = current
        if len(done) == len(goals):
            break
        current += timedelta(days=1)
        history = {name: replace(h, tonight=0, failed_tonight=0) for name, h in history.items()}
        schedule = NightSchedule(plan, cached_night(config.site, current))
        history = schedule.timeline(history).history
    lines = ["goals (every frame accepted; a rejected frame is taken again and adds time):"]
    for t in goals:
        wanted = ", ".join(f"{f} {n}" for f, n in t.goal_frames().items())
        if t.name in done:
            n = (done[t.name] - night).days + 1
            lines.append(f"  {t.name} ({wanted}): complete on night {done[t.name]} ({n} night(s))")
        else:
            counted = history.get(t.name, TargetHistory()).counted
            got = ", ".join(f"{f} {counted.get(f, 0)}/{n}" for f, n in t.goal_frames().items())
            lines.append(f"  {t.name}: not complete within {max_nights} nights ({got})")
    return lines


def check_plan(config: Config, plan_path: str | Path, night: date) -> str:
    """Validate a plan and predict its night without hardware (``obsctl plan check``).

    Raises
    ------
    ConfigError
        When the plan is invalid (naming the target and field).
    ScheduleError
        When the plan's night limits are never reached on that night.
    """
    plan = load_plan(plan_path)
    schedule = NightSchedule(plan, cached_night(config.site, night))
    timeline = schedule.timeline()
    text = f"plan {plan.name!r} ({len(plan.targets)} target(s)) is valid\n"
    text += describe_timeline(schedule, timeline)
    if schedule.night_start is None or schedule.night_end is None:
        raise ScheduleError(
            text + f"\nthe sun does not reach {plan.night.start_sun_alt_deg:g} deg that night"
        )
    projection = project_goals(config, plan, night, timeline)
    return "\n".join([text, *projection])


def first_event(config: Config, plan: Plan, night: date) -> datetime:
    """Return the first moment the night runner acts on ``night``: dusk flats or night start.

    Raises
    ------
    ScheduleError
        When the plan's night limits are never reached on that night.
    """
    schedule = NightSchedule(plan, cached_night(config.site, night))
    if schedule.night_start is None:
        raise ScheduleError(f"night {night}: the sun does not reach the plan's limits")
    first = schedule.night_start
    flats = plan.calibration.flats
    if flats is not None and "dusk" in flats.when:
        window = schedule.flat_window(flats, "dusk")
        if window is not None:
            first = min(first, window[0])
    return first


def night_clock(
    config: Config, plan: Plan, night: date | None, *, speed: float, lead_s: float = 900.0
) -> tuple[Clock, date]:
    """Choose the clock and the night for ``obsctl night``.

    At ``speed`` 1 without a night this is real time and tonight (the runner waits for
    dusk). Otherwise the clock is simulated: it starts ``lead_s`` before the night's first
    event (the next night still to come when none is given) and runs ``speed`` times faster
    than real time, so a whole night takes minutes.
    """
    now = datetime.now(UTC)
    lon = config.site.longitude_deg
    if night is None:
        night = parse_night(night_of(now, lon))
        if speed == 1:
            return SystemClock(), night
        end = NightSchedule(plan, cached_night(config.site, night)).night_end
        if end is not None and now > end:
            night += timedelta(days=1)
    start = first_event(config, plan, night) - timedelta(seconds=lead_s)
    return ScaledClock(speed, start=start), night


def simulation_config(config: Config, speed: float, *, real_floor_s: float = 3.0) -> Config:
    """Loosen the sequencer's simulated-time deadlines for a clock ``speed`` times real time.

    Readout, filter and slew deadlines are in simulated seconds, but rendering a frame,
    HTTP round trips and polling cost real time, which a `ScaledClock` counts ``speed``
    times over: at ``--speed 300`` one real second of rendering a 6 MP frame is five
    simulated minutes, far beyond a 60 s readout margin. Each deadline is therefore at
    least ``real_floor_s`` of real time (in simulated seconds); at speed 1 nothing changes.
    """
    floor = real_floor_s * speed
    seq = config.sequencer
    loosened = seq.model_copy(
        update={
            "readout_margin_s": max(seq.readout_margin_s, floor),
            "filter_timeout_s": max(seq.filter_timeout_s, floor),
            "slew_timeout_s": max(seq.slew_timeout_s, floor),
        }
    )
    return config.model_copy(update={"sequencer": loosened})
