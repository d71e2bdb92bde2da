import urllib.parse
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from obsctl.clock import night_of
from obsctl.config import SiteConfig, TelescopeConfig
from obsctl.devices import CameraImage, ImageMetadata, MountStatus, PierSide
from obsctl.store.headers import (
    FrameContext,
    airmass,
    fits_text,
    mjd,
    object_name,
    raw_header,
    sexagesimal,
)
from obsctl.store.raw_store import safe_name

SITE = SiteConfig(name="Roque", latitude_deg=28.76, longitude_deg=-17.88, elevation_m=2326)
SCOPE = TelescopeConfig(name="RC", focal_length_mm=800, aperture_mm=200, observer="A. Observer")
START = datetime(2026, 11, 26, 2, 30, 0, 250000, tzinfo=UTC)


def context(image_type="LIGHT", mount=True) -> FrameContext:
    meta = ImageMetadata(
        exposure_s=30.0,
        start_time=START,
        light=True,
        bin_x=2,
        bin_y=2,
        start_x=0,
        start_y=0,
        gain=100,
        offset=10,
        electrons_per_adu=0.8,
        ccd_temperature_c=-10.03,
        set_temperature_c=-10.0,
        cooler_on=True,
        pixel_size_x_um=3.76,
        pixel_size_y_um=3.76,
        readout_mode="Normal",
        sensor_name="SIM-IMX183",
        camera_name="camera",
    )
    image = CameraImage(np.zeros((50, 80), np.uint16), meta)
    status = MountStatus(
        ra_deg=202.4696,
        dec_deg=47.1953,
        alt_deg=40.0,
        az_deg=30.0,
        slewing=False,
        tracking=True,
        at_park=False,
        pier_side=PierSide.WEST,
        sidereal_time_h=12.0,
    )
    return FrameContext(
        image=image,
        image_type=image_type,
        site=SITE,
        telescope=SCOPE,
        frame_number=42,
        start_time=START,
        target="M51",
        filter_name="V",
        mount=status if mount else None,
    )


