"""Serial-line drivers (pyserial): an LX200 mount and a QHY CFW filter wheel.

The drivers receive a `ByteTransport`; production passes a `PySerialTransport` opened by
pyserial URL (``/dev/ttyUSB0``, ``socket://host:port``, ``rfc2217://host:port``).
"""

from obsctl.drivers.serial.lx200 import SerialLX200Mount
from obsctl.drivers.serial.qhycfw import SerialFilterWheel
from obsctl.drivers.serial.transport import ByteTransport, PySerialTransport

__all__ = ["ByteTransport", "PySerialTransport", "SerialFilterWheel", "SerialLX200Mount"]
