"""Exposure goals across nights: frames graded D are taken again (issue 22).

``obsctl run --plan PLAN --nights 3`` on a fast simulated clock with the per-frame pipeline
on: two targets with goals of accepted frames, one visit a night each. A cloudy spell of
3 mag covers the second night's visits, so the pipeline grades those frames D (or cannot
measure them at all); they must not count, the third night must take them again, and by
the end every goal is met with accepted frames only. ``obsctl plan status`` then shows the
progress from the database. About a minute of real time.

The second target accepts grades A and B only: on its small field the cloud leaves too few
stars for a zero point, and the grade, from seeing and star count alone, can stay at C.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from obsctl.cli import main as cli_main
from obsctl.config import SiteConfig
from obsctl.night.ephemeris import cached_night
from obsctl.night.plan import load_plan
from obsctl.night.progress import PlanProgress
from obsctl.store.exposure_log import ExposureLog

from ..daemon_helpers import LONGITUDE, free_port

NIGHTS = ["2026-12-10", "2026-12-11", "2026-12-12"]
SPEED = 8000.0
# The second night's visits happen at its start (19:0x UTC): cloud from 18:00 to 23:00.
SPELL = (datetime(2026, 12, 11, 18, tzinfo=UTC), datetime(2026, 12, 11, 23, tzinfo=UTC))

PLAN = """\
version = 1
name = "goals"
[night]
overhead_s = 10
slew_s = 30
[calibration.darks]
bias_count = 1
dark_count = 1

[[targets]]
name = "North field"
ra_deg = 12.1
dec_deg = 85.2
priority = 2
repeat = {per_night = 1}
goal = {frames = 4}
steps = [{filter = "V", exposure_s = 30, count = 2}]

[[targets]]
name = "Perseus field"
ra_deg = 50.0
dec_deg = 45.0
priority = 1
constraints = {min_alt_deg = 30}
repeat = {per_night = 1}
goal = {per_filter = {V = 2, R = 2}, max_grade = "B"}
steps = [{filter = "V", exposure_s = 30, count = 1}, {filter = "R", exposure_s = 30, count = 1}]
"""


def write_config(directory: Path) -> Path:
    sim_port = free_port()
    devices = "".join(
        f'[devices.{role}]\ndriver = "alpaca"\naddress = "127.0.0.1:{sim_port}"\n'
        "timeout_s = 1.0\nconnect_timeout_s = 2.0\ndownload_timeout_s = 5.0\n"
        for role in ("camera", "filter_wheel", "mount", "safety_monitor")
    )
    text = f"""\
version = 1
[site]
name = "Test"
latitude_deg = 28.76
longitude_deg = {LONGITUDE}
elevation_m = 2326
[telescope]
name = "Test scope"
focal_length_mm = 800
aperture_mm = 200
[data]
directory = "{directory / "data"}"
[server]
host = "127.0.0.1"
port = {free_port()}
{devices}
[sequencer]
poll_s = 0.005
backoff_s = 1.0
[pipeline]
enabled = true
workers = 1
reference_catalog = "synthetic"
[safety]
poll_s = 0.02
read_timeout_s = 0.5
[simulator]
start = "always"
port = {sim_port}
discovery_port = 0
speed = 100.0
[simulator.camera]
width_px = 256
height_px = 256
readout_time_s = 0.5
[simulator.sky]
star_density_per_deg2 = 20000.0
[[simulator.sky.clouds.spells]]
start = {SPELL[0].isoformat()}
end = {SPELL[1].isoformat()}
extinction_mag = 3.0
"""
    path = directory / "obsctl.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def three_nights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("goals")
    site = SiteConfig(name="Test", latitude_deg=28.76, longitude_deg=LONGITUDE, elevation_m=2326)
    for night in NIGHTS:  # a few seconds each: not on the fast clock
        cached_night(site, date.fromisoformat(night))
    plan_path = tmp_path / "plan.toml"
    plan_path.write_text(PLAN)
    config = write_config(tmp_path)
    base = ["--config", str(config)]
    run = ["run", "--plan", str(plan_path), "--date", NIGHTS[0], "--speed", str(SPEED)]
    code = cli_main([*base, *run, "--nights", "3"])
    db = ExposureLog(tmp_path / "data" / "obsctl.sqlite")
    try:
        plan = load_plan(plan_path)
        progress = PlanProgress(db, plan.name, NIGHTS[2])
        verdicts = {t.name: progress.frame_verdicts(t) for t in plan.targets}
        history = progress.history(plan)
    finally:
        db.close()
    return {
        "code": code,
        "verdicts": verdicts,
        "history": history,
        "status_args": [*base, "plan", "status", str(plan_path), "--night", NIGHTS[2]],
    }


def test_every_goal_is_met_with_accepted_frames_only(three_nights: dict[str, Any]) -> None:
    assert three_nights["code"] == 0
    verdicts = three_nights["verdicts"]
    goals = {"North field": {"V": 4}, "Perseus field": {"V": 2, "R": 2}}
    for name, goal in goals.items():
        accepted = Counter(v["filter"] for v in verdicts[name] if v["verdict"] == "accepted")
        assert dict(accepted) == goal, (name, verdicts[name])
        assert not [v for v in verdicts[name] if v["verdict"] == "pending"]
        assert three_nights["history"][name].counted == goal


def test_frames_under_the_cloud_were_rejected_and_taken_again(
    three_nights: dict[str, Any],
) -> None:
    for name, frames in three_nights["verdicts"].items():
        by_night = {n: [v for v in frames if v["night"] == n] for n in NIGHTS}
        # Clear first night: all accepted. The cloudy second night: none.
        assert by_night[NIGHTS[0]] and all(v["verdict"] == "accepted" for v in by_night[NIGHTS[0]])
        assert by_night[NIGHTS[1]], name
        assert all(v["verdict"] == "rejected" for v in by_night[NIGHTS[1]]), by_night[NIGHTS[1]]
        # The third night retook exactly what the cloud cost.
        retaken = Counter(v["filter"] for v in by_night[NIGHTS[2]])
        lost = Counter(v["filter"] for v in by_night[NIGHTS[1]])
        assert retaken == lost, (name, retaken, lost)
        assert all(v["verdict"] == "accepted" for v in by_night[NIGHTS[2]])


def test_plan_status_shows_the_goals(
    three_nights: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(three_nights["status_args"]) == 0
    out = capsys.readouterr().out
    assert "North field: 3 visit(s) done, 1 on 2026-12-12" in out
    assert "goal V: 4/4 accepted, 0 pending, 2 rejected (" in out
    assert "goal R: 2/2 accepted, 0 pending, 1 rejected (" in out
    assert out.count(": met") == 3
