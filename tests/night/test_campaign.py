"""Three nights in a row from one ``obsctl run --plan`` on a fast simulated clock.

``obsctl run --plan PLAN --date 2026-12-10 --speed 5000 --nights 3`` runs in this process
(the CLI's ``main``) against the Alpaca simulators it starts, while an operator thread talks
to it only as a person would: over the control API (``/api/status``, ``POST /api/too``) and by
editing the plan file. Between the first and the second night a target is added to the plan
(it must be observed from the second night on, never on the first); in the second night a
target of opportunity is posted while a long visit runs (it must pre-empt it between two
frames, and the visit must be resumed, not repeated); before the third night an invalid edit
is written (it must be refused, with its reason on the status and in a notice, and the plan
in force kept). The checks read the database, the notices a real webhook received and the
file the start and end hooks wrote (one end hook fails and one times out, every night).

About 50 s of real time: a day is 17 s at 5000x; on a loaded machine a frame costs 0.1 to
0.2 s of real time, a quarter of an hour of simulated time, hence the few frames of the plan
(at 10000x a loaded machine could leave no time for the last target of the third night).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from obsctl.cli import main as cli_main
from obsctl.config import SiteConfig
from obsctl.night.ephemeris import cached_night
from obsctl.store.exposure_log import ExposureLog

from ..daemon_helpers import LONGITUDE, free_port
from .campaign_helpers import get_json, post_json, receiving, write_daemon_config

NIGHTS = ["2026-12-10", "2026-12-11", "2026-12-12"]
SPEED = 5000.0

PLAN = """\
version = 1
name = "campaign"
[night]
overhead_s = 30
slew_s = 60
[calibration.flats]
when = ["dusk"]
filters = ["V"]
count = 1
[calibration.darks]
bias_count = 1
dark_count = 1

[[targets]]
name = "Alpha"
ra_deg = 60.0
dec_deg = 30.0
priority = 2
constraints = {min_alt_deg = 30}
repeat = {per_night = 1}
steps = [{filter = "V", exposure_s = 20, count = 6}]

[[targets]]
name = "Beta"
ra_deg = 100.0
dec_deg = 20.0
priority = 1
constraints = {min_alt_deg = 30}
repeat = {per_night = 1}
steps = [{filter = "R", exposure_s = 20, count = 1}]
"""

# Up from dusk to about 4 h after midnight (at 30 deg it set before midnight, and a loaded
# machine, 0.9 s of real time a frame at 5000x, had not reached it by then).
GAMMA = """
[[targets]]
name = "Gamma"
ra_deg = 80.0
dec_deg = 25.0
priority = 1
constraints = {{min_alt_deg = {min_alt}}}
repeat = {{per_night = 1}}
steps = [{{filter = "V", exposure_s = 20, count = 1}}]
"""


def _until(
    status: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            found = status()
        except OSError:  # the API is not up yet
            time.sleep(0.05)
            continue
        if done(found):
            return found
        time.sleep(0.025)  # not faster: each status reads every device
    raise AssertionError(f"timed out waiting for {what}")


def _step(found: dict[str, Any]) -> dict[str, Any]:
    night = found.get("night") or {}
    return night.get("step") or {}


def operator(api: str, plan: Path, seen: dict[str, Any], errors: list[BaseException]) -> None:
    """Edit the plan, post a target of opportunity and watch the status, over the API."""
    try:
        status = lambda: get_json(f"{api}/api/status")  # noqa: E731
        # After the first night: a new target.
        _until(
            status,
            lambda s: (
                _step(s).get("night") == NIGHTS[1]
                or (_step(s).get("night") == NIGHTS[0] and _step(s).get("doing") == "night done")
            ),
            "the end of the first night",
        )
        plan.write_text(PLAN + GAMMA.format(min_alt=30))
        # In the second night, while the long visit of Alpha runs: a target of opportunity.
        found = _until(
            status,
            lambda s: (
                _step(s).get("night") == NIGHTS[1]
                and _step(s).get("target") == "Alpha"
                # Early in the visit: the pre-emption waits for the end of a frame, and
                # the schedule is evaluated again with the new target first (0.1 s of real
                # time, near an hour of simulated time at this speed).
                and 1 <= (s["activity"].get("frame_index") or 0) <= 2
            ),
            "Alpha observed in the second night",
        )
        mount = found["devices"]["mount"]
        too = {
            "name": "Opportunity",
            "ra_deg": (mount["ra_deg"] + 3.0) % 360.0,
            "dec_deg": mount["dec_deg"],
            "priority": 10,
            "steps": [{"filter": "V", "exposure_s": 10, "count": 1}],
        }
        seen["too"] = post_json(f"{api}/api/too", too)
        seen["too_bad"] = post_json(f"{api}/api/too", {**too, "name": "Bad", "dec_deg": 95})
        seen["too_taken"] = post_json(f"{api}/api/too", {**too, "name": "Alpha"})
        # Before the third night: an invalid edit, refused; the plan in force stays.
        _until(status, lambda s: _step(s).get("night") == NIGHTS[2], "the third night's runner")
        plan.write_text(PLAN + GAMMA.format(min_alt=95))
        found = _until(
            status, lambda s: (s.get("night") or {}).get("refused_edit"), "the refused edit"
        )
        seen["refused"] = found["night"]["refused_edit"]
        seen["plan_after_refusal"] = found["night"]["plan"]
    except BaseException as exc:
        errors.append(exc)


@pytest.fixture(scope="module")
def three_nights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("campaign")
    site = SiteConfig(name="Test", latitude_deg=28.76, longitude_deg=LONGITUDE, elevation_m=2326)
    for night in NIGHTS:  # a few seconds each: not on the fast clock
        cached_night(site, date.fromisoformat(night))
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    hooks_file = tmp_path / "hooks.txt"
    hook = f'echo "$0 $(date +%s)" >> {hooks_file}'
    api_port = free_port()
    with receiving() as receiver:
        extra = f"""
