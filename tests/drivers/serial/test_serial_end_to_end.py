"""configs/serial-mount.toml end to end: an Alpaca camera with a serial mount and filter wheel.

The devices are built from the shipped config by the registry (only the ports change, to free
ones, and the simulated camera shrinks); the Alpaca and serial simulators share one simulated
observatory, so the camera renders the sky where the serial mount points, through the filter
the serial wheel holds.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from obsctl.acquisition.activity import Activity
from obsctl.acquisition.safety import SafetySupervisor
from obsctl.acquisition.sequence import ExposureStep, Sequence, Target
from obsctl.acquisition.sequencer import Sequencer
from obsctl.config import Config, SerialSimulatorConfig, parse_config
from obsctl.devices import DeviceSet, ExposureSettings
from obsctl.drivers.alpaca import AlpacaCamera
from obsctl.drivers.registry import open_devices
from obsctl.drivers.serial import PySerialTransport, SerialFilterWheel, SerialLX200Mount
from obsctl.events import EventBus
from obsctl.simulators.observatory import SimulatedObservatory, running_simulators
from obsctl.simulators.serial_server import running_serial_simulators
from obsctl.store.exposure_log import ExposureLog
from obsctl.store.raw_store import RawStore
from obsctl.store.writer import FrameWriter

CONFIG = Path(__file__).parents[3] / "configs" / "serial-mount.toml"
SPEED = 100.0


@dataclass
class Observatory:
    config: Config
    devices: DeviceSet
    models: SimulatedObservatory


def shipped_config(tmp_path: Path) -> dict:
    data = tomllib.loads(CONFIG.read_text())
    data["data"] = {"directory": str(tmp_path / "data")}
    sim = data["simulator"]
    sim.update(start="never", discovery_port=None, speed=SPEED)
    sim["camera"] = {"width_px": 128, "height_px": 96, "readout_time_s": 0.5}
    data["sequencer"] = {"poll_s": 0.005, "backoff_s": 0.1}
    data["safety"] = {"poll_s": 0.02, "read_timeout_s": 0.5}
    return data


@pytest.fixture
async def observatory(tmp_path, clock) -> AsyncIterator[Observatory]:
    data = shipped_config(tmp_path)
    config = parse_config(data, path=CONFIG)
    assert config.simulator is not None and config.simulator.serial is not None
    async with AsyncExitStack() as stack:
        alpaca = await stack.enter_async_context(
            running_simulators(config.simulator, config.site, config.telescope, clock=clock, port=0)
        )
        serial_config = SerialSimulatorConfig(mount_tcp_port=0, filter_wheel_tcp_port=0)
        serial = await stack.enter_async_context(
            running_serial_simulators(alpaca.observatory, serial_config)
        )
        assert serial.mount is not None and serial.filter_wheel is not None
        # The same config on the ports the simulators got.
        devices = data["devices"]
        for role in ("camera", "safety_monitor"):
            devices[role]["address"] = f"127.0.0.1:{alpaca.port}"
        devices["mount"]["url"] = serial.mount.tcp_url
        devices["filter_wheel"]["url"] = serial.filter_wheel.tcp_url
        config = parse_config(data, path=CONFIG)
        built = await stack.enter_async_context(
            open_devices(config, observatory=alpaca.observatory)
        )
        for device in built.all():
            await device.connect()
            stack.push_async_callback(device.disconnect)
        yield Observatory(config, built, alpaca.observatory)


def test_the_shipped_config_asks_for_serial_devices_and_simulators() -> None:
    config = parse_config(tomllib.loads(CONFIG.read_text()), path=CONFIG)
    assert config.devices.mount is not None and config.devices.mount.driver == "serial"
    assert config.devices.filter_wheel is not None
    assert config.devices.filter_wheel.driver == "serial"
    assert config.simulator is not None and config.simulator.serial is not None
    assert config.simulator.serial.mount_tcp_port == 9999
    assert config.simulator.serial.filter_wheel_tcp_port == 9998


async def test_registry_builds_serial_drivers(observatory) -> None:
    devices = observatory.devices
    assert isinstance(devices.camera, AlpacaCamera)
    assert isinstance(devices.mount, SerialLX200Mount)
    assert isinstance(devices.filter_wheel, SerialFilterWheel)
    transport = devices.mount.transport
    assert isinstance(transport, PySerialTransport)
    assert transport.url.startswith("socket://127.0.0.1:")
    assert devices.mount.flavor == "onstep"
    assert await devices.filter_wheel.names() == ["L", "B", "V", "R", "I"]
    assert await devices.filter_wheel.focus_offsets() == [0, 35, 20, 10, -15]


async def test_slew_filter_expose_download(observatory) -> None:
    mount, wheel, camera = (
        observatory.devices.mount,
        observatory.devices.filter_wheel,
        observatory.devices.camera,
    )
    assert mount is not None and wheel is not None
    await mount.unpark()
    await mount.set_tracking(True)
    status = await mount.status()
    assert status.sidereal_time_h is not None
    ra, dec = (status.sidereal_time_h * 15 + 15.0) % 360.0, 35.0
    await mount.slew_to_radec(ra, dec)
    await wheel.move(2)
    async with asyncio.timeout(10):
        while (await mount.status()).slewing or await wheel.position() is None:
            await asyncio.sleep(0.01)
    # What the Alpaca camera renders from: the models the serial drivers moved.
    pointing = observatory.models.mount.pointing()
    assert pointing.ra_deg == pytest.approx(ra, abs=1 / 3600)
    assert pointing.dec_deg == pytest.approx(dec, abs=1 / 3600)
    assert observatory.models.filter_wheel.current_filter == "V"
    await camera.configure(ExposureSettings())
    await camera.start_exposure(1.0)
    async with asyncio.timeout(10):
        while not (await camera.status()).image_ready:
            await asyncio.sleep(0.01)
    image = await camera.download()
    assert image.data.shape == (96, 128)
    assert float(np.ptp(image.data)) > 0  # a rendered sky, not a blank frame


async def test_a_sequence_runs_end_to_end(observatory, clock, tmp_path) -> None:
    config, devices = observatory.config, observatory.devices
    status = await devices.mount.status()  # type: ignore[union-attr]
    assert status.sidereal_time_h is not None
    target = Target(name="Field", ra_deg=(status.sidereal_time_h * 15 + 10) % 360, dec_deg=30.0)
    sequence = Sequence(
        name="serial-mix",
        target=target,
        steps=(
            ExposureStep(image_type="LIGHT", filter="V", exposure_s=1.0, count=2),
            ExposureStep(image_type="LIGHT", filter="R", exposure_s=1.0, count=1),
        ),
    )
    data_dir = Path(config.data.directory)
    log_db = ExposureLog(data_dir / "obsctl.sqlite")
    events = EventBus()
    activity = Activity()
    writer = FrameWriter(RawStore(data_dir / "raw"), log_db, events)
    supervisor = SafetySupervisor(devices, config.safety, activity, clock, events)
    sequencer = Sequencer(devices, config, log_db, writer, supervisor, activity, clock, events)
    writer.start()
    safety = asyncio.create_task(supervisor.run())
    try:
        sid = log_db.add_sequence(sequence.name, sequence.model_dump_json())
        async with asyncio.timeout(60):
            assert await sequencer.run(sid) == "done"
        rows = log_db.exposures()
        assert not log_db.failures()
    finally:
        safety.cancel()
        await asyncio.gather(safety, return_exceptions=True)
        await writer.close()
        log_db.close()
    assert [r["filter"] for r in rows] == ["V", "V", "R"]
    header = fits.getheader(data_dir / rows[0]["file_path"])
    assert header["FILTER"] == "V" and header["OBJECT"] == "Field"
    assert header["RA"] == pytest.approx(target.ra_deg, abs=1e-3)  # read from the serial mount
    assert header["DEC"] == pytest.approx(target.dec_deg, abs=1e-3)
    assert observatory.models.filter_wheel.current_filter == "R"
