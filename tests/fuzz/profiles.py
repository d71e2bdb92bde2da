"""Hypothesis profiles of the fuzz suite (which crosses rooms and so mirrors none).

``ci`` (the default) keeps the whole suite near a minute on two cores and draws the same
examples on every run, so a red CI run is red again on a laptop. ``nightly`` draws many
more, differently each night, and keeps what fails in ``.hypothesis/`` to replay it:
``HYPOTHESIS_PROFILE=nightly pytest tests/fuzz``.

Each test asks for a share of the profile's examples (`examples`): a parser call takes a
millisecond, a command or a request to the daemon tens of them.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

__all__ = ["examples"]

_SUPPRESSED = [
    # Huge strings and arrays are the point of the mutations, and a daemon is slow to draw
    # for compared with a pure function.
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
]

settings.register_profile(
    "ci",
    max_examples=60,
    # Hypothesis cannot interrupt a call, so this is no hang detector (the requests carry
    # their own timeouts); it flags a single input that takes seconds to be refused.
    deadline=timedelta(seconds=3),
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile(
    "nightly",
    max_examples=3000,
    deadline=timedelta(seconds=3),
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(share: float) -> int:
    """Return ``share`` of the loaded profile's examples per test (at least 10)."""
    return max(10, round(settings.default.max_examples * share))
