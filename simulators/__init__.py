"""Hardware simulators: Alpaca device servers, in-process devices and the sky renderer.

Start a whole simulated observatory over HTTP with `running_simulators` (tests) or
`serve_forever` (``obsctl simulate``); use `SimulatedObservatory` with the ``Simulated*``
device classes to run without HTTP.
"""

from obsctl.simulators.alpaca_server import AlpacaServer
from obsctl.simulators.camera_model import CameraModel, ExposureRecord
from obsctl.simulators.covercalibrator_model import CoverCalibratorModel
from obsctl.simulators.devices import (
    SimulatedCamera,
    SimulatedCoverCalibrator,
    SimulatedDome,
    SimulatedFilterWheel,
    SimulatedMount,
    SimulatedObservingConditions,
    SimulatedSafetyMonitor,
    translate_ascom_error,
)
from obsctl.simulators.discovery import DiscoveryResponder
from obsctl.simulators.dome_model import DomeModel
from obsctl.simulators.faults import Fault, FaultInjector
from obsctl.simulators.filterwheel_model import FilterWheelModel
from obsctl.simulators.models import AscomError
from obsctl.simulators.mount_model import MountModel, MountPointing
from obsctl.simulators.observatory import (
    RunningSimulators,
    SimulatedObservatory,
    running_simulators,
    serve_forever,
)
from obsctl.simulators.safety_model import SafetyMonitorModel
from obsctl.simulators.weather_model import WeatherModel

__all__ = [
    "AlpacaServer",
    "AscomError",
    "CameraModel",
    "CoverCalibratorModel",
    "DiscoveryResponder",
    "DomeModel",
    "ExposureRecord",
    "Fault",
    "FaultInjector",
    "FilterWheelModel",
    "MountModel",
    "MountPointing",
    "RunningSimulators",
    "SafetyMonitorModel",
    "SimulatedCamera",
    "SimulatedCoverCalibrator",
    "SimulatedDome",
    "SimulatedFilterWheel",
    "SimulatedMount",
    "SimulatedObservatory",
    "SimulatedObservingConditions",
    "SimulatedSafetyMonitor",
    "WeatherModel",
    "running_simulators",
    "serve_forever",
    "translate_ascom_error",
]
