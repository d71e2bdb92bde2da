"""A night ahead of time: the predicted timeline, the first event, a faster-than-real clock.

`check_plan` validates a plan and predicts its night without hardware (``obsctl plan
check``); `night_clock` and `simulation_config` set up a night run on a simulated clock
(``obsctl night --speed N``).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from obsctl.clock import Clock, ScaledClock, SystemClock, night_of, parse_night
from obsctl.config import Config
from obsctl.errors import ScheduleError
from obsctl.night.ephemeris import cached_night
from obsctl.night.plan import Plan, load_plan
from obsctl.night.schedule import NightSchedule, Timeline

__all__ = ["check_plan", "describe_timeline", "first_event", "night_clock", "simulation_config"]

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
        lines.append(
            f"  {v.start:%H:%M}-{v.end:%H:%M}  {v.target:<24} alt {v.alt_deg:5.1f} deg  "
            f"airmass {v.airmass:5.2f}"
        )
    if timeline.unobserved:
        lines += ["", "not observed:"]
        for name, why in timeline.unobserved.items():
            lines.append(f"  {name}: {why}")
    return "\n".join(lines)


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
    return text


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
