"""ASCOM Alpaca drivers: the only place that speaks Alpaca to devices."""

from obsctl.drivers.alpaca._http import AlpacaClient
from obsctl.drivers.alpaca.camera import AlpacaCamera
from obsctl.drivers.alpaca.filterwheel import AlpacaFilterWheel
from obsctl.drivers.alpaca.mount import AlpacaMount
from obsctl.drivers.alpaca.safetymonitor import AlpacaSafetyMonitor

__all__ = [
    "AlpacaCamera",
    "AlpacaClient",
    "AlpacaFilterWheel",
    "AlpacaMount",
    "AlpacaSafetyMonitor",
]
