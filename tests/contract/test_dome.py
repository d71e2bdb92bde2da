"""The `Dome` contract: a roll-off roof and a rotating dome, over every implementation.

Times are simulated seconds on the shared clock (100 per real second): the shutter takes
``SHUTTER_S`` to open or close fully, the dome turns at ``RATE_DEG_S``.
"""

from __future__ import annotations

import pytest

from obsctl.config import SimulatedCameraConfig, SimulatedDomeConfig, SimulatorConfig
from obsctl.devices import Dome, ShutterState
from obsctl.errors import DeviceNotImplementedError, InvalidDeviceValueError

from ..conftest import SPEED
from ._wait import until
from .conftest import NOT_SERIAL

SHUTTER_S = 60.0
#: Simulated seconds a poll may lag behind an arrival (0.4 s of real time on a busy machine).
SLACK_S = 40.0
RATE_DEG_S = 2.0
PARK_AZ_DEG = 10.0

pytestmark = pytest.mark.parametrize("devices", NOT_SERIAL, indirect=True)
ROLL_OFF = pytest.mark.parametrize("sim_config", ["roll_off"], indirect=True)
ROTATING = pytest.mark.parametrize("sim_config", ["rotating"], indirect=True)


@pytest.fixture(params=["roll_off", "rotating"])
def sim_config(request) -> SimulatorConfig:
    """The simulators with a dome of the kind the test names."""
    return SimulatorConfig(
        start="never",
        port=0,
        discovery_port=None,
        speed=SPEED,
        camera=SimulatedCameraConfig(width_px=64, height_px=48),
        dome=SimulatedDomeConfig(
            kind=request.param,
            shutter_time_s=SHUTTER_S,
            rotation_rate_deg_s=RATE_DEG_S,
            park_az_deg=PARK_AZ_DEG,
        ),
    )


async def shutter_reaches(dome: Dome, state: ShutterState) -> None:
    async def there() -> bool:
        return (await dome.status()).shutter == state

    await until(there)


async def stopped(dome: Dome) -> None:
    async def still() -> bool:
        return not (await dome.status()).slewing

    await until(still)


async def test_shutter_opens_and_closes_in_its_time(devices, clock) -> None:
    dome = devices.dome
    assert isinstance(dome, Dome)
    assert (await dome.status()).shutter == ShutterState.CLOSED
    start = clock.monotonic()
    await dome.open_shutter()
    status = await dome.status()
    # Returned at once: the roof is on its way, and Slewing covers the shutter (ASCOM).
    assert status.shutter == ShutterState.OPENING and status.slewing
    await shutter_reaches(dome, ShutterState.OPEN)
    opened_after = clock.monotonic() - start
    assert SHUTTER_S <= opened_after < SHUTTER_S + SLACK_S
    assert not (await dome.status()).slewing

    await dome.open_shutter()  # opening an open roof does nothing
    assert (await dome.status()).shutter == ShutterState.OPEN

    start = clock.monotonic()
    await dome.close_shutter()
    assert (await dome.status()).shutter == ShutterState.CLOSING
    await shutter_reaches(dome, ShutterState.CLOSED)
    assert SHUTTER_S <= clock.monotonic() - start < SHUTTER_S + SLACK_S


async def test_abort_stops_the_shutter_part_way(devices, sims, clock) -> None:
    dome = devices.dome
    await dome.open_shutter()
    await clock.sleep(SHUTTER_S / 4)
    await dome.abort_slew()
    status = await dome.status()
    # Neither open nor closed: ASCOM has no "part open", so the state is ERROR.
    assert status.shutter == ShutterState.ERROR and not status.slewing
    fraction = sims.observatory.dome.shutter_fraction
    assert 0.25 <= fraction < 0.9
    await clock.sleep(SHUTTER_S)
    assert (await dome.status()).shutter == ShutterState.ERROR  # it stays stopped

    # Closing goes on from where the roof stopped: a fraction of the full time.
    start = clock.monotonic()
    await dome.close_shutter()
    assert (await dome.status()).shutter == ShutterState.CLOSING
    await shutter_reaches(dome, ShutterState.CLOSED)
    assert fraction * SHUTTER_S <= clock.monotonic() - start < fraction * SHUTTER_S + SLACK_S


async def test_cannot_slave_itself(devices) -> None:
    dome = devices.dome
    assert not (await dome.info()).can_slave
    await dome.set_slaved(False)
    with pytest.raises(DeviceNotImplementedError):
        await dome.set_slaved(True)
    assert not (await dome.status()).slaved


@ROLL_OFF
async def test_roll_off_roof_has_only_a_shutter(devices) -> None:
    dome = devices.dome
    info = await dome.info()
    assert info.can_set_shutter
    assert not info.can_set_azimuth and not info.can_park
    status = await dome.status()
    assert status.azimuth_deg is None and not status.at_park and not status.slewing
    with pytest.raises(DeviceNotImplementedError):
        await dome.slew_to_azimuth(90.0)
    with pytest.raises(DeviceNotImplementedError):
        await dome.park()


@ROTATING
async def test_rotating_dome_slews_and_parks(devices, clock) -> None:
    dome = devices.dome
    info = await dome.info()
    assert info.can_set_azimuth and info.can_park
    status = await dome.status()
    assert status.at_park and status.azimuth_deg == pytest.approx(PARK_AZ_DEG)

    start = clock.monotonic()
    await dome.slew_to_azimuth(100.0)
    status = await dome.status()
    assert status.slewing and not status.at_park  # a slew leaves the park position at once
    await stopped(dome)
    turn_s = (100.0 - PARK_AZ_DEG) / RATE_DEG_S
    assert turn_s <= clock.monotonic() - start < turn_s + SLACK_S
    assert (await dome.status()).azimuth_deg == pytest.approx(100.0, abs=1e-9)

    # The short way round: 100 -> 300 is 160 degrees west, not 200 east.
    await dome.slew_to_azimuth(-60.0)  # wrapped to 300
    await clock.sleep(5.0)
    azimuth = (await dome.status()).azimuth_deg
    assert azimuth is not None and (azimuth < 100.0 or azimuth >= 300.0)
    await stopped(dome)
    assert (await dome.status()).azimuth_deg == pytest.approx(300.0, abs=1e-9)

    await dome.park()  # 70 degrees east, through north
    assert not (await dome.status()).at_park  # on its way
    await stopped(dome)
    status = await dome.status()
    assert status.at_park and status.azimuth_deg == pytest.approx(PARK_AZ_DEG, abs=1e-9)


@ROTATING
async def test_abort_stops_the_rotation(devices, clock) -> None:
    dome = devices.dome
    await dome.slew_to_azimuth(150.0)
    await clock.sleep(20.0)  # 40 degrees of the 140, east from the park at 10
    await dome.abort_slew()
    status = await dome.status()
    assert not status.slewing and not status.at_park
    assert status.azimuth_deg is not None and 40.0 < status.azimuth_deg < 140.0
    await clock.sleep(30.0)
    assert (await dome.status()).azimuth_deg == pytest.approx(status.azimuth_deg, abs=1e-9)


@ROTATING
async def test_rotating_dome_refuses_a_non_finite_azimuth(devices) -> None:
    with pytest.raises(InvalidDeviceValueError):
        await devices.dome.slew_to_azimuth(float("nan"))
