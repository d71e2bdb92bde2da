"""The serial implementations for the contract suite: drivers on pseudo-terminals.

`serial_devices` serves a mount model and a filter-wheel model through the serial simulators
(LX200 in its OnStep flavour, QHY CFW) on pseudo-terminals and yields the serial drivers,
connected through `PySerialTransport` to the ptys: the same path a driver takes to a
USB-serial adapter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from obsctl.clock import Clock
from obsctl.drivers.serial import PySerialTransport, SerialFilterWheel, SerialLX200Mount
from obsctl.simulators.filterwheel_model import FilterWheelModel
from obsctl.simulators.mount_model import MountModel
from obsctl.simulators.serial_cfw import QhyCfwInterpreter
from obsctl.simulators.serial_lx200 import LX200Interpreter
from obsctl.simulators.serial_server import SerialSimulator

TIMEOUT_S = 2.0
MOVE_TIMEOUT_S = 5.0


@asynccontextmanager
async def serial_devices(
    mount_model: MountModel, filter_wheel_model: FilterWheelModel, clock: Clock
) -> AsyncIterator[tuple[SerialLX200Mount, SerialFilterWheel]]:
    """Yield ``(mount, filter_wheel)`` serial drivers, connected, driving the given models."""
    async with (
        SerialSimulator(LX200Interpreter(mount_model), name="mount") as mount_sim,
        SerialSimulator(QhyCfwInterpreter(filter_wheel_model), name="filter_wheel") as wheel_sim,
    ):
        assert mount_sim.path is not None and wheel_sim.path is not None
        mount = SerialLX200Mount(
            "mount",
            PySerialTransport(mount_sim.path, timeout_s=TIMEOUT_S, device="mount"),
            timeout_s=TIMEOUT_S,
            site=mount_model.site,
            clock=clock,
        )
        wheel = SerialFilterWheel(
            "filter_wheel",
            PySerialTransport(wheel_sim.path, timeout_s=TIMEOUT_S, device="filter_wheel"),
            names=filter_wheel_model.names,
            focus_offsets=filter_wheel_model.focus_offsets,
            timeout_s=TIMEOUT_S,
            move_timeout_s=MOVE_TIMEOUT_S,
        )
        await mount.connect()
        try:
            await wheel.connect()
            try:
                yield mount, wheel
            finally:
                await wheel.disconnect()
        finally:
            await mount.disconnect()
