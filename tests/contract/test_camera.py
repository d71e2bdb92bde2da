import numpy as np
import pytest

from obsctl.devices import Camera, CameraState, ExposureSettings
from obsctl.errors import DeviceBusyError, InvalidDeviceValueError

from ._wait import until


async def expose(camera: Camera, exposure_s: float, *, light: bool = True) -> None:
    await camera.start_exposure(exposure_s, light=light)

    async def ready() -> bool:
        return (await camera.status()).image_ready

    await until(ready)


async def test_connection(devices) -> None:
    camera = devices.camera
    assert await camera.is_connected()
    await camera.disconnect()
    assert not await camera.is_connected()
    await camera.connect()
    assert await camera.is_connected()


async def test_info_is_sane(devices) -> None:
    info = await devices.camera.info()
    assert (info.width_px, info.height_px) == (128, 96)
    assert info.pixel_size_x_um == pytest.approx(3.76)
    assert info.max_adu == 65535
    assert info.exposure_min_s < 0.01 < info.exposure_max_s
    assert info.gain_min is not None and info.gain_max is not None
    assert len(info.readout_modes) >= 1
    assert info.can_abort and info.can_stop and info.can_set_temperature


async def test_light_exposure_downloads_with_metadata(devices) -> None:
    camera = devices.camera
    await camera.configure(ExposureSettings(gain=100, offset=10, readout_mode=0))
    await camera.start_exposure(2.0)
    status = await camera.status()
    assert status.state in (CameraState.EXPOSING, CameraState.READING)
    assert not status.image_ready
    await until(lambda: _ready(camera))
    image = await camera.download()
    assert image.data.shape == (96, 128)
    assert image.data.dtype == np.uint16 and image.data.flags.c_contiguous
    m = image.metadata
    assert m.exposure_s == pytest.approx(2.0)
    assert m.light and (m.bin_x, m.bin_y) == (1, 1)
    assert (m.gain, m.offset) == (100, 10)
    assert m.start_time is not None and m.start_time.tzinfo is not None
    assert m.pixel_size_x_um == pytest.approx(3.76)
    assert m.electrons_per_adu > 0
    assert m.camera_name == "camera"


async def _ready(camera: Camera) -> bool:
    return (await camera.status()).image_ready


async def test_binning_and_subframe_shape(devices) -> None:
    camera = devices.camera
    await camera.configure(ExposureSettings(bin_x=2, bin_y=2, subframe=(4, 6, 20, 10)))
    await expose(camera, 0.5)
    image = await camera.download()
    assert image.data.shape == (10, 20)
    assert (image.metadata.bin_x, image.metadata.start_x, image.metadata.start_y) == (2, 4, 6)
    await camera.configure(ExposureSettings(bin_x=2, bin_y=2))
    await expose(camera, 0.5)
    assert (await camera.download()).data.shape == (48, 64)


async def test_dark_is_darker_than_light(devices) -> None:
    camera = devices.camera
    await expose(camera, 5.0, light=True)
    light = await camera.download()
    await expose(camera, 5.0, light=False)
    dark = await camera.download()
    assert not dark.metadata.light
    assert np.median(light.data) > np.median(dark.data) + 5


async def test_second_start_while_exposing_is_busy(devices) -> None:
    camera = devices.camera
    await camera.start_exposure(100.0)
    with pytest.raises(DeviceBusyError):
        await camera.start_exposure(1.0)
    await camera.abort_exposure()


@pytest.mark.parametrize("exposure_s", [-1.0, 1e7])
async def test_exposure_out_of_range(devices, exposure_s) -> None:
    with pytest.raises(InvalidDeviceValueError):
        await devices.camera.start_exposure(exposure_s)


async def test_bad_binning(devices) -> None:
    camera = devices.camera
    with pytest.raises(InvalidDeviceValueError):
        await camera.configure(ExposureSettings(bin_x=99, bin_y=99))


async def test_abort_discards(devices) -> None:
    camera = devices.camera
    await camera.start_exposure(100.0)
    await camera.abort_exposure()

    async def idle() -> bool:
        return (await camera.status()).state == CameraState.IDLE

    await until(idle)
    assert not (await camera.status()).image_ready
    with pytest.raises(DeviceBusyError):
        await camera.download()


async def test_stop_keeps_shorter_image(devices) -> None:
    camera = devices.camera
    await camera.start_exposure(50.0)
    await camera.stop_exposure()
    await until(lambda: _ready(camera))
    image = await camera.download()
    assert 0 < image.metadata.exposure_s < 50.0


async def test_cooler_reaches_set_point(devices) -> None:
    camera = devices.camera
    await camera.set_cooler(on=True, set_point_c=-10.0)

    async def cold() -> bool:
        st = await camera.status()
        return st.ccd_temperature_c is not None and abs(st.ccd_temperature_c + 10.0) < 0.5

    await until(cold, timeout_s=10.0)
    status = await camera.status()
    assert status.cooler_on and status.set_temperature_c == pytest.approx(-10.0)
    assert status.cooler_power_pct is not None and status.cooler_power_pct > 0
