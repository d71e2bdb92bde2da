from pathlib import Path

import pytest

from obsctl.acquisition.sequence import Sequence, load_sequence, parse_sequence
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
        ({"name": "x", "steps": []}, r"steps: Tuple should have at least 1 item"),
        (
            {"name": "x", "steps": [{"exposure_s": 5}]},
            r"\(top level\): Value error, a sequence with LIGHT steps needs a \[target\]",
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
