"""ASCOM Alpaca drivers: the only place that speaks Alpaca to devices."""

from obsctl.drivers.alpaca._http import ASCOM_ERRORS, HTTP_ERRORS, AlpacaClient, error_for_ascom
from obsctl.drivers.alpaca.camera import AlpacaCamera
from obsctl.drivers.alpaca.covercalibrator import AlpacaCoverCalibrator
from obsctl.drivers.alpaca.dome import AlpacaDome
from obsctl.drivers.alpaca.filterwheel import AlpacaFilterWheel
from obsctl.drivers.alpaca.focuser import AlpacaFocuser
from obsctl.drivers.alpaca.mount import AlpacaMount
from obsctl.drivers.alpaca.observingconditions import AlpacaObservingConditions
from obsctl.drivers.alpaca.safetymonitor import AlpacaSafetyMonitor

__all__ = [
    "ASCOM_ERRORS",
    "HTTP_ERRORS",
    "AlpacaCamera",
    "AlpacaClient",
    "AlpacaCoverCalibrator",
    "AlpacaDome",
    "AlpacaFilterWheel",
    "AlpacaFocuser",
    "AlpacaMount",
    "AlpacaObservingConditions",
    "AlpacaSafetyMonitor",
    "error_for_ascom",
]
