"""Real file systems for storage tests: a small tmpfs to fill, or a read-only one.

A full disk and a read-only data directory are reproduced with the kernel's own errors
(ENOSPC, EROFS), not with mocks: the tests run as root, which may mount a tmpfs. Root also
ignores file permissions, so a chmod would not make a directory read-only for it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def tmpfs(path: Path, *, size: str = "4m", read_only: bool = False) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``path`` (created) for the block; unmount it after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the tests run as root in CI)")
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}" + (",ro" if read_only else ""), "tmpfs", str(path))
    try:
        yield path
    finally:
        # Lazy: a daemon subprocess a failed test left behind must not keep it mounted.
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def remount_read_only(path: Path) -> None:
    """Make a mounted tmpfs read-only (what it holds stays)."""
    _mount("-o", "remount,ro", str(path))


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to its last byte; return the file that did it."""
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as fh:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    fh.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


@contextlib.contextmanager
def read_only_bind(path: Path) -> Iterator[Path]:
    """Make a folder read-only in place (a read-only bind mount over it) for the block."""
    if os.geteuid() != 0:
        pytest.skip("a bind mount needs root (the tests run as root in CI)")
    _mount("--bind", str(path), str(path))
    try:
        _mount("-o", "remount,bind,ro", str(path))
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
