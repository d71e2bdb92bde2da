"""Keeping focus through the night: when to run autofocus, and what to do between runs.

Before every light frame the sequencer calls `FocusKeeper.before_light`, which does, in order:

1. **Filter offsets**: a filter change moves the focuser by the difference of the two
   filters' offsets (``[autofocus] filter_offsets``, else the wheel's own ASCOM
   ``FocusOffsets``), without a run.
2. **Triggers** (`focus_due`): the night's first light frame, a temperature change since the
   last run, the pipeline's HFR grown since the frames after the last run, or time elapsed:
   a focus run (`obsctl.acquisition.autofocus`), logged in ``focus_runs`` and published as a
   ``focus`` event.
3. **Temperature model** otherwise: the last focused position moved by ``steps per degree x
   temperature change``; the slope is fitted from the night's focused runs (`temperature_slope`)
   once two are at least 1 degC apart, and is ``[autofocus] steps_per_c`` before that.

Positions are kept "less the filter's offset" (the base position), so runs in different
filters feed one temperature model.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from obsctl.acquisition.autofocus import Autofocus, FocusRun
from obsctl.classify.model import SourceClassifier
from obsctl.clock import Clock, night_of
from obsctl.config import Config, FocusTriggersConfig
from obsctl.devices import DeviceSet, Focuser
from obsctl.events import EventBus
from obsctl.operations import Operations
from obsctl.store.exposure_log import ExposureLog
from obsctl.store.headers import mjd

__all__ = ["FocusKeeper", "FocusMark", "focus_due", "temperature_slope"]

log = logging.getLogger(__name__)

# The night's runs fit their own temperature slope once they span this much (degC).
_MIN_SLOPE_SPAN_C = 1.0


@dataclass(frozen=True)
class FocusMark:
    """The last focus run (whatever its outcome), from which the triggers count.

    Attributes
    ----------
    time : datetime
        Observatory time of the run.
    temperature_c : float or None
        The focuser's temperature then (Celsius).
    """

    time: datetime
    temperature_c: float | None


def focus_due(
    triggers: FocusTriggersConfig,
    *,
    last: FocusMark | None,
    now: datetime,
    temperature_c: float | None,
    recent_hfr: Sequence[float],
) -> str | None:
    """Return why a focus run is due before the next light frame, or None.

    Parameters
    ----------
    triggers : FocusTriggersConfig
        Which triggers are on, and their thresholds.
    last : FocusMark or None
        Tonight's last run; None before the first.
    now : datetime
        Observatory time.
    temperature_c : float or None
        The focuser's temperature (Celsius); None without a probe.
    recent_hfr : sequence of float
        The pipeline's HFR (pixel) of the light frames since the last run in this filter,
        oldest first.

    Returns
    -------
    str or None
        The trigger, in words; None when none fires.
    """
    if last is None:
        return "start of night" if triggers.start_of_night else None
    change = triggers.temperature_change_c
    if change is not None and temperature_c is not None and last.temperature_c is not None:
        moved = temperature_c - last.temperature_c
        if abs(moved) >= change:
            return f"temperature {moved:+.1f} degC since the last run"
    n = triggers.hfr_frames
    if triggers.hfr_growth is not None and len(recent_hfr) >= 2 * n:
        # The frames right after the run are the reference: the pipeline's HFR is measured
        # otherwise than the focus frames', so it is compared only with itself.
        before = statistics.median(recent_hfr[:n])
        now_hfr = statistics.median(recent_hfr[-n:])
        if before > 0 and now_hfr > before * (1.0 + triggers.hfr_growth):
            return f"HFR {now_hfr:.2f} px, up {now_hfr / before - 1.0:.0%} since the last run"
    if triggers.interval_min is not None:
        minutes = (now - last.time).total_seconds() / 60.0
        if minutes >= triggers.interval_min:
            return f"{minutes:.0f} min since the last run"
    return None


def temperature_slope(runs: Sequence[tuple[float, float]], prior: float | None) -> float | None:
    """Return the focus's temperature slope (steps per degC) from the night's runs.

    Parameters
    ----------
    runs : sequence of (float, float)
        ``(temperature_c, base_position)`` of the night's focused runs.
    prior : float or None
        The configured slope, used until the runs span `_MIN_SLOPE_SPAN_C`.

    Returns
    -------
    float or None
        The least-squares slope of position on temperature, or `prior`.
    """
    if len(runs) < 2:
        return prior
    t, p = np.array(runs, dtype=np.float64).T
    if float(np.ptp(t)) < _MIN_SLOPE_SPAN_C:
        return prior
    return float(np.polyfit(t, p, 1)[0])


class FocusKeeper:
    """Keeps the focus through the night: filter offsets, focus runs, temperature model.

    Parameters
    ----------
    devices : DeviceSet
        The camera, the focuser (nothing is done without one) and the filter wheel.
    config : Config
        ``[autofocus]``, and the site (for the night's date).
    ops : Operations
        The device procedures.
    clock : Clock
        Observatory time.
    log_db : ExposureLog
        Where runs are logged, and the pipeline's HFR is read.
    events : EventBus
        Where runs are published (``focus``).
    on_run : callable, optional
        Called with the trigger as a run starts (the sequencer shows "focusing").
    """

    def __init__(
        self,
        devices: DeviceSet,
        config: Config,
        ops: Operations,
        clock: Clock,
        log_db: ExposureLog,
        events: EventBus,
        on_run: Callable[[str], None] | None = None,
    ) -> None:
        self.devices = devices
        self.on_run = on_run
        self.settings = config.autofocus
        self.longitude_deg = config.site.longitude_deg
        self.ops = ops
        self.clock = clock
        self.log_db = log_db
        self.events = events
        self._classifier: SourceClassifier | None = None
        self._offsets: dict[str, int] | None = None
        #: A run asked for before the next light frame (a meridian flip), and why.
        self._requested: str | None = None
        self._reset("")

    def _reset(self, night: str) -> None:
        self._night = night
        self._last: FocusMark | None = None
        #: ``(temperature_c, base_position)`` of tonight's focused runs: the model's data;
        #: the last one is where it counts from.
        self._focused: list[tuple[float, float]] = []
        #: The filter whose offset the focuser's position holds; None before the first.
        self._filter: str | None = None

    def request(self, reason: str) -> None:
        """Ask for a focus run before the next light frame, whatever the triggers say."""
        self._requested = reason

    @property
    def last(self) -> FocusMark | None:
        """Tonight's last focus run; None before the first."""
        return self._last

    async def before_light(
        self, filter_name: str | None, check: Callable[[], None] | None = None
    ) -> FocusRun | None:
        """Ready the focus for a light frame through `filter_name`.

        Parameters
        ----------
        filter_name : str or None
            The filter of the frame to come.
        check : callable, optional
            Called while focus frames expose; raises to stop a run (an abort for safety).

        Returns
        -------
        FocusRun or None
            The run made, if one was due.

        Raises
        ------
        DeviceError
            When the focuser (or the camera, in a run) fails outside a run's own handling;
            the frame goes on without.
        """
        focuser = self.devices.focuser
        if not self.settings.enabled or focuser is None:
            return None
        night = night_of(self.clock.now(), self.longitude_deg)
        if night != self._night:
            self._reset(night)
        status = await self.ops.command(focuser.status(), focuser.name, "focuser status")
        if status.position is None:
            return None  # a relative focuser: no positions to run or model
        position = await self._apply_filter(focuser, status.position, filter_name)
        last = self._last
        recent: list[float] = []
        if last is not None and self.settings.triggers.hfr_growth is not None:
            recent = await asyncio.to_thread(
                self.log_db.recent_hfr, night, filter_name, mjd(last.time)
            )
        reason = self._requested or focus_due(
            self.settings.triggers,
            last=last,
            now=self.clock.now(),
            temperature_c=status.temperature_c,
            recent_hfr=recent,
        )
        if reason is not None:
            self._requested = None
            return await self._run(focuser, reason, filter_name, check)
        await self._compensate(focuser, position, status.temperature_c, filter_name)
        return None

    async def _offset(self, filter_name: str | None) -> int:
        """Return a filter's focus offset (steps): the config's, else the wheel's, else 0."""
        if filter_name is None:
            return 0
        if self._offsets is None:
            self._offsets = dict(self.settings.filter_offsets)
            wheel = self.devices.filter_wheel
            if not self._offsets and wheel is not None:
                names = await wheel.names()
                offsets = await wheel.focus_offsets()
                self._offsets = dict(zip(names, offsets, strict=False))
        folded = {name.lower(): value for name, value in self._offsets.items()}
        return folded.get(filter_name.lower(), 0)

    async def _apply_filter(self, focuser: Focuser, position: int, filter_name: str | None) -> int:
        """Move by the offsets' difference when the filter changed; return the position."""
        previous, self._filter = self._filter, filter_name
        if previous is None or filter_name is None or previous == filter_name:
            return position
        delta = await self._offset(filter_name) - await self._offset(previous)
        if delta == 0:
            return position
        log.info("filter %s -> %s: focus offset %+d steps", previous, filter_name, delta)
        await self._move(focuser, position + delta)
        return position + delta

    async def _move(self, focuser: Focuser, position: int) -> None:
        await self.ops.move_focuser(focuser, position, overshoot=self.settings.overshoot_steps)

    async def _compensate(
        self, focuser: Focuser, position: int, temperature_c: float | None, filter_name: str | None
    ) -> None:
        """Follow the temperature model from the last focused run, in moves of min_move_steps."""
        if not self.settings.temperature_compensation or not self._focused:
            return
        slope = temperature_slope(self._focused, self.settings.steps_per_c)
        if slope is None or temperature_c is None:
            return
        focused_c, focused_base = self._focused[-1]
        base = focused_base + slope * (temperature_c - focused_c)
        target = round(base + await self._offset(filter_name))
        if abs(target - position) >= self.settings.min_move_steps:
            log.info(
                "temperature %.2f degC: focus %d -> %d (%.1f steps/degC)",
                temperature_c, position, target, slope,
            )  # fmt: skip
            await self._move(focuser, target)

    async def _run(
        self,
        focuser: Focuser,
        reason: str,
        filter_name: str | None,
        check: Callable[[], None] | None,
    ) -> FocusRun:
        """Run autofocus, log it and publish it; count the triggers from it."""
        if self._classifier is None:
            self._classifier = await asyncio.to_thread(SourceClassifier)
        log.info("focus run: %s", reason)
        if self.on_run is not None:
            self.on_run(reason)
        autofocus = Autofocus(
            self.devices.camera, focuser, self.ops, self.clock, self.settings, self._classifier,
            check=check,
        )  # fmt: skip
        run = await autofocus.run(reason, filter_name)
        # A refused or failed run counts for the triggers (no run again at once), not for
        # the model, which goes on from the last focused one.
        self._last = FocusMark(run.started, run.temperature_c)
        if run.outcome == "focused" and run.temperature_c is not None:
            base = run.final_position - await self._offset(filter_name)
            self._focused.append((run.temperature_c, float(base)))
        row = run.row(self._night)
        await asyncio.to_thread(self.log_db.add_focus_run, row)
        self.events.publish("focus", **row)
        return run
