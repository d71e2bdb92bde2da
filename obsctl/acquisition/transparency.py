"""Transparency as a cloud sensor: the pipeline's zero points pause light frames.

A weather station's cloud sensor sees the whole sky, coarsely; the frames see the field. Each
processed light frame gives a transparency (`obsctl.processing.zeropoint.transparency`)
against the clear-sky zero point of its filter (``[pipeline] nominal_zero_point``, or else the
best zero point seen in that filter). When the median of the last few frames falls below
``pause_below``, light frames pause with the roof open and the mount tracking: thin cloud is
no danger, only a waste of frames. Nothing measures the sky while nothing is exposed, so
while paused one light frame is let through every ``probe_every_s`` as a probe; a probe at or
above ``resume_above`` resumes. A frame with (almost) no stars and so no zero point counts as
opaque.

`TransparencyWatch` is the pure logic, fed with times; the sequencer awaits
`TransparencyWatch.hold_s` before each light frame, the daemon feeds it from the pipeline.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from obsctl.config import TransparencyConfig
from obsctl.processing.zeropoint import transparency

__all__ = ["TransparencyReading", "TransparencyWatch"]


@dataclass(frozen=True, slots=True)
class TransparencyReading:
    """One processed light frame's transparency.

    Attributes
    ----------
    exposure_id : int
        The frame.
    observed : datetime
        When the frame was taken (UTC start of the exposure).
    filter : str
        Its filter.
    value : float
        Its transparency (0: opaque, 1: the clear-sky reference).
    """

    exposure_id: int
    observed: datetime
    filter: str
    value: float


class TransparencyWatch:
    """Pause light frames while the frames' zero points say cloud.

    Parameters
    ----------
    config : TransparencyConfig
        Thresholds, the median's length, probe interval and timeout.
    nominal : mapping of str to float
        Clear-sky zero point per filter (mag, e-/s); a filter without one is judged against
        the best zero point seen in it.

    Attributes
    ----------
    cloudy : bool
        Whether light frames are paused.
    reason : str
        Why, in words (the latest judgement).
    latest : TransparencyReading or None
        The latest reading.
    """

    def __init__(self, config: TransparencyConfig, nominal: dict[str, float]) -> None:
        self.config = config
        self.nominal = dict(nominal)
        self.best: dict[str, float] = {}
        self.readings: deque[TransparencyReading] = deque(maxlen=config.frames)
        self.cloudy = False
        self.reason = "no frame measured yet"
        self.latest: TransparencyReading | None = None
        self._probe_sent: datetime | None = None
        self._next_probe: datetime | None = None

    def reference(self, filter_name: str) -> float | None:
        """Return the clear-sky zero point of a filter (mag), None before any is known."""
        return self.nominal.get(filter_name, self.best.get(filter_name))

    def add(
        self,
        exposure_id: int,
        observed: datetime,
        filter_name: str,
        zero_point: float | None,
        star_count: int | None,
    ) -> TransparencyReading | None:
        """Judge one processed light frame; return its reading, None when it says nothing.

        Parameters
        ----------
        exposure_id : int
            The frame.
        observed : datetime
            UTC start of its exposure.
        filter_name : str
            Its filter.
        zero_point : float or None
            Its zero point (mag, e-/s); None when the pipeline found none.
        star_count : int or None
            Stars measured on it.

        Returns
        -------
        TransparencyReading or None
            None for a frame without a zero point that still has stars (no reference
            catalogue there, a failed solution: no word on the clouds), or before any
            reference of its filter is known.
        """
        if self._probe_sent is not None and observed >= self._probe_sent:
            # This frame answers the probe, with a reading or not (a frame without a zero
            # point under thick cloud): without one, the pause goes on to the next probe.
            self._probe_sent = None
        if zero_point is not None and filter_name not in self.nominal:
            self.best[filter_name] = max(self.best.get(filter_name, zero_point), zero_point)
        reference = self.reference(filter_name)
        if reference is None:
            return None
        if zero_point is not None:
            value = transparency(zero_point, reference)
        elif star_count is not None and star_count < self.config.opaque_below_stars:
            value = 0.0
        else:
            return None
        reading = TransparencyReading(exposure_id, observed, filter_name, value)
        self.latest = reading
        self.readings.append(reading)
        if self.cloudy:
            self._judge_probe(reading)
        else:
            self._judge_trend(reading)
        return reading

    def _judge_trend(self, reading: TransparencyReading) -> None:
        oldest = reading.observed - timedelta(seconds=self.config.max_age_s)
        recent = [r.value for r in self.readings if r.observed >= oldest]
        if len(recent) < self.config.frames:
            return
        median = statistics.median(recent)
        if median < self.config.pause_below:
            self.cloudy = True
            self.reason = (
                f"transparency {median:.2f} (median of the last {len(recent)} frames) is "
                f"below {self.config.pause_below:g}: light frames pause, the roof stays open"
            )
            self._probe_sent = None
            self._next_probe = reading.observed + timedelta(seconds=self.config.probe_every_s)
        else:
            self.reason = f"transparency {median:.2f}"

    def _judge_probe(self, reading: TransparencyReading) -> None:
        if reading.value >= self.config.resume_above:
            self.cloudy = False
            self.reason = f"transparency {reading.value:.2f}: clear again"
            # The cloudy frames before it must not pause again at the next frame.
            self.readings.clear()
            self.readings.append(reading)
            self._next_probe = None
        else:
            self.reason = (
                f"transparency {reading.value:.2f} is below {self.config.resume_above:g}: "
                "light frames stay paused"
            )

    def hold_s(self, now: datetime) -> float:
        """Return how long the next light frame must wait (s); 0 lets it go.

        While paused, a frame let through here is the probe: the next one waits for its
        reading (up to ``probe_timeout_s``) and for the next probe time.
        """
        if not self.cloudy:
            return 0.0
        if self._probe_sent is not None:
            waited = (now - self._probe_sent).total_seconds()
            if waited < self.config.probe_timeout_s:
                return self.config.probe_timeout_s - waited
            self._probe_sent = None  # no answer came: the pipeline lost it; probe again
        if self._next_probe is not None and now < self._next_probe:
            return (self._next_probe - now).total_seconds()
        self._probe_sent = now
        self._next_probe = now + timedelta(seconds=self.config.probe_every_s)
        return 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the state for the control API: paused or not, why, the latest reading."""
        latest = self.latest
        return {
            "cloudy": self.cloudy,
            "reason": self.reason,
            "latest": None
            if latest is None
            else {
                "exposure_id": latest.exposure_id,
                "filter": latest.filter,
                "transparency": latest.value,
                "observed": latest.observed.isoformat(),
            },
        }
