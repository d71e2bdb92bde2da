"""Operational notifications, and the webhook and command sinks they share with alerts.

The daemon's `Notifier` listens to its event bus and tells the operator what changed:

- the weather: ``unsafe`` (at once) and ``safe`` again;
- a device: ``down`` (at once) and ``up`` again (``device`` events, role and reason);
- a night: its start (dusk) and its end with a summary (frames, failures, time lost);
- a start or end hook that failed or timed out, a plan edit that was refused.

Each notice goes to every sink of ``[notifications] sinks``: a webhook (the notice POSTed as
JSON) or a command (no shell; the notice as JSON on its standard input). The light-curve
alerts (`obsctl.timeseries.sinks`) go through the same two sinks.

**De-duplication** (`NoticeBook`): a condition is told again only when it changed. Going bad
is told at once; coming back is told only once it held for ``settle_s`` (on the daemon's
clock), so a device or a sky flapping within that time is one notice, not a stream of them.
One-off notices (a night's start, its end, a failed hook) are told once each.

Device health itself (connected, last error) is kept by `obsctl.acquisition.health`, whose
``device`` events the notifier tells.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from obsctl.clock import Clock, real_seconds
from obsctl.config import AlertSinkConfig, CommandSinkConfig, NotificationsConfig, WebhookSinkConfig
from obsctl.events import Event, EventBus

__all__ = ["Notice", "NoticeBook", "Notifier", "notice_for", "send"]

log = logging.getLogger(__name__)

#: Real seconds a shutdown waits for the notices still being sent.
_FLUSH_TIMEOUT_S = 10.0


# -- the sinks ----------------------------------------------------------------------------


async def _webhook(sink: WebhookSinkConfig, payload: bytes) -> None:
    timeout = aiohttp.ClientTimeout(total=sink.timeout_s)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(sink.url, data=payload, headers={"Content-Type": "application/json"}) as reply,
    ):
        if reply.status >= 300:
            raise RuntimeError(f"HTTP {reply.status}")


async def _command(sink: CommandSinkConfig, payload: bytes) -> None:
    proc = await asyncio.create_subprocess_exec(
        *sink.command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(payload), sink.timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"timed out after {sink.timeout_s} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"exit status {proc.returncode}: {err.decode(errors='replace')[:200]}")


async def send(
    payload: Mapping[str, Any], sinks: Sequence[AlertSinkConfig], what: str
) -> list[str]:
    """Send a JSON payload to every sink; return one ``"<sink>: ok"`` or ``"<sink>: <error>"`` each.

    A failing sink is logged (naming ``what`` was sent) and never raises: a notice or an
    alert must not stop the pipeline or the night.
    """
    body = json.dumps(payload, default=str).encode()
    results = []
    for sink in sinks:
        name = sink.url if isinstance(sink, WebhookSinkConfig) else sink.command[0]
        try:
            if isinstance(sink, WebhookSinkConfig):
                await _webhook(sink, body)
            else:
                await _command(sink, body)
            results.append(f"{sink.kind} {name}: ok")
        except (OSError, aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
            log.warning("%s: %s sink %s failed: %s", what, sink.kind, name, exc)
            results.append(f"{sink.kind} {name}: {type(exc).__name__}: {exc}")
    return results


# -- what to tell -------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """One notification.

    Attributes
    ----------
    condition : str
        What it is about (``safety``, ``device mount``, ``night 2026-11-25 start``); the
        de-duplication key.
    state : str
        The condition's new state (``unsafe``, ``safe``, ``down``, ``up``, ``start``,
        ``end``, ``failed``, ``refused``).
    message : str
        One line for a person.
    time : datetime
        Observatory time of the change.
    details : dict
        More fields for the payload (the night's summary, a device's reason).
    """

    condition: str
    state: str
    message: str
    time: datetime
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON payload sent to the sinks."""
        return {
            "kind": "notice",
            **self.details,
            "condition": self.condition,
            "state": self.state,
            "message": self.message,
            "observatory_time": self.time.isoformat(),
        }


