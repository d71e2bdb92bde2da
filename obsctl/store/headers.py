"""FITS headers of raw frames, from device values read at exposure time (not from the plan).

Pure functions: the sequencer gathers a `FrameContext` and `raw_header` turns it into the
standard keywords that other tools (astropy, ASTAP, PixInsight, Siril, N.I.N.A.-style
pipelines) read, plus an approximate TAN WCS from the mount pointing, pixel size and focal
length for the pipeline's astrometric refinement.
"""

from __future__ import annotations

import math
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta

from astropy.io import fits

from obsctl.clock import night_of
from obsctl.config import SiteConfig, TelescopeConfig
from obsctl.coords import julian_date
from obsctl.devices import CameraImage, MountStatus

__all__ = [
    "FrameContext",
    "SlitRecord",
    "airmass",
    "date_obs",
    "fits_text",
    "mjd",
    "object_name",
    "pixel_scale_from_header",
    "raw_header",
    "set_text_card",
    "sexagesimal",
]

_MJD_OFFSET = 2400000.5
_RAD_TO_ARCSEC = 206264.80624709636

#: The keyword holding a target name that is not printable ASCII, UTF-8 percent-encoded.
OBJECT_UTF8_KEY = "OBJUTF8"
# Every printable ASCII character but "%" stays as it is in the percent-encoded name.
_PERCENT_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_GREEK = re.compile(r"GREEK (SMALL|CAPITAL) LETTER (?:FINAL )?([A-Z]+)$")
# Unicode spells the letter "LAMDA"; astronomers write lambda.
_GREEK_SPELLING = {"lamda": "lambda"}
# Letters and signs that Unicode does not decompose into ASCII but that have an obvious one.
_SPELLED = {
    "\N{LATIN SMALL LETTER SHARP S}": "ss",
    "\N{LATIN SMALL LETTER AE}": "ae",
    "\N{LATIN CAPITAL LETTER AE}": "AE",
    "\N{LATIN SMALL LIGATURE OE}": "oe",
    "\N{LATIN CAPITAL LIGATURE OE}": "OE",
    "\N{LATIN SMALL LETTER O WITH STROKE}": "o",
    "\N{LATIN CAPITAL LETTER O WITH STROKE}": "O",
    "\N{LATIN SMALL LETTER D WITH STROKE}": "d",
    "\N{LATIN CAPITAL LETTER D WITH STROKE}": "D",
    "\N{LATIN SMALL LETTER L WITH STROKE}": "l",
    "\N{LATIN CAPITAL LETTER L WITH STROKE}": "L",
    "\N{LATIN SMALL LETTER DOTLESS I}": "i",
    "\N{HYPHEN}": "-",
    "\N{NON-BREAKING HYPHEN}": "-",
    "\N{FIGURE DASH}": "-",
    "\N{EN DASH}": "-",
    "\N{EM DASH}": "-",
    "\N{MINUS SIGN}": "-",
    "\N{LEFT SINGLE QUOTATION MARK}": "'",
    "\N{RIGHT SINGLE QUOTATION MARK}": "'",
    "\N{LEFT DOUBLE QUOTATION MARK}": '"',
    "\N{RIGHT DOUBLE QUOTATION MARK}": '"',
}


def _ascii_char(char: str) -> str:
    if " " <= char <= "~":
        return char
    if char in _SPELLED:
        return _SPELLED[char]
    category = unicodedata.category(char)
    if category[0] in "CZ":  # controls, format characters, separators
        return " "
    greek = _GREEK.match(unicodedata.name(char, ""))
    if greek is not None:
        word = greek.group(2).lower()
        word = _GREEK_SPELLING.get(word, word)
        return word.capitalize() if greek.group(1) == "CAPITAL" else word
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def fits_text(text: str) -> str:
    r"""Return a printable-ASCII form of ``text`` for a FITS card.

    FITS values hold printable ASCII only. Greek letters become their names (alpha Ori for
    the name with the Greek letter), accents are dropped, a few letters and signs get their
    usual ASCII spelling (sharp s as ss, an en dash as a hyphen), control characters and
    separators become spaces, and anything else a Python escape (``\u2605`` for a star).
    Printable ASCII text is returned unchanged.

    Parameters
    ----------
    text : str
        Any Unicode text.

    Returns
    -------
    str
        Text of characters from space to ``~`` only.
    """
    if text.isascii() and text.isprintable():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    kept = (c for c in decomposed if unicodedata.category(c) != "Mn")  # combining accents
    return "".join(_ascii_char(c) for c in kept)


def object_name(header: fits.Header) -> str | None:
    """Return the target name a raw header records, exactly as it was given.

    The ``OBJUTF8`` card (the UTF-8 name, percent-encoded) when the name was not printable
    ASCII, else ``OBJECT``; None when neither is there.
    """
    if OBJECT_UTF8_KEY in header:
        return urllib.parse.unquote(str(header[OBJECT_UTF8_KEY]), errors="strict")
    value = header.get("OBJECT")
    return None if value is None else str(value)


