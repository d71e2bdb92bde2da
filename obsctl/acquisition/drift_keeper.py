"""Drift correction through a visit, from its own light frames (`obsctl.acquisition.drift`).

After each stored light frame of a visit, `DriftKeeper.after_light` measures the frame
against the visit's first (Donuts) and returns the offset on the sky that brings the stars
back, which the sequencer makes with guide pulses (a relative move: a goto would re-zero the
mount's tracking, and its drift with it). A new target, a re-centring or a meridian flip
starts a new reference. Dithered visits are left alone: their
frames move on purpose. Each visit's residual drift (the measured shifts after correction)
is kept in the ``drift_visits`` table.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from numpy.typing import NDArray

from obsctl.acquisition.dither import pixels_to_sky
from obsctl.acquisition.drift import (
    DonutsReference,
    DriftController,
    DriftLimitError,
    DriftMeasureError,
)
from obsctl.acquisition.sequence import Target
from obsctl.config import DriftCorrectionConfig
from obsctl.events import EventBus
from obsctl.store.exposure_log import ExposureLog

__all__ = ["DriftKeeper", "DriftLost"]

log = logging.getLogger(__name__)


class DriftLost(Exception):
    """The correction asked for is beyond the limit: the field is lost, centre it again."""


@dataclass
class _Visit:
    target: Target
    sequence_id: int | None
    night: str
    reference: DonutsReference
    controller: DriftController


class DriftKeeper:
    """Keeps a visit's stars on the same pixels, frame after frame.

    Parameters
    ----------
    settings : DriftCorrectionConfig
        ``[drift_correction]``.
    log_db : ExposureLog
        Where each visit's residual drift is kept.
    events : EventBus
        Where corrections are published (``drift``).
    """

    def __init__(self, settings: DriftCorrectionConfig, log_db: ExposureLog, events: EventBus):
        self.settings = settings
        self.log_db = log_db
        self.events = events
        self._visit: _Visit | None = None
        #: Set when the mount cannot take guide pulses: nothing is measured any more.
        self.disabled = False

    def restart(self) -> None:
        """Forget the reference: the next light frame is the visit's new one.

        After a flip, a re-centring, anything that moved the field on purpose.
        """
        self._visit = None

    async def after_light(
        self,
        target: Target,
        image: NDArray[Any],
        *,
        sequence_id: int | None,
        night: str,
        scale_arcsec: float,
    ) -> tuple[float, float] | None:
        """Measure a stored light frame; return the sky offset (east, north) arcsec to apply.

        Parameters
        ----------
        target : Target
            The visit's target.
        image : numpy.ndarray
            The frame's pixels (ADU).
        sequence_id : int or None
            The visit's sequence (for the record).
        night : str
            The night (for the record).
        scale_arcsec : float
            The frame's pixel scale (arcsec per pixel).

        Returns
        -------
        tuple of float or None
            The offset; None when nothing is to be done (the visit's first frame, a frame
            that could not be measured, a drift within the deadband).

        Raises
        ------
        DriftLost
            When the correction is beyond ``max_correction_px``: the field moved by more
            than a drift; the caller centres the target again.
        """
        s = self.settings
        if self.disabled:
            return None
        visit = self._visit
        if visit is None or visit.target != target or visit.sequence_id != sequence_id:
            try:
                reference = await asyncio.to_thread(DonutsReference, image)
            except DriftMeasureError as exc:
                log.info("drift: no reference in this frame: %s", exc)
                return None
            controller = DriftController(
                gain_p=s.gain_p, gain_i=s.gain_i, deadband_px=s.deadband_px,
                max_correction_px=s.max_correction_px,
            )  # fmt: skip
            self._visit = _Visit(target, sequence_id, night, reference, controller)
            return None
        try:
            shift = await asyncio.to_thread(visit.reference.shift, image)
        except DriftMeasureError as exc:
            log.info("drift: frame not measured: %s", exc)
            return None
        try:
            correction = visit.controller.update(shift)
        except DriftLimitError as exc:
            self._visit = None
            await self._record(visit)
            raise DriftLost(str(exc)) from exc
        await self._record(visit)
        self.events.publish(
            "drift", target=target.name, dx_px=round(shift.dx_px, 3),
            dy_px=round(shift.dy_px, 3), correction_x_px=round(correction.dx_px, 3),
            correction_y_px=round(correction.dy_px, 3),
        )  # fmt: skip
        if correction.is_zero:
            return None
        # The correction moves the stars by (dx, dy) on the detector: the pointing moves the
        # other way.
        return pixels_to_sky(-correction.dx_px, -correction.dy_px, scale_arcsec)

    async def _record(self, visit: _Visit) -> None:
        summary = visit.controller.summary()
        row = {
            "night": visit.night,
            "sequence_id": visit.sequence_id,
            "target": visit.target.name,
            "frames": summary.frames,
            "corrections": summary.corrections,
            "refused": summary.refused,
            "rms_px": summary.rms_px,
            "max_px": summary.max_px,
            "corrected_x_px": summary.corrected_x_px,
            "corrected_y_px": summary.corrected_y_px,
        }
        await asyncio.to_thread(self.log_db.put_drift_visit, row)
