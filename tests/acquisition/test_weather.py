"""Weather limits: trip at once, clear with hysteresis and a wait, graded, feed deadline."""

from __future__ import annotations

import math
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obsctl.acquisition.weather import (
    QUANTITIES,
    WeatherLimit,
    WeatherPolicy,
    derived_values,
    weather_policy,
)
from obsctl.config import WeatherConfig, WeatherQuantity

HUMID = WeatherLimit("humidity_pct", above=70, hysteresis=5, wait_s=1800)
SOAKED = WeatherLimit("humidity_pct", above=90, hysteresis=5, wait_s=5 * 3600)
RAIN = WeatherLimit("rain_rate_mm_h", above=0, wait_s=600)


def policy(*limits: WeatherLimit, deadline_s: float = 300.0) -> WeatherPolicy:
    return WeatherPolicy(limits, feed_deadline_s=deadline_s)


def test_a_limit_trips_at_once_and_clears_after_its_wait_below_the_hysteresis() -> None:
    p = policy(HUMID)
    assert p.assess({"humidity_pct": 60}, 0).safe
    tripped = p.assess({"humidity_pct": 71}, 10)
    assert not tripped.safe and tripped.safe_in_s is None
    assert tripped.reasons == (
        "humidity 71 % (limit above 70 %); safe 30 min after it falls to 65 %",
    )
    # Back under the limit but inside the hysteresis band: still unsafe, no estimate.
    band = p.assess({"humidity_pct": 68}, 20)
    assert not band.safe and band.safe_in_s is None
    # Clear at t=30: safe 30 min later, not before.
    waiting = p.assess({"humidity_pct": 64}, 30)
    assert not waiting.safe and waiting.safe_in_s == pytest.approx(1800)
    assert p.assess({"humidity_pct": 64}, 30 + 1799).safe_in_s == pytest.approx(1)
    assert p.assess({"humidity_pct": 64}, 30 + 1800).safe


def test_a_value_back_in_the_band_restarts_the_wait() -> None:
    p = policy(HUMID)
    p.assess({"humidity_pct": 80}, 0)
    p.assess({"humidity_pct": 60}, 100)
    p.assess({"humidity_pct": 67}, 1000)  # in the band: the clear spell is broken
    p.assess({"humidity_pct": 60}, 1100)
    assert not p.assess({"humidity_pct": 60}, 100 + 1800).safe
    assert p.assess({"humidity_pct": 60}, 1100 + 1800).safe


def test_grades_keep_the_longest_wait_of_what_tripped() -> None:
    mild = policy(HUMID, SOAKED)
    mild.assess({"humidity_pct": 75}, 0)
    mild.assess({"humidity_pct": 50}, 60)
    assert mild.assess({"humidity_pct": 50}, 60 + 1800).safe  # only the 70 % grade tripped
    wet = policy(HUMID, SOAKED)
    wet.assess({"humidity_pct": 95}, 0)
    wet.assess({"humidity_pct": 50}, 60)
    verdict = wet.assess({"humidity_pct": 50}, 60 + 1800)
    assert not verdict.safe
    assert verdict.safe_in_s == pytest.approx(5 * 3600 - 1800)
    assert wet.assess({"humidity_pct": 50}, 60 + 5 * 3600).safe


def test_rain_trips_on_the_first_drop() -> None:
    p = policy(RAIN)
    assert p.assess({"rain_rate_mm_h": 0.0}, 0).safe
    assert not p.assess({"rain_rate_mm_h": 0.1}, 1).safe


@pytest.mark.parametrize("missing", [None, math.nan])
def test_a_value_no_longer_reported_counts_as_beyond(missing: float | None) -> None:
    p = policy(HUMID)
    assert p.assess({"humidity_pct": 50}, 0).safe
    verdict = p.assess({"humidity_pct": missing}, 1)
    assert not verdict.safe
    assert verdict.reasons[0].startswith("humidity not reported")


def test_a_sensor_the_station_lacks_leaves_its_limits_unwatched() -> None:
    p = policy(HUMID, SOAKED, RAIN)
    verdict = p.assess({"rain_rate_mm_h": 0.0}, 0)
    assert verdict.safe and verdict.unwatched == ("humidity_pct",)
    assert p.assess({"rain_rate_mm_h": 0.0, "humidity_pct": 60}, 1).unwatched == ()


