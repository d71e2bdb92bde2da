"""Dispatch over a night: goals across nights, start-to-start cadence, look-ahead, pre-emption.

Pure scheduling on the ephemeris of a real night (no hardware): the rules the night runner
applies, checked on `NightSchedule.timeline`, which predicts the night with them.
"""

from __future__ import annotations

import itertools
import statistics
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from obsctl.config import SiteConfig
from obsctl.night.ephemeris import NightEphemeris, cached_night
from obsctl.night.plan import Plan, parse_plan
from obsctl.night.schedule import (
    NightSchedule,
    TargetHistory,
    advance_due,
    goal_missing,
    repeat_allows,
    visit_steps,
)

SITE = SiteConfig(name="Test", latitude_deg=28.76, longitude_deg=-17.88, elevation_m=2326)
NIGHT = date(2026, 11, 25)
MIDNIGHT = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
# Circumpolar at 28.8 deg north (altitude 24-34 deg all night): observable whenever it is dark.
POLAR = (12.0, 85.0)
DAY = timedelta(hours=24)


@pytest.fixture(scope="module")
def eph() -> NightEphemeris:
    return cached_night(SITE, NIGHT)


def target(name: str, count: int = 2, exposure_s: float = 60, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "ra_deg": POLAR[0],
        "dec_deg": POLAR[1],
        "steps": [{"filter": "V", "exposure_s": exposure_s, "count": count}],
        **extra,
    }


def plan_of(*targets: dict[str, Any], **night: Any) -> Plan:
    limits = {"overhead_s": 10, "slew_s": 60, **night}
    return parse_plan({"version": 1, "name": "p", "night": limits, "targets": list(targets)})


def starts(visits: list[Any], name: str) -> list[datetime]:
    return [v.start for v in visits if v.target == name]


def intervals_min(times: list[datetime]) -> list[float]:
    return [(b - a).total_seconds() / 60 for a, b in itertools.pairwise(times)]


# -- goals --------------------------------------------------------------------------------


def test_visit_takes_only_the_missing_frames() -> None:
    t = plan_of(
        {
            **target("G"),
            "steps": [
                {"filter": "V", "exposure_s": 60, "count": 4},
                {"filter": "R", "exposure_s": 90, "count": 4},
                {"filter": "V", "exposure_s": 30, "count": 4},
            ],
            "goal": {"frames": 6, "per_filter": {"R": 3}},
        }
    ).targets[0]
    fresh = visit_steps(t, TargetHistory())
    assert [(s.filter, s.count) for s in fresh] == [("V", 4), ("R", 3), ("V", 2)]
    some = TargetHistory(counted={"V": 5, "R": 1})
    assert goal_missing(t, some) == {"V": 1, "R": 2}
    assert [(s.filter, s.count, s.exposure_s) for s in visit_steps(t, some)] == [
        ("V", 1, 60.0),
        ("R", 2, 90.0),
    ]
    met = TargetHistory(total=3, counted={"V": 6, "R": 5})
    assert visit_steps(t, met) == ()
    ok, why = repeat_allows(t, met, NIGHT, MIDNIGHT)
    assert not ok and why == "goal met (V 6/6, R 3/3)"
    # Without [repeat], a target with a goal is visited again until the goal is met.
    assert repeat_allows(t, TargetHistory(total=5, tonight=5, counted={"V": 6}), NIGHT, MIDNIGHT)[0]


def test_goal_spans_nights_and_stops_when_met(eph: NightEphemeris) -> None:
    # 80 accepted frames of 600 s: over 13 h of exposure, more than one long night gives
    # besides a monitor; the rest is taken the next night, then the target is left alone.
    plan = plan_of(
        target("Survey", count=5, exposure_s=600, goal={"frames": 80}),
        target("Mon", count=1, exposure_s=120, priority=5, repeat={"every_min": 60}),
    )
    first = NightSchedule(plan, eph).timeline()
    taken = sum(v.frames for v in first.visits if v.target == "Survey")
    assert 40 <= taken < 80
    assert first.history["Survey"].counted == {"V": taken}
    second = NightSchedule(plan, cached_night(SITE, NIGHT + timedelta(days=1))).timeline(
        first.history
    )
    more = sum(v.frames for v in second.visits if v.target == "Survey")
    assert taken + more == 80  # exactly the goal: the last visit takes only what is missing
    assert "goal met (V 80/80)" in second.gaps[-1].why


