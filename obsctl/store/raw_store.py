"""The raw store: every frame as a FITS file under ``<data>/raw/<night>/``, written atomically.

File names are predictable and sort in acquisition order::

    raw/2026-11-25/2026-11-25_0042_LIGHT_M51_V_30s.fits

A file appears under its final name only once it is complete and fsynced (`write_fits_atomic`),
so a crash leaves at most a hidden ``.*.tmp`` file, which `clean_partial` removes at start.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astropy.io import fits
from numpy.typing import NDArray

from obsctl.store.fitsfile import remove_partial_writes, write_fits_atomic
from obsctl.store.headers import FrameContext, fits_text

__all__ = ["RawStore", "StoredFrame", "safe_name"]

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9.+-]+")
_FRAME_NUMBER = re.compile(r"^\d{4}-\d{2}-\d{2}_(\d+)_")


def safe_name(text: str | None, default: str = "none") -> str:
    """Return ``text`` reduced to characters safe in a file name on every OS.

    Other scripts are spelled in ASCII first (`obsctl.store.headers.fits_text`): a frame of
    the Greek-lettered ``alpha Ori`` is named ``alpha-Ori``, not ``Ori``.
    """
    cleaned = _UNSAFE.sub("-", fits_text(text or "")).strip("-.")
    return cleaned[:40] or default


def _format_exposure(exposure_s: float) -> str:
    return f"{exposure_s:g}".replace(".", "p")


class RawStore:
    """Raw frames on disk.

    Parameters
    ----------
    root : pathlib.Path
        The ``raw`` directory (created when missing).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._next: dict[str, int] = {}

    def clean_partial(self) -> list[Path]:
        """Remove temporary files that a crash left behind; return what was removed."""
        return remove_partial_writes(self.root)

    def frames(self, night: str | None = None) -> Iterator[Path]:
        """Yield stored frame files, of one night or all, in name order."""
        pattern = f"{night}/*.fits" if night else "*/*.fits"
        yield from sorted(self.root.glob(pattern))

    def next_frame_number(self, night: str) -> int:
        """Return the next free frame number of a night (1 for a new night)."""
        if night not in self._next:
            numbers = [
                int(m.group(1))
                for p in self.frames(night)
                if (m := _FRAME_NUMBER.match(p.name)) is not None
            ]
            self._next[night] = max(numbers, default=0) + 1
        number = self._next[night]
        self._next[night] = number + 1
        return number

    def path_for(
        self,
        *,
        night: str,
        frame_number: int,
        image_type: str,
        target: str | None,
        filter_name: str | None,
        exposure_s: float,
    ) -> Path:
        """Return the file name of a frame."""
        name = (
            f"{night}_{frame_number:04d}_{image_type.upper()}_{safe_name(target, 'cal')}_"
            f"{safe_name(filter_name)}_{_format_exposure(exposure_s)}s.fits"
        )
        return self.root / night / name

    def write(self, path: Path, data: NDArray[Any], header: fits.Header) -> Path:
        """Write one frame atomically (see `write_fits_atomic`)."""
        return write_fits_atomic(path, data, header)

    def relative(self, path: Path) -> str:
        """Return a frame's path relative to the data directory (as logged)."""
        return str(path.relative_to(self.root.parent))


@dataclass(frozen=True, slots=True)
class StoredFrame:
    """A frame waiting to be written, with where it belongs in its sequence."""

    context: FrameContext
    sequence_id: int | None
    step_index: int | None
    frame_index: int | None
    devices: dict[str, str | None]
