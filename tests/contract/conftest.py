"""One contract suite, run over every implementation of each device protocol.

``alpaca-quirky`` is the Alpaca drivers against a server of the same models with every quirk
of `obsctl.simulators.quirks` on, and a topocentric mount that says EquatorialSystem 0
(the driver is told ``equatorial_system = "topocentric"``): the suite must hold as it does
against the server that follows the spec.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from obsctl.devices import DeviceSet
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
from obsctl.simulators.alpaca_server import AlpacaServer
from obsctl.simulators.quirks import Quirks

IMPLEMENTATIONS = ["simulator", "alpaca", "alpaca-quirky", "serial"]
#: The implementations of a role that has no serial driver (dome, weather station, panel,
#: focuser).
NOT_SERIAL = ["simulator", "alpaca", "alpaca-quirky"]


@asynccontextmanager
async def quirky_server(observatory) -> AsyncIterator[AlpacaServer]:
    """A second Alpaca server over the same models, every quirk on, the mount topocentric."""
    server = AlpacaServer(observatory, port=0, quirks=Quirks.all(), topocentric=True)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(close_models=False)  # the `sims` fixture owns the models


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
    if request.param == "alpaca-quirky":
        async with (
            quirky_server(sims.observatory) as server,
            connected(
                alpaca_devices(server.port, clock, quirky=True, observatory=sims.observatory)
            ) as devs,
        ):
            yield devs
        return
    if request.param == "alpaca":
        async with connected(
            alpaca_devices(sims.port, clock, quirky=False, observatory=sims.observatory)
        ) as devs:
            yield devs
        return
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

    obs = sims.observatory
    inprocess = DeviceSet(
        camera=SimulatedCamera(obs.camera, name="camera"),
        filter_wheel=SimulatedFilterWheel(obs.filter_wheel, name="filter_wheel"),
        mount=SimulatedMount(obs.mount, name="mount"),
        safety_monitor=SimulatedSafetyMonitor(obs.safety_monitor, name="safety_monitor"),
        dome=None if obs.dome is None else SimulatedDome(obs.dome, name="dome"),
        weather=(
            None
            if obs.weather is None
            else SimulatedObservingConditions(obs.weather, name="weather")
        ),
        cover_calibrator=(
            None
            if obs.cover_calibrator is None
            else SimulatedCoverCalibrator(obs.cover_calibrator, name="cover_calibrator")
        ),
        focuser=None if obs.focuser is None else SimulatedFocuser(obs.focuser, name="focuser"),
    )
    async with connected((inprocess, None)) as devs:
        yield devs


def alpaca_devices(
    port: int, clock, *, quirky: bool, observatory=None
) -> tuple[DeviceSet, AlpacaClient]:
    """The Alpaca drivers of a server on 127.0.0.1:``port`` (not connected).

    The dome, weather station, flat panel and focuser are there when ``observatory``
    simulates them.
    """
    client = AlpacaClient(f"127.0.0.1:{port}")
    timeouts = {"timeout_s": 2.0, "connect_timeout_s": 2.0}
    # The quirky server's mount is topocentric but says "other": the config key says which.
    system = "topocentric" if quirky else "driver"
    devs = DeviceSet(
        camera=AlpacaCamera("camera", client, 0, download_timeout_s=5.0, **timeouts),
        filter_wheel=AlpacaFilterWheel("filter_wheel", client, 0, **timeouts),
        mount=AlpacaMount("mount", client, 0, equatorial_system=system, clock=clock, **timeouts),
        safety_monitor=AlpacaSafetyMonitor("safety_monitor", client, 0, **timeouts),
    )
    if observatory is not None and observatory.dome is not None:
        devs.dome = AlpacaDome("dome", client, 0, **timeouts)
    if observatory is not None and observatory.weather is not None:
        devs.weather = AlpacaObservingConditions("weather", client, 0, **timeouts)
    if observatory is not None and observatory.cover_calibrator is not None:
        devs.cover_calibrator = AlpacaCoverCalibrator("cover_calibrator", client, 0, **timeouts)
    if observatory is not None and observatory.focuser is not None:
        devs.focuser = AlpacaFocuser("focuser", client, 0, **timeouts)
    return devs, client


@asynccontextmanager
async def connected(
    built: tuple[DeviceSet, AlpacaClient | None],
) -> AsyncIterator[DeviceSet]:
    """Connect every device for the block; disconnect them and close the client after."""
    devs, client = built
    for device in devs.all():
        await device.connect()
    try:
        yield devs
    finally:
        for device in devs.all():
            await device.disconnect()
        if client is not None:
            await client.close()
