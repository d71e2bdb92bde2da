"""A whole simulated night, dusk to dawn, on the Alpaca simulators with a fast simulated clock.

One night (2026-11-25 at the test site) runs in two daemon runs (a restart at 01:30 UTC),
with an unsafe spell from 21:00 to 21:40 UTC and a camera fault at 03:10 UTC that makes one
visit fail. The checks read the database and the frames'
times and compare them with astropy-computed sun and target positions.

Tolerances: the clock runs 1000x real time, so a millisecond of real jitter is one simulated
second; frame times are compared with 3 to 10 min of slack (stated at each check; visits
are planned with per-frame overheads), altitudes with 1 deg, sun altitudes of flats with
1 deg, job times with 5 min. The night takes about 50 s of real time: at 2000x the daemon's
loop, lagging a few tenths of a second in a fresh process, let the dusk flat window (half an
hour, under a second of real time) pass before a flat was read out.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from obsctl.clock import ScaledClock
from obsctl.config import Config
from obsctl.daemon import Daemon
from obsctl.errors import ScheduleError
from obsctl.night.ephemeris import cached_night
from obsctl.night.plan import Plan, parse_plan
from obsctl.night.progress import PlanProgress
from obsctl.night.runner import NightRunner, NightSummary, run_night
from obsctl.night.schedule import NightSchedule
from obsctl.night.timeline import first_event, night_clock, simulation_config
from obsctl.simulators.faults import Fault
from obsctl.simulators.sky_brightness import SunMoonSky
from obsctl.store.exposure_log import ExposureLog

from ..daemon_helpers import daemon_config

NIGHT = date(2026, 11, 25)
SPEED = 1000.0
UNSAFE = (datetime(2026, 11, 25, 21, 0, tzinfo=UTC), datetime(2026, 11, 25, 21, 40, tzinfo=UTC))
RESTART = datetime(2026, 11, 26, 1, 30, tzinfo=UTC)
WINDOW = (datetime(2026, 11, 25, 23, 0, tzinfo=UTC), datetime(2026, 11, 26, 0, 30, tzinfo=UTC))
SLACK = timedelta(minutes=3)
FAULT = datetime(2026, 11, 26, 3, 10, tzinfo=UTC)


def night_plan() -> Plan:
    lights = lambda f, s, n: [{"filter": f, "exposure_s": s, "count": n}]  # noqa: E731
    return parse_plan(
        {
            "version": 1,
            "name": "test-night",
            "night": {"overhead_s": 120, "slew_s": 60},
            "calibration": {
                "flats": {
                    "when": ["dusk"],
                    "filters": ["V"],
                    "count": 2,
                    "sun_alt_max_deg": -2,
                    "sun_alt_min_deg": -9,
                },
                "darks": {"bias_count": 2, "dark_count": 2},
            },
            "targets": [
                {
                    "name": "High",
                    "ra_deg": 340.0,
                    "dec_deg": 30.0,
                    "priority": 5,
                    "constraints": {"min_alt_deg": 40},
                    "steps": lights("V", 30, 2),
                },
                {
                    "name": "Low",
                    "ra_deg": 350.0,
                    "dec_deg": 40.0,
                    "priority": 1,
                    "steps": lights("R", 30, 2),
                },
                {
                    "name": "Monitor",
                    "ra_deg": 12.11,
                    "dec_deg": 85.255,
                    "priority": 2,
                    "repeat": {"every_min": 60},
                    "steps": lights("V", 20, 1),
                },
                {
                    "name": "Windowed",
                    "ra_deg": 60.0,
                    "dec_deg": 20.0,
                    "priority": 10,
                    "constraints": {
                        "windows": [[w.isoformat() for w in WINDOW]],
                        "min_alt_deg": 30,
                    },
                    "steps": lights("V", 30, 2),
                },
                {
                    "name": "Never",
                    "ra_deg": 180.0,
                    "dec_deg": -60.0,
                    "priority": 9,
                    "constraints": {"min_alt_deg": 30},
                    "steps": lights("V", 30, 1),
                },
            ],
        },
        source="test-night",
    )


def night_config(tmp_path: Path) -> Config:
    base = daemon_config(tmp_path / "data")
    sim = base.simulator
    assert sim is not None
    sim = sim.model_copy(
        update={
            "speed": SPEED,
            "camera": sim.camera.model_copy(update={"width_px": 64, "height_px": 48}),
            "sky": sim.sky.model_copy(update={"follow_sun_moon": True}),
        }
    )
    return base.model_copy(
        update={
            "simulator": sim,
            "server": base.server.model_copy(update={"port": 0}),
            "night": base.night.model_copy(update={"cooler_set_point_c": -10.0}),
            # A frame's rendering and polling cost real time, which 2000x turns into minutes:
            # 60 s of margin is 30 ms of real time, less than a loaded machine needs.
            "sequencer": base.sequencer.model_copy(update={"readout_margin_s": 600.0}),
        }
    )


async def _sleep_until(clock: ScaledClock, when: datetime) -> None:
    delta = (when - clock.now()).total_seconds()
    if delta > 0:
        await clock.sleep(delta)


async def _weather(daemon: Daemon, clock: ScaledClock) -> None:
    await daemon.started.wait()
    await _sleep_until(clock, UNSAFE[0])
    daemon.simulators.observatory.safety_monitor.set_safe(False)
    await _sleep_until(clock, UNSAFE[1])
    daemon.simulators.observatory.safety_monitor.set_safe(True)


async def _camera_fault_at(daemon: Daemon, clock: ScaledClock, when: datetime) -> None:
    """Make the next visit after ``when`` fail: every attempt to start its exposure fails
    (first try, two retries, after reconnecting), then the camera works again."""
    await daemon.started.wait()
    await _sleep_until(clock, when)
    fault = Fault(kind="ascom_error", members=frozenset({"startexposure"}), count=4)
    daemon.simulators.faults("camera").set(fault)


async def _stop_at(daemon: Daemon, clock: ScaledClock, when: datetime) -> None:
    await daemon.started.wait()
    await _sleep_until(clock, when)
    daemon.request_stop()


@pytest.fixture(scope="module")
def whole_night(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the night once for all the checks of this module."""
    tmp_path = tmp_path_factory.mktemp("night")
    config = night_config(tmp_path)
    plan = night_plan()
    # The ephemeris costs about a second: compute it before the fast clock starts.
    cached_night(config.site, NIGHT)
    start = first_event(config, plan, NIGHT) - timedelta(minutes=20)

    async def both_runs() -> tuple[NightSummary, NightSummary]:
        clock = ScaledClock(SPEED, start=start)
        first = NightRunner(Daemon(config, clock=clock, serve_api=False), plan, NIGHT)
        weather = asyncio.create_task(_weather(first.daemon, clock))
        stopper = asyncio.create_task(_stop_at(first.daemon, clock, RESTART))
        with pytest.raises(ScheduleError, match="stopped before the night ended"):
            await run_night(first, install_signal_handlers=False)
        weather.cancel()
        await asyncio.gather(weather, stopper, return_exceptions=True)
        clock2 = ScaledClock(SPEED, start=clock.now())
        second = NightRunner(Daemon(config, clock=clock2, serve_api=False), plan, NIGHT)
        fault = asyncio.create_task(_camera_fault_at(second.daemon, clock2, FAULT))
        summary = await run_night(second, install_signal_handlers=False)
        await asyncio.gather(fault, return_exceptions=True)
        return summary, first.summary

    summary, first_summary = asyncio.run(both_runs())
    db = ExposureLog(Path(config.data.directory) / "obsctl.sqlite")
    try:
        exposures = db.query("SELECT * FROM exposures ORDER BY mjd_start")
        visits = db.query("SELECT * FROM plan_visits ORDER BY id")
        sequences = db.query("SELECT * FROM sequences ORDER BY id")
        failures = db.query("SELECT * FROM failures ORDER BY id")
    finally:
        db.close()
    schedule = NightSchedule(plan, cached_night(config.site, NIGHT))
    return {
        "config": config,
        "plan": plan,
        "summary": summary,
        "first_events": first_summary.events,
        "first_summary": first_summary,
        "exposures": exposures,
        "visits": visits,
        "sequences": sequences,
        "failures": failures,
        "schedule": schedule,
    }


