"""Device health: which devices are up, which are down and why, and their reconnection.

A device that will not connect at start, or that fails mid-night and does not answer any
more, is marked down here; it costs only what needs it. The sequencer takes the frames that
do not need it (darks and biases without a mount) and keeps the others waiting, with the
reason on the API and the page, while `Reconnector` tries to connect it again in the
background, with a back-off from ``[sequencer] reconnect_s`` doubling up to
``reconnect_max_s``. When it is back, the waiting frames go on. The daemon never exits
because a device is down.

Every change is published on the event bus as ``device`` with ``role``, ``state``
(``"down"`` or ``"up"``) and ``reason`` (one line). A device that connects at start is not
announced: only a device that was down is announced when it is up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from obsctl.clock import Clock
from obsctl.config import SequencerConfig
from obsctl.devices import ROLES, Device, DeviceSet, Mount
from obsctl.errors import DeviceError
from obsctl.events import EventBus
from obsctl.operations import Operations

__all__ = ["ROLES", "DeviceHealth", "HealthBoard", "Reconnector"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DeviceHealth:
    """One device's health.

    Attributes
    ----------
    role : str
        ``camera``, ``filter_wheel``, ``mount`` or ``safety_monitor``.
    name : str
        The device's configured name.
    connected : bool
        Whether it is up (connected and answering, as far as known).
    last_error : str or None
        The last failure that made or kept it down (kept once it is up again).
    since : datetime or None
        UTC time of the last change between up and down; None before the first attempt.
    """

    role: str
    name: str
    connected: bool = False
    last_error: str | None = None
    since: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly copy."""
        return {
            "role": self.role,
            "name": self.name,
            "connected": self.connected,
            "last_error": self.last_error,
            "since": None if self.since is None else self.since.isoformat(),
        }


