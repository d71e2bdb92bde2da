"""What the fuzz suite (crossing rooms, mirroring none) accepts as a clear refusal.

A refused file or request gets a `ConfigError` whose message is one line naming the source,
then, for a document that parsed, one line per problem (the first twenty, then how many
more): indented, the key path, a colon and what was expected. No line runs on (a megabyte
of input is not repeated back), and no traceback is logged along the way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from obsctl.config import MAX_PROBLEMS_SHOWN
from obsctl.errors import ConfigError

__all__ = ["MAX_LINE", "check_refusal", "logged_tracebacks"]

#: Longest line of a clear message (characters): a path, a key path, a shortened value.
MAX_LINE = 500
_HEADER = re.compile(r".*: invalid (configuration|sequence|plan) \((\d+) problem\(s\)\)")


def check_refusal(exc: ConfigError, source: str) -> None:
    """Assert that ``exc`` is a clear refusal of the document read from ``source``."""
    lines = str(exc).split("\n")
    assert lines[0].startswith(f"{source}: "), lines[0][:MAX_LINE]
    assert all(len(line) <= MAX_LINE + len(source) for line in lines), [len(line) for line in lines]
    header = _HEADER.fullmatch(lines[0])
    if header is None:  # read, decoded or parsed no further than its version: one line
        assert len(lines) == 1, lines
        return
    problems, count = lines[1:], int(header[2])
    if count > MAX_PROBLEMS_SHOWN:  # the first ones, then how many more
        assert problems.pop() == f"  ... and {count - MAX_PROBLEMS_SHOWN} more problem(s)"
    assert len(problems) == min(count, MAX_PROBLEMS_SHOWN), lines
    for line in problems:
        # "  steps[0].exposure_s: expected ..." with a key path that says where.
        assert re.match(r"  \S.*: \S", line), line
        assert line.isprintable(), line


@contextmanager
def logged_tracebacks(logger: str = "obsctl") -> Iterator[list[logging.LogRecord]]:
    """Collect the records logged with a traceback under ``logger`` while the block runs."""
    found: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info:
                found.append(record)

    handler = Collect()
    log = logging.getLogger(logger)
    log.addHandler(handler)
    try:
        yield found
    finally:
        log.removeHandler(handler)