def _t(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(row["date_obs"]).replace(tzinfo=UTC)


def _lights(night: dict[str, Any], target: str) -> list[dict[str, Any]]:
    return [e for e in night["exposures"] if e["image_type"] == "LIGHT" and e["target"] == target]


def test_dusk_flats_while_the_sun_is_between_the_altitudes(whole_night: dict[str, Any]) -> None:
    eph = whole_night["schedule"].eph
    flats = [e for e in whole_night["exposures"] if e["image_type"] == "FLAT"]
    assert len(flats) == 2
    for frame in flats:
        sun = eph.sun_alt(_t(frame))
        assert -9.0 - 1.0 <= sun <= -2.0 + 1.0, (frame["date_obs"], sun)
        assert frame["filter"] == "V"
        # The twilight sky is bright: a dark night sky would need hours to reach the level.
        assert frame["exposure_s"] < 5.0


def test_priority_order_at_night_start(whole_night: dict[str, Any]) -> None:
    first = {name: _t(_lights(whole_night, name)[0]) for name in ("High", "Low", "Monitor")}
    assert first["High"] < first["Monitor"] < first["Low"]
    start = whole_night["schedule"].night_start
    # The first visit starts at night start; its first frame follows a slew and a filter move.
    assert start <= first["High"] <= start + timedelta(minutes=10)


def test_constraints_respected(whole_night: dict[str, Any]) -> None:
    schedule = whole_night["schedule"]
    assert _lights(whole_night, "Never") == []
    for frame in _lights(whole_night, "High"):
        assert frame["alt_deg"] >= 40.0 - 1.0
    windowed = _lights(whole_night, "Windowed")
    assert len(windowed) == 2
    for frame in windowed:
        assert WINDOW[0] <= _t(frame) <= WINDOW[1] + SLACK
        assert frame["alt_deg"] >= 30.0 - 1.0
    for frame in [e for e in whole_night["exposures"] if e["image_type"] == "LIGHT"]:
        assert schedule.night_start - SLACK <= _t(frame) <= schedule.night_end + SLACK


def test_monitoring_cadence_carries_over_the_restart(whole_night: dict[str, Any]) -> None:
    times = [_t(f) for f in _lights(whole_night, "Monitor")]
    assert len(times) >= 6  # about 11 h of night, one visit an hour, less the unsafe spell
    assert any(t < RESTART for t in times) and any(t > RESTART for t in times)
    gaps = [(b - a).total_seconds() / 60 for a, b in itertools.pairwise(times)]
    # Start to start, on the series' phase: a visit started late within the tolerance (5 %,
    # 3 min) is followed by one on time, so an interval may be that much short; a minute
    # more for the frame's start within the visit.
    assert min(gaps) >= 60.0 - 3.0 - 1.0, gaps


def test_unsafe_spell_pauses_and_resumes(whole_night: dict[str, Any]) -> None:
    lights = [e for e in whole_night["exposures"] if e["image_type"] == "LIGHT"]
    # Frames started just before the monitor said unsafe (and its 0.02 s poll, 40 simulated
    # seconds) may be kept or aborted; none may start inside the spell.
    during = [e for e in lights if UNSAFE[0] + timedelta(minutes=5) < _t(e) < UNSAFE[1]]
    assert during == []
    assert any(UNSAFE[1] < _t(e) < UNSAFE[1] + timedelta(hours=1.5) for e in lights)
    names = [name for name, _ in whole_night["first_events"]]
    assert "dispatch paused (unsafe)" in names and "dispatch resumed (safe)" in names


def test_restart_repeats_no_completed_exposure(whole_night: dict[str, Any]) -> None:
    keys = [(e["sequence_id"], e["step_index"], e["frame_index"]) for e in whole_night["exposures"]]
    assert len(keys) == len(set(keys))
    # Once-only targets: exactly one visit's frames, however the night was cut.
    assert len(_lights(whole_night, "High")) == 2
    assert len(_lights(whole_night, "Low")) == 2
    done = [v for v in whole_night["visits"] if v["kind"] == "light" and v["state"] == "done"]
    assert sorted({v["target"] for v in done}) == ["High", "Low", "Monitor", "Windowed"]
    assert [v["target"] for v in done].count("High") == 1


def test_darks_and_bias_at_dawn_match_the_night(whole_night: dict[str, Any]) -> None:
    exposures = whole_night["exposures"]
    end = whole_night["schedule"].night_end
    darks = [e for e in exposures if e["image_type"] == "DARK"]
    biases = [e for e in exposures if e["image_type"] == "BIAS"]
    lights = {e["exposure_s"] for e in exposures if e["image_type"] == "LIGHT"}
    assert {d["exposure_s"] for d in darks} == lights == {20.0, 30.0}
    assert len(darks) == 2 * len(lights) and len(biases) == 2
    assert all(_t(e) >= end for e in darks + biases)
    summary = whole_night["summary"]
    names = [name for name, _ in summary.events]
    assert names[-1] == "night done" and "parked" in names and "cooler off" in names


def test_night_events_fire_at_the_astropy_times(whole_night: dict[str, Any]) -> None:
    schedule = whole_night["schedule"]
    before = dict(whole_night["first_events"])
    after = dict(whole_night["summary"].events)
    # The jobs fire on APScheduler's wall-clock timers mapped from simulated time; they never
    # run early, and 5 min is 300 ms of real lateness at 1000x on a loaded machine.
    assert timedelta(0) <= before["night start"] - schedule.night_start < timedelta(minutes=5)
    assert timedelta(0) <= after["night end"] - schedule.night_end < timedelta(minutes=5)
    # After the restart at 01:30 the late night job runs at once (after the visit that was
    # running is adopted and finished), rather than being skipped.
    assert RESTART < after["night start"] < RESTART + timedelta(minutes=30)


def test_night_clock_starts_before_dusk(tmp_path: Path) -> None:
    config = night_config(tmp_path)
    plan = night_plan()
    first = first_event(config, plan, NIGHT)
    clock, night = night_clock(config, plan, NIGHT, speed=500.0)
    lead = first - clock.now()
    assert night == NIGHT and isinstance(clock, ScaledClock) and clock.speed == 500.0
    # 15 min of simulated lead, less what the fast clock ran meanwhile (real ms x 500)
    assert timedelta(minutes=10) < lead <= timedelta(minutes=15)
    # Without a date a fast clock takes the next night still to come.
    _, upcoming = night_clock(config, plan, None, speed=500.0)
    assert upcoming >= datetime.now(UTC).date() - timedelta(days=1)


def test_simulation_config_gives_deadlines_a_real_time_floor(tmp_path: Path) -> None:
    config = night_config(tmp_path)
    fast = simulation_config(config, 300.0)
    assert fast.sequencer.readout_margin_s == 900.0 and fast.sequencer.filter_timeout_s == 900.0
    assert simulation_config(config, 1.0).sequencer == config.sequencer


def test_simulated_sky_is_bright_at_dusk_and_dark_at_night(tmp_path: Path) -> None:
    sky = SunMoonSky(night_config(tmp_path).site, 21.0)
    dusk = sky(datetime(2026, 11, 25, 18, 30, tzinfo=UTC), 30.0, 20.0)
    night = sky(datetime(2026, 11, 26, 2, 0, tzinfo=UTC), 300.0, 20.0)
    day = sky(datetime(2026, 11, 25, 14, 0, tzinfo=UTC), 30.0, 20.0)
    assert day < dusk < 12.0 < night <= 21.0


def test_failed_visit_is_requeued(whole_night: dict[str, Any]) -> None:
    visits = [v for v in whole_night["visits"] if v["kind"] == "light"]
    failed = [v for v in visits if v["state"] == "failed"]
    assert len(failed) == 1 and failed[0]["target"] == "Monitor"
    assert "incomplete" in failed[0]["reason"]
    # The fault hits the first exposure started after FAULT, which may belong to a visit
    # begun a frame earlier.
    assert datetime.fromisoformat(failed[0]["started_utc"]) >= FAULT - SLACK
    retry = visits[visits.index(failed[0]) + 1]
    assert retry["target"] == "Monitor" and retry["state"] == "done"
    gap = datetime.fromisoformat(retry["started_utc"]) - datetime.fromisoformat(
        failed[0]["ended_utc"]
    )
    assert gap < timedelta(minutes=5)  # re-queued at once, not an hour later
    failures = whole_night["failures"]
    assert any("startexposure" in f["message"] or f["operation"] == "expose" for f in failures)


def test_summary_counts_failures_and_time_lost(whole_night: dict[str, Any]) -> None:
    """The end-of-night summary (printed, and sent as a notice) adds up what was lost."""
    first, second = whole_night["first_summary"], whole_night["summary"]
    # The 40 min unsafe spell, in the first run: noticed within a poll, resumed after
    # resume_delay_s (10 s); 3 min of slack for the clock's jitter.
    assert abs(first.unsafe_s - 40 * 60) < 3 * 60
    failed = [v for v in whole_night["visits"] if v["state"] == "failed" and v["kind"] == "light"]
    spent = sum(
        (
            datetime.fromisoformat(v["ended_utc"]) - datetime.fromisoformat(v["started_utc"])
        ).total_seconds()
        for v in failed
    )
    assert second.failed_visit_s == pytest.approx(spent) and spent > 0
    assert second.time_lost_s == second.unsafe_s + second.failed_visit_s
    night = NIGHT.isoformat()
    assert second.failures == len([f for f in whole_night["failures"] if f["night"] == night])
    assert second.failures > 0
    assert second.incomplete == []  # the failed visit was done on its retry


def test_progress_carries_cadence_across_nights(tmp_path: Path) -> None:
    db = ExposureLog(tmp_path / "obsctl.sqlite")
    try:
        first = PlanProgress(db, "p", "2026-11-25")
        end = datetime(2026, 11, 26, 6, 30, tzinfo=UTC)
        vid = first.start("Monitor", "light", 1, 1, end - timedelta(minutes=5))
        first.finish(vid, "done", end)
        vid = first.start("Monitor", "light", 2, 1, end - timedelta(hours=2))
        first.finish(vid, "failed", end - timedelta(hours=1), "sequence incomplete")
        other_plan = PlanProgress(db, "q", "2026-11-26")
        other_plan.finish(other_plan.start("Monitor", "light", 3, 1, end), "done", end)
        second = PlanProgress(db, "p", "2026-11-26")
        history = second.history()["Monitor"]
        assert (history.total, history.tonight, history.failed_tonight) == (1, 0, 0)
        assert history.last_start == end - timedelta(minutes=5)  # start to start
        assert first.history()["Monitor"].failed_tonight == 1
    finally:
        db.close()
