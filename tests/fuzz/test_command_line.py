"""The command line on generated files and arguments: an exit code and a message, no traceback.

Part of the fuzz suite, which crosses rooms (the command line, config, sequences, plans,
the store) and mirrors none. `main` is called in this process with generated argument lists
(any text, as a shell passes it: undecodable bytes arrive as lone surrogates), on configs,
sequence files and plans written from generated documents. It may exit 0, 1 (the command
failed) or 2 (bad input); any other exit ends with a message on stderr, ``obsctl: ...`` or
argparse's usage and ``obsctl ...: error: ...``; no exception escapes it and nothing is
logged with a traceback. The devices of these configs are addresses where nothing listens,
so a command that reaches them fails at once.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from datetime import date
from pathlib import Path

import pytest
from hypothesis import currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st

from obsctl.cli import main
from obsctl.store.datadir import DataDir

from ..daemon_helpers import write_config
from .documents import HOSTILE_TEXTS, garbled, mutated, toml_text
from .outcomes import logged_tracebacks
from .profiles import examples
from .valid import configs, plans, sequences

# Nights the commands take (YYYY-MM-DD), and what else a user might type there.
NIGHTS = st.one_of(
    st.dates(date(1900, 1, 1), date(2199, 12, 31)).map(date.isoformat),
    st.dates().map(date.isoformat),
    st.sampled_from(["2026-02-30", "2026-13-01", "20261125", "tonight", "-1", "--night"]),
)
# An argument: plausible numbers and names, hostile text, or anything at all.
ARGUMENTS = st.one_of(
    st.sampled_from(["0", "1", "2", "-1", "1e308", "nan", "inf", "-0", "0x10", "1_000", "V"]),
    st.integers().map(str),
    st.floats().map(str),
    st.sampled_from(HOSTILE_TEXTS),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=20),
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Iterator[Path]:
    """A folder to work in, with a config whose data directory holds an exposure log.

    The commands run in it: a generated config's relative data directory lands there.
    """
    root = tmp_path_factory.mktemp("fuzz-cli")
    data = root / "data"
    DataDir(data).create()
    DataDir(data).open_log().close()
    # No retries: a daemon whose camera does not answer gives up at once.
    write_config(root, f'[sequencer]\nretries = 0\n[data]\ndirectory = "{data}"\n')
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        # The first night planned in a process loads the ephemeris and fills its caches
        # (seconds); done here, so the deadline applies to the generated inputs alone.
        plan = Path(__file__).parents[2] / "configs" / "plans" / "demo.toml"
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            assert main(["plan", "check", str(plan), "--night", "2026-11-25"]) == 0
        yield root


def run(argv: list[str]) -> tuple[int, str]:
    """Run ``obsctl argv``; return its exit code and stderr after checking them."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), logged_tracebacks() as tracebacks:
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse refusing the arguments
            code = exc.code
            assert code == 2, code
            assert re.search(r"^obsctl( \S+)*: error: ", err.getvalue(), re.MULTILINE)
    stderr = err.getvalue()
    if currently_in_test_context():  # for --hypothesis-show-statistics
        event(f"exit {code}")
    assert code in (0, 1, 2), code
    assert "Traceback" not in stderr, stderr
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    if code != 0:
        assert stderr.startswith(("obsctl: ", "usage: obsctl")), stderr
    return code, stderr


def document_file(data: st.DataObject, path: Path, valid: st.SearchStrategy) -> Path:
    """Write a valid, mutated or byte-garbled document to ``path`` as TOML."""
    text = toml_text(data.draw(st.one_of(valid, mutated(valid)))).encode("utf-8", "surrogatepass")
    if data.draw(st.booleans()):
        text = data.draw(garbled(text))
    path.write_bytes(text)
    return path


# No deadline: every new night computes its ephemeris (seconds, tens on a loaded machine),
# which is the work asked for, not an input slow to refuse.
@settings(max_examples=examples(0.3), deadline=None)
@given(data=st.data())
def test_plan_check(data: st.DataObject, workspace: Path) -> None:
    plan = document_file(data, workspace / "plan.toml", plans())
    night = data.draw(NIGHTS)
    run(["--config", "obsctl.toml", "plan", "check", str(plan), "--night", night])


@settings(max_examples=examples(0.5))
@given(data=st.data())
def test_config_files(data: st.DataObject, workspace: Path) -> None:
    config = document_file(data, workspace / "generated.toml", configs())
    run(["--config", str(config), "log"])


@settings(max_examples=examples(0.5))
@given(data=st.data())
def test_sequence_files(data: st.DataObject, workspace: Path) -> None:
    sequence = document_file(data, workspace / "sequence.toml", sequences())
    # A valid one is queued, then the daemon stops: its camera does not answer.
    code, _ = run(["--config", "obsctl.toml", "run", "--sequence", str(sequence), "--until-idle"])
    assert code != 0


def options(draw: st.DrawFn, names: dict[str, st.SearchStrategy[str]]) -> list[str]:
    """Draw some of the options ``names`` (each with a value), in any order."""
    chosen = draw(st.lists(st.sampled_from(sorted(names)), unique=True))
    argv: list[str] = []
    for name in chosen:
        argv += [name, draw(names[name])]
    return argv


LOG_OPTIONS = {
    "--night": NIGHTS,
    "--target": ARGUMENTS,
    "--filter": ARGUMENTS,
    "--type": st.one_of(st.sampled_from(["light", "DARK", "Bias"]), ARGUMENTS),
    "--limit": ARGUMENTS,
}


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    """An ``obsctl`` command line against the workspace's config, with generated options."""
    command = draw(st.sampled_from(["log", "alerts", "calib", "lightcurve", "expose"]))
    if command == "log":
        argv = ["log", *options(draw, LOG_OPTIONS)]
        if draw(st.booleans()):
            argv.append("--csv")
    elif command == "alerts":
        argv = ["alerts", *options(draw, {"--limit": ARGUMENTS})]
    elif command == "lightcurve":
        formats = st.one_of(st.sampled_from(["csv", "ecsv", "aavso"]), ARGUMENTS)
        argv = ["lightcurve", draw(ARGUMENTS), *options(draw, {"--format": formats})]
    elif command == "calib":
        methods = st.one_of(st.sampled_from(["median", "sigma"]), ARGUMENTS)
        argv = ["calib", "build", *options(draw, {"--night": NIGHTS, "--method": methods})]
    else:
        argv = ["expose", "--exptime", draw(ARGUMENTS), "--out", draw(ARGUMENTS)]
        argv += options(
            draw,
            {
                "--bin": ARGUMENTS,
                "--filter": ARGUMENTS,
                "--type": st.one_of(st.sampled_from(["light", "dark", "bias", "flat"]), ARGUMENTS),
            },
        )
    return ["--config", "obsctl.toml", *argv]


@settings(max_examples=examples(1.0))
@given(argv=command_lines())
# Found by the fuzzer: a lone surrogate (undecodable bytes in argv) reached SQLite.
@example(argv=["--config", "obsctl.toml", "log", "--filter", "\ud800"])
@example(argv=["--config", "obsctl.toml", "lightcurve", "\udcff"])
def test_arguments(argv: list[str], workspace: Path) -> None:
    run(argv)


def test_a_plan_with_a_number_of_thousands_of_digits(workspace: Path) -> None:
    # Was a traceback: tomllib's ValueError (int() refuses 4300 digits) escaped `main`.
    plan = workspace / "digits.toml"
    plan.write_text(f"version = {'9' * 5000}\n")
    code, stderr = run(["plan", "check", str(plan), "--night", "2026-11-25"])
    assert code == 2 and "a number is too long to read" in stderr
