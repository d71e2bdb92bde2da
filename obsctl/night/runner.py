"""The night runner: runs a plan through a whole night on the daemon, driven by APScheduler.

Three one-shot jobs make a night, each waiting for the one before it:

- **dusk** (at the start of the dusk flat window, or at night start without flats): cool the
  camera if configured, then sky flats while the sun is between the block's altitudes;
- **night** (when the sun reaches the plan's start altitude): the dispatch loop. At each
  decision point it asks `obsctl.night.schedule.NightSchedule` for the highest-merit target that
  can complete a visit under its constraints, queues the visit as a sequence on the daemon
  and waits for it. While the safety supervisor says unsafe, dispatching pauses: the
  running visit is stopped (its stored frames are kept) and resumed, from its first frame
  not stored, once it is safe again and still the best choice. A failed visit is re-queued
  up to the plan's ``requeue_failed`` times;
- **dawn** (when the sun reaches the plan's end altitude): dawn flats if configured, then
  bias frames and darks at every light exposure time of the night, then park and cooler
  warm-up (``[night]`` in the config).

Every visit (target or calibration block) is a row of ``plan_visits``, so a restarted
runner adopts the visit that was running, does not repeat finished ones, and the monitoring
cadence carries across nights.

From outside (`obsctl.night.control.NightControl`): an edited plan file is taken at the next
decision point; a target of opportunity posted to the API is scheduled like a plan target,
and pre-empts the running light visit, between two of its frames, when its priority is
higher and it can be observed now (the visit is resumed later from its first missing
frame). Start hooks run at dusk, end hooks at the end of the dawn; the runner's step (what
it does, until when) is kept there for ``obsctl status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, TypeVar

from obsctl.acquisition.running import RunningState
from obsctl.acquisition.sequence import ExposureStep, Sequence, Target
from obsctl.clock import Clock, night_of, parse_night, real_seconds
from obsctl.config import Config
from obsctl.errors import DeviceError, ScheduleError
from obsctl.events import Event
from obsctl.night.control import NightControl, run_hooks
from obsctl.night.ephemeris import NightEphemeris, cached_night
from obsctl.night.plan import Plan, PlanTarget, check_filters
from obsctl.night.progress import PlanProgress, iso_utc
from obsctl.night.schedule import (
    Candidate,
    NightSchedule,
    TargetHistory,
    describe_cadence,
    visit_steps,
)
from obsctl.operations import Operations
from obsctl.store.exposure_log import ExposureLog

__all__ = [
    "NightHost",
    "NightRunner",
    "NightSummary",
    "drive",
    "run_night",
    "wall_time",
    "weather_line",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Sequence states after which the daemon no longer works on a sequence.
_FINISHED = ("done", "incomplete", "stopped", "aborted", "failed")
#: Real seconds between looks at the database while a visit runs (not simulated time: this
#: only bounds how late a finished visit is noticed).
_POLL_REAL_S = 0.02
#: Simulated seconds to wait when nothing can be observed, or while unsafe.
_IDLE_S = 120.0
#: Modified Julian Date 0.
_MJD_ZERO = datetime(1858, 11, 17, tzinfo=UTC)
#: Why a visit is stopped when the night ends under it.
_NIGHT_OVER = "night over"
#: Why a stopped visit is resumed later rather than counted failed.
_RESUMED_LATER = ("unsafe", "pre-empted", _NIGHT_OVER)
#: Why a visit left unfinished is the schedule's choice, not work left undone: a pre-empted
#: visit resumes when the schedule picks its target again (the next night if need be).
_CARRIED_OVER = ("pre-empted", _NIGHT_OVER)
#: Activity states in which a frame is being taken: a pre-emption waits until they end.
_IN_FRAME = ("exposing", "downloading")


def wall_time(clock: Clock, when: datetime) -> datetime:
    """Return the wall-clock instant at which ``clock`` will show ``when``.

    APScheduler 3 computes its waits from the wall clock (``datetime.now``) and cannot be
    given another clock. Under a `ScaledClock` simulated time runs ``speed`` times faster,
    so a simulated fire time is mapped to the real instant when the simulated clock
    reaches it; the jobs then check the simulated time themselves, so the few milliseconds
    of timer jitter (a few simulated seconds at high speed) cannot make them run early.
    """
    return datetime.now(UTC) + timedelta(
        seconds=real_seconds(clock, (when - clock.now()).total_seconds())
    )


class NightHost(Protocol):
    """What the night runner drives: the daemon (`obsctl.daemon.Daemon`).

    The runner queues visits as sequences, waits for them and stops them; it reads the
    devices only for what happens between visits (cooler, flat-field pointing, park).
    """

    #: The plan being run, for the control API (targets of opportunity, the step).
    night_control: NightControl | None

    @property
    def config(self) -> Config:
        """The configuration (site, ``[night]``, ``[sequencer]``)."""
        ...

    @property
    def clock(self) -> Clock:
        """Observatory time."""
        ...

    @property
    def started(self) -> asyncio.Event:
        """Set once the daemon runs."""
        ...

    @property
    def ops(self) -> Operations:
        """The device procedures, with the configured deadlines."""
        ...

    @property
    def running(self) -> RunningState:
        """The devices, the exposure log (night progress is kept there) and the events."""
        ...

    def enqueue(self, sequence: Sequence) -> int:
        """Queue a visit's sequence; return its id."""
        ...

    def resume_sequence(self, sequence_id: int) -> bool:
        """Queue a stopped sequence again from its first missing frame."""
        ...

    async def stop_sequence(self, sequence_id: int) -> bool:
        """Stop a pending or running sequence."""
        ...

    def sequence_state(self, sequence_id: int) -> str | None:
        """Return a sequence's state, None when there is no such sequence."""
        ...

    async def run(self, *, install_signal_handlers: bool = True) -> None:
        """Run until stopped."""
        ...

    async def drain(self) -> None:
        """Wait until every stored frame is processed."""
        ...

    def request_stop(self) -> None:
        """Ask the daemon to shut down."""
        ...