class NoticeBook:
    """Which notices to send: each condition once per change, a return once it has settled.

    Parameters
    ----------
    settle_s : float
        Seconds (observatory time) a condition must stay back to normal before that is told.
    """

    def __init__(self, settle_s: float) -> None:
        self.settle = timedelta(seconds=settle_s)
        self._told: dict[str, str] = {}
        self._waiting: dict[str, Notice] = {}

    def bad(self, notice: Notice) -> Notice | None:
        """Take a condition gone bad: return the notice to send now, None if already told."""
        self._waiting.pop(notice.condition, None)  # back and bad again: no "back" notice
        if self._told.get(notice.condition) == notice.state:
            return None
        self._told[notice.condition] = notice.state
        return notice

    def good(self, notice: Notice) -> None:
        """Take a condition back to normal: told once it has held for ``settle_s``."""
        told = self._told.get(notice.condition)
        if told is None or told == notice.state:
            self._waiting.pop(notice.condition, None)  # nothing bad was told: nothing to undo
            return
        self._waiting.setdefault(notice.condition, notice)

    def once(self, notice: Notice) -> Notice | None:
        """Take a one-off event: return the notice the first time its condition is seen."""
        if notice.condition in self._told:
            return None
        self._told[notice.condition] = notice.state
        return notice

    def due(self, now: datetime) -> list[Notice]:
        """Return the returns to normal that have held for ``settle_s`` by ``now``."""
        out = [n for n in self._waiting.values() if now - n.time >= self.settle]
        for notice in out:
            del self._waiting[notice.condition]
            self._told[notice.condition] = notice.state
        return out

    def next_due(self) -> datetime | None:
        """Return when the next waiting return to normal is due, None if none waits."""
        times = [n.time + self.settle for n in self._waiting.values()]
        return min(times) if times else None


def _summary_text(event: Event) -> str:
    frames = event.get("frames") or {}
    taken = ", ".join(f"{n} {k}" for k, n in sorted(frames.items())) or "no frames"
    lost_min = float(event.get("time_lost_s") or 0.0) / 60.0
    text = (
        f"night {event.get('night')} of plan {event.get('plan')!r} ended: {taken}; "
        f"{event.get('failures', 0)} failure(s); {lost_min:.0f} min lost"
    )
    incomplete = event.get("incomplete") or []
    if incomplete:
        text += f"; incomplete: {'; '.join(str(i) for i in incomplete)}"
    return text


def notice_for(event: Event, now: datetime) -> tuple[str, Notice] | None:
    """Return how an event of the bus is told (``bad``, ``good`` or ``once``) and its notice.

    None for the events that are not operational news (frames, activity, sequences).
    """
    kind = event.get("kind")
    if kind == "safety":
        if event.get("safe"):
            return "good", Notice("safety", "safe", f"safe again: {event.get('reason')}", now)
        return "bad", Notice("safety", "unsafe", f"unsafe: {event.get('reason')}", now)
    if kind == "transparency":
        # Clouds seen in the frames pause light frames (the roof stays open); told once
        # per spell, as the safety is.
        if event.get("cloudy"):
            return "bad", Notice("clouds", "cloudy", f"lights paused: {event.get('reason')}", now)
        return "good", Notice("clouds", "clear", f"lights resume: {event.get('reason')}", now)
    if kind == "device" and event.get("role"):
        role = str(event["role"])
        details = {"role": role, "reason": event.get("reason")}
        if event.get("state") == "up":
            return "good", Notice(f"device {role}", "up", f"{role} is back", now, details)
        if event.get("state") == "down":
            text = f"{role} is down: {event.get('reason')}"
            return "bad", Notice(f"device {role}", "down", text, now, details)
        return None
    if kind == "night" and event.get("event") == "dusk":
        night, plan = event.get("night"), event.get("plan")
        text = f"night {night} of plan {plan!r} starts"
        return "once", Notice(f"night {night} start", "start", text, now, {"night": night})
    if kind == "night_summary":
        keys = ("night", "plan", "frames", "failures", "time_lost_s", "unsafe_s", "incomplete")
        details = {k: event.get(k) for k in keys}
        night = event.get("night")
        return "once", Notice(f"night {night} end", "end", _summary_text(event), now, details)
    if kind == "hook" and not event.get("ok"):
        when, night = event.get("when"), event.get("night")
        command = " ".join(str(c) for c in event.get("command") or ())
        text = f"{when} hook {command!r} of night {night} failed: {event.get('reason')}"
        condition = f"hook {night} {when} {event.get('index')}"
        return "once", Notice(condition, "failed", text, now, {"night": night})
    if kind in ("mount", "dome") and event.get("action") in ("park", "close"):
        # The safety supervisor's actions, each told once with why.
        what = "parking the mount" if kind == "mount" else "closing the roof"
        condition = f"{kind} {event['action']} {now.isoformat(timespec='seconds')}"
        text = f"{what}: {event.get('reason')}"
        return "once", Notice(condition, str(event["action"]), text, now)
    if kind == "plan" and event.get("state") == "refused":
        text = f"plan edit refused (the running plan is kept): {event.get('reason')}"
        condition = f"plan refused {event.get('stamp')}"
        return "once", Notice(condition, "refused", text, now)
    return None


