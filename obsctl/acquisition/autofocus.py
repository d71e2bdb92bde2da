"""A focus run: frames around the focuser's position, a V-curve, the focuser at its minimum.

The run (as N.I.N.A.'s and Ekos's, measured as the pipeline measures): frames at ``points``
positions ``step_steps`` apart centred on where the focuser is, each approached outward so
that backlash is the same for all (`obsctl.operations.Operations.move_focuser`); the stars'
median half-flux radius of each (`obsctl.acquisition.focus_stars`); when the smallest HFR
sits at an end of the positions, up to ``max_extra_points`` more beyond it, so that the V
has two arms; a hyperbola through them (`obsctl.acquisition.focus_curve`, with a parabola for
comparison); the focuser to the hyperbola's minimum; and a check frame there. A fit that is
not a V, or a check frame worse than the start, is refused and the focuser goes back where
it started: a run never leaves focus worse than it found it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np

from obsctl.acquisition.focus_curve import FocusCurveError, FocusFit, Model, fit_focus_curve
from obsctl.acquisition.focus_stars import measure_focus_stars
from obsctl.classify.model import SourceClassifier
from obsctl.clock import Clock
from obsctl.config import AutofocusConfig
from obsctl.devices import Camera, Focuser
from obsctl.errors import DeviceError, DeviceNotImplementedError
from obsctl.operations import Operations

__all__ = ["Autofocus", "FocusPoint", "FocusRun", "run_positions"]

log = logging.getLogger(__name__)

Outcome = Literal["focused", "refused", "failed"]

# Two frames at one focus differ by a few percent in median HFR (the seeing changes, other
# stars pass the cuts): a check this much worse than the start is still as good.
_CHECK_NOISE = 0.1


@dataclass(frozen=True)
class FocusPoint:
    """One frame of a focus run.

    Attributes
    ----------
    position : int
        Focuser position (steps).
    hfr_px : float
        Median half-flux radius of its stars (pixel); NaN with fewer than ``min_stars``.
    n_stars : int
        Stars measured.
    """

    position: int
    hfr_px: float
    n_stars: int


@dataclass(frozen=True)
class FocusRun:
    """What a focus run did.

    Attributes
    ----------
    trigger : str
        Why it ran.
    started : datetime
        Observatory time at its start.
    filter_name : str or None
        The filter in the beam.
    temperature_c : float or None
        The focuser's temperature at the start (Celsius).
    start_position : int
        Where the focuser was (steps).
    points : tuple of FocusPoint
        The frames, in the order taken.
    fit : FocusFit or None
        The hyperbola; None when refused before or at the fit.
    parabola : FocusFit or None
        The parabola through the same points, for comparison; None when it is no V.
    final_position : int
        Where the focuser was left (steps).
    check_hfr_px : float or None
        HFR of the check frame at the new focus (pixel); None without one.
    outcome : {"focused", "refused", "failed"}
        Focused at the fit's minimum; refused (no V, or the check worse than the start: back
        at the start); failed (a device failed: back at the start where it could).
    reason : str
        Why it was refused or failed, or what the check said; empty when all went well.
    """

    trigger: str
    started: datetime
    filter_name: str | None
    temperature_c: float | None
    start_position: int
    points: tuple[FocusPoint, ...]
    fit: FocusFit | None
    parabola: FocusFit | None
    final_position: int
    check_hfr_px: float | None
    outcome: Outcome
    reason: str

    @property
    def frames(self) -> int:
        """Frames the run exposed, the check frame included."""
        return len(self.points) + (self.check_hfr_px is not None)

    def row(self, night: str) -> dict[str, Any]:
        """Return the run as a row of the ``focus_runs`` table."""

        def finite(v: float | None) -> float | None:
            return v if v is not None and math.isfinite(v) else None

        return {
            "night": night,
            "started_utc": self.started.isoformat(timespec="seconds"),
            "trigger": self.trigger,
            "filter": self.filter_name,
            "temperature_c": self.temperature_c,
            "start_position": self.start_position,
            "points": json.dumps([[p.position, finite(p.hfr_px), p.n_stars] for p in self.points]),
            "best_position": self.fit.best_position if self.fit else None,
            "best_hfr_px": self.fit.best_hfr_px if self.fit else None,
            "half_width_steps": self.fit.half_width_steps if self.fit else None,
            "fit_rms_px": self.fit.rms_px if self.fit else None,
            "parabola_position": self.parabola.best_position if self.parabola else None,
            "final_position": self.final_position,
            "check_hfr_px": finite(self.check_hfr_px),
            "outcome": self.outcome,
            "reason": self.reason or None,
        }


def run_positions(centre: int, step: int, points: int, max_step: int) -> list[int]:
    """Return a run's positions: `points` of them `step` apart around `centre`, in the travel.

    Parameters
    ----------
    centre : int
        The focuser's position (steps).
    step : int
        Steps between positions, > 0.
    points : int
        How many; odd puts `centre` in the middle.
    max_step : int
        The focuser's highest position; the positions are shifted to stay within 0 to it.

    Returns
    -------
    list of int
        Increasing positions (fewer than `points` only when the travel is shorter).
    """
    low = centre - (points // 2) * step
    high = low + (points - 1) * step
    if high > max_step:
        low -= high - max_step
    low = max(low, 0)
    return sorted({min(low + i * step, max_step) for i in range(points)})


class Autofocus:
    """Runs focus runs with a camera and an absolute focuser.

    Parameters
    ----------
    camera : Camera
        The imaging camera, configured (binning, gain) as for the light frames.
    focuser : Focuser
        An absolute focuser.
    ops : Operations
        The device procedures (exposures, focuser moves with their deadlines).
    clock : Clock
        Observatory time.
    settings : AutofocusConfig
        Exposure, positions, backlash overshoot and the check.
    classifier : SourceClassifier or None
        Leaves cosmic rays and hot pixels out of the HFR; None keeps every detection.
    check : callable, optional
        Called while each frame exposes; raises to give the run up (an abort for safety),
        after which the focuser is taken back to the start and the exception goes on.
    """

    def __init__(
        self,
        camera: Camera,
        focuser: Focuser,
        ops: Operations,
        clock: Clock,
        settings: AutofocusConfig,
        classifier: SourceClassifier | None,
        *,
        check: Callable[[], None] | None = None,
    ) -> None:
        self.camera = camera
        self.focuser = focuser
        self.ops = ops
        self.clock = clock
        self.settings = settings
        self.classifier = classifier
        self.check = check

    async def move(self, position: int) -> None:
        """Move the focuser to a position, ending outward (backlash taken up)."""
        await self.ops.move_focuser(self.focuser, position, overshoot=self.settings.overshoot_steps)

    async def measure(self, position: int) -> FocusPoint:
        """Move to a position, expose a frame and measure its stars' HFR."""
        await self.move(position)
        await self.ops.expose(self.camera, self.settings.exposure_s, light=True, check=self.check)
        image = await self.camera.download()
        info = await self.camera.info()
        stars = await asyncio.to_thread(
            measure_focus_stars, image.data, saturation_adu=info.max_adu, classifier=self.classifier
        )
        hfr = stars.hfr_px if stars.n_stars >= self.settings.min_stars else math.nan
        log.info("focus %d: HFR %.2f px from %d stars", position, hfr, stars.n_stars)
        return FocusPoint(position, hfr, stars.n_stars)

    async def run(self, trigger: str, filter_name: str | None = None) -> FocusRun:
        """Run a focus run from where the focuser is.

        Parameters
        ----------
        trigger : str
            Why it runs (recorded).
        filter_name : str or None
            The filter in the beam (recorded).

        Returns
        -------
        FocusRun
            Focused, refused or failed (a device error: the run says which).

        Raises
        ------
        DeviceNotImplementedError
            For a relative focuser (no positions to fit).
        Exception
            What `check` raised, after the focuser was taken back to the start.
        """
        started = self.clock.now()
        status = await self.focuser.status()
        if status.position is None:
            raise DeviceNotImplementedError(
                "autofocus needs an absolute focuser", device=self.focuser.name
            )
        start = status.position
        points: list[FocusPoint] = []

        def done(
            outcome: Outcome,
            reason: str,
            final: int,
            fit: FocusFit | None = None,
            parabola: FocusFit | None = None,
            check_hfr: float | None = None,
        ) -> FocusRun:
            return FocusRun(
                trigger, started, filter_name, status.temperature_c, start, tuple(points),
                fit, parabola, final, check_hfr, outcome, reason,
            )  # fmt: skip

        try:
            fit = await self._curve(start, points)
        except FocusCurveError as exc:
            await self.move(start)
            log.warning("focus run refused: %s; back at %d", exc, start)
            return done("refused", str(exc), start)
        except DeviceError as exc:
            return done("failed", str(exc), await self._back_to(start))
        except BaseException:
            await self._back_to(start)
            raise
        parabola = _parabola_or_none(points)
        target = round(fit.best_position)
        try:
            await self.move(target)
            if not self.settings.check:
                return done("focused", "", target, fit, parabola)
            check = await self.measure(target)
        except DeviceError as exc:
            return done("failed", str(exc), await self._back_to(start), fit, parabola)
        except BaseException:
            await self._back_to(start)
            raise
        start_hfr = _hfr_at(points, start)
        if not math.isfinite(check.hfr_px) or check.hfr_px > start_hfr * (1.0 + _CHECK_NOISE):
            reason = (
                f"the check frame's HFR {check.hfr_px:.2f} px at {target} is worse than "
                f"{start_hfr:.2f} px at the start"
            )
            await self.move(start)
            return done("refused", reason, start, fit, parabola, check.hfr_px)
        reason = ""
        if check.hfr_px > fit.best_hfr_px * (1.0 + self.settings.check_tolerance):
            reason = (
                f"the check frame's HFR {check.hfr_px:.2f} px exceeds the fit's "
                f"{fit.best_hfr_px:.2f} px by more than {self.settings.check_tolerance:.0%}"
            )
        log.info(
            "focused at %d (HFR %.2f px, fit %.2f px, V half-width %.0f steps)",
            target, check.hfr_px, fit.best_hfr_px, fit.half_width_steps,
        )  # fmt: skip
        return done("focused", reason, target, fit, parabola, check.hfr_px)

    async def _curve(self, start: int, points: list[FocusPoint]) -> FocusFit:
        """Take the run's frames (extended past an end where the V turns) and fit the V."""
        s = self.settings
        max_step = (await self.focuser.info()).max_step
        for position in run_positions(start, s.step_steps, s.points, max_step):
            points.append(await self.measure(position))
        for _ in range(s.max_extra_points):
            beyond = _extension(points, s.step_steps, max_step)
            if beyond is None:
                break
            points.append(await self.measure(beyond))
        return _fit(points, "hyperbola")

    async def _back_to(self, start: int) -> int:
        """Take the focuser back to the start after a failure; return where it is left."""
        try:
            await self.move(start)
            return start
        except DeviceError as exc:
            log.error("could not take the focuser back to %d: %s", start, exc)
        try:
            position = (await self.focuser.status()).position
        except DeviceError:
            position = None
        return start if position is None else position


