"""Galaxies, bleeding, bad columns, satellite trails and Bayer mosaics, against their inputs.

The truths here are the functions' inputs and textbook definitions (the half-light radius, the
charge put in, the line drawn), measured with plain numpy in the test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from obsctl.simulators.artefacts import (
    BAD_COLUMN_DTYPE,
    BAYER_PATTERNS,
    GALAXY_DTYPE,
    add_galaxies,
    add_trail,
    apply_bad_columns,
    bad_columns,
    bayer_channel_masks,
    bayer_from_mono,
    bayer_mosaic,
    bleed,
    galaxies,
    galaxy_mag,
    satellite_trail,
    sky_pa_to_image_deg,
)

# --------------------------------------------------------------------------- helpers


def one_galaxy(
    *,
    size: int = 161,
    x: float = 80.3,
    y: float = 79.6,
    flux_e: float = 1.0e5,
    r_eff_px: float = 5.0,
    n: float = 1.0,
    ellipticity: float = 0.0,
    pa_deg: float = 0.0,
    fwhm_px: float = 3.0,
    beta: float = 3.0,
) -> np.ndarray:
    image = np.zeros((size, size), dtype=np.float32)
    add_galaxies(
        image,
        np.array([x]),
        np.array([y]),
        np.array([flux_e]),
        np.array([r_eff_px]),
        np.array([n]),
        np.array([ellipticity]),
        np.array([pa_deg]),
        fwhm_px=fwhm_px,
        beta=beta,
    )
    return image


def half_light_radius(image: np.ndarray, x: float, y: float) -> float:
    """Radius of the circle about (x, y) holding half the image's charge (curve of growth)."""
    yy, xx = np.indices(image.shape)
    r = np.hypot(xx - x, yy - y).ravel()
    order = np.argsort(r)
    growth = np.cumsum(image.ravel()[order].astype(np.float64))
    return float(np.interp(0.5 * growth[-1], growth, r[order]))


def moments(image: np.ndarray) -> tuple[float, float, float, float, float]:
    """Flux-weighted centroid and second moments (xx, yy, xy) of an image."""
    w = image.astype(np.float64)
    yy, xx = np.indices(image.shape)
    total = w.sum()
    cx, cy = (w * xx).sum() / total, (w * yy).sum() / total
    mxx = (w * (xx - cx) ** 2).sum() / total
    myy = (w * (yy - cy) ** 2).sum() / total
    mxy = (w * (xx - cx) * (yy - cy)).sum() / total
    return cx, cy, mxx, myy, mxy


# ------------------------------------------------------------------------------ galaxies


@pytest.mark.parametrize(
    ("n", "ellipticity", "r_eff_px"), [(1.0, 0.0, 4.0), (4.0, 0.5, 2.0), (2.0, 0.3, 0.4)]
)
def test_galaxy_stamp_holds_its_flux(n: float, ellipticity: float, r_eff_px: float) -> None:
    image = one_galaxy(n=n, ellipticity=ellipticity, r_eff_px=r_eff_px, size=241, x=120.3)
    assert image.sum() == pytest.approx(1.0e5, rel=0.01)
    assert image.min() >= 0.0


def test_galaxy_returns_the_charge_inside_the_image() -> None:
    image = np.zeros((64, 64), dtype=np.float32)
    added = add_galaxies(
        image,
        np.array([30.0, 0.0, -500.0]),
        np.array([30.0, 20.0, 10.0]),
        np.full(3, 1.0e4),
        np.full(3, 2.0),
        np.ones(3),
        np.zeros(3),
        np.zeros(3),
        fwhm_px=2.5,
        beta=3.0,
    )
    assert added[0] == pytest.approx(1.0e4, rel=0.01)
    assert 0.4e4 < added[1] < 0.6e4  # centred on the left edge: about half falls off
    assert added[2] == 0.0
    assert image.sum() == pytest.approx(added.sum(), rel=1e-4)


@pytest.mark.parametrize("n", [1.0, 4.0])
def test_unconvolved_half_light_radius_is_r_eff(n: float) -> None:
    image = one_galaxy(n=n, r_eff_px=5.0, fwhm_px=0.0, size=241, x=120.3, y=119.6)
    assert half_light_radius(image, 120.3, 119.6) == pytest.approx(5.0, rel=0.10)


