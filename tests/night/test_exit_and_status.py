"""Exit codes of ``obsctl night`` and ``obsctl run --until-idle``; ``obsctl status`` of a plan."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from obsctl.acquisition.sequence import ExposureStep, Sequence
from obsctl.cli import main as cli_main
from obsctl.config import load_config
from obsctl.night.control import NightControl
from obsctl.night.plan import parse_plan
from obsctl.store.datadir import DataDir

from ..daemon_helpers import daemon_config, free_port, overhead_target, running_daemon
from .campaign_helpers import get_json, post_json, write_daemon_config

PLAN = """\
version = 1
name = "faulty"
[night]
overhead_s = 30
[calibration.darks]
bias_count = 1
dark_count = 1
[[targets]]
name = "Alpha"
ra_deg = 255.0
dec_deg = 30.0
constraints = {min_alt_deg = 30}
steps = [{filter = "V", exposure_s = 20, count = 2}]
"""


def _break_the_camera(api: str, sim_port: int, errors: list[BaseException]) -> None:
    """Once the daemon answers, make every exposure start fail (an ASCOM error)."""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                get_json(f"{api}/api/status")
                break
            except OSError:
                time.sleep(0.05)
        request = urllib.request.Request(
            f"http://127.0.0.1:{sim_port}/sim/v1/camera/0/fault",
            data=json.dumps({"kind": "ascom_error", "members": ["startexposure"]}).encode(),
            headers={"Content-Type": "application/json"},
            method="PUT",
        )
        with urllib.request.urlopen(request, timeout=10):
            pass
    except BaseException as exc:
        errors.append(exc)


def test_night_exits_non_zero_when_its_work_ended_incomplete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api_port = free_port()
    config = write_daemon_config(tmp_path, api_port=api_port)
    sim = load_config(config).simulator
    assert sim is not None
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    errors: list[BaseException] = []
    api = f"http://127.0.0.1:{api_port}"
    thread = threading.Thread(target=_break_the_camera, args=(api, sim.port, errors))
    thread.start()
    argv = ["--config", str(config), "night", "--plan", str(plan), "--date", "2026-06-10"]
    code = cli_main([*argv, "--speed", "5000"])
    thread.join(10)
    out = capsys.readouterr().out
    assert not errors
    assert code == 1, out
    assert "incomplete: Alpha: failed (sequence incomplete)" in out
    assert "incomplete: darks and bias: failed" in out
    assert "night 2026-06-10 done:" in out and "0 LIGHT" not in out


def test_run_until_idle_exits_non_zero_for_a_resumed_sequence_left_incomplete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sequence queued before the start (by the last run, or the API) counts too."""
    config = write_daemon_config(tmp_path, api_port=free_port())
    data = DataDir(load_config(config).data.directory)
    data.create()
    db = data.open_log()
    try:
        sequence = Sequence(
            name="left over",
            target=overhead_target(),
            steps=(ExposureStep(image_type="LIGHT", filter="Ha", exposure_s=1.0, count=1),),
        )
        sid = db.add_sequence(sequence.name, sequence.model_dump_json())
    finally:
        db.close()
    code = cli_main(["--config", str(config), "run", "--until-idle"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"sequence 'left over' (#{sid}) ended incomplete" in err and "'Ha'" in err


def test_run_options_of_plans_need_a_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["run", "--nights", "2"]) == 2
    assert "--nights: goes with --plan" in capsys.readouterr().err
    assert cli_main(["run", "--plan", "p.toml", "--until-idle"]) == 2
    assert "--until-idle do not go with it" in capsys.readouterr().err


async def test_status_shows_the_plan_step_and_each_device_health(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = daemon_config(tmp_path / "data")
    async with running_daemon(config) as daemon:
        api = daemon.api_url
        assert api is not None
        # Without a plan: no step, and no target of opportunity can be posted.
        body: dict[str, Any] = {"name": "SN", "ra_deg": 1, "dec_deg": 2, "steps": [{"count": 1}]}
        status, reply = await asyncio.to_thread(post_json, f"{api}/api/too", body)
        assert status == 409 and "no plan is being run" in reply["error"]
        plan = parse_plan(
            {
                "version": 1,
                "name": "demo",
                "targets": [
                    {"name": "M 31", "catalog": "M 31", "steps": [{"exposure_s": 5, "count": 1}]}
                ],
            }
        )
        control = NightControl(plan)
        control.publish = daemon.running.events.publish
        daemon.night_control = control
        until = datetime(2026, 11, 25, 22, 10, tzinfo=UTC)
        control.set_step("2026-11-25", "observing M 31", until=until, target="M 31")
        control.refuse("plan.toml: targets[0].priority: too high", until - timedelta(hours=1))
        code = await asyncio.to_thread(cli_main, ["status", "--url", api])
        found = await asyncio.to_thread(get_json, f"{api}/api/status")
    out = capsys.readouterr().out
    assert code == 0
    assert "plan      'demo' night 2026-11-25: observing M 31 until 2026-11-25 22:10:00 UTC" in out
    assert (
        "plan      edit refused at 2026-11-25 21:10:00 UTC, plan kept: plan.toml: "
        "targets[0].priority: too high"
    ) in out
    for role in ("camera", "filter_wheel", "mount", "safety_monitor"):
        assert f"health    {role} connected" in out
    assert found["night"]["step"] == {
        "night": "2026-11-25",
        "doing": "observing M 31",
        "until": "2026-11-25T22:10:00.000+00:00",
        "target": "M 31",
    }