[night]
cooler_set_point_c = -10.0
start_hooks = [{{command = ["/bin/sh", "-c", '{hook}', "start"], timeout_s = 10}}]
end_hooks = [
    {{command = ["/bin/sh", "-c", '{hook}', "end"], timeout_s = 10}},
    {{command = ["/bin/sh", "-c", "exit 3"]}},
    {{command = ["/bin/sh", "-c", "sleep 5"], timeout_s = 0.3}},
]
[notifications]
sinks = [{{kind = "webhook", url = "{receiver.url}"}}]
settle_s = 600
"""
        config = write_daemon_config(tmp_path, api_port=api_port, extra=extra)
        seen: dict[str, Any] = {}
        errors: list[BaseException] = []
        api = f"http://127.0.0.1:{api_port}"
        thread = threading.Thread(target=operator, args=(api, plan, seen, errors), daemon=True)
        thread.start()
        code = cli_main(
            [
                "--config",
                str(config),
                "run",
                "--plan",
                str(plan),
                "--date",
                NIGHTS[0],
                "--speed",
                str(SPEED),
                "--nights",
                "3",
            ]
        )
        thread.join(10)
        notices = receiver.notices()
    db = ExposureLog(tmp_path / "data" / "obsctl.sqlite")
    try:
        exposures = db.query("SELECT * FROM exposures ORDER BY id")
        visits = db.query("SELECT * FROM plan_visits ORDER BY id")
    finally:
        db.close()
    hooks = hooks_file.read_text().split("\n") if hooks_file.exists() else []
    return {
        "code": code,
        "errors": errors,
        "seen": seen,
        "notices": notices,
        "exposures": exposures,
        "visits": visits,
        "hooks": [h.split()[0] for h in hooks if h],
    }


def test_three_nights_run_and_the_command_succeeds(three_nights: dict[str, Any]) -> None:
    assert not three_nights["errors"], three_nights["errors"]
    assert three_nights["code"] == 0
    nights = {e["night"] for e in three_nights["exposures"]}
    assert nights == set(NIGHTS)
    for night in NIGHTS:
        taken = Counter(e["image_type"] for e in three_nights["exposures"] if e["night"] == night)
        # Lights, the dawn's darks and bias (one dark per light exposure time).
        assert taken["LIGHT"] > 0 and taken["BIAS"] == 1 and taken["DARK"] >= 1, (night, taken)


def test_dusk_and_dawn_of_every_night_once(three_nights: dict[str, Any]) -> None:
    """Every night started and ended once: notices, hooks and the dawn's calibration."""
    notices = three_nights["notices"]
    starts = [n["night"] for n in notices if n["state"] == "start"]
    ends = [n["night"] for n in notices if n["state"] == "end"]
    assert starts == NIGHTS and ends == NIGHTS
    # The end notice carries the night's summary.
    end = next(n for n in notices if n["state"] == "end")
    assert end["frames"]["LIGHT"] > 0 and end["failures"] == 0 and end["time_lost_s"] == 0
    assert three_nights["hooks"] == ["start", "end"] * 3
    # The end hooks that failed and timed out were told, once each night; the nights went on.
    failed = [(n["night"], n["message"]) for n in notices if n["state"] == "failed"]
    assert [night for night, _ in failed] == [n for n in NIGHTS for _ in range(2)]
    assert "exit status 3" in failed[0][1] and "timed out after 0.3 s" in failed[1][1]
    for night in NIGHTS:
        darks = [v for v in three_nights["visits"] if v["night"] == night and v["kind"] == "darks"]
        assert [v["state"] for v in darks] == ["done"], night