def test_good_seeing_barely_changes_the_half_light_radius() -> None:
    image = one_galaxy(n=1.0, r_eff_px=8.0, fwhm_px=1.0)
    assert half_light_radius(image, 80.3, 79.6) == pytest.approx(8.0, rel=0.10)


def test_seeing_widens_a_small_galaxy() -> None:
    sharp = one_galaxy(r_eff_px=1.0, fwhm_px=0.0)
    blurred = one_galaxy(r_eff_px=1.0, fwhm_px=4.0)
    assert half_light_radius(blurred, 80.3, 79.6) > 1.5 * half_light_radius(sharp, 80.3, 79.6)


@pytest.mark.parametrize("pa_deg", [0.0, 30.0, 100.0])
def test_galaxy_centroid_and_major_axis(pa_deg: float) -> None:
    image = one_galaxy(r_eff_px=6.0, ellipticity=0.5, pa_deg=pa_deg, fwhm_px=2.0)
    cx, cy, mxx, myy, mxy = moments(image)
    assert (cx, cy) == pytest.approx((80.3, 79.6), abs=0.05)
    angle = math.degrees(0.5 * math.atan2(2.0 * mxy, mxx - myy)) % 180.0
    assert min(abs(angle - pa_deg), 180.0 - abs(angle - pa_deg)) < 2.0
    # An axis ratio of 0.5 elongates the second moments by about 4 before the seeing.
    lam = np.linalg.eigvalsh([[mxx, mxy], [mxy, myy]])
    assert lam[1] / lam[0] > 2.5


def test_add_galaxies_rejects_bad_shapes() -> None:
    image = np.zeros((16, 16), dtype=np.float32)
    with pytest.raises(ValueError, match="r_eff_px"):
        add_galaxies(image, *(np.array([v]) for v in (8, 8, 1, 0.0, 1, 0, 0)), fwhm_px=2, beta=3)
    with pytest.raises(ValueError, match="float32"):
        add_galaxies(image.astype(np.float64), *(np.ones(1),) * 7, fwhm_px=2, beta=3)


def test_galaxy_population_is_stable_per_sky_cell() -> None:
    wide = galaxies(150.0, 20.0, 0.3, seed=4)
    narrow = galaxies(150.05, 20.02, 0.05, seed=4)
    assert wide.dtype == GALAXY_DTYPE
    assert len(narrow) > 0
    assert np.isin(narrow["id"], wide["id"]).all()
    same = wide[np.isin(wide["id"], narrow["id"])]
    order = np.argsort(narrow["id"])
    np.testing.assert_array_equal(np.sort(same, order="id"), narrow[order])
    assert len(np.unique(wide["id"])) == len(wide)
    other = galaxies(150.0, 20.0, 0.3, seed=5)
    assert not np.array_equal(other["ra_deg"][:10], wide["ra_deg"][:10])


def test_galaxy_counts_follow_the_number_count_slope() -> None:
    cat = galaxies(200.0, 40.0, 1.0, seed=2, mag_limit=21.0)
    area = 2.0 * math.pi * (1.0 - math.cos(math.radians(1.0))) * math.degrees(1.0) ** 2
    # Thousands per square degree to r = 21, as the real sky.
    assert len(cat) / area == pytest.approx(3000.0, rel=0.05)
    mag = cat["mag_r"]
    assert mag.min() >= 12.0 and mag.max() <= 21.0
    # log10 N(<m) rises 0.45 per magnitude past r = 18 and ~0.6 brighter.
    faint_slope = math.log10(np.sum(mag < 21.0) / np.sum(mag < 19.0)) / 2.0
    assert faint_slope == pytest.approx(0.45, abs=0.03)
    bright_slope = math.log10(np.sum(mag < 18.0) / np.sum(mag < 16.0)) / 2.0
    assert bright_slope == pytest.approx(0.6, abs=0.1)