# -- cadence ------------------------------------------------------------------------------


def test_cadence_counts_start_to_start() -> None:
    mon = plan_of(target("M", repeat={"every_min": 60})).targets[0]
    last = MIDNIGHT - timedelta(minutes=50)
    h = TargetHistory(1, 1, 0, last)
    ok, why = repeat_allows(mon, h, NIGHT, MIDNIGHT)
    assert not ok and why == "next visit due at 00:10 UTC"
    assert not repeat_allows(mon, h, NIGHT, MIDNIGHT + timedelta(minutes=9))[0]
    assert repeat_allows(mon, h, NIGHT, MIDNIGHT + timedelta(minutes=10))[0]
    # Started within the tolerance (5 %: 3 min) after its due time, the series keeps its
    # phase; later, it starts again from the late visit.
    due = MIDNIGHT + timedelta(minutes=10)
    assert advance_due(mon, due, due + timedelta(minutes=3)) == due + timedelta(hours=1)
    late = due + timedelta(minutes=20)
    assert advance_due(mon, due, late) == late + timedelta(hours=1)


def test_monitor_cadence_holds_with_long_and_filler_visits(eph: NightEphemeris) -> None:
    # An hourly monitor (priority 5) among a survey target whose visits (71 min, priority 3)
    # never fit between two monitor visits, and short fillers (priority 1). Greedy dispatch
    # (the old behaviour) lets the survey's visits make the monitor late; look-ahead stops
    # a survey visit between two frames so that the monitor starts in time, resumes it
    # afterwards, and fills what is left before the monitor with fillers.
    targets = (
        target("Mon", count=2, exposure_s=120, priority=5, repeat={"every_min": 60}),
        target("Survey", count=14, exposure_s=290, priority=3, repeat={"per_night": 100}),
        target("Filler", count=1, exposure_s=200, priority=1, repeat={"per_night": 100}),
    )
    results = {}
    for dispatch in ("greedy", "lookahead"):
        tl = NightSchedule(plan_of(*targets, dispatch=dispatch), eph).timeline()
        results[dispatch] = (intervals_min(starts(tl.visits, "Mon")), tl)
    greedy, _ = results["greedy"]
    look, tl = results["lookahead"]
    assert len(look) >= 10
    # Within 5 % of the requested interval, start to start, every time.
    assert all(abs(g - 60) <= 3.0 for g in look), look
    assert max(abs(g - 60) for g in greedy) > 10, greedy
    # Survey visits are pre-empted and resume: survey time is not given to the fillers.
    cut = [v for v in tl.visits if v.preempted_by == "Mon"]
    assert len(cut) >= 5 and all(v.target == "Survey" for v in cut)
    survey_s = sum(v.exposure_s for v in tl.visits if v.target == "Survey")
    filler_s = sum(v.exposure_s for v in tl.visits if v.target == "Filler")
    assert survey_s > 5 * filler_s
    # The night is used: idle less than 5 % of it.
    assert tl.visits and sched_night_s(tl) > 0
    idle_s = sum((g.end - g.start).total_seconds() for g in tl.gaps)
    assert idle_s < 0.05 * sched_night_s(tl), tl.gaps


def sched_night_s(tl: Any) -> float:
    return (tl.visits[-1].end - tl.visits[0].start).total_seconds()


