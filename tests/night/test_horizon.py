"""The site's local horizon: the file format, interpolation, and targets behind a wall."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from obsctl.config import SiteConfig, load_config
from obsctl.errors import ConfigError
from obsctl.night.ephemeris import cached_night
from obsctl.night.horizon import (
    MAX_HORIZON_BYTES,
    MAX_HORIZON_POINTS,
    Horizon,
    load_horizon,
    parse_horizon,
    site_horizon,
)
from obsctl.night.plan import parse_plan
from obsctl.night.schedule import NightSchedule
from obsctl.night.timeline import check_plan

NIGHT = date(2026, 11, 25)
SAMPLE = Path(__file__).parents[2] / "configs" / "horizon-example.hrz"

# The example of N.I.N.A.'s CustomHorizon.FromReader_Standard documentation.
NINA_EXAMPLE = """# File Example
0 10
90 20
180 30
270 20
360 10
"""


def site(horizon: Path | None = None, **limits: float) -> SiteConfig:
    return SiteConfig(
        name="Test",
        latitude_deg=28.76,
        longitude_deg=-17.88,
        elevation_m=2326,
        horizon=horizon,
        **limits,
    )


def test_nina_example_interpolates_linearly() -> None:
    h = parse_horizon(NINA_EXAMPLE)
    az = [0, 45, 90, 135, 180, 225, 315, 359, 360]
    # By hand: halfway between 0 (10) and 90 (20) is 15; between 180 (30) and 270 (20), 25;
    # 359 is 89/90 of the way from 270 (20) to 360 (10).
    expected = [10, 15, 20, 25, 30, 25, 15, 20 - 10 * 89 / 90, 10]
    assert h.alt_at(az) == pytest.approx(expected)


def test_azimuths_wrap_around_and_the_shape_is_kept() -> None:
    h = parse_horizon(NINA_EXAMPLE)
    grid = np.array([[-45.0, 405.0], [720.0, -360.0]])
    out = h.alt_at(grid)
    assert out.shape == (2, 2)
    assert out == pytest.approx(np.array([[15.0, 15.0], [10.0, 10.0]]))
    assert h.above([16.0, 14.0], [45.0, 45.0]).tolist() == [True, False]


def test_points_without_north_are_joined_across_it() -> None:
    # 350 -> 30 deg and 10 -> 20 deg are 20 deg of azimuth apart across north.
    h = parse_horizon("10 20\n100 40\n350 30\n")
    # By hand: at 0, (360 - 350) / 20 = 0.5 of the way: 30 - 0.5 * 10 = 25; at 5, 0.75:
    # 22.5; at 355, 0.25: 27.5; at 55, halfway from 10 (20) to 100 (40): 30.
    assert h.alt_at([0, 5, 355, 55, 360]) == pytest.approx([25, 22.5, 27.5, 30, 25])


def test_a_360_given_alone_also_stands_for_north() -> None:
    h = parse_horizon("90 0\n360 30\n")
    # 0 takes 360's 30 deg: halfway from 0 to 90 is 15.
    assert h.alt_at([0, 45, 180]) == pytest.approx([30, 15, 10])


def test_separators_comments_bom_and_crlf_are_tolerated(tmp_path: Path) -> None:
    text = "\ufeff# Ekos export\r\n\r\n0\t10\r\n  90, 20  # the barn\r\n180;30\r\n270 ,\t20\r\n"
    file = tmp_path / "site.hrz"
    file.write_bytes(text.encode("utf-8"))
    h = load_horizon(file)
    assert h.alt_at([0, 90, 180, 270, 315]) == pytest.approx([10, 20, 30, 20, 15])
    assert h.source == str(file)


def test_a_repeated_azimuth_keeps_its_last_altitude_as_nina_does() -> None:
    assert parse_horizon("0 10\n90 20\n90 40\n").alt_at(90) == pytest.approx(40)


def test_the_shipped_sample_loads() -> None:
    h = load_horizon(SAMPLE)
    assert h.alt_at([0, 180, 90]) == pytest.approx([12, 25, 8])
    assert h.max_alt_deg == 25


@pytest.mark.parametrize(
    ("text", "line", "pattern"),
    [
        ("0 10\n90 inf\n", 2, "altitude 'inf' is not a number"),
        ("0 10\nNaN 5\n", 2, "azimuth 'NaN' is not a number"),
        ("0 10\n90 Infinity\n", 2, "not a number"),
        ("0 10\n90 1e999\n", 2, "not a finite number"),
        ("0 10\n\u0661\u0662 5\n", 2, "is not a number"),  # Arabic-Indic digits
        ("0 10\n\uff19\uff10 5\n", 2, "is not a number"),  # full-width digits
        ("0 10\n1_0 5\n", 2, "is not a number"),
        ("0 10\n0x10 5\n", 2, "is not a number"),
        ("0 10\n# a comment\n361 5\n", 3, "azimuth 361 deg is outside 0-360"),
        ("-1 10\n90 5\n", 1, "azimuth -1 deg is outside 0-360"),
        ("0 10\n90 91\n", 2, "altitude 91 deg is outside -90..90"),
        ("0 10\n90 -90.5\n", 2, "altitude -90.5 deg is outside -90..90"),
        ("0 10\n90 5 7\n", 2, "found 3 value"),
        ("0 10\n90\n", 2, "found 1 value"),
        ("0 10\n90\u00a020\n", 2, "found 1 value"),  # a no-break space separates nothing
    ],
)
def test_bad_lines_are_refused_naming_file_and_line(text: str, line: int, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as excinfo:
        parse_horizon(text, source="site.hrz")
    assert str(excinfo.value).startswith(f"site.hrz: line {line}: ")
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("text", ["", "# only a comment\n\n", "90 10\n", "90 10\n90 20\n"])
def test_fewer_than_two_points_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match=r"site\.hrz: a horizon needs at least two"):
        parse_horizon(text, source="site.hrz")


def test_a_long_line_is_shown_shortened() -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_horizon("0 10\n90 " + "9" * 10_000 + "x\n", source="s.hrz")
    assert len(str(excinfo.value)) < 300


def test_too_many_points_are_refused() -> None:
    az = np.linspace(0.0, 360.0, MAX_HORIZON_POINTS + 1)
    text = "\n".join(f"{a:.6f} 10" for a in az)
    with pytest.raises(ConfigError, match=f"line {MAX_HORIZON_POINTS + 1}: more than"):
        parse_horizon(text, source="s.hrz")


def test_huge_files_are_refused_before_reading_them_whole(tmp_path: Path) -> None:
    file = tmp_path / "huge.hrz"
    with file.open("wb") as out:
        out.write(b"# " + b"x" * (MAX_HORIZON_BYTES + 10) + b"\n0 10\n90 20\n")
    with pytest.raises(ConfigError, match=re.escape(f"{file}: horizon file larger than")):
        load_horizon(file)


def test_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.hrz: cannot read the horizon file"):
        load_horizon(tmp_path / "missing.hrz")
    with pytest.raises(ConfigError, match="cannot read the horizon file"):
        load_horizon(tmp_path)  # a folder
    latin = tmp_path / "latin.hrz"
    latin.write_bytes(b"0 10\n# S\xfcd\n180 20\n")
    with pytest.raises(ConfigError, match=r"latin.hrz: line 2: not UTF-8 text"):
        load_horizon(latin)
    with pytest.raises(ConfigError, match=r"site\.horizon: cannot read the horizon file"):
        site_horizon(site(tmp_path / "gone.hrz"))


def test_site_horizon_is_read_again_when_the_file_changes(tmp_path: Path) -> None:
    file = tmp_path / "h.hrz"
    file.write_text("0 10\n180 10\n")
    assert site_horizon(site()) is None
    first = site_horizon(site(file))
    assert first is not None and first is site_horizon(site(file))
    file.write_text("0 20\n180 20\n# longer now\n")
    again = site_horizon(site(file))
    assert again is not None and again.alt_at(0) == pytest.approx(20)


def test_from_points_checks_its_input() -> None:
    with pytest.raises(ValueError, match="at least two"):
        Horizon.from_points([(0.0, 10.0)])
    with pytest.raises(ValueError, match="out of range"):
        Horizon.from_points([(0.0, 10.0), (400.0, 10.0)])


# --- in the schedule and plan check -----------------------------------------------------

# A wall of 80 deg from east through south to west; open (0 deg) to the north.
WALL = "0 0\n80 0\n90 80\n270 80\n280 0\n360 0\n"
PLAN = {
    "version": 1,
    "name": "wall",
    "targets": [
        # NGC 188 (dec +85) circles the pole, in the north at La Palma.
        {"name": "Pole", "catalog": "NGC 188", "steps": [{"exposure_s": 60}]},
        # M 42 (dec -5) crosses the south, behind the wall all night.
        {"name": "Orion", "catalog": "M 42", "steps": [{"exposure_s": 60}]},
    ],
}


def test_schedule_masks_hold_the_horizon_and_site_limits(tmp_path: Path) -> None:
    file = tmp_path / "wall.hrz"
    file.write_text(WALL)
    eph = cached_night(site(file, min_alt_deg=20.0, max_alt_deg=85.0), NIGHT)
    schedule = NightSchedule(parse_plan(PLAN), eph)
    pole, orion = schedule.plan.targets
    track = schedule.tracks["Orion"]
    masks = schedule.masks["Orion"]
    behind = masks["above the local horizon (wall.hrz)"]
    assert not behind.any()
    assert (masks["altitude >= 20 deg (site limit)"] == (track.alt_deg >= 20)).all()
    assert (masks["altitude <= 85 deg (site limit)"] == (track.alt_deg <= 85)).all()
    assert schedule.never_reason(orion) == (
        "never above the local horizon (wall.hrz) during the night"
    )
    assert schedule.never_reason(pole) is None
    # The wall is the only reason: the same night without it observes M 42.
    open_sky = NightSchedule(parse_plan(PLAN), cached_night(site(), NIGHT))
    assert open_sky.never_reason(orion) is None


def test_plan_check_reports_a_target_behind_the_horizon(tmp_path: Path) -> None:
    file = tmp_path / "wall.hrz"
    file.write_text(WALL)
    plan = tmp_path / "plan.toml"
    plan.write_text(
        'version = 1\nname = "wall"\n'
        '[[targets]]\nname = "Pole"\ncatalog = "NGC 188"\n'
        "[[targets.steps]]\nexposure_s = 60\n"
        '[[targets]]\nname = "Orion"\ncatalog = "M 42"\n'
        "[[targets.steps]]\nexposure_s = 60\n"
    )
    config = load_config()
    config = config.model_copy(update={"site": config.site.model_copy(update={"horizon": file})})
    text = check_plan(config, plan, NIGHT)
    assert f"site limits: local horizon {file} (up to 80 deg)" in text
    assert "Orion: never above the local horizon (wall.hrz) during the night" in text
    assert "Pole " in text.split("not observed:")[0]
    assert "days old" in text


def test_plan_check_names_a_bad_horizon_file(tmp_path: Path) -> None:
    file = tmp_path / "bad.hrz"
    file.write_text("0 10\n90 ten\n")
    config = load_config()
    config = config.model_copy(update={"site": config.site.model_copy(update={"horizon": file})})
    plan = tmp_path / "plan.toml"
    plan.write_text(
        'version = 1\nname = "p"\n[[targets]]\nname = "Pole"\ncatalog = "NGC 188"\n'
        "[[targets.steps]]\nexposure_s = 60\n"
    )
    with pytest.raises(ConfigError, match=r"bad.hrz: line 2: altitude 'ten' is not a number"):
        check_plan(config, plan, NIGHT)


def test_site_limits_are_validated() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        site(min_alt_deg=-1.0)
    with pytest.raises(ValidationError):
        site(max_alt_deg=95.0)
    with pytest.raises(ValidationError):
        site(horizon=Path("a\x00b"))