def test_galaxy_shapes_are_realistic() -> None:
    cat = galaxies(10.0, -30.0, 1.0, seed=7, mag_bright=12.0, mag_limit=22.0)
    faint = cat["r_eff_arcsec"][(cat["mag_r"] > 20.5) & (cat["mag_r"] < 21.5)]
    bright = cat["r_eff_arcsec"][cat["mag_r"] < 16.0]
    assert 0.5 <= np.median(faint) <= 1.0
    assert 4.0 <= np.median(bright) <= 20.0
    assert cat["sersic_n"].min() >= 1.0 and cat["sersic_n"].max() <= 4.0
    assert np.mean(cat["sersic_n"] >= 3.0) == pytest.approx(0.25, abs=0.03)
    assert cat["ellipticity"].min() >= 0.0 and cat["ellipticity"].max() < 0.9
    assert cat["pa_deg"].min() >= 0.0 and cat["pa_deg"].max() < 180.0
    # Galaxies are redder than their R magnitude in B and V, brighter in I.
    assert np.all(galaxy_mag(cat, "B") > galaxy_mag(cat, "V"))
    assert np.all(galaxy_mag(cat, "V") > galaxy_mag(cat, "r"))
    assert np.all(galaxy_mag(cat, "I") < galaxy_mag(cat, "R"))
    np.testing.assert_allclose(galaxy_mag(cat, "L"), 0.5 * (cat["mag_v"] + cat["mag_r"]))


def test_sky_position_angle_to_image() -> None:
    # North up (+y), east left (-x): a north-south galaxy lies along y, an east-west along x.
    pa = np.array([0.0, 90.0, 45.0])
    image = sky_pa_to_image_deg(pa, north_dx=0.0, north_dy=1.0, east_dx=-1.0, east_dy=0.0)
    np.testing.assert_allclose(image, [90.0, 0.0, 135.0], atol=1e-9)


# ------------------------------------------------------------------------ bleeding


def test_bleed_conserves_charge_and_runs_excess_over_full_well_long() -> None:
    full = 1000.0
    image = np.zeros((101, 5), dtype=np.float32)
    image[50, 2] = 10.5 * full
    image[:, 0] = 10.0  # an ordinary neighbour column is untouched
    before = image.astype(np.float64).sum()
    result = bleed(image, full_well_e=full)
    assert image.astype(np.float64).sum() == pytest.approx(before, rel=1e-6)
    assert result.lost_e == 0.0
    column = image[:, 2]
    # 9.5 wells of excess, half each way: 4 full pixels and 0.75 of a fifth on both sides.
    assert result.saturated_px == 9
    np.testing.assert_array_equal(np.flatnonzero(result.mask[:, 2]), np.arange(46, 55))
    assert column[45] == pytest.approx(750.0) and column[55] == pytest.approx(750.0)
    assert np.count_nonzero(column) == 11
    assert (image[:, 0] == 10.0).all() and not result.mask[:, [0, 1, 3, 4]].any()


def test_bleed_fills_around_existing_charge_and_merges_runs() -> None:
    full = 100.0
    column = np.full(40, 60.0, dtype=np.float32)
    column[10] = 340.0
    column[14] = 340.0
    image = column[:, None].copy()
    before = image.sum(dtype=np.float64)
    result = bleed(image, full_well_e=full)
    assert image.sum(dtype=np.float64) == pytest.approx(before)
    assert image.max() <= full
    lit = np.flatnonzero(result.mask[:, 0])
    # 2 x 240 excess into 40-electron rooms: 12 pixels filled, one run from the two bleeds.
    assert lit.size == 2 + 12
    np.testing.assert_array_equal(lit, np.arange(lit[0], lit[0] + lit.size))


def test_bleed_turns_back_at_the_column_end_and_drains_a_full_column() -> None:
    full = 100.0
    image = np.zeros((20, 2), dtype=np.float32)
    image[1, 0] = 600.0  # 5 wells of excess; only 1 pixel of room below
    image[5, 1] = 5000.0  # more than the column holds
    result = bleed(image, full_well_e=full)
    assert image[:, 0].sum() == pytest.approx(600.0)
    assert np.flatnonzero(result.mask[:, 0]).tolist() == [0, 1, 2, 3, 4, 5]
    assert result.mask[:, 1].all()
    assert result.lost_e == pytest.approx(5000.0 - 20 * full)
    assert result.saturated_px == 6 + 20


