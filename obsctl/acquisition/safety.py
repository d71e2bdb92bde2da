"""The safety supervisor: runs beside the sequencer and acts on its own.

It polls the safety monitor and the weather station on its own connections and deadline. The
weather is judged by `obsctl.acquisition.weather` (limits with hysteresis and waits, a feed
deadline). When the monitor says unsafe, or the weather does, or the monitor does not answer
within its deadline (device health), it aborts a running light or flat exposure (darks and
biases may go on), stops tracking and parks the mount (sending the park again at every
reading until the mount accepts it), closes the dome or roof once the mount reports parked
(``close_after_park``: a roll-off roof must not close on the telescope; the close is sent
again at every reading until the shutter reports closing; a rotating dome is then parked,
and the dome follower of `obsctl.acquisition.dome_slaving` stands still while unsafe), and
closes the gate that the sequencer passes before every light frame. The gate opens again
once everything has said safe for ``resume_delay_s`` without a break; the supervisor never
opens the roof itself (the sequencer opens it for the next light frame, past the gate). None
of this waits for the sequencer, so a stuck sequencer or a download in flight cannot delay
the park.

In the daemon the supervisor runs on a thread and event loop of its own (`SupervisorThread`)
with its own device connections, so that nothing on the daemon's event loop (a long request,
a slow database read, a bug that blocks the loop) can delay the park either. Its gate, its
events and its state are handed to the daemon's loop thread-safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from obsctl.acquisition.activity import Activity
from obsctl.acquisition.weather import WeatherPolicy, WeatherVerdict, weather_policy
from obsctl.clock import Clock
from obsctl.config import SafetyConfig, SequencerConfig
from obsctl.devices import DeviceSet, Dome, DomeStatus, ShutterState
from obsctl.errors import DeviceError
from obsctl.events import EventBus
from obsctl.operations import Operations

__all__ = ["SafetySupervisor", "SupervisorThread"]

log = logging.getLogger(__name__)

#: Real seconds between parks sent again to a mount found standing away from park.
_REPARK_EVERY_S = 5.0
#: Shutter states in which a close needs not be sent again.
_CLOSING = (ShutterState.CLOSED, ShutterState.CLOSING)


class SafetySupervisor:
    """Watch the safety monitor; abort, stop tracking and park when unsafe.

    Parameters
    ----------
    devices : DeviceSet
        The observatory's devices (a missing safety monitor means always safe).
    config : SafetyConfig
        Poll interval, read deadline, resume delay.
    activity : Activity
        The sequencer's current activity, to know whether an exposure must be aborted.
    clock : Clock
        Simulated or real time, for the resume delay.
    events : EventBus
        Where state changes are published.
    ops : Operations, optional
        The device procedures (abort, stop tracking, park) with the configured deadlines;
        by default those of a default ``[sequencer]``.

    Attributes
    ----------
    is_safe : bool
        Whether frames other than darks and biases may be taken.
    reason : str
        Why (every cause at once while unsafe).
    safe_in_s : float or None
        While unsafe, the estimated time until safe (s, observatory time) if the values stay
        as they are; None when it cannot be told (a value beyond its limit, the monitor).
    weather : WeatherVerdict or None
        The last verdict on the weather station (None without one).
    """

    def __init__(
        self,
        devices: DeviceSet,
        config: SafetyConfig,
        activity: Activity,
        clock: Clock,
        events: EventBus,
        ops: Operations | None = None,
    ) -> None:
        self.devices = devices
        self.config = config
        self.ops = ops if ops is not None else Operations(SequencerConfig(), clock)
        self.activity = activity
        self.clock = clock
        self.events = events
        self.is_safe = False
        self.reason = "not checked yet"
        self.safe_in_s: float | None = None
        self.weather: WeatherVerdict | None = None
        self._policy: WeatherPolicy | None = (
            weather_policy(config.weather) if devices.weather is not None else None
        )
        self._unwatched: tuple[str, ...] = ()
        #: What has held it unsafe in this spell (`_read`), to tell a new cause once.
        self._unsafe_causes: set[str] = set()
        # The gate and the first reading are awaited on the daemon's loop (`home`), wherever
        # the supervisor itself runs.
        self._gate = asyncio.Event()
        self._safe_since: float | None = None
        self._checked = asyncio.Event()
        self.home: asyncio.AbstractEventLoop | None = None
        #: Real (monotonic) time when the last unsafe reading was acted on and the park
        #: command was sent, for latency measurements.
        self.last_unsafe_detected: float | None = None
        self.last_park_sent: float | None = None
        #: Failed attempts to park in this unsafe spell (0 once the mount accepted the park).
        self._park_failures = 0
        #: Real (monotonic) time when the close command last went to the dome, for latency.
        self.last_close_sent: float | None = None
        #: Whether the dome has a park position (read once).
        self._dome_parks: bool | None = None
        self._close_failures = 0
        self._reparked = -math.inf  # real (monotonic) time of the last park sent again

    async def wait_safe(self, *, sky: bool) -> None:
        """Return when a frame may be taken: at once unless it takes the sky's light.

        Darks, biases and flats of the flat panel go on under a closed roof whatever the
        weather; lights and sky flats wait for the gate.
        """
        await self._checked.wait()
        if sky:
            await self._gate.wait()

    async def _read_monitor(self) -> tuple[bool, str]:
        monitor = self.devices.safety_monitor
        if monitor is None:
            return True, "no safety monitor configured"
        try:
            async with asyncio.timeout(self.config.read_timeout_s):
                safe = await monitor.is_safe()
        except TimeoutError:
            return False, f"safety monitor silent for {self.config.read_timeout_s:g} s"
        except DeviceError as exc:
            return False, f"safety monitor failed: {exc}"
        return safe, "safety monitor says safe" if safe else "safety monitor says unsafe"

    async def _read_weather(self) -> WeatherVerdict | None:
        station, policy = self.devices.weather, self._policy
        if station is None or policy is None:
            return None
        readings: dict[str, float | None] | None = None
        age_s = None
        try:
            async with asyncio.timeout(self.config.read_timeout_s):
                values = await station.readings()
                age_s = await station.time_since_last_update_s()
            readings = dataclasses.asdict(values)
        except Exception as exc:  # any failure is a missed reading: the feed deadline decides
            log.debug("weather station read failed: %s", exc)
        verdict = policy.assess(readings, self.clock.monotonic(), age_s=age_s)
        if verdict.unwatched != self._unwatched:
            self._unwatched = verdict.unwatched
            if verdict.unwatched:
                log.warning(
                    "the weather station reports no %s: those limits are not watched",
                    ", ".join(verdict.unwatched),
                )
        return verdict

    async def _read(self) -> tuple[bool, str, set[str]]:
        """Read the monitor and the weather: safe or not, why, and what holds it unsafe.

        The causes are ``"safety monitor"``, the weather's quantities beyond their limits and
        ``"feed"`` (a lost weather feed).
        """
        (safe, reason), verdict = await asyncio.gather(self._read_monitor(), self._read_weather())
        self.weather = verdict
        causes = set() if safe else {"safety monitor"}
        if verdict is None:
            self.safe_in_s = None
            return safe, reason, causes
        if verdict.safe:
            self.safe_in_s = None
            weather = "weather within its limits"
            monitor = self.devices.safety_monitor is not None
            return safe, f"{reason}; {weather}" if monitor else weather, causes
        self.safe_in_s = verdict.safe_in_s if safe else None
        weather = "; ".join(verdict.reasons)
        return False, weather if safe else f"{reason}; {weather}", causes | set(verdict.beyond)

    async def check(self) -> bool:
        """Read the monitor and the weather once and act on the result; return whether safe."""
        safe, reason, causes = await self._read()
        now = self.clock.monotonic()
        first = not self._checked.is_set()
        if not safe:
            self._safe_since = None
            if self.safe_in_s is not None:
                self.safe_in_s += self.config.resume_delay_s
            if self.is_safe or first:
                self._unsafe_causes = causes
                await self._go_unsafe(reason)
            else:
                if causes - self._unsafe_causes:
                    # A new cause on top (the rain after the clouds): told, not acted on again.
                    log.warning("still unsafe, and now: %s", reason)
                    self._at_home(self.events.publish, "safety", safe=False, reason=reason)
                self._unsafe_causes |= causes
                self.reason = reason
                # A refused or lost park (a passing fault) is sent again at every reading: one
                # failure must not leave the mount out all spell. The roof is looked at every
                # reading: it closes once the mount is parked, and again if it was reopened.
                if self._park_failures or await self._left_unparked():
                    await self._secure_mount()
                await self._close_enclosure()
        else:
            if self._safe_since is None:
                self._safe_since = now
            waited = now - self._safe_since
            if not self.is_safe and (first or waited >= self.config.resume_delay_s):
                self.safe_in_s = None
                self._go_safe(reason)
            elif not self.is_safe:
                self.safe_in_s = self.config.resume_delay_s - waited
        self._at_home(self._checked.set)
        return safe

    async def run(self) -> None:
        """Poll until cancelled."""
        if not self.config.enabled:
            self._go_safe("safety supervision disabled in config")
            self._at_home(self._checked.set)
            return
        while True:
            await self.check()
            await asyncio.sleep(self.config.poll_s)

    def _at_home(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``call`` on the daemon's loop: at once when on it, else thread-safely."""
        home = self.home
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if home is None or home is here:
            call(*args, **kwargs)
        elif not home.is_closed():
            home.call_soon_threadsafe(lambda: call(*args, **kwargs))

    def _go_safe(self, reason: str) -> None:
        self.is_safe = True
        self.reason = reason
        self._at_home(self._gate.set)
        log.info("safe: %s", reason)
        self._at_home(self.events.publish, "safety", safe=True, reason=reason)

    async def _go_unsafe(self, reason: str) -> None:
        self.last_unsafe_detected = time.monotonic()
        self.is_safe = False
        self.reason = reason
        self._at_home(self._gate.clear)
        log.warning("UNSAFE: %s", reason)
        self._at_home(self.events.publish, "safety", safe=False, reason=reason)
        self._park_failures = 0
        self._close_failures = 0
        await asyncio.gather(self._abort_exposure(), self._secure())

    async def _secure(self) -> None:
        """Park the mount, then close the roof (each sent again while not done)."""
        await self._secure_mount()
        await self._close_enclosure()

    async def _abort_exposure(self) -> None:
        activity = self.activity
        if activity.state not in ("exposing", "downloading") or not activity.sky:
            return
        activity.safety_abort = True
        if activity.state == "downloading":
            return  # the light already ended; keep the frame
        try:
            await self.ops.abort_exposure(self.devices.camera)
            log.warning("aborted the running %s exposure", activity.image_type)
        except DeviceError as exc:
            log.error("could not abort the exposure: %s", exc)

    async def _secure_mount(self) -> None:
        mount = self.devices.mount
        if mount is None or not self.config.park_when_unsafe:
            return
        try:
            await self.ops.stop_tracking(mount)
        except DeviceError as exc:
            if not self._park_failures:
                log.error("could not stop tracking: %s", exc)  # parking stops it too
        try:
            self.last_park_sent = time.monotonic()
            # Not waiting for the park to end: the next reading must not wait for it.
            await self.ops.park(mount, wait=False)
        except DeviceError as exc:
            if not self._park_failures:  # said once a spell, not at every reading
                log.error("could not park the mount (trying again while unsafe): %s", exc)
            self._park_failures += 1
            return
        self._at_home(self.events.publish, "mount", action="park", reason=self.reason)
        tries = f" (after {self._park_failures + 1} tries)" if self._park_failures else ""
        log.warning("mount parking%s", tries)
        self._park_failures = 0

    async def _left_unparked(self) -> bool:
        """Whether the mount stands still away from park while unsafe.

        A slew the sequencer began in the instant it turned unsafe can end the park (its
        recovery aborts a slew it did not start): the park is sent again.
        """
        mount = self.devices.mount
        if mount is None or not self.config.park_when_unsafe:
            return False
        try:
            status = await self.ops.command(mount.status(), mount.name, "mount status")
        except DeviceError:
            return False  # the park's own failure handling covers a mount that does not answer
        now = time.monotonic()
        if status.at_park or status.slewing or now - self._reparked < _REPARK_EVERY_S:
            return False
        self._reparked = now
        log.warning("the mount is not parked while unsafe: parking again")
        return True

    async def _close_enclosure(self) -> None:
        dome = self.devices.dome
        if dome is None or not self.config.close_when_unsafe:
            return
        try:
            status = await self.ops.command(dome.status(), dome.name, "dome status")
            if status.shutter in _CLOSING:
                if status.shutter == ShutterState.CLOSED:
                    await self._park_dome(dome, status)
                return
            mount = self.devices.mount
            if self.config.close_after_park and mount is not None:
                parked = await self.ops.command(mount.status(), mount.name, "mount status")
                if not parked.at_park:
                    return  # the next reading looks again; the park is on its way
            self.last_close_sent = time.monotonic()
            await self.ops.close_shutter(dome, wait=False)
        except DeviceError as exc:
            if not self._close_failures:
                log.error("could not close the roof (trying again while unsafe): %s", exc)
            self._close_failures += 1
            return
        self._at_home(self.events.publish, "dome", action="close", reason=self.reason)
        tries = f" (after {self._close_failures + 1} tries)" if self._close_failures else ""
        log.warning("closing the roof%s", tries)
        self._close_failures = 0

    async def _park_dome(self, dome: Dome, status: DomeStatus) -> None:
        """Park a rotating dome once its shutter is closed (again if it was moved off park).

        Nothing follows the telescope while unsafe (`obsctl.acquisition.dome_slaving`), so
        the park is not fought; a dome without a park position stays where it is.
        """
        if status.azimuth_deg is None or status.at_park or status.slewing:
            return
        try:
            if self._dome_parks is None:
                info = await self.ops.command(dome.info(), dome.name, "dome info")
                self._dome_parks = info.can_park
            if not self._dome_parks:
                return
            await self.ops.command(dome.park(), dome.name, "park the dome")
        except DeviceError as exc:
            log.error("could not park the dome: %s", exc)
            return
        log.warning("parking the dome")