# -- the daemon's service -----------------------------------------------------------------


class Notifier:
    """Send operational notices from the daemon's events.

    Parameters
    ----------
    config : NotificationsConfig
        The sinks and the settle time; without sinks notices are only logged.
    events : EventBus
        The daemon's events.
    clock : Clock
        Observatory time (simulated time runs the settle time faster).
    """

    def __init__(self, config: NotificationsConfig, events: EventBus, clock: Clock) -> None:
        self.config = config
        self.events = events
        self.clock = clock
        self.book = NoticeBook(config.settle_s)
        #: Notices sent (or, without sinks, logged), newest last.
        self.sent: deque[Notice] = deque(maxlen=100)
        self._outbox: asyncio.Queue[Notice] = asyncio.Queue()
        self._sending = False
        self._running = False

    def take(self, event: Event) -> None:
        """Take one event of the bus: queue what is to be told."""
        found = notice_for(event, self.clock.now())
        if found is None:
            return
        how, notice = found
        if how == "good":
            self.book.good(notice)
            return
        chosen = self.book.bad(notice) if how == "bad" else self.book.once(notice)
        if chosen is not None:
            self._outbox.put_nowait(chosen)

    def _wait_s(self) -> float | None:
        due = self.book.next_due()
        if due is None:
            return None
        return max(0.0, real_seconds(self.clock, (due - self.clock.now()).total_seconds()))

    async def run(self) -> None:
        """Listen to the events and send the notices, until cancelled."""
        sender = asyncio.create_task(self._send_loop(), name="notices")
        self._running = True
        try:
            async with self.events.subscribe() as queue:
                for event in list(self.events.recent):  # published before we listened
                    self.take(event)
                while True:
                    with contextlib.suppress(TimeoutError):
                        self.take(await asyncio.wait_for(queue.get(), self._wait_s()))
                    for notice in self.book.due(self.clock.now()):
                        self._outbox.put_nowait(notice)
        finally:
            self._running = False
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send_loop(self) -> None:
        while True:
            notice = await self._outbox.get()
            self._sending = True
            try:
                await self._send(notice)
            finally:
                self._sending = False

    async def _send(self, notice: Notice) -> None:
        log.info("notice: %s", notice.message)
        self.sent.append(notice)
        if self.config.sinks:
            await send(notice.to_dict(), self.config.sinks, f"notice {notice.condition}")

    async def flush(self, timeout_s: float = _FLUSH_TIMEOUT_S) -> None:
        """Wait (up to ``timeout_s`` real seconds) until the queued notices are sent.

        Called at shutdown, so that a night's summary is not lost with the daemon.
        """
        if not self._running:
            return  # nothing would send them
        await asyncio.sleep(0.05)  # let the listener take what was just published
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not self._outbox.empty() or self._sending:
                    await asyncio.sleep(0.01)
