"""The zero points as a cloud sensor: when light frames pause, probe and resume."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from obsctl.acquisition.transparency import TransparencyWatch
from obsctl.config import TransparencyConfig

T0 = datetime(2026, 12, 3, 22, 0, tzinfo=UTC)
CLEAR_ZP = 22.0
#: Zero points (mag) a cloud of 1.5 mag and one of 0.1 mag leave.
CLOUDY_ZP, THIN_ZP = CLEAR_ZP - 1.5, CLEAR_ZP - 0.1


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def watch(**overrides: float) -> TransparencyWatch:
    config = TransparencyConfig(enabled=True, probe_every_s=600, probe_timeout_s=300, **overrides)
    return TransparencyWatch(config, {"V": CLEAR_ZP})


def feed(w: TransparencyWatch, minute: float, zp: float | None, stars: int = 100) -> None:
    w.add(int(minute * 10), at(minute), "V", zp, stars)


def test_transparency_is_the_light_lost_against_the_nominal_zero_point() -> None:
    w = watch()
    reading = w.add(1, at(0), "V", CLEAR_ZP - 0.75257, 100)
    assert reading is not None and reading.value == pytest.approx(0.5, rel=1e-4)


def test_one_cloudy_frame_does_not_pause_the_median_of_three_does() -> None:
    w = watch()
    feed(w, 0, CLEAR_ZP)
    feed(w, 1, THIN_ZP)
    feed(w, 2, CLOUDY_ZP)
    assert not w.cloudy and w.hold_s(at(3)) == 0.0
    feed(w, 3, CLOUDY_ZP)
    assert w.cloudy
    assert "below 0.5" in w.reason and "roof stays open" in w.reason


def test_old_frames_are_left_out_of_the_median() -> None:
    w = watch(max_age_s=600)
    feed(w, 0, CLOUDY_ZP)
    feed(w, 1, CLOUDY_ZP)
    feed(w, 30, CLOUDY_ZP)  # the two before are 29 min old: not enough recent frames
    assert not w.cloudy


def test_while_paused_one_probe_goes_every_interval_and_waits_for_its_reading() -> None:
    w = watch()
    for minute in (0, 1, 2):
        feed(w, minute, CLOUDY_ZP)
    assert w.cloudy
    # The next probe is due ten minutes after the frame that paused.
    assert w.hold_s(at(3)) == pytest.approx(9 * 60)
    assert w.hold_s(at(12)) == 0.0  # the probe goes
    # Until its reading comes, nothing else goes (up to the probe timeout).
    assert w.hold_s(at(13)) == pytest.approx(4 * 60)
    feed(w, 12.1, CLOUDY_ZP)  # the probe: still cloudy
    assert w.cloudy
    assert w.hold_s(at(13)) == pytest.approx(9 * 60)
    assert w.hold_s(at(22)) == 0.0  # the next probe
    feed(w, 22.1, THIN_ZP)
    assert not w.cloudy and w.hold_s(at(23)) == 0.0
    assert "clear again" in w.reason


def test_clear_again_forgets_the_cloudy_frames() -> None:
    w = watch()
    for minute in (0, 1, 2):
        feed(w, minute, CLOUDY_ZP)
    w.hold_s(at(12))
    feed(w, 12.1, CLEAR_ZP)
    feed(w, 13, CLEAR_ZP)  # the cloudy three must not make this the median's third frame
    assert not w.cloudy


def test_a_probe_whose_reading_never_comes_is_sent_again_after_the_timeout() -> None:
    w = watch()
    for minute in (0, 1, 2):
        feed(w, minute, CLOUDY_ZP)
    assert w.hold_s(at(12)) == 0.0
    assert w.hold_s(at(16)) == pytest.approx(60)
    # Given up at 17 min; the next probe goes at its time, ten minutes after the last.
    assert w.hold_s(at(17)) == pytest.approx(5 * 60)
    assert w.hold_s(at(22)) == 0.0


def test_a_frame_without_stars_is_opaque_one_with_stars_and_no_zero_point_says_nothing() -> None:
    w = watch()
    assert w.add(1, at(0), "V", None, 200) is None  # no catalogue there: no word on clouds
    for minute in (1, 2, 3):
        reading = w.add(minute, at(minute), "V", None, 2)
        assert reading is not None and reading.value == 0.0
    assert w.cloudy


def test_without_a_nominal_zero_point_the_best_one_seen_is_the_reference() -> None:
    config = TransparencyConfig(enabled=True)
    w = TransparencyWatch(config, {})
    assert w.add(1, at(0), "R", None, 0) is None  # nothing to compare with yet
    first = w.add(2, at(1), "R", 21.0, 100)
    assert first is not None and first.value == 1.0
    w.add(3, at(2), "R", 21.5, 100)
    later = w.add(4, at(3), "R", 21.0, 100)
    assert later is not None and later.value == pytest.approx(10 ** (-0.4 * 0.5))
    assert w.reference("R") == 21.5 and w.reference("V") is None


def test_the_thresholds_must_leave_a_hysteresis() -> None:
    with pytest.raises(ValidationError, match="resume_above"):
        TransparencyConfig(pause_below=0.6, resume_above=0.6)


def test_a_probe_without_a_zero_point_is_an_answer_the_pause_goes_on() -> None:
    w = watch()
    for minute in (0, 1, 2):
        feed(w, minute, CLOUDY_ZP)
    assert w.hold_s(at(12)) == 0.0
    # Stars but no zero point (too few matched under the cloud): no reading, yet answered.
    assert w.add(121, at(12.1), "V", None, 50) is None
    assert w.cloudy and w.hold_s(at(13)) == pytest.approx(9 * 60)