@dataclass
class NightSummary:
    """What a night did.

    Attributes
    ----------
    night : str
        ``YYYY-MM-DD``.
    visits, frames : dict
        Visits per ``"<kind> <state>"``, frames per image type.
    unsafe_pauses : int
        Times dispatching paused for the weather.
    events : list
        The night's steps and their observatory times (``dusk``, ``night start``...).
    failures : int
        Failure rows recorded in the night.
    unsafe_s, failed_visit_s : float
        Seconds of the observing night lost to the weather, and spent in failed visits.
    incomplete : list of str
        Work the night started and did not finish: a target whose last visit failed or was
        interrupted (by the weather; not by a pre-emption or the night's end, which the
        schedule carries over), darks not done. ``obsctl night`` exits non-zero when there
        is any.
    open_shutter : float or None
        Light exposure over the dark time (night start to night end); None without a dark
        time (a plan with no night, or before the schedule is built).
    cadence : list of str
        Each monitor's achieved cadence (`obsctl.night.schedule.describe_cadence`).
    weather : list of str
        What the weather made the observatory do, with the observatory time and why:
        unsafe and safe again, the mount parked, the roof closed and opened, light frames
        paused by clouds seen in the frames and resumed (`weather_line`).
    """

    night: str
    visits: dict[str, int] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    unsafe_pauses: int = 0
    events: list[tuple[str, datetime]] = field(default_factory=list)
    failures: int = 0
    unsafe_s: float = 0.0
    failed_visit_s: float = 0.0
    incomplete: list[str] = field(default_factory=list)
    open_shutter: float | None = None
    cadence: list[str] = field(default_factory=list)
    weather: list[str] = field(default_factory=list)

    @property
    def time_lost_s(self) -> float:
        """Seconds lost to the weather and to failed visits."""
        return self.unsafe_s + self.failed_visit_s


def weather_line(event: Event, cloudy: bool) -> str | None:
    """Return how an event of the bus reads in the night's weather log, None if it is not one.

    Parameters
    ----------
    event : Event
        An event of the daemon's bus.
    cloudy : bool
        Whether light frames were paused by clouds seen in the frames before this event
        (``transparency`` events come with every frame; only a change is told).
    """
    kind, reason = event.get("kind"), event.get("reason")
    if kind == "safety":
        return f"safe again: {reason}" if event.get("safe") else f"unsafe: {reason}"
    if kind == "mount" and event.get("action") == "park":
        return f"mount parked: {reason}"
    if kind == "dome" and event.get("action") in ("close", "open"):
        return f"roof {'closed' if event['action'] == 'close' else 'opened'}: {reason}"
    if kind == "transparency" and bool(event.get("cloudy")) != cloudy:
        return f"lights {'paused' if event.get('cloudy') else 'resumed'}: {reason}"
    return None


