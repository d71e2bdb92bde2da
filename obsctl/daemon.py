"""``obsctl run``: the long-running daemon that ties devices, sequencer, safety and storage.

Start-up makes the stored state consistent before anything moves: partial files from an
interrupted write are removed, frames on disk that the database does not know (a crash
between the file and its row) are logged from their headers (a truncated one is set aside),
frames the last run could not store are stored first, and sequences that were running resume
at the first frame not stored. Shutdown (SIGINT/SIGTERM) aborts or finishes the running
exposure by policy, stores what was downloaded (or, while storing fails, keeps it for the
next start), parks the mount and closes the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Awaitable, Callable
from collections.abc import Sequence as Seq
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from obsctl.acquisition.activity import Activity
from obsctl.acquisition.centring import PlateSolver
from obsctl.acquisition.health import HealthBoard, Reconnector
from obsctl.acquisition.running import RunningState
from obsctl.acquisition.safety import SafetySupervisor, SupervisorThread
from obsctl.acquisition.sequence import Sequence
from obsctl.acquisition.sequencer import Sequencer
from obsctl.acquisition.transparency import TransparencyWatch
from obsctl.calibration.build import (
    build_configured_masters,
    frames_missing_masters,
    kinds_affected,
)
from obsctl.calibration.masters import MasterKind
from obsctl.clock import Clock, ScaledClock, SystemClock, night_of, parse_night, real_seconds
from obsctl.config import Config
from obsctl.devices import DeviceSet
from obsctl.errors import (
    DeviceError,
    DeviceNotConnectedError,
    ObsctlError,
    ScheduleError,
    StorageError,
)
from obsctl.events import EventBus
from obsctl.malloc import limit_arenas
from obsctl.notify import Notifier
from obsctl.operations import Operations
from obsctl.pipeline.runner import PipelineRunner
from obsctl.pipeline.stages import build_stages, check_stages
from obsctl.store.datadir import DataDir
from obsctl.store.exposure_log import ExposureLog
from obsctl.store.raw_store import RawStore, StoredFrame
from obsctl.store.refcat import RefCatalog
from obsctl.store.unstored import UnstoredFrames, temporary_folder
from obsctl.store.writer import FrameWriter, recover_orphans

if TYPE_CHECKING:
    from obsctl.night.control import NightControl

__all__ = ["Daemon"]

log = logging.getLogger(__name__)


async def _restarting(run: Callable[[], Awaitable[None]], name: str) -> None:
    """Run a background service until cancelled; log a failure and start it again.

    Without this a failed pipeline would leave frames queued with no one to process them
    (and ``--until-idle`` waiting for ever), with the error seen only at shutdown.
    """
    while True:
        try:
            await run()
            return
        except (ObsctlError, OSError) as exc:  # the database or the disk: said in one line
            log.error("%s failed (%s); starting it again", name, exc)
        except Exception:
            log.exception("%s failed; starting it again", name)
        await asyncio.sleep(1.0)


def _in_turn(
    *steps: Callable[[int], Awaitable[None]] | None,
) -> Callable[[int], Awaitable[None]] | None:
    """Return one after-store step running the given ones in turn (None: there are none)."""
    found = [step for step in steps if step is not None]
    if len(found) <= 1:
        return found[0] if found else None

    async def each(exposure_id: int) -> None:
        for step in found:
            try:
                await step(exposure_id)
            except Exception:  # one failing must not skip the others
                log.exception("exposure %d: after-store step failed", exposure_id)

    return each


def _feeding(
    watch: TransparencyWatch | None, log_db: ExposureLog, events: EventBus
) -> Callable[[int], Awaitable[None]] | None:
    """Return the after-store step giving each processed light frame to the cloud watch."""
    if watch is None:
        return None

    async def feed(exposure_id: int) -> None:
        row = await asyncio.to_thread(log_db.frame_metric, exposure_id)
        if row is None or row["image_type"] != "LIGHT":
            return
        was_cloudy = watch.cloudy
        reading = watch.add(
            exposure_id,
            datetime.fromisoformat(str(row["date_obs"])).replace(tzinfo=UTC),
            str(row["filter"]),
            row["zero_point"],
            row["star_count"],
        )
        if reading is not None:
            events.publish("transparency", **watch.as_dict())
            if watch.cloudy != was_cloudy:
                log.warning("%s", watch.reason)

    return feed


class Daemon:
    """The observatory daemon.

    Parameters
    ----------
    config : Config
        The observatory configuration.
    clock : Clock or None
        Time source; None uses a `ScaledClock` at the simulator's speed when the config has
        simulators, else real time.
    serve_api : bool
        Whether to serve the control API.

    The control API (`obsctl.web.api`) and the night runner (`obsctl.night.runner`) drive the
    daemon through the methods and properties below, never through its state.
    """

    def __init__(self, config: Config, *, clock: Clock | None = None, serve_api: bool = True):
        self.config = config
        if clock is None:
            sim = config.simulator
            clock = ScaledClock(sim.speed) if sim is not None and sim.speed != 1 else SystemClock()
        self.clock = clock
        self.serve_api = serve_api
        self.data_dir = DataDir(config.data.directory)
        self.ops = Operations(config.sequencer, clock)
        self.state: RunningState | None = None
        self.api_url: str | None = None
        #: The embedded simulators (their ``observatory`` and ``faults``), when started here.
        self.simulators: Any | None = None
        #: The plan being run (``obsctl night``, ``obsctl run --plan``), set by its runner.
        self.night_control: NightControl | None = None
        #: Operational notices (`obsctl.notify`), while running.
        self.notifier: Notifier | None = None
        self._stop = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._runner: asyncio.Task[str] | None = None
        #: The pipeline runner, when the config enables the pipeline.
        self.pipeline: PipelineRunner | None = None
        #: Frames stored in this run, and sequences left to resume when it ended.
        self.frames_stored = 0
        self.left_running: list[str] = []
        #: Ids of the sequences given to `run`, in order (``obsctl run`` reports how they end).
        self.given_ids: list[int] = []
        self.started = asyncio.Event()
        #: Master builds started when a sequence with calibration frames ended.
        self._builds: set[asyncio.Task[None]] = set()
        self._build_lock = asyncio.Lock()

    def request_stop(self) -> None:
        """Ask the daemon to shut down (signal handlers call this)."""
        log.info("shutdown requested")
        self._stop.set()
        self._wakeup.set()

    @property
    def running(self) -> RunningState:
        """The devices, database and services (while running).

        Raises
        ------
        RuntimeError
            When the daemon is not running.
        """
        if self.state is None:
            raise RuntimeError("the daemon is not running")
        return self.state

    def sequence_state(self, sequence_id: int) -> str | None:
        """Return a stored sequence's state (``pending``, ``running``, ``done``...), or None."""
        row = self.running.log_db.sequence(sequence_id)
        return None if row is None else str(row["state"])

    def enqueue(self, sequence: Sequence) -> int:
        """Store a sequence for running; return its id."""
        state = self.running
        sid = state.log_db.add_sequence(sequence.name, sequence.model_dump_json())
        state.events.publish("sequence", id=sid, name=sequence.name, state="pending")
        self._wakeup.set()
        return sid

    async def stop_sequence(self, sequence_id: int) -> bool:
        """Stop a pending or running sequence now; a running exposure of it is aborted.

        Frames already downloaded are stored. Returns False when there is no such pending or
        running sequence.
        """
        state = self.running
        row = state.log_db.sequence(sequence_id)
        if row is None or row["state"] not in ("pending", "running"):
            return False
        state.log_db.set_sequence_state(sequence_id, "stopped")
        if state.activity.sequence_id == sequence_id:
            await self._interrupt()
        return True

    def resume_sequence(self, sequence_id: int) -> bool:
        """Put a stopped or aborted sequence back in the queue.

        It resumes at its first frame not stored (the night runner resumes a visit that bad
        weather interrupted).

        Returns False when there is no such stopped or aborted sequence.
        """
        state = self.running
        row = state.log_db.sequence(sequence_id)
        if row is None or row["state"] not in ("stopped", "aborted"):
            return False
        state.log_db.set_sequence_state(sequence_id, "pending")
        state.events.publish("sequence", id=sequence_id, name=row["name"], state="pending")
        self._wakeup.set()
        return True

    def night_status(self) -> dict[str, Any] | None:
        """Return the plan being run and its step (``/api/status``), None without a plan."""
        return None if self.night_control is None else self.night_control.status()

    def post_target(self, data: dict[str, Any]) -> dict[str, Any]:
        """Add a target of opportunity to the plan being run (``POST /api/too``).

        It is scheduled like a plan target on the night in progress (the coming one by day)
        and pre-empts the running visit when its priority is higher.

        Raises
        ------
        ConfigError
            When it is not a valid plan target.
        ScheduleError
            When no plan is being run, or its name is already in use.
        """
        control = self.night_control
        if control is None:
            raise ScheduleError(
                "no plan is being run (obsctl run --plan, obsctl night): a target of "
                "opportunity needs one"
            )
        night = control.step.get("night") or night_of(
            self.clock.now(), self.config.site.longitude_deg
        )
        if control.step.get("doing") == "night done":  # the next night's runner is starting
            night = (parse_night(night) + timedelta(days=1)).isoformat()
        target = control.post_target(data, night)
        return {"name": target.name, "priority": target.priority, "night": night}

    async def abort_exposure(self) -> None:
        """Abort the running exposure and mark the running sequence aborted."""
        state = self.running
        sid = state.activity.sequence_id
        if sid is not None:
            state.log_db.set_sequence_state(sid, "aborted")
        await self._interrupt()

    async def _interrupt(self) -> None:
        """Cancel the running sequence and abort its exposure, so the camera is free."""
        state = self.running
        exposing = state.activity.state == "exposing"
        if self._runner is not None:
            self._runner.cancel()
        if exposing:
            try:
                await self.ops.abort_exposure(state.devices.camera)
            except DeviceError as exc:
                log.error("could not abort the exposure: %s", exc)

    async def _connect_all(self, reconnector: Reconnector) -> None:
        """Connect every device (``retries`` + 1 attempts each); never fails for a device.

        A device that will not connect is marked down: what needs it waits while the
        reconnector goes on trying, the rest runs (a camera down: everything waits). The
        daemon does not exit because a device is down.
        """
        await reconnector.connect_all(attempts=self.config.sequencer.retries + 1, pause_s=1.0)
        for role, reason in reconnector.board.down().items():
            log.error("%s is down at start (%s); what needs it waits", role, reason)

    async def _run_queue(self, sequencer: Sequencer, until_idle: bool) -> None:
        log_db = self.running.log_db
        while not self._stop.is_set():
            # Frames kept by the last run (or not stored yet) count before a sequence resumes
            # at its first frame not stored: none is taken twice.
            await self.running.writer.drain()
            queued = log_db.sequences(states=("running", "pending"))
            if not queued:
                if until_idle:
                    await self.drain()
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            sid = int(queued[0]["id"])
            self._runner = asyncio.create_task(sequencer.run(sid), name=f"sequence-{sid}")
            try:
                await self._runner
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if self._stop.is_set() or (me is not None and me.cancelling()):
                    raise  # shutdown, not a stop or abort of this one sequence
                log.warning("sequence %d interrupted", sid)
                sequencer.reset()
            finally:
                self._runner = None
            self._after_sequence(sid)

    async def run(
        self,
        sequences: Seq[Sequence] = (),
        *,
        until_idle: bool = False,
        install_signal_handlers: bool = True,
    ) -> None:
        """Run until stopped (or, with ``until_idle``, until no sequence is left).

        Parameters
        ----------
        sequences : sequence of Sequence
            Sequences to add to the queue at start.
        until_idle : bool
            Exit when the queue is empty.
        install_signal_handlers : bool
            Shut down cleanly on SIGINT/SIGTERM.
        """
        from obsctl.embedded import session

        limit_arenas()  # before the daemon's threads start: see obsctl/malloc.py
        if self.config.pipeline.enabled:
            check_stages(self.config)  # a wrong model fails before anything moves
        self.data_dir.create()
        with self.data_dir.lock():
            loop = asyncio.get_running_loop()
            if install_signal_handlers:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, self.request_stop)
            log_db = self.data_dir.open_log()
            try:
                store = self.data_dir.raw_store()
                self.data_dir.remove_partial_writes()
                recover_orphans(store, log_db, self.data_dir.quarantine)
                unstored = UnstoredFrames(
                    [self.data_dir.unstored, temporary_folder(self.data_dir.root)]
                )
                kept = unstored.load()
                if kept:
                    log.warning("%d frame(s) kept by the last run are stored first", len(kept))
                async with session(self.config, clock=self.clock) as running:
                    self.simulators = running.simulators
                    await self._run_with(
                        running.devices, log_db, store, (unstored, kept), sequences, until_idle
                    )
            finally:
                await self._builds_done()
                try:
                    self.left_running = [
                        str(r["name"]) for r in log_db.sequences(states=("running", "pending"))
                    ]
                except StorageError as exc:  # said here; the error that ended the run goes on
                    log.error("cannot list the sequences left to resume: %s", exc)
                log_db.close()
                if install_signal_handlers:
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        loop.remove_signal_handler(sig)

    async def _run_with(
        self,
        devices: DeviceSet,
        log_db: ExposureLog,
        store: RawStore,
        unstored: tuple[UnstoredFrames, list[tuple[StoredFrame, Path]]],
        sequences: Seq[Sequence],
        until_idle: bool,
    ) -> None:
        activity = Activity()
        events = EventBus()
        health = HealthBoard(devices, events, self.clock)
        supervisor = SafetySupervisor(
            devices, self.config.safety, activity, self.clock, events, self.ops
        )
        from obsctl.drivers.registry import open_second_connections

        # On a thread of its own, with connections of its own: nothing on this loop can
        # delay a park.
        watch = SupervisorThread(
            supervisor, functools.partial(open_second_connections, self.config, devices)
        )
        transparency = self._transparency()
        runner = self._pipeline(log_db, events, transparency)
        fallback, kept = unstored
        writer = FrameWriter(
            store,
            log_db,
            events,
            on_stored=self._on_stored(runner, log_db),
            on_pause=functools.partial(self._paused, activity, events),
            unstored=fallback,
        )
        writer.restore(kept)
        self.state = RunningState(
            devices, log_db, activity, events, supervisor, writer, health, transparency
        )
        sequencer = Sequencer(
            devices, self.config, log_db, writer, supervisor, activity, self.clock, events, health
        )
        sequencer.transparency = transparency
        sequencer.plate_solver = self._plate_solver()
        sequencer.wait_for_devices = not until_idle
        # With the sequencer's procedures: a mount found slewing at start is recorded.
        reconnector = Reconnector(health, sequencer.ops, self.config.sequencer, self.clock)
        await self._connect_all(reconnector)
        tasks: list[asyncio.Task[Any]] = [asyncio.create_task(reconnector.run(), name="reconnect")]
        self.notifier = notifier = Notifier(self.config.notifications, events, self.clock)
        tasks.append(asyncio.create_task(notifier.run(), name="notifier"))
        # A slaved dome follows the tracking telescope; cancelled before the park at the end.
        follower = _restarting(sequencer.dome_follower.run, "the dome follower")
        tasks.append(asyncio.create_task(follower, name="dome follower"))
        api_runner = None
        try:
            writer.start()
            if self.serve_api:
                from obsctl.web.api import start_api

                api_runner, self.api_url = await start_api(self)
                log.info("control API at %s", self.api_url)
            watch.start()
            if runner is not None:
                pipeline = _restarting(runner.run, "the pipeline")
                tasks.append(asyncio.create_task(pipeline, name="pipeline"))
            self.given_ids = [self.enqueue(sequence) for sequence in sequences]
            queue = asyncio.create_task(self._run_queue(sequencer, until_idle), name="queue")
            stop = asyncio.create_task(self._stop.wait(), name="stop")
            tasks += [queue, stop]
            self.started.set()
            await asyncio.wait({queue, stop}, return_when=asyncio.FIRST_COMPLETED)
            if queue.done():
                queue.result()  # re-raise a failure of the queue runner
            else:
                await self._shutdown_exposure(activity, devices)
        finally:
            await notifier.flush()  # a night's summary, a device down: not lost
            for task in reversed(tasks):  # the queue first: no new exposure starts
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            # In this order, all before `run` leaves the session that serves the embedded
            # simulators: the supervisor lets go of the devices, the frames are stored,
            # then the mount is parked and every device disconnected.
            await watch.stop()
            await writer.close()
            if api_runner is not None:
                await api_runner.cleanup()
            await self._park_and_disconnect(devices)

    def _after_sequence(self, sequence_id: int) -> None:
        """Build masters from the calibration frames a finished sequence took.

        The build runs in the background: the next sequence starts at once.
        """
        if not self.config.calibration.auto_build:
            return
        for night, image_types in self.running.log_db.calibration_types(sequence_id).items():
            build = self._build_masters(night, kinds_affected(image_types))
            task = asyncio.create_task(build, name=f"masters-{night}")
            self._builds.add(task)
            task.add_done_callback(self._builds.discard)

    async def _build_masters(self, night: str, kinds: list[MasterKind]) -> None:
        """Build a night's masters of these kinds, then queue again its lights that lacked one."""
        state = self.running
        async with self._build_lock:  # one build at a time: they replace the same files
            await state.writer.drain()
            try:
                built = await asyncio.to_thread(
                    build_configured_masters,
                    state.log_db,
                    self.data_dir,
                    self.config.calibration,
                    night=night,
                    kinds=kinds,
                )
            except (ObsctlError, OSError, ValueError) as exc:
                log.error("building the masters of %s failed: %s", night, exc)
                return
        if not built:
            return
        log.info("built %d master(s) for %s", len(built), night)
        state.events.publish("masters", night=night, kinds=[m.kind for m in built])
        if self.pipeline is not None:
            # A frame being processed now may have chosen its masters before these existed:
            # let it finish, then look at the flags.
            await self._in_flight_done()
            redo = await asyncio.to_thread(frames_missing_masters, state.log_db, night)
            for exposure_id in redo:
                self.pipeline.notify(exposure_id)
            if redo:
                log.info("%d frame(s) of %s queued again for the new masters", len(redo), night)

    async def _in_flight_done(self) -> None:
        """Wait until the frames now in the workers are stored (not when shutting down).

        They may have chosen their masters before the new ones existed. Frames a shutdown
        leaves half-processed are processed again at the next start anyway.
        """
        assert self.pipeline is not None
        pending = set(self.pipeline.in_flight)
        while pending & self.pipeline.in_flight and not self._stop.is_set():
            await asyncio.sleep(0.1)

    async def _builds_done(self) -> None:
        """Wait for the master builds in progress (they are never cancelled half-way)."""
        while self._builds:
            await asyncio.gather(*self._builds, return_exceptions=True)

    async def drain(self) -> None:
        """Wait until every stored frame has been processed (``--until-idle``, a night's end).

        Returns at once when the pipeline is disabled.
        """
        await self.running.writer.drain()
        await self._builds_done()
        if self.pipeline is None:
            return
        while True:
            counts = await asyncio.to_thread(self.pipeline.queue.counts)
            idle = not counts.get("queued") and not counts.get("running")
            if idle and not self.pipeline.finishing:
                return
            await asyncio.sleep(0.1)

    def _transparency(self) -> TransparencyWatch | None:
        """Return the zero points' cloud watch, when configured and the pipeline measures."""
        cfg = self.config
        if not (cfg.safety.transparency.enabled and cfg.pipeline.enabled):
            return None
        return TransparencyWatch(cfg.safety.transparency, cfg.pipeline.nominal_zero_point)

    def _plate_solver(self) -> PlateSolver | None:
        """Return the centring frames' solver, on the pipeline's reference stars."""
        cfg = self.config
        if not cfg.centring.enabled:
            return None
        from obsctl.embedded import reference_catalog

        reference = reference_catalog(cfg) or RefCatalog(self.data_dir.catalog_path)
        return PlateSolver(
            reference, cfg.centring.search_arcmin, cfg.centring.blind_search_arcmin,
            bands=dict(cfg.catalogs.bands),
        )  # fmt: skip

    def _pipeline(
        self, log_db: ExposureLog, events: EventBus, transparency: TransparencyWatch | None
    ) -> PipelineRunner | None:
        if not self.config.pipeline.enabled:
            return None
        from obsctl.embedded import reference_catalog

        reference = reference_catalog(self.config)
        factory = functools.partial(build_stages, self.config, self.data_dir, reference)
        self.pipeline = PipelineRunner(
            log_db,
            self.data_dir,
            factory,
            workers=self.config.pipeline.workers,
            events=events,
            after_store=_in_turn(
                self._light_curves(log_db, events),
                _feeding(transparency, log_db, events),
                self._references(log_db, events),
                self._transients(log_db, events),
            ),
        )
        return self.pipeline

    def _references(
        self, log_db: ExposureLog, events: EventBus
    ) -> Callable[[int], Awaitable[None]] | None:
        """Return the step that builds a monitored field's first reference image when due."""
        cfg = self.config
        monitoring = cfg.monitoring
        if not (cfg.difference.auto_reference and "difference" in cfg.pipeline.stages):
            return None
        if not monitoring.enabled or not (monitoring.targets or monitoring.auto):
            return None
        from obsctl.pipeline.reference import build_if_due

        fields = (
            None if monitoring.auto else frozenset(t.field or t.name for t in monitoring.targets)
        )
        tried: dict[tuple[str, str | None, str | None], int] = {}

        async def build(exposure_id: int) -> None:
            row = await asyncio.to_thread(
                build_if_due, self.data_dir, log_db, exposure_id,
                settings=cfg.difference, fields=fields, tried=tried,
                saturation_adu=cfg.pipeline.saturation_adu,
            )  # fmt: skip
            if row is not None:
                events.publish("reference", reference=row)

        return build

    def _transients(
        self, log_db: ExposureLog, events: EventBus
    ) -> Callable[[int], Awaitable[None]] | None:
        """Return the step that links moving objects and alerts transients (differences)."""
        cfg = self.config
        if "difference" not in cfg.pipeline.stages or not cfg.monitoring.enabled:
            return None
        from obsctl.timeseries.sinks import deliver_alerts
        from obsctl.timeseries.transients import TransientWatch

        watch = TransientWatch(log_db, cfg.difference, self.data_dir)

        async def check(exposure_id: int) -> None:
            alerts = await asyncio.to_thread(watch.process_exposure, exposure_id)
            for alert in alerts:
                events.publish("alert", alert=alert.to_dict())
            if alerts and cfg.monitoring.sinks:
                await deliver_alerts(alerts, cfg.monitoring.sinks, log_db)

        return check

    def _light_curves(
        self, log_db: ExposureLog, events: EventBus
    ) -> Callable[[int], Awaitable[None]] | None:
        """Return the step that adds a processed frame to the light curves (issue 8)."""
        monitoring = self.config.monitoring
        if not monitoring.enabled or not (monitoring.targets or monitoring.auto):
            return None
        from obsctl.timeseries.alerts import Alert
        from obsctl.timeseries.monitor import LightCurveMonitor
        from obsctl.timeseries.sinks import deliver_alerts

        monitor = LightCurveMonitor(log_db, monitoring, self.config.site)
        caught_up = False

        def add(exposure_id: int) -> list[Alert]:
            nonlocal caught_up
            alerts: list[Alert] = []
            if not caught_up:  # frames a crash left without points come first
                caught_up = True
                for eid in monitor.pending_exposures():
                    if eid != exposure_id:
                        alerts += monitor.process_exposure(eid)
            return alerts + monitor.process_exposure(exposure_id)

        async def add_frame(exposure_id: int) -> None:
            alerts = await asyncio.to_thread(add, exposure_id)
            for alert in alerts:
                events.publish("alert", alert=alert.to_dict())
            if alerts and monitoring.sinks:
                await deliver_alerts(alerts, monitoring.sinks, log_db)

        return add_frame

    @staticmethod
    def _paused(activity: Activity, events: EventBus, reason: str | None) -> None:
        """Show why acquisition waits for storage (None: it does not), on the API and page."""
        if activity.paused_reason != reason:
            activity.paused_reason = reason
            events.publish("activity", **activity.as_dict())

    def _on_stored(
        self, runner: PipelineRunner | None, log_db: ExposureLog
    ) -> Callable[[int, str], Awaitable[None]]:
        async def stored(exposure_id: int, file_path: str) -> None:
            self.frames_stored += 1
            if runner is None:
                return
            # Off the event loop: a worker thread may hold the database for a while.
            row = await asyncio.to_thread(log_db.exposure, exposure_id)
            if row is not None and row["image_type"] == "LIGHT":
                try:
                    runner.notify(exposure_id)  # calibration frames make masters instead
                except StorageError as exc:
                    # The disk filled after the frame was stored: the frame is safe, and a
                    # frame without a processing row is queued again at the next start.
                    log.error("exposure %d stored, not queued for processing: %s", exposure_id, exc)

        return stored

    async def _shutdown_exposure(self, activity: Activity, devices: DeviceSet) -> None:
        if activity.state not in ("exposing", "downloading"):
            return
        if self.config.sequencer.shutdown == "finish":
            log.info("finishing the running exposure before shutdown")
            margin = (activity.exposure_s or 0) + self.config.sequencer.readout_margin_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(real_seconds(self.clock, margin)):
                    while activity.state in ("exposing", "downloading"):
                        await asyncio.sleep(0.05)
            return
        if activity.state == "exposing":
            log.info("aborting the running exposure for shutdown")
            with contextlib.suppress(DeviceError):
                await self.ops.abort_exposure(devices.camera)

    async def _park_and_disconnect(self, devices: DeviceSet) -> None:
        """Park the mount, close the roof over it, then disconnect every device.

        A mount found disconnected (an interrupted reconnection, another client that let go
        of a shared Alpaca device) is connected again to be parked: the park matters more.
        """
        mount = devices.mount
        parked = mount is None
        if mount is not None and self.config.sequencer.park_at_shutdown:
            try:
                try:
                    await self.ops.park(mount)
                except DeviceNotConnectedError:
                    log.warning("the mount was not connected at shutdown; connecting to park")
                    await mount.connect()
                    await self.ops.park(mount)
                log.info("mount parked")
                parked = True
            except DeviceError as exc:
                log.error("could not park at shutdown: %s", exc)
        dome = devices.dome
        if dome is not None and self.config.sequencer.park_at_shutdown:
            # A daemon that stops leaves no roof open behind it, and none closed on the mount.
            after_park = self.config.safety.close_after_park
            try:
                if await self.ops.close_roof_over(dome, parked=parked, after_park=after_park):
                    log.info("roof closed")
            except DeviceError as exc:
                log.error("could not close the roof at shutdown: %s", exc)
        for device in devices.all():
            with contextlib.suppress(ObsctlError, TimeoutError):
                async with asyncio.timeout(5):
                    await device.disconnect()