#: Opens the supervisor's devices on its own loop, given the daemon's loop (which owns the
#: daemon's devices); see `obsctl.drivers.registry.open_second_connections`.
DevicesOnLoop = Callable[[asyncio.AbstractEventLoop], AbstractAsyncContextManager[DeviceSet]]


class SupervisorThread:
    """Runs a `SafetySupervisor` on a thread and an event loop of its own.

    Parameters
    ----------
    supervisor : SafetySupervisor
        The supervisor; its gate, events and state keep serving the daemon's loop.
    devices : callable
        Opens the devices the supervisor uses from its own loop (its own connections where
        the device allows a second one), given the daemon's loop.
    stop_timeout_s : float
        How long `stop` waits for the thread (real seconds).
    """

    def __init__(
        self, supervisor: SafetySupervisor, devices: DevicesOnLoop, *, stop_timeout_s: float = 10.0
    ) -> None:
        self.supervisor = supervisor
        self._devices = devices
        self._stop_timeout_s = stop_timeout_s
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        """Start the thread; call from the daemon's running loop."""
        self.supervisor.home = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._main, name="safety-supervisor", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception:  # the daemon sees "not checked yet" (unsafe) and the log says why
            log.exception("the safety supervisor's thread failed")
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._ready.set()
        home = self.supervisor.home
        assert home is not None
        async with self._devices(home) as devices:
            self.supervisor.devices = devices
            polling = asyncio.create_task(self.supervisor.run(), name="safety-supervisor")
            stopping = asyncio.create_task(self._stopping.wait())
            await asyncio.wait({polling, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (polling, stopping):
                task.cancel()
            await asyncio.gather(polling, stopping, return_exceptions=True)
            failure = None if polling.cancelled() else polling.exception()
            if failure is not None:
                raise failure

    async def stop(self) -> None:
        """Stop polling and wait for the thread to end (at most ``stop_timeout_s``)."""
        thread = self._thread
        if thread is None:
            return
        await asyncio.to_thread(self._ready.wait, self._stop_timeout_s)
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # its loop has ended already
                loop.call_soon_threadsafe(stopping.set)
        await asyncio.to_thread(thread.join, self._stop_timeout_s)
        if thread.is_alive():
            log.error(
                "the safety supervisor's thread did not stop within %g s", self._stop_timeout_s
            )
        self._thread = None
