"""One contract suite, run over every implementation of each device protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from obsctl.devices import DeviceSet
from obsctl.drivers.alpaca import (
    AlpacaCamera,
    AlpacaClient,
    AlpacaFilterWheel,
    AlpacaMount,
    AlpacaSafetyMonitor,
)

IMPLEMENTATIONS = ["simulator", "alpaca", "serial"]


@pytest.fixture(params=IMPLEMENTATIONS)
async def devices(request, sims, clock) -> AsyncIterator[DeviceSet]:
    """The observatory's devices through one implementation, all connected."""
    if request.param == "serial":
        # Mount and filter wheel over pyserial to the pty simulators; the camera and safety
        # monitor have no serial implementation and stay in-process.
        from obsctl.simulators.devices import SimulatedCamera, SimulatedSafetyMonitor

        from .serial_impl import serial_devices

        obs = sims.observatory
        async with serial_devices(obs.mount, obs.filter_wheel, clock) as (mount, wheel):
            others = [
                SimulatedCamera(obs.camera, name="camera"),
                SimulatedSafetyMonitor(obs.safety_monitor, name="safety_monitor"),
            ]
            for device in others:
                await device.connect()
            try:
                yield DeviceSet(
                    camera=others[0], filter_wheel=wheel, mount=mount, safety_monitor=others[1]
                )
            finally:
                for device in others:
                    await device.disconnect()
        return
    if request.param == "alpaca":
        client = AlpacaClient(f"127.0.0.1:{sims.port}")
        timeouts = {"timeout_s": 2.0, "connect_timeout_s": 2.0}
        devs = DeviceSet(
            camera=AlpacaCamera("camera", client, 0, download_timeout_s=5.0, **timeouts),
            filter_wheel=AlpacaFilterWheel("filter_wheel", client, 0, **timeouts),
            mount=AlpacaMount("mount", client, 0, **timeouts),
            safety_monitor=AlpacaSafetyMonitor("safety_monitor", client, 0, **timeouts),
        )
    else:
        from obsctl.simulators.devices import (
            SimulatedCamera,
            SimulatedFilterWheel,
            SimulatedMount,
            SimulatedSafetyMonitor,
        )

        obs = sims.observatory
        client = None
        devs = DeviceSet(
            camera=SimulatedCamera(obs.camera, name="camera"),
            filter_wheel=SimulatedFilterWheel(obs.filter_wheel, name="filter_wheel"),
            mount=SimulatedMount(obs.mount, name="mount"),
            safety_monitor=SimulatedSafetyMonitor(obs.safety_monitor, name="safety_monitor"),
        )
    for device in devs.all():
        await device.connect()
    try:
        yield devs
    finally:
        for device in devs.all():
            await device.disconnect()
        if client is not None:
            await client.close()
