"""A night with weather: clouds, then rain, then clear, on a roll-off roof and a weather station.

The simulators run the weather scenario of the config (the station's values change at set
times, and its clouds dim the frames); the daemon sees the station and the roof over Alpaca
HTTP. The truth is the scenario's times and the roof's own command record (the test wraps the
simulated roof's commands to note the mount's park state at each), never the daemon's own
account: the roof closes once the telescope is parked, stays closed until the limits' waits
have passed, opens again for the plan's next frame, no light frame is exposed under a roof
that is not open, and every frame taken is on disk. The plan's flats come from a flip-flat
at dusk, under the closed roof, before the roof first opens; the night's summary tells what
the weather did.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from obsctl.clock import ScaledClock
from obsctl.config import Config
from obsctl.daemon import Daemon
from obsctl.errors import ScheduleError
from obsctl.night.ephemeris import cached_night
from obsctl.night.plan import parse_plan
from obsctl.night.runner import NightRunner, run_night
from obsctl.night.schedule import NightSchedule
from obsctl.store.exposure_log import ExposureLog

from ..daemon_helpers import daemon_config

NIGHT = date(2026, 11, 25)
SPEED = 1000.0
SHUTTER_S = 20.0
CLOUDS = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
RAIN = datetime(2026, 11, 25, 21, 30, tzinfo=UTC)
DRY = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
CLEAR = datetime(2026, 11, 25, 22, 5, tzinfo=UTC)
#: Safe again: the rain's 20 min wait after it stopped outlasts the clouds' 10 min.
SAFE = DRY + timedelta(minutes=20)
STOP = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)
RESUME = timedelta(seconds=60)  # [safety] resume_delay_s
IDLE = timedelta(seconds=120)  # the night runner's wait while unsafe
#: Simulated seconds of real jitter at 1000x (a few milliseconds of a busy loop).
SLACK = timedelta(minutes=3)


def weather_config(tmp_path: Path) -> Config:
    base = daemon_config(
        tmp_path / "data",
        safety={
            "poll_s": 0.005,
            "resume_delay_s": RESUME.total_seconds(),
            "weather": {
                "limits": [
                    {"quantity": "rain_rate_mm_h", "above": 0.0, "wait_min": 20},
                    {"quantity": "cloud_cover_pct", "above": 60, "hysteresis": 10, "wait_min": 10},
                ],
                "feed_deadline_s": 600,
            },
        },
        sequencer={"readout_margin_s": 600.0, "poll_s": 0.002},
    )
    data = base.model_dump(mode="json", exclude_unset=True)
    address = data["devices"]["camera"]["address"]
    enclosure = ("dome", "weather", "cover_calibrator")
    data["devices"] |= {r: {"driver": "alpaca", "address": address} for r in enclosure}
    data["server"]["port"] = 0
    data["simulator"] |= {
        "speed": SPEED,
        "camera": {"width_px": 64, "height_px": 48, "readout_time_s": 0.5},
        "dome": {"kind": "roll_off", "shutter_time_s": SHUTTER_S},
        # A flip-flat, closed at dusk: the panel's flats, then opened for the lights.
        "cover_calibrator": {"start_open": False, "cover_time_s": 20.0},
        "weather": {
            "update_interval_s": 30.0,
            "scenario": [
                {"at": CLOUDS.isoformat(), "cloud_cover_pct": 90},
                {"at": RAIN.isoformat(), "rain_rate_mm_h": 2.0, "humidity_pct": 80},
                {"at": DRY.isoformat(), "rain_rate_mm_h": 0.0},
                {"at": CLEAR.isoformat(), "cloud_cover_pct": 0, "humidity_pct": 50},
            ],
        },
    }
    return Config.model_validate(data)


def weather_plan() -> Any:
    return parse_plan(
        {
            "version": 1,
            "name": "weather-night",
            "night": {"overhead_s": 20, "slew_s": 30},
            "calibration": {
                "flats": {
                    "source": "panel",
                    "filters": ["V", "R"],
                    "count": 2,
                    "flat_target_adu": 20000,
                    "panel_brightness_pct": 40,
                }
            },
            "targets": [
                {
                    "name": "Monitor",
                    "ra_deg": 12.11,
                    "dec_deg": 85.255,
                    "priority": 5,
                    "repeat": {"every_min": 20},
                    "steps": [{"filter": "V", "exposure_s": 30, "count": 1}],
                },
                {
                    "name": "Filler",
                    "ra_deg": 10.0,
                    "dec_deg": 30.0,
                    "priority": 1,
                    "repeat": {"per_night": 200},
                    "steps": [{"filter": "R", "exposure_s": 60, "count": 2}],
                },
            ],
        },
        source="weather-night",
    )


async def _record_roof(daemon: Daemon, commands: list[tuple[datetime, str, bool]]) -> None:
    """Wrap the simulated roof's commands: note each with the time and the mount's park."""
    await daemon.started.wait()
    obs = daemon.simulators.observatory  # type: ignore[union-attr]
    dome, mount, clock = obs.dome, obs.mount, obs.mount.clock

    def noting(name: str, command: Any) -> Any:
        def call() -> None:
            commands.append((clock.now(), name, mount.at_park))
            command()

        return call

    dome.open_shutter = noting("open", dome.open_shutter)
    dome.close_shutter = noting("close", dome.close_shutter)


async def _stop_at(daemon: Daemon, clock: ScaledClock, when: datetime) -> None:
    await daemon.started.wait()
    delta = (when - clock.now()).total_seconds()
    await clock.sleep(max(delta, 0.0))
    daemon.request_stop()


@pytest.fixture(scope="module")
def weather_night(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    config = weather_config(tmp_path_factory.mktemp("weather-night"))
    plan = weather_plan()
    night_start = NightSchedule(plan, cached_night(config.site, NIGHT)).night_start
    assert night_start is not None
    start = night_start - timedelta(minutes=30)  # the panel's flats come first
    commands: list[tuple[datetime, str, bool]] = []
    runners: list[NightRunner] = []

    async def night() -> None:
        clock = ScaledClock(SPEED, start=start)
        runner = NightRunner(Daemon(config, clock=clock, serve_api=False), plan, NIGHT)
        runners.append(runner)
        tasks = [
            asyncio.create_task(_record_roof(runner.daemon, commands)),
            asyncio.create_task(_stop_at(runner.daemon, clock, STOP)),
        ]
        with pytest.raises(ScheduleError, match="stopped before the night ended"):
            await run_night(runner, install_signal_handlers=False)
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(night())
    db = ExposureLog(Path(config.data.directory) / "obsctl.sqlite")
    try:
        exposures = db.query("SELECT * FROM exposures ORDER BY mjd_start")
    finally:
        db.close()
    return {
        "config": config,
        "commands": commands,
        "exposures": exposures,
        "weather": runners[0].summary.weather,
        "night_start": night_start,
    }


def _start(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(row["date_obs"]).replace(tzinfo=UTC)


def test_the_roof_closes_over_a_parked_telescope_when_the_clouds_come(
    weather_night: dict[str, Any],
) -> None:
    commands = weather_night["commands"]
    closes = [(t, parked) for t, name, parked in commands if name == "close"]
    first_close = next(t for t, _ in closes if t >= CLOUDS)
    assert CLOUDS <= first_close < CLOUDS + SLACK
    assert all(parked for _, parked in closes), closes


def test_it_stays_closed_through_the_rain_and_opens_after_the_waits(
    weather_night: dict[str, Any],
) -> None:
    commands = weather_night["commands"]
    opens = [t for t, name, _ in commands if name == "open"]
    assert opens and opens[0] < CLOUDS  # opened for the first frame of the night
    assert not [t for t in opens if CLOUDS <= t < SAFE]
    reopened = [t for t in opens if t >= SAFE]
    # Safe once the resume delay has passed too; the runner looks again within its idle wait.
    assert reopened and reopened[0] < SAFE + RESUME + IDLE + SLACK


def test_no_light_frame_under_a_roof_that_is_not_open(weather_night: dict[str, Any]) -> None:
    # The roof is open from an open command plus its travel until the next close command.
    commands = sorted(weather_night["commands"])
    open_spans = []
    for i, (t, name, _) in enumerate(commands):
        if name == "open":
            later = [u for u, n, _ in commands[i + 1 :] if n == "close"]
            open_spans.append((t + timedelta(seconds=SHUTTER_S), later[0] if later else STOP))
    lights = [e for e in weather_night["exposures"] if e["image_type"] == "LIGHT"]
    assert len(lights) > 20
    for frame in lights:
        start = _start(frame)
        end = start + timedelta(seconds=frame["exposure_s"])
        assert any(a <= start and end <= b for a, b in open_spans), (frame["id"], start)
    # Frames before the clouds and after the all-clear: the plan went on.
    assert any(_start(e) < CLOUDS for e in lights)
    assert any(_start(e) > SAFE for e in lights)


def test_every_frame_taken_is_on_disk(weather_night: dict[str, Any]) -> None:
    exposures = weather_night["exposures"]
    root = Path(weather_night["config"].data.directory)
    missing = [e["file_path"] for e in exposures if not (root / e["file_path"]).exists()]
    assert exposures and not missing


def test_the_night_summary_tells_what_the_weather_did_and_why(
    weather_night: dict[str, Any],
) -> None:
    lines = weather_night["weather"]
    # The first opening, for the night's first frame; then the clouds' close, in order.
    assert lines[0].endswith("roof opened: safe, for a sky frame"), lines
    unsafe = next(i for i, line in enumerate(lines) if "unsafe: cloud cover 90 %" in line)
    parked = next(i for i, line in enumerate(lines) if "mount parked: " in line)
    closed = next(i for i, line in enumerate(lines) if "roof closed: " in line)
    safe = next(i for i, line in enumerate(lines) if "safe again" in line)
    reopened = next(i for i, line in enumerate(lines[1:], 1) if "roof opened" in line)
    assert unsafe < parked < closed < safe < reopened, lines
    assert any("rain" in line for line in lines[unsafe:safe]), lines
    # Each line carries the observatory time it happened at.
    assert lines[unsafe].startswith(f"{CLOUDS:%H}:0"), lines


def test_panel_flats_at_dusk_under_the_closed_roof_before_the_first_opening(
    weather_night: dict[str, Any],
) -> None:
    flats = [e for e in weather_night["exposures"] if e["image_type"] == "FLAT"]
    assert sorted(e["filter"] for e in flats) == ["R", "R", "V", "V"]
    first_open = min(t for t, name, _ in weather_night["commands"] if name == "open")
    night_start = weather_night["night_start"]
    for frame in flats:
        end = _start(frame) + timedelta(seconds=frame["exposure_s"])
        assert end <= first_open and end <= night_start, (frame["id"], _start(frame))
