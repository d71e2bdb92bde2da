from datetime import UTC, datetime
from pathlib import Path

import obsctl.configs
from obsctl.clock import ScaledClock
from obsctl.config import load_config
from obsctl.drivers.registry import open_devices
from obsctl.simulators.devices import SimulatedCamera, SimulatedMount


async def test_in_process_simulators_run_on_the_clock_they_are_given() -> None:
    # A night on a simulated clock: the in-process models must live on that same clock,
    # or a slew at 300x speed never ends in time.
    config = load_config(Path(obsctl.configs.__file__).parent / "inprocess.toml")
    clock = ScaledClock(300.0, start=datetime(2026, 11, 25, 19, 0, tzinfo=UTC))
    async with open_devices(config, clock=clock) as devices:
        assert isinstance(devices.camera, SimulatedCamera)
        assert isinstance(devices.mount, SimulatedMount)
        assert devices.camera.model.clock is clock and devices.mount.model.clock is clock
    async with open_devices(config) as devices:  # alone: the simulator's own speed
        assert isinstance(devices.camera, SimulatedCamera)
        assert devices.camera.model.clock is not clock
