"""The `CoverCalibrator` contract: a flip-flat and a panel alone, over every implementation.

Times are simulated seconds on the shared clock (100 per real second): the cover takes
``COVER_S`` to open or close fully, the panel ``WARMUP_S`` to be ready. The camera of the same
simulated observatory looks through the cover, so the frames are checked against the panel's
configured light: ``[simulator.sky] flat_panel_e_s * brightness / max_brightness``.
"""

from __future__ import annotations

import numpy as np
import pytest

from obsctl.config import (
    SimulatedCameraConfig,
    SimulatedCoverCalibratorConfig,
    SimulatedSkyConfig,
    SimulatorConfig,
)
from obsctl.devices import (
    CalibratorState,
    Camera,
    CoverCalibrator,
    CoverState,
    ExposureSettings,
)
from obsctl.errors import (
    DeviceNotConnectedError,
    DeviceNotImplementedError,
    InvalidDeviceValueError,
)

from ..conftest import SPEED
from ._wait import until
from .conftest import NOT_SERIAL

COVER_S = 60.0
WARMUP_S = 30.0
MAX_BRIGHTNESS = 256
#: Simulated seconds a poll may lag behind an arrival (0.4 s of real time on a busy machine).
SLACK_S = 40.0
CAMERA = SimulatedCameraConfig(width_px=64, height_px=48)
SKY = SimulatedSkyConfig()

pytestmark = pytest.mark.parametrize("devices", NOT_SERIAL, indirect=True)
FLIP_FLAT = pytest.mark.parametrize("sim_config", ["flip_flat"], indirect=True)
PANEL_ALONE = pytest.mark.parametrize("sim_config", ["panel_alone"], indirect=True)


@pytest.fixture(params=["flip_flat", "panel_alone"])
def sim_config(request) -> SimulatorConfig:
    """The simulators with a flat panel on a closed cover, or a panel without a cover."""
    return SimulatorConfig(
        start="never",
        port=0,
        discovery_port=None,
        speed=SPEED,
        camera=CAMERA,
        sky=SKY,
        cover_calibrator=SimulatedCoverCalibratorConfig(
            max_brightness=MAX_BRIGHTNESS,
            cover_time_s=COVER_S,
            warmup_s=WARMUP_S,
            has_cover=request.param == "flip_flat",
            start_open=False,
        ),
    )


async def cover_reaches(device: CoverCalibrator, state: CoverState) -> None:
    async def there() -> bool:
        return (await device.status()).cover == state

    await until(there)


async def panel_reaches(device: CoverCalibrator, state: CalibratorState) -> None:
    async def there() -> bool:
        return (await device.status()).calibrator == state

    await until(there)


async def test_info_and_initial_state(devices, sim_config) -> None:
    device = devices.cover_calibrator
    assert isinstance(device, CoverCalibrator)
    info = await device.info()
    has_cover = sim_config.cover_calibrator.has_cover
    assert info.max_brightness == MAX_BRIGHTNESS and info.has_calibrator
    assert info.has_cover is has_cover
    status = await device.status()
    assert status.cover == (CoverState.CLOSED if has_cover else CoverState.NOT_PRESENT)
    assert status.calibrator == CalibratorState.OFF and status.brightness == 0
    assert not status.cover_moving and not status.calibrator_changing


@FLIP_FLAT
async def test_cover_opens_and_closes_in_its_time(devices, clock) -> None:
    device = devices.cover_calibrator
    start = clock.monotonic()
    await device.open_cover()
    status = await device.status()
    # Returned at once: the cover is on its way (ASCOM CoverState Moving, CoverMoving true).
    assert status.cover == CoverState.MOVING and status.cover_moving
    await cover_reaches(device, CoverState.OPEN)
    assert COVER_S <= clock.monotonic() - start < COVER_S + SLACK_S
    assert not (await device.status()).cover_moving

    await device.open_cover()  # opening an open cover does nothing
    assert (await device.status()).cover == CoverState.OPEN

    start = clock.monotonic()
    await device.close_cover()
    assert (await device.status()).cover == CoverState.MOVING
    await cover_reaches(device, CoverState.CLOSED)
    assert COVER_S <= clock.monotonic() - start < COVER_S + SLACK_S


@FLIP_FLAT
async def test_halt_leaves_the_cover_unknown_part_way(devices, sims, clock) -> None:
    device = devices.cover_calibrator
    await device.open_cover()
    await clock.sleep(COVER_S / 4)
    await device.halt_cover()
    status = await device.status()
    # ASCOM HaltCover: Open, Closed or Unknown "as appropriate"; part-way is Unknown.
    assert status.cover == CoverState.UNKNOWN and not status.cover_moving
    fraction = sims.observatory.cover_calibrator.cover_fraction
    assert 0.25 <= fraction < 0.9
    await clock.sleep(COVER_S)
    assert (await device.status()).cover == CoverState.UNKNOWN  # it stays where it stopped

    # Closing goes on from where it stopped: a fraction of the full time.
    start = clock.monotonic()
    await device.close_cover()
    await cover_reaches(device, CoverState.CLOSED)
    assert fraction * COVER_S <= clock.monotonic() - start < fraction * COVER_S + SLACK_S


@PANEL_ALONE
async def test_a_panel_alone_has_no_cover_to_move(devices) -> None:
    device = devices.cover_calibrator
    for command in (device.open_cover, device.close_cover, device.halt_cover):
        with pytest.raises(DeviceNotImplementedError):
            await command()
    assert (await device.status()).cover == CoverState.NOT_PRESENT


