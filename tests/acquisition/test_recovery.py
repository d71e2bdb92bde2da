"""Recovery from device states real drivers leave behind (issue 15), over real Alpaca HTTP.

The simulators reproduce each state (`CameraModel.fail_next_exposure`,
`CameraModel.abort_ignored`, `MountModel.slewing_stuck`); the daemon must recover the
device before its next use, log one line and record a failure row with the action.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

from obsctl.acquisition.sequence import ExposureStep, Sequence
from obsctl.daemon import Daemon
from obsctl.simulators.observatory import running_simulators

from ..daemon_helpers import daemon_config, overhead_target, running_daemon, wait_for

# A short recovery deadline; a wide readout margin (a loaded machine renders slowly).
SEQUENCER = {"recover_timeout_s": 5.0, "readout_margin_s": 300.0}


def darks(count: int = 3, exposure_s: float = 1.0, name: str = "darks") -> Sequence:
    return Sequence(
        name=name,
        steps=(ExposureStep(image_type="DARK", exposure_s=exposure_s, count=count),),
    )


def ended(daemon: Daemon, sid: int) -> bool:
    return daemon.running.log_db.sequence(sid)["state"] in ("done", "incomplete")


def recoveries(daemon: Daemon) -> list[dict[str, Any]]:
    return [f for f in daemon.running.log_db.failures() if f["operation"] == "recover"]


def recovery_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("recovered ")]


@pytest.mark.parametrize("cleared_by", ["abort", "reconnect"])
async def test_camera_left_in_error_is_recovered_before_the_next_frame(
    tmp_path, caplog, cleared_by
) -> None:
    caplog.set_level(logging.WARNING)
    config = daemon_config(tmp_path / "data", sequencer=SEQUENCER)
    async with running_daemon(config) as daemon:
        daemon.simulators.observatory.camera.fail_next_exposure(cleared_by=cleared_by)
        sid = daemon.enqueue(darks())
        await wait_for(lambda: ended(daemon, sid))
        assert daemon.running.log_db.sequence(sid)["state"] == "done"
        assert len(daemon.running.log_db.exposures()) == 3  # the failed frame was taken again
        rows = recoveries(daemon)
    assert len(rows) == 1
    row = rows[0]
    assert row["device"] == "camera" and row["error_type"] == "DeviceStateError"
    assert row["message"] == "camera: camera in state ERROR"
    expected = {
        "abort": "AbortExposure, idle",
        "reconnect": "AbortExposure, reconnected, idle",
    }[cleared_by]
    assert row["action"] == expected
    assert recovery_lines(caplog) == [f"recovered camera: found camera in state ERROR; {expected}"]


async def test_exposure_running_after_an_abort_is_waited_out(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    config = daemon_config(tmp_path / "data", sequencer=SEQUENCER)
    async with running_daemon(config) as daemon:
        camera = daemon.simulators.observatory.camera
        camera.abort_ignored = True  # the server acknowledges AbortExposure, and goes on
        long = daemon.enqueue(darks(count=1, exposure_s=300.0, name="long"))
        # The activity says "exposing" just before the exposure starts: wait for the camera.
        await wait_for(lambda: camera.state.name == "EXPOSING")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{daemon.api_url}/api/abort", json={}) as reply:
                assert reply.status == 200
            await wait_for(lambda: daemon.running.log_db.sequence(long)["state"] == "aborted")
            assert camera.state.name == "EXPOSING"  # the abort did not take
            body = darks(count=2).model_dump(mode="json")
            async with http.post(f"{daemon.api_url}/api/sequences", json=body) as reply:
                assert reply.status == 201
                sid = (await reply.json())["id"]
        await wait_for(lambda: ended(daemon, sid))
        assert daemon.running.log_db.sequence(sid)["state"] == "done"
        rows = recoveries(daemon)
        stored = [r["exposure_s"] for r in daemon.running.log_db.exposures()]
    assert stored == [1.0, 1.0]  # the aborted long dark was never stored
    assert len(rows) == 1
    assert rows[0]["message"].endswith("camera in state EXPOSING, still exposing after the abort")
    assert rows[0]["action"].startswith("AbortExposure, waited out the exposure")
    assert rows[0]["action"].endswith(", idle")
    assert len(recovery_lines(caplog)) == 1


def lights(count: int = 2) -> Sequence:
    return Sequence(
        name="lights",
        target=overhead_target(),
        steps=(ExposureStep(image_type="LIGHT", filter="V", exposure_s=1.0, count=count),),
    )


async def test_mount_left_slewing_is_stopped_before_the_slew(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    # Without the recovery a slew would wait out slew_timeout_s for ever-true Slewing.
    config = daemon_config(tmp_path / "data", sequencer={**SEQUENCER, "slew_timeout_s": 60.0})
    async with running_daemon(config) as daemon:
        mount = daemon.simulators.observatory.mount
        mount.slewing_stuck = True  # a driver that lost track of a slew: Slewing stays true
        sid = daemon.enqueue(lights())
        await wait_for(lambda: ended(daemon, sid))
        assert daemon.running.log_db.sequence(sid)["state"] == "done"
        assert mount.tracking and not mount.slewing
        rows = recoveries(daemon)
    assert [(r["device"], r["action"]) for r in rows] == [("mount", "AbortSlew, tracking on")]
    assert rows[0]["message"].endswith("mount slewing with no slew running")
    assert recovery_lines(caplog) == [
        "recovered mount: found mount slewing with no slew running; AbortSlew, tracking on"
    ]


async def test_mount_slewing_at_start_is_stopped_when_connected(tmp_path) -> None:
    config = daemon_config(tmp_path / "data", sequencer=SEQUENCER)
    sim = config.simulator
    assert sim is not None
    # The simulators run before the daemon starts, the mount already "slewing".
    async with running_simulators(
        sim.model_copy(update={"start": "never"}), config.site, config.telescope
    ) as sims:
        config = config.model_copy(update={"simulator": sim.model_copy(update={"start": "never"})})
        mount = sims.observatory.mount
        mount.connected = True
        mount.set_tracking(True)
        mount.slewing_stuck = True
        async with running_daemon(config) as daemon:
            assert not mount.slewing and not mount.tracking  # stopped before anything ran
            rows = recoveries(daemon)
    assert [(r["device"], r["action"]) for r in rows] == [("mount", "AbortSlew, tracking off")]


async def test_mount_left_parked_is_unparked_for_lights(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="obsctl.operations")
    config = daemon_config(tmp_path / "data", sequencer=SEQUENCER)
    async with running_daemon(config) as daemon:
        mount = daemon.simulators.observatory.mount
        mount.park()
        await wait_for(lambda: mount.at_park)
        sid = daemon.enqueue(lights(count=1))
        await wait_for(lambda: ended(daemon, sid))
        assert daemon.running.log_db.sequence(sid)["state"] == "done"
        assert not mount.at_park and mount.tracking
        # A parked mount is the normal state between nights: logged, not a failure row.
        assert recoveries(daemon) == []
    assert "mount is parked; unparking it" in [r.getMessage() for r in caplog.records]
