from datetime import UTC, datetime
from pathlib import Path

import pytest

import obsctl.configs
from obsctl.clock import ScaledClock
from obsctl.config import load_config
from obsctl.drivers.alpaca import AlpacaCoverCalibrator, AlpacaObservingConditions
from obsctl.drivers.registry import build_devices, open_devices
from obsctl.errors import ConfigError
from obsctl.simulators import SimulatedObservatory
from obsctl.simulators.devices import (
    SimulatedCamera,
    SimulatedCoverCalibrator,
    SimulatedDome,
    SimulatedMount,
    SimulatedObservingConditions,
)


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


ENCLOSURE = """
version = 1
[site]
name = "Test"
latitude_deg = 28.76
longitude_deg = -17.88
[telescope]
focal_length_mm = 800
aperture_mm = 200
[devices.camera]
driver = "simulator"
[devices.dome]
driver = "simulator"
[devices.weather]
driver = "{weather_driver}"
{weather_address}
[simulator]
start = "never"
[simulator.dome]
kind = "rotating"
[simulator.weather]
rain_rate_mm_h = 1.5
"""


def enclosure_config(tmp_path: Path, *, alpaca_weather: bool = False):
    text = ENCLOSURE.format(
        weather_driver="alpaca" if alpaca_weather else "simulator",
        weather_address='address = "127.0.0.1:1"' if alpaca_weather else "",
    )
    path = tmp_path / "enclosure.toml"
    path.write_text(text)
    return load_config(path)


async def test_dome_and_weather_roles_are_built_for_each_driver(tmp_path) -> None:
    async with open_devices(enclosure_config(tmp_path)) as devices:
        assert isinstance(devices.dome, SimulatedDome) and devices.dome.name == "dome"
        assert isinstance(devices.weather, SimulatedObservingConditions)
        assert devices.all()[-2:] == [devices.dome, devices.weather]
        await devices.weather.connect()
        assert (await devices.weather.readings()).rain_rate_mm_h == 1.5
        await devices.dome.connect()
        assert (await devices.dome.info()).can_set_azimuth
    async with open_devices(enclosure_config(tmp_path, alpaca_weather=True)) as devices:
        assert isinstance(devices.weather, AlpacaObservingConditions)
        assert devices.weather.name == "weather"


async def test_a_simulated_role_the_observatory_lacks_is_a_config_error(tmp_path) -> None:
    config = enclosure_config(tmp_path)
    assert config.simulator is not None
    bare = config.simulator.model_copy(update={"dome": None})
    observatory = SimulatedObservatory.from_config(
        bare, config.site, config.telescope, ScaledClock(1.0)
    )
    with pytest.raises(ConfigError, match=r"devices\.dome .*add a \[simulator\.dome\] section"):
        build_devices(config, observatory=observatory)


PANEL = """
version = 1
[site]
name = "Test"
latitude_deg = 28.76
longitude_deg = -17.88
[telescope]
focal_length_mm = 800
aperture_mm = 200
[devices.camera]
driver = "simulator"
[devices.cover_calibrator]
driver = "{driver}"
{address}
[simulator]
start = "never"
[simulator.cover_calibrator]
max_brightness = 1000
"""


def panel_config(tmp_path: Path, driver: str):
    address = 'address = "127.0.0.1:1"' if driver == "alpaca" else ""
    path = tmp_path / "panel.toml"
    path.write_text(PANEL.format(driver=driver, address=address))
    return load_config(path)


async def test_cover_calibrator_role_is_built_for_each_driver(tmp_path) -> None:
    async with open_devices(panel_config(tmp_path, "simulator")) as devices:
        panel = devices.cover_calibrator
        assert isinstance(panel, SimulatedCoverCalibrator) and panel.name == "cover_calibrator"
        assert devices.all()[-1] is panel  # last, as in ROLES
        # The in-process panel is the one the in-process camera looks through.
        assert isinstance(devices.camera, SimulatedCamera)
        assert devices.camera.model.cover_calibrator is panel.model
        await panel.connect()
        assert (await panel.info()).max_brightness == 1000
    async with open_devices(panel_config(tmp_path, "alpaca")) as devices:
        assert isinstance(devices.cover_calibrator, AlpacaCoverCalibrator)
        assert devices.cover_calibrator.name == "cover_calibrator"


async def test_a_simulated_panel_the_observatory_lacks_is_a_config_error(tmp_path) -> None:
    config = panel_config(tmp_path, "simulator")
    assert config.simulator is not None
    bare = config.simulator.model_copy(update={"cover_calibrator": None})
    observatory = SimulatedObservatory.from_config(
        bare, config.site, config.telescope, ScaledClock(1.0)
    )
    with pytest.raises(
        ConfigError,
        match=r"devices\.cover_calibrator .*add a \[simulator\.cover_calibrator\] section",
    ):
        build_devices(config, observatory=observatory)
