"""What a frame's header says about its detector: gain, read noise, saturation, colour mosaic.

Frames come from many tools, and each names these things its own way: ASCOM drivers and
N.I.N.A. write ``EGAIN`` (e-/ADU) and use ``GAIN`` for the camera's gain *setting* (a number
like 100 or 139 with no unit), IRAF-era observatory pipelines write ``GAIN`` in e-/ADU,
HST writes ``ATODGAIN``. Each reader here tries the common names in order, checks that the
value is a plausible physical quantity, and says where the value came from, so a wrong guess
is visible in the frame's flags and header rather than buried in its error bars.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from astropy.io import fits

__all__ = [
    "BAYER_PATTERNS",
    "DetectorValue",
    "bayer_pattern",
    "header_gain",
    "header_read_noise",
    "header_saturation",
]

#: The four Bayer colour-filter layouts, named by the top-left 2x2 cell read row by row
#: (FITS row 1 first, the convention of ``BAYERPAT`` in N.I.N.A., SharpCap and Siril).
BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")

# Conversion gains of real cameras lie between ~0.05 e-/ADU (a high-gain CMOS mode) and
# ~20 e-/ADU (a binned, low-gain CCD mode); a GAIN card outside this range is a setting.
_GAIN_RANGE_E_PER_ADU = (0.01, 50.0)
_READ_NOISE_RANGE_E = (0.0, 200.0)
_ELECTRON_UNITS = {"ELECTRON", "ELECTRONS", "E-", "E"}
# A comment such as "e-/ADU", "electrons/ADU", "e/DN" says the value is electrons per count;
# "ADU/e-" says it is the inverse.
_PER_COUNT = re.compile(r"\b(e-?|electrons?)\s*/\s*(adu|dn|count)", re.IGNORECASE)
_PER_ELECTRON = re.compile(r"\b(adu|dn|counts?)\s*/\s*(e-?|electrons?)\b", re.IGNORECASE)
_SETTING = re.compile(r"setting|gain mode|index", re.IGNORECASE)


@dataclass(frozen=True)
class DetectorValue:
    """A detector property with where it came from.

    Attributes
    ----------
    value : float
        The value, in the unit the reader documents.
    source : str
        The header keyword it was read from, ``"config"``, ``"BUNIT"`` or ``"assumed"``.
    note : str
        Why a card was passed over or a value assumed; empty when nothing is worth saying.
    """

    value: float
    source: str
    note: str = ""

    @property
    def assumed(self) -> bool:
        """Whether no header card or configuration gave the value."""
        return self.source == "assumed"


def _number(header: fits.Header, key: str) -> float | None:
    try:
        value = float(header[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def header_gain(
    header: fits.Header, override: float | None = None, *, assume: float = 1.0
) -> DetectorValue:
    """Return a frame's conversion gain (electrons per ADU) and where it came from.

    In order: the configured `override`; 1 for images in electrons (``BUNIT``); ``EGAIN``;
    ``GAIN`` unless it is a camera setting; ``ATODGAIN``; else `assume`, marked as assumed.
    ``GAIN`` is read as a setting, not a gain, when ``EGAIN`` is also present, when its comment
    says so, or when its value is outside 0.01-50 e-/ADU; a comment in ADU per electron
    inverts it.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header.
    override : float or None, optional
        A configured gain (e-/ADU), which wins.
    assume : float, optional
        The gain (e-/ADU) used when nothing gives one.

    Returns
    -------
    DetectorValue
        The gain (e-/ADU); ``source`` names the card, ``"config"``, ``"BUNIT"`` or
        ``"assumed"``, and ``note`` says why cards were passed over.
    """
    if override is not None:
        return DetectorValue(override, "config")
    if str(header.get("BUNIT", "")).strip().upper() in _ELECTRON_UNITS:
        return DetectorValue(1.0, "BUNIT")
    low, high = _GAIN_RANGE_E_PER_ADU
    notes: list[str] = []
    for key in ("EGAIN", "GAIN", "ATODGAIN"):
        value = _number(header, key)
        if value is None:
            if key in header:
                notes.append(f"{key} = {header[key]!r} is not a number")
            continue
        comment = header.comments[key] if key in header else ""
        if key == "GAIN" and ("EGAIN" in header or _SETTING.search(comment)):
            notes.append(f"GAIN = {value:g} is the camera's gain setting")
            continue
        if _PER_ELECTRON.search(comment) and not _PER_COUNT.search(comment) and value > 0:
            value = 1.0 / value
        if not low <= value <= high:
            notes.append(f"{key} = {value:g} is not a gain in e-/ADU ({low:g}-{high:g})")
            continue
        return DetectorValue(value, key, "; ".join(notes))
    notes.append(f"no gain card (EGAIN, GAIN, ATODGAIN): {assume:g} e-/ADU assumed")
    return DetectorValue(assume, "assumed", "; ".join(notes))


def header_read_noise(header: fits.Header, default: float) -> DetectorValue:
    """Return the read noise (electrons RMS) from ``RDNOISE``, ``READNOIS`` or ``RON``.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header.
    default : float
        The configured read noise (e-), used when no card holds a plausible value (0-200 e-).

    Returns
    -------
    DetectorValue
        The read noise (e-) and the card it came from, or ``"config"``.
    """
    low, high = _READ_NOISE_RANGE_E
    for key in ("RDNOISE", "READNOIS", "RON"):
        value = _number(header, key)
        if value is not None and low <= value <= high:
            return DetectorValue(value, key)
    return DetectorValue(default, "config")


def header_saturation(header: fits.Header, default: float) -> DetectorValue:
    """Return the saturation level (ADU) from ``SATURATE`` or ``DATAMAX``, else `default`.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header.
    default : float
        The configured level (ADU).

    Returns
    -------
    DetectorValue
        The level (ADU) and its source. Only a positive card below `default` is taken: the
        configured level is the ADC's, and a card cannot raise it.
    """
    for key in ("SATURATE", "DATAMAX"):
        value = _number(header, key)
        if value is not None and 0.0 < value <= default:
            return DetectorValue(value, key)
    return DetectorValue(default, "config")


def bayer_pattern(header: fits.Header) -> str | None:
    """Return the Bayer pattern of a raw colour frame (``"RGGB"`` ...), or None for mono.

    ``BAYERPAT`` (or ``COLORTYP``) as N.I.N.A., SharpCap, Siril and INDI write it, shifted by
    ``XBAYROFF``/``YBAYROFF`` when present; else a ``FILTER`` card that names a pattern, as
    PANOPTES writes for its DSLR frames. A frame that was already demosaiced (``NAXIS3``) or
    binned (``XBINNING`` > 1, which mixes the colours) is not a mosaic, nor is the plane our
    photometry made of one (``DEMOSAIC``). A frame stored bottom-up (``ROWORDER``) with an
    even number of rows starts on the pattern's second row.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The frame's header.

    Returns
    -------
    str or None
        One of `BAYER_PATTERNS` for the pixel at the image's first row and column.
    """
    if int(header.get("NAXIS", 2) or 2) > 2 or "DEMOSAIC" in header:
        return None
    binning = _number(header, "XBINNING")
    if binning is not None and binning > 1:
        return None
    pattern = None
    for key in ("BAYERPAT", "COLORTYP", "FILTER"):
        text = str(header.get(key, "")).strip().upper()
        if text in BAYER_PATTERNS:
            pattern = text
            break
    if pattern is None:
        return None
    x_off = int(_number(header, "XBAYROFF") or 0) % 2
    y_off = int(_number(header, "YBAYROFF") or 0) % 2
    if str(header.get("ROWORDER", "")).strip().upper() == "BOTTOM-UP":
        y_off += int(_number(header, "NAXIS2") or 0) % 2 == 0
    rows = [pattern[:2], pattern[2:]]
    if y_off % 2:
        rows.reverse()
    if x_off:
        rows = [row[::-1] for row in rows]
    return "".join(rows)