class NightRunner:
    """Runs one night of a plan on a started daemon.

    Parameters
    ----------
    daemon : NightHost
        A daemon whose ``run`` is in progress (``started`` set, or soon).
    plan : Plan
        What to observe.
    night : datetime.date or None
        The night to run; None takes the night containing the daemon clock's current time.
    control : NightControl or None
        Plan edits, targets of opportunity, hooks and the step shown by the status; None
        makes one for ``plan`` alone.
    """

    def __init__(
        self,
        daemon: NightHost,
        plan: Plan,
        night: date | None = None,
        *,
        control: NightControl | None = None,
    ) -> None:
        self.daemon = daemon
        self.plan = plan
        self.control = control if control is not None else NightControl(plan)
        self.clock = daemon.clock
        site = daemon.config.site
        self.night = night or parse_night(night_of(self.clock.now(), site.longitude_deg))
        self.summary = NightSummary(self.night.isoformat())
        self._done: dict[str, asyncio.Event] = {}
        self.schedule: NightSchedule | None = None
        self.progress: PlanProgress | None = None
        self._eph: NightEphemeris | None = None
        self._too_seen = -1
        self._paused_at: datetime | None = None
        #: When to stop the running visit for a monitor, and which (look-ahead dispatch).
        self._preempt_at: tuple[datetime, str] | None = None
        #: The running visit's frames and predicted end.
        self._visit_plan: tuple[tuple[tuple[str | None, float], ...], datetime] | None = None

    # -- helpers --------------------------------------------------------------------------

    @property
    def _log(self) -> ExposureLog:
        return self.daemon.running.log_db

    def _event(self, name: str) -> None:
        now = self.clock.now()
        self.summary.events.append((name, now))
        log.info("night %s: %s at %s", self.night, name, f"{now:%H:%M:%S} UTC")
        self.daemon.running.events.publish(
            "night",
            event=name,
            night=self.night.isoformat(),
            plan=self.plan.name,
            observatory_time=iso_utc(now),
        )

    def _step(self, doing: str, until: datetime | None = None, target: str | None = None) -> None:
        self.control.set_step(self.night.isoformat(), doing, until=until, target=target)

    async def _refresh(self, *, force: bool = False) -> None:
        """At a decision point: take an edited plan and new targets of opportunity.

        The schedule is evaluated again only when something changed (or with ``force``).
        """
        assert self._eph is not None
        control = self.control
        edited = control.poll(self.clock.now())
        if edited is not None:
            control.accept(edited, self.clock.now())
        if control.plan is not self.plan:
            if control.plan.name != self.plan.name:
                self.progress = PlanProgress(self._log, control.plan.name, self.night.isoformat())
            self.plan = control.plan
            force = True
        if control.too_version != self._too_seen:
            self._too_seen = control.too_version
            force = True
        if not force:
            return
        toos = control.targets_of_opportunity(self.night)
        plan = self.plan
        if toos:
            # Validated one by one against this plan (names unique, like plan targets).
            plan = plan.model_copy(update={"targets": plan.targets + toos})
        self.schedule = await asyncio.to_thread(NightSchedule, plan, self._eph)

    async def _sleep_until(self, when: datetime) -> None:
        delta = (when - self.clock.now()).total_seconds()
        if delta > 0:
            await self.clock.sleep(delta)

    async def _wait_sequence(
        self,
        sequence_id: int,
        stop_when: Callable[[], str | None],
        preempt: Callable[[], Awaitable[str | None]] | None = None,
    ) -> tuple[str, str | None]:
        """Wait until a sequence finishes; stop it when ``stop_when`` gives a reason.

        ``preempt`` gives a reason to stop it between two frames (a target of opportunity).
        """
        while True:
            state = await asyncio.to_thread(self.daemon.sequence_state, sequence_id)
            if state is None or state in _FINISHED:
                return state or "missing", None
            reason = stop_when()
            if reason is None and preempt is not None:
                reason = await preempt()
                if reason is not None:
                    await self._between_frames(sequence_id)
            if reason is not None:
                if not await self.daemon.stop_sequence(sequence_id):
                    # It ended while we waited for the end of its frame: as it ended (a
                    # visit marked interrupted whose sequence is done would be taken again).
                    state = await asyncio.to_thread(self.daemon.sequence_state, sequence_id)
                    if state is not None and state in _FINISHED and state != "stopped":
                        return state, None
                await self._camera_idle()
                return "stopped", reason
            await asyncio.sleep(_POLL_REAL_S)

    async def _between_frames(self, sequence_id: int) -> None:
        """Wait until the sequence is between two frames (or its frame's time is up).

        The sequencer publishes each step of a frame; the moment it leaves the exposure and
        download of one frame it prepares the next (filter, dither) before exposing, and a
        stop then loses no exposure. A frame that takes longer than its exposure and the
        readout margin is stopped anyway (its exposure aborted, never half-stored).
        """
        running = self.daemon.running
        activity = running.activity
        margin = self.daemon.config.sequencer.readout_margin_s
        deadline = self.clock.monotonic() + (activity.exposure_s or 0.0) + margin
        async with running.events.subscribe() as queue:
            while activity.sequence_id == sequence_id and activity.state in _IN_FRAME:
                left_s = real_seconds(self.clock, deadline - self.clock.monotonic())
                if left_s <= 0:
                    log.warning("pre-emption: the frame is taking long; stopping it now")
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.get(), left_s)

    async def _camera_idle(self) -> None:
        """Wait until the camera has finished reading out an interrupted frame.

        Stopping a sequence aborts a running exposure, but a frame already being read out
        finishes; the next visit's first exposure would find the camera busy.
        """
        try:
            await self.daemon.ops.camera_idle(self.daemon.running.devices.camera)
        except DeviceError as exc:
            log.warning("camera not idle: %s", exc)

    def _unsafe(self) -> str | None:
        return self.daemon.running.unsafe_reason()

    # -- the night ------------------------------------------------------------------------

    async def run(self) -> NightSummary:
        """Run the night to its end (dawn calibration, park, warm-up, hooks); return a summary.

        Raises
        ------
        ScheduleError
            When the sun does not reach the plan's night limits on this night.
        """
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.date import DateTrigger

        await self.daemon.started.wait()
        from obsctl.catalogs.prefetch import start_prefetch  # the night never waits on it

        start_prefetch(self.daemon, self.plan)  # the fields' reference stars, in the background
        self.control.publish = self.daemon.running.events.publish
        self.daemon.night_control = self.control
        devices = self.daemon.running.devices
        site = self.daemon.config.site
        self._eph = await asyncio.to_thread(cached_night, site, self.night)
        self.progress = PlanProgress(self._log, self.plan.name, self.night.isoformat())
        await self._refresh(force=True)
        schedule = self.schedule
        assert schedule is not None
        if schedule.night_start is None or schedule.night_end is None:
            raise ScheduleError(
                f"night {self.night}: the sun does not reach "
                f"{self.plan.night.start_sun_alt_deg:g} deg at {site.name}"
            )
        if devices.filter_wheel is not None:
            wheel = devices.filter_wheel
            names = await self.daemon.ops.command(wheel.names(), wheel.name, "filter names")
            check_filters(self.plan, names)
            self.control.wheel = names
        await self._adopt()
        flats = self.plan.calibration.flats
        dusk_at = schedule.night_start
        if flats is not None and "dusk" in flats.when:
            window = schedule.flat_window(flats, "dusk")
            if window is not None:
                dusk_at = min(window[0], dusk_at)
        jobs: list[tuple[str, datetime, Callable[[], Awaitable[None]], str | None]] = [
            ("dusk", dusk_at, self._dusk, None),
            ("night", schedule.night_start, self._observe, "dusk"),
            ("dawn", schedule.night_end, self._dawn, "night"),
        ]
        self._done = {name: asyncio.Event() for name, *_ in jobs}
        weather = asyncio.create_task(self._note_weather(), name="night weather")
        failures: list[BaseException] = []
        scheduler = AsyncIOScheduler(timezone=UTC)
        for name, at, body, after in jobs:
            run_date = max(wall_time(self.clock, at), datetime.now(UTC))
            scheduler.add_job(
                self._job,
                DateTrigger(run_date=run_date),
                args=(name, at, body, after, failures),
                id=name,
                name=f"{self.plan.name} {self.night} {name}",
                misfire_grace_time=None,  # late (a restart): run now, not never
            )
            log.info("scheduled %s at %s UTC", name, f"{at:%Y-%m-%d %H:%M:%S}")
        scheduler.start()
        if self.clock.now() < dusk_at:
            self._step("waiting for dusk", until=dusk_at)
        try:
            await self._done["dawn"].wait()
        finally:
            scheduler.shutdown(wait=False)
            weather.cancel()
            await asyncio.gather(weather, return_exceptions=True)
        if failures:
            raise failures[0]
        await asyncio.to_thread(self._summarise)
        s = self.summary
        self.daemon.running.events.publish(
            "night_summary",
            night=s.night,
            plan=self.plan.name,
            frames=s.frames,
            visits=s.visits,
            failures=s.failures,
            unsafe_s=round(s.unsafe_s, 1),
            failed_visit_s=round(s.failed_visit_s, 1),
            time_lost_s=round(s.time_lost_s, 1),
            incomplete=s.incomplete,
            weather=s.weather,
        )
        return self.summary

    async def _note_weather(self) -> None:
        """Note what the weather made the observatory do, for the summary, as it happens."""
        cloudy = False
        async with self.daemon.running.events.subscribe() as queue:
            while True:
                event = await queue.get()
                line = weather_line(event, cloudy)
                if event.get("kind") == "transparency":
                    cloudy = bool(event.get("cloudy"))
                if line is not None:
                    self.summary.weather.append(f"{self.clock.now():%H:%M} UTC {line}")

    async def _job(
        self,
        name: str,
        at: datetime,
        body: Callable[[], Awaitable[None]],
        after: str | None,
        failures: list[BaseException],
    ) -> None:
        try:
            if after is not None:
                await self._done[after].wait()
            await self._sleep_until(at)  # guards against the timer firing a little early
            await body()
        except Exception as exc:
            log.exception("night job %s failed", name)
            failures.append(exc)
            for event in self._done.values():
                event.set()  # end the night: a broken runner must not hang the daemon
        finally:
            self._done[name].set()

    async def _adopt(self) -> None:
        """Finish the visits a previous run left running (the daemon resumes them)."""
        assert self.progress is not None
        for visit in self.progress.visits(state="running"):
            log.info("adopting visit %d (%s) from a previous run", visit["id"], visit["target"])
            stop = self._unsafe if visit["kind"] == "light" else (lambda: None)
            state, reason = await self._wait_sequence(int(visit["sequence_id"]), stop)
            self._finish_visit(int(visit["id"]), state, reason)

    def _finish_visit(self, visit_id: int, state: str, reason: str | None) -> str:
        assert self.progress is not None
        if state == "done":
            final = "done"
        elif state == "stopped" and reason is not None and reason.startswith(_RESUMED_LATER):
            final = "interrupted"
        else:
            final = "failed"
            reason = reason or f"sequence {state}"
        self.progress.finish(visit_id, final, self.clock.now(), reason)
        return final

    # -- dusk -----------------------------------------------------------------------------

    async def _dusk(self) -> None:
        self._event("dusk")
        if self.control.start_hooks:
            self._step("start hooks")
            await run_hooks(
                self.control.start_hooks,
                "start",
                self.night.isoformat(),
                self.daemon.running.events.publish,
            )
        set_point = self.daemon.config.night.cooler_set_point_c
        if set_point is not None:
            self._step("cooling the camera")
            await self._cooler(on=True, set_point_c=set_point)
        flats = self.plan.calibration.flats
        if flats is not None and "dusk" in flats.when:
            await self._flats("dusk")

    async def _cooler(self, *, on: bool, set_point_c: float | None = None) -> None:
        try:
            await self.daemon.ops.set_cooler(
                self.daemon.running.devices.camera, on=on, set_point_c=set_point_c
            )
        except DeviceError as exc:
            log.warning("cooler command failed: %s", exc)

    async def _flats(self, when: str) -> None:
        assert self.schedule is not None and self.progress is not None
        block = self.plan.calibration.flats
        assert block is not None
        window = self.schedule.flat_window(block, when)
        if window is None:
            log.warning("no %s flat window tonight (the sun never crosses it)", when)
            return
        start, end = window
        if self.clock.now() >= end:
            log.info("%s flat window already over", when)
            return
        if self.clock.now() < start:
            self._step(f"waiting for the {when} flat window", until=start)
        await self._sleep_until(start)
        self._event(f"{when} flats")
        self._step(f"{when} flats", until=end)
        if block.source == "sky":
            await self._point_flat_field(when)
        for name in block.filters:
            key = f"flats {when} {name}"
            exposure_s = block.exposure_s
            while self.clock.now() < end:
                ids = [int(v["sequence_id"]) for v in self.progress.visits(target=key)]
                remaining = block.count - self.progress.frames_stored(ids)
                if remaining <= 0:
                    break
                step = block.step(name, exposure_s, remaining)
                sequence = Sequence(name=f"{self.plan.name} {key}", steps=(step,))
                state, _ = await self._run_visit(
                    key,
                    "flats",
                    sequence,
                    lambda: "flat window over" if self.clock.now() >= end else None,
                )
                exposure_s = self._last_flat_exposure(name) or exposure_s
                if state != "done" and self.clock.now() < end:
                    # Sky too bright (dusk) or too faint (dawn) for the limits: wait a little.
                    await self.clock.sleep(_IDLE_S)

    def _last_flat_exposure(self, filter_name: str) -> float | None:
        return self._log.last_exposure_s(self.night.isoformat(), "FLAT", filter_name)

    async def _point_flat_field(self, when: str) -> None:
        """Point high in the sky away from the sun (east at dusk, west at dawn)."""
        mount = self.daemon.running.devices.mount
        if mount is None:
            return
        try:
            await self.daemon.ops.point_altaz(mount, 75.0, 90.0 if when == "dusk" else 270.0)
        except DeviceError as exc:
            log.warning("cannot point at the flat field (%s); flats where the mount is", exc)

    # -- the observing night ----------------------------------------------------------------

    async def _observe(self) -> None:
        assert self.schedule is not None and self.progress is not None
        self._event("night start")
        end = self.schedule.night_end
        assert end is not None
        paused = False
        while (now := self.clock.now()) < end:
            if (unsafe := self._unsafe()) is not None:
                if not paused:
                    paused = True
                    self._paused_at = now
                    self.summary.unsafe_pauses += 1
                    self._event("dispatch paused (unsafe)")
                    self._step(f"paused: {unsafe}")
                await self.clock.sleep(min(_IDLE_S / 4, (end - now).total_seconds()))
                continue
            if paused:
                paused = False
                self._resumed(now)
                self._event("dispatch resumed (safe)")
            await self._refresh()  # a decision point: plan edits and new targets count
            assert self.schedule is not None
            history = await asyncio.to_thread(self.progress.history, self.schedule.plan)
            choice = self.schedule.choose(now, history)
            if choice is None:
                wait_s = min(_IDLE_S, (end - now).total_seconds())
                nxt = self.schedule.next_start(now, history, end)
                if nxt is not None:
                    wait_s = min(wait_s, max(1.0, (nxt[0] - now).total_seconds()))
                self._step("waiting: nothing observable", until=now + timedelta(seconds=wait_s))
                await self.clock.sleep(wait_s)
                continue
            log.info(
                "next: %s (merit %.2f, alt %.1f deg, airmass %.2f)",
                choice.target.name,
                choice.merit,
                choice.alt_deg,
                choice.airmass,
            )
            self._step(
                f"observing {choice.target.name}", until=choice.end, target=choice.target.name
            )
            await self._visit(choice, history, end)
        if paused:
            self._resumed(end)

    def _resumed(self, now: datetime) -> None:
        if self._paused_at is not None:
            self.summary.unsafe_s += max(0.0, (now - self._paused_at).total_seconds())
            self._paused_at = None

    async def _preemption(self, current: PlanTarget) -> str | None:
        """Return why ``current`` is pre-empted now, None if nothing pre-empts it.

        A target of opportunity of higher priority pre-empts it (looked at only when a new
        one was posted), and so does a monitor of higher priority once it is due (looked at
        from the time the visit's start predicted, `NightSchedule.preemption`).
        """
        now = self.clock.now()
        due = self._preempt_at is not None and now >= self._preempt_at[0]
        if self.control.too_version == self._too_seen and not due:
            return None
        await self._refresh()
        assert self.schedule is not None and self.progress is not None
        toos = {t.name for t in self.control.targets_of_opportunity(self.night)}
        history = await asyncio.to_thread(self.progress.history, self.schedule.plan)
        candidates, _ = self.schedule.candidates(now, history)
        for candidate in candidates:
            target = candidate.target
            if target.name in toos and target.priority > current.priority:
                return f"pre-empted by the target of opportunity {target.name}"
        if due and self._visit_plan is not None:
            frames, end = self._visit_plan
            self._preempt_at = self.schedule.preemption(current, frames, now, end, history)
            if self._preempt_at is not None and self._preempt_at[0] <= now:
                return f"pre-empted by {self._preempt_at[1]} (monitoring cadence)"
        return None

    async def _visit(
        self, choice: Candidate, history: Mapping[str, TargetHistory], night_end: datetime
    ) -> None:
        assert self.progress is not None and self.schedule is not None
        target = choice.target
        grace = timedelta(seconds=self.plan.night.slew_s)
        frames = self.schedule.visit_frames(target, history.get(target.name))
        self._visit_plan = (frames, choice.end)
        self._preempt_at = self.schedule.preemption(
            target, frames, self.clock.now(), choice.end, history
        )

        def stop_when() -> str | None:
            if self.clock.now() > night_end + grace:
                return _NIGHT_OVER
            return self._unsafe()

        async def preempt() -> str | None:
            return await self._preemption(target)

        interrupted = self.progress.visits(state="interrupted", target=target.name, kind="light")
        if interrupted and self.daemon.resume_sequence(int(interrupted[-1]["sequence_id"])):
            visit = interrupted[-1]
            log.info("resuming visit %d of %s", visit["id"], target.name)
            self.progress.reopen(int(visit["id"]))
            sid = int(visit["sequence_id"])
            state, reason = await self._wait_sequence(sid, stop_when, preempt)
            self._finish_visit(int(visit["id"]), state, reason)
            return
        steps = visit_steps(target, history.get(target.name, TargetHistory()))
        if not steps:
            return  # the goal was met meanwhile
        ra, dec = target.coordinates
        sequence = Sequence(
            name=f"{self.plan.name}: {target.name}",
            target=Target(name=target.name, ra_deg=ra, dec_deg=dec),
            steps=steps,
            dither_arcsec=target.dither_arcsec,
            dither_px=target.dither_px,
            dither_pattern=target.dither_pattern,
        )
        await self._run_visit(target.name, "light", sequence, stop_when, preempt)

    async def _run_visit(
        self,
        name: str,
        kind: str,
        sequence: Sequence,
        stop_when: Callable[[], str | None],
        preempt: Callable[[], Awaitable[str | None]] | None = None,
    ) -> tuple[str, str | None]:
        assert self.progress is not None
        sid = self.daemon.enqueue(sequence)
        vid = self.progress.start(name, kind, sid, sequence.total_frames, self.clock.now())
        state, reason = await self._wait_sequence(sid, stop_when, preempt)
        final = self._finish_visit(vid, state, reason)
        log.info("visit %s: %s%s", name, final, f" ({reason})" if reason else "")
        return final, reason

    # -- dawn -----------------------------------------------------------------------------

    async def _dawn(self) -> None:
        self._event("night end")
        flats = self.plan.calibration.flats
        dawn_flats = flats is not None and "dawn" in flats.when
        panel = flats is not None and flats.source == "panel"
        if dawn_flats and not panel:
            await self._flats("dawn")
        config = self.daemon.config.night
        if config.park_at_dawn:
            self._step("parking")
            await self._park()
        if dawn_flats and panel:  # under the closed roof
            await self._flats("dawn")
        darks = self.plan.calibration.darks
        if darks is not None:
            await self._darks()
        if config.warm_up:
            await self._warm_up()
        if self.control.end_hooks:
            self._step("end hooks")
            await run_hooks(
                self.control.end_hooks,
                "end",
                self.night.isoformat(),
                self.daemon.running.events.publish,
            )
        self._event("night done")
        self._step("night done")

    async def _park(self) -> None:
        """Park the mount, then close the roof over it (never on a mount that did not park)."""
        devices = self.daemon.running.devices
        mount, dome = devices.mount, devices.dome
        parked = mount is None
        if mount is not None:
            try:
                await self.daemon.ops.park(mount)
                self._event("parked")
                parked = True
            except DeviceError as exc:
                log.error("could not park at dawn: %s", exc)
        if dome is not None:
            after_park = self.daemon.config.safety.close_after_park
            try:
                if await self.daemon.ops.close_roof_over(
                    dome, parked=parked, after_park=after_park
                ):
                    self._event("roof closed")
            except DeviceError as exc:
                log.error("could not close the roof at dawn: %s", exc)

    def _night_exposures(self) -> list[float]:
        return self._log.exposure_times(self.night.isoformat(), "LIGHT")

    async def _darks(self) -> None:
        assert self.progress is not None
        block = self.plan.calibration.darks
        assert block is not None
        if self.progress.visits(kind="darks", state="done"):
            return
        taken = await asyncio.to_thread(self._night_exposures)
        # Darks for what the night took; a night without lights gets the plan's times.
        times = sorted({*(taken or self.plan.light_exposures_s()), *block.extra_exposures_s})
        steps = [
            ExposureStep(image_type="DARK", exposure_s=t, count=block.dark_count, bin=block.bin)
            for t in times
            if block.dark_count > 0
        ]
        if block.bias_count > 0:
            steps.append(ExposureStep(image_type="BIAS", count=block.bias_count, bin=block.bin))
        if not steps:
            return
        self._event("darks and bias")
        self._step("darks and bias")
        sequence = Sequence(name=f"{self.plan.name} darks", steps=tuple(steps))
        await self._run_visit("darks", "darks", sequence, lambda: None)

    async def _warm_up(self) -> None:
        config = self.daemon.config.night
        camera = self.daemon.running.devices.camera
        ops = self.daemon.ops
        try:
            status = await ops.command(camera.status(), camera.name, "camera status")
        except DeviceError as exc:
            log.warning("cannot read the camera for the warm-up: %s", exc)
            return
        if not status.cooler_on:
            return
        self._event("cooler warm-up")
        self._step("cooler warm-up")
        await self._cooler(on=True, set_point_c=config.warm_up_c)
        deadline = self.clock.monotonic() + config.warm_up_timeout_s
        while self.clock.monotonic() < deadline:
            with contextlib.suppress(DeviceError):
                status = await ops.command(camera.status(), camera.name, "camera status")
                temp = status.ccd_temperature_c
                if temp is None or temp >= config.warm_up_c - 1.0:
                    break
            await self.clock.sleep(30.0)
        await self._cooler(on=False)
        self._event("cooler off")

    def _summarise(self) -> None:
        assert self.progress is not None
        summary = self.summary
        last: dict[tuple[str, str], dict[str, Any]] = {}
        for visit in self.progress.visits():
            key = f"{visit['kind']} {visit['state']}"
            summary.visits[key] = summary.visits.get(key, 0) + 1
            last[(visit["kind"], visit["target"])] = visit
            if visit["kind"] == "light" and visit["state"] == "failed" and visit["ended_utc"]:
                spent = datetime.fromisoformat(visit["ended_utc"]) - datetime.fromisoformat(
                    visit["started_utc"]
                )
                summary.failed_visit_s += max(0.0, spent.total_seconds())
        # Flats end with their window (the sky decides); lights and darks are work left. A
        # visit pre-empted or cut short by the dawn is not: the schedule takes its frames
        # left later (the next night if need be), as it takes a goal's.
        summary.incomplete = [
            f"{name if kind == 'light' else 'darks and bias'}: {v['state']}"
            + (f" ({v['reason']})" if v["reason"] else "")
            for (kind, name), v in last.items()
            if kind in ("light", "darks")
            and v["state"] != "done"
            and not (v["reason"] or "").startswith(_CARRIED_OVER)
        ]
        summary.failures = self.progress.failures_count()
        summary.frames = self._log.counts_by_type(self.night.isoformat())
        schedule = self.schedule
        if schedule is not None and schedule.night_start and schedule.night_end:
            start, end = schedule.night_start, schedule.night_end
            rows = self._log.query(
                "SELECT SUM(exposure_s) AS s FROM exposures WHERE night = ? AND "
                "image_type = 'LIGHT' AND mjd_start >= ? AND mjd_start <= ?",
                (self.night.isoformat(), _mjd(start), _mjd(end)),
            )
            light_s = float(rows[0]["s"] or 0.0) if rows else 0.0
            summary.open_shutter = light_s / (end - start).total_seconds()
            for target in schedule.plan.targets:
                visits = self.progress.visits(state="done", target=target.name, kind="light")
                starts = [datetime.fromisoformat(v["started_utc"]) for v in visits]
                text = describe_cadence(target, starts)
                if text is not None and starts:
                    summary.cadence.append(f"{target.name}: {text}")


