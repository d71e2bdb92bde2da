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

IMPLEMENTATIONS = ["simulator", "alpaca"]


@pytest.fixture(params=IMPLEMENTATIONS)
async def devices(request, sims) -> AsyncIterator[DeviceSet]:
    """The observatory's devices through one implementation, all connected."""
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
