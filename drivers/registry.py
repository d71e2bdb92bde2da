"""Build devices from a config: an explicit map from a ``driver`` name to a factory.

Config never names a class path to import; a new driver is one entry in `FACTORIES`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from obsctl.clock import Clock
from obsctl.config import AlpacaDeviceConfig, Config, SerialDeviceConfig, SimulatorDeviceConfig
from obsctl.devices import ROLES, DeviceSet
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
from obsctl.errors import ConfigError

if TYPE_CHECKING:
    from obsctl.simulators.observatory import SimulatedObservatory

__all__ = ["ROLES", "build_devices", "open_devices", "open_second_connections"]

log = logging.getLogger(__name__)

_M = TypeVar("_M")

_ALPACA_CLASSES: dict[str, Callable[..., Any]] = {
    "camera": AlpacaCamera,
    "filter_wheel": AlpacaFilterWheel,
    "mount": AlpacaMount,
    "safety_monitor": AlpacaSafetyMonitor,
    "dome": AlpacaDome,
    "weather": AlpacaObservingConditions,
    "cover_calibrator": AlpacaCoverCalibrator,
    "focuser": AlpacaFocuser,
}


@dataclass
class _BuildContext:
    config: Config
    observatory: SimulatedObservatory | None
    clock: Clock | None = None
    clients: dict[str, AlpacaClient] = field(default_factory=dict)

    def client(self, address: str) -> AlpacaClient:
        # One client per server: the server's devices share its connection pool.
        if address not in self.clients:
            self.clients[address] = AlpacaClient(address)
        return self.clients[address]

    def simulated(self) -> SimulatedObservatory:
        if self.observatory is None:
            from obsctl.clock import ScaledClock
            from obsctl.simulators.observatory import SimulatedObservatory

            sim = self.config.simulator
            assert sim is not None  # Config validation guarantees a [simulator] section
            self.observatory = SimulatedObservatory.from_config(
                sim, self.config.site, self.config.telescope, self.clock or ScaledClock(sim.speed)
            )
        return self.observatory


def _alpaca(role: str, cfg: AlpacaDeviceConfig, ctx: _BuildContext) -> Any:
    kwargs: dict[str, Any] = {
        "timeout_s": cfg.timeout_s,
        "connect_timeout_s": cfg.connect_timeout_s,
    }
    if role == "camera":
        kwargs["download_timeout_s"] = cfg.download_timeout_s
    if role == "mount":
        kwargs["equatorial_system"] = cfg.equatorial_system
        if ctx.clock is not None:
            kwargs["clock"] = ctx.clock
    return _ALPACA_CLASSES[role](role, ctx.client(cfg.address), cfg.device_number, **kwargs)


def _simulator(role: str, cfg: SimulatorDeviceConfig, ctx: _BuildContext) -> Any:
    from obsctl.simulators import devices as sim_devices

    observatory = ctx.simulated()
    factories: dict[str, Callable[[], Any]] = {
        "camera": lambda: sim_devices.SimulatedCamera(observatory.camera, name=role),
        "filter_wheel": lambda: sim_devices.SimulatedFilterWheel(
            observatory.filter_wheel, name=role
        ),
        "mount": lambda: sim_devices.SimulatedMount(observatory.mount, name=role),
        "safety_monitor": lambda: sim_devices.SimulatedSafetyMonitor(
            observatory.safety_monitor, name=role
        ),
        "dome": lambda: sim_devices.SimulatedDome(_present(observatory.dome, role), name=role),
        "weather": lambda: sim_devices.SimulatedObservingConditions(
            _present(observatory.weather, role), name=role
        ),
        "cover_calibrator": lambda: sim_devices.SimulatedCoverCalibrator(
            _present(observatory.cover_calibrator, role), name=role
        ),
        "focuser": lambda: sim_devices.SimulatedFocuser(
            _present(observatory.focuser, role), name=role
        ),
    }
    return factories[role]()


def _present(model: _M | None, role: str) -> _M:
    """Return an optional simulator model, refusing a config that asks for a missing one."""
    if model is None:
        # Config validation requires the section; an observatory passed in may still lack it.
        raise ConfigError(
            f"devices.{role} uses driver 'simulator' but the simulated observatory has no "
            f"{role}; add a [simulator.{role}] section"
        )
    return model


def _serial(role: str, cfg: SerialDeviceConfig, ctx: _BuildContext) -> Any:
    from obsctl.drivers.serial import PySerialTransport, SerialFilterWheel, SerialLX200Mount

    # The port opens on connect(); the device's disconnect() closes it.
    transport = PySerialTransport(
        cfg.url, baudrate=cfg.baudrate, timeout_s=cfg.timeout_s, device=role
    )
    if cfg.protocol == "lx200":
        return SerialLX200Mount(role, transport, timeout_s=cfg.timeout_s, site=ctx.config.site)
    return SerialFilterWheel(
        role,
        transport,
        names=cfg.filter_names,
        focus_offsets=cfg.focus_offsets,
        timeout_s=cfg.timeout_s,
        move_timeout_s=cfg.move_timeout_s,
    )


FACTORIES: dict[str, Callable[[str, Any, _BuildContext], Any]] = {
    "alpaca": _alpaca,
    "simulator": _simulator,
    "serial": _serial,
}


def build_devices(
    config: Config,
    *,
    observatory: SimulatedObservatory | None = None,
    clock: Clock | None = None,
) -> tuple[DeviceSet, list[AlpacaClient]]:
    """Build the configured devices (not yet connected).

    Parameters
    ----------
    config : Config
        The observatory configuration.
    observatory : SimulatedObservatory or None
        Models for ``driver = "simulator"`` devices; None builds them from the config.
    clock : Clock or None
        Time of the models built here, shared with the daemon (a night on a simulated
        clock); None runs them at the simulator's configured speed.

    Returns
    -------
    tuple
        The devices, and the Alpaca clients to close when done.
    """
    ctx = _BuildContext(config, observatory, clock)
    built: dict[str, Any] = {}
    for role in ROLES:
        cfg = getattr(config.devices, role)
        if cfg is not None:
            built[role] = FACTORIES[cfg.driver](role, cfg, ctx)
    return DeviceSet(**built), list(ctx.clients.values())


@asynccontextmanager
async def open_devices(
    config: Config,
    *,
    observatory: SimulatedObservatory | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[DeviceSet]:
    """Build the devices and close their transports on exit (they are not connected here)."""
    devices, clients = build_devices(config, observatory=observatory, clock=clock)
    try:
        yield devices
    finally:
        for client in clients:
            await client.close()


class _ThroughLoop:
    """A device that belongs to another event loop, called through that loop.

    For devices that allow one connection only (a serial line) or that live in this process
    (in-process simulators): their calls run where the device lives and their results come
    back here.
    """

    def __init__(self, device: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._device = device
        self._loop = loop

    @property
    def name(self) -> str:
        return str(self._device.name)

    def __getattr__(self, member: str) -> Any:
        method = getattr(self._device, member)

        async def call(*args: Any, **kwargs: Any) -> Any:
            running = asyncio.run_coroutine_threadsafe(method(*args, **kwargs), self._loop)
            return await asyncio.wrap_future(running)

        return call


@asynccontextmanager
async def open_second_connections(
    config: Config, devices: DeviceSet, home: asyncio.AbstractEventLoop
) -> AsyncIterator[DeviceSet]:
    """Open the devices again for another event loop (the safety supervisor's).

    Alpaca devices get connections of their own (a server serves any number of clients);
    the others are reached through ``home``, the loop that owns ``devices``. Nothing is
    connected or disconnected here: connecting is the daemon's, and an Alpaca ``Connected``
    is shared by every client of a device.

    Parameters
    ----------
    config : Config
        The observatory configuration.
    devices : DeviceSet
        The daemon's devices, owned by ``home``.
    home : asyncio.AbstractEventLoop
        The loop that owns ``devices``.
    """
    ctx = _BuildContext(config, None)
    built: dict[str, Any] = {}
    for role in ROLES:
        cfg = getattr(config.devices, role)
        device = getattr(devices, role)
        if cfg is None or device is None:
            continue
        if isinstance(cfg, AlpacaDeviceConfig):
            built[role] = _alpaca(role, cfg, ctx)
        else:
            built[role] = _ThroughLoop(device, home)
    try:
        yield DeviceSet(**built)
    finally:
        for client in ctx.clients.values():
            await client.close()