def test_bleed_leaves_unsaturated_images_alone() -> None:
    image = np.random.default_rng(1).uniform(0.0, 99.0, (32, 32)).astype(np.float32)
    copy = image.copy()
    result = bleed(image, full_well_e=100.0)
    np.testing.assert_array_equal(image, copy)
    assert result.saturated_px == 0 and not result.mask.any()


# --------------------------------------------------------------------- bad columns


def test_bad_columns_are_fixed_by_the_sensor_seed() -> None:
    table = bad_columns(7, 512, 256, dead_count=3, hot_count=4, partial_fraction=0.5)
    assert table.dtype == BAD_COLUMN_DTYPE
    np.testing.assert_array_equal(table, bad_columns(7, 512, 256, dead_count=3, hot_count=4))
    assert not np.array_equal(table["x"], bad_columns(8, 512, 256, dead_count=3, hot_count=4)["x"])
    assert sorted(table["kind"].tolist()) == ["dead"] * 3 + ["hot"] * 4
    assert len(np.unique(table["x"])) == 7 and table["x"].max() < 512
    assert (table["y_start"] >= 0).all() and (table["y_start"] < 256).all()
    dead = table[table["kind"] == "dead"]
    hot = table[table["kind"] == "hot"]
    assert (dead["response"] < 0.5).all() and (hot["dark_factor"] >= 5.0).all()
    full = bad_columns(7, 512, 256, dead_count=3, hot_count=4, partial_fraction=0.0)
    assert (full["y_start"] == 0).all()


def test_apply_bad_columns_dims_and_heats_the_listed_pixels() -> None:
    table = np.array(
        [(3, 0, "dead", 0.25, 1.0), (6, 5, "hot", 1.0, 11.0), (100, 0, "hot", 1.0, 50.0)],
        dtype=BAD_COLUMN_DTYPE,
    )
    light = np.full((10, 8), 100.0, dtype=np.float32)
    apply_bad_columns(light, table, dark_e=2.0)
    expected = np.full((10, 8), 100.0)
    expected[:, 3] = 25.0
    expected[5:, 6] += 10.0 * 2.0  # the excess over the normal dark current
    np.testing.assert_allclose(light, expected)

    dark = np.full((10, 8), 2.0, dtype=np.float32)
    apply_bad_columns(dark, table, dark_e=2.0, light=False)
    assert (dark[:, 3] == 2.0).all() and (dark[5:, 6] == 22.0).all()


def test_apply_bad_columns_binned_matches_binning_the_unbinned() -> None:
    table = bad_columns(3, 64, 48, dead_count=3, hot_count=3, partial_fraction=1.0)
    unbinned = np.full((36, 48), 50.0, dtype=np.float32)
    apply_bad_columns(unbinned, table, dark_e=1.5, x0=8, y0=6)
    binned = np.full((12, 24), 50.0 * 6, dtype=np.float32)
    apply_bad_columns(binned, table, dark_e=1.5, x0=8, y0=6, bin_x=2, bin_y=3)
    np.testing.assert_allclose(binned, unbinned.reshape(12, 3, 24, 2).sum(axis=(1, 3)), rtol=1e-5)


# ---------------------------------------------------------------------- trails