def test_a_lower_limit_and_derived_values() -> None:
    # An infrared cloud sensor: sky at least 20 °C colder than the air is clear.
    cloudy = WeatherLimit("sky_minus_ambient_c", above=-20, hysteresis=2, wait_s=0)
    dew = WeatherLimit("dew_margin_c", below=2, hysteresis=1, wait_s=0)
    p = policy(cloudy, dew)
    clear_night = {"sky_temperature_c": -25.0, "temperature_c": 5.0, "dew_point_c": -2.0}
    assert p.assess(clear_night, 0).safe
    dewy = p.assess({**clear_night, "dew_point_c": 4.0}, 1)
    assert not dewy.safe and "dew margin 1 °C (limit below 2 °C)" in dewy.reasons[0]
    assert not p.assess({**clear_night, "dew_point_c": 2.5}, 2).safe  # margin 2.5 < 3: band
    assert p.assess({**clear_night, "dew_point_c": 1.9}, 3).safe
    assert derived_values({"sky_temperature_c": -10.0})["sky_minus_ambient_c"] is None


def test_the_feed_is_unsafe_before_its_first_answer_and_after_its_deadline() -> None:
    p = policy(HUMID, deadline_s=300)
    assert "never answered" in p.assess(None, 0).reasons[0]
    assert p.assess({"humidity_pct": 50}, 10).safe
    assert p.assess(None, 300).safe  # a failed read inside the deadline keeps the state
    lost = p.assess(None, 311)
    assert not lost.safe and "nothing new for 301 s" in lost.reasons[0]
    # A station that answers but says its values are old is as silent.
    assert not p.assess({"humidity_pct": 50}, 400, age_s=350).safe
    assert p.assess({"humidity_pct": 50}, 500, age_s=1).safe


def test_limits_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        WeatherLimit("humidity_pct", above=70, below=10)
    with pytest.raises(ValueError, match="unknown weather quantity"):
        WeatherLimit("humidty", above=70)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 100, allow_nan=False), st.floats(1, 900, allow_nan=False)),
        min_size=1,
        max_size=60,
    )
)
def test_never_safe_beyond_a_limit_nor_before_the_wait_since_the_last_trip(
    readings: list[tuple[float, float]],
) -> None:
    """Truth kept apart from the policy: the last time a value was not clear, and the wait."""
    p = policy(HUMID, deadline_s=1e9)
    now = 0.0
    last_not_clear: float | None = None  # when the value was last above 65 % after a trip
    tripped = False
    for humidity, step in readings:
        now += step
        verdict = p.assess({"humidity_pct": humidity}, now)
        if humidity > 70:
            tripped = True
        if tripped and humidity > 65:
            last_not_clear = now
        if humidity > 70:
            assert not verdict.safe
        if tripped and last_not_clear is not None and now - last_not_clear < 1800:
            assert not verdict.safe
        if not tripped:
            assert verdict.safe
        if verdict.safe:
            tripped, last_not_clear = False, None


def test_the_config_names_every_quantity_and_its_defaults_build_a_policy() -> None:
    assert set(get_args(WeatherQuantity)) == set(QUANTITIES)
    p = weather_policy(WeatherConfig())
    assert len(p.limits) == len(WeatherConfig().limits)
    rain = p.assess({"rain_rate_mm_h": 0.2, "humidity_pct": 60}, 0)
    assert not rain.safe and rain.reasons[0].startswith("rain 0.2 mm/h (limit above 0 mm/h)")


def test_beyond_names_what_holds_it_unsafe_not_what_only_waits() -> None:
    p = policy(HUMID, RAIN, deadline_s=300)
    assert p.assess({"humidity_pct": 80, "rain_rate_mm_h": 0}, 0).beyond == ("humidity_pct",)
    both = p.assess({"humidity_pct": 80, "rain_rate_mm_h": 1.5}, 10)
    assert both.beyond == ("humidity_pct", "rain_rate_mm_h")
    # Humidity clear and waiting: only the rain holds it now.
    assert p.assess({"humidity_pct": 60, "rain_rate_mm_h": 1.5}, 20).beyond == ("rain_rate_mm_h",)
    # Silent past the deadline: the feed too.
    assert "feed" in p.assess(None, 400).beyond
