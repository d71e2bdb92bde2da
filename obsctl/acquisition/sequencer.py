"""The sequencer: runs a sequence's steps on the devices and hands every frame to the store.

For each frame: wait at the safety gate, point (unpark, slew, dither), select the filter,
expose, wait for the image, download. The downloaded frame goes to the `FrameWriter`, which
writes it (FITS, atomically) and logs it in the background, so the camera starts the next
exposure at once instead of waiting for the disk; while frames cannot be stored, it takes no
new one (the writer keeps them and retries). Device failures go through the
`FaultPolicy` (retry, reconnect, skip); every failure is logged in the database with its
reason, and a failed step is skipped, never the night.

A device that is down (`obsctl.acquisition.health`: it would not connect, or it stopped
answering after the policy gave up) costs only the steps that need it: those wait, with the
reason in ``Activity.paused_reason``, while the others run (darks and biases need only the
camera); when the device is back, the waiting steps go on from their first frame not taken.
Devices found in a state a failure left behind are recovered by `obsctl.operations` before
they are used, and each recovery is recorded as a failure row with its action.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any, TypeVar

import numpy as np

from obsctl.acquisition.activity import Activity
from obsctl.acquisition.centring import Centring, PlateSolver
from obsctl.acquisition.dither import Dither, dither_offset_px, offset_radec_deg, pixels_to_sky
from obsctl.acquisition.dome_slaving import DomeFollower, SlitReading, slit_record
from obsctl.acquisition.drift_keeper import DriftKeeper, DriftLost
from obsctl.acquisition.focus_keeper import FocusKeeper
from obsctl.acquisition.health import HealthBoard
from obsctl.acquisition.meridian import SIDEREAL_MIN_PER_DEG, flip_wait_s, hour_angle_deg
from obsctl.acquisition.policy import FaultPolicy, with_policy
from obsctl.acquisition.safety import SafetySupervisor
from obsctl.acquisition.sequence import ExposureStep, Sequence, Target, parse_sequence
from obsctl.acquisition.transparency import TransparencyWatch
from obsctl.clock import Clock, night_of
from obsctl.config import Config
from obsctl.devices import (
    CameraImage,
    Device,
    DeviceSet,
    ExposureSettings,
    MountStatus,
    PierSide,
    ShutterState,
)
from obsctl.errors import (
    ConfigError,
    DeviceError,
    DeviceNotImplementedError,
    DeviceStateError,
    FilterNotFoundError,
    InvalidDeviceValueError,
    ObsctlError,
)
from obsctl.events import EventBus
from obsctl.operations import Operations, Recovery
from obsctl.store.exposure_log import ExposureLog, FailureRecord
from obsctl.store.headers import FrameContext, SlitRecord
from obsctl.store.raw_store import StoredFrame
from obsctl.store.writer import FrameWriter

__all__ = ["Sequencer"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_FLAT_TRIES = 6
#: Observatory seconds between looks at the clouds while light frames wait for them.
_CLEAR_POLL_S = 10.0


class _SafetyAbort(ObsctlError):
    """The supervisor aborted the exposure; retake the frame once it is safe."""


class _MeridianLimit(_SafetyAbort):
    """The mount reached its meridian limit mid-exposure: abort, flip, retake the frame."""


class _StepSkipped(ObsctlError):
    """The fault policy gave up on a step; its failures are already logged."""


class _DeviceDown(ObsctlError):
    """A device the step needs is down: the step waits for it, the others go on."""


#: The action recorded for a failure that left its device down (the step waits for it).
WAIT_ACTION = "wait for reconnection"


def _stored_sequence(row: Mapping[str, Any]) -> Sequence:
    """Parse a sequence row's definition; a `ConfigError` says why it is not a sequence."""
    source = f"stored sequence {row['id']}"
    try:
        data = json.loads(row["definition"])
    except (TypeError, ValueError, RecursionError) as exc:  # not text, not JSON, too deep
        raise ConfigError(f"{source}: the definition is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the definition is not a JSON object")
    return parse_sequence(data, source=source)


