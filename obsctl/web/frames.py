"""What the quick-look page reads about frames: database rows, FITS headers, pixels, files.

Synchronous and short (milliseconds; a source list of a big frame is tens); the routes run
these through ``asyncio.to_thread``. Images are memory-mapped: a preview or one pixel value
of a 61 MP frame reads only what it needs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from obsctl.errors import ObsctlError
from obsctl.store.datadir import DataDir
from obsctl.store.exposure_log import ExposureLog

__all__ = [
    "FITS_SUFFIXES",
    "FrameFileError",
    "FrameImage",
    "catalog_count",
    "class_column",
    "frame_header",
    "image_path",
    "open_image",
    "pixel_value",
    "resolve_data_file",
    "sources",
    "to_physical",
]

log = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fts")

# Header cards worth a glance, in the order the page lists them.
KEY_CARDS = (
    "OBJECT",
    "IMAGETYP",
    "FILTER",
    "EXPTIME",
    "DATE-OBS",
    "AIRMASS",
    "ALT",
    "OBJCTRA",
    "OBJCTDEC",
    "PIERSIDE",
    "CCD-TEMP",
    "GAIN",
    "OFFSET",
    "XBINNING",
    "YBINNING",
    "NAXIS1",
    "NAXIS2",
    "BUNIT",
    "INSTRUME",
    "TELESCOP",
    "FWHM",
    "NSOURCES",
    "PHOTZP",
    "PHOTZPER",
    "WCSRMS",
    "PIPEPROV",
)
_FLAG_CARD = re.compile(r"^PIPEFLG\d+$")
# The keywords a celestial TAN(-SIP) WCS needs; the page evaluates it for the cursor.
_WCS_CARD = re.compile(
    r"^(CTYPE[12]|CUNIT[12]|CRVAL[12]|CRPIX[12]|CDELT[12]|CROTA2|CD[12]_[12]|PC[12]_[12]|"
    r"LONPOLE|LATPOLE|RADESYS|EQUINOX|[AB]_ORDER|[AB]_\d+_\d+)$"
)


def resolve_data_file(data_dir: DataDir | Path, relative: str) -> Path | None:
    """Return the FITS file that ``relative`` names inside ``data_dir``, or None.

    None when the path leaves the data directory (``..``, an absolute path, a symbolic link
    pointing out), is not a FITS file, or does not exist: the page may download frames and
    nothing else.

    Parameters
    ----------
    data_dir : DataDir or pathlib.Path
        The daemon's data directory.
    relative : str
        Path relative to it, as the page asks for it.
    """
    if not relative or "\x00" in relative:
        return None
    base = DataDir(data_dir).root.resolve()
    try:
        candidate = (base / relative).resolve()
        candidate.relative_to(base)
        # is_file() too raises OSError: for a name too long for the file system.
        if candidate.suffix.lower() not in FITS_SUFFIXES or not candidate.is_file():
            return None
    except (ValueError, OSError, RuntimeError):  # outside, unreadable or a link loop
        return None
    return candidate


def image_path(data_dir: DataDir, row: dict[str, Any]) -> tuple[Path, str]:
    """Return the image to show for a frame: the calibrated one when it exists, else the raw.

    Returns
    -------
    tuple
        The path and ``"calibrated"`` or ``"raw"``.
    """
    calibrated = row.get("calibrated_path")
    if calibrated:
        path = data_dir.path(calibrated)
        if path.is_file():
            return path, "calibrated"
    return data_dir.path(str(row["file_path"])), "raw"


class FrameFileError(ObsctlError):
    """A frame's FITS file cannot be shown: missing, truncated, corrupt or without an image.

    The frame's database row stays valid; a route answers with the message (404 when the
    file is missing, else 422) and the page shows it instead of the frame.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    problem : str
        What is wrong with it.
    missing : bool
        Whether the file is not on disk at all.
    """

    def __init__(self, path: Path, problem: str, *, missing: bool = False) -> None:
        super().__init__(f"{path.name}: {problem}")
        self.path = path
        self.missing = missing


@contextmanager
def _fits(path: Path, **options: Any) -> Iterator[fits.HDUList]:
    """Open a FITS file, turning astropy's and the system's errors into `FrameFileError`."""
    try:
        hdul = fits.open(path, memmap=True, **options)
    except FileNotFoundError as exc:
        raise FrameFileError(path, "the file is not on disk", missing=True) from exc
    except (OSError, ValueError) as exc:
        raise FrameFileError(path, f"not a readable FITS file ({exc})") from exc
    with hdul:
        yield hdul


def _first_image(path: Path, hdul: fits.HDUList) -> fits.PrimaryHDU | fits.ImageHDU:
    """Return the first 2-D image HDU, checking that all its pixels are in the file.

    astropy opens a truncated file with a mere warning, and reading past its end then fails
    deep inside numpy; the size check names the problem instead.
    """
    try:
        hdu = next(
            h
            for h in hdul
            if h.header.get("NAXIS") == 2 and isinstance(h, fits.PrimaryHDU | fits.ImageHDU)
        )
    except StopIteration:
        raise FrameFileError(path, "no 2-D image in the file") from None
    except (OSError, ValueError) as exc:  # a later HDU's header is corrupt
        raise FrameFileError(path, f"not a readable FITS file ({exc})") from exc
    needed = int(hdu.fileinfo()["datLoc"]) + int(hdu.size)
    actual = path.stat().st_size
    if actual < needed:
        raise FrameFileError(
            path, f"the file is truncated: {actual} bytes, its image needs {needed}"
        )
    return hdu


@dataclass
class FrameImage:
    """A memory-mapped image and its header, valid inside `open_image`'s ``with`` block.

    Attributes
    ----------
    data : numpy.ndarray
        Stored pixel values (unscaled; see ``bscale`` and ``bzero``), shape ``(ny, nx)``.
    bscale, bzero : float
        Physical value is ``data * bscale + bzero`` (FITS BSCALE/BZERO).
    header : astropy.io.fits.Header
        The image's header.
    """

    data: NDArray[Any]
    bscale: float
    bzero: float
    header: fits.Header


@contextmanager
def open_image(path: Path) -> Iterator[FrameImage]:
    """Memory-map the first 2-D image of a FITS file without scaling it.

    Unsigned 16-bit raw frames stay int16 on disk with BZERO = 32768; scaling all of them to
    float would cost more than the whole preview, so the caller scales what it reads.

    Raises
    ------
    FrameFileError
        When the file is missing, unreadable, truncated or holds no 2-D image.
    """
    with _fits(path, do_not_scale_image_data=True) as hdul:
        hdu = _first_image(path, hdul)
        header = hdu.header
        yield FrameImage(
            data=hdu.data,
            bscale=float(header.get("BSCALE", 1.0)),
            bzero=float(header.get("BZERO", 0.0)),
            header=header.copy(),
        )


def frame_header(path: Path) -> dict[str, Any]:
    """Return the key cards, pipeline flags and WCS keywords of a frame's header.

    Returns
    -------
    dict
        ``cards``: ``[keyword, value, comment]`` for `KEY_CARDS` present and each
        ``PIPEFLGn``; ``wcs``: keyword to value for the celestial WCS; ``shape``:
        ``[ny, nx]``.

    Raises
    ------
    FrameFileError
        When the file is missing or unreadable (a truncated image's header is still read).
    """
    with _fits(path) as hdul:
        try:
            hdu = next((h for h in hdul if h.header.get("NAXIS") == 2), hdul[0])
        except (OSError, ValueError) as exc:
            raise FrameFileError(path, f"not a readable FITS file ({exc})") from exc
        header = hdu.header
        cards = [
            [key, _plain(header[key]), header.comments[key]] for key in KEY_CARDS if key in header
        ]
        cards += [[k, _plain(header[k]), ""] for k in header if _FLAG_CARD.match(k)]
        wcs = {k: _plain(header[k]) for k in header if _WCS_CARD.match(k)}
        shape = [int(header.get("NAXIS2", 0)), int(header.get("NAXIS1", 0))]
    return {"cards": cards, "wcs": wcs, "shape": shape}


def _plain(value: Any) -> Any:
    """Return a header value for JSON: numbers and strings stay, anything else is text."""
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def pixel_value(path: Path, x: int, y: int) -> float | None:
    """Return the physical value of pixel ``(x, y)`` (0-based), or None outside the image.

    Raises
    ------
    FrameFileError
        When the file is missing, unreadable, truncated or holds no 2-D image.
    """
    with open_image(path) as image:
        ny, nx = image.data.shape
        if not (0 <= x < nx and 0 <= y < ny):
            return None
        return float(image.data[y, x]) * image.bscale + image.bzero


def class_column(log_db: ExposureLog) -> str | None:
    """Return the column of ``measurements`` holding a source's class, if the schema has one.

    Read from the schema rather than assumed: the classifier adds it. A text column whose
    name mentions "class" wins over an integer one; real-valued columns are scores, not
    classes.
    """
    columns = log_db.measurement_columns()
    candidates = [
        (0 if "TEXT" in str(c["type"]).upper() else 1, int(c["cid"]), str(c["name"]))
        for c in columns
        if "class" in str(c["name"]).lower()
        and not any(t in str(c["type"]).upper() for t in ("REAL", "FLOA", "DOUB"))
        and not str(c["name"]).lower().endswith(("_prob", "_score", "_p", "_confidence"))
    ]
    return min(candidates)[2] if candidates else None


def sources(log_db: ExposureLog, exposure_id: int) -> dict[str, Any]:
    """Return the measured sources of a frame for the overlay, compactly.

    Returns
    -------
    dict
        ``columns`` (names), ``rows`` (one list per source: pixel ``x``, ``y`` 0-based as
        SEP gives them, ``mag``, ``mag_err``, ``fwhm_px``, ``flags``, ``class``), ``count``
        and ``class_column`` (None when the schema has no class yet: every source is then
        "unclassified").
    """
    column = class_column(log_db)
    rows = log_db.frame_sources(exposure_id, column)
    names = ["x", "y", "mag", "mag_err", "fwhm_px", "flags", "class"]
    table = [[r[n] for n in names] for r in rows]
    for row in table:
        row[-1] = "unclassified" if row[-1] is None else str(row[-1])
    return {"columns": names, "rows": table, "count": len(table), "class_column": column}


def catalog_count(path: Path) -> int | None:
    """Return the number of rows of a FITS source catalog (its first table), or None."""
    try:
        with fits.open(path, memmap=True) as hdul:
            for hdu in hdul[1:]:
                if isinstance(hdu, fits.BinTableHDU):
                    return int(hdu.header["NAXIS2"])
    except (OSError, KeyError) as exc:
        log.warning("cannot read catalog %s: %s", path, exc)
    return None


def to_physical(values: NDArray[Any], bscale: float, bzero: float) -> NDArray[np.float32]:
    """Scale stored values to physical ones in place when float32 (FITS BSCALE/BZERO)."""
    out = np.asarray(values, dtype=np.float32)
    if bscale != 1.0:
        out *= np.float32(bscale)
    if bzero != 0.0:
        out += np.float32(bzero)
    return out
