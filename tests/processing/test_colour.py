"""Bayer mosaics split into colour planes (`obsctl.processing.colour`)."""

from __future__ import annotations

import numpy as np
import pytest

from obsctl.processing.colour import (
    bayer_masks,
    demosaic,
    forced_aperture_flux,
    green_plane_mask,
    pattern_from_pixels,
)

PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")


@pytest.mark.parametrize("pattern", PATTERNS)
def test_masks_tile_the_sensor(pattern: str) -> None:
    masks = bayer_masks((6, 8), pattern)
    total = masks["R"].astype(int) + masks["G"] + masks["B"]
    assert (total == 1).all()
    assert masks["R"].sum() == 12 and masks["G"].sum() == 24 and masks["B"].sum() == 12
    # The first cell reads as the pattern, row 0 then row 1.
    first = "".join(c for y, x in ((0, 0), (0, 1), (1, 0), (1, 1)) for c in "RGB" if masks[c][y, x])
    assert first == pattern


def test_unknown_pattern() -> None:
    with pytest.raises(ValueError, match="unknown Bayer pattern"):
        bayer_masks((4, 4), "RGBG")


@pytest.mark.parametrize("pattern", PATTERNS)
def test_demosaic_of_smooth_colour_scene(pattern: str) -> None:
    """A scene whose colours vary linearly comes back exactly inside the frame."""
    ny, nx = 40, 50
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    truth = {"R": 100 + 2 * xx, "G": 300 + yy + xx, "B": 50 + 3 * yy}
    masks = bayer_masks((ny, nx), pattern)
    mosaic = sum(np.where(masks[c], truth[c], 0) for c in "RGB")
    planes = demosaic(mosaic, pattern)
    for colour in "RGB":
        assert planes[colour].dtype == np.float32
        inner = (slice(2, -2), slice(2, -2))
        np.testing.assert_allclose(planes[colour][inner], truth[colour][inner], rtol=1e-5)
        # The plane's own pixels are kept as measured, edges included.
        np.testing.assert_array_equal(planes[colour][masks[colour]], mosaic[masks[colour]])


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pattern_from_pixels_swaps_rows_read_the_other_way(pattern: str) -> None:
    rng = np.random.default_rng(1)
    level = {"R": 900.0, "G": 1500.0, "B": 1200.0}
    masks = bayer_masks((64, 64), pattern)
    mosaic = sum(np.where(masks[c], level[c], 0.0) for c in "RGB") + rng.normal(0, 5, (64, 64))
    assert pattern_from_pixels(mosaic, pattern) == pattern
    flipped = mosaic[::-1]  # the same sensor stored bottom-up
    swapped = pattern[2:] + pattern[:2]
    assert pattern_from_pixels(flipped, pattern) == swapped
    # A grey scene (red like blue) cannot tell; the header stands.
    grey = np.where(masks["G"], 1500.0, 1000.0) + rng.normal(0, 5, (64, 64))
    assert pattern_from_pixels(grey, pattern) == pattern


def test_green_plane_mask() -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[2, 2] = True  # R in RGGB: not in the green plane
    mask[4, 5] = True  # G: spoils itself and its four neighbours
    green = green_plane_mask(mask, "RGGB")
    assert green.sum() == 5 and green[4, 5] and green[3, 5] and green[4, 4] and not green[2, 2]


def test_forced_flux_of_a_known_star() -> None:
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:64, 0:64]
    star = 5000.0 * np.exp(-((xx - 30.3) ** 2 + (yy - 33.6) ** 2) / (2 * 1.5**2))
    plane = (100.0 + star + rng.normal(0, 2.0, star.shape)).astype(np.float32)
    flux, err = forced_aperture_flux(plane, [30.3], [33.6], radius_px=6.0, gain_e_per_adu=1.0)
    truth = 5000.0 * 2 * np.pi * 1.5**2
    assert flux[0] == pytest.approx(truth, rel=0.01) and 0 < err[0] < 0.02 * truth
    empty = forced_aperture_flux(plane, [], [], radius_px=6.0, gain_e_per_adu=1.0)
    assert empty[0].size == 0