async def test_panel_warms_up_then_is_ready(devices, clock) -> None:
    device = devices.cover_calibrator
    start = clock.monotonic()
    await device.calibrator_on(150)
    status = await device.status()
    assert status.calibrator == CalibratorState.NOT_READY and status.calibrator_changing
    assert status.brightness == 150
    await panel_reaches(device, CalibratorState.READY)
    assert WARMUP_S <= clock.monotonic() - start < WARMUP_S + SLACK_S
    assert not (await device.status()).calibrator_changing

    await device.calibrator_on(MAX_BRIGHTNESS)  # already on: the new level at once
    status = await device.status()
    assert status.calibrator == CalibratorState.READY and status.brightness == MAX_BRIGHTNESS

    await device.calibrator_off()
    status = await device.status()
    assert status.calibrator == CalibratorState.OFF and status.brightness == 0


async def test_brightness_out_of_range_is_refused(devices) -> None:
    device = devices.cover_calibrator
    for brightness in (-1, MAX_BRIGHTNESS + 1):
        with pytest.raises(InvalidDeviceValueError):
            await device.calibrator_on(brightness)
    status = await device.status()
    assert status.calibrator == CalibratorState.OFF and status.brightness == 0


async def test_commands_need_a_connection(devices) -> None:
    device = devices.cover_calibrator
    await device.disconnect()
    with pytest.raises(DeviceNotConnectedError):
        await device.calibrator_off()
    await device.connect()
    await device.calibrator_off()


# --- what the camera sees --------------------------------------------------------------


async def expose(camera: Camera, exposure_s: float, *, light: bool = True) -> np.ndarray:
    await camera.start_exposure(exposure_s, light=light)

    async def ready() -> bool:
        return (await camera.status()).image_ready

    await until(ready)
    return (await camera.download()).data.astype(np.float64)


def centre(image: np.ndarray) -> float:
    """Median of the middle quarter of the frame, where vignetting is least."""
    h, w = image.shape
    return float(np.median(image[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]))


@FLIP_FLAT
async def test_closed_cover_hides_the_sky_and_shows_the_panel(devices, sims) -> None:
    device, camera = devices.cover_calibrator, devices.camera
    await camera.configure(ExposureSettings(gain=CAMERA.gain_min, offset=CAMERA.offset_min))
    exposure_s = 60.0
    dark = await expose(camera, exposure_s, light=False)

    # Closed with the panel off: a light frame is a dark, no stars and no sky glow.
    closed = await expose(camera, exposure_s)
    truth = sims.observatory.camera.last_truth
    assert truth is not None and truth.sky is None and len(truth.stars) == 0
    assert abs(np.median(closed) - np.median(dark)) < 1.0  # ADU; its noise is ~0.15 ADU

    # The panel at brightness B: B / max of the lamp's configured light, through the gain.
    t_s = 2.0
    dark_short = centre(await expose(camera, t_s, light=False))
    levels = {}
    for brightness in (128, 32):
        await device.calibrator_on(brightness)
        await panel_reaches(device, CalibratorState.READY)
        flat = await expose(camera, t_s)
        levels[brightness] = centre(flat) - dark_short
    expected_adu = 128 / MAX_BRIGHTNESS * SKY.flat_panel_e_s * t_s / CAMERA.electrons_per_adu
    # The flat field itself (vignetting and dust, a few per cent near the centre) is all
    # that separates the two: shot noise on the median is far below it.
    assert levels[128] == pytest.approx(expected_adu, rel=0.05)
    assert levels[128] / levels[32] == pytest.approx(4.0, rel=0.01)

    # Open, the telescope sees the sky again: well above the dark, and the panel's light
    # does not reach it (it is on the inside of the cover).
    await device.open_cover()
    await cover_reaches(device, CoverState.OPEN)
    sky = await expose(camera, exposure_s)
    truth = sims.observatory.camera.last_truth
    assert truth is not None and truth.sky is not None and truth.sky.sky_e_s_px > 0
    sky_adu = truth.sky.sky_e_s_px * exposure_s / CAMERA.electrons_per_adu
    assert np.median(sky) - np.median(dark) == pytest.approx(sky_adu, rel=0.2)
    assert np.median(sky) - np.median(dark) < 0.1 * expected_adu


@PANEL_ALONE
async def test_a_lit_panel_alone_is_all_the_telescope_sees(devices, sims) -> None:
    device, camera = devices.cover_calibrator, devices.camera
    await camera.configure(ExposureSettings(gain=CAMERA.gain_min, offset=CAMERA.offset_min))
    t_s = 2.0
    dark = centre(await expose(camera, t_s, light=False))
    await expose(camera, t_s)
    truth = sims.observatory.camera.last_truth
    assert truth is not None and truth.sky is not None  # off, the panel is out of the way
    await device.calibrator_on(64)
    await panel_reaches(device, CalibratorState.READY)
    flat = centre(await expose(camera, t_s))
    truth = sims.observatory.camera.last_truth
    assert truth is not None and truth.sky is None and len(truth.stars) == 0
    expected_adu = 64 / MAX_BRIGHTNESS * SKY.flat_panel_e_s * t_s / CAMERA.electrons_per_adu
    assert flat - dark == pytest.approx(expected_adu, rel=0.05)
