"""Simulated flat panel on a motorised dust cover (a flip-flat), on the simulated clock.

The cover's position is computed lazily from the injected clock, as the dome's shutter is: a
motion is a start, a target and a time window, and every read interpolates at the current
simulated time. The cover has an opening fraction from 0 (closed) to 1 (open); stopped
anywhere between by `CoverCalibratorModel.halt_cover` it reports `CoverState.UNKNOWN`, as
ASCOM ``HaltCover`` asks ("Open, Closed or Unknown as appropriate"), and a later open or
close goes on from where it stopped. The panel is `CalibratorState.NOT_READY` for
``warmup_s`` after it is switched on from off, then `CalibratorState.READY`; a new
brightness while it is on takes effect at once.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from obsctl.clock import Clock
from obsctl.config import SimulatedCoverCalibratorConfig
from obsctl.devices import CalibratorState, CoverState
from obsctl.simulators.models import (
    INVALID_VALUE,
    NOT_IMPLEMENTED,
    AscomError,
    ConnectableModel,
    Motion,
)
from obsctl.simulators.render import SkyScene

__all__ = ["CoverCalibratorModel"]

log = logging.getLogger(__name__)


class CoverCalibratorModel(ConnectableModel):
    """A flat panel and dust cover with ASCOM ``ICoverCalibratorV2`` semantics.

    The cover takes ``cover_time_s`` to open or close fully and starts open when
    ``start_open`` (else closed); without a cover (``has_cover = false``) the cover members
    answer NotImplemented (0x400) and `cover_state` is `CoverState.NOT_PRESENT`. The panel
    starts off.

    Parameters
    ----------
    config : SimulatedCoverCalibratorConfig
        Brightest step, cover time, warm-up time, whether there is a cover.
    clock : Clock
        Source of simulated time.
    """

    def __init__(self, config: SimulatedCoverCalibratorConfig, clock: Clock) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        now = clock.monotonic()
        start = 1.0 if config.start_open or not config.has_cover else 0.0
        self._cover = Motion(start, start, now, now)
        self._lit = False
        self._brightness = 0
        self._ready_at = now

    # --- cover -------------------------------------------------------------------------

    def _require_cover(self, member: str) -> None:
        if not self.config.has_cover:
            raise AscomError(NOT_IMPLEMENTED, f"{member}: this flat panel has no cover")

    @property
    def cover_fraction(self) -> float:
        """How far the cover is open, 0 (closed) to 1 (open); 1 when there is no cover."""
        return self._cover.at(self.clock.monotonic())

    @property
    def cover_moving(self) -> bool:
        """Whether the cover moves (ASCOM ``CoverMoving``)."""
        return self.clock.monotonic() < self._cover.t_end

    @property
    def cover_state(self) -> CoverState:
        """The cover's ASCOM state; UNKNOWN when halted part-way."""
        if not self.config.has_cover:
            return CoverState.NOT_PRESENT
        if self.cover_moving:
            return CoverState.MOVING
        fraction = self.cover_fraction
        if fraction >= 1.0:
            return CoverState.OPEN
        if fraction <= 0.0:
            return CoverState.CLOSED
        return CoverState.UNKNOWN

    def _move_cover(self, target: float, member: str) -> None:
        self.require_connected()
        self._require_cover(member)
        now = self.clock.monotonic()
        fraction = self._cover.at(now)
        if self._cover.target == target and (now < self._cover.t_end or fraction == target):
            return  # already there or on the way: ASCOM allows the repeated command
        # From where it is: a cover halted half-way takes half the time to finish.
        duration = abs(target - fraction) * self.config.cover_time_s
        self._cover = Motion(fraction, target, now, now + duration)
        log.info("simulated cover %s", "opening" if target else "closing")

    def open_cover(self) -> None:
        """Start opening the cover.

        Raises
        ------
        AscomError
            0x400 without a cover, 0x407 when not connected.
        """
        self._move_cover(1.0, "OpenCover")

    def close_cover(self) -> None:
        """Start closing the cover.

        Raises
        ------
        AscomError
            0x400 without a cover, 0x407 when not connected.
        """
        self._move_cover(0.0, "CloseCover")

    def halt_cover(self) -> None:
        """Stop the cover where it is (UNKNOWN when part-way).

        Raises
        ------
        AscomError
            0x400 without a cover, 0x407 when not connected.
        """
        self.require_connected()
        self._require_cover("HaltCover")
        now = self.clock.monotonic()
        if self.cover_moving:
            log.info("simulated cover halted")
        fraction = self._cover.at(now)
        self._cover = Motion(fraction, fraction, now, now)

    # --- calibrator --------------------------------------------------------------------

    @property
    def calibrator_state(self) -> CalibratorState:
        """The panel's ASCOM state: OFF, NOT_READY while warming up, then READY."""
        if not self._lit:
            return CalibratorState.OFF
        if self.clock.monotonic() < self._ready_at:
            return CalibratorState.NOT_READY
        return CalibratorState.READY

    @property
    def calibrator_changing(self) -> bool:
        """Whether the panel is not yet settled (ASCOM ``CalibratorChanging``)."""
        return self.calibrator_state == CalibratorState.NOT_READY

    @property
    def brightness(self) -> int:
        """The set brightness in steps, 0 when off (ASCOM ``Brightness``)."""
        return self._brightness if self._lit else 0

    @property
    def light_fraction(self) -> float:
        """The share of full light the panel gives now: brightness / max when READY, else 0."""
        if self.calibrator_state != CalibratorState.READY:
            return 0.0
        return self._brightness / self.config.max_brightness

    def calibrator_on(self, brightness: int) -> None:
        """Switch the panel on at a brightness; from off it warms up for ``warmup_s``.

        Parameters
        ----------
        brightness : int
            Steps, 0 to ``max_brightness``.

        Raises
        ------
        AscomError
            0x401 when the brightness is out of range, 0x407 when not connected.
        """
        self.require_connected()
        top = self.config.max_brightness
        if not 0 <= brightness <= top:
            raise AscomError(INVALID_VALUE, f"brightness {brightness} not in 0..{top}")
        if not self._lit:
            self._ready_at = self.clock.monotonic() + self.config.warmup_s
            self._lit = True
        self._brightness = brightness
        log.info("simulated flat panel on at %d/%d", brightness, top)

    def calibrator_off(self) -> None:
        """Switch the panel off (at once).

        Raises
        ------
        AscomError
            0x407 when not connected.
        """
        self.require_connected()
        if self._lit:
            log.info("simulated flat panel off")
        self._lit = False
        self._brightness = 0

    # --- what the camera sees ----------------------------------------------------------

    def view(self, scene: SkyScene, full_panel_e_s: float) -> SkyScene:
        """Return what the telescope sees of ``scene`` through the cover and the panel.

        The panel sits on the inside of the cover (a flip-flat): closed, the cover hides the
        sky and the frame is the panel's light, ``full_panel_e_s * light_fraction`` (0 while
        the panel is off or warming up: a dark). Part-way open it passes that share of the
        sky's and the stars' light and none of the panel's; open, the scene is unchanged. A
        panel without a cover is in front of the telescope while it is on (warming up it
        gives no light yet) and out of the way while off. A scene already lit by the
        camera's own lamp (``CameraModel.flat_panel_on``) is kept unless the cover is closed.

        Parameters
        ----------
        scene : SkyScene
            The sky the telescope points at, as the camera built it.
        full_panel_e_s : float
            The panel's light at full brightness (electrons per second per unbinned pixel).

        Returns
        -------
        SkyScene
            The scene to render.
        """
        panel_e_s = full_panel_e_s * self.light_fraction
        if not self.config.has_cover:
            if self.calibrator_state == CalibratorState.OFF:
                return scene
            return replace(scene, flat_panel_e_s=panel_e_s)
        fraction = self.cover_fraction
        if fraction <= 0.0:
            return replace(scene, flat_panel_e_s=panel_e_s)
        if fraction >= 1.0 or scene.flat_panel_e_s is not None:
            return scene
        return replace(scene, transmission=scene.transmission * fraction)
