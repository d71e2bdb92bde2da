"""The focuser model on a hand-moved clock, the in-process focuser, and its Alpaca members.

The expected numbers come from the config values in each test (speed, backlash, drift), not
from the model's formulas.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from obsctl.clock import ScaledClock
from obsctl.config import SimulatedCameraConfig, SimulatedFocuserConfig, SimulatorConfig
from obsctl.devices import Focuser
from obsctl.errors import DeviceNotImplementedError, InvalidDeviceValueError
from obsctl.simulators import AscomError, RunningSimulators, running_simulators
from obsctl.simulators.devices import SimulatedFocuser
from obsctl.simulators.focuser_model import FocuserModel
from obsctl.simulators.observatory import SimulatedObservatory

from .test_alpaca_server import SITE, TELESCOPE, get, put
from .test_enclosure_models import HandClock

NOT_IMPLEMENTED = 0x400
INVALID_VALUE = 0x401
NOT_CONNECTED = 0x407

# Travel 0..10000, at most 3000 steps a move, 500 steps/s, starting at 5000, 40 steps of
# backlash; best focus 5200 at 10 C, moving -50 steps per C; 12 C at the start, -2 C/h.
CONFIG = {
    "max_step": 10_000,
    "max_increment": 3_000,
    "speed_steps_s": 500.0,
    "start_position": 5_000,
    "backlash_steps": 40,
    "best_focus_steps": 5_200.0,
    "reference_temperature_c": 10.0,
    "steps_per_c": -50.0,
    "temperature_c": 12.0,
    "temperature_drift_c_per_h": -2.0,
}


def focuser(clock: HandClock, **kw: object) -> FocuserModel:
    model = FocuserModel(SimulatedFocuserConfig(**(CONFIG | kw)), clock)
    model.connected = True
    return model


def arrive(model: FocuserModel, clock: HandClock, position: int) -> None:
    """Move to ``position`` and let the simulated time pass until it is there."""
    model.move(position)
    clock.t += 3_000 / 500.0 + 1.0  # longer than any allowed move
    assert not model.is_moving and model.position == position


# --- the model -------------------------------------------------------------------------


def test_commands_need_a_connection() -> None:
    model = FocuserModel(SimulatedFocuserConfig(**CONFIG), HandClock())
    for command in (
        lambda: model.move(5_100),
        model.halt,
        lambda: model.set_temp_comp(False),
        lambda: model.set_temp_comp(True),
    ):
        with pytest.raises(AscomError) as info:
            command()
        assert info.value.number == NOT_CONNECTED


def test_a_move_takes_distance_over_speed_and_arrives() -> None:
    clock = HandClock()
    model = focuser(clock)
    assert model.position == 5_000 and not model.is_moving
    model.move(6_000)  # 1000 steps at 500 steps/s: 2 s
    assert model.is_moving
    clock.t += 1.0
    assert model.position == 5_500 and model.is_moving
    clock.t += 0.99
    assert model.is_moving and model.position == 5_995
    clock.t += 0.01
    assert not model.is_moving and model.position == 6_000
    clock.t += 100.0
    assert model.position == 6_000


def test_a_move_while_moving_goes_on_from_where_it_is() -> None:
    clock = HandClock()
    model = focuser(clock)
    model.move(6_000)
    clock.t += 1.0  # at 5500
    model.move(5_000)  # 500 steps back: 1 s
    clock.t += 0.5
    assert model.position == 5_250 and model.is_moving
    clock.t += 0.5
    assert model.position == 5_000 and not model.is_moving


def test_halt_part_way_stops_between() -> None:
    clock = HandClock()
    model = focuser(clock)
    model.move(6_000)
    clock.t += 0.8  # 400 steps out
    model.halt()
    assert not model.is_moving and model.position == 5_400
    clock.t += 60.0
    assert not model.is_moving and model.position == 5_400
    model.halt()  # halting at rest is harmless
    assert model.position == 5_400


@pytest.mark.parametrize("target", [-1, 10_001, 8_001, 1_999])
def test_out_of_range_or_too_long_moves_are_invalid(target: int) -> None:
    # -1 and 10001 are outside 0..10000; 8001 and 1999 are 3001 steps from 5000.
    clock = HandClock()
    model = focuser(clock)
    with pytest.raises(AscomError) as info:
        model.move(target)
    assert info.value.number == INVALID_VALUE
    assert model.position == 5_000 and not model.is_moving


def test_max_increment_is_allowed_and_counts_from_where_it_is() -> None:
    clock = HandClock()
    model = focuser(clock)
    arrive(model, clock, 8_000)  # exactly max_increment
    model.move(5_000)
    clock.t += 1.0  # at 7500, on the way in
    with pytest.raises(AscomError) as info:
        model.move(4_499)  # 3001 from 7500, though within 3000 of the target 5000
    assert info.value.number == INVALID_VALUE
    assert model.is_moving  # the refused move left the running one alone
    clock.t += 5.0
    assert model.position == 5_000
    model.move(4_500)  # 500 from 5000
    clock.t += 1.0
    assert model.position == 4_500


def test_backlash_the_optics_lag_after_a_reversal() -> None:
    clock = HandClock()
    model = focuser(clock)
    backlash = CONFIG["backlash_steps"]
    arrive(model, clock, 6_000)  # out, farther than the backlash: slack taken up outward
    assert model.optics_position == pytest.approx(6_000)
    model.move(5_500)  # in: the first 40 steps (0.08 s) cross the slack
    clock.t += 0.06  # motor at 5970
    assert model.position == 5_970
    assert model.optics_position == pytest.approx(6_000)
    clock.t += 10.0
    assert model.position == 5_500
    assert model.optics_position == pytest.approx(5_500 + backlash)
    # Out again by less than the backlash: only slack, the optics stay.
    arrive(model, clock, 5_530)
    assert model.optics_position == pytest.approx(5_500 + backlash)
    # On out past the slack: the optics follow the motor again.
    arrive(model, clock, 5_600)
    assert model.optics_position == pytest.approx(5_600)
    # Repeated moves the same way keep the optics on the motor.
    arrive(model, clock, 5_700)
    assert model.optics_position == pytest.approx(5_700)


def test_backlash_zero_keeps_the_optics_on_the_motor() -> None:
    clock = HandClock()
    model = focuser(clock, backlash_steps=0)
    arrive(model, clock, 6_000)
    arrive(model, clock, 5_500)
    assert model.optics_position == pytest.approx(5_500)


def test_best_focus_follows_the_temperature_drift() -> None:
    clock = HandClock()
    model = focuser(clock)
    # At the start: 12 C, so best focus 5200 - 50 * (12 - 10) = 5100.
    assert model.temperature_c == pytest.approx(12.0)
    assert model.best_focus_steps == pytest.approx(5_100.0)
    assert model.defocus_steps == pytest.approx(5_000 - 5_100.0)
    clock.t += 1.5 * 3600.0  # -2 C/h for 1.5 h: 9 C, best focus 5200 + 50 = 5250
    assert model.temperature_c == pytest.approx(9.0)
    assert model.best_focus_steps == pytest.approx(5_250.0)
    assert model.defocus_steps == pytest.approx(5_000 - 5_250.0)
    arrive(model, clock, 5_300)
    temperature = 12.0 - 2.0 * (clock.t - 1000.0) / 3600.0  # HandClock starts at 1000 s
    assert model.temperature_c == pytest.approx(temperature)
    assert model.defocus_steps == pytest.approx(5_300 - (5_200 - 50 * (temperature - 10.0)))


def test_defocus_counts_the_backlash() -> None:
    clock = HandClock()
    model = focuser(clock, temperature_c=10.0, temperature_drift_c_per_h=0.0)
    arrive(model, clock, 5_400)
    arrive(model, clock, 5_200)  # in to best focus: the optics stop 40 steps farther out
    assert model.defocus_steps == pytest.approx(40.0)


def test_no_temperature_compensation() -> None:
    model = focuser(HandClock())
    assert model.temp_comp_available is False and model.temp_comp is False
    model.set_temp_comp(False)
    with pytest.raises(AscomError) as info:
        model.set_temp_comp(True)
    assert info.value.number == NOT_IMPLEMENTED
    assert model.temp_comp is False


# --- the in-process device -------------------------------------------------------------


async def test_in_process_focuser() -> None:
    clock = HandClock()
    device = SimulatedFocuser(FocuserModel(SimulatedFocuserConfig(**CONFIG), clock))
    checked: Focuser = device  # structurally a Focuser (mypy checks this line)
    assert checked.name == "focuser"
    await device.connect()
    info = await device.info()
    assert (info.absolute, info.max_step, info.max_increment) == (True, 10_000, 3_000)
    assert info.step_size_um == 1.0 and info.temp_comp_available is False
    await device.move_by(-1_000)
    status = await device.status()
    assert status.moving and status.position == 5_000 and status.temp_comp is False
    assert status.temperature_c == pytest.approx(12.0)
    clock.t += 1.0  # at 4500
    await device.move_by(200)  # from where it is
    clock.t += 10.0
    assert (await device.status()).position == 4_700
    with pytest.raises(InvalidDeviceValueError):
        await device.move_by(3_001)
    with pytest.raises(InvalidDeviceValueError):
        await device.move_to(10_001)
    with pytest.raises(DeviceNotImplementedError):
        await device.set_temp_comp(True)
    await device.set_temp_comp(False)
    await device.move_to(5_000)
    clock.t += 0.2
    await device.halt()
    status = await device.status()
    assert status.position == 4_800 and not status.moving


async def test_observatory_builds_it_only_when_configured() -> None:
    camera = SimulatedCameraConfig(width_px=64, height_px=48)
    sim = SimulatorConfig(camera=camera, focuser=SimulatedFocuserConfig(**CONFIG))
    obs = SimulatedObservatory.from_config(sim, SITE, TELESCOPE, ScaledClock(1000.0))
    assert obs.focuser is not None and obs.focuser.position == 5_000
    await obs.close()
    obs = SimulatedObservatory.from_config(
        SimulatorConfig(camera=camera), SITE, TELESCOPE, ScaledClock(1000.0)
    )
    assert obs.focuser is None
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
        focuser=SimulatedFocuserConfig(**(CONFIG | kw)),
    )
    async with (
        running_simulators(sim, SITE, TELESCOPE, clock=ScaledClock(1.0)) as running,
        aiohttp.ClientSession(
            base_url=running.url, timeout=aiohttp.ClientTimeout(total=20)
        ) as session,
    ):
        yield running, session


async def test_served_with_its_members() -> None:
    # 1 step/s at real time: a move stays under way for all of the test.
    async with served(speed_steps_s=1.0, step_size_um=2.5) as (_r, session):
        devices = (await get(session, "/management/v1/configureddevices"))["Value"]
        listed = [d for d in devices if d["DeviceType"] == "Focuser"]
        assert len(listed) == 1 and listed[0]["DeviceNumber"] == 0
        base = "/api/v1/focuser/0"
        assert (await get(session, f"{base}/interfaceversion"))["Value"] == 4
        assert (await get(session, f"{base}/position"))["ErrorNumber"] == NOT_CONNECTED
        await put(session, f"{base}/connected", Connected=True)
        values = {
            member: (await get(session, f"{base}/{member}"))["Value"]
            for member in (
                "absolute",
                "ismoving",
                "maxincrement",
                "maxstep",
                "position",
                "stepsize",
                "tempcomp",
                "tempcompavailable",
            )
        }
        assert values == {
            "absolute": True,
            "ismoving": False,
            "maxincrement": 3_000,
            "maxstep": 10_000,
            "position": 5_000,
            "stepsize": 2.5,
            "tempcomp": False,
            "tempcompavailable": False,
        }
        # -2 C/h: within 0.01 C for the first 18 s of real time.
        temperature = (await get(session, f"{base}/temperature"))["Value"]
        assert temperature == pytest.approx(12.0, abs=0.01)
        assert (await put(session, f"{base}/move", Position=10_001))["ErrorNumber"] == INVALID_VALUE
        assert (await put(session, f"{base}/move", Position=8_001))["ErrorNumber"] == INVALID_VALUE
        for garbage in ("far", "5100.5", ""):
            async with session.put(f"{base}/move", data={"Position": garbage}) as r:
                assert r.status == 400 and "Position" in await r.text()
        assert (await put(session, f"{base}/tempcomp", TempComp=True))[
            "ErrorNumber"
        ] == NOT_IMPLEMENTED
        assert (await put(session, f"{base}/tempcomp", TempComp="false"))["ErrorNumber"] == 0
        async with session.put(f"{base}/tempcomp", data={"TempComp": "yes"}) as r:
            assert r.status == 400
        assert (await put(session, f"{base}/move", Position=5_100))["ErrorNumber"] == 0
        assert (await get(session, f"{base}/ismoving"))["Value"] is True
        state = {
            item["Name"]: item["Value"]
            for item in (await get(session, f"{base}/devicestate"))["Value"]
        }
        assert state["IsMoving"] is True and 5_000 <= state["Position"] < 5_100
        assert state["Temperature"] == pytest.approx(12.0, abs=0.01) and "TimeStamp" in state
        assert (await put(session, f"{base}/halt"))["ErrorNumber"] == 0
        assert (await get(session, f"{base}/ismoving"))["Value"] is False


async def test_not_served_unless_configured() -> None:
    sim = SimulatorConfig(
        port=0, discovery_port=None, camera=SimulatedCameraConfig(width_px=64, height_px=48)
    )
    async with (
        running_simulators(sim, SITE, TELESCOPE, clock=ScaledClock(1000.0)) as running,
        aiohttp.ClientSession(base_url=running.url) as session,
        session.get("/api/v1/focuser/0/connected") as reply,
    ):
        assert reply.status == 404
