"""Synthetic star catalogs and the sensor WCS, checked against known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from obsctl.simulators.sky import (
    BANDS,
    StarCatalog,
    field_wcs,
    pixel_scale_arcsec,
    synthetic_catalog,
)

KW = {"seed": 42, "density_per_deg2": 2000.0, "mag_bright": 8.0, "mag_limit": 18.0}


def cap_area_deg2(radius_deg: float) -> float:
    return 2.0 * math.pi * (1.0 - math.cos(math.radians(radius_deg))) * math.degrees(1.0) ** 2


def separation_deg(cat: StarCatalog, ra_deg: float, dec_deg: float) -> np.ndarray:
    centre = SkyCoord(ra_deg, dec_deg, unit="deg")
    return centre.separation(SkyCoord(cat.ra_deg, cat.dec_deg, unit="deg")).deg


def assert_poisson(count: int, expected: float, n_sigma: float = 5.0) -> None:
    assert abs(count - expected) < n_sigma * math.sqrt(expected), (count, expected)


def test_same_arguments_give_identical_catalogs():
    a = synthetic_catalog(83.8, -5.4, 1.0, **KW)
    b = synthetic_catalog(83.8, -5.4, 1.0, **KW)
    assert len(a) > 1000
    for name in ("id", "ra_deg", "dec_deg", "mag_b", "mag_v", "mag_r", "mag_i"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.id.dtype == np.int64
    assert a.ra_deg.dtype == np.float64
    assert len(np.unique(a.id)) == len(a)


def test_different_seeds_give_different_skies():
    a = synthetic_catalog(83.8, -5.4, 0.5, **KW)
    b = synthetic_catalog(83.8, -5.4, 0.5, **{**KW, "seed": 43})
    assert not np.isin(a.ra_deg, b.ra_deg).any()


def test_overlapping_fields_agree_on_shared_stars():
    a = synthetic_catalog(150.0, 2.0, 1.0, **KW)
    b = synthetic_catalog(150.9, 2.6, 1.0, **KW)
    shared, ia, ib = np.intersect1d(a.id, b.id, return_indices=True)
    assert len(shared) > 200
    for name in ("ra_deg", "dec_deg", "mag_b", "mag_v", "mag_r", "mag_i"):
        np.testing.assert_array_equal(getattr(a, name)[ia], getattr(b, name)[ib])
    # Every star of field a inside field b's circle is in b, and vice versa.
    in_b = separation_deg(a, 150.9, 2.6) < 1.0 - 1e-9
    assert set(a.id[in_b]) <= set(b.id)
    in_a = separation_deg(b, 150.0, 2.0) < 1.0 - 1e-9
    assert set(b.id[in_a]) <= set(a.id)


def test_small_field_is_exactly_the_stars_of_a_large_field_within_its_radius():
    big = synthetic_catalog(210.0, -40.0, 2.0, **KW)
    small = synthetic_catalog(210.7, -39.5, 0.4, **KW)
    inside = separation_deg(big, 210.7, -39.5) <= 0.4
    np.testing.assert_array_equal(np.sort(big.id[inside]), np.sort(small.id))


def test_returned_stars_lie_within_the_radius():
    cat = synthetic_catalog(10.0, 60.0, 1.5, **KW)
    assert separation_deg(cat, 10.0, 60.0).max() <= 1.5 + 1e-9


@pytest.mark.parametrize(
    ("radius_deg", "density"),
    [(0.3, 20000.0), (1.0, 2000.0), (2.0, 500.0), (3.0, 2500.0)],
)
def test_count_scales_with_area_and_density(radius_deg, density):
    cat = synthetic_catalog(300.0, 25.0, radius_deg, **{**KW, "density_per_deg2": density})
    assert_poisson(len(cat), density * cap_area_deg2(radius_deg))


def test_magnitude_counts_follow_the_power_law_slope():
    cat = synthetic_catalog(45.0, -20.0, 3.0, **{**KW, "mag_bright": 6.0, "mag_limit": 18.0})
    mags = np.sort(cat.mag_v)
    assert mags.min() >= 6.0
    assert mags.max() <= 18.0
    # log10 N(<m) = 0.35 m + c: fit over the well-populated range.
    grid = np.arange(11.0, 17.51, 0.5)
    counts = np.searchsorted(mags, grid)
    slope = np.polyfit(grid, np.log10(counts), 1)[0]
    assert slope == pytest.approx(0.35, abs=0.02)


def test_colours_are_realistic_and_bands_map_to_magnitudes():
    cat = synthetic_catalog(45.0, -20.0, 1.0, **KW)
    b_v = cat.mag_b - cat.mag_v
    assert 0.3 < np.median(b_v) < 1.2
    assert np.mean((b_v > 0.2) & (b_v < 1.6)) > 0.9
    # Redder stars are brighter in redder bands: V > R > I for stars with B-V > 0.3 (bluer
    # ones may scatter either way, as A stars do).
    red = b_v > 0.3
    assert np.all(cat.mag_v[red] > cat.mag_r[red])
    assert np.all(cat.mag_r[red] > cat.mag_i[red])
    np.testing.assert_array_equal(cat.mag("B"), cat.mag_b)
    np.testing.assert_array_equal(cat.mag("v"), cat.mag_v)
    np.testing.assert_array_equal(cat.mag("R"), cat.mag_r)
    np.testing.assert_array_equal(cat.mag("I"), cat.mag_i)
    np.testing.assert_allclose(cat.mag("L"), 0.5 * (cat.mag_v + cat.mag_r))
    assert set(BANDS) == {"B", "V", "R", "I", "L"}


def test_colours_span_the_field_population_and_are_not_one_parameter():
    cat = synthetic_catalog(45.0, -20.0, 1.5, **KW)
    b_v = cat.mag_b - cat.mag_v
    v_r = cat.mag_v - cat.mag_r
    r_i = cat.mag_r - cat.mag_i
    # F-G-K dwarfs and K giants: B-V from about 0.1 to 1.6, a median near the Sun's.
    low, median, high = np.percentile(b_v, [1, 50, 99])
    assert low < 0.3 and 0.6 < median < 0.9 and high > 1.4
    # The Sun's colours (B-V 0.65: V-R 0.36, R-I 0.34) sit on the dwarf sequence.
    sun_like = np.abs(b_v - 0.65) < 0.03
    assert np.median(v_r[sun_like]) == pytest.approx(0.36, abs=0.03)
    assert np.median(r_i[sun_like]) == pytest.approx(0.34, abs=0.03)
    # Stars scatter about their sequence: V-R and R-I are not functions of B-V.
    for colour in (v_r, r_i):
        trend = np.polyval(np.polyfit(b_v, colour, 3), b_v)
        assert 0.02 < np.std(colour - trend) < 0.06
    assert np.corrcoef(v_r - 0.55 * b_v, r_i - 0.5 * b_v)[0, 1] < 0.9


def test_unknown_band_is_rejected():
    cat = synthetic_catalog(45.0, -20.0, 0.1, **KW)
    with pytest.raises(ValueError, match="unknown band 'Ha'"):
        cat.mag("Ha")


def test_field_across_ra_zero_wraps():
    cat = synthetic_catalog(0.1, 10.0, 0.5, **KW)
    assert np.all((cat.ra_deg >= 0.0) & (cat.ra_deg < 360.0))
    assert np.any(cat.ra_deg > 359.0)
    assert np.any(cat.ra_deg < 1.0)
    assert separation_deg(cat, 0.1, 10.0).max() <= 0.5 + 1e-9
    assert_poisson(len(cat), KW["density_per_deg2"] * cap_area_deg2(0.5))
    # The same stars whether the centre is written as 0.1 or 360.1.
    again = synthetic_catalog(360.1, 10.0, 0.5, **KW)
    np.testing.assert_array_equal(cat.id, again.id)
    # A field just west of RA 0 sees the same stars in the overlap.
    west = synthetic_catalog(359.8, 10.0, 0.5, **KW)
    shared = np.intersect1d(cat.id, west.id)
    assert len(shared) > 100


@pytest.mark.parametrize("dec_deg", [90.0, 89.6, -89.9, -90.0])
def test_fields_at_the_poles(dec_deg):
    cat = synthetic_catalog(123.0, dec_deg, 1.0, **KW)
    assert_poisson(len(cat), KW["density_per_deg2"] * cap_area_deg2(1.0))
    assert separation_deg(cat, 123.0, dec_deg).max() <= 1.0 + 1e-9
    # Near the pole the field spans all right ascensions.
    assert np.ptp(cat.ra_deg) > 300.0


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="radius_deg"):
        synthetic_catalog(0.0, 0.0, 0.0, **KW)
    with pytest.raises(ValueError, match="dec_deg"):
        synthetic_catalog(0.0, 91.0, 1.0, **KW)
    with pytest.raises(ValueError, match="fainter"):
        synthetic_catalog(0.0, 0.0, 1.0, **{**KW, "mag_limit": 5.0})
    with pytest.raises(ValueError, match="seed"):
        synthetic_catalog(0.0, 0.0, 1.0, **{**KW, "seed": -1})


def test_pixel_scale():
    assert pixel_scale_arcsec(3.76, 530.0) == pytest.approx(206.265 * 3.76 / 530.0)
    assert pixel_scale_arcsec(9.0, 1000.0) == pytest.approx(1.856385)


def test_field_wcs_centre_orientation_and_scale():
    wcs = field_wcs(30.0, 45.0, width_px=200, height_px=100, pixel_scale_arcsec=2.0)
    assert tuple(wcs.wcs.crpix) == (100.5, 50.5)
    # Zero-based centre of the sensor is the pointing.
    ra, dec = wcs.wcs_pix2world(99.5, 49.5, 0)
    assert (float(ra), float(dec)) == pytest.approx((30.0, 45.0))
    # North up: +y increases declination by one pixel scale.
    ra_n, dec_n = wcs.wcs_pix2world(99.5, 50.5, 0)
    assert float(dec_n) - 45.0 == pytest.approx(2.0 / 3600.0, rel=1e-6)
    assert float(ra_n) == pytest.approx(30.0, abs=1e-9)
    # East left: +x decreases right ascension.
    ra_e, _ = wcs.wcs_pix2world(100.5, 49.5, 0)
    assert (float(ra_e) - 30.0) * math.cos(math.radians(45.0)) == pytest.approx(
        -2.0 / 3600.0, rel=1e-4
    )
    assert wcs.pixel_shape == (200, 100)


def test_field_wcs_rotation_turns_the_sky():
    wcs = field_wcs(30.0, 0.0, width_px=100, height_px=100, pixel_scale_arcsec=1.0, rotation_deg=90)
    ra_c, dec_c = wcs.wcs_pix2world(49.5, 49.5, 0)
    ra_y, dec_y = wcs.wcs_pix2world(49.5, 50.5, 0)
    # Rotated a quarter turn, +y no longer points north but along right ascension.
    assert float(dec_y) == pytest.approx(float(dec_c), abs=1e-9)
    assert abs(float(ra_y) - float(ra_c)) == pytest.approx(1.0 / 3600.0, rel=1e-4)
    # A star projects back onto the pixel it came from.
    x, y = wcs.wcs_world2pix(30.01, 0.005, 0)
    ra, dec = wcs.wcs_pix2world(x, y, 0)
    assert (float(ra), float(dec)) == pytest.approx((30.01, 0.005))