def date_obs(when: datetime) -> str:
    """Return the DATE-OBS of an exposure started at ``when`` (UTC, to the millisecond)."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def mjd(when: datetime) -> float:
    """Return the modified Julian date (UTC) of a timezone-aware datetime."""
    return julian_date(when) - _MJD_OFFSET


def airmass(alt_deg: float) -> float | None:
    """Return the airmass at an altitude (Pickering 2002), None below the horizon.

    Parameters
    ----------
    alt_deg : float
        Apparent altitude in degrees.
    """
    if alt_deg <= 0:
        return None
    return 1.0 / math.sin(math.radians(alt_deg + 244.0 / (165.0 + 47.0 * alt_deg**1.1)))


def sexagesimal(value: float, *, hours: bool) -> str:
    """Format degrees as ``HH MM SS.ss`` (``hours=True``) or ``+DD MM SS.s``."""
    if hours:
        total = (value % 360.0) / 15.0 * 3600.0
        h, rem = divmod(round(total, 2), 3600.0)
        m, s = divmod(rem, 60.0)
        return f"{int(h) % 24:02d} {int(m):02d} {s:05.2f}"
    sign = "-" if value < 0 else "+"
    total = abs(value) * 3600.0
    d, rem = divmod(round(total, 1), 3600.0)
    m, s = divmod(rem, 60.0)
    return f"{sign}{int(d):02d} {int(m):02d} {s:04.1f}"


@dataclass(frozen=True, slots=True)
class SlitRecord:
    """Where a slaved dome's slit was during a light frame (``DOMEAZ``, ``DOMEERR``, ``DOMEOK``).

    Attributes
    ----------
    azimuth_deg : float
        The slit's azimuth at the exposure's start (deg).
    error_deg : float
        The larger of its distances from the required azimuth at the start and the end (deg).
    aligned : bool
        Whether that is within ``[dome] tolerance_deg``; a frame taken with the slit off is
        flagged by False.
    """

    azimuth_deg: float
    error_deg: float
    aligned: bool


@dataclass(frozen=True, slots=True)
class FrameContext:
    """Everything known about one frame when it is stored.

    Attributes
    ----------
    image : CameraImage
        Pixels and camera metadata.
    image_type : str
        ``LIGHT``, ``DARK``, ``BIAS`` or ``FLAT``.
    site, telescope : SiteConfig, TelescopeConfig
        Where and with what.
    frame_number : int
        The frame's number within its night.
    start_time : datetime
        UTC start of the exposure (the camera's, else the sequencer's clock).
    target : str or None
        Object name.
    filter_name : str or None
        Filter in the beam.
    mount : MountStatus or None
        Mount state read at exposure start.
    rotation_deg : float
        Camera position angle on the sky (east of north) for the approximate WCS.
    slit : SlitRecord or None
        A slaved dome's slit during the frame; None without one.
    panel_brightness : int or None
        A panel flat's lamp brightness in the panel's steps; None for a sky flat or any
        other frame.
    dither_px : tuple of float or None
        A dithered visit's offset of this frame (x, y) in pixels; None when not dithered in
        pixels.
    dither_arcsec : tuple of float or None
        The same (east, north) on the sky (arcsec); None when the visit is not dithered.
    """

    image: CameraImage
    image_type: str
    site: SiteConfig
    telescope: TelescopeConfig
    frame_number: int
    start_time: datetime
    target: str | None = None
    filter_name: str | None = None
    mount: MountStatus | None = None
    rotation_deg: float = 0.0
    slit: SlitRecord | None = None
    panel_brightness: int | None = None
    dither_px: tuple[float, float] | None = None
    dither_arcsec: tuple[float, float] | None = None


def _approximate_wcs(header: fits.Header, ctx: FrameContext) -> None:
    m = ctx.image.metadata
    assert ctx.mount is not None
    ny, nx = ctx.image.data.shape[:2]
    scale_x = m.pixel_size_x_um * m.bin_x * 1e-3 / ctx.telescope.focal_length_mm
    scale_y = m.pixel_size_y_um * m.bin_y * 1e-3 / ctx.telescope.focal_length_mm
    cdelt1 = -math.degrees(scale_x)  # east to the left, as on the sky seen from below
    cdelt2 = math.degrees(scale_y)
    rot = math.radians(ctx.rotation_deg)
    header["WCSAXES"] = (2, "approximate WCS from mount pointing")
    header["CTYPE1"] = "RA---TAN"
    header["CTYPE2"] = "DEC--TAN"
    header["CUNIT1"] = "deg"
    header["CUNIT2"] = "deg"
    header["CRVAL1"] = (ctx.mount.ra_deg, "[deg] RA of reference pixel (mount)")
    header["CRVAL2"] = (ctx.mount.dec_deg, "[deg] Dec of reference pixel (mount)")
    header["CRPIX1"] = ((nx + 1) / 2.0, "reference pixel x (frame centre)")
    header["CRPIX2"] = ((ny + 1) / 2.0, "reference pixel y (frame centre)")
    header["CD1_1"] = cdelt1 * math.cos(rot)
    header["CD1_2"] = -cdelt2 * math.sin(rot)
    header["CD2_1"] = cdelt1 * math.sin(rot)
    header["CD2_2"] = cdelt2 * math.cos(rot)
    header["PIXSCALE"] = (
        round(scale_y * _RAD_TO_ARCSEC, 4),
        "[arcsec/px] binned pixel scale",
    )


def raw_header(ctx: FrameContext) -> fits.Header:
    """Return the header of a raw frame.

    Parameters
    ----------
    ctx : FrameContext
        The frame and what was known when it was taken.

    Returns
    -------
    astropy.io.fits.Header
        Standard keywords (DATE-OBS, MJD-OBS, EXPTIME, IMAGETYP, OBJECT, pointing, site,
        camera settings; BAYERPAT, XBAYROFF, YBAYROFF and ROWORDER for an unbinned frame of
        a colour sensor) and, for light frames with a mount, an approximate WCS. SIMPLE to
        NAXIS are added by astropy when the HDU is written.
    """
    m = ctx.image.metadata
    start = ctx.start_time
    mid = start + timedelta(seconds=m.exposure_s / 2.0)
    h = fits.Header()
    h["DATE-OBS"] = (date_obs(start), "[UTC] exposure start")
    h["DAY-OBS"] = (night_of(start, ctx.site.longitude_deg), "night (local date at its start)")
    h["MJD-OBS"] = (round(mjd(start), 8), "[d] MJD (UTC) of exposure start")
    h["MJD-MID"] = (round(mjd(mid), 8), "[d] MJD (UTC) of exposure middle")
    h["JD"] = (round(julian_date(start), 8), "[d] Julian date (UTC) of exposure start")
    h["EXPTIME"] = (m.exposure_s, "[s] exposure time")
    h["EXPOSURE"] = (m.exposure_s, "[s] exposure time")
    h["IMAGETYP"] = (ctx.image_type.upper(), "LIGHT, DARK, BIAS or FLAT")
    h["FRAMENUM"] = (ctx.frame_number, "frame number within the night")
    if ctx.target:
        set_text_card(h, "OBJECT", ctx.target, "target name")
        if fits_text(ctx.target) != ctx.target:
            # The exact name, where FITS allows it: escaped, as a long string when it must be.
            encoded = urllib.parse.quote(ctx.target, safe=_PERCENT_SAFE)
            set_text_card(h, OBJECT_UTF8_KEY, encoded, "target name, UTF-8 percent-encoded")
    if ctx.filter_name is not None:
        set_text_card(h, "FILTER", ctx.filter_name, "filter in the beam")
    if ctx.mount is not None:
        ms = ctx.mount
        h["OBJCTRA"] = (sexagesimal(ms.ra_deg, hours=True), "[h m s] J2000 RA (mount)")
        h["OBJCTDEC"] = (sexagesimal(ms.dec_deg, hours=False), "[d m s] J2000 Dec (mount)")
        h["RA"] = (round(ms.ra_deg, 6), "[deg] J2000 RA (mount)")
        h["DEC"] = (round(ms.dec_deg, 6), "[deg] J2000 Dec (mount)")
        h["RADESYS"] = ("ICRS", "reference frame")
        h["EQUINOX"] = (2000.0, "equinox of coordinates")
        h["ALT"] = (round(ms.alt_deg, 4), "[deg] altitude at exposure start")
        h["AZ"] = (round(ms.az_deg, 4), "[deg] azimuth at exposure start")
        am = airmass(ms.alt_deg)
        if am is not None:
            h["AIRMASS"] = (round(am, 4), "airmass at exposure start (Pickering 2002)")
        h["PIERSIDE"] = (ms.pier_side.name, "side of pier")
    if ctx.image_type == "FLAT":  # which light: masters must not mix a panel and the sky
        panel = ctx.panel_brightness is not None
        h["FLATSRC"] = ("panel" if panel else "sky", "flat-field light source")
        if panel:
            h["PANELBRT"] = (ctx.panel_brightness, "flat panel brightness, device steps")
    if ctx.slit is not None:
        h["DOMEAZ"] = (round(ctx.slit.azimuth_deg, 3), "[deg] dome slit azimuth at start")
        h["DOMEERR"] = (round(ctx.slit.error_deg, 3), "[deg] slit off the telescope, worst")
        h["DOMEOK"] = (ctx.slit.aligned, "slit on the telescope at start and end")
    if ctx.dither_arcsec is not None:
        if ctx.dither_px is not None:
            h["DITHX"] = (round(ctx.dither_px[0], 3), "[px] dither offset x from the visit's")
            h["DITHY"] = (round(ctx.dither_px[1], 3), "[px] dither offset y from the visit's")
        h["DITHE"] = (round(ctx.dither_arcsec[0], 3), "[arcsec] dither offset east")
        h["DITHN"] = (round(ctx.dither_arcsec[1], 3), "[arcsec] dither offset north")
    h["XBINNING"] = (m.bin_x, "binning in x")
    h["YBINNING"] = (m.bin_y, "binning in y")
    h["XORGSUBF"] = (m.start_x, "[px] subframe origin x (binned)")
    h["YORGSUBF"] = (m.start_y, "[px] subframe origin y (binned)")
    h["XPIXSZ"] = (m.pixel_size_x_um * m.bin_x, "[um] binned pixel size x")
    h["YPIXSZ"] = (m.pixel_size_y_um * m.bin_y, "[um] binned pixel size y")
    if m.gain is not None:
        h["GAIN"] = (m.gain, "camera gain setting")
    if m.offset is not None:
        h["OFFSET"] = (m.offset, "camera offset setting")
    h["EGAIN"] = (m.electrons_per_adu, "[e-/ADU] conversion gain")
    if m.ccd_temperature_c is not None:
        h["CCD-TEMP"] = (round(m.ccd_temperature_c, 2), "[C] sensor temperature")
    if m.set_temperature_c is not None:
        h["SET-TEMP"] = (m.set_temperature_c, "[C] cooler set point")
    if m.bayer_pattern is not None and m.bin_x == 1 and m.bin_y == 1:
        # A binned colour frame sums its colours: it is no longer a mosaic, so it gets none.
        h["BAYERPAT"] = (m.bayer_pattern, "Bayer pattern at the sensor's first pixel")
        h["XBAYROFF"] = (m.start_x % 2, "[px] Bayer pattern offset x (subframe origin)")
        h["YBAYROFF"] = (m.start_y % 2, "[px] Bayer pattern offset y (subframe origin)")
        h["ROWORDER"] = ("TOP-DOWN", "row 0 of the data is the first row read out")
    set_text_card(h, "READOUTM", m.readout_mode, "readout mode")
    set_text_card(h, "INSTRUME", m.sensor_name, "sensor")
    set_text_card(h, "CAMERA", m.camera_name, "camera device name")
    set_text_card(h, "TELESCOP", ctx.telescope.name, "telescope")
    h["FOCALLEN"] = (ctx.telescope.focal_length_mm, "[mm] focal length")
    h["APTDIA"] = (ctx.telescope.aperture_mm, "[mm] aperture diameter")
    if ctx.telescope.observer:
        set_text_card(h, "OBSERVER", ctx.telescope.observer, "observer")
    set_text_card(h, "SITENAME", ctx.site.name, "observatory")
    h["SITELAT"] = (ctx.site.latitude_deg, "[deg] site latitude, north positive")
    h["SITELONG"] = (ctx.site.longitude_deg, "[deg] site longitude, east positive")
    h["SITEELEV"] = (ctx.site.elevation_m, "[m] site elevation")
    if ctx.mount is not None and ctx.image_type.upper() in ("LIGHT", "FLAT"):
        _approximate_wcs(h, ctx)
    return h


def set_text_card(header: fits.Header, key: str, value: str, comment: str) -> None:
    """Set a text card in its printable-ASCII form (`fits_text`).

    The comment is dropped when value and comment do not fit one card: astropy would
    truncate it with a warning on every write instead.
    """
    value = fits_text(value)
    # 80 columns: keyword (8), "= ", quotes, " / " leave 65 for the value and the comment.
    header[key] = (value, comment) if len(value) + len(comment) <= 65 else value


def pixel_scale_from_header(header: fits.Header) -> float | None:
    """Return the binned pixel scale (arcsec per pixel) a raw header implies, or None.

    ``PIXSCALE`` when present, else ``XPIXSZ`` (binned, micrometre) over ``FOCALLEN``
    (millimetre), else the determinant of the ``CD`` matrix.
    """
    try:
        if "PIXSCALE" in header:
            return float(header["PIXSCALE"])
        if "XPIXSZ" in header and "FOCALLEN" in header and float(header["FOCALLEN"]) > 0:
            return 206.265 * float(header["XPIXSZ"]) / float(header["FOCALLEN"])
        if all(k in header for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2")):
            det = float(header["CD1_1"]) * float(header["CD2_2"]) - float(header["CD1_2"]) * float(
                header["CD2_1"]
            )
            return math.sqrt(abs(det)) * 3600.0
    except (TypeError, ValueError):
        return None
    return None
