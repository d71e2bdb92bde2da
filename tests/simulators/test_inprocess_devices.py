"""In-process simulated devices through the obsctl device Protocols."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from obsctl.clock import ScaledClock
from obsctl.config import SimulatedCameraConfig, SimulatorConfig, SiteConfig, TelescopeConfig
from obsctl.devices import (
    Camera,
    CameraState,
    ExposureSettings,
    FilterWheel,
    Mount,
    SafetyMonitor,
)
from obsctl.errors import (
    DeviceBusyError,
    DeviceError,
    DeviceNotConnectedError,
    DeviceNotImplementedError,
    InvalidDeviceValueError,
)
from obsctl.simulators import (
    AscomError,
    SimulatedCamera,
    SimulatedFilterWheel,
    SimulatedMount,
    SimulatedObservatory,
    SimulatedSafetyMonitor,
    translate_ascom_error,
)

SITE = SiteConfig(name="Test site", latitude_deg=48.0, longitude_deg=11.0)
TELESCOPE = TelescopeConfig(focal_length_mm=800.0, aperture_mm=200.0)


@pytest.fixture
async def observatory() -> AsyncIterator[SimulatedObservatory]:
    sim = SimulatorConfig(camera=SimulatedCameraConfig(width_px=128, height_px=96))
    obs = SimulatedObservatory.from_config(sim, SITE, TELESCOPE, ScaledClock(1000.0))
    try:
        yield obs
    finally:
        await obs.close()


def test_protocol_conformance(observatory: SimulatedObservatory) -> None:
    camera: Camera = SimulatedCamera(observatory.camera, name="cam")
    wheel: FilterWheel = SimulatedFilterWheel(observatory.filter_wheel)
    mount: Mount = SimulatedMount(observatory.mount)
    safety: SafetyMonitor = SimulatedSafetyMonitor(observatory.safety_monitor)
    assert isinstance(camera, Camera) and camera.name == "cam"
    assert isinstance(wheel, FilterWheel)
    assert isinstance(mount, Mount)
    assert isinstance(safety, SafetyMonitor)


def test_error_translation() -> None:
    cases = {
        0x400: DeviceNotImplementedError,
        0x401: InvalidDeviceValueError,
        0x402: InvalidDeviceValueError,
        0x407: DeviceNotConnectedError,
        0x408: DeviceBusyError,
        0x40B: DeviceBusyError,
    }
    for number, cls in cases.items():
        error = translate_ascom_error(AscomError(number, "x"), "dev")
        assert type(error) is cls and error.ascom_error == number and error.device == "dev"
    assert type(translate_ascom_error(AscomError(0x500, "x"), "dev")) is DeviceError


async def test_exposure_and_download(observatory: SimulatedObservatory) -> None:
    camera = SimulatedCamera(observatory.camera, name="cam")
    with pytest.raises(DeviceNotConnectedError):
        await camera.start_exposure(1.0)
    await camera.connect()
    assert await camera.is_connected()
    info = await camera.info()
    assert (info.width_px, info.height_px) == (128, 96)
    await camera.configure(ExposureSettings(bin_x=2, bin_y=2, gain=100, offset=10))
    await camera.start_exposure(2.0)
    with pytest.raises(DeviceBusyError):
        await camera.start_exposure(2.0)
    with pytest.raises(DeviceBusyError):
        await camera.download()
    async with asyncio.timeout(5):
        while not (await camera.status()).image_ready:
            await asyncio.sleep(0.002)
    status = await camera.status()
    assert status.state == CameraState.IDLE and status.percent_completed == 100.0
    image = await camera.download()
    assert image.data.shape == (48, 64) and image.data.dtype == np.uint16
    meta = image.metadata
    assert (meta.bin_x, meta.bin_y, meta.gain, meta.offset) == (2, 2, 100, 10)
    assert meta.exposure_s == 2.0 and meta.light and meta.camera_name == "cam"
    assert meta.start_time is not None and meta.start_time.tzinfo is not None
    assert meta.electrons_per_adu == pytest.approx(0.8 * 10 ** (-0.5))
    assert meta.readout_mode == "Normal"


async def test_bias_and_invalid_settings(observatory: SimulatedObservatory) -> None:
    camera = SimulatedCamera(observatory.camera)
    await camera.connect()
    with pytest.raises(InvalidDeviceValueError):
        await camera.configure(ExposureSettings(bin_x=2, subframe=(0, 0, 128, 96)))
    # A refused configuration changes nothing.
    assert (observatory.camera.bin_x, observatory.camera.num_x) == (1, 128)
    with pytest.raises(InvalidDeviceValueError):
        await camera.configure(ExposureSettings(gain=10_000))
    with pytest.raises(InvalidDeviceValueError):
        await camera.start_exposure(-1.0)
    await camera.start_exposure(0.0, light=False)  # a bias: the shortest exposure
    await camera.abort_exposure()
    await camera.set_cooler(on=True, set_point_c=-5.0)
    status = await camera.status()
    assert status.cooler_on and status.set_temperature_c == -5.0


async def test_filter_wheel(observatory: SimulatedObservatory) -> None:
    wheel = SimulatedFilterWheel(observatory.filter_wheel)
    await wheel.connect()
    assert await wheel.names() == ["L", "B", "V", "R", "I"]
    await wheel.move(1)
    assert await wheel.position() is None
    async with asyncio.timeout(5):
        while await wheel.position() != 1:
            await asyncio.sleep(0.002)
    with pytest.raises(InvalidDeviceValueError):
        await wheel.move(7)


async def test_mount(observatory: SimulatedObservatory) -> None:
    mount = SimulatedMount(observatory.mount)
    await mount.connect()
    await mount.set_tracking(True)
    status = await mount.status()
    ra = (status.sidereal_time_h or 0.0) * 15.0
    await mount.slew_to_radec(ra, 50.0)
    assert (await mount.status()).slewing
    async with asyncio.timeout(5):
        while (await mount.status()).slewing:
            await asyncio.sleep(0.002)
    status = await mount.status()
    assert status.ra_deg == pytest.approx(ra % 360.0, abs=1e-6)
    assert status.dec_deg == pytest.approx(50.0)
    await mount.slew_to_altaz(60.0, 200.0)  # switches tracking off itself
    assert not (await mount.status()).tracking
    with pytest.raises(InvalidDeviceValueError):
        await mount.slew_to_altaz(2.0, 200.0)
    await mount.park()
    async with asyncio.timeout(5):
        while not (await mount.status()).at_park:
            await asyncio.sleep(0.002)
    with pytest.raises(DeviceBusyError):
        await mount.slew_to_radec(ra, 50.0)
    await mount.unpark()
    assert not (await mount.status()).at_park


async def test_safety_monitor(observatory: SimulatedObservatory) -> None:
    safety = SimulatedSafetyMonitor(observatory.safety_monitor)
    assert await safety.is_safe() is False  # disconnected
    await safety.connect()
    assert await safety.is_safe() is True
    observatory.safety_monitor.set_safe(False)
    assert await safety.is_safe() is False
    await safety.disconnect()
    assert not await safety.is_connected()
