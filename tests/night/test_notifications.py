"""Start and end hooks, and operational notices through a real webhook, de-duplicated."""

from __future__ import annotations

import asyncio
import sys
import time
import tomllib
from datetime import date
from pathlib import Path

from obsctl.clock import ScaledClock
from obsctl.config import HookConfig, NotificationsConfig, WebhookSinkConfig
from obsctl.errors import ConfigError, ScheduleError
from obsctl.events import EventBus
from obsctl.night.control import NightControl, PlanSource, run_hooks
from obsctl.night.plan import parse_plan
from obsctl.notify import Notifier

from .campaign_helpers import receiving

# -- hooks --------------------------------------------------------------------------------


async def test_hooks_run_in_order_and_a_failure_or_timeout_does_not_stop_them(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran.txt"
    late = tmp_path / "late.txt"
    hooks = [
        HookConfig(command=("/bin/sh", "-c", f'echo "$0" >> {marker}', "first")),
        HookConfig(command=("/bin/sh", "-c", "echo 'dome jammed' >&2; exit 3")),
        # A shell whose child outlives it: the whole group is killed at the deadline.
        HookConfig(command=("/bin/sh", "-c", f"sleep 3; touch {late}"), timeout_s=0.3),
        HookConfig(command=("/nonexistent/roof-open",)),
        HookConfig(command=(sys.executable, "-c", f"open({str(marker)!r}, 'a').write('last\\n')")),
    ]
    bus = EventBus()
    started = time.monotonic()
    results = await run_hooks(hooks, "start", "2026-12-10", bus.publish)
    assert time.monotonic() - started < 2.5  # the sleeping hook did not hold the night
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert results[1].reason == "exit status 3: dome jammed"
    assert results[2].reason == "timed out after 0.3 s (killed)"
    assert results[3].reason.startswith("cannot start: ")
    assert marker.read_text().split() == ["first", "last"]
    await asyncio.sleep(3.2)
    assert not late.exists()  # killed with its shell, not orphaned
    events = [e for e in bus.recent if e["kind"] == "hook"]
    assert [(e["index"], e["ok"], e["when"], e["night"]) for e in events] == [
        (0, True, "start", "2026-12-10"),
        (1, False, "start", "2026-12-10"),
        (2, False, "start", "2026-12-10"),
        (3, False, "start", "2026-12-10"),
        (4, True, "start", "2026-12-10"),
    ]


# -- plan edits and targets of opportunity -------------------------------------------------

PLAN = """\
version = 1
name = "edits"
[[targets]]
name = "A"
ra_deg = 10.0
dec_deg = 20.0
steps = [{filter = "V", exposure_s = 10, count = 1}]
"""


def test_plan_source_takes_valid_edits_and_refuses_invalid_ones(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(PLAN)
    control = NightControl.from_file(path)
    bus = EventBus()
    control.publish = bus.publish
    now = ScaledClock(1.0).now()
    assert control.poll(now) is None  # unchanged: not read again
    path.write_text(PLAN.replace("count = 1", "count = 2"))
    edited = control.poll(now)
    assert edited is not None and edited.targets[0].steps[0].count == 2
    control.accept(edited, now)
    path.write_text(PLAN.replace("dec_deg = 20.0", "dec_deg = 95.0"))
    assert control.poll(now) is None
    assert control.refused is not None and "targets[0] (A).dec_deg" in control.refused["reason"]
    assert control.plan is edited  # kept
    # A filter the wheel lacks is refused too, once the wheel is known.
    control.wheel = ["V", "R"]
    path.write_text(PLAN.replace('filter = "V"', 'filter = "Ha"'))
    assert control.poll(now) is None
    assert "no filter 'Ha' in the wheel" in control.refused["reason"]
    refusals = [e for e in bus.recent if e["kind"] == "plan" and e["state"] == "refused"]
    assert len(refusals) == 2
    path.unlink()
    assert control.poll(now) is None and "cannot be read" in control.refused["reason"]


def test_target_of_opportunity_is_validated_like_a_plan_target(tmp_path: Path) -> None:
    control = NightControl(parse_plan(tomllib.loads(PLAN)))
    control.wheel = ["V"]
    step = {"exposure_s": 5, "count": 1}
    good = {"name": "SN", "ra_deg": 30, "dec_deg": 10, "priority": 20, "steps": [step]}
    target = control.post_target(good, "2026-12-10")
    assert target.priority == 20 and control.too_version == 1
    bad_cases = [
        ({**good, "name": "X", "priority": 0}, "priority"),
        ({**good, "name": "X", "steps": [{**step, "image_type": "DARK"}]}, "LIGHT"),
        ({**good, "name": "X", "colour": "red"}, "colour"),
        ({**good, "name": "X", "steps": [{**step, "filter": "Ha"}]}, "no filter 'Ha'"),
    ]
    for body, word in bad_cases:
        try:
            control.post_target(body, "2026-12-10")
        except ConfigError as exc:
            assert word in str(exc)
        else:
            raise AssertionError(f"accepted {body}")
    for name in ("A", "SN"):  # a plan target's name, another target of opportunity's
        try:
            control.post_target({**good, "name": name}, "2026-12-10")
        except ScheduleError as exc:
            assert "already in use" in str(exc)
        else:
            raise AssertionError(name)
    assert [t.name for t in control.targets_of_opportunity(date(2026, 12, 10))] == ["SN"]
    assert control.targets_of_opportunity(date(2026, 12, 11)) == ()
    control.drop_before(date(2026, 12, 11))
    assert control.status()["targets_of_opportunity"] == []


def test_plan_source_rejects_an_invalid_plan_at_start(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(PLAN.replace("version = 1", "version = 7"))
    try:
        PlanSource(path)
    except ConfigError as exc:
        assert "version" in str(exc)
    else:
        raise AssertionError("accepted")


# -- notices ------------------------------------------------------------------------------


async def test_notices_reach_a_webhook_once_per_change_and_flapping_is_one_notice() -> None:
    clock = ScaledClock(1000.0)  # settle_s of 300 s is 0.3 s of real time
    bus = EventBus()
    with receiving() as receiver:
        config = NotificationsConfig(
            sinks=(WebhookSinkConfig(kind="webhook", url=receiver.url),), settle_s=300.0
        )
        notifier = Notifier(config, bus, clock)
        task = asyncio.create_task(notifier.run())
        try:
            await asyncio.sleep(0.05)
            bus.publish("safety", safe=True, reason="safety monitor says safe")  # normal: silent
            # A mount that flaps: down, up, down, up within the settle time...
            for state in ("down", "up", "down", "up"):
                bus.publish("device", role="mount", state=state, reason="connection refused")
                await clock.sleep(20.0)
            # ... the weather too, with the same unsafe reason told twice.
            bus.publish("safety", safe=False, reason="rain")
            bus.publish("safety", safe=False, reason="rain")
            bus.publish("safety", safe=True, reason="dry")
            bus.publish("safety", safe=False, reason="rain")
            bus.publish("safety", safe=True, reason="dry")
            for _ in range(2):  # a night's start and end are told once each
                bus.publish("night", event="dusk", night="2026-12-10", plan="p")
                bus.publish(
                    "night_summary",
                    night="2026-12-10",
                    plan="p",
                    frames={"LIGHT": 12, "DARK": 2},
                    failures=1,
                    time_lost_s=1800.0,
                    unsafe_s=1800.0,
                    incomplete=[],
                )
            bus.publish("hook", when="end", night="2026-12-10", index=0, ok=False, reason="exit 3")
            # The supervisor's actions are told as they happen, with why.
            bus.publish("mount", action="park", reason="rain")
            await clock.sleep(5.0)
            bus.publish("dome", action="close", reason="rain")
            bus.publish("frame", id=1)  # no news
            await clock.sleep(600.0)  # past the settle time: the returns are told
            bus.publish("device", role="mount", state="down", reason="timeout")  # a new change
            await clock.sleep(50.0)
            await notifier.flush()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        told = [(n["condition"], n["state"]) for n in receiver.notices()]
    assert sorted(told[:2]) == [("device mount", "down"), ("safety", "unsafe")]
    assert told[2:5] == [
        ("night 2026-12-10 start", "start"),
        ("night 2026-12-10 end", "end"),
        ("hook 2026-12-10 end 0", "failed"),
    ]
    assert [(c.split()[0], s) for c, s in told[5:7]] == [("mount", "park"), ("dome", "close")]
    assert receiver.notices()[6]["message"] == "closing the roof: rain"
    assert sorted(told[7:9]) == [("device mount", "up"), ("safety", "safe")]
    assert told[9:] == [("device mount", "down")]
    end = receiver.notices()[3]
    assert end["frames"] == {"LIGHT": 12, "DARK": 2} and end["time_lost_s"] == 1800.0
    assert "12 LIGHT" in end["message"] and "30 min lost" in end["message"]
