"""Plan files: validation with errors naming the target and field, and `obsctl plan check`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from obsctl.cli import main
from obsctl.errors import ConfigError
from obsctl.night.plan import NAMED_OBJECTS, load_plan

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "plans" / "demo.toml"

PLAN = """
version = 1
name = "t"

[[targets]]
name = "Alpha"
ra_deg = 10.0
dec_deg = 20.0
[[targets.steps]]
filter = "V"
exposure_s = 30
count = 2

[[targets]]
name = "Beta"
catalog = "m13"
priority = 3
[targets.constraints]
min_alt_deg = 30
windows = [[2026-11-25T21:00:00Z, 2026-11-25T23:00:00Z]]
[targets.repeat]
every_min = 30
until = 2026-12-31
[[targets.steps]]
filter = "R"
exposure_s = 60
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_plan_loads_with_catalog_names_and_defaults(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, PLAN))
    alpha, beta = plan.targets
    assert alpha.repeat is None and alpha.priority == 1 and alpha.coordinates == (10.0, 20.0)
    assert beta.coordinates == NAMED_OBJECTS["M 13"]  # "m13" matches "M 13"
    assert beta.repeat is not None and beta.repeat.every_min == 30
    assert beta.constraints.windows[0][0].utcoffset() is not None
    assert plan.light_exposures_s() == (30.0, 60.0)
    assert beta.visit_exposure_s == 60.0 and alpha.visit_frames == 2


def test_demo_plan_loads() -> None:
    plan = load_plan(DEMO)
    assert plan.calibration.flats is not None and plan.calibration.darks is not None
    assert len(plan.targets) >= 4


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (
            lambda t: t.replace("min_alt_deg = 30", "min_alt_deg = 130"),
            r"targets\[1\] \(Beta\)\.constraints\.min_alt_deg: Input should be less",
        ),
        (
            lambda t: t.replace('filter = "R"\nexposure_s = 60', 'filter = "R"\nexposure_s = 0'),
            r"targets\[1\] \(Beta\)\.steps\[0\].*exposure_s > 0",
        ),
        (
            lambda t: t.replace('catalog = "m13"', 'catalog = "M 999"'),
            r"targets\[1\] \(Beta\): .*catalog name 'M 999' is not in the local catalog",
        ),
        (
            lambda t: t.replace("ra_deg = 10.0\n", ""),
            r"targets\[0\] \(Alpha\): .*give ra_deg and dec_deg",
        ),
        (
            lambda t: t.replace("every_min = 30", "evry_min = 30"),
            r"targets\[1\] \(Beta\)\.repeat\.evry_min: unknown key",
        ),
        (
            lambda t: t.replace("2026-11-25T23:00:00Z]]", "2026-11-25T20:00:00Z]]"),
            r"targets\[1\] \(Beta\)\.constraints: .*window starts",
        ),
        (
            lambda t: t.replace("2026-11-25T21:00:00Z", "2026-11-25T21:00:00"),
            r"windows need UTC offsets",
        ),
        (
            lambda t: t.replace('name = "Beta"', 'name = "Alpha"'),
            r"target name 'Alpha' is used twice",
        ),
        (lambda t: t.replace("version = 1", "version = 7"), r"version: expected one of \[1\]"),
        (
            lambda t: t + '\n[calibration.flats]\nfilters = ["V"]\nsun_alt_min_deg = 0\n',
            r"calibration\.flats: .*sun_alt_min_deg \(0.0\) must be below",
        ),
    ],
)
def test_bad_plans_name_target_and_field(tmp_path: Path, edit, pattern: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=pattern) as info:
        load_plan(write(tmp_path, edit(PLAN)))
    assert str(tmp_path / "plan.toml") in str(info.value)


def test_calibration_steps_are_refused_in_targets(tmp_path: Path) -> None:
    text = PLAN.replace('filter = "V"\nexposure_s = 30', 'image_type = "DARK"\nexposure_s = 30')
    with pytest.raises(ConfigError, match=r"targets\[0\] \(Alpha\).*take LIGHT frames"):
        load_plan(write(tmp_path, text))


def test_plan_check_prints_the_night(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "check", str(DEMO), "--night", "2026-11-25"]) == 0
    out = capsys.readouterr().out
    for text in ("sunset", "nautical dusk (-12)", "dusk flats start", "night start", "sunrise"):
        assert text in out
    assert "M 42" in out and "airmass" in out
    assert "  M 13: never altitude >= 30 deg during the night" in out
    # The demo plan uses the night (issue 22): the shutter open >= 80 % of the dark time,
    # every monitor within 5 % of its cadence, and the goals' completion predicted.
    shutter = re.search(r"efficiency: shutter open (\d+)% of the dark time", out)
    assert shutter is not None and int(shutter[1]) >= 80, out
    cadences = re.findall(r"cadence of .*, (\d+) of (\d+) within 5 %", out)
    assert len(cadences) == 3 and all(a == b for a, b in cadences), out
    assert "M 31 (V 12, R 12): complete on night 2026-11-27 (3 night(s))" in out


