"""What a running night takes from outside: plan edits, targets of opportunity, hooks.

`NightControl` is what the daemon and its control API see of the nights: the plan in force
(its file is read again when it changes: a valid edit takes effect at the night runner's
next decision point, an invalid one is refused with its reason, published as a ``plan``
event, and the plan in force is kept), the targets of opportunity posted to the API, the
runner's current step, and the start and end hooks (`run_hooks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from obsctl.config import HookConfig
from obsctl.errors import ConfigError, ScheduleError
from obsctl.night.plan import Plan, PlanTarget, check_filters, load_plan, parse_plan
from obsctl.night.progress import iso_utc

__all__ = ["HookResult", "NightControl", "PlanSource", "run_hooks"]

log = logging.getLogger(__name__)

Publish = Callable[..., Any]


def _quiet(kind: str, **data: Any) -> None:
    """Publish nowhere (before the daemon's event bus exists)."""


class PlanSource:
    """A plan file, read again when it changes.

    Parameters
    ----------
    path : pathlib.Path
        The plan TOML. It must be valid at start (a `ConfigError` says why not).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.plan = load_plan(self.path)
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def changed(self) -> tuple[Plan | None, str | None]:
        """Look at the file: return ``(new plan, None)``, ``(None, why refused)`` or nothing new.

        A file that has not changed since the last look (time, size and inode) is not read
        again, so this is cheap at every decision point.
        """
        stamp = self._stat()
        if stamp == self._stamp:
            return None, None
        self._stamp = stamp
        if stamp is None:
            return None, f"{self.path}: cannot be read (removed?)"
        try:
            return load_plan(self.path), None
        except (ConfigError, OSError) as exc:
            return None, str(exc)


@dataclass(frozen=True)
class HookResult:
    """How a start or end hook ended: ``ok``, or why not."""

    command: tuple[str, ...]
    ok: bool
    reason: str
    duration_s: float


async def _run_hook(hook: HookConfig) -> HookResult:
    started = time.monotonic()

    def result(ok: bool, reason: str) -> HookResult:
        return HookResult(hook.command, ok, reason, time.monotonic() - started)

    try:
        # A session of its own: a timeout kills the whole group (a shell's children too).
        proc = await asyncio.create_subprocess_exec(
            *hook.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return result(False, f"cannot start: {exc.strerror or exc}")
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), hook.timeout_s)
    except (TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if isinstance(exc, asyncio.CancelledError):
            raise
        return result(False, f"timed out after {hook.timeout_s:g} s (killed)")
    if proc.returncode != 0:
        lines = out.decode(errors="replace").strip().splitlines()
        tail = f": {lines[-1][:200]}" if lines else ""
        return result(False, f"exit status {proc.returncode}{tail}")
    return result(True, "ok")


async def run_hooks(
    hooks: Sequence[HookConfig], when: str, night: str, publish: Publish = _quiet
) -> list[HookResult]:
    """Run a night's start or end hooks in order, each under its deadline (real seconds).

    A hook that fails, cannot start or times out is logged and published as a ``hook``
    event (which the notifier tells); the next hook and the night go on.

    Parameters
    ----------
    hooks : sequence of HookConfig
        The commands (no shell) and their deadlines.
    when : str
        ``start`` or ``end``.
    night : str
        The night, ``YYYY-MM-DD``.
    publish : callable
        The event bus's ``publish``.
    """
    results = []
    for index, hook in enumerate(hooks):
        res = await _run_hook(hook)
        results.append(res)
        if res.ok:
            log.info("%s hook %s: ok (%.1f s)", when, list(hook.command), res.duration_s)
        else:
            log.error("%s hook %s failed: %s", when, list(hook.command), res.reason)
        publish(
            "hook",
            when=when,
            night=night,
            index=index,
            command=list(hook.command),
            ok=res.ok,
            reason=res.reason,
            duration_s=round(res.duration_s, 3),
        )
    return results


class NightControl:
    """The plan in force, its edits, targets of opportunity and the runner's step.

    Parameters
    ----------
    plan : Plan
        The plan at start.
    source : PlanSource or None
        Its file, read again when it changes; None for a plan that cannot change.
    start_hooks, end_hooks : sequence of HookConfig
        Run at the start (dusk) and the end (dawn) of each night.
    """

    def __init__(
        self,
        plan: Plan,
        source: PlanSource | None = None,
        *,
        start_hooks: Sequence[HookConfig] = (),
        end_hooks: Sequence[HookConfig] = (),
    ) -> None:
        self.plan = plan
        self.source = source
        self.start_hooks = tuple(start_hooks)
        self.end_hooks = tuple(end_hooks)
        self.publish: Publish = _quiet
        #: The last refused edit: reason and observatory time; None once an edit is taken.
        self.refused: dict[str, str] | None = None
        #: The night runner's current step (``doing``, ``until``, ``target``, ``night``).
        self.step: dict[str, Any] = {"doing": "starting"}
        #: Filter names of the wheel (set by the runner), to check edits and targets against.
        self.wheel: list[str] | None = None
        self._toos: list[tuple[str, PlanTarget]] = []
        #: Bumped at each new target of opportunity: a running visit looks at this.
        self.too_version = 0

    @classmethod
    def from_file(
        cls,
        path: Path,
        *,
        start_hooks: Sequence[HookConfig] = (),
        end_hooks: Sequence[HookConfig] = (),
    ) -> NightControl:
        """Read a plan file (a `ConfigError` when invalid) and follow its edits."""
        source = PlanSource(path)
        return cls(source.plan, source, start_hooks=start_hooks, end_hooks=end_hooks)

    # -- plan edits ------------------------------------------------------------------------

    def poll(self, now: datetime) -> Plan | None:
        """Return a valid edited plan not yet taken, None when there is none.

        An invalid edit is refused here (logged, published); one that the wheel cannot
        take (a filter it lacks) too. The caller takes the plan with `accept`.
        """
        if self.source is None:
            return None
        plan, reason = self.source.changed()
        if plan is not None and self.wheel is not None:
            try:
                check_filters(plan, self.wheel)
            except ScheduleError as exc:
                plan, reason = None, str(exc)
        if reason is not None:
            self.refuse(reason, now)
        return plan

    def accept(self, plan: Plan, now: datetime) -> None:
        """Put an edited plan in force."""
        old = self.plan
        self.plan = plan
        self.refused = None
        log.warning(
            "plan %s edited: %d target(s) (was %d), in force from now",
            plan.name,
            len(plan.targets),
            len(old.targets),
        )
        self.publish("plan", state="loaded", name=plan.name, targets=len(plan.targets))

    def refuse(self, reason: str, now: datetime) -> None:
        """Refuse an edit: log and publish why; the plan in force stays."""
        log.error("plan edit refused, %r stays in force: %s", self.plan.name, reason)
        stamp = iso_utc(now)
        self.refused = {"reason": reason, "time": stamp}
        self.publish("plan", state="refused", reason=reason, stamp=stamp)

    # -- targets of opportunity ------------------------------------------------------------

    def post_target(self, data: Mapping[str, Any], night: str) -> PlanTarget:
        """Validate a target of opportunity exactly as a plan's target and queue it for ``night``.

        Raises
        ------
        ConfigError
            When it is not a valid plan target (naming the field), or names a filter the
            wheel lacks.
        ScheduleError
            When its name is already a target of the plan or of another target of
            opportunity (progress is kept by name).
        """
        document = {
            "version": 1,
            "name": self.plan.name,
            "night": self.plan.night.model_dump(mode="json"),
            "targets": [dict(data)],
        }
        single = parse_plan(document, source="target of opportunity")
        target = single.targets[0]
        if self.wheel is not None:
            try:
                check_filters(single, self.wheel)
            except ScheduleError as exc:
                raise ConfigError(f"target of opportunity: {exc}") from None
        taken = {t.name for t in self.plan.targets} | {t.name for _, t in self._toos}
        if target.name in taken:
            raise ScheduleError(f"target name {target.name!r} is already in use; choose another")
        self._toos.append((night, target))
        self.too_version += 1
        log.warning(
            "target of opportunity %s (priority %d) for night %s",
            target.name,
            target.priority,
            night,
        )
        self.publish("too", name=target.name, priority=target.priority, night=night)
        return target

    def targets_of_opportunity(self, night: date) -> tuple[PlanTarget, ...]:
        """Return the targets of opportunity posted for ``night``."""
        key = night.isoformat()
        return tuple(t for n, t in self._toos if n == key)

    def drop_before(self, night: date) -> None:
        """Forget the targets of opportunity of nights before ``night`` (their night is over)."""
        key = night.isoformat()
        for n, target in self._toos:
            if n < key:
                log.info("target of opportunity %s of night %s is dropped", target.name, n)
        self._toos = [(n, t) for n, t in self._toos if n >= key]

    # -- status ----------------------------------------------------------------------------

    def set_step(
        self, night: str, doing: str, *, until: datetime | None = None, target: str | None = None
    ) -> None:
        """Say what the night runner does now, and until when (published as ``plan_step``)."""
        self.step = {
            "night": night,
            "doing": doing,
            "until": None if until is None else iso_utc(until),
            "target": target,
        }
        self.publish("plan_step", **self.step)

    def status(self) -> dict[str, Any]:
        """Return the plan, its step, a refused edit and the targets of opportunity (JSON)."""
        return {
            "plan": self.plan.name,
            "plan_file": None if self.source is None else str(self.source.path),
            "step": dict(self.step),
            "refused_edit": self.refused,
            "targets_of_opportunity": [
                {"night": n, "name": t.name, "priority": t.priority} for n, t in self._toos
            ],
        }
