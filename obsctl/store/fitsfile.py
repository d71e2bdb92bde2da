"""Writing FITS files so that a crash never leaves a partial file under the final name."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

__all__ = ["remove_partial_writes", "write_fits_atomic"]

log = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which races with threads.
_UMASK = _umask()


def write_fits_atomic(
    path: str | Path,
    data: NDArray[Any],
    header: fits.Header | Iterable[tuple[str, Any]] | None = None,
    *,
    durable: bool = True,
    extensions: Iterable[fits.ImageHDU] = (),
) -> Path:
    """Write a primary-HDU FITS file: temporary name, fsync, rename, fsync of the directory.

    Parameters
    ----------
    path : str or pathlib.Path
        Final file name; its directory is created if missing.
    data : numpy.ndarray
        Pixels; ``uint16`` is stored the FITS way (int16 with BZERO = 32768).
    header : astropy.io.fits.Header, iterable of (key, value) or None
        Extra header cards.
    durable : bool
        fsync the file and its directory (raw frames). Derived products that can be made
        again from the raw frame skip it: on a 61 MP float32 frame it costs tens of ms.
    extensions : iterable of astropy.io.fits.ImageHDU, optional
        Image extensions written after the primary HDU (for example a mask).

    Returns
    -------
    pathlib.Path
        The final path.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    hdu = fits.PrimaryHDU(np.asarray(data), header=fits.Header(header) if header else None)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    # mkstemp creates 0600; frames are for everyone the umask allows, like any new file.
    os.fchmod(fd, 0o666 & ~_UMASK)
    try:
        with os.fdopen(fd, "wb") as fh:
            fits.HDUList([hdu, *extensions]).writeto(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp_name, final)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    if not durable:
        return final
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    log.debug("wrote %s", final)
    return final


def remove_partial_writes(root: str | Path) -> list[Path]:
    """Remove the hidden ``.*.tmp`` files interrupted writes left in ``root``'s night folders.

    `write_fits_atomic` (and the catalog writer) only ever leave such files behind, never a
    partial file under a final name. Returns what was removed.
    """
    removed = []
    for tmp in sorted(Path(root).glob("*/.*.tmp")):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
        log.warning("removed partial file %s left by an interrupted write", tmp)
    return removed
