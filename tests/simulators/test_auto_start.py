"""``[simulator] start = "auto"`` attaches to an obsctl simulator only; ``--port-offset``.

Everything runs over real sockets on 127.0.0.1: our simulators, a foreign Alpaca-like server
(a plain aiohttp app answering the management description differently, or not at all) and a
TCP listener that accepts and never answers.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from aiohttp import web

from obsctl.cli import main
from obsctl.config import (
    AlpacaDeviceConfig,
    Config,
    SerialDeviceConfig,
    load_config,
    offset_ports,
)
from obsctl.embedded import session
from obsctl.errors import ConfigError
from obsctl.simulators.observatory import foreign_server, running_simulators

from ..daemon_helpers import free_port, write_config

ROLES = ("filter_wheel", "mount", "safety_monitor")
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def auto_config(tmp_path: Path, port: int) -> Config:
    body = f"""
[simulator]
start = "auto"
port = {port}
discovery_port = 0
speed = 100.0
[simulator.camera]
width_px = 64
height_px = 48
"""
    return load_config(write_config(tmp_path, body, camera=f"127.0.0.1:{port}", also=ROLES))


def description_app(reply: Callable[[], web.StreamResponse]) -> web.Application:
    async def describe(_request: web.Request) -> web.StreamResponse:
        return reply()

    app = web.Application()
    app.router.add_get("/management/v1/description", describe)
    return app


def other_alpaca() -> web.StreamResponse:
    value = {"ServerName": "ASCOM Remote", "Manufacturer": "ASCOM Initiative",
             "ManufacturerVersion": "6.7", "Location": "roof"}  # fmt: skip
    return web.json_response(
        {"Value": value, "ClientTransactionID": 0, "ServerTransactionID": 1,
         "ErrorNumber": 0, "ErrorMessage": ""}
    )  # fmt: skip


def not_alpaca() -> web.StreamResponse:
    return web.Response(text="<html>router login</html>", content_type="text/html")


@asynccontextmanager
async def serving(app: web.Application, port: int) -> AsyncIterator[None]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


@asynccontextmanager
async def silent_listener(port: int) -> AsyncIterator[None]:
    """Accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", port)
    try:
        yield
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


FOREIGN = {
    "another Alpaca server": (
        lambda port: serving(description_app(other_alpaca), port),
        "'ASCOM Remote' by 'ASCOM Initiative'",
    ),
    "a web page": (lambda port: serving(description_app(not_alpaca), port), "not JSON"),
    "no description": (lambda port: serving(web.Application(), port), "HTTP 404"),
    "a silent listener": (silent_listener, "no answer"),
}


@pytest.mark.parametrize("kind", FOREIGN)
async def test_auto_refuses_what_is_not_an_obsctl_simulator(tmp_path, kind) -> None:
    port = free_port()
    config = auto_config(tmp_path, port)
    start, said = FOREIGN[kind]
    async with start(port):
        with pytest.raises(ConfigError) as info:
            async with session(config):
                pytest.fail("attached to a foreign server")
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "not an obsctl simulator" in message
    assert said in message and "--port-offset" in message
    assert "\n" not in message


async def test_auto_attaches_to_a_running_obsctl_simulator(tmp_path) -> None:
    port = free_port()
    config = auto_config(tmp_path, port)
    assert config.simulator is not None
    async with running_simulators(
        config.simulator, config.site, config.telescope, port=port
    ) as running:
        assert await foreign_server("127.0.0.1", port) is None
        async with session(config) as attached:
            assert attached.simulators is None  # none started here
            camera = attached.devices.camera
            await camera.connect()
            assert running.observatory.camera.connected
            await camera.disconnect()


async def test_auto_starts_its_own_on_a_free_port(tmp_path) -> None:
    port = free_port()
    async with session(auto_config(tmp_path, port)) as started:
        assert started.simulators is not None and started.simulators.port == port
        assert await foreign_server("127.0.0.1", port) is None


def test_port_offset_moves_api_simulators_and_discovery_together() -> None:
    config = load_config(None)  # the embedded default
    moved = offset_ports(config, 100)
    assert moved.server.port == config.server.port + 100 == 8180
    assert moved.simulator is not None and config.simulator is not None
    assert moved.simulator.port == 11211
    assert moved.simulator.discovery_port == 32327
    for role in ("camera", "filter_wheel", "mount", "safety_monitor"):
        device = getattr(moved.devices, role)
        assert isinstance(device, AlpacaDeviceConfig)
        assert device.address == "127.0.0.1:11211"
    assert offset_ports(config, 0) is config


def test_port_offset_moves_serial_simulators_and_leaves_hardware_alone() -> None:
    serial = offset_ports(load_config(CONFIGS / "serial-mount.toml"), -5)
    assert serial.simulator is not None and serial.simulator.serial is not None
    assert serial.simulator.serial.mount_tcp_port == 9994
    assert isinstance(serial.devices.mount, SerialDeviceConfig)
    assert serial.devices.mount.url == "socket://127.0.0.1:9994"
    hardware = load_config(CONFIGS / "alpaca-observatory.toml")
    moved = offset_ports(hardware, 7)
    assert moved.server.port == hardware.server.port + 7
    assert moved.devices == hardware.devices  # real devices do not move


def test_port_offset_out_of_range_names_the_option() -> None:
    with pytest.raises(ConfigError, match=r"--port-offset 60000: moves \[server\] port 8080"):
        offset_ports(load_config(None), 60000)


def free_offset() -> int:
    """An offset whose API, simulator and discovery ports are all free."""
    for _ in range(50):
        offset = free_port() - 11111
        ports = [8080 + offset, 11111 + offset]
        if not all(0 < p < 65536 for p in [*ports, 32227 + offset]):
            continue
        with contextlib_sockets(ports) as ok:
            if ok:
                return offset
    raise AssertionError("no free port range")


@contextmanager
def contextlib_sockets(ports: list[int]) -> Iterator[bool]:
    sockets = []
    try:
        for port in ports:
            s = socket.socket()
            sockets.append(s)
            s.bind(("127.0.0.1", port))
        yield True
    except OSError:
        yield False
    finally:
        for s in sockets:
            s.close()


@contextmanager
def in_thread(start: Callable[[int], object], port: int) -> Iterator[None]:
    """Run a foreign server on its own event loop while the command runs on another."""
    loop = asyncio.new_event_loop()
    up = threading.Event()
    stop: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with start(port):  # type: ignore[attr-defined]
            up.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert up.wait(10)
        yield
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_cli_port_offset_runs_beside_a_foreign_server(capsys) -> None:
    offset = free_offset()
    sim_port = 11111 + offset
    # The command's own simulators on the moved port: `devices` answers from them.
    assert main(["--port-offset", str(offset), "devices"]) == 0
    out = capsys.readouterr().out
    assert "SIM-IMX183" in out and "SAFE" in out
    # Something else on the moved port: refused with a one-line message naming the port.
    with in_thread(FOREIGN["another Alpaca server"][0], sim_port):
        assert main(["--port-offset", str(offset), "devices"]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{sim_port}" in err and "not an obsctl simulator" in err
    assert err.count("\n") == 1