def fit_line(image: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """Line through the lit pixels: (angle deg, a point x, y on it).

    Takes the charge-weighted centre of the trail in every column (or row, for a steep
    trail) whose profile the border does not cut, and fits a straight line through them.
    """
    yy, xx = np.nonzero(image > threshold)
    steep = np.ptp(yy) > np.ptp(xx)
    slices = image.T if steep else image  # slices[:, k]: profile across at major index k
    minor = np.arange(slices.shape[0], dtype=np.float64)
    lit = (slices > threshold).any(axis=0)
    whole = lit & (slices[0] < threshold) & (slices[-1] < threshold)
    major = np.flatnonzero(whole).astype(np.float64)
    profiles = slices[:, whole].astype(np.float64)
    centres = (profiles * minor[:, None]).sum(axis=0) / profiles.sum(axis=0)
    slope, intercept = np.polyfit(major, centres, 1)
    angle = math.degrees(math.atan2(1.0, slope) if steep else math.atan2(slope, 1.0)) % 180.0
    m0 = float(np.mean(major))
    point = (intercept + slope * m0, m0) if steep else (m0, intercept + slope * m0)
    return angle, point[0], point[1]


def border_crossings(angle_deg: float, cx: float, cy: float, size: int) -> np.ndarray:
    dx, dy = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    ts = []
    for p, d in ((cx, dx), (cy, dy)):
        if abs(d) > 1e-9:
            ts += [(-0.5 - p) / d, (size - 0.5 - p) / d]
    points = [(cx + t * dx, cy + t * dy) for t in ts]
    inside = [q for q in points if -0.51 <= q[0] <= size - 0.49 and -0.51 <= q[1] <= size - 0.49]
    return np.array(sorted(inside))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_satellite_trail_is_where_its_truth_says(seed: int) -> None:
    size = 128
    image = np.zeros((size, size), dtype=np.float32)
    trail = satellite_trail(
        image,
        np.random.default_rng(seed),
        rate_per_hour=1.0e6,  # certain
        exposure_s=60.0,
        fwhm_px=3.0,
        beta=3.0,
        pixel_scale_arcsec=1.5,
        zero_point_mag=22.0,
    )
    assert trail is not None
    angle, cx, cy = fit_line(image, 0.05 * image.max())
    truth_angle = math.degrees(math.atan2(trail.y1 - trail.y0, trail.x1 - trail.x0)) % 180.0
    assert min(abs(angle - truth_angle), 180.0 - abs(angle - truth_angle)) < 0.2
    found = border_crossings(angle, cx, cy, size)
    truth = np.array(sorted([(trail.x0, trail.y0), (trail.x1, trail.y1)]))
    np.testing.assert_allclose(found, truth, atol=0.3)
    # Charge per pixel of length: the surface brightness times the pixel scale.
    length = math.hypot(trail.x1 - trail.x0, trail.y1 - trail.y0)
    per_px = 10.0 ** (-0.4 * (trail.mag_per_arcsec - 22.0)) * 1.5
    assert trail.flux_e_per_px == pytest.approx(per_px)
    assert 13.0 <= trail.mag_per_arcsec <= 17.0
    assert image.sum() / length == pytest.approx(per_px, rel=0.03)
    assert trail.flux_in_image_e == pytest.approx(image.sum(), rel=1e-4)


def test_satellite_trail_is_the_same_in_every_subframe() -> None:
    kwargs = {
        "rate_per_hour": 1.0e6,
        "exposure_s": 10.0,
        "fwhm_px": 2.5,
        "beta": 3.0,
        "pixel_scale_arcsec": 1.0,
        "zero_point_mag": 21.0,
    }
    full = np.zeros((96, 128), dtype=np.float32)
    whole = satellite_trail(full, np.random.default_rng(9), **kwargs)
    sub = np.zeros((40, 50), dtype=np.float32)
    part = satellite_trail(
        sub, np.random.default_rng(9), sensor_shape=(96, 128), x0=30, y0=20, **kwargs
    )
    assert whole is not None and part is not None
    assert (part.x0, part.y0, part.x1, part.y1) == (whole.x0, whole.y0, whole.x1, whole.y1)
    assert part.flux_in_image_e > 0.0  # the trail does cross this subframe
    np.testing.assert_allclose(sub, full[20:60, 30:80], rtol=1e-5, atol=1e-3)


def test_trail_width_is_the_seeing() -> None:
    image = np.zeros((64, 64), dtype=np.float32)
    fwhm, beta = 8.0, 4.0
    added = add_trail(image, 30.0, -20.0, 30.0, 90.0, flux_e_per_px=1000.0, fwhm_px=fwhm, beta=beta)
    assert added == pytest.approx(64 * 1000.0, rel=0.01)
    profile = image[20:44].mean(axis=0).astype(np.float64)
    assert np.argmax(profile) == 30
    # Full width at half maximum, by linear interpolation either side of the peak.
    half = profile.max() / 2.0
    left = np.interp(half, profile[:31], np.arange(31))
    right = 30 + np.interp(-half, -profile[30:], np.arange(profile.size - 30))
    # A Moffat seen edge-on (its line-spread function) is a Moffat of beta - 1/2, a little
    # wider than the star: FWHM scales as sqrt(2^(1/beta) - 1).
    lsf_fwhm = (
        fwhm * math.sqrt(2.0 ** (1.0 / (beta - 0.5)) - 1.0) / math.sqrt(2.0 ** (1.0 / beta) - 1.0)
    )
    assert right - left == pytest.approx(lsf_fwhm, rel=0.03)


def test_satellite_trail_probability_grows_with_exposure() -> None:
    image = np.zeros((8, 8), dtype=np.float32)
    kwargs = {"fwhm_px": 2.0, "beta": 3.0, "pixel_scale_arcsec": 1.0, "zero_point_mag": 20.0}
    # 0.693 per hour over one hour: half the exposures see a trail.
    hits = sum(
        satellite_trail(
            image,
            np.random.default_rng(s),
            rate_per_hour=math.log(2.0),
            exposure_s=3600.0,
            **kwargs,
        )
        is not None
        for s in range(400)
    )
    assert hits == pytest.approx(200, abs=35)
    blank = np.zeros((8, 8), dtype=np.float32)
    none = satellite_trail(
        blank, np.random.default_rng(0), rate_per_hour=0.0, exposure_s=3600.0, **kwargs
    )
    assert none is None and not blank.any()


# ------------------------------------------------------------------------ Bayer


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_bayer_masks_tile_the_sensor(pattern: str) -> None:
    red, green, blue = bayer_channel_masks((6, 8), pattern)
    assert red.sum() == 12 and green.sum() == 24 and blue.sum() == 12
    assert (red.astype(int) + green + blue == 1).all()
    cell = {"R": red, "G": green, "B": blue}
    # The pattern reads the 2 x 2 cell row by row from the first stored pixel.
    for k, (y, x) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        assert cell[pattern[k]][y, x]
        assert cell[pattern[k]][y + 4, x + 6]


def test_bayer_offsets_shift_the_pattern() -> None:
    # ASCOM's RGGB at offset (1, 1) is BGGR, (1, 0) is GRBG, (0, 1) is GBRG.
    shifted = {
        (1, 1): "BGGR",
        (1, 0): "GRBG",
        (0, 1): "GBRG",
    }
    for (dx, dy), name in shifted.items():
        a = bayer_channel_masks((4, 6), "RGGB", x_offset=dx, y_offset=dy)
        b = bayer_channel_masks((4, 6), name)
        for ma, mb in zip(a, b, strict=True):
            np.testing.assert_array_equal(ma, mb)
    # A subframe starting at column 1 sees the full frame's pattern from there.
    full = bayer_channel_masks((4, 6), "grbg")[0]
    sub = bayer_channel_masks((4, 5), "GRBG", x_offset=1)[0]
    np.testing.assert_array_equal(sub, full[:, 1:])
    with pytest.raises(ValueError, match="Bayer"):
        bayer_channel_masks((2, 2), "RGBG")


def test_bayer_mosaic_takes_each_pixel_from_its_channel() -> None:
    shape = (4, 6)
    red = np.full(shape, 1.0, dtype=np.float32)
    green = np.full(shape, 2.0, dtype=np.float32)
    blue = np.full(shape, 3.0, dtype=np.float32)
    mosaic = bayer_mosaic(red, green, blue, pattern="BGGR")
    assert mosaic.dtype == np.float32 and mosaic.flags.c_contiguous
    np.testing.assert_array_equal(mosaic[:2, :2], [[3.0, 2.0], [2.0, 1.0]])
    np.testing.assert_array_equal(mosaic, np.tile(mosaic[:2, :2], (2, 3)))

    mono = np.full(shape, 100.0, dtype=np.float32)
    scaled = bayer_from_mono(mono, throughput_rgb=(0.3, 0.4, 0.25), pattern="GBRG")
    np.testing.assert_allclose(scaled[:2, :2], [[40.0, 25.0], [30.0, 40.0]])
    assert scaled.sum() == pytest.approx(100.0 * 24 * (0.3 + 2 * 0.4 + 0.25) / 4)
