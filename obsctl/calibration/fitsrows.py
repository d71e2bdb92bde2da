"""Reading the rows of a FITS image on demand, so that stacks combine within a tile of memory."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from numpy.typing import NDArray

__all__ = ["FitsRows"]

log = logging.getLogger(__name__)

# FITS BITPIX to the (big-endian) dtype of the data on disk.
_BITPIX_DTYPE = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


class FitsRows:
    """Rows of the first image in a FITS file, read on demand with positioned reads.

    Only the rows asked for are read and converted, so a stack of these combines within a
    tile of memory (`obsctl.processing.combine`). Reads go through ``os.preadv`` rather than a
    memory map, so the pages of dozens of large files never add up in the process's resident
    memory. The usual unsigned 16-bit encoding (int16 with ``BZERO = 32768``) is decoded by
    flipping the sign bit, without going through float. Several threads may read at once.

    Parameters
    ----------
    path : str or pathlib.Path
        The FITS file (uncompressed).

    Raises
    ------
    OSError
        If the file cannot be read.
    ValueError
        If it holds no two-dimensional uncompressed image.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.header, self._offset = self._image_header()
        bitpix = int(self.header["BITPIX"])
        if bitpix not in _BITPIX_DTYPE:
            raise ValueError(f"{self.path}: unsupported BITPIX {bitpix}")
        self._dtype = np.dtype(_BITPIX_DTYPE[bitpix])
        self._shape = (int(self.header["NAXIS2"]), int(self.header["NAXIS1"]))
        self._bzero = float(self.header.get("BZERO", 0.0))
        self._bscale = float(self.header.get("BSCALE", 1.0))
        self._u16 = bitpix == 16 and self._bzero == 32768.0 and self._bscale == 1.0
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        needed = self._offset + self._shape[0] * self._shape[1] * self._dtype.itemsize
        if os.fstat(self._fd).st_size < needed:
            self.close()
            raise OSError(f"{self.path}: file ends inside the image (truncated)")

    def _image_header(self) -> tuple[fits.Header, int]:
        """Return the header of the first 2-D image and where its data starts (bytes)."""
        with warnings.catch_warnings():
            # A truncated file is reported as an OSError (below), not as astropy's warning.
            warnings.simplefilter("ignore", AstropyUserWarning)
            with fits.open(self.path, memmap=False, do_not_scale_image_data=True) as hdul:
                for index, hdu in enumerate(hdul):
                    if not (hdu.is_image and hdu.header.get("NAXIS") == 2):
                        continue
                    if isinstance(hdu, fits.CompImageHDU):
                        raise ValueError(f"{self.path}: compressed images are not supported")
                    return hdu.header.copy(), int(hdul.fileinfo(index)["datLoc"])
        raise ValueError(f"{self.path}: no two-dimensional image")

    @property
    def shape(self) -> tuple[int, ...]:
        """``(ny, nx)`` of the image (pixels)."""
        return self._shape

    def _read(self, out: NDArray[Any], row: int) -> None:
        view = out.view(np.uint8).reshape(-1).data
        offset = self._offset + row * self._shape[1] * self._dtype.itemsize
        done = 0
        while done < view.nbytes:
            if hasattr(os, "preadv"):
                got = os.preadv(self._fd, [view[done:]], offset + done)
            else:  # Windows: no preadv; pread copies once more
                chunk = os.pread(self._fd, view.nbytes - done, offset + done)
                view[done : done + len(chunk)] = chunk
                got = len(chunk)
            if got <= 0:
                raise OSError(f"{self.path}: file ends inside the image (truncated)")
            done += got

    def __getitem__(self, key: slice, /) -> NDArray[Any]:
        """Return the rows selected by ``key`` as physical values (ADU)."""
        start, stop, step = key.indices(self._shape[0])
        rows = range(start, stop, step)
        raw = np.empty((len(rows), self._shape[1]), dtype=self._dtype)
        if step == 1:
            self._read(raw, start)
        else:
            for i, row in enumerate(rows):
                self._read(raw[i : i + 1], row)
        if self._u16:
            # int16 + 32768 is the same bits as uint16 with the top bit flipped; the ufunc's
            # output is native-endian whatever the file's byte order.
            flipped: NDArray[np.uint16] = np.bitwise_xor(raw.view(">u2"), np.uint16(0x8000))
            return flipped
        if self._bzero == 0.0 and self._bscale == 1.0:
            return raw
        scaled: NDArray[np.float32] = raw.astype(np.float32)
        scaled *= np.float32(self._bscale)
        scaled += np.float32(self._bzero)
        return scaled

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FitsRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
