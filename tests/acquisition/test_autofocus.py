"""Focus runs over Alpaca HTTP on the simulators: the focuser lands at the true best focus.

The truth is the simulator's configuration: best focus = ``best_focus_steps + steps_per_c *
(temperature - reference)``; the optics sit at the motor's position once the gears' slack is
taken up outward. The V's scale (its half-width) comes from the fit, but is checked against
the optics: the blur circle grows by ``step_size / (2 f-ratio) / pixel`` pixel per step.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from obsctl.acquisition.autofocus import Autofocus, FocusPoint, _extension, run_positions
from obsctl.classify.model import SourceClassifier
from obsctl.clock import ScaledClock
from obsctl.config import (
    AutofocusConfig,
    SequencerConfig,
    SimulatedCameraConfig,
    SimulatedFocuserConfig,
    SimulatedSkyConfig,
    SimulatorConfig,
)
from obsctl.devices import DeviceSet
from obsctl.drivers.alpaca import AlpacaCamera, AlpacaClient, AlpacaFocuser
from obsctl.operations import Operations
from obsctl.simulators.observatory import running_simulators
from obsctl.store.exposure_log import ExposureLog

BEST = 30_000.0
REFERENCE_C = 10.0
TEMPERATURE_C = 6.0
STEPS_PER_C = 40.0
TRUE_BEST = BEST + STEPS_PER_C * (TEMPERATURE_C - REFERENCE_C)  # 29840 at 6 C
BACKLASH = 40
PIXEL_UM = 3.76
F_RATIO = 4.0  # the conftest telescope: 800 mm at 200 mm
STEP_UM = 1.0
PX_PER_STEP = STEP_UM / (2.0 * F_RATIO) / PIXEL_UM  # blur radius per step: 0.033 px
SETTINGS = AutofocusConfig(
    enabled=True, exposure_s=20.0, points=7, step_steps=50, overshoot_steps=2 * BACKLASH
)


FOCUSER = SimulatedFocuserConfig(
    best_focus_steps=BEST,
    reference_temperature_c=REFERENCE_C,
    temperature_c=TEMPERATURE_C,
    steps_per_c=STEPS_PER_C,
    step_size_um=STEP_UM,
    backlash_steps=BACKLASH,
    speed_steps_s=5000.0,
)


def simulators(start: int, *, stars: bool = True) -> SimulatorConfig:
    return SimulatorConfig(
        start="never",
        port=0,
        discovery_port=None,
        speed=200.0,
        camera=SimulatedCameraConfig(width_px=320, height_px=240, readout_time_s=0.1),
        # The parked mount looks at the horizon: no extinction or airmass seeing there.
        sky=SimulatedSkyConfig(
            star_density_per_deg2=40_000.0 if stars else 0.0,
            extinction=False,
            seeing_airmass_exponent=0.0,
        ),
        focuser=FOCUSER.model_copy(update={"start_position": start}),
    )


async def served(sim: SimulatorConfig, site, telescope) -> AsyncIterator[tuple]:
    clock = ScaledClock(sim.speed, start=datetime(2026, 11, 25, 23, 0, tzinfo=UTC))
    async with running_simulators(sim, site, telescope, clock=clock, port=0) as sims:
        client = AlpacaClient(f"127.0.0.1:{sims.port}")
        devs = DeviceSet(
            camera=AlpacaCamera("camera", client, timeout_s=5.0),
            focuser=AlpacaFocuser("focuser", client, 0, timeout_s=5.0),
        )
        for device in devs.all():
            await device.connect()
        try:
            yield devs, clock, sims.server.observatory
        finally:
            await client.close()


@pytest.fixture(scope="module")
def classifier() -> SourceClassifier:
    return SourceClassifier()


def autofocus(devs: DeviceSet, clock, classifier, settings=SETTINGS) -> Autofocus:
    assert devs.focuser is not None
    ops = Operations(SequencerConfig(poll_s=0.01), clock)
    return Autofocus(devs.camera, devs.focuser, ops, clock, settings, classifier)


@pytest.mark.parametrize("offset", [-120, 0, 90])
async def test_lands_within_two_percent_of_the_half_width(
    site, telescope, classifier, offset, tmp_path
):
    start = round(TRUE_BEST) + offset
    async for devs, clock, obs in served(simulators(start), site, telescope):
        run = await autofocus(devs, clock, classifier).run("test", "L")
        optics = obs.focuser.optics_position
    assert run.outcome == "focused", run.reason
    assert run.fit is not None and run.frames <= 9
    # The V's scale from the optics: the seeing and the blur add about in quadrature, so the
    # HFR doubles where the blur ring's half-flux radius (0.76 R for an obstruction of 0.35)
    # reaches sqrt(3) in-focus HFR.
    ring = math.sqrt((1.0 + 0.35**2) / 2.0)
    expected_half_width = math.sqrt(3.0) * run.fit.best_hfr_px / ring / PX_PER_STEP
    assert run.fit.half_width_steps == pytest.approx(expected_half_width, rel=0.3)
    assert abs(run.final_position - TRUE_BEST) <= 0.02 * run.fit.half_width_steps
    assert optics == pytest.approx(run.final_position, abs=0.5)  # the slack taken up outward
    assert run.check_hfr_px is not None
    assert run.check_hfr_px <= run.fit.best_hfr_px * 1.25
    # Logged in a real SQLite file, read back as written.
    db = ExposureLog(tmp_path / "log.sqlite")
    db.add_focus_run(run.row("2026-11-25"))
    (row,) = db.focus_runs("2026-11-25")
    db.close()
    assert row["outcome"] == "focused" and row["final_position"] == run.final_position
    assert row["temperature_c"] == pytest.approx(TEMPERATURE_C, abs=0.01)
    assert [p[0] for p in json.loads(row["points"])] == [p.position for p in run.points]


async def test_a_start_beyond_the_v_extends_the_run(site, telescope, classifier):
    """The V's minimum outside the first positions: the run goes on past that end."""
    start = round(TRUE_BEST) + 230
    async for devs, clock, _ in served(simulators(start), site, telescope):
        run = await autofocus(devs, clock, classifier).run("test")
    assert run.outcome == "focused", run.reason
    assert len(run.points) > SETTINGS.points
    assert min(p.position for p in run.points) < start - 3 * SETTINGS.step_steps
    assert run.fit is not None
    assert abs(run.final_position - TRUE_BEST) <= 0.05 * run.fit.half_width_steps


