"""Weather limits with hysteresis and waits: whether it is safe to open, and when it will be.

Pure logic, no I/O: the safety supervisor feeds it each reading of the weather station
(`WeatherPolicy.assess`) and acts on the verdict. A limit trips the moment its value goes
beyond it (the roof closes at once, whatever the limit), and it clears only once the value
has come back past the limit by its hysteresis and stayed there for the limit's wait. Several
limits on one value make grades: humidity above 70 % waits 30 min, above 90 % waits 5 h (the
longest wait of the limits tripped in a spell applies, since each keeps its own state).

Safe by default: a value the station stops reporting counts as beyond every limit on it, and
a feed that gives nothing new for ``feed_deadline_s`` (reads fail, or the station says its
last update is older than that) is unsafe until it answers again. A value the station has
never reported (a sensor it does not have: ASCOM lets a station implement any subset) leaves
its limits unwatched, and the verdict names them so that the operator sees it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from obsctl.config import WeatherConfig

__all__ = [
    "QUANTITIES",
    "WeatherLimit",
    "WeatherPolicy",
    "WeatherVerdict",
    "derived_values",
    "weather_policy",
]

#: Each quantity a limit can watch: (what the operator reads, unit). The names are those of
#: `obsctl.devices.WeatherReadings`; the last two are derived (`derived_values`): sky minus
#: ambient temperature is what an infrared cloud sensor measures (a clear sky is 20-30 °C
#: colder than the air), ambient minus dew point is the margin before dew forms.
QUANTITIES: dict[str, tuple[str, str]] = {
    "cloud_cover_pct": ("cloud cover", "%"),
    "sky_temperature_c": ("sky temperature", "°C"),
    "temperature_c": ("temperature", "°C"),
    "dew_point_c": ("dew point", "°C"),
    "humidity_pct": ("humidity", "%"),
    "wind_speed_m_s": ("wind", "m/s"),
    "wind_gust_m_s": ("gusts", "m/s"),
    "rain_rate_mm_h": ("rain", "mm/h"),
    "sky_quality_mag_arcsec2": ("sky quality", "mag/arcsec²"),
    "sky_minus_ambient_c": ("sky minus air temperature", "°C"),
    "dew_margin_c": ("dew margin", "°C"),
}


def derived_values(readings: Mapping[str, float | None]) -> dict[str, float | None]:
    """Return ``readings`` with the derived quantities added (None where a term is missing).

    Parameters
    ----------
    readings : mapping of str to float or None
        Station values by quantity name (units of `QUANTITIES`); None for a sensor not
        reported.

    Returns
    -------
    dict of str to float or None
        Every quantity of `QUANTITIES`.
    """
    out: dict[str, float | None] = {q: readings.get(q) for q in QUANTITIES}
    sky, air, dew = out["sky_temperature_c"], out["temperature_c"], out["dew_point_c"]
    out["sky_minus_ambient_c"] = None if sky is None or air is None else sky - air
    out["dew_margin_c"] = None if air is None or dew is None else air - dew
    return out


@dataclass(frozen=True, slots=True)
class WeatherLimit:
    """One limit on one quantity.

    Attributes
    ----------
    quantity : str
        One of `QUANTITIES`.
    above, below : float or None
        Unsafe when the value is above ``above`` (or below ``below``): exactly one is given.
    hysteresis : float
        How far back past the limit the value must come to count as clear (units of the
        quantity), so that a value hovering at the limit does not open and close the roof.
    wait_s : float
        How long (s) the value must stay clear before the limit lets go.
    """

    quantity: str
    above: float | None = None
    below: float | None = None
    hysteresis: float = 0.0
    wait_s: float = 0.0

    def __post_init__(self) -> None:
        if self.quantity not in QUANTITIES:
            raise ValueError(f"unknown weather quantity {self.quantity!r}")
        if (self.above is None) == (self.below is None):
            raise ValueError(f"{self.quantity}: give exactly one of above and below")
        if self.hysteresis < 0 or self.wait_s < 0:
            raise ValueError(f"{self.quantity}: hysteresis and wait must not be negative")

    def beyond(self, value: float | None) -> bool:
        """Return whether ``value`` trips the limit (a missing or non-finite value does)."""
        if value is None or not math.isfinite(value):
            return True
        return value > self.above if self.above is not None else value < self.below  # type: ignore[operator]

    def clear(self, value: float | None) -> bool:
        """Return whether ``value`` is back past the limit by the hysteresis."""
        if value is None or not math.isfinite(value):
            return False
        if self.above is not None:
            return value <= self.above - self.hysteresis
        assert self.below is not None
        return value >= self.below + self.hysteresis

    def describe(self, value: float | None) -> str:
        """Say why the limit holds and what clears it, for the log and the page.

        For example ``humidity 92 % (limit above 90 %); safe 30 min after it falls to 85 %``.
        """
        label, unit = QUANTITIES[self.quantity]
        side = "above" if self.above is not None else "below"
        limit = _quantity(self.above if self.above is not None else self.below, unit)
        if self.above is not None:
            clear = f"falls to {_quantity(self.above - self.hysteresis, unit)}"
        else:
            assert self.below is not None
            clear = f"rises to {_quantity(self.below + self.hysteresis, unit)}"
        now = (
            "not reported" if value is None or not math.isfinite(value) else _quantity(value, unit)
        )
        wait = _duration(self.wait_s)
        return f"{label} {now} (limit {side} {limit}); safe {wait} after it {clear}"


@dataclass(frozen=True, slots=True)
class WeatherVerdict:
    """The policy's answer for one reading.

    Attributes
    ----------
    safe : bool
        Whether every limit lets go and the feed is alive.
    reasons : tuple of str
        Why it is unsafe (empty when safe): one line per limit that holds.
    safe_in_s : float or None
        Seconds until safe if the values stay as they are: 0 when safe, None when some value
        is still beyond its clear level (no estimate until it comes back).
    values : dict of str to float or None
        The values assessed (derived ones included), for the log and the page.
    unwatched : tuple of str
        Quantities with limits that the station has never reported.
    beyond : tuple of str
        What holds it unsafe now, not just waiting: the quantities beyond their limits
        (or inside the hysteresis), and ``"feed"`` when the feed is lost. A new one while
        unsafe is news (the rain comes on top of the clouds).
    """

    safe: bool
    reasons: tuple[str, ...] = ()
    safe_in_s: float | None = 0.0
    values: dict[str, float | None] = field(default_factory=dict)
    unwatched: tuple[str, ...] = ()
    beyond: tuple[str, ...] = ()


@dataclass(slots=True)
class _State:
    tripped: bool = False
    clear_since_s: float | None = None


class WeatherPolicy:
    """Limits with hysteresis and waits over a weather feed, and the feed's deadline.

    Parameters
    ----------
    limits : sequence of WeatherLimit
        The limits; none means the weather never makes it unsafe (the feed still must live).
    feed_deadline_s : float
        How long (s) the feed may give nothing new before it counts as lost (unsafe).
    """

    def __init__(self, limits: Sequence[WeatherLimit], *, feed_deadline_s: float) -> None:
        self.limits = tuple(limits)
        self.feed_deadline_s = feed_deadline_s
        self._states = [_State() for _ in self.limits]
        self._last_update_s: float | None = None
        self._values: dict[str, float | None] = {}
        self._reported: set[str] = set()

    def assess(
        self,
        readings: Mapping[str, float | None] | None,
        now_s: float,
        *,
        age_s: float | None = None,
    ) -> WeatherVerdict:
        """Take one reading of the feed and say whether it is safe.

        Parameters
        ----------
        readings : mapping of str to float or None, or None
            The station's values by quantity (units of `QUANTITIES`); None when the
            read failed or timed out (the limits keep the state of the last good reading).
        now_s : float
            Current time (s, monotonic on the simulated or real clock).
        age_s : float, optional
            How old the station says its values are (ASCOM ``TimeSinceLastUpdate``, s).

        Returns
        -------
        WeatherVerdict
        """
        if readings is not None:
            updated = now_s - (age_s if age_s is not None and age_s > 0 else 0.0)
            if self._last_update_s is None or updated > self._last_update_s:
                self._last_update_s = updated
            self._values = derived_values(readings)
            self._reported |= {q for q, v in self._values.items() if v is not None}
            for limit, state in zip(self.limits, self._states, strict=True):
                if limit.quantity in self._reported:
                    self._step(limit, state, self._values.get(limit.quantity), now_s)
        reasons: list[str] = []
        estimates: list[float | None] = []
        beyond: list[str] = []
        silent_s = None if self._last_update_s is None else now_s - self._last_update_s
        if silent_s is None or silent_s > self.feed_deadline_s:
            lost = "never answered" if silent_s is None else f"nothing new for {silent_s:.0f} s"
            reasons.append(f"weather feed lost ({lost}; deadline {self.feed_deadline_s:g} s)")
            estimates.append(None)
            beyond.append("feed")
        for limit, state in zip(self.limits, self._states, strict=True):
            if not state.tripped:
                continue
            if state.clear_since_s is None:
                reasons.append(limit.describe(self._values.get(limit.quantity)))
                estimates.append(None)
                beyond.append(limit.quantity)
            else:
                clear_s = now_s - state.clear_since_s
                label = QUANTITIES[limit.quantity][0]
                reasons.append(
                    f"{label} clear for {_duration(clear_s)} of {_duration(limit.wait_s)}"
                )
                estimates.append(max(limit.wait_s - clear_s, 0.0))
        unwatched = tuple(
            dict.fromkeys(
                limit.quantity for limit in self.limits if limit.quantity not in self._reported
            )
        )
        values = dict(self._values)
        if not reasons:
            return WeatherVerdict(True, values=values, unwatched=unwatched)
        safe_in = None if None in estimates else max(e for e in estimates if e is not None)
        causes = tuple(dict.fromkeys(beyond))
        return WeatherVerdict(False, tuple(reasons), safe_in, values, unwatched, causes)

    @staticmethod
    def _step(limit: WeatherLimit, state: _State, value: float | None, now_s: float) -> None:
        if limit.beyond(value):
            state.tripped, state.clear_since_s = True, None
        elif state.tripped:
            if not limit.clear(value):
                state.clear_since_s = None  # inside the hysteresis band: the wait restarts
            else:
                if state.clear_since_s is None:
                    state.clear_since_s = now_s
                if now_s - state.clear_since_s >= limit.wait_s:
                    state.tripped, state.clear_since_s = False, None


def weather_policy(config: WeatherConfig) -> WeatherPolicy:
    """Return the policy that ``[safety.weather]`` describes (waits in minutes there)."""
    limits = [
        WeatherLimit(
            limit.quantity,
            above=limit.above,
            below=limit.below,
            hysteresis=limit.hysteresis,
            wait_s=limit.wait_min * 60.0,
        )
        for limit in config.limits
    ]
    return WeatherPolicy(limits, feed_deadline_s=config.feed_deadline_s)


def _quantity(value: float | None, unit: str) -> str:
    """Format a value with its unit (``92 %``, ``-18.5 °C``)."""
    return f"{value:.3g} {unit}"


def _duration(seconds: float) -> str:
    """Format a duration for an operator: ``45 s``, ``12 min``, ``5.0 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
