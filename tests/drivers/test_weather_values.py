"""A weather driver's odd answers: a sensor that says no number trips its limits, never crashes.

Real ObservingConditions drivers answer ``"n/a"``, ``true`` or ``"NaN"`` for a sensor that
has nothing to say; each becomes NaN, which `obsctl.acquisition.weather` counts as beyond
every limit on that value, while the other sensors' values are kept.
"""

from __future__ import annotations

import math

import pytest

from obsctl.acquisition.weather import WeatherLimit, WeatherPolicy
from obsctl.drivers.alpaca.observingconditions import _number


@pytest.mark.parametrize("odd", ["n/a", True, "NaN", [1.0], {"v": 1}, "Infinity"])
def test_an_odd_answer_is_nan_or_infinite_and_trips_its_limit(odd: object) -> None:
    value = _number(odd)
    assert value is not None and not math.isfinite(value)
    for limit in (WeatherLimit("humidity_pct", above=90), WeatherLimit("humidity_pct", below=10)):
        policy = WeatherPolicy([limit], feed_deadline_s=60)
        assert policy.assess({"humidity_pct": 50.0}, 0.0).safe
        verdict = policy.assess({"humidity_pct": value}, 1.0)
        assert not verdict.safe and "not reported" in verdict.reasons[0]


def test_numbers_and_missing_sensors_pass_through() -> None:
    assert _number(3) == 3.0 and _number("12.5") == 12.5 and _number(None) is None
