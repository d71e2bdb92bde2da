"""The flat panel and dust cover model on a hand-moved clock, what the camera sees through it,
and its Alpaca members over real HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from obsctl.clock import ScaledClock
from obsctl.config import (
    SimulatedCameraConfig,
    SimulatedCoverCalibratorConfig,
    SimulatorConfig,
)
from obsctl.devices import CalibratorState, CoverState
from obsctl.simulators import (
    AscomError,
    CoverCalibratorModel,
    RunningSimulators,
    running_simulators,
)
from obsctl.simulators.observatory import SimulatedObservatory

from .test_alpaca_server import SITE, TELESCOPE, get, put
from .test_enclosure_models import HandClock

NOT_IMPLEMENTED = 0x400
INVALID_VALUE = 0x401
NOT_CONNECTED = 0x407


def panel(clock: HandClock, **kw: object) -> CoverCalibratorModel:
    config = SimulatedCoverCalibratorConfig(**({"start_open": False} | kw))
    model = CoverCalibratorModel(config, clock)
    model.connected = True
    return model


# --- the model -------------------------------------------------------------------------


def test_commands_need_a_connection() -> None:
    model = CoverCalibratorModel(SimulatedCoverCalibratorConfig(), HandClock())
    for command in (
        model.open_cover,
        model.close_cover,
        model.halt_cover,
        model.calibrator_off,
        lambda: model.calibrator_on(10),
    ):
        with pytest.raises(AscomError) as info:
            command()
        assert info.value.number == NOT_CONNECTED


def test_defaults_are_a_flip_flat_left_open() -> None:
    config = SimulatedCoverCalibratorConfig()
    assert (config.max_brightness, config.cover_time_s, config.warmup_s) == (255, 10.0, 2.0)
    assert config.has_cover and config.start_open
    model = CoverCalibratorModel(config, HandClock())
    assert model.cover_state == CoverState.OPEN
    assert model.calibrator_state == CalibratorState.OFF and model.brightness == 0


def test_cover_timing_reversal_and_halt() -> None:
    clock = HandClock()
    model = panel(clock, cover_time_s=20.0)
    assert model.cover_state == CoverState.CLOSED and not model.cover_moving
    model.open_cover()
    clock.t += 19.9
    assert model.cover_state == CoverState.MOVING and model.cover_moving
    clock.t += 0.1
    assert model.cover_state == CoverState.OPEN and not model.cover_moving
    model.close_cover()
    clock.t += 5.0  # a quarter closed, then opened again: 5 s back to open
    model.open_cover()
    assert model.cover_fraction == pytest.approx(0.75)
    clock.t += 2.0
    model.halt_cover()  # 0.85 open: neither open nor closed
    assert model.cover_state == CoverState.UNKNOWN and not model.cover_moving
    clock.t += 100.0
    assert model.cover_fraction == pytest.approx(0.85)
    model.close_cover()
    clock.t += 0.85 * 20.0 - 0.1
    assert model.cover_state == CoverState.MOVING
    clock.t += 0.1
    assert model.cover_state == CoverState.CLOSED
    model.halt_cover()  # halting a cover at rest changes nothing
    assert model.cover_state == CoverState.CLOSED


def test_panel_alone_has_no_cover() -> None:
    model = panel(HandClock(), has_cover=False)
    assert model.cover_state == CoverState.NOT_PRESENT and model.cover_fraction == 1.0
    for command in (model.open_cover, model.close_cover, model.halt_cover):
        with pytest.raises(AscomError) as info:
            command()
        assert info.value.number == NOT_IMPLEMENTED


def test_panel_warms_up_and_validates_brightness() -> None:
    clock = HandClock()
    model = panel(clock, max_brightness=100, warmup_s=3.0)
    for wrong in (-1, 101):
        with pytest.raises(AscomError) as info:
            model.calibrator_on(wrong)
        assert info.value.number == INVALID_VALUE
    assert model.calibrator_state == CalibratorState.OFF
    model.calibrator_on(40)
    assert model.calibrator_state == CalibratorState.NOT_READY and model.calibrator_changing
    assert model.brightness == 40 and model.light_fraction == 0.0  # no light while warming
    clock.t += 2.9
    assert model.calibrator_state == CalibratorState.NOT_READY
    clock.t += 0.1
    assert model.calibrator_state == CalibratorState.READY and not model.calibrator_changing
    assert model.light_fraction == pytest.approx(0.4)
    model.calibrator_on(100)  # on already: no second warm-up
    assert model.calibrator_state == CalibratorState.READY and model.light_fraction == 1.0
    model.calibrator_off()
    assert model.calibrator_state == CalibratorState.OFF
    assert model.brightness == 0 and model.light_fraction == 0.0
    model.calibrator_on(0)  # from off: warms up again, at brightness 0
    assert model.calibrator_state == CalibratorState.NOT_READY


# --- what the camera sees --------------------------------------------------------------


def observatory(clock: HandClock, **kw: object) -> SimulatedObservatory:
    sim = SimulatorConfig(
        camera=SimulatedCameraConfig(width_px=64, height_px=48),
        cover_calibrator=SimulatedCoverCalibratorConfig(**kw),
    )
    return SimulatedObservatory.from_config(sim, SITE, TELESCOPE, clock)


async def test_scene_through_the_cover() -> None:
    clock = HandClock()
    obs = observatory(clock, cover_time_s=10.0, warmup_s=2.0, max_brightness=200)
    cc = obs.cover_calibrator
    assert cc is not None and obs.camera.cover_calibrator is cc
    lamp = obs.config.sky.flat_panel_e_s
    cc.connected = True
    open_scene = obs.camera.scene()  # it starts open: the sky, untouched
    assert open_scene.flat_panel_e_s is None

    cc.calibrator_on(50)  # lit with the cover open: its light faces away from the telescope
    assert obs.camera.scene() == open_scene
    obs.camera.flat_panel_on = True  # the camera's own lamp still works as it did
    assert obs.camera.scene().flat_panel_e_s == lamp
    obs.camera.flat_panel_on = False

    cc.close_cover()
    clock.t += 5.0
    cc.halt_cover()  # half-way: half the sky's and the stars' light, none of the panel's
    half = obs.camera.scene()
    assert half.flat_panel_e_s is None
    assert half.transmission == pytest.approx(0.5 * open_scene.transmission, rel=0.01)

    cc.close_cover()
    clock.t += 5.0
    assert cc.cover_state == CoverState.CLOSED
    assert obs.camera.scene().flat_panel_e_s == pytest.approx(lamp * 50 / 200)
    obs.camera.flat_panel_on = True  # the closed cover hides the camera's own lamp too
    assert obs.camera.scene().flat_panel_e_s == pytest.approx(lamp * 50 / 200)
    cc.calibrator_off()
    assert obs.camera.scene().flat_panel_e_s == 0.0  # closed and dark
    cc.calibrator_on(100)
    assert cc.calibrator_state == CalibratorState.NOT_READY
    assert obs.camera.scene().flat_panel_e_s == 0.0  # warming up: no light yet
    clock.t += 2.0
    assert obs.camera.scene().flat_panel_e_s == pytest.approx(lamp * 100 / 200)
    await obs.close()


async def test_no_cover_calibrator_leaves_the_camera_as_it_was() -> None:
    sim = SimulatorConfig(camera=SimulatedCameraConfig(width_px=64, height_px=48))
    obs = SimulatedObservatory.from_config(sim, SITE, TELESCOPE, ScaledClock(1000.0))
    assert obs.cover_calibrator is None and obs.camera.cover_calibrator is None
    assert obs.camera.scene().flat_panel_e_s is None
    await obs.close()


# --- over Alpaca HTTP ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(
    **kw: object,
) -> AsyncIterator[tuple[RunningSimulators, aiohttp.ClientSession]]:
    sim = SimulatorConfig(
        port=0,
        discovery_port=None,
        camera=SimulatedCameraConfig(width_px=64, height_px=48),
        cover_calibrator=SimulatedCoverCalibratorConfig(**kw),
    )
    async with (
        running_simulators(sim, SITE, TELESCOPE, clock=ScaledClock(1000.0)) as running,
        aiohttp.ClientSession(
            base_url=running.url, timeout=aiohttp.ClientTimeout(total=20)
        ) as session,
    ):
        yield running, session


async def test_served_with_its_members() -> None:
    # A warm-up of an hour: NotReady for all of the test, even at 1000 times real time.
    async with served(max_brightness=100, has_cover=False, warmup_s=3600.0) as (_r, session):
        devices = (await get(session, "/management/v1/configureddevices"))["Value"]
        listed = [d for d in devices if d["DeviceType"] == "CoverCalibrator"]
        assert len(listed) == 1 and listed[0]["DeviceNumber"] == 0
        base = "/api/v1/covercalibrator/0"
        assert (await get(session, f"{base}/interfaceversion"))["Value"] == 2
        reply = await get(session, f"{base}/coverstate")
        assert reply["ErrorNumber"] == NOT_CONNECTED
        await put(session, f"{base}/connected", Connected=True)
        assert (await get(session, f"{base}/coverstate"))["Value"] == CoverState.NOT_PRESENT
        assert (await get(session, f"{base}/maxbrightness"))["Value"] == 100
        reply = await put(session, f"{base}/opencover")
        assert reply["ErrorNumber"] == NOT_IMPLEMENTED
        reply = await put(session, f"{base}/calibratoron", Brightness=101)
        assert reply["ErrorNumber"] == INVALID_VALUE
        async with session.put(f"{base}/calibratoron", data={"Brightness": "bright"}) as r:
            assert r.status == 400 and "Brightness" in await r.text()
        reply = await put(session, f"{base}/calibratoron", Brightness=60)
        assert reply["ErrorNumber"] == 0
        state = {
            item["Name"]: item["Value"]
            for item in (await get(session, f"{base}/devicestate"))["Value"]
        }
        assert state["Brightness"] == 60 and state["CoverState"] == CoverState.NOT_PRESENT
        assert state["CalibratorState"] == CalibratorState.NOT_READY
        assert state["CalibratorChanging"] is True and state["CoverMoving"] is False
        assert "TimeStamp" in state


async def test_not_served_unless_configured() -> None:
    sim = SimulatorConfig(
        port=0, discovery_port=None, camera=SimulatedCameraConfig(width_px=64, height_px=48)
    )
    async with (
        running_simulators(sim, SITE, TELESCOPE, clock=ScaledClock(1000.0)) as running,
        aiohttp.ClientSession(base_url=running.url) as session,
        session.get("/api/v1/covercalibrator/0/connected") as reply,
    ):
        assert reply.status == 404
