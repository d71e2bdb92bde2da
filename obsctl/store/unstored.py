"""Frames that could not be stored yet, kept as files until they are.

When the frame writer cannot put a frame where it belongs (a full disk, a damaged database, a
header it cannot write), it keeps the frame here, exactly as it was held in memory, so that
neither a shutdown nor a ``kill -9`` loses it; once the frame is stored its copy is removed,
and at start the daemon hands the copies left by the last run back to the writer.

The first folder is the data directory's ``unstored/``. When that is on the full disk, the
second, in the system's temporary directory, usually is not: it is private to the user
(mode 0700, checked before anything is read from it) and named after the data directory, so
that the next start finds it. On a machine with one disk for both, a full disk leaves the
frames in memory only, retried until space is freed.

A kept frame is a pickle: it holds every field of the frame (pixels, camera metadata, site,
mount state, sequence position), and is read only by the obsctl that wrote it, from folders
only its user can write.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import stat
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from obsctl.store.raw_store import StoredFrame

__all__ = ["UnstoredFrames", "temporary_folder"]

log = logging.getLogger(__name__)

_SUFFIX = ".frame"
_UNREADABLE = ".unreadable"


def temporary_folder(data_root: Path) -> Path:
    """Return the folder in the system's temporary directory for a data directory's frames.

    Parameters
    ----------
    data_root : pathlib.Path
        The data directory; its resolved path names the folder, so each has its own.
    """
    digest = hashlib.sha256(str(Path(data_root).resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"obsctl-unstored-{digest}"


def _private(folder: Path) -> bool:
    """Return whether only this user can write ``folder`` (so its pickles are ours)."""
    info = folder.lstat()
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


class UnstoredFrames:
    """The folders where frames wait while they cannot be stored.

    Parameters
    ----------
    folders : sequence of pathlib.Path
        Where to keep frames, in order of preference (created, mode 0700, when needed).
    """

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = [Path(f) for f in folders]

    def keep(self, frame: StoredFrame) -> Path:
        """Write a frame durably (temporary name, fsync, rename) to the first folder that takes it.

        Synchronous.

        Returns
        -------
        pathlib.Path
            The kept copy.

        Raises
        ------
        OSError
            When no folder takes it (the last folder's error).
        """
        name = f"{frame.context.start_time:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}{_SUFFIX}"
        error: OSError = FileNotFoundError("no folder to keep unstored frames in")
        for folder in self.folders:
            try:
                return self._write(folder, name, frame)
            except OSError as exc:
                log.warning("cannot keep a frame in %s: %s", folder, exc)
                error = exc
        raise error

    def _write(self, folder: Path, name: str, frame: StoredFrame) -> Path:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(folder):
            raise PermissionError(f"{folder} is writable by others; not keeping frames there")
        final = folder / name
        tmp = folder / f".{name}.tmp"
        try:
            with open(tmp, "wb") as fh:
                pickle.dump(frame, fh, protocol=pickle.HIGHEST_PROTOCOL)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return final

    def discard(self, path: Path) -> None:
        """Remove a kept copy once its frame is stored (its folder too, when now empty)."""
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: it stays
            path.parent.rmdir()

    def load(self) -> list[tuple[StoredFrame, Path]]:
        """Return every kept frame with its copy, oldest first (synchronous).

        Partial copies an interrupted write left are removed; a copy that cannot be read is
        renamed ``*.unreadable`` and logged, never deleted.
        """
        found: list[tuple[StoredFrame, Path]] = []
        for folder in self.folders:
            if not folder.is_dir():
                continue
            if not _private(folder):
                log.error("%s is writable by others: its frames are not read", folder)
                continue
            for tmp in folder.glob(f".*{_SUFFIX}.tmp"):
                tmp.unlink(missing_ok=True)
            for path in sorted(folder.glob(f"*{_SUFFIX}")):
                try:
                    with open(path, "rb") as fh:
                        frame = pickle.load(fh)
                except Exception as exc:  # any damage or version mismatch: set it aside
                    log.error("cannot read the kept frame %s (%s); set aside", path, exc)
                    path.rename(path.with_name(path.name + _UNREADABLE))
                    continue
                found.append((frame, path))
        found.sort(key=lambda item: item[0].context.start_time)
        return found
