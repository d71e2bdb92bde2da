"""The embedded default: the simulators a config asks for, started inside this process.

`session` builds the config's devices with the Alpaca simulators running in this process;
`reference_catalog` gives the pipeline the simulators' synthetic sky as its reference stars,
and `import_synthetic_sky` puts part of it in the local reference catalog.
This module (with `obsctl.classify.training`) is the only core code that imports the
simulators.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from obsctl.clock import Clock
from obsctl.config import Config, SimulatedSkyConfig
from obsctl.devices import DeviceSet
from obsctl.errors import ConfigError
from obsctl.pipeline.astrometry import ConeQuery
from obsctl.store.refcat import RefCatalog

__all__ = ["Session", "import_synthetic_sky", "port_in_use", "reference_catalog", "session"]

log = logging.getLogger(__name__)


async def port_in_use(host: str, port: int, *, timeout_s: float = 0.5) -> bool:
    """Return whether something accepts TCP connections on ``host:port``."""
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    await writer.wait_closed()
    return True


@dataclass
class Session:
    """The devices of a config, and the simulators started for them (None when external)."""

    devices: DeviceSet
    simulators: Any | None = None


@asynccontextmanager
async def session(config: Config, *, clock: Clock | None = None) -> AsyncIterator[Session]:
    """Yield the config's devices (built, not connected), with embedded simulators running.

    With ``[simulator] start = "auto"`` the Alpaca simulators start in this process unless
    an obsctl simulator already serves their port (for example ``obsctl simulate`` in another
    terminal; it is recognised by its management description); ``"always"`` starts them
    regardless and ``"never"`` not at all. ``clock`` is shared with the simulators so that
    simulated time agrees everywhere.

    Raises
    ------
    ConfigError
        With ``"auto"``, when something that is not an obsctl simulator holds the port; when
        the simulators cannot bind their port.
    """
    from obsctl.drivers.registry import open_devices

    async with AsyncExitStack() as stack:
        observatory = None
        sims = None
        sim = config.simulator
        if sim is not None and sim.start != "never":
            busy = sim.start == "auto" and await port_in_use(sim.host, sim.port)
            if busy:
                from obsctl.simulators.observatory import foreign_server

                other = await foreign_server(sim.host, sim.port)
                if other is not None:
                    raise ConfigError(
                        f'[simulator] start = "auto": port {sim.host}:{sim.port} is served by '
                        f"something that is not an obsctl simulator ({other}); stop it, or "
                        "move obsctl off it with --port-offset N or [simulator] port"
                    )
                log.info(
                    "simulator port %s:%d is served already; using it (an obsctl simulator)",
                    sim.host,
                    sim.port,
                )
            else:
                from obsctl.simulators.observatory import running_simulators

                try:
                    sims = await stack.enter_async_context(
                        running_simulators(sim, config.site, config.telescope, clock=clock)
                    )
                except OSError as exc:
                    raise ConfigError(
                        f"cannot start the simulators on {sim.host}:{sim.port}: {exc.strerror}"
                        " (another program holds the port? set [simulator] port or start)"
                    ) from exc
                observatory = sims.observatory
                log.info("embedded simulators at %s", sims.url)
        devices = await stack.enter_async_context(
            open_devices(config, observatory=observatory, clock=clock)
        )
        yield Session(devices, sims)


def reference_catalog(config: Config) -> ConeQuery | None:
    """Return the synthetic sky's cone query when the config asks for it, else None.

    None means the pipeline reads the data directory's reference catalog.
    """
    if config.pipeline.reference_catalog != "synthetic":
        return None
    from obsctl.simulators.sky import SyntheticCone

    return SyntheticCone(_sky(config))


def import_synthetic_sky(
    catalog: RefCatalog,
    config: Config,
    ra_deg: float,
    dec_deg: float,
    radius_deg: float,
    *,
    seed: int | None = None,
) -> int:
    """Load the configured synthetic sky's stars within a circle (deg) into ``catalog``.

    ``seed`` overrides the sky's; returns the number of stars stored.
    """
    from obsctl.simulators.sky import import_synthetic

    sky = _sky(config)
    return import_synthetic(
        catalog,
        ra_deg,
        dec_deg,
        radius_deg,
        seed=sky.seed if seed is None else seed,
        density_per_deg2=sky.star_density_per_deg2,
        mag_bright=sky.mag_bright,
        mag_limit=sky.mag_limit,
    )


def _sky(config: Config) -> SimulatedSkyConfig:
    return config.simulator.sky if config.simulator is not None else SimulatedSkyConfig()