def test_every_standard_keyword() -> None:
    h = raw_header(context())
    expected = {
        "DATE-OBS": "2026-11-26T02:30:00.250",
        "EXPTIME": 30.0,
        "EXPOSURE": 30.0,
        "IMAGETYP": "LIGHT",
        "OBJECT": "M51",
        "FILTER": "V",
        "RADESYS": "ICRS",
        "EQUINOX": 2000.0,
        "XBINNING": 2,
        "YBINNING": 2,
        "XPIXSZ": 7.52,
        "YPIXSZ": 7.52,
        "GAIN": 100,
        "OFFSET": 10,
        "EGAIN": 0.8,
        "CCD-TEMP": -10.03,
        "SET-TEMP": -10.0,
        "READOUTM": "Normal",
        "INSTRUME": "SIM-IMX183",
        "TELESCOP": "RC",
        "OBSERVER": "A. Observer",
        "SITENAME": "Roque",
        "SITELAT": 28.76,
        "SITELONG": -17.88,
        "SITEELEV": 2326.0,
        "FOCALLEN": 800.0,
        "PIERSIDE": "WEST",
        "FRAMENUM": 42,
        "DAY-OBS": "2026-11-25",
        "RA": 202.4696,
        "DEC": 47.1953,
        "ALT": 40.0,
        "AZ": 30.0,
        "OBJCTRA": "13 29 52.70",
        "OBJCTDEC": "+47 11 43.1",
    }
    for key, value in expected.items():
        assert h[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    assert h["MJD-OBS"] == pytest.approx(Time(START).utc.mjd, abs=1e-8)
    assert h["MJD-MID"] - h["MJD-OBS"] == pytest.approx(15.0 / 86400, abs=1e-7)
    assert h["JD"] - h["MJD-OBS"] == pytest.approx(2400000.5)
    assert h["AIRMASS"] == pytest.approx(1.5535, abs=1e-3)


def test_approximate_wcs_points_the_centre_at_the_mount() -> None:
    h = raw_header(context())
    wcs = WCS(h)
    centre = wcs.pixel_to_world((80 - 1) / 2, (50 - 1) / 2)
    assert centre.separation(SkyCoord(202.4696, 47.1953, unit="deg")).arcsec < 0.01
    scale = 3.76 * 2 * 1e-3 / 800 * 206264.806
    assert h["PIXSCALE"] == pytest.approx(scale, rel=1e-3)
    left = wcs.pixel_to_world(0, (50 - 1) / 2)
    assert left.ra.deg > centre.ra.deg  # east is to the left


def test_darks_and_frames_without_mount_have_no_wcs() -> None:
    assert "CTYPE1" not in raw_header(context("DARK"))
    h = raw_header(context(mount=False))
    assert "CTYPE1" not in h and "RA" not in h


@pytest.mark.parametrize(
    ("when", "longitude", "night"),
    [
        (datetime(2026, 11, 26, 2, 0, tzinfo=UTC), -17.88, "2026-11-25"),
        (datetime(2026, 11, 25, 20, 0, tzinfo=UTC), -17.88, "2026-11-25"),
        (datetime(2026, 11, 25, 13, 30, tzinfo=UTC), -17.88, "2026-11-25"),
        (datetime(2026, 11, 25, 23, 0, tzinfo=UTC), 150.0, "2026-11-25"),
        (datetime(2026, 11, 26, 3, 0, tzinfo=UTC), 150.0, "2026-11-26"),
    ],
)
def test_night_of(when, longitude, night) -> None:
    assert night_of(when, longitude) == night


def test_airmass_and_helpers() -> None:
    assert airmass(90.0) == pytest.approx(1.0, abs=1e-3)
    assert airmass(30.0) == pytest.approx(1.995, abs=0.01)
    assert airmass(-1.0) is None
    assert sexagesimal(-0.5, hours=False) == "-00 30 00.0"
    assert sexagesimal(359.9999999, hours=True) == "00 00 00.00"
    assert mjd(datetime(2000, 1, 1, 12, tzinfo=UTC)) == pytest.approx(51544.5)


@pytest.mark.parametrize(
    ("text", "ascii_form"),
    [
        ("M51", "M51"),
        ("\N{GREEK SMALL LETTER ALPHA} Ori", "alpha Ori"),
        ("\N{GREEK SMALL LETTER LAMDA} Sco", "lambda Sco"),
        ("\N{GREEK CAPITAL LETTER OMEGA} Cen", "Omega Cen"),
        ("Caf\N{LATIN SMALL LETTER E WITH ACUTE} \N{LATIN SMALL LETTER SHARP S}", "Cafe ss"),
        ("tab\tnew\nline\x7f", "tab new line "),
        ("Teide \N{EN DASH} IAC", "Teide - IAC"),
        ("\N{BLACK STAR}", "\\u2605"),
        ("\N{MATHEMATICAL DOUBLE-STRUCK CAPITAL A}", "A"),
    ],
)
def test_fits_text_is_printable_ascii(text, ascii_form) -> None:
    assert fits_text(text) == ascii_form


def test_any_unicode_target_is_written_with_its_exact_name(tmp_path) -> None:
    name = (
        "\N{GREEK SMALL LETTER ALPHA} Ori\t(\N{BLACK STAR} 100% \N{CJK UNIFIED IDEOGRAPH-5317})" * 3
    )
    ctx = replace(
        context(),
        target=name,
        filter_name="H\N{GREEK SMALL LETTER ALPHA}",
        site=SITE.model_copy(update={"name": "Observatorio del Teide \N{EN DASH} Izaña"}),
        telescope=SCOPE.model_copy(
            update={"observer": "J. Mu\N{LATIN SMALL LETTER N WITH TILDE}oz"}
        ),
    )
    h = raw_header(ctx)
    path = tmp_path / "frame.fits"
    fits.PrimaryHDU(np.zeros((4, 4), np.uint16), header=h).writeto(path)
    read = fits.getheader(path)
    assert read["OBJECT"].startswith("alpha Ori (\\u2605 100% \\u5317)alpha Ori")
    assert read["FILTER"] == "Halpha"
    assert read["SITENAME"] == "Observatorio del Teide - Izana"
    assert read["OBSERVER"] == "J. Munoz"
    # The exact name, percent-encoded UTF-8 in a long string (CONTINUE cards).
    assert urllib.parse.unquote(read["OBJUTF8"]) == name
    assert object_name(read) == name
    assert safe_name(name).startswith("alpha-Ori-u2605-100-u5317-alpha-Ori")


def test_ascii_target_needs_no_second_card() -> None:
    h = raw_header(context())
    assert h["OBJECT"] == "M51" and "OBJUTF8" not in h
    assert object_name(h) == "M51"


def colour_context(*, bin_xy: int = 1, start: tuple[int, int] = (0, 0), pattern="RGGB"):
    ctx = context()
    meta = replace(
        ctx.image.metadata,
        bin_x=bin_xy,
        bin_y=bin_xy,
        start_x=start[0],
        start_y=start[1],
        bayer_pattern=pattern,
    )
    return replace(ctx, image=CameraImage(ctx.image.data, meta))


@pytest.mark.parametrize(
    ("start", "offsets", "first_pixel"),
    [((0, 0), (0, 0), "BGGR"), ((3, 0), (1, 0), "GBRG"), ((2, 5), (0, 1), "GRBG")],
)
def test_colour_sensor_writes_its_bayer_pattern(start, offsets, first_pixel) -> None:
    from obsctl.pipeline.detector import bayer_pattern

    h = raw_header(colour_context(start=start, pattern="BGGR"))
    assert h["BAYERPAT"] == "BGGR"
    assert (h["XBAYROFF"], h["YBAYROFF"]) == offsets
    assert h["ROWORDER"] == "TOP-DOWN"
    # The pipeline reads the pattern of the subframe's own first pixel from these cards.
    assert bayer_pattern(h) == first_pixel


def test_binned_or_monochrome_frames_have_no_bayer_cards() -> None:
    for h in (raw_header(colour_context(bin_xy=2)), raw_header(context())):
        assert not {"BAYERPAT", "XBAYROFF", "YBAYROFF", "ROWORDER"} & set(h)
