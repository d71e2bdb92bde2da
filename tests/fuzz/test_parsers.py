"""Configs, sequences and plans, valid, mutated and garbled, straight into their parsers.

Part of the fuzz suite, which crosses rooms (config, acquisition, night) and mirrors none.
The only outcomes allowed are a model or a `ConfigError` whose message is clear
(`outcomes.check_refusal`): never another exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obsctl.acquisition.sequence import load_sequence, parse_sequence
from obsctl.config import load_config, parse_config
from obsctl.errors import ConfigError
from obsctl.night.plan import load_plan, parse_plan

from .documents import garbled, mutated, toml_text
from .outcomes import check_refusal
from .profiles import examples
from .valid import configs, plans, sequences


@dataclass(frozen=True)
class Kind:
    """One kind of document: how to draw valid ones, parse a mapping and load a file."""

    valid: Callable[[], st.SearchStrategy[dict[str, Any]]]
    parse: Callable[[dict[str, Any], str], object]
    load: Callable[[Path], object]


KINDS = {
    "config": Kind(configs, lambda d, s: parse_config(d, path=Path(s)), load_config),
    "sequence": Kind(sequences, lambda d, s: parse_sequence(d, source=s), load_sequence),
    "plan": Kind(plans, lambda d, s: parse_plan(d, source=s), load_plan),
}
kinds = pytest.mark.parametrize("kind", list(KINDS))
SEQUENCE = {"name": "darks", "steps": [{"image_type": "DARK", "exposure_s": 1.0}]}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A folder for the files of every example (Hypothesis runs many per test)."""
    return tmp_path_factory.mktemp("fuzz-files")


def parsed_or_refused(call: Callable[[], object], source: str) -> object | None:
    """Return the model ``call`` gives, or None after checking its refusal is clear."""
    try:
        return call()
    except ConfigError as exc:
        check_refusal(exc, source)
        return None


@kinds
@settings(max_examples=examples(1.0))
@given(data=st.data())
def test_valid_documents_are_accepted(kind: str, data: st.DataObject) -> None:
    doc = data.draw(KINDS[kind].valid())
    KINDS[kind].parse(doc, "drawn")


@kinds
@settings(max_examples=examples(2.0))
@given(data=st.data())
def test_mutated_documents_give_a_model_or_a_clear_error(kind: str, data: st.DataObject) -> None:
    doc = data.draw(mutated(KINDS[kind].valid()))
    parsed_or_refused(lambda: KINDS[kind].parse(doc, "mutated"), "mutated")


@kinds
@settings(max_examples=examples(0.7))
@given(data=st.data())
def test_files_give_a_model_or_a_clear_error(kind: str, data: st.DataObject, scratch) -> None:
    valid = KINDS[kind].valid()
    doc = data.draw(st.one_of(valid, mutated(valid)))
    text = toml_text(doc).encode("utf-8", "surrogatepass")
    if data.draw(st.booleans()):
        text = data.draw(garbled(text))
    path = scratch / f"{kind}.toml"
    path.write_bytes(text)
    parsed_or_refused(lambda: KINDS[kind].load(path), str(path))


# -- what the fuzzer found, kept as plain tests ----------------------------------------------


def test_a_key_or_value_that_would_break_the_line_is_quoted_and_shortened() -> None:
    # An unknown key with a newline gave a problem two lines; a 401-digit number and a key
    # of ten thousand characters were shown whole.
    doc = {**SEQUENCE, "key\nsecond line": {}, "dither_every": 10**400, "k" * 10_000: 1}
    with pytest.raises(ConfigError) as caught:
        parse_sequence(doc, source="request")
    check_refusal(caught.value, "request")
    text = str(caught.value)
    assert "  'key\\nsecond line': unknown key" in text
    assert "dither_every: Input should be less than or equal to 100000" in text
    assert "(got an integer of about 400 digits)" in text
    assert f"  {'k' * 40!r}..., 10000 characters: unknown key" in text


def test_a_plan_target_name_that_would_break_the_line_is_quoted() -> None:
    doc = {"version": 1, "name": "p", "targets": [{"name": "M\n13\x1b[2J", "steps": []}]}
    with pytest.raises(ConfigError) as caught:
        parse_plan(doc, source="plan.toml")
    check_refusal(caught.value, "plan.toml")
    assert "  targets[0] ('M\\n13\\x1b[2J').steps: expected at least one item" in str(caught.value)


def test_a_huge_document_is_refused_before_it_is_validated() -> None:
    # Half a million wrong steps took seconds (holding the GIL) and made a 40 MB message.
    with pytest.raises(ConfigError, match=r"more than 20,000 values") as caught:
        parse_sequence({"name": "x", "steps": [0] * 500_000}, source="request")
    check_refusal(caught.value, "request")
    with pytest.raises(ConfigError, match=r"more than 100,000 values"):
        parse_plan({"version": 1, "name": "x", "targets": [1.5] * 1_000_001}, source="p")


def test_a_message_lists_the_first_twenty_problems() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_sequence({"name": "x", "steps": [0] * 1000}, source="request")
    check_refusal(caught.value, "request")
    lines = str(caught.value).splitlines()
    assert lines[0] == "request: invalid sequence (1000 problem(s))"
    assert len(lines) == 22 and lines[-1] == "  ... and 980 more problem(s)"


def test_an_integer_of_thousands_of_digits_is_a_config_error(scratch) -> None:
    # tomllib raised ValueError (int() refuses 4300 digits and more), and repr() of such an
    # integer in a message raised it again.
    path = scratch / "digits.toml"
    path.write_text(f'name = "x"\n[[steps]]\nimage_type = "BIAS"\ncount = {"9" * 5000}\n')
    with pytest.raises(ConfigError, match="a number is too long to read") as caught:
        load_sequence(path)
    check_refusal(caught.value, str(path))
    with pytest.raises(ConfigError) as caught:
        parse_sequence({"name": 10**5000, "steps": [{"image_type": "BIAS"}]}, source="s")
    check_refusal(caught.value, "s")
    assert "name: Input should be a valid string (got an integer of about 5000 digits)" in str(
        caught.value
    )
