"""Detector properties from headers written by many tools (`obsctl.pipeline.detector`)."""

from __future__ import annotations

import pytest
from astropy.io import fits

from obsctl.pipeline.detector import (
    bayer_pattern,
    header_gain,
    header_read_noise,
    header_saturation,
)


def _header(*cards: tuple[str, object] | tuple[str, object, str]) -> fits.Header:
    header = fits.Header()
    for card in cards:
        header[card[0]] = card[1] if len(card) == 2 else (card[1], card[2])  # type: ignore[misc]
    return header


@pytest.mark.parametrize(
    ("cards", "value", "source"),
    [
        # ASCOM/N.I.N.A.: EGAIN is the gain, GAIN the camera's setting.
        ((("GAIN", 139, "camera gain setting"), ("EGAIN", 0.25)), 0.25, "EGAIN"),
        ((("GAIN", 139), ("EGAIN", 0.25)), 0.25, "EGAIN"),
        # IRAF-era observatory frames: GAIN in e-/ADU.
        ((("GAIN", 1.9, "e-/ADU"),), 1.9, "GAIN"),
        ((("GAIN", 2.2),), 2.2, "GAIN"),
        # Written as ADU per electron: inverted.
        ((("GAIN", 0.5, "ADU/e-"),), 2.0, "GAIN"),
        # HST.
        ((("ATODGAIN", 1.5),), 1.5, "ATODGAIN"),
        # Images already in electrons.
        ((("BUNIT", "electron"), ("EGAIN", 3.0)), 1.0, "BUNIT"),
    ],
)
def test_gain_cards(cards, value, source) -> None:
    gain = header_gain(_header(*cards))
    assert gain.value == pytest.approx(value) and gain.source == source and not gain.assumed


@pytest.mark.parametrize(
    ("cards", "why"),
    [
        ((), "no gain card"),
        ((("GAIN", 120),), "is not a gain in e-/ADU"),  # a CMOS gain setting, alone
        ((("GAIN", 100, "gain setting"),), "gain setting"),
        ((("EGAIN", "fast"),), "is not a number"),
        ((("EGAIN", -1.0),), "is not a gain"),
        ((("EGAIN", 0.0),), "is not a gain"),
    ],
)
def test_no_usable_gain_is_assumed_and_says_why(cards, why) -> None:
    gain = header_gain(_header(*cards))
    assert gain.assumed and gain.value == 1.0 and gain.source == "assumed"
    assert why in gain.note and "1 e-/ADU assumed" in gain.note


def test_configured_gain_wins() -> None:
    gain = header_gain(_header(("EGAIN", 0.25)), override=1.3)
    assert (gain.value, gain.source) == (1.3, "config")


def test_read_noise_and_saturation() -> None:
    assert header_read_noise(_header(("RDNOISE", 5.0)), 3.5).value == 5.0
    assert header_read_noise(_header(("READNOIS", 7.0)), 3.5).source == "READNOIS"
    assert header_read_noise(_header(("RDNOISE", -2.0)), 3.5).value == 3.5  # implausible
    assert header_read_noise(_header(), 3.5).source == "config"
    assert header_saturation(_header(("SATURATE", 40000.0)), 60000.0).value == 40000.0
    # A card cannot raise the ADC's level.
    assert header_saturation(_header(("SATURATE", 1e9)), 60000.0).value == 60000.0


@pytest.mark.parametrize(
    ("cards", "pattern"),
    [
        ((("BAYERPAT", "RGGB"),), "RGGB"),
        ((("BAYERPAT", "rggb "),), "RGGB"),
        ((("COLORTYP", "GBRG"),), "GBRG"),
        ((("FILTER", "RGGB"),), "RGGB"),  # PANOPTES
        ((("FILTER", "V"),), None),
        ((("BAYERPAT", "RGGB"), ("XBAYROFF", 1)), "GRBG"),
        ((("BAYERPAT", "RGGB"), ("YBAYROFF", 1)), "GBRG"),
        ((("BAYERPAT", "RGGB"), ("XBAYROFF", 1), ("YBAYROFF", 1)), "BGGR"),
        # Stored bottom-up with an even number of rows: the first row is the pattern's second.
        ((("BAYERPAT", "RGGB"), ("ROWORDER", "BOTTOM-UP"), ("NAXIS2", 700)), "GBRG"),
        ((("BAYERPAT", "RGGB"), ("ROWORDER", "BOTTOM-UP"), ("NAXIS2", 701)), "RGGB"),
        # Binned (colours mixed), already a plane of ours, or a 3-plane colour image: not a mosaic.
        ((("BAYERPAT", "RGGB"), ("XBINNING", 2)), None),
        ((("BAYERPAT", "RGGB"), ("DEMOSAIC", "RGGB")), None),
        ((("BAYERPAT", "RGGB"), ("NAXIS", 3)), None),
        ((), None),
    ],
)
def test_bayer_pattern(cards, pattern) -> None:
    assert bayer_pattern(_header(*cards)) == pattern