class Sequencer:
    """Runs sequences stored in the exposure log on the devices.

    Parameters
    ----------
    devices : DeviceSet
        Connected devices.
    config : Config
        Site, telescope, sequencer and fault-policy settings.
    log_db : ExposureLog
        Sequences, progress and failures.
    writer : FrameWriter
        Stores frames in the background.
    supervisor : SafetySupervisor
        The safety gate.
    activity : Activity
        Shared view of what is happening, updated here.
    clock : Clock
        Simulated or real time.
    events : EventBus
        Where progress is published.
    health : HealthBoard or None
        Which devices are up; None takes every device as up (and none is ever marked down).
    """

    def __init__(
        self,
        devices: DeviceSet,
        config: Config,
        log_db: ExposureLog,
        writer: FrameWriter,
        supervisor: SafetySupervisor,
        activity: Activity,
        clock: Clock,
        events: EventBus,
        health: HealthBoard | None = None,
    ) -> None:
        self.devices = devices
        self.config = config
        self.log_db = log_db
        self.writer = writer
        self.supervisor = supervisor
        self.activity = activity
        self.clock = clock
        self.events = events
        sc = config.sequencer
        self.policy = FaultPolicy(sc.retries, sc.backoff_s, sc.backoff_factor, sc.reconnect)
        self.ops = Operations(sc, clock, on_recovery=self._recovered)
        #: Turns a rotating dome with the telescope (`obsctl.acquisition.dome_slaving`); the
        #: daemon runs its tracking loop, `_point` and `_take_frame` use it around slews and
        #: light frames.
        self.dome_follower = DomeFollower(
            devices, config, self.ops, clock, lambda: supervisor.is_safe
        )
        if health is None:
            health = HealthBoard(devices, events, clock)
            for role in health.devices:
                health.mark_up(role)
        self.health = health
        self._pointed: Target | None = None
        self._filter: str | None = None
        self._settings: ExposureSettings | None = None
        #: The flat panel as last set ("lit B", "open", "off"), None when not known.
        self._panel: str | None = None
        self._panel_max = 1
        self._waiting_reason: str | None = None
        #: Whether steps wait for a device that is down (the daemon); False skips them, as
        #: ``obsctl run --until-idle`` must: it runs what is queued once, then ends.
        self.wait_for_devices = True
        #: The zero points as a cloud sensor (``[safety.transparency]``), set by the daemon.
        self.transparency: TransparencyWatch | None = None
        #: Focus runs, filter offsets and the temperature model before light frames.
        self.focus = FocusKeeper(
            devices, config, self.ops, clock, log_db, events,
            on_run=lambda reason: self._set("focusing"),
        )  # fmt: skip
        #: Drift correction from the light frames (``[drift_correction]``).
        self.drift = DriftKeeper(config.drift_correction, log_db, events)
        #: Solves the centring frames (``[centring]``), set by the daemon.
        self.plate_solver: PlateSolver | None = None
        #: A target slewed to and not yet centred.
        self._to_centre: Target | None = None
        #: Where the mount is sent for a centred target (offset centring): dithers go from it.
        self._aim: tuple[Target, tuple[float, float]] | None = None
        #: The dither the mount is at (for the frames' header), and the visit's dithers so far.
        self._dither = Dither((0.0, 0.0), (0.0, 0.0))
        self._dithers = 0
        #: Clock monotonic time the mount reaches its meridian limit (looking east); a light
        #: exposure still running then is aborted, the mount flipped and the frame retaken.
        self._limit_at: float | None = None

    def _forget(self) -> None:
        """Forget cached device state (pointing, filter, settings): a device was down."""
        self._pointed = None
        self._aim = None
        self._filter = None
        self._settings = None
        self._panel = None

    def reset(self) -> None:
        """Forget cached device state after an interruption (pointing, filter, settings)."""
        self._forget()
        self._stop_waiting()
        self._set(
            "idle",
            sequence_id=None,
            sequence_name=None,
            step_index=None,
            frame_index=None,
            image_type=None,
            exposure_s=None,
            exposure_start=None,
        )

    # -- bookkeeping --------------------------------------------------------------------

    def _set(self, state: str, **fields: object) -> None:
        self.activity.state = state
        for name, value in fields.items():
            setattr(self.activity, name, value)
        self.events.publish("activity", **self.activity.as_dict())

    async def _report(self, operation: str, exc: DeviceError, action: str) -> None:
        a = self.activity
        record = FailureRecord(
            operation=operation,
            error_type=type(exc).__name__,
            message=str(exc),
            action=action,
            device=exc.device,
            night=night_of(self.clock.now(), self.config.site.longitude_deg),
            sequence_id=a.sequence_id,
            step_index=a.step_index,
        )
        await asyncio.to_thread(self.log_db.add_failure, record)
        self.events.publish("failure", **asdict(record))

    async def _recovered(self, recovery: Recovery) -> None:
        """Record a device recovery (logged by `Operations`) as a failure row."""
        exc = DeviceStateError(recovery.found, device=recovery.device)
        await self._report("recover", exc, recovery.action)

    async def _reachable(self, device: Device) -> bool:
        """Whether the device still answers (its ``Connected``, within the command deadline)."""
        try:
            async with asyncio.timeout(self.config.sequencer.command_timeout_s):
                return await device.is_connected()
        except (DeviceError, TimeoutError):
            return False

    async def _give_up(self, device: Device, exc: DeviceError) -> str:
        """Decide what a failure the policy gave up on costs: the step, or a wait.

        A device that no longer answers is marked down: the steps that need it wait for its
        reconnection instead of being skipped. A device that answers but fails the call, or
        refuses a value, costs the step.
        """
        role = self.health.role_of(device)
        if role is None or isinstance(exc, InvalidDeviceValueError):
            return "skip"
        if await self._reachable(device):
            return "skip"
        self.health.mark_down(role, str(exc))
        return WAIT_ACTION

    async def _attempt(self, operation: str, device: Device, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await with_policy(
                operation,
                device,
                call,
                policy=self.policy,
                clock=self.clock,
                report=self._report,
                give_up=functools.partial(self._give_up, device),
            )
        except DeviceError as exc:
            role = self.health.role_of(device)
            if role is not None and not self.health.is_up(role):
                raise _DeviceDown(f"{operation} failed: {exc}") from exc
            raise _StepSkipped(f"{operation} failed: {exc}") from exc

    # -- devices down ---------------------------------------------------------------------

    def _needs(self, sequence: Sequence, step: ExposureStep) -> list[str]:
        """Return the device roles a step cannot do without (configured ones only)."""
        roles = ["camera"]
        if step.image_type in ("LIGHT", "FLAT") and step.filter is not None:
            roles.append("filter_wheel")
        if step.sees_sky:
            roles.append("dome")
        if step.image_type in ("LIGHT", "FLAT"):  # the cover opened, or the panel lit
            roles.append("cover_calibrator")
        if step.image_type == "LIGHT" and sequence.target is not None:
            roles.append("mount")
        return [r for r in roles if r in self.health.devices]

    def _missing(self, sequence: Sequence, step: ExposureStep) -> dict[str, str]:
        """Return the devices a step needs that are down, with why."""
        return self.health.down(self._needs(sequence, step))

    def _stop_waiting(self) -> None:
        """Take our waiting reason off the activity (a storage pause's stays)."""
        if self._waiting_reason is not None:
            if self.activity.paused_reason == self._waiting_reason:
                self.activity.paused_reason = None
            self._waiting_reason = None

    def _skip_waiting(
        self, sequence_id: int, sequence: Sequence, left: dict[int, int], missing: dict[str, str]
    ) -> None:
        """Give up the steps left, all waiting for a device that is down (no waiting)."""
        reason = "; ".join(f"{role} down: {why}" for role, why in sorted(missing.items()))
        for step_index in left:
            log.error("sequence %s step %d skipped: %s", sequence.name, step_index, reason)
            self.events.publish("step_skipped", id=sequence_id, step=step_index, reason=reason)

    async def _wait_devices(self, missing: dict[str, str]) -> None:
        """Wait for a change of the devices' health, saying why on the activity."""
        version = self.health.version
        reason = "; ".join(f"{role} down: {why}" for role, why in sorted(missing.items()))
        reason = f"waiting for a device: {reason}"
        if reason != self._waiting_reason:
            log.warning("%s", reason)
        self._stop_waiting()
        self._waiting_reason = reason
        self._set("waiting_device", paused_reason=reason)
        await self.health.wait_change(version)

    # -- running ------------------------------------------------------------------------

    async def _unrunnable(self, sequence_id: int, name: str, exc: ConfigError) -> None:
        """Mark a stored sequence failed, with the reason its definition cannot be run."""
        log.error("sequence %d (%s) cannot run: %s", sequence_id, name, exc)
        record = FailureRecord(
            operation="load sequence",
            error_type=type(exc).__name__,
            message=str(exc),
            action="skip",
            night=night_of(self.clock.now(), self.config.site.longitude_deg),
            sequence_id=sequence_id,
        )
        await asyncio.to_thread(self.log_db.add_failure, record)
        self.log_db.set_sequence_state(sequence_id, "failed")
        self.events.publish("sequence", id=sequence_id, name=name, state="failed", reason=str(exc))

    async def run(self, sequence_id: int) -> str:
        """Run (or resume) a stored sequence.

        Returns
        -------
        str
            ``done``; ``incomplete`` if it skipped a step; ``failed`` if its stored definition
            is not a valid sequence (an older database, a damaged row). A failed sequence is
            never tried again: its reason is in the failures table, and the daemon goes on.
        """
        row = self.log_db.sequence(sequence_id)
        if row is None:
            raise ValueError(f"no sequence {sequence_id}")
        try:
            sequence = _stored_sequence(row)
        except ConfigError as exc:
            await self._unrunnable(sequence_id, str(row["name"]), exc)
            return "failed"
        done = self.log_db.frames_done(sequence_id)
        self.log_db.set_sequence_state(sequence_id, "running")
        self._set("starting", sequence_id=sequence_id, sequence_name=sequence.name)
        self.events.publish("sequence", id=sequence_id, name=sequence.name, state="running")
        rng = random.Random(sequence_id)
        self._dithers = 0
        skipped = 0
        # The next frame of each step left to take, in step order; a step whose devices are
        # down waits while the later ones run.
        left = {i: done.get(i, 0) for i in range(len(sequence.steps))}
        left = {i: first for i, first in left.items() if first < sequence.steps[i].count}
        while left:
            runnable = [i for i in left if not self._missing(sequence, sequence.steps[i])]
            if not runnable:
                missing: dict[str, str] = {}
                for i in left:
                    missing.update(self._missing(sequence, sequence.steps[i]))
                if not self.wait_for_devices:
                    skipped += len(left)
                    self._skip_waiting(sequence_id, sequence, left, missing)
                    break
                await self._wait_devices(missing)
                continue
            if self._waiting_reason is not None:
                self._stop_waiting()
                self._forget()  # a device came back: its state is not what was cached
            step_index = runnable[0]
            step = sequence.steps[step_index]
            log.info(
                "sequence %s step %d: %d x %s %s %gs (from frame %d)",
                sequence.name,
                step_index,
                step.count,
                step.image_type,
                step.filter,
                step.exposure_s,
                left[step_index],
            )
            try:
                for frame_index in range(left[step_index], step.count):
                    missing = self._missing(sequence, step)
                    if missing:
                        raise _DeviceDown(", ".join(missing))
                    self._set("preparing", step_index=step_index, frame_index=frame_index)
                    await self._take_frame(sequence, step, step_index, frame_index, rng)
                    left[step_index] = frame_index + 1
                del left[step_index]
            except _StepSkipped as exc:
                del left[step_index]
                skipped += 1
                log.error("sequence %s step %d skipped: %s", sequence.name, step_index, exc)
                self.events.publish(
                    "step_skipped", id=sequence_id, step=step_index, reason=str(exc)
                )
            except _DeviceDown as exc:
                log.warning(
                    "sequence %s step %d waits, a device it needs is down (%s)",
                    sequence.name,
                    step_index,
                    exc,
                )
                self._forget()
        self._stop_waiting()
        await self._frames_stored()
        # "incomplete": some step was skipped after its failures (see the failures table).
        final = "incomplete" if skipped else "done"
        self.log_db.set_sequence_state(sequence_id, final)
        self.reset()
        self.events.publish("sequence", id=sequence_id, name=sequence.name, state=final)
        return final

    async def _take_frame(
        self,
        sequence: Sequence,
        step: ExposureStep,
        step_index: int,
        frame_index: int,
        rng: random.Random,
    ) -> None:
        exposure_s = step.exposure_s
        flat_tries = 0
        slit_start: SlitReading | None = None
        brightness = await self._panel_brightness(step)
        while True:
            await self._storage_ready()
            if not self.supervisor.is_safe and step.sees_sky:
                self._set("waiting_safe")
            await self.supervisor.wait_safe(sky=step.sees_sky)
            if step.sees_sky:
                try:
                    await self._open_roof()
                except _SafetyAbort:
                    continue  # it turned unsafe meanwhile: wait again, never open while unsafe
            await self._set_panel(step, brightness)
            if step.image_type == "LIGHT" and not await self._transparent():
                continue  # it turned unsafe while waiting for the clouds to pass
            if step.image_type == "LIGHT" and sequence.target is not None:
                dither = None
                if frame_index > 0 and frame_index % sequence.dither_every == 0:
                    dither = await self._next_dither(sequence, step, rng)
                await self._point(sequence.target, dither, sequence.dither_settle_s)
                await self._meridian(sequence.target, exposure_s)
            if "filter_wheel" in self._needs(sequence, step) or self.health.is_up("filter_wheel"):
                await self._select_filter(step.filter)
            await self._configure(step)
            if step.image_type == "LIGHT" and not await self._keep_focus():
                continue  # it turned unsafe during a focus run: wait, then prepare again
            if step.image_type == "LIGHT" and not await self._centre():
                continue  # it turned unsafe during centring: wait, then prepare again
            if step.image_type == "BIAS":
                exposure_s = (await self.devices.camera.info()).exposure_min_s
            mount = await self._pointing(sequence, step)
            if step.sees_sky:  # a sky flat too: the slit must face where the tube points
                slit_start = await self._align_dome()
            if not self.supervisor.is_safe and step.sees_sky:
                # It turned unsafe while this frame was prepared (slew, filter): the
                # supervisor's abort came before the exposure began, so look again.
                continue
            try:
                image, start = await self._attempt(
                    "expose", self.devices.camera, functools.partial(self._expose, step, exposure_s)
                )
            except _MeridianLimit as exc:
                log.warning("%s: the mount flips and the frame is retaken", exc)
                await self.ops.abort_exposure(self.devices.camera)
                continue
            except _SafetyAbort:
                log.warning("frame aborted for safety; it is retaken when safe")
                continue
            if step.image_type == "FLAT":
                level = _median_level(image)
                ratio = step.flat_target_adu / max(level, 1.0)
                if abs(ratio - 1.0) > step.flat_tolerance:
                    flat_tries += 1
                    scaled = _next_flat_exposure(exposure_s, ratio, step)
                    # The exposure at its limit: a panel's lamp can be turned up or down.
                    brighter = None
                    if scaled is None and brightness is not None:
                        brighter = _next_brightness(brightness, ratio, self._panel_max)
                    if (scaled is None and brighter is None) or flat_tries >= _FLAT_TRIES:
                        limits = "exposure and panel" if brightness is not None else "exposure"
                        raise _StepSkipped(
                            f"flat level {level:.0f} ADU does not reach "
                            f"{step.flat_target_adu:.0f} ADU within the {limits} limits"
                        )
                    exposure_s = scaled if scaled is not None else exposure_s
                    brightness = brighter if brighter is not None else brightness
                    continue  # a test exposure: not stored
            break
        sky = step.image_type == "LIGHT"
        frame = StoredFrame(
            context=FrameContext(
                image=image,
                image_type=step.image_type,
                site=self.config.site,
                telescope=self.config.telescope,
                frame_number=0,  # assigned by the writer, in storage order
                start_time=start,
                # Calibration frames belong to no object; darks and biases see no filter.
                target=sequence.target.name if sky and sequence.target else None,
                filter_name=self._filter if step.image_type in ("LIGHT", "FLAT") else None,
                mount=mount,
                slit=await self._slit_after(slit_start),
                panel_brightness=brightness,
                **self._dither_header(sequence, step),
            ),
            sequence_id=self.activity.sequence_id,
            step_index=step_index,
            frame_index=frame_index,
            devices={
                role: getattr(self.devices, role).name if getattr(self.devices, role) else None
                for role in ("camera", "mount", "filter_wheel")
            },
        )
        self.writer.submit(frame)
        if sky and sequence.target is not None:
            await self._follow_drift(sequence, image)

    async def _follow_drift(self, sequence: Sequence, image: CameraImage) -> None:
        """Guide out the drift this stored light frame shows (`drift_keeper`).

        With guide pulses, a relative move: a goto would re-zero the mount's tracking and
        the drift with it. Never fatal: the frame is stored, a failure costs the correction.
        """
        mount, target = self.devices.mount, sequence.target
        dithered = sequence.dither_px > 0 or sequence.dither_arcsec > 0
        if not self.config.drift_correction.enabled or mount is None or target is None:
            return
        if dithered:
            return  # the frames move on purpose
        m = image.metadata
        scale = self._pixel_scale_arcsec(m.pixel_size_x_um * m.bin_x)
        night = night_of(self.clock.now(), self.config.site.longitude_deg)
        try:
            offset = await self.drift.after_light(
                target, image.data, sequence_id=self.activity.sequence_id, night=night,
                scale_arcsec=scale,
            )  # fmt: skip
        except DriftLost as exc:
            await self._report(
                "drift correction", DeviceError(str(exc), device=mount.name),
                "the target is centred again",
            )  # fmt: skip
            self._to_centre = target
            return
        except Exception:  # a bug here must not stop the night: the frame is stored
            log.exception("drift correction failed; frames go on uncorrected")
            return
        if offset is None:
            return
        east, north = offset
        try:
            await self.ops.nudge(mount, east, north, dec_deg=target.dec_deg)
        except DeviceNotImplementedError as exc:
            await self._report("drift correction", exc, "no drift correction: no guide pulses")
            self.drift.disabled = True
        except DeviceError as exc:  # the next frame measures again
            await self._report("drift correction", exc, "the next frame corrects again")

    async def _transparent(self) -> bool:
        """Wait while the frames' zero points say cloud (`TransparencyWatch`).

        The roof stays open and the mount tracks. Returns False when it turned unsafe
        meanwhile (the safety gate comes first again), True when a light frame may go.
        """
        watch = self.transparency
        if watch is None:
            return True
        while (wait_s := watch.hold_s(self.clock.now())) > 0:
            if self.activity.state != "waiting_clear":
                log.info("light frames wait: %s", watch.reason)
                self._set("waiting_clear")
            # Short steps: a probe's reading, or the safety supervisor, may end the wait.
            await self.clock.sleep(min(wait_s, _CLEAR_POLL_S))
            if not self.supervisor.is_safe:
                return False
        return True

    async def _keep_focus(self) -> bool:
        """Ready the focus for a light frame (`FocusKeeper`); False if it turned unsafe.

        A focuser or camera failure here costs the focus, not the frame: it is recorded and
        the frame is taken as the focus is.
        """

        def check() -> None:
            if not self.supervisor.is_safe:
                raise _SafetyAbort("unsafe: the focus run stops")

        try:
            await self.focus.before_light(self._filter, check)
        except _SafetyAbort:
            return False
        except DeviceError as exc:
            await self._report("focus", exc, "the frame is taken without refocusing")
        return True

    async def _meridian(self, target: Target, exposure_s: float) -> None:
        """Flip a German equatorial mount past the meridian, between frames (`meridian`).

        A frame that would end past the limit waits for the flip time; after the flip the
        target is centred again (``[centring]``) and, when asked, refocused.
        """
        settings = self.config.meridian_flip
        mount = self.devices.mount
        self._limit_at = None
        if not settings.enabled or mount is None or self._pointed != target:
            return
        status = await self._attempt("mount status", mount, mount.status)
        if status.pier_side != PierSide.WEST:
            return  # looking west (or a mount that cannot tell): nothing to flip
        ha = hour_angle_deg(status.alt_deg, status.az_deg, self.config.site.latitude_deg)
        minutes = ha * SIDEREAL_MIN_PER_DEG
        wait_s = flip_wait_s(ha, exposure_s + self.config.sequencer.readout_margin_s, settings)
        if wait_s is None:
            self._limit_at = self.clock.monotonic() + (settings.limit_after_min - minutes) * 60.0
            return
        if wait_s > 0:
            log.info("meridian flip in %.0f s: the frame would end past the limit", wait_s)
            self._set("waiting_flip")
            await self.clock.sleep(wait_s)
        self._set("flipping")
        ra, dec = self._aim[1] if self._aim is not None else (target.ra_deg, target.dec_deg)
        await self.dome_follower.slew_with(ra, dec)
        await self._attempt("meridian flip", mount, lambda: self.ops.slew(mount, ra, dec))
        after = await self._attempt("mount status", mount, mount.status)
        flipped = after.pier_side != status.pier_side
        self.events.publish(
            "meridian_flip", target=target.name, flipped=flipped,
            hour_angle_min=round(minutes + wait_s / 60.0, 2), pier_side=after.pier_side.name,
        )  # fmt: skip
        if not flipped:
            await self._report(
                "meridian flip",
                DeviceError("the mount did not change sides", device=mount.name),
                "check the mount's own meridian settings; frames go on",
            )
            return
        log.info("meridian flip of %s done", target.name)
        self._aim = None  # the other side's pointing error: centre afresh
        self.drift.restart()
        self._to_centre = target
        if settings.refocus:
            self.focus.request("meridian flip")

    async def _centre(self) -> bool:
        """Centre the target just slewed to (`obsctl.acquisition.centring`); False if unsafe.

        A run that does not centre (unsolved, out of corrections, a device error) is
        recorded and the frame is taken where the mount points.
        """
        target, self._to_centre = self._to_centre, None
        mount = self.devices.mount
        if target is None or mount is None or self.plate_solver is None:
            return True
        if not self.config.centring.enabled:
            return True

        def check() -> None:
            if not self.supervisor.is_safe:
                raise _SafetyAbort("unsafe: centring stops")

        self._set("centring")
        centring = Centring(
            self.devices.camera, mount, self.ops, self.clock, self.config, self.plate_solver,
            check=check,
        )  # fmt: skip
        try:
            run = await centring.run(target, self._filter)
        except _SafetyAbort:
            self._to_centre = target
            return False
        if run.frames:
            self._aim = (target, run.frames[-1].commanded)
        self.drift.restart()  # the field moved: the next frame is the new reference
        row = run.row(night_of(self.clock.now(), self.config.site.longitude_deg))
        await asyncio.to_thread(self.log_db.add_centring_run, row)
        self.events.publish("centring", **row)
        return True

    async def _panel_brightness(self, step: ExposureStep) -> int | None:
        """Return a panel flat's first brightness in the panel's steps; None for the others.

        Raises
        ------
        _StepSkipped
            When the step wants the flat panel and there is none.
        """
        if step.panel_brightness_pct is None:
            return None
        panel = self.devices.cover_calibrator
        if panel is None:
            raise _StepSkipped("a panel flat needs [devices.cover_calibrator]")
        info = await self._attempt(
            "read the flat panel", panel, lambda: self.ops.command(panel.info(), panel.name, "info")
        )
        if not info.has_calibrator or info.max_brightness < 1:
            raise _StepSkipped(f"{panel.name} has no light source for flats")
        self._panel_max = info.max_brightness
        return max(1, round(info.max_brightness * step.panel_brightness_pct / 100.0))

    async def _set_panel(self, step: ExposureStep, brightness: int | None) -> None:
        """Ready the flat panel for a frame; nothing without one.

        A panel flat: lit behind its closed cover. The sky: off, the cover open. A dark or a
        bias: off. What was done is remembered (`_forget` clears it), so that a light frame
        costs no reading of the cover.
        """
        panel = self.devices.cover_calibrator
        if panel is None:
            return
        sky = "open" if step.sees_sky else "off"
        want = sky if brightness is None else f"lit {brightness}"
        if want == self._panel or (want == "off" and self._panel == "open"):
            return
        if want == "open":
            self._set("opening cover")
            await self._attempt("open the cover", panel, lambda: self.ops.uncover(panel))
        elif want == "off":
            await self._attempt("switch the panel off", panel, lambda: self.ops.panel_off(panel))
        else:
            assert brightness is not None
            self._set("lighting panel")
            await self._attempt(
                "light the panel", panel, lambda: self.ops.light_panel(panel, brightness)
            )
        self._panel = want

    async def _align_dome(self) -> SlitReading | None:
        """Wait for a slaved dome's slit to face the telescope (deadline: ``[dome]``)."""
        if not await self._dome_slaved():
            return None
        self._set("aligning dome")
        return await self.dome_follower.wait_aligned()

    async def _dome_slaved(self) -> bool:
        try:
            return await self.dome_follower.enabled()
        except DeviceError as exc:
            log.warning("could not read the dome's abilities: %s", exc)
            return False

    async def _slit_after(self, start: SlitReading | None) -> SlitRecord | None:
        """Read the slit after a light frame; the record flags it if off at start or end."""
        if start is None:
            return None
        try:
            end = await self.dome_follower.reading()
        except DeviceError as exc:
            log.warning("could not read the dome after the frame: %s", exc)
            end = None
        return slit_record(start, end, self.config.dome.tolerance_deg)

    async def _storage_ready(self) -> None:
        """Wait while frames cannot be stored: a new one would only be held in memory too.

        The writer keeps the frames it holds and retries; ``paused_reason`` says why.
        """
        if self.writer.failure is None:
            return
        self._set("paused")
        await self.writer.storing()

    async def _frames_stored(self) -> None:
        """Wait until the writer has stored every frame taken (through failures and retries).

        A sequence is done only once its frames are on disk and in the log.
        """
        if self.writer.pending:
            self._set("paused" if self.writer.failure is not None else "storing")
        await self.writer.drain()

    async def _open_roof(self) -> None:
        """Open the dome or roof for a sky frame, unless it is open.

        Each attempt (the fault policy retries) first looks that it is still safe: the safety
        supervisor closes the roof from another thread, and a retry must not reopen it.
        """
        dome = self.devices.dome
        if dome is None or await self.ops.shutter(dome) == ShutterState.OPEN:
            return

        async def open_when_safe() -> None:
            if not self.supervisor.is_safe:
                raise _SafetyAbort("unsafe: the roof stays closed")
            await self.ops.open_shutter(dome)

        self._set("opening roof")
        await self._attempt("open the roof", dome, open_when_safe)
        self.events.publish("dome", action="open", reason="safe, for a sky frame")

    async def _next_dither(
        self, sequence: Sequence, step: ExposureStep, rng: random.Random
    ) -> Dither | None:
        """Return the visit's next dither (`obsctl.acquisition.dither`); None without."""
        if sequence.dither_px > 0:
            camera = self.devices.camera
            info = await self._attempt("camera info", camera, camera.info)
            scale = self._pixel_scale_arcsec(info.pixel_size_x_um * step.bin)
            amplitude, unit = sequence.dither_px, scale
        elif sequence.dither_arcsec > 0:
            amplitude, unit = sequence.dither_arcsec, None
        else:
            return None
        self._dithers += 1
        dx, dy = dither_offset_px(sequence.dither_pattern, self._dithers, amplitude, rng)
        if unit is None:  # an amplitude on the sky: the offset is (east, north) arcsec
            return Dither(None, (dx, dy))
        return Dither((dx, dy), pixels_to_sky(dx, dy, unit))

    def _pixel_scale_arcsec(self, pixel_um: float) -> float:
        """Return the sky's arcseconds per (binned) pixel of `pixel_um` micrometres."""
        return 206.264806 * pixel_um / self.config.telescope.focal_length_mm

    def _dither_header(self, sequence: Sequence, step: ExposureStep) -> dict[str, Any]:
        """Return the frame's dither for its header: a dithered visit's light frames only."""
        dithered = sequence.dither_px > 0 or sequence.dither_arcsec > 0
        if step.image_type != "LIGHT" or not dithered:
            return {}
        return {"dither_px": self._dither.pixels, "dither_arcsec": self._dither.sky_arcsec}

    async def _point(self, target: Target, dither: Dither | None, settle_s: float) -> None:
        """Slew to a new target, or dither about it (about its centred position if centred)."""
        mount = self.devices.mount
        if mount is None or (self._pointed == target and dither is None):
            return
        ra, dec = target.ra_deg, target.dec_deg
        if self._aim is not None and self._aim[0] == target:
            ra, dec = self._aim[1]  # centred: dither about where it was centred
        if dither is not None:
            ra, dec = offset_radec_deg(ra, dec, *dither.sky_arcsec)
        self._set("slewing")
        await self.dome_follower.slew_with(ra % 360.0, dec)  # the dome turns with the mount
        await self._attempt("slew", mount, lambda: self.ops.slew(mount, ra % 360.0, dec))
        if self._pointed != target:
            self._to_centre = target
        self._pointed = target
        self._dither = dither or Dither((0.0, 0.0), (0.0, 0.0))
        if dither is not None and settle_s > 0:
            await self.clock.sleep(settle_s)

    async def _select_filter(self, name: str | None) -> None:
        wheel = self.devices.filter_wheel
        if name is None or wheel is None or name == self._filter:
            return

        async def move() -> None:
            try:
                await self.ops.select_filter(wheel, name)
            except FilterNotFoundError as exc:  # not worth a retry: skip the step at once
                raise _StepSkipped(str(exc)) from exc

        self._set("filter")
        self._filter = None
        await self._attempt("filter", wheel, move)
        self._filter = name

    async def _configure(self, step: ExposureStep) -> None:
        settings = ExposureSettings(
            bin_x=step.bin,
            bin_y=step.bin,
            gain=step.gain,
            offset=step.offset,
            readout_mode=step.readout_mode,
        )
        if settings == self._settings:
            return
        camera = self.devices.camera
        await self._attempt("configure", camera, lambda: camera.configure(settings))
        self._settings = settings

    async def _pointing(self, sequence: Sequence, step: ExposureStep) -> MountStatus | None:
        """Read the mount for the frame's header: under the policy when the step needs it.

        A frame that does not need the mount (a dark, a bias) goes without its position when
        the mount is down or does not answer.
        """
        mount = self.devices.mount
        if mount is None:
            return None
        if "mount" in self._needs(sequence, step):
            return await self._attempt("mount status", mount, mount.status)
        if not self.health.is_up("mount"):
            return None
        try:
            async with asyncio.timeout(self.config.sequencer.command_timeout_s):
                return await mount.status()
        except (DeviceError, TimeoutError) as exc:
            log.warning("no mount position for this %s frame: %s", step.image_type, exc)
            return None

    async def _expose(self, step: ExposureStep, exposure_s: float) -> tuple[CameraImage, datetime]:
        camera = self.devices.camera
        self.activity.safety_abort = False
        start = self.clock.now()
        self._set(
            "exposing",
            image_type=step.image_type,
            sky=step.sees_sky,
            exposure_s=exposure_s,
            exposure_start=start,
        )

        def check() -> None:
            if self.activity.safety_abort and self.activity.state == "exposing":
                raise _SafetyAbort("exposure aborted by the safety supervisor")
            limit_at = self._limit_at
            past_limit = limit_at is not None and self.clock.monotonic() >= limit_at
            if step.image_type == "LIGHT" and past_limit:
                raise _MeridianLimit("the mount reached its meridian limit mid-exposure")

        light = step.image_type in ("LIGHT", "FLAT")
        await self.ops.expose(camera, exposure_s, light=light, check=check)
        self._set("downloading")
        image = await camera.download()
        self.events.publish("downloaded", shape=list(image.data.shape))
        start = image.metadata.start_time or start
        return image, start


def _median_level(image: CameraImage) -> float:
    """Median of a subsample: a 61 MP median costs a second, every 8th pixel is enough."""
    return float(np.median(image.data[::8, ::8]))


def _next_brightness(brightness: int, ratio: float, top: int) -> int | None:
    """Scale a panel's brightness (steps) toward the target level; None when at its limit."""
    wanted = min(max(round(brightness * ratio), 1), top)
    return None if wanted == brightness else wanted


def _next_flat_exposure(exposure_s: float, ratio: float, step: ExposureStep) -> float | None:
    """Scale a flat's exposure toward the target level; None when the limits forbid it."""
    wanted = exposure_s * ratio
    clamped = min(max(wanted, step.flat_min_exposure_s), step.flat_max_exposure_s)
    if math.isclose(clamped, exposure_s, rel_tol=1e-6):
        return None
    return clamped
