import math
from pathlib import Path

import pytest

from obsctl.acquisition.sequence import MAX_STEPS, Sequence, load_sequence, parse_sequence
from obsctl.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "path", sorted((REPO / "configs" / "sequences").glob("*.toml")), ids=lambda p: p.name
)
def test_shipped_sequences_load(path: Path) -> None:
    assert isinstance(load_sequence(path), Sequence)


def test_defaults_and_total() -> None:
    seq = parse_sequence(
        {
            "name": "cal",
            "steps": [{"image_type": "BIAS", "count": 5}, {"image_type": "DARK", "exposure_s": 60}],
        }
    )
    assert seq.total_frames == 6 and seq.target is None


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ({"name": "x", "steps": []}, r"steps: expected at least one item, got none"),
        (
            {"name": "x", "steps": [{"exposure_s": 5}]},
            r"\(top level\): a sequence with LIGHT steps needs a \[target\]",
        ),
        ({"name": "x", "steps": [{"image_type": "DARK"}]}, r"DARK steps need exposure_s > 0"),
        (
            {"name": "x", "steps": [{"image_type": "dark", "exposure_s": 1}]},
            r"steps\[0\]\.image_type: Input should be 'LIGHT', 'DARK', 'BIAS' or 'FLAT'",
        ),
        (
            {
                "name": "x",
                "target": {"name": "M1", "ra_deg": 400, "dec_deg": 0},
                "steps": [{"exposure_s": 1}],
            },
            r"target\.ra_deg: Input should be less than 360",
        ),
        (
            {"name": "x", "steps": [{"image_type": "BIAS", "cnt": 3}]},
            r"steps\[0\]\.cnt: unknown key",
        ),
    ],
)
def test_bad_sequences_name_the_field(data, pattern) -> None:
    with pytest.raises(ConfigError, match=pattern):
        parse_sequence(data, source="plan.toml")


def test_bad_file_names_the_file(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[[steps]]\nexposure_s = -1\n')
    with pytest.raises(
        ConfigError, match=r"(?s)bad\.toml: invalid sequence .*steps\[0\]\.exposure_s"
    ):
        load_sequence(path)


BIAS = {"image_type": "BIAS"}
TARGET = {"name": "M 1", "ra_deg": 83.6, "dec_deg": 22.0}


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"steps": [{"image_type": "DARK", "exposure_s": math.inf}]}, r"steps\[0\]\.exposure_s"),
        ({"steps": [{"image_type": "DARK", "exposure_s": -math.inf}]}, r"steps\[0\]\.exposure_s"),
        ({"steps": [BIAS, {"image_type": "DARK", "exposure_s": math.nan}]}, r"steps\[1\]"),
        ({"steps": [{"image_type": "FLAT", "exposure_s": 1, "flat_target_adu": math.inf}]}, "adu"),
        ({"steps": [BIAS], "dither_arcsec": math.nan}, r"dither_arcsec"),
        ({"steps": [BIAS], "target": {**TARGET, "ra_deg": math.nan}}, r"target\.ra_deg"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_field(data, where) -> None:
    with pytest.raises(ConfigError, match=where + r".*: expected a finite number"):
        parse_sequence({"name": "x", **data}, source="request")


def test_inf_in_a_sequence_file_names_the_file_and_field(tmp_path) -> None:
    path = tmp_path / "inf.toml"
    path.write_text('name = "x"\n[[steps]]\nimage_type = "DARK"\nexposure_s = inf\n')
    with pytest.raises(ConfigError, match=r"(?s)inf\.toml: .*steps\[0\]\.exposure_s: expected a"):
        load_sequence(path)


@pytest.mark.parametrize(
    ("step", "pattern"),
    [
        (
            {"image_type": "DARK", "exposure_s": 1e9},
            r"exposure_s: Input should be less than or equal",
        ),
        ({**BIAS, "count": 10**30}, r"count: Input should be less than or equal to 100000"),
        ({**BIAS, "gain": -1}, r"gain: Input should be greater than or equal to 0"),
        ({**BIAS, "offset": 10**12}, r"offset: Input should be less than or equal"),
        ({**BIAS, "readout_mode": 10**12}, r"readout_mode: Input should be less than or equal"),
        ({**BIAS, "bin": 64}, r"bin: Input should be less than or equal to 16"),
        (
            {
                "image_type": "FLAT",
                "exposure_s": 1,
                "flat_min_exposure_s": 9,
                "flat_max_exposure_s": 2,
            },
            r"flat_min_exposure_s \(9\) is above flat_max_exposure_s \(2\)",
        ),
    ],
)
def test_numbers_are_bounded_by_the_domain(step, pattern) -> None:
    with pytest.raises(ConfigError, match=pattern):
        parse_sequence({"name": "x", "steps": [step]})


def test_steps_are_limited() -> None:
    parse_sequence({"name": "x", "steps": [BIAS] * MAX_STEPS})
    with pytest.raises(ConfigError, match=rf"steps: expected at most {MAX_STEPS} item\(s\), got"):
        parse_sequence({"name": "x", "steps": [BIAS] * (MAX_STEPS + 1)})


@pytest.mark.parametrize(
    ("data", "line"),
    [
        # One bad step is one problem: no false "at least 1 item" beside it.
        ({"steps": [{**BIAS, "gain": "high"}]}, "steps[0].gain: Input should be a valid integer"),
        ({"steps": "BIAS"}, "steps: expected a list (a TOML or JSON array) (got 'BIAS')"),
        ({"steps": [BIAS], "target": "M 1"}, "target: expected a table of keys"),
        ({"steps": [5]}, "steps[0]: expected a table of keys"),
        ({"steps": [{**BIAS, "filter": ""}]}, "steps[0].filter: must not be empty"),
        ({"steps": [BIAS], "name": "n" * 201}, "name: expected at most 200 characters"),
        (
            {"steps": [{"exposure_s": 1}], "target": {**TARGET, "name": "M1\x00"}},
            "target.name: text cannot contain a NUL character",
        ),
    ],
)
def test_messages_say_what_was_expected_in_one_line(data, line) -> None:
    with pytest.raises(ConfigError) as info:
        parse_sequence({"name": "x", **data}, source="request")
    text = str(info.value)
    assert "1 problem(s)" in text and line in text
    for internal in ("Tuple", "after validation", "Value error", "instance of", "dictionary"):
        assert internal not in text


def test_names_of_any_unicode_are_taken_as_given() -> None:
    """The database keeps names as given; FITS cards get their ASCII form (obsctl.store)."""
    sequence = parse_sequence(
        {
            "name": "\u03b1 Ori tonight",
            "target": {**TARGET, "name": "\u03b1 Ori\n\u2605"},
            "steps": [{"image_type": "LIGHT", "filter": "H\u03b1", "exposure_s": 1}],
        },
        source="request",
    )
    assert sequence.target is not None and sequence.target.name == "\u03b1 Ori\n\u2605"
    assert sequence.steps[0].filter == "H\u03b1"
