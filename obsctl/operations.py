"""Device procedures every caller shares, each bounded by its deadline from the config.

Moving a filter and waiting for it, exposing until the image is ready, slewing and settling,
parking and waiting, switching the cooler: the sequencer, the night runner, the safety
supervisor, the daemon's shutdown and ``obsctl expose`` all do these through `Operations`,
so each has one implementation and one deadline (``[sequencer]`` in the config).

Waits are polled: a device reports arrival, readiness or park only when asked. Deadlines of
waits are in observatory time (the clock's, simulated in a night at ``--speed N``); the
deadline of a single command (``command_timeout_s``) is real time, because a command's cost
is the wire's, not the sky's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from obsctl.clock import Clock
from obsctl.config import SequencerConfig
from obsctl.devices import Camera, CameraState, FilterWheel, Mount
from obsctl.errors import (
    DeviceError,
    DeviceTimeoutError,
    FilterNotFoundError,
    InvalidDeviceValueError,
)

__all__ = ["Operations"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Operations:
    """The shared device procedures.

    Parameters
    ----------
    settings : SequencerConfig
        Deadlines (``filter_timeout_s``, ``slew_timeout_s``, ``readout_margin_s``,
        ``command_timeout_s``) and the polling interval ``poll_s`` (real seconds).
    clock : Clock
        Observatory time, in which the waits' deadlines count.
    """

    def __init__(self, settings: SequencerConfig, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock

    async def until(
        self, done: Callable[[], Awaitable[bool]], timeout_s: float, device: str, what: str
    ) -> None:
        """Poll ``done`` until it is true, within ``timeout_s`` of observatory time.

        Raises
        ------
        DeviceTimeoutError
            When the deadline passes first.
        """
        deadline = self.clock.monotonic() + timeout_s
        while not await done():
            if self.clock.monotonic() > deadline:
                raise DeviceTimeoutError(f"{what} not done within {timeout_s:g} s", device=device)
            await asyncio.sleep(self.settings.poll_s)

    async def command(self, call: Awaitable[T], device: str, what: str) -> T:
        """Await one device command within ``command_timeout_s`` (real seconds).

        Raises
        ------
        DeviceTimeoutError
            When the command does not return in time.
        """
        timeout_s = self.settings.command_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                return await call
        except TimeoutError as exc:
            raise DeviceTimeoutError(
                f"{what} did not return within {timeout_s:g} s", device=device
            ) from exc

    # -- filter wheel ---------------------------------------------------------------------

    async def select_filter(self, wheel: FilterWheel, name: str) -> int:
        """Move the wheel to the filter called ``name`` (any case) and wait until it is there.

        Returns
        -------
        int
            The slot (0-based).

        Raises
        ------
        FilterNotFoundError
            When the wheel has no such filter.
        DeviceTimeoutError
            When the wheel has not arrived within ``filter_timeout_s``.
        """
        names = await wheel.names()
        slots = [i for i, n in enumerate(names) if n.lower() == name.lower()]
        if not slots:
            raise FilterNotFoundError(
                f"no filter {name!r}; the wheel holds {', '.join(names)}", device=wheel.name
            )
        slot = slots[0]
        await wheel.move(slot)

        async def arrived() -> bool:
            return await wheel.position() == slot

        await self.until(arrived, self.settings.filter_timeout_s, wheel.name, "filter move")
        return slot

    # -- camera ---------------------------------------------------------------------------

    async def expose(
        self,
        camera: Camera,
        exposure_s: float,
        *,
        light: bool,
        check: Callable[[], None] | None = None,
    ) -> None:
        """Start an exposure and wait until its image is ready to download.

        Parameters
        ----------
        camera : Camera
            The camera.
        exposure_s : float
            Duration (s).
        light : bool
            Open the shutter (light and flat frames).
        check : callable, optional
            Called at every poll; raises to give up the wait (an abort for safety).

        Raises
        ------
        InvalidDeviceValueError
            When ``exposure_s`` is outside the camera's range (``exposure_min_s`` to
            ``exposure_max_s``); nothing is started, and trying again cannot help.
        DeviceError
            When the camera reports its Error state.
        DeviceTimeoutError
            When no image is ready within the exposure plus ``readout_margin_s``.
        """
        info = await camera.info()
        # Checked here, not left to the camera: a driver may accept the value and fail later,
        # or answer with an error a retry and a reconnection would repeat.
        if not info.exposure_min_s <= exposure_s <= info.exposure_max_s:
            raise InvalidDeviceValueError(
                f"exposure {exposure_s:g} s is outside the camera's range "
                f"{info.exposure_min_s:g} to {info.exposure_max_s:g} s",
                device=camera.name,
            )
        await camera.start_exposure(exposure_s, light=light)

        async def ready() -> bool:
            if check is not None:
                check()
            status = await camera.status()
            if status.state == CameraState.ERROR:
                raise DeviceError("camera reports state Error", device=camera.name)
            return status.image_ready

        await self.until(
            ready, exposure_s + self.settings.readout_margin_s, camera.name, "exposure"
        )

    async def abort_exposure(self, camera: Camera) -> None:
        """Abort the running exposure (its image is discarded)."""
        await self.command(camera.abort_exposure(), camera.name, "abort")

    async def camera_idle(self, camera: Camera) -> None:
        """Wait until the camera is idle (a frame being read out finishes first).

        Raises
        ------
        DeviceTimeoutError
            When it is not idle within ``readout_margin_s``.
        """

        async def idle() -> bool:
            status = await self.command(camera.status(), camera.name, "camera status")
            return status.state == CameraState.IDLE

        await self.until(idle, self.settings.readout_margin_s, camera.name, "readout")

    async def set_cooler(
        self, camera: Camera, *, on: bool, set_point_c: float | None = None
    ) -> None:
        """Switch the cooler (and set its set point, degC)."""
        await self.command(camera.set_cooler(on=on, set_point_c=set_point_c), camera.name, "cooler")

    # -- mount ----------------------------------------------------------------------------

    async def _goto(
        self, mount: Mount, slew: Callable[[], Awaitable[None]], *, track: bool
    ) -> None:
        """Unpark if needed, set tracking, start the slew and wait until it has ended."""
        if (await mount.status()).at_park:
            await mount.unpark()
        await mount.set_tracking(track)
        await slew()

        async def settled() -> bool:
            return not (await mount.status()).slewing

        await self.until(settled, self.settings.slew_timeout_s, mount.name, "slew")

    async def slew(self, mount: Mount, ra_deg: float, dec_deg: float) -> None:
        """Unpark if needed, track, slew to J2000 coordinates (deg) and wait until settled.

        Raises
        ------
        DeviceTimeoutError
            When the slew has not ended within ``slew_timeout_s``.
        """
        await self._goto(mount, lambda: mount.slew_to_radec(ra_deg, dec_deg), track=True)

    async def point_altaz(self, mount: Mount, alt_deg: float, az_deg: float) -> None:
        """Unpark if needed, stop tracking, slew to altitude and azimuth (deg), wait.

        For sky flats: a fixed patch of twilight sky, not a star field. Raises as `slew`.
        """
        await self._goto(mount, lambda: mount.slew_to_altaz(alt_deg, az_deg), track=False)

    async def stop_tracking(self, mount: Mount) -> None:
        """Switch tracking off."""
        await self.command(mount.set_tracking(False), mount.name, "tracking off")

    async def park(self, mount: Mount, *, wait: bool = True) -> None:
        """Send the park command and, with ``wait``, wait until the mount reports parked.

        Raises
        ------
        DeviceTimeoutError
            When the mount is not parked within ``slew_timeout_s`` of the command.
        """
        await self.command(mount.park(), mount.name, "park")
        if not wait:
            return

        async def parked() -> bool:
            return (await mount.status()).at_park

        timeout_s = self.settings.slew_timeout_s
        try:
            await self.until(parked, timeout_s, mount.name, "park")
        except DeviceTimeoutError as exc:
            raise DeviceTimeoutError(
                f"not parked {timeout_s:g} s after the park command", device=mount.name
            ) from exc
