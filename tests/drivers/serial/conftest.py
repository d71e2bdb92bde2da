"""Serial simulators on a pty and a TCP port, and the serial drivers connected to them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from obsctl.drivers.serial import PySerialTransport, SerialFilterWheel, SerialLX200Mount
from obsctl.simulators.serial_cfw import QhyCfwInterpreter
from obsctl.simulators.serial_lx200 import LX200Interpreter
from obsctl.simulators.serial_server import SerialSimulator

# Deadline of one command in these tests; a reconnect over socket:// costs 0.3 s of it
# (pyserial sleeps that long after closing a socket).
TIMEOUT_S = 0.6


def url_of(sim: SerialSimulator, link: str) -> str:
    url = sim.path if link == "pty" else sim.tcp_url
    assert url is not None
    return url


@pytest.fixture(params=["pty", "tcp"])
def link(request) -> str:
    """How the driver reaches the simulator: its pseudo-terminal or socket://."""
    return request.param


@pytest.fixture
async def mount_sim(mount_model) -> AsyncIterator[SerialSimulator]:
    async with SerialSimulator(LX200Interpreter(mount_model), name="mount", tcp_port=0) as sim:
        yield sim


@pytest.fixture
async def wheel_sim(wheel_model) -> AsyncIterator[SerialSimulator]:
    interpreter = QhyCfwInterpreter(wheel_model)
    async with SerialSimulator(interpreter, name="filter_wheel", tcp_port=0) as sim:
        yield sim


@pytest.fixture
async def mount(mount_sim, link, site, clock) -> AsyncIterator[SerialLX200Mount]:
    transport = PySerialTransport(url_of(mount_sim, link), timeout_s=TIMEOUT_S, device="mount")
    driver = SerialLX200Mount("mount", transport, timeout_s=TIMEOUT_S, site=site, clock=clock)
    await driver.connect()
    try:
        yield driver
    finally:
        await driver.disconnect()


@pytest.fixture
async def wheel(wheel_sim, link, wheel_model) -> AsyncIterator[SerialFilterWheel]:
    transport = PySerialTransport(
        url_of(wheel_sim, link), timeout_s=TIMEOUT_S, device="filter_wheel"
    )
    driver = SerialFilterWheel(
        "filter_wheel",
        transport,
        names=wheel_model.names,
        focus_offsets=wheel_model.focus_offsets,
        timeout_s=TIMEOUT_S,
        move_timeout_s=0.5,
    )
    await driver.connect()
    try:
        yield driver
    finally:
        await driver.disconnect()