async def test_no_stars_is_refused_and_the_focuser_goes_back(site, telescope, classifier):
    start = round(TRUE_BEST) + 40
    async for devs, clock, obs in served(simulators(start, stars=False), site, telescope):
        run = await autofocus(devs, clock, classifier).run("test")
        back = obs.focuser.position
    assert run.outcome == "refused"
    assert "usable point" in run.reason
    assert run.final_position == start and back == start
    assert all(math.isnan(p.hfr_px) for p in run.points)
    row = run.row("2026-11-25")
    assert row["outcome"] == "refused" and row["best_position"] is None


def test_positions_stay_within_the_travel() -> None:
    assert run_positions(1000, 50, 7, 60_000) == [850, 900, 950, 1000, 1050, 1100, 1150]
    assert run_positions(60, 50, 7, 60_000) == [0, 50, 100, 150, 200, 250, 300]
    assert run_positions(59_990, 50, 7, 60_000)[-1] == 60_000
    assert run_positions(10, 50, 7, 100) == [0, 50, 100]


def test_extension_goes_past_the_end_holding_the_minimum() -> None:
    def points(hfr):
        return [FocusPoint(1000 + 50 * i, h, 10) for i, h in enumerate(hfr)]

    assert _extension(points([5, 4, 3, 2.5, 2, 1.8, 1.6]), 50, 60_000) == 1350
    assert _extension(points([1.6, 1.8, 2, 2.5, 3, 4, 5]), 50, 60_000) == 950
    assert _extension(points([4, 3, 2, 1.5, 2, 3, 4]), 50, 60_000) is None
    # No stars at the far end: that side can go no farther.
    assert _extension(points([math.nan, 1.6, 1.8, 2, 3, 4, 5]), 50, 60_000) is None
