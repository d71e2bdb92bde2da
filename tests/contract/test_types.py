"""Structural conformance checked by mypy (``.ci/typecheck`` includes this file)."""

from obsctl.devices import Camera, FilterWheel, Mount, SafetyMonitor
from obsctl.drivers.alpaca import (
    AlpacaCamera,
    AlpacaClient,
    AlpacaFilterWheel,
    AlpacaMount,
    AlpacaSafetyMonitor,
)
from obsctl.drivers.serial import SerialFilterWheel, SerialLX200Mount
from obsctl.simulators.devices import (
    SimulatedCamera,
    SimulatedFilterWheel,
    SimulatedMount,
    SimulatedSafetyMonitor,
)


def alpaca_devices(client: AlpacaClient) -> tuple[Camera, FilterWheel, Mount, SafetyMonitor]:
    return (
        AlpacaCamera("c", client),
        AlpacaFilterWheel("f", client),
        AlpacaMount("m", client),
        AlpacaSafetyMonitor("s", client),
    )


def simulated_devices(
    camera: SimulatedCamera,
    wheel: SimulatedFilterWheel,
    mount: SimulatedMount,
    monitor: SimulatedSafetyMonitor,
) -> tuple[Camera, FilterWheel, Mount, SafetyMonitor]:
    return camera, wheel, mount, monitor


def test_runtime_protocols() -> None:
    client = AlpacaClient("127.0.0.1:1")
    camera, wheel, mount, monitor = alpaca_devices(client)
    assert isinstance(camera, Camera) and isinstance(wheel, FilterWheel)
    assert isinstance(mount, Mount) and isinstance(monitor, SafetyMonitor)


def serial_devices(mount: SerialLX200Mount, wheel: SerialFilterWheel) -> tuple[Mount, FilterWheel]:
    return mount, wheel