def _extension(points: list[FocusPoint], step: int, max_step: int) -> int | None:
    """Return the next position beyond an end of the run, or None when the V has two arms.

    The V needs two measured positions on each side of its smallest HFR; when the smallest
    sits at (or next to) an end, the run goes on past that end. An end frame without
    stars is as far as that side can go.
    """
    measured = sorted((p for p in points), key=lambda p: p.position)
    good = [p for p in measured if math.isfinite(p.hfr_px)]
    if not good:
        return None
    best = min(range(len(good)), key=lambda i: good[i].hfr_px)
    if best < 2 and math.isfinite(measured[0].hfr_px) and measured[0].position - step >= 0:
        return measured[0].position - step
    high = measured[-1]
    if best > len(good) - 3 and math.isfinite(high.hfr_px) and high.position + step <= max_step:
        return high.position + step
    return None


def _fit(points: list[FocusPoint], model: Model) -> FocusFit:
    """Fit the run's points, each weighed by its stars."""
    return fit_focus_curve(
        [p.position for p in points],
        [p.hfr_px for p in points],
        model=model,
        n_stars=[p.n_stars for p in points],
    )


def _parabola_or_none(points: list[FocusPoint]) -> FocusFit | None:
    try:
        return _fit(points, "parabola")
    except FocusCurveError:
        return None


def _hfr_at(points: list[FocusPoint], position: int) -> float:
    """Return the HFR at a position, interpolated between the run's positions (pixel)."""
    good = sorted((p.position, p.hfr_px) for p in points if math.isfinite(p.hfr_px))
    if not good:
        return math.inf
    x, y = np.array(good, dtype=np.float64).T
    return float(np.interp(position, x, y))
