"""The data directory: the one owner of every path under it.

::

    <data>/
        obsctl.sqlite       the exposure log (and every table beside it)
        obsctl.lock         held by the running daemon
        catalog.sqlite      the local reference catalog
        raw/<night>/        raw frames, as taken
        reduced/<night>/    calibrated frames, source catalogs, difference candidates
        masters/<night>/    calibration masters
        references/         reference images of fields (difference imaging)
        unstored/           frames that could not be stored yet, kept until they are
        quarantine/<night>/ raw files found damaged at start, set aside

Nothing else in obsctl spells these names: callers ask `DataDir` for a path, for the log, or
for a logged (relative) path resolved. A `DataDir` is a small frozen value, so it crosses to
the pipeline's worker processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from obsctl.errors import StorageError
from obsctl.store.exposure_log import ExposureLog
from obsctl.store.fitsfile import remove_partial_writes
from obsctl.store.raw_store import RawStore

__all__ = ["DataDir"]

log = logging.getLogger(__name__)

_LOG_NAME = "obsctl.sqlite"
_LOCK_NAME = "obsctl.lock"
_CATALOG_NAME = "catalog.sqlite"
_RAW = "raw"
_REDUCED = "reduced"
_MASTERS = "masters"
_UNSTORED = "unstored"
_QUARANTINE = "quarantine"
# Longest first: "a.fits.fz" loses ".fits.fz", not ".fz" alone.
_FITS_SUFFIXES = (
    *(base + packed for packed in (".fz", ".gz", ".bz2", "") for base in (".fits", ".fit", ".fts")),
    ".fz",
)


@dataclass(frozen=True)
class DataDir:
    """Paths, the lock and the databases of one data directory.

    Parameters
    ----------
    root : str, pathlib.Path or DataDir
        The directory (``[data] directory`` of the config); created by `create`.
    """

    root: Path

    def __init__(self, root: str | Path | DataDir) -> None:
        object.__setattr__(self, "root", root.root if isinstance(root, DataDir) else Path(root))

    # -- paths ------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        """The exposure log's database file."""
        return self.root / _LOG_NAME

    @property
    def catalog_path(self) -> Path:
        """The local reference catalog's database file."""
        return self.root / _CATALOG_NAME

    @property
    def raw(self) -> Path:
        """The folder of raw frames (one subfolder per night)."""
        return self.root / _RAW

    @property
    def unstored(self) -> Path:
        """The folder of frames held while they could not be stored (`obsctl.store.writer`)."""
        return self.root / _UNSTORED

    @property
    def quarantine(self) -> Path:
        """The folder of raw files found damaged at start (one subfolder per night)."""
        return self.root / _QUARANTINE

    def master_file(self, night: str, name: str) -> str:
        """Return where a master of ``night`` named ``name`` goes, relative to the root."""
        return f"{_MASTERS}/{night}/{name}"

    def reduced_files(self, raw_frame: Path) -> tuple[Path, Path]:
        """Return the calibrated frame and the source catalog made from a frame.

        Frames of the raw store go to ``reduced/<night>/``; files from elsewhere get theirs
        beside them (``name_cal.fits`` and ``name_cat.fits``).
        """
        stem = raw_frame.name
        for suffix in _FITS_SUFFIXES:
            if stem.lower().endswith(suffix) and len(stem) > len(suffix):
                stem = stem[: -len(suffix)]
                break
        folder = raw_frame.parent
        if raw_frame.parent.parent == self.raw:
            folder = self.root / _REDUCED / raw_frame.parent.name
        return folder / f"{stem}_cal.fits", folder / f"{stem}_cat.fits"

    def difference_file(self, raw_frame: Path) -> Path:
        """Return where difference imaging's candidates and cutouts of a frame go.

        Beside its calibrated frame (`reduced_files`): ``name_diff.fits``.
        """
        calibrated, _ = self.reduced_files(raw_frame)
        return calibrated.with_name(calibrated.name.removesuffix("_cal.fits") + "_diff.fits")

    def path(self, relative: str) -> Path:
        """Return the file a logged path (relative to the root) names."""
        return self.root / relative

    def relative(self, path: str | Path) -> str:
        """Return a path as logged: relative to the root when inside it, else as given."""
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(path)

    # -- state ------------------------------------------------------------------------------

    def create(self) -> None:
        """Create the directory (and its parents) if missing.

        Raises
        ------
        StorageError
            When it cannot be created.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the data directory {self.root}: {exc}") from exc

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the directory's lock, so that two daemons never share it.

        Raises
        ------
        StorageError
            When another daemon holds it, or the lock file cannot be created (a read-only
            data directory).
        """
        path = self.root / _LOCK_NAME
        try:
            fh = open(path, "a+")  # noqa: SIM115 -- closed below; its errors are ours to say
        except OSError as exc:
            raise StorageError(
                f"cannot create the lock {path}: {exc.strerror}; the data directory "
                f"{self.root} must be writable (frames, the exposure log and the lock go there)"
            ) from exc
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StorageError(
                    f"another obsctl daemon is running on {self.root} (it holds {path})"
                ) from exc
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def has_log(self) -> bool:
        """Return whether the exposure log exists."""
        return self.log_path.exists()

    def open_log(self, *, existing: bool = False) -> ExposureLog:
        """Open the exposure log (created when missing, unless ``existing``).

        Raises
        ------
        StorageError
            With ``existing``, when there is none; or when it cannot be opened.
        """
        if existing and not self.has_log():
            raise StorageError(f"no exposure log at {self.log_path}")
        return ExposureLog(self.log_path)

    def remove_partial_writes(self) -> list[Path]:
        """Remove the temporary files interrupted writes left under raw, reduced and masters."""
        removed: list[Path] = []
        for folder in (_RAW, _REDUCED, _MASTERS):
            removed += remove_partial_writes(self.root / folder)
        return removed

    def raw_store(self) -> RawStore:
        """Return the raw store (its folder is created when missing).

        Raises
        ------
        StorageError
            When its folder cannot be created.
        """
        try:
            return RawStore(self.raw)
        except OSError as exc:
            raise StorageError(f"cannot create the raw frames folder {self.raw}: {exc}") from exc
