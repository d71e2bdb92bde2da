"""The allocator's arena limit (obsctl/malloc.py): set on glibc, the environment's choice kept.

Whether it keeps memory flat is measured by `bench/soak.py`, not here.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

CALL = "from obsctl.malloc import limit_arenas; print(limit_arenas())"


def run(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CALL], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_limit_is_set_on_glibc_unless_the_environment_chose() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert run(env) == "True"
    assert run({**env, "MALLOC_ARENA_MAX": "4"}) == "False"
