"""Shared fixtures: tiny, fast simulated observatories started inside the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from obsctl.clock import ScaledClock
from obsctl.config import (
    SimulatedCameraConfig,
    SimulatedMountConfig,
    SimulatorConfig,
    SiteConfig,
    TelescopeConfig,
)
from obsctl.simulators.filterwheel_model import FilterWheelModel
from obsctl.simulators.mount_model import MountModel

# Simulated seconds per real second: a 1 s exposure takes 10 ms, a 90 degree slew 0.2 s.
SPEED = 100.0


@pytest.fixture
def site() -> SiteConfig:
    return SiteConfig(name="Test site", latitude_deg=28.76, longitude_deg=-17.88, elevation_m=2326)


@pytest.fixture
def telescope() -> TelescopeConfig:
    return TelescopeConfig(name="Test scope", focal_length_mm=800, aperture_mm=200)


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return SimulatorConfig(
        start="never",
        port=0,
        discovery_port=None,
        speed=SPEED,
        camera=SimulatedCameraConfig(width_px=128, height_px=96, readout_time_s=0.5),
        mount=SimulatedMountConfig(min_alt_deg=10.0),
    )


@pytest.fixture
def clock() -> ScaledClock:
    return ScaledClock(SPEED)


@pytest.fixture
async def sims(sim_config, site, telescope, clock) -> AsyncIterator[object]:
    """Alpaca simulators on 127.0.0.1, on a free port."""
    from obsctl.simulators.observatory import running_simulators

    async with running_simulators(sim_config, site, telescope, clock=clock, port=0) as running:
        yield running


@pytest.fixture
def mount_model(sim_config, site, clock) -> MountModel:
    """The simulated mount's model alone (for the serial simulators and drivers)."""
    return MountModel(sim_config.mount, site, clock)


@pytest.fixture
def wheel_model(sim_config, clock) -> FilterWheelModel:
    """The simulated filter wheel's model alone."""
    return FilterWheelModel(sim_config.filter_wheel, clock)
