"""Dither patterns: the spiral's points, the random disc, pixels to the sky."""

from __future__ import annotations

import math
import random

import pytest

from obsctl.acquisition.dither import dither_offset_px, pixels_to_sky, spiral_point


def test_the_spiral_visits_each_ring_point_once() -> None:
    points = [spiral_point(n) for n in range(49)]  # the centre and rings 1 to 3
    assert points[:9] == [(0, 0), (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1),
                          (1, -1)]  # fmt: skip
    assert len(set(points)) == 49
    assert {max(abs(x), abs(y)) for x, y in points} == {0, 1, 2, 3}
    with pytest.raises(ValueError):
        spiral_point(-1)


def test_random_dithers_fill_the_disc_and_replay() -> None:
    offsets = [dither_offset_px("random", n, 8.0, random.Random(5)) for n in range(1, 200)]
    again = [dither_offset_px("random", n, 8.0, random.Random(5)) for n in range(1, 200)]
    assert offsets == again
    radii = [math.hypot(*o) for o in offsets]
    assert max(radii) <= 8.0 and min(radii) < 8.0
    assert dither_offset_px("random", 0, 8.0, random.Random(5)) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("pa", "expected"), [(0.0, (-2.0, 1.0)), (90.0, (1.0, 2.0)), (180.0, (2.0, -1.0))]
)
def test_pixels_to_sky_turns_with_the_position_angle(pa: float, expected) -> None:
    # +x is west at position angle 0, north up; the camera turned by 90 deg puts +x north.
    assert pixels_to_sky(2.0, 1.0, 1.0, pa) == pytest.approx(expected, abs=1e-12)


def test_a_dither_is_in_arcsec_or_in_pixels_not_both() -> None:
    from obsctl.acquisition.sequence import parse_sequence
    from obsctl.errors import ConfigError
    from obsctl.night.plan import parse_plan

    step = {"image_type": "LIGHT", "filter": "V", "exposure_s": 10.0}
    target = {"name": "T", "ra_deg": 10.0, "dec_deg": 20.0}
    with pytest.raises(ConfigError, match="dither_arcsec or dither_px"):
        parse_sequence({"name": "s", "target": target, "steps": [step],
                        "dither_arcsec": 5.0, "dither_px": 3.0})  # fmt: skip
    plan_target = {**target, "steps": [step], "dither_arcsec": 5.0, "dither_px": 3.0}
    with pytest.raises(ConfigError, match="dither_arcsec or dither_px"):
        parse_plan({"version": 1, "name": "p", "targets": [plan_target]})
    assert parse_sequence({"name": "s", "target": target, "steps": [step], "dither_px": 3.0})
