"""The simulated observatory: the device models wired together, and running them.

`SimulatedObservatory` holds the models (for in-process devices); `running_simulators` serves
them over Alpaca HTTP (plus UDP discovery) for a block, `serve_forever` for ``obsctl
simulate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from obsctl.clock import Clock, ScaledClock
from obsctl.config import Config, SimulatorConfig, SiteConfig, TelescopeConfig
from obsctl.simulators.alpaca_server import MANUFACTURER, SERVER_NAME, AlpacaServer
from obsctl.simulators.camera_model import CameraModel
from obsctl.simulators.covercalibrator_model import CoverCalibratorModel
from obsctl.simulators.discovery import DiscoveryResponder
from obsctl.simulators.dome_model import DomeModel
from obsctl.simulators.faults import FaultInjector
from obsctl.simulators.filterwheel_model import FilterWheelModel
from obsctl.simulators.focuser_model import FocuserModel
from obsctl.simulators.mount_model import MountModel
from obsctl.simulators.safety_model import SafetyMonitorModel
from obsctl.simulators.weather_model import WeatherModel

if TYPE_CHECKING:
    from obsctl.simulators.serial_server import RunningSerialSimulators

__all__ = [
    "RunningSimulators",
    "SimulatedObservatory",
    "foreign_server",
    "running_simulators",
    "serve_forever",
]

log = logging.getLogger(__name__)


@dataclass
class SimulatedObservatory:
    """Camera, filter wheel, mount, safety monitor and the optional devices on one clock.

    The camera reads its pointing and field rotation from the mount and its band from the
    filter wheel, so a rendered frame shows the stars where the mount points (the reported
    position moved by the mount's configured pointing error, `MountModel.true_pointing`); it
    sees the sky only through the dome's open shutter and, in a rotating dome, its slit.

    Attributes
    ----------
    camera : CameraModel
    filter_wheel : FilterWheelModel
    mount : MountModel
    safety_monitor : SafetyMonitorModel
    clock : Clock
        Simulated time shared by all models.
    config : SimulatorConfig
    site : SiteConfig
    telescope : TelescopeConfig
    dome : DomeModel or None
        The roll-off roof or dome, when ``[simulator.dome]`` is configured.
    weather : WeatherModel or None
        The weather station, when ``[simulator.weather]`` is configured.
    cover_calibrator : CoverCalibratorModel or None
        The flat panel and dust cover, when ``[simulator.cover_calibrator]`` is configured;
        the camera sees it.
    focuser : FocuserModel or None
        The focuser, when ``[simulator.focuser]`` is configured; the camera's stars blur
        with its distance from the best focus.
    """

    camera: CameraModel
    filter_wheel: FilterWheelModel
    mount: MountModel
    safety_monitor: SafetyMonitorModel
    clock: Clock
    config: SimulatorConfig
    site: SiteConfig
    telescope: TelescopeConfig
    dome: DomeModel | None = None
    weather: WeatherModel | None = None
    cover_calibrator: CoverCalibratorModel | None = None
    focuser: FocuserModel | None = None

    @classmethod
    def from_config(
        cls, sim: SimulatorConfig, site: SiteConfig, telescope: TelescopeConfig, clock: Clock
    ) -> SimulatedObservatory:
        """Build and wire the models.

        Parameters
        ----------
        sim : SimulatorConfig
            Camera, sky, filter wheel, mount, initial safety, dome, weather, flat panel and
            focuser settings.
        site : SiteConfig
            Where the mount stands.
        telescope : TelescopeConfig
            Focal length (pixel scale) and aperture.
        clock : Clock
            Source of simulated time.

        Returns
        -------
        SimulatedObservatory
            Models in their initial state, all disconnected.
        """
        mount = MountModel(sim.mount, site, clock)
        wheel = FilterWheelModel(sim.filter_wheel, clock)
        sky = sim.sky
        if sim.weather is not None and sim.weather.scenario:
            # The clouds the station reports are clouds in the frames.
            clouds = sky.clouds.model_copy(
                update={"spells": (*sky.clouds.spells, *sim.weather.cloud_spells())}
            )
            sky = sky.model_copy(update={"clouds": clouds})
        camera = CameraModel(
            sim.camera,
            sky,
            focal_length_mm=telescope.focal_length_mm,
            clock=clock,
            mount=mount,
            filter_wheel=wheel,
        )
        if sim.cover_calibrator is not None:  # the camera looks through its cover
            camera.cover_calibrator = CoverCalibratorModel(sim.cover_calibrator, clock)
        if sim.focuser is not None:  # the camera's stars blur with the focus
            camera.focuser = FocuserModel(sim.focuser, clock)
            camera.focal_ratio = telescope.focal_length_mm / telescope.aperture_mm
        dome = None if sim.dome is None else DomeModel(sim.dome, clock)
        camera.dome = dome
        if sim.sky.follow_sun_moon:
            from obsctl.simulators.sky_brightness import SunMoonSky

            camera.sky_brightness = SunMoonSky(site, sim.sky.sky_mag_arcsec2)
        return cls(
            camera=camera,
            filter_wheel=wheel,
            mount=mount,
            safety_monitor=SafetyMonitorModel(sim.safe),
            clock=clock,
            config=sim,
            site=site,
            telescope=telescope,
            dome=dome,
            weather=None if sim.weather is None else WeatherModel(sim.weather, clock),
            cover_calibrator=camera.cover_calibrator,
            focuser=camera.focuser,
        )

    async def close(self) -> None:
        """Stop background work (a running exposure)."""
        await self.camera.close()


@dataclass
class RunningSimulators:
    """Handle on running simulators, yielded by `running_simulators`.

    Attributes
    ----------
    server : AlpacaServer
        The HTTP server.
    discovery : DiscoveryResponder or None
        The UDP discovery responder, when configured.
    serial : RunningSerialSimulators or None
        The serial (pty and TCP) mount and filter-wheel simulators, when configured.
    """

    server: AlpacaServer
    discovery: DiscoveryResponder | None
    serial: RunningSerialSimulators | None = None

    @property
    def host(self) -> str:
        """Bound address."""
        return self.server.host

    @property
    def port(self) -> int:
        """Actual HTTP port."""
        return self.server.port

    @property
    def discovery_port(self) -> int | None:
        """Actual UDP discovery port, or None without discovery."""
        return self.discovery.port if self.discovery is not None else None

    @property
    def url(self) -> str:
        """Base URL of the Alpaca server."""
        return self.server.url

    @property
    def observatory(self) -> SimulatedObservatory:
        """The device models."""
        return self.server.observatory

    def faults(self, device_type: str, number: int = 0) -> FaultInjector:
        """Return one device's fault injector (see `AlpacaServer.faults`)."""
        return self.server.faults(device_type, number)


@contextlib.asynccontextmanager
async def running_simulators(
    sim: SimulatorConfig,
    site: SiteConfig,
    telescope: TelescopeConfig,
    *,
    clock: Clock | None = None,
    port: int | None = None,
    discovery_port: int | None = None,
) -> AsyncIterator[RunningSimulators]:
    """Run the simulated observatory's Alpaca server (and discovery) for a block.

    Parameters
    ----------
    sim : SimulatorConfig
        Devices, host, ports and speed.
    site, telescope : SiteConfig, TelescopeConfig
        Where the mount stands and the optics.
    clock : Clock or None
        Simulated time; None uses ``ScaledClock(sim.speed)``.
    port : int or None
        HTTP port overriding ``sim.port`` (0 picks a free one).
    discovery_port : int or None
        UDP port overriding ``sim.discovery_port`` (0 picks a free one); discovery runs
        only when one of them is set.

    Yields
    ------
    RunningSimulators
        Host, actual ports, URL, models and fault injectors.
    """
    observatory = SimulatedObservatory.from_config(
        sim, site, telescope, clock if clock is not None else ScaledClock(sim.speed)
    )
    server = AlpacaServer(observatory, host=sim.host, port=sim.port if port is None else port)
    udp_port = sim.discovery_port if discovery_port is None else discovery_port
    discovery: DiscoveryResponder | None = None
    await server.start()
    try:
        if udp_port is not None:
            discovery = DiscoveryResponder(server.port, host=sim.host, port=udp_port)
            await discovery.start()
        async with contextlib.AsyncExitStack() as stack:
            serial = None
            if sim.serial is not None:
                from obsctl.simulators.serial_server import running_serial_simulators

                serial = await stack.enter_async_context(
                    running_serial_simulators(observatory, sim.serial, host=sim.host)
                )
            yield RunningSimulators(server=server, discovery=discovery, serial=serial)
    finally:
        if discovery is not None:
            await discovery.stop()
        await server.stop()


def _foreign(reply: Any) -> str | None:
    """Return None when a management description names an obsctl simulator, else why not."""
    value = reply.get("Value") if isinstance(reply, dict) else None
    if not isinstance(value, dict):
        return "its /management/v1/description is not an Alpaca reply"
    name, maker = value.get("ServerName"), value.get("Manufacturer")
    if name == SERVER_NAME and maker == MANUFACTURER:
        return None
    return f"it says it is {name!r} by {maker!r}"


async def foreign_server(host: str, port: int, *, timeout_s: float = 2.0) -> str | None:
    """Ask what serves ``host:port``; None when it is an obsctl simulator.

    Our simulators say who they are in the Alpaca management API's description (ServerName
    and Manufacturer); anything else on the port (another Alpaca server, a web server, a
    program that accepts connections and says nothing) is not attached to.

    Parameters
    ----------
    host : str
        Address of the server.
    port : int
        Its TCP port.
    timeout_s : float
        Deadline of the question in seconds.

    Returns
    -------
    str or None
        None for an obsctl simulator, else what answers instead, for a message.
    """
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{port}/management/v1/description"
    try:
        async with (
            asyncio.timeout(timeout_s),
            aiohttp.ClientSession() as http,
            http.get(url, allow_redirects=False) as resp,
        ):
            body = await resp.read()
            status = resp.status
    except TimeoutError:
        return f"it gives no answer to /management/v1/description within {timeout_s:g} s"
    except (aiohttp.ClientError, OSError) as exc:
        return f"it does not answer HTTP ({type(exc).__name__})"
    if status != 200:
        return f"it answers /management/v1/description with HTTP {status}"
    try:
        return _foreign(orjson.loads(body))
    except orjson.JSONDecodeError:
        return "its /management/v1/description is not JSON"


async def serve_forever(config: Config) -> None:
    """Run the simulators of a configuration until cancelled (``obsctl simulate``).

    Parameters
    ----------
    config : Config
        A configuration; its ``[simulator]`` section (or the defaults) configures them.
    """
    sim = config.simulator if config.simulator is not None else SimulatorConfig()
    async with running_simulators(sim, config.site, config.telescope) as running:
        log.info("simulated observatory at %s", running.url)
        if running.serial is not None:
            for name, device in (
                ("mount", running.serial.mount),
                ("filter wheel", running.serial.filter_wheel),
            ):
                if device is not None:
                    log.info("serial %s at %s and %s", name, device.path, device.tcp_url)
        if running.discovery_port is not None:
            log.info("alpaca discovery on udp port %d", running.discovery_port)
        await asyncio.Event().wait()