def _mjd(when: datetime) -> float:
    """Return a time as a Modified Julian Date (UTC), as the exposure log keeps it."""
    return (when - _MJD_ZERO).total_seconds() / 86400.0


async def drive(
    daemon: NightHost,
    work: Coroutine[Any, Any, T],
    name: str,
    *,
    install_signal_handlers: bool = True,
) -> tuple[bool, T | None]:
    """Run a daemon with ``work`` beside it; stop the daemon once the work is done.

    The work's frames are processed (and the dawn masters applied) before the daemon stops.

    Returns
    -------
    tuple of (bool, object)
        ``(True, result)`` when the work ended, ``(False, None)`` when the daemon stopped
        first (a signal); a failure of either is raised.
    """
    task = asyncio.create_task(
        daemon.run(install_signal_handlers=install_signal_handlers), name="daemon"
    )
    work_task = asyncio.create_task(work, name=name)
    try:
        await asyncio.wait({task, work_task}, return_when=asyncio.FIRST_COMPLETED)
        if work_task.done():
            result = work_task.result()
            drained = asyncio.create_task(daemon.drain(), name="drain")
            await asyncio.wait({task, drained}, return_when=asyncio.FIRST_COMPLETED)
            drained.cancel()
            return True, result
        task.result()  # re-raise the daemon's failure
        return False, None
    finally:
        if not work_task.done():
            work_task.cancel()
            await asyncio.gather(work_task, return_exceptions=True)
        daemon.request_stop()
        await asyncio.gather(task, return_exceptions=True)


async def run_night(runner: NightRunner, *, install_signal_handlers: bool = True) -> NightSummary:
    """Run the runner's daemon for its night and stop it after the dawn calibration.

    Parameters
    ----------
    runner : NightRunner
        The night, on a daemon that is not running yet; it runs here until the night is
        over. What the night did so far stays in ``runner.summary`` if it is cut short.
    install_signal_handlers : bool
        Let SIGINT/SIGTERM shut the daemon down cleanly.

    Raises
    ------
    ScheduleError
        When the daemon stops (a signal, a failure) before the night is over.
    """
    ended, summary = await drive(
        runner.daemon, runner.run(), "night", install_signal_handlers=install_signal_handlers
    )
    if not ended or summary is None:
        raise ScheduleError("the daemon stopped before the night ended")
    return summary
