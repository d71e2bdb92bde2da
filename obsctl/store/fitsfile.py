"""Writing FITS files so that a crash never leaves a partial file under the final name.

`incomplete_fits` tells, from the headers alone, whether a file holds all the data they
declare: a truncated file, or one whose header promises absurd sizes, is named as such
before astropy tries to read it.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

__all__ = ["incomplete_fits", "remove_partial_writes", "write_fits_atomic"]

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
    try:
        # mkstemp creates 0600; frames are for everyone the umask allows, like any new file.
        os.fchmod(fd, 0o666 & ~_UMASK)
    finally:
        os.close(fd)
    try:
        # Opened by name, not through the descriptor: when a write fails, astropy looks up
        # the file's directory to report the free space, and on a file without a name it
        # raises an AttributeError that hides the OSError (a full disk).
        with open(tmp_name, "wb") as fh:
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


_BLOCK = 2880  # bytes in a FITS block
_CARD = 80  # bytes in a header card
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"PK\x03\x04")  # gzip, bzip2, zip: what astropy opens


def _header_cards(fh: Any) -> dict[str, str] | None:
    """Read one header's ``KEY = value`` cards up to END; None when the file ends first."""
    cards: dict[str, str] = {}
    while True:
        block = fh.read(_BLOCK)
        if len(block) < _BLOCK:
            return None
        for start in range(0, _BLOCK, _CARD):
            card = block[start : start + _CARD].decode("ascii", errors="replace")
            key = card[:8].rstrip()
            if key == "END":
                return cards
            if card[8:10] == "= ":
                cards.setdefault(key, card[10:].split("/", 1)[0].strip())


def _data_bytes(cards: dict[str, str], hdu: int) -> tuple[int, str] | str:
    """Return the data size (bytes) a header declares and its shape, or what is invalid."""
    try:
        naxis = int(cards.get("NAXIS", "0"))
        bitpix = int(cards["BITPIX"])
        dims = [int(cards[f"NAXIS{i}"]) for i in range(1, naxis + 1)]
        pcount = int(cards.get("PCOUNT", "0"))
        gcount = int(cards.get("GCOUNT", "1"))
    except (KeyError, ValueError) as exc:
        return f"HDU {hdu} has a missing or invalid size keyword ({exc})"
    if bitpix not in (8, 16, 32, 64, -32, -64) or min([naxis, pcount, gcount, *dims]) < 0:
        return (
            f"HDU {hdu} declares BITPIX {bitpix}, NAXIS {naxis} ({dims}), PCOUNT {pcount} "
            f"and GCOUNT {gcount}: not a valid FITS size"
        )
    if naxis == 0:
        return 0, "no data"
    shape = " x ".join(str(n) for n in dims)
    if cards.get("GROUPS") == "T" and dims[0] == 0:  # random groups: NAXIS1 = 0 is a marker
        dims = dims[1:]
    return abs(bitpix) // 8 * gcount * (pcount + math.prod(dims)), f"{shape} at BITPIX {bitpix}"


def incomplete_fits(path: str | Path) -> str | None:
    """Return what makes a FITS file incomplete, or None when every HDU's data is there.

    Only the headers are read: each HDU's data size follows from BITPIX, NAXISn, PCOUNT and
    GCOUNT, and must fit in the file. Bytes after the last HDU that are not a header are
    left alone, as astropy does; so are compressed files (gzip, bzip2, zip), which astropy
    checks as it unpacks them.

    Parameters
    ----------
    path : str or pathlib.Path
        The file.

    Returns
    -------
    str or None
        What is wrong (a truncated file, a header declaring more data than the file holds,
        an invalid size keyword, not FITS at all), without the file name; None when
        complete.

    Raises
    ------
    OSError
        When the file cannot be read.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        hdu, start = 0, 0
        while start < size:
            fh.seek(start)
            first = fh.read(_CARD)
            if hdu == 0 and first.startswith(_COMPRESSED):
                return None
            wanted = "SIMPLE  =" if hdu == 0 else "XTENSION="
            if not first.startswith(wanted.encode()):
                return "not a FITS file (it does not start with SIMPLE)" if hdu == 0 else None
            fh.seek(start)
            cards = _header_cards(fh)
            if cards is None:
                return f"the file ends inside the header of HDU {hdu}: it is truncated"
            declared = _data_bytes(cards, hdu)
            if isinstance(declared, str):
                return declared
            nbytes, shape = declared
            data_start = fh.tell()
            if data_start + nbytes > size:
                return (
                    f"HDU {hdu} declares {shape} ({nbytes} bytes of data) but only "
                    f"{size - data_start} bytes follow its header: the file is truncated "
                    "or its header damaged"
                )
            hdu += 1
            start = data_start + (nbytes + _BLOCK - 1) // _BLOCK * _BLOCK  # padded
    return None