def test_lookahead_fits_a_short_visit_before_a_rising_target(eph: NightEphemeris) -> None:
    targets = (
        {**target("Riser", priority=5), "ra_deg": 100.0, "dec_deg": 20.0}
        | {"constraints": {"min_alt_deg": 50}},
        target("Long", count=6, exposure_s=300, priority=3),
        target("Short", count=2, exposure_s=120, priority=1),
    )
    sched = NightSchedule(plan_of(*targets), eph)
    assert sched.night_start is not None
    rises = sched.earliest_start(
        sched.plan.targets[0], TargetHistory(), sched.night_start, sched.night_start + DAY
    )
    assert rises is not None
    when = rises - timedelta(minutes=20)
    # The long visit (about 32 min) would make the rising target wait; the short one
    # (about 5.3 min) ends before it rises. Greedy takes the long one.
    choice = sched.choose(when, {})
    assert choice is not None and choice.target.name == "Short"
    greedy = NightSchedule(plan_of(*targets, dispatch="greedy"), eph)
    first = greedy.choose(when, {})
    assert first is not None and first.target.name == "Long"


def test_a_due_monitor_stops_a_visit_in_time(eph: NightEphemeris) -> None:
    plan = plan_of(
        target("Mon", count=1, exposure_s=60, priority=5, repeat={"every_min": 60}),
        target("Long", count=6, exposure_s=300, priority=3),
    )
    sched = NightSchedule(plan, eph)
    greedy = NightSchedule(plan_of(*plan.model_dump()["targets"], dispatch="greedy"), eph)
    # Due at 00:10, so started by 00:13: no 310 s frame of the long visit may start after
    # 00:07:50; the visit is stopped between frames then (and resumes later).
    history = {"Mon": TargetHistory(1, 1, 0, MIDNIGHT - timedelta(minutes=50))}
    choice = sched.choose(MIDNIGHT, history)
    assert choice is not None and choice.target.name == "Long"
    frames = sched.visit_frames(choice.target, TargetHistory())
    at = sched.preemption(choice.target, frames, MIDNIGHT, choice.end, history)
    assert at == (MIDNIGHT + timedelta(minutes=7, seconds=50), "Mon")
    assert greedy.preemption(choice.target, frames, MIDNIGHT, choice.end, history) is None
    # Not even one frame fits before the monitor: wait for it.
    history["Mon"] = TargetHistory(1, 1, 0, MIDNIGHT - timedelta(minutes=58))
    assert sched.choose(MIDNIGHT, history) is None
    assert sched.next_start(MIDNIGHT, history, MIDNIGHT + timedelta(hours=1)) == (
        MIDNIGHT + timedelta(minutes=2),
        "Mon",
    )
    first = greedy.choose(MIDNIGHT, history)
    assert first is not None and first.target.name == "Long"


def test_earliest_start_follows_constraints_and_cadence(eph: NightEphemeris) -> None:
    plan = plan_of(
        {**target("Rising"), "ra_deg": 100.0, "dec_deg": 20.0, "constraints": {"min_alt_deg": 50}},
        target("Mon", repeat={"every_min": 60}),
    )
    sched = NightSchedule(plan, eph)
    rising = plan.targets[0]
    start = sched.night_start
    assert start is not None
    at = sched.earliest_start(rising, TargetHistory(), start, start + timedelta(hours=12))
    assert at is not None and not sched.blocking(rising, at)
    assert sched.blocking(rising, at - timedelta(minutes=4))  # not a grid step earlier
    mon = plan.targets[1]
    h = TargetHistory(1, 1, 0, MIDNIGHT)
    later = MIDNIGHT + timedelta(hours=2)
    assert sched.earliest_start(mon, h, MIDNIGHT, later) == MIDNIGHT + timedelta(hours=1)
    assert sched.earliest_start(mon, h, MIDNIGHT, MIDNIGHT + timedelta(minutes=30)) is None


def test_idle_gaps_say_why(eph: NightEphemeris) -> None:
    plan = plan_of(target("Mon", count=1, exposure_s=60, repeat={"every_min": 120}))
    tl = NightSchedule(plan, eph).timeline()
    assert len(tl.gaps) >= 4
    gap = tl.gaps[0]
    assert gap.why.startswith("Mon: next visit due at")
    assert statistics.median(intervals_min(starts(tl.visits, "Mon"))) == pytest.approx(120, abs=2)