def test_no_frame_taken_twice(three_nights: dict[str, Any]) -> None:
    keyed = Counter(
        (e["sequence_id"], e["step_index"], e["frame_index"])
        for e in three_nights["exposures"]
        if e["sequence_id"] is not None
    )
    assert max(keyed.values()) == 1
    assert len({e["date_obs"] for e in three_nights["exposures"]}) == len(three_nights["exposures"])
    for night in NIGHTS:
        alpha = [
            e for e in three_nights["exposures"] if e["night"] == night and e["target"] == "Alpha"
        ]
        assert len(alpha) == 6, night  # one whole visit, however it was cut


def test_edited_plan_counts_from_the_next_decision_point(three_nights: dict[str, Any]) -> None:
    done = Counter(
        (v["night"], v["target"])
        for v in three_nights["visits"]
        if v["kind"] == "light" and v["state"] == "done"
    )
    assert done[(NIGHTS[0], "Gamma")] == 0
    assert done[(NIGHTS[1], "Gamma")] == 1
    # The invalid edit of the third night was refused: the plan with Gamma stayed in force.
    assert done[(NIGHTS[2], "Gamma")] == 1
    for night in NIGHTS:
        assert done[(night, "Alpha")] == 1 and done[(night, "Beta")] == 1


def test_invalid_edit_refused_with_its_reason(three_nights: dict[str, Any]) -> None:
    seen = three_nights["seen"]
    assert "min_alt_deg" in seen["refused"]["reason"]
    assert seen["plan_after_refusal"] == "campaign"
    refused = [n for n in three_nights["notices"] if n["state"] == "refused"]
    assert len(refused) == 1 and "min_alt_deg" in refused[0]["message"]


def test_target_of_opportunity_preempts_between_frames(three_nights: dict[str, Any]) -> None:
    seen = three_nights["seen"]
    assert seen["too"] == (
        201,
        {"name": "Opportunity", "priority": 10, "night": NIGHTS[1]},
    )
    status, body = seen["too_bad"]
    assert status == 400 and "dec_deg" in body["error"]
    status, body = seen["too_taken"]
    assert status == 409 and "already in use" in body["error"]
    night2 = [e for e in three_nights["exposures"] if e["night"] == NIGHTS[1]]
    alpha = [e["date_obs"] for e in night2 if e["target"] == "Alpha"]
    too = [e["date_obs"] for e in night2 if e["target"] == "Opportunity"]
    assert len(too) == 1
    # Pre-empted: some of Alpha's frames before the target of opportunity, the rest after.
    assert min(alpha) < min(too) and max(too) < max(alpha)
    visits = [v for v in three_nights["visits"] if v["target"] == "Opportunity"]
    assert [(v["night"], v["state"]) for v in visits] == [(NIGHTS[1], "done")]
