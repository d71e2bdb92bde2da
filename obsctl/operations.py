"""Device procedures every caller shares, each bounded by its deadline from the config.

Moving a filter and waiting for it, exposing until the image is ready, slewing and settling,
parking and waiting, opening and closing the roof, switching the cooler: the sequencer, the
night runner, the safety supervisor, the daemon's shutdown and ``obsctl expose`` all do these
through `Operations`, so each has one implementation and one deadline (``[sequencer]`` in the
config).

Waits are polled: a device reports arrival, readiness or park only when asked. Deadlines of
waits are in observatory time (the clock's, simulated in a night at ``--speed N``); the
deadline of a single command (``command_timeout_s``) is real time, because a command's cost
is the wire's, not the sky's.

Real drivers leave devices in states a procedure cannot start from: a camera in state Error
after a failed exposure, an exposure the server keeps running after an abort, a mount whose
Slewing stays true. `expose` and the mount procedures recover such a device first
(`recover_camera`, `recover_mount`): abort, wait within ``recover_timeout_s``, wait out a
running exposure, reconnect. Each recovery is logged in one line and handed to
``on_recovery`` (the sequencer records it as a failure row with its action).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from obsctl.clock import Clock
from obsctl.config import SequencerConfig
from obsctl.devices import (
    CalibratorState,
    Camera,
    CameraState,
    CoverCalibrator,
    CoverCalibratorStatus,
    CoverState,
    Device,
    Dome,
    FilterWheel,
    Focuser,
    GuideDirection,
    Mount,
    ShutterState,
)
from obsctl.errors import (
    DeviceError,
    DeviceNotImplementedError,
    DeviceStateError,
    DeviceTimeoutError,
    FilterNotFoundError,
    InvalidDeviceValueError,
)

__all__ = ["Operations", "Recovery"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_BUSY_STATES = (CameraState.WAITING, CameraState.EXPOSING, CameraState.READING)


@dataclass(frozen=True, slots=True)
class Recovery:
    """A device found in a state a failure left behind, and what was done about it.

    Attributes
    ----------
    device : str
        The device's configured name.
    found : str
        What was found (``"camera in state Error"``).
    action : str
        What was done (``"AbortExposure; idle"``).
    """

    device: str
    found: str
    action: str


class Operations:
    """The shared device procedures.

    Parameters
    ----------
    settings : SequencerConfig
        Deadlines (``filter_timeout_s``, ``slew_timeout_s``, ``readout_margin_s``,
        ``command_timeout_s``) and the polling interval ``poll_s`` (real seconds).
    clock : Clock
        Observatory time, in which the waits' deadlines count.
    on_recovery : callable or None
        Awaited with every `Recovery` (after it is logged); the sequencer records it.
    """

    def __init__(
        self,
        settings: SequencerConfig,
        clock: Clock,
        *,
        on_recovery: Callable[[Recovery], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.on_recovery = on_recovery
        # Start (observatory monotonic s) and duration (s) of the last exposure started per
        # camera: how long an exposure that outlives its abort still has to run.
        self._exposures: dict[str, tuple[float, float]] = {}

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

        A camera found busy or in state Error is recovered first (`recover_camera`).

        Raises
        ------
        InvalidDeviceValueError
            When ``exposure_s`` is outside the camera's range (``exposure_min_s`` to
            ``exposure_max_s``); nothing is started, and trying again cannot help.
        DeviceStateError
            When the camera reports its Error state, or cannot be recovered from it.
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
        await self.recover_camera(camera)
        await camera.start_exposure(exposure_s, light=light)
        self._exposures[camera.name] = (self.clock.monotonic(), exposure_s)

        async def ready() -> bool:
            if check is not None:
                check()
            status = await camera.status()
            if status.state == CameraState.ERROR:
                # Left as it is: the next exposure recovers the camera first.
                raise DeviceStateError("camera reports state Error", device=camera.name)
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

    async def _recovered(self, recovery: Recovery) -> None:
        log.warning("recovered %s: found %s; %s", recovery.device, recovery.found, recovery.action)
        if self.on_recovery is not None:
            await self.on_recovery(recovery)

    async def _reconnect(self, device: Device) -> None:
        """Disconnect and connect again, each command within its deadline."""
        await self.command(device.disconnect(), device.name, "disconnect")
        await self.command(device.connect(), device.name, "connect")

    async def _camera_state(self, camera: Camera) -> CameraState:
        status = await self.command(camera.status(), camera.name, "camera status")
        return status.state

    async def _camera_idle_within(self, camera: Camera, timeout_s: float) -> bool:
        """Whether the camera is Idle within ``timeout_s`` (observatory s)."""

        async def idle() -> bool:
            return await self._camera_state(camera) == CameraState.IDLE

        try:
            await self.until(idle, timeout_s, camera.name, "camera idle")
        except DeviceTimeoutError:
            return False
        return True

    def _exposure_left_s(self, camera: Camera) -> float:
        """Observatory seconds until the last exposure started on ``camera`` ends (0: unknown)."""
        start_s, exposure_s = self._exposures.get(camera.name, (0.0, 0.0))
        return max(0.0, start_s + exposure_s - self.clock.monotonic())

    async def recover_camera(self, camera: Camera) -> Recovery | None:
        """Bring a camera found in state Error or busy (nothing of ours runs) back to Idle.

        AbortExposure, then wait for Idle within ``recover_timeout_s``. An exposure that goes
        on after the abort is waited out: to its end (when this `Operations` started it) plus
        ``readout_margin_s``. A camera still not Idle is reconnected, and given
        ``recover_timeout_s`` more.

        Returns
        -------
        Recovery or None
            What was found and done; None when the camera was Idle.

        Raises
        ------
        DeviceStateError
            When the camera is still not Idle after all of it.
        DeviceError
            When the camera does not answer.
        """
        state = await self._camera_state(camera)
        if state in (CameraState.IDLE, CameraState.DOWNLOAD):
            return None  # a download in progress ends by itself; the next command waits
        found = f"camera in state {state.name}"
        done: list[str] = []
        timeout_s = self.settings.recover_timeout_s
        try:
            await self.abort_exposure(camera)
            done.append("AbortExposure")
        except DeviceError as exc:  # some drivers refuse an abort in state Error
            done.append(f"AbortExposure refused ({exc})")
        idle = await self._camera_idle_within(camera, timeout_s)
        if not idle and await self._camera_state(camera) in _BUSY_STATES:
            wait_s = self._exposure_left_s(camera) + self.settings.readout_margin_s
            found += ", still exposing after the abort"
            done.append(f"waited out the exposure (up to {wait_s:.0f} s)")
            idle = await self._camera_idle_within(camera, wait_s)
        if not idle:
            await self._reconnect(camera)
            done.append("reconnected")
            idle = await self._camera_idle_within(camera, timeout_s)
        if not idle:
            state = await self._camera_state(camera)
            raise DeviceStateError(
                f"{found}; still {state.name} after {', '.join(done)}", device=camera.name
            )
        recovery = Recovery(camera.name, found, ", ".join([*done, "idle"]))
        await self._recovered(recovery)
        return recovery

    async def set_cooler(
        self, camera: Camera, *, on: bool, set_point_c: float | None = None
    ) -> None:
        """Switch the cooler (and set its set point, degC)."""
        await self.command(camera.set_cooler(on=on, set_point_c=set_point_c), camera.name, "cooler")

    # -- mount ----------------------------------------------------------------------------

    async def recover_mount(self, mount: Mount, *, tracking: bool | None) -> Recovery | None:
        """Stop a mount found slewing when no slew of ours runs, and set its tracking.

        AbortSlew, then wait until Slewing is false within ``recover_timeout_s``; a mount
        still slewing is reconnected, sent AbortSlew again and given ``recover_timeout_s``
        more.

        Parameters
        ----------
        mount : Mount
            The mount.
        tracking : bool or None
            Tracking to set once stopped (what the next step needs); None leaves it.

        Returns
        -------
        Recovery or None
            What was found and done; None when the mount was not slewing.

        Raises
        ------
        DeviceStateError
            When the mount still slews after all of it.
        DeviceError
            When the mount does not answer.
        """
        if not (await mount.status()).slewing:
            return None

        async def stopped() -> bool:
            return not (await mount.status()).slewing

        timeout_s = self.settings.recover_timeout_s
        done = ["AbortSlew"]
        await self.command(mount.abort_slew(), mount.name, "abort slew")
        try:
            await self.until(stopped, timeout_s, mount.name, "abort slew")
        except DeviceTimeoutError:
            await self._reconnect(mount)
            await self.command(mount.abort_slew(), mount.name, "abort slew")
            done.append("reconnected, AbortSlew")
            try:
                await self.until(stopped, timeout_s, mount.name, "abort slew")
            except DeviceTimeoutError as exc:
                raise DeviceStateError(
                    f"mount still slewing after {', '.join(done)}", device=mount.name
                ) from exc
        if tracking is not None:
            await self.command(mount.set_tracking(tracking), mount.name, "tracking")
            done.append(f"tracking {'on' if tracking else 'off'}")
        recovery = Recovery(mount.name, "mount slewing with no slew running", ", ".join(done))
        await self._recovered(recovery)
        return recovery

    async def _goto(
        self, mount: Mount, slew: Callable[[], Awaitable[None]], *, track: bool
    ) -> None:
        """Recover a mount left slewing, unpark if needed, set tracking, slew, wait."""
        await self.recover_mount(mount, tracking=track)
        if (await mount.status()).at_park:
            log.info("%s is parked; unparking it", mount.name)
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

    async def nudge(
        self, mount: Mount, east_arcsec: float, north_arcsec: float, *, dec_deg: float
    ) -> None:
        """Move the pointing by a small offset on the sky with guide pulses, and wait.

        A relative move: the mount keeps tracking as it was (a goto would re-zero its
        tracking, and the drift a correction is meant to follow with it).

        Parameters
        ----------
        mount : Mount
            The mount, tracking.
        east_arcsec, north_arcsec : float
            The offset on the sky (arcsec).
        dec_deg : float
            The declination pointed at: a pulse in RA turns the RA axis, which moves the
            pointing by the rate times cos(dec) on the sky.

        Raises
        ------
        DeviceNotImplementedError
            When the mount cannot pulse-guide.
        DeviceTimeoutError
            When a pulse has not ended within its duration and ``command_timeout_s``.
        """
        ra_rate, dec_rate = await self.command(mount.guide_rates(), mount.name, "guide rates")
        # Near the pole a pulse in RA barely moves the pointing: bounded, not unbounded.
        on_sky_ra = ra_rate * max(math.cos(math.radians(dec_deg)), 0.05)
        east = GuideDirection.EAST if east_arcsec > 0 else GuideDirection.WEST
        north = GuideDirection.NORTH if north_arcsec > 0 else GuideDirection.SOUTH
        pulses = ((east, abs(east_arcsec) / on_sky_ra), (north, abs(north_arcsec) / dec_rate))

        async def ended() -> bool:
            return not await mount.is_pulse_guiding()

        for direction, seconds in pulses:
            if seconds <= 0.0:
                continue
            await self.command(mount.pulse_guide(direction, seconds), mount.name, "guide pulse")
            await self.until(
                ended, seconds + self.settings.command_timeout_s, mount.name, "guide pulse"
            )

    async def move_focuser(self, focuser: Focuser, position: int, *, overshoot: int = 0) -> None:
        """Move an absolute focuser to a position (steps) and wait until it is there.

        Every move ends outward (toward higher positions): a move inward first goes
        ``overshoot`` steps past the target, so the gears' slack is always taken up the same
        way and a position means the same optics whichever side it was reached from.

        Raises
        ------
        InvalidDeviceValueError
            When the position is outside the focuser's travel (nothing is moved).
        DeviceTimeoutError
            When it has not arrived within ``focuser_timeout_s``.
        """
        status = await focuser.status()
        if status.position is None:
            raise DeviceNotImplementedError(
                "the focuser is relative: it has no positions to move to", device=focuser.name
            )
        legs = [position]
        if overshoot > 0 and position < status.position:
            legs = [max(position - overshoot, 0), position]
        for leg in legs:
            await focuser.move_to(leg)

            async def arrived() -> bool:
                return not (await focuser.status()).moving

            await self.until(arrived, self.settings.focuser_timeout_s, focuser.name, "focus move")

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

    # -- dome or roof ---------------------------------------------------------------------

    async def shutter(self, dome: Dome) -> ShutterState | None:
        """Return the shutter's state (None when the dome does not report it)."""
        return (await self.command(dome.status(), dome.name, "dome status")).shutter

    async def open_shutter(self, dome: Dome) -> None:
        """Open the shutter or roof and wait until it reports open.

        Raises
        ------
        DeviceTimeoutError
            When it is not open within ``shutter_timeout_s``.
        DeviceStateError
            When the shutter reports Error while opening.
        """
        await self._move_shutter(dome, ShutterState.OPEN, dome.open_shutter, "open")

    async def close_shutter(self, dome: Dome, *, wait: bool = True) -> None:
        """Send the close command and, with ``wait``, wait until it reports closed.

        Raises as `open_shutter`.
        """
        if not wait:
            await self.command(dome.close_shutter(), dome.name, "close the shutter")
            return
        await self._move_shutter(dome, ShutterState.CLOSED, dome.close_shutter, "close")

    async def close_roof_over(self, dome: Dome, *, parked: bool, after_park: bool) -> bool:
        """Close the roof and wait, unless it must close over a parked mount that is not.

        Parameters
        ----------
        dome : Dome
            The roof or dome.
        parked : bool
            Whether the mount reported parked (True without a mount).
        after_park : bool
            ``[safety] close_after_park``: a roll-off roof must not close on the telescope.

        A rotating dome with a park position is sent there once closed (not waited for; a
        failure is logged: the shutter is what matters).

        Returns
        -------
        bool
            Whether the roof closed (False, logged, when it stays open for the mount).

        Raises
        ------
        DeviceError
            As `close_shutter`.
        """
        if after_park and not parked:
            log.error("the roof stays open: the mount is not parked")
            return False
        await self.close_shutter(dome)
        try:
            info = await self.command(dome.info(), dome.name, "dome info")
            if info.can_park:
                await self.command(dome.park(), dome.name, "park the dome")
        except DeviceError as exc:
            log.error("could not park the dome: %s", exc)
        return True

    async def _move_shutter(
        self,
        dome: Dome,
        goal: ShutterState,
        move: Callable[[], Awaitable[None]],
        what: str,
    ) -> None:
        if await self.shutter(dome) == goal:
            return
        await self.command(move(), dome.name, f"{what} the shutter")

        # The other way's motion: someone (the safety supervisor) reversed the command.
        reversed_ = ShutterState.CLOSING if goal == ShutterState.OPEN else ShutterState.OPENING

        async def there() -> bool:
            state = await self.shutter(dome)
            if state in (ShutterState.ERROR, reversed_):
                raise DeviceStateError(
                    f"shutter {state.name.lower()} while told to {what}", device=dome.name
                )
            return state == goal

        await self.until(there, self.settings.shutter_timeout_s, dome.name, f"{what} the shutter")

    # -- flat panel and telescope cover ---------------------------------------------------

    async def uncover(self, panel: CoverCalibrator) -> None:
        """Switch the flat panel off and open the cover, for the sky; wait until open.

        Does nothing to what the device does not have (a panel alone, a cover alone).

        Raises
        ------
        DeviceTimeoutError
            When the cover is not open within ``cover_timeout_s``.
        DeviceStateError
            When the cover reports Error.
        """
        status = await self.panel_off(panel)
        if status.cover in (CoverState.NOT_PRESENT, CoverState.OPEN):
            return
        await self.command(panel.open_cover(), panel.name, "open the cover")
        await self._cover_reaches(panel, CoverState.OPEN, "open the cover")

    async def panel_off(self, panel: CoverCalibrator) -> CoverCalibratorStatus:
        """Switch the flat panel off unless it is off or absent; return the status read."""
        status = await self.command(panel.status(), panel.name, "cover status")
        if status.calibrator not in (CalibratorState.NOT_PRESENT, CalibratorState.OFF):
            await self.command(panel.calibrator_off(), panel.name, "switch the panel off")
        return status

    async def light_panel(self, panel: CoverCalibrator, brightness: int) -> None:
        """Close the cover and switch the panel on at ``brightness``; wait until it is ready.

        Parameters
        ----------
        panel : CoverCalibrator
            The flat panel (with or without a cover).
        brightness : int
            In the panel's steps, 1 to its ``max_brightness``.

        Raises
        ------
        DeviceTimeoutError
            When the cover is not closed, or the lamp not ready, within ``cover_timeout_s``.
        DeviceStateError
            When the cover or the lamp reports Error.
        """
        status = await self.command(panel.status(), panel.name, "cover status")
        if status.cover not in (CoverState.NOT_PRESENT, CoverState.CLOSED):
            await self.command(panel.close_cover(), panel.name, "close the cover")
            await self._cover_reaches(panel, CoverState.CLOSED, "close the cover")
        if status.calibrator != CalibratorState.READY or status.brightness != brightness:
            await self.command(
                panel.calibrator_on(brightness), panel.name, f"panel on at {brightness}"
            )

        async def ready() -> bool:
            lamp = (await self.command(panel.status(), panel.name, "panel status")).calibrator
            if lamp == CalibratorState.ERROR:
                raise DeviceStateError("panel in error while switched on", device=panel.name)
            return lamp == CalibratorState.READY  # Off or Unknown may be a slow driver

        await self.until(ready, self.settings.cover_timeout_s, panel.name, "panel on")

    async def _cover_reaches(self, panel: CoverCalibrator, goal: CoverState, what: str) -> None:
        async def there() -> bool:
            status = await self.command(panel.status(), panel.name, "cover status")
            if status.cover == CoverState.ERROR:
                raise DeviceStateError(f"cover in error while told to {what}", device=panel.name)
            # Anything else may be on the way (a driver slow to say Moving): the deadline
            # decides.
            return status.cover == goal and not status.cover_moving

        await self.until(there, self.settings.cover_timeout_s, panel.name, what)
