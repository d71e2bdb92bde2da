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

from obsctl.store.exposure_log import ExposureLog

__all__ = [
    "FITS_SUFFIXES",
    "METRIC_COLUMNS",
    "FrameImage",
    "catalog_count",
    "class_column",
    "frame_header",
    "frame_row",
    "image_path",
    "latest_frame",
    "night_log",
    "nights",
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
#: The frame metrics the page shows (trends and the frame panel).
METRIC_COLUMNS = (
    "fwhm_px",
    "fwhm_arcsec",
    "hfr_arcsec",
    "ellipticity",
    "star_count",
    "background",
    "background_rms",
    "zero_point",
    "zero_point_err",
    "limiting_mag",
    "wcs_rms_arcsec",
)


def resolve_data_file(data_dir: Path, relative: str) -> Path | None:
    """Return the FITS file that ``relative`` names inside ``data_dir``, or None.

    None when the path leaves the data directory (``..``, an absolute path, a symbolic link
    pointing out), is not a FITS file, or does not exist: the page may download frames and
    nothing else.

    Parameters
    ----------
    data_dir : pathlib.Path
        The daemon's data directory.
    relative : str
        Path relative to it, as the page asks for it.
    """
    if not relative or "\x00" in relative:
        return None
    base = data_dir.resolve()
    try:
        candidate = (base / relative).resolve()
        candidate.relative_to(base)
    except (ValueError, OSError, RuntimeError):  # outside, unreadable or a link loop
        return None
    if candidate.suffix.lower() not in FITS_SUFFIXES or not candidate.is_file():
        return None
    return candidate


def nights(log_db: ExposureLog) -> list[dict[str, Any]]:
    """Return the nights in the log, newest first, with their frame counts."""
    return log_db.query(
        "SELECT night, COUNT(*) AS frames, MIN(date_obs) AS first, MAX(date_obs) AS last "
        "FROM exposures GROUP BY night ORDER BY night DESC"
    )


def latest_frame(log_db: ExposureLog) -> int | None:
    """Return the newest processed light frame, else the newest light frame, else None."""
    rows = log_db.query(
        "SELECT e.id FROM exposures e JOIN processing p ON p.exposure_id = e.id "
        "WHERE p.state = 'done' ORDER BY e.id DESC LIMIT 1"
    )
    if not rows:
        rows = log_db.query(
            "SELECT id FROM exposures WHERE image_type = 'LIGHT' ORDER BY id DESC LIMIT 1"
        )
    return int(rows[0]["id"]) if rows else None


def night_log(log_db: ExposureLog, night: str | None) -> list[dict[str, Any]]:
    """Return the exposure log of a night (all nights for None) with processing results."""
    sql = (
        "SELECT e.id, e.night, e.date_obs, e.mjd_mid, e.target, e.image_type, e.filter, "
        "e.exposure_s, e.airmass, e.status, e.file_path, p.state AS processing, "
        "m.fwhm_arcsec, m.star_count, m.zero_point FROM exposures e "
        "LEFT JOIN processing p ON p.exposure_id = e.id "
        "LEFT JOIN frame_metrics m ON m.exposure_id = e.id"
    )
    args: tuple[str, ...] = ()
    if night is not None:
        sql += " WHERE e.night = ?"
        args = (night,)
    return log_db.query(sql + " ORDER BY e.id", args)


def frame_row(log_db: ExposureLog, exposure_id: int) -> dict[str, Any] | None:
    """Return one exposure with its processing state and frame metrics, or None."""
    metrics = ", ".join(f"m.{c}" for c in METRIC_COLUMNS)
    rows = log_db.query(
        f"SELECT e.*, p.state AS processing, p.stage AS failed_stage, p.reason, "
        f"p.calibrated_path, p.catalog_path, m.flags AS metric_flags, {metrics} "
        "FROM exposures e LEFT JOIN processing p ON p.exposure_id = e.id "
        "LEFT JOIN frame_metrics m ON m.exposure_id = e.id WHERE e.id = ?",
        (exposure_id,),
    )
    return rows[0] if rows else None


def image_path(data_dir: Path, row: dict[str, Any]) -> tuple[Path, str]:
    """Return the image to show for a frame: the calibrated one when it exists, else the raw.

    Returns
    -------
    tuple
        The path and ``"calibrated"`` or ``"raw"``.
    """
    calibrated = row.get("calibrated_path")
    if calibrated:
        path = data_dir / calibrated
        if path.is_file():
            return path, "calibrated"
    return data_dir / str(row["file_path"]), "raw"


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
    OSError, ValueError
        When the file is unreadable or holds no 2-D image.
    """
    with fits.open(path, memmap=True, do_not_scale_image_data=True) as hdul:
        for hdu in hdul:
            if hdu.header.get("NAXIS") == 2 and isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU):
                header = hdu.header
                yield FrameImage(
                    data=hdu.data,
                    bscale=float(header.get("BSCALE", 1.0)),
                    bzero=float(header.get("BZERO", 0.0)),
                    header=header.copy(),
                )
                return
    raise ValueError(f"{path}: no 2-D image in the file")


def frame_header(path: Path) -> dict[str, Any]:
    """Return the key cards, pipeline flags and WCS keywords of a frame's header.

    Returns
    -------
    dict
        ``cards``: ``[keyword, value, comment]`` for `KEY_CARDS` present and each
        ``PIPEFLGn``; ``wcs``: keyword to value for the celestial WCS; ``shape``:
        ``[ny, nx]``.
    """
    with fits.open(path, memmap=True) as hdul:
        hdu = next((h for h in hdul if h.header.get("NAXIS") == 2), hdul[0])
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
    """Return the physical value of pixel ``(x, y)`` (0-based), or None outside the image."""
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
    columns = log_db.query("PRAGMA table_info(measurements)")
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
    klass = "NULL" if column is None else '"' + column.replace('"', '""') + '"'
    rows = log_db.query(
        f"SELECT x, y, mag, mag_err, fwhm_px, flags, {klass} AS class FROM measurements "
        "WHERE exposure_id = ? ORDER BY id",
        (exposure_id,),
    )
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