def test_plan_check_fails_on_an_invalid_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, PLAN.replace("min_alt_deg = 30", "min_alt_deg = -5"))
    assert main(["plan", "check", str(bad), "--night", "2026-11-25"]) == 2
    err = capsys.readouterr().err
    assert "targets[1] (Beta).constraints.min_alt_deg" in err
    assert main(["plan", "check", str(DEMO), "--night", "25/11/2026"]) == 2


def test_filters_the_wheel_lacks_are_named_before_the_night() -> None:
    from obsctl.errors import ScheduleError
    from obsctl.night.plan import check_filters

    plan = load_plan(DEMO)
    check_filters(plan, ["L", "B", "V", "R", "I"])
    with pytest.raises(ScheduleError, match=r"targets\[0\] \(.+\)\.steps\[0\]\.filter: no filter"):
        check_filters(plan, ["L", "B"])
    flats_only = plan.model_copy(update={"targets": plan.targets[1:2]})  # M 42: V only
    with pytest.raises(ScheduleError, match=r"calibration\.flats\.filters: no filter 'R'"):
        check_filters(flats_only, ["V"])


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (
            lambda t: t.replace("exposure_s = 30", "exposure_s = inf"),
            r"targets\[0\] \(Alpha\)\.steps\[0\]\.exposure_s",
        ),
        (
            lambda t: t.replace("min_alt_deg = 30", "max_airmass = nan"),
            r"targets\[1\] \(Beta\)\.constraints\.max_airmass",
        ),
        (
            lambda t: t.replace("every_min = 30", "every_min = inf"),
            r"targets\[1\] \(Beta\)\.repeat\.every_min",
        ),
        (
            lambda t: t + '\n[calibration.flats]\nfilters = ["V"]\nexposure_s = inf\n',
            r"calibration\.flats\.exposure_s",
        ),
        (
            lambda t: t + "\n[calibration.darks]\nextra_exposures_s = [10, nan]\n",
            r"calibration\.darks\.extra_exposures_s\[1\]",
        ),
        (lambda t: t + "\n[night]\noverhead_s = inf\n", r"night\.overhead_s"),
    ],
)
def test_non_finite_numbers_are_refused_naming_target_and_field(
    tmp_path: Path, edit, where: str
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=where + r": expected a finite number"):
        load_plan(write(tmp_path, edit(PLAN)))


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (
            lambda t: t.replace("count = 2", "count = 100000"),
            r"targets\[0\] \(Alpha\): one visit takes 1388.91 h .*; it must fit in 24 h",
        ),
        (
            lambda t: t.replace("2026-11-25T23:00:00Z]]", "9999-12-31T23:00:00Z]]"),
            r"targets\[1\] \(Beta\)\.constraints: window .* lies outside the years 1900-2199",
        ),
        (
            lambda t: t.replace('name = "Alpha"', 'name = "Alpha \\u0000"'),
            # The name quoted: raw, its NUL (or a newline) would land in the message.
            r"targets\[0\] \('Alpha \\x00'\)\.name: text cannot contain a NUL character",
        ),
        (
            lambda t: t.replace("priority = 3", "priority = 1e400"),
            r"targets\[1\] \(Beta\)\.priority: ",
        ),
        (lambda t: t.replace('name = "t"', 'name = ""'), r"name: must not be empty"),
    ],
)
def test_plan_values_are_bounded(tmp_path: Path, edit, pattern: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=pattern):
        load_plan(write(tmp_path, edit(PLAN)))


def test_plan_check_of_a_plan_with_inf_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, PLAN.replace("exposure_s = 30", "exposure_s = inf"))
    assert main(["plan", "check", str(bad), "--night", "2026-11-25"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"obsctl: {bad}: invalid plan (1 problem(s))\n")
    assert "targets[0] (Alpha).steps[0].exposure_s: expected a finite number" in err
    assert "Traceback" not in err and "Error" not in err


@pytest.mark.parametrize("night", ["9999-12-31", "0001-01-01", "2026-13-01", "", "\u0663\u0663"])
def test_plan_check_refuses_nights_out_of_the_calendar(
    night: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "check", str(DEMO), "--night", night]) == 2
    err = capsys.readouterr().err
    assert err.startswith("obsctl: --night: ") and "Traceback" not in err