class HealthBoard:
    """The health of the configured devices, shared by the daemon, sequencer and API.

    Parameters
    ----------
    devices : DeviceSet
        The configured devices.
    events : EventBus
        Where ``device`` events are published.
    clock : Clock
        Gives the time of each change.
    """

    def __init__(self, devices: DeviceSet, events: EventBus, clock: Clock) -> None:
        self.events = events
        self.clock = clock
        #: The configured devices by role.
        self.devices: dict[str, Device] = {
            role: device for role in ROLES if (device := getattr(devices, role)) is not None
        }
        self._health = {role: DeviceHealth(role, d.name) for role, d in self.devices.items()}
        self._known: set[str] = set()  # roles that had a first connection attempt
        self.version = 0
        self._changed = asyncio.Event()

    def role_of(self, device: Device) -> str | None:
        """Return the role of a configured device (None for another object)."""
        for role, known in self.devices.items():
            if known is device:
                return role
        return None

    def is_up(self, role: str) -> bool:
        """Whether the device of ``role`` is up; True for a role with no device configured."""
        health = self._health.get(role)
        return health is None or health.connected

    def down(self, roles: tuple[str, ...] | list[str] | None = None) -> dict[str, str]:
        """Return the devices down (of ``roles``, or all) with why."""
        wanted = self._health.keys() if roles is None else roles
        return {
            role: self._health[role].last_error or "not connected"
            for role in wanted
            if role in self._health and not self._health[role].connected
        }

    def mark_up(self, role: str) -> None:
        """Record that the device of ``role`` is connected and answers."""
        health = self._health[role]
        first = role not in self._known
        self._known.add(role)
        if health.connected:
            return
        health.connected = True
        health.since = self.clock.now()
        if first:
            log.info("%s (%s) connected", role, health.name)
        else:
            log.warning("%s (%s) is back", role, health.name)
            self.events.publish("device", role=role, state="up", reason="connected again")
        self._bump()

    def mark_down(self, role: str, reason: str) -> None:
        """Record that the device of ``role`` is down, and why (one line)."""
        health = self._health[role]
        reason = " ".join(reason.split()) or "not connected"
        self._known.add(role)
        was_up = health.connected or health.since is None
        health.last_error = reason
        if not was_up:
            return  # still down: the reason is kept, nothing is announced again
        health.connected = False
        health.since = self.clock.now()
        log.error("%s (%s) is down: %s", role, health.name, reason)
        self.events.publish("device", role=role, state="down", reason=reason)
        self._bump()

    def _bump(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_change(self, version: int) -> None:
        """Return once the board has changed since ``version`` (a value of `version`)."""
        while self.version == version:
            await self._changed.wait()

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Return every device's health by role, JSON-friendly."""
        return {role: health.as_dict() for role, health in self._health.items()}


class Reconnector:
    """Connects the devices at start, then connects again those that go down.

    Parameters
    ----------
    board : HealthBoard
        The devices and their health.
    ops : Operations
        Brings a mount left slewing to a known state once it is connected.
    settings : SequencerConfig
        ``reconnect_s`` and ``reconnect_max_s`` (observatory seconds).
    clock : Clock
        Observatory time, in which the waits count.
    """

    def __init__(
        self, board: HealthBoard, ops: Operations, settings: SequencerConfig, clock: Clock
    ) -> None:
        self.board = board
        self.ops = ops
        self.settings = settings
        self.clock = clock

    async def _try(self, role: str) -> str | None:
        """Connect the device of ``role`` once; return why it failed, None when connected.

        A mount found slewing (left so by a failure or another client) is stopped, with
        tracking off, before it counts as connected.
        """
        device = self.board.devices[role]
        try:
            await device.connect()
            if role == "mount":
                assert isinstance(device, Mount)
                await self.ops.recover_mount(device, tracking=False)
        except DeviceError as exc:
            return str(exc)
        except TimeoutError:  # a driver without a deadline of its own on connect
            return f"{device.name}: connect did not return"
        return None

    async def connect(self, role: str, *, attempts: int = 1, pause_s: float = 1.0) -> bool:
        """Try to connect the device of ``role``; mark it up or down; return whether up.

        Parameters
        ----------
        role : str
            The device's role.
        attempts : int
            Attempts before it is marked down (a device that needs a second try at start
            is not announced down).
        pause_s : float
            Real seconds between attempts.
        """
        error: str | None = None
        for attempt in range(attempts):
            error = await self._try(role)
            if error is None:
                self.board.mark_up(role)
                return True
            if attempt + 1 < attempts:
                log.warning("connecting %s failed (%s); retrying", role, error)
                await asyncio.sleep(pause_s)
        self.board.mark_down(role, error or "not connected")
        return False

    async def connect_all(self, *, attempts: int = 1, pause_s: float = 1.0) -> None:
        """Connect every device, all at once, as `connect`; never raises for a device."""
        await asyncio.gather(
            *(self.connect(r, attempts=attempts, pause_s=pause_s) for r in self.board.devices)
        )

    def _next_wait_s(self, wait_s: float | None) -> float:
        """Return the back-off after a failed attempt: ``reconnect_s``, doubling to the maximum."""
        if wait_s is None:
            return self.settings.reconnect_s
        return min(wait_s * 2.0, self.settings.reconnect_max_s)

    async def run(self) -> None:
        """Connect again, with back-off, every device that is down; runs until cancelled."""
        due: dict[str, float] = {}  # role -> observatory monotonic time of the next attempt
        wait: dict[str, float] = {}
        while True:
            version = self.board.version
            now = self.clock.monotonic()
            down = self.board.down()
            for role in list(due):
                if role not in down:  # up again through another path (the fault policy)
                    del due[role]
                    wait.pop(role, None)
            for role in down:
                if role not in due:
                    wait[role] = self._next_wait_s(None)
                    due[role] = now + wait[role]
            for role in [r for r, at in due.items() if at <= now]:
                if await self.connect(role):
                    del due[role]
                    wait.pop(role, None)
                else:
                    wait[role] = self._next_wait_s(wait[role])
                    due[role] = self.clock.monotonic() + wait[role]
                    log.info("%s still down; next attempt in %.0f s", role, wait[role])
            await self._sleep(min(due.values(), default=None), version)

    async def _sleep(self, until: float | None, version: int) -> None:
        """Wait until observatory time ``until`` (None: no limit) or a change of the board."""
        changed = asyncio.ensure_future(self.board.wait_change(version))
        waiters: set[asyncio.Future[None]] = {changed}
        if until is not None:
            waiters.add(asyncio.ensure_future(self.clock.sleep(until - self.clock.monotonic())))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
