"""Structural conformance checked by mypy (``.ci/typecheck`` includes this file)."""

from obsctl.devices import (
    Camera,
    CoverCalibrator,
    Dome,
    FilterWheel,
    Focuser,
    Mount,
    ObservingConditions,
    SafetyMonitor,
)
from obsctl.drivers.alpaca import (
    AlpacaCamera,
    AlpacaClient,
    AlpacaCoverCalibrator,
    AlpacaDome,
    AlpacaFilterWheel,
    AlpacaFocuser,
    AlpacaMount,
    AlpacaObservingConditions,
    AlpacaSafetyMonitor,
)
from obsctl.drivers.serial import SerialFilterWheel, SerialLX200Mount
from obsctl.simulators.devices import (
    SimulatedCamera,
    SimulatedCoverCalibrator,
    SimulatedDome,
    SimulatedFilterWheel,
    SimulatedFocuser,
    SimulatedMount,
    SimulatedObservingConditions,
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


def alpaca_enclosure(client: AlpacaClient) -> tuple[Dome, ObservingConditions]:
    return AlpacaDome("d", client), AlpacaObservingConditions("w", client)


def simulated_enclosure(
    dome: SimulatedDome, weather: SimulatedObservingConditions
) -> tuple[Dome, ObservingConditions]:
    return dome, weather


def alpaca_cover_calibrator(client: AlpacaClient) -> CoverCalibrator:
    return AlpacaCoverCalibrator("p", client)


def simulated_cover_calibrator(panel: SimulatedCoverCalibrator) -> CoverCalibrator:
    return panel


def alpaca_focuser(client: AlpacaClient) -> Focuser:
    return AlpacaFocuser("f", client)


def simulated_focuser(focuser: SimulatedFocuser) -> Focuser:
    return focuser


def test_runtime_protocols() -> None:
    client = AlpacaClient("127.0.0.1:1")
    camera, wheel, mount, monitor = alpaca_devices(client)
    assert isinstance(camera, Camera) and isinstance(wheel, FilterWheel)
    assert isinstance(mount, Mount) and isinstance(monitor, SafetyMonitor)
    dome, weather = alpaca_enclosure(client)
    assert isinstance(dome, Dome) and isinstance(weather, ObservingConditions)
    # The roles are distinct: a weather station is no dome, a dome no safety monitor.
    assert not isinstance(weather, Dome) and not isinstance(dome, SafetyMonitor)
    panel = alpaca_cover_calibrator(client)
    assert isinstance(panel, CoverCalibrator) and not isinstance(panel, Dome)
    assert not isinstance(dome, CoverCalibrator) and not isinstance(weather, CoverCalibrator)
    focuser = alpaca_focuser(client)
    assert isinstance(focuser, Focuser) and not isinstance(focuser, CoverCalibrator)
    assert not isinstance(dome, Focuser) and not isinstance(panel, Focuser)


def serial_devices(mount: SerialLX200Mount, wheel: SerialFilterWheel) -> tuple[Mount, FilterWheel]:
    return mount, wheel
