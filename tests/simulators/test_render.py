"""Image formation of the simulated camera, checked against its own truth with SEP."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import sep

from obsctl.simulators import scenes
from obsctl.simulators.render import (
    STAR_TRUTH_DTYPE,
    ExposureSpec,
    RenderResult,
    SensorModel,
    add_stars,
    bin_charge,
    column_bias,
    dark_current_e_s,
    flat_response,
    hot_pixel_map,
    moffat_stamp,
    render_exposure,
    stamp_radius_px,
)

SENSOR = scenes.sensor(
    width_px=256, height_px=256, dark_current_e_s=0.01, hot_pixel_fraction=1e-3, seed=11
)

# 1.5"/px and 3" seeing: FWHM 2 px, a slightly undersampled star as on many real systems.
SCENE = scenes.sky(
    ra_deg=120.0, dec_deg=30.0, pixel_scale_arcsec=1.5, seeing_arcsec=3.0,
    catalog_seed=3, density_per_deg2=8000.0, mag_limit=17.5,
)  # fmt: skip
FWHM_PX = SCENE.seeing_arcsec / SCENE.pixel_scale_arcsec
GAIN = 1.0


def spec(**changes: object) -> ExposureSpec:
    """A full-frame 60 s light exposure at gain `GAIN`, with ``changes``."""
    return scenes.exposure(SENSOR, **({"exposure_s": 60.0, "electrons_per_adu": GAIN} | changes))


def bias_level(sensor: SensorModel, exposure: ExposureSpec) -> float:
    return sensor.bias_adu + exposure.offset * sensor.adu_per_offset


def debias(result: RenderResult, sensor: SensorModel, exposure: ExposureSpec) -> np.ndarray:
    """Raw ADU minus the bias level and the (known) column structure, as float64."""
    columns = column_bias(sensor)[: exposure.num_x * exposure.bin_x]
    columns = columns.reshape(-1, exposure.bin_x).mean(axis=1)
    return result.image.astype(np.float64) - bias_level(sensor, exposure) - columns[None, :]


def detect(image: np.ndarray, fwhm_px: float) -> tuple[np.ndarray, np.ndarray]:
    data = np.ascontiguousarray(image, dtype=np.float32)
    bkg = sep.Background(data)
    data = data - bkg
    objects = sep.extract(data, 5.0, err=bkg.globalrms, minarea=3)
    # Windowed centroids are pulled towards pixel centres by a window narrower than ~1 px.
    sig = max(fwhm_px / 2.355, 1.0)
    x, y, _ = sep.winpos(data, objects["x"], objects["y"], np.full(len(objects), sig))
    return x, y


def isolated_bright(
    stars: np.ndarray, shape: tuple[int, int], *, sky_e: float, rn_e: float, fwhm_px: float
) -> np.ndarray:
    """Stars with S/N > 30 in a 1.5 FWHM aperture, no other star within 10 px, off the edges."""
    npix = math.pi * (1.5 * fwhm_px) ** 2
    snr = stars["flux_e"] / np.sqrt(stars["flux_e"] + npix * (sky_e + rn_e**2))
    dist = np.hypot(stars["x"][:, None] - stars["x"], stars["y"][:, None] - stars["y"])
    np.fill_diagonal(dist, np.inf)
    ny, nx = shape
    keep = (
        (snr > 30)
        & (dist.min(axis=1) > 10.0)
        & (stars["x"] > 10)
        & (stars["x"] < nx - 11)
        & (stars["y"] > 10)
        & (stars["y"] < ny - 11)
    )
    return stars[keep]


def centroid_errors(result: RenderResult, exposure: ExposureSpec, fwhm_px: float) -> np.ndarray:
    x, y = detect(result.image, fwhm_px)
    bright = isolated_bright(
        result.stars,
        result.image.shape,
        sky_e=SCENE.sky_e_s_px * exposure.exposure_s * exposure.bin_x * exposure.bin_y,
        rn_e=exposure.read_noise_e,
        fwhm_px=fwhm_px,
    )
    assert len(bright) >= 5
    errors = np.array([np.hypot(x - s["x"], y - s["y"]).min() for s in bright])
    return errors


@pytest.fixture(scope="module")
def light() -> RenderResult:
    return render_exposure(SENSOR, spec(), SCENE)


def test_image_type_shape_and_layout(light):
    assert light.image.shape == (256, 256)
    assert light.image.dtype == np.uint16
    assert light.image.dtype.isnative
    assert light.image.flags.c_contiguous
    assert light.stars.dtype == STAR_TRUTH_DTYPE
    assert len(light.stars) > 20
    assert light.hot_pixels.shape[1] == 2


def test_large_adc_range_gives_int32():
    sensor = replace(SENSOR, max_adu=2**20 - 1)
    result = render_exposure(sensor, spec(num_x=32, num_y=16), SCENE)
    assert result.image.dtype == np.int32
    assert result.image.shape == (16, 32)


def test_truth_fluxes_follow_the_zero_point(light):
    expected = 10 ** (-0.4 * (light.stars["mag"] - SCENE.zero_point_mag)) * 60.0
    np.testing.assert_allclose(light.stars["flux_e"], expected)
    assert np.all((light.stars["x"] >= -0.5) & (light.stars["x"] < 255.5))
    assert np.all((light.stars["y"] >= -0.5) & (light.stars["y"] < 255.5))


def test_centroids_match_truth(light):
    errors = centroid_errors(light, spec(), FWHM_PX)
    assert errors.max() < 0.3
    assert np.median(errors) < 0.05


def test_binned_centroids_match_truth(light):
    exposure = spec(bin_x=2, bin_y=2, num_x=128, num_y=128)
    binned = render_exposure(SENSOR, exposure, SCENE)
    assert binned.image.shape == (128, 128)
    errors = centroid_errors(binned, exposure, FWHM_PX / 2)
    assert errors.max() < 0.3
    assert np.median(errors) < 0.1
    # The same stars, at the binned coordinates of the unbinned truth.
    ids, i1, i2 = np.intersect1d(light.stars["id"], binned.stars["id"], return_indices=True)
    assert len(ids) == len(light.stars)
    np.testing.assert_allclose(binned.stars["x"][i2], (light.stars["x"][i1] - 0.5) / 2)
    np.testing.assert_allclose(binned.stars["y"][i2], (light.stars["y"][i1] - 0.5) / 2)


def test_subframe_centroids_match_truth(light):
    exposure = spec(start_x=40, start_y=60, num_x=160, num_y=128)
    sub = render_exposure(SENSOR, exposure, SCENE)
    assert sub.image.shape == (128, 160)
    errors = centroid_errors(sub, exposure, FWHM_PX)
    assert errors.max() < 0.3
    # Truth is in output coordinates: the full frame's stars, shifted by the origin.
    full = light.stars
    inside = (full["x"] >= 39.5) & (full["x"] < 199.5) & (full["y"] >= 59.5) & (full["y"] < 187.5)
    np.testing.assert_array_equal(np.sort(full["id"][inside]), np.sort(sub.stars["id"]))
    chosen = full[inside][np.argsort(full["id"][inside])]
    shifted = sub.stars[np.argsort(sub.stars["id"])]
    np.testing.assert_allclose(shifted["x"], chosen["x"] - 40)
    np.testing.assert_allclose(shifted["y"], chosen["y"] - 60)


def test_aperture_flux_matches_truth(light):
    # Undo what calibration undoes: bias and column structure (known), flat field (known),
    # sky and dark (known levels). What is left in an aperture is the star's light.
    exposure = spec()
    flat = flat_response(SENSOR, x0=0, y0=0, width=256, height=256)
    electrons = debias(light, SENSOR, exposure) * GAIN
    dark_e = dark_current_e_s(SENSOR, exposure.ccd_temperature_c) * exposure.exposure_s
    electrons -= dark_e
    electrons /= flat
    electrons -= SCENE.sky_e_s_px * exposure.exposure_s
    data = np.ascontiguousarray(electrons, dtype=np.float32)

    radius = 2.0 * FWHM_PX
    beta = SCENE.moffat_beta
    alpha = FWHM_PX / (2 * math.sqrt(2 ** (1 / beta) - 1))
    enclosed = 1 - (1 + radius**2 / alpha**2) ** (1 - beta)
    bright = isolated_bright(
        light.stars,
        (256, 256),
        sky_e=SCENE.sky_e_s_px * exposure.exposure_s,
        rn_e=exposure.read_noise_e,
        fwhm_px=FWHM_PX,
    )
    hot = light.hot_pixels
    clean = [
        s
        for s in bright
        if s["flux_e"] > 30000
        and np.hypot(hot[:, 1] - s["x"], hot[:, 0] - s["y"]).min() > radius + 1
    ]
    assert len(clean) >= 3
    x = np.array([s["x"] for s in clean])
    y = np.array([s["y"] for s in clean])
    flux, _, _ = sep.sum_circle(data, x, y, radius, subpix=10)
    truth = np.array([s["flux_e"] for s in clean]) * enclosed
    # Tolerance 3 %: shot, sky and read noise in the aperture are below 0.75 % for these stars.
    np.testing.assert_allclose(flux, truth, rtol=0.03)


def test_stamp_is_normalised_and_centred():
    radius = 40
    stamp = moffat_stamp(0.3, -0.2, fwhm_px=2.0, beta=3.0, radius_px=radius, oversample=9)
    alpha = 2.0 / (2 * math.sqrt(2 ** (1 / 3) - 1))
    # The square stamp holds at least the flux of its inscribed circle.
    assert stamp.sum() == pytest.approx(1.0, abs=1 - (1 - (1 + radius**2 / alpha**2) ** -2))
    grid = np.arange(-radius, radius + 1)
    assert (stamp.sum(axis=0) @ grid) / stamp.sum() == pytest.approx(0.3, abs=1e-3)
    assert (stamp.sum(axis=1) @ grid) / stamp.sum() == pytest.approx(-0.2, abs=1e-3)
    assert stamp_radius_px(2.0, 3.0) >= 8


def test_add_stars_conserves_flux_and_clips_at_edges():
    image = np.zeros((64, 64), dtype=np.float32)
    add_stars(
        image,
        np.array([20.25, -0.5]),
        np.array([30.4, 63.5]),
        np.array([1000.0, 1000.0]),
        fwhm_px=2.5,
        beta=4.0,
    )
    radius = stamp_radius_px(2.5, 4.0)
    inner = image[30 - radius : 31 + radius, 20 - radius : 21 + radius]
    assert inner.sum() == pytest.approx(1000.0, rel=0.01)
    # A star in the corner keeps only about a quarter of its light.
    assert image[50:, :14].sum() == pytest.approx(250.0, rel=0.1)


def test_bin_charge_sums_blocks():
    rng = np.random.default_rng(0)
    charge = rng.random((8, 12), dtype=np.float32)
    binned = bin_charge(charge, 3, 2)
    assert binned.shape == (4, 4)
    assert binned[1, 2] == pytest.approx(charge[2:4, 6:9].sum())
    assert binned.sum() == pytest.approx(charge.sum(), rel=1e-6)
    with pytest.raises(ValueError, match="not a multiple"):
        bin_charge(charge, 5, 1)


def test_bias_frame_level_noise_and_columns():
    exposure = spec(exposure_s=0.0, light=False, electrons_per_adu=2.0)
    a = render_exposure(SENSOR, exposure, None)
    b = render_exposure(SENSOR, replace(exposure, seed=2), None)
    level = bias_level(SENSOR, exposure)
    assert a.image.astype(np.float64).mean() == pytest.approx(level, abs=0.5)
    # The difference of two biases cancels the fixed pattern and leaves read noise.
    noise_adu = np.std(a.image.astype(np.float64) - b.image) / math.sqrt(2)
    assert noise_adu == pytest.approx(exposure.read_noise_e / exposure.electrons_per_adu, rel=0.1)
    # Column structure: column means follow the sensor's fixed column offsets.
    column_means = a.image.mean(axis=0) - level
    assert np.std(column_means) > 1.0
    assert np.corrcoef(column_means, column_bias(SENSOR))[0, 1] > 0.95
    assert len(a.stars) == 0


def test_dark_signal_scales_with_time_and_temperature():
    sensor = replace(SENSOR, dark_current_e_s=0.5)
    hot = hot_pixel_map(sensor)[0]
    normal = np.ones((256, 256), dtype=bool)
    normal[hot[:, 0], hot[:, 1]] = False

    def dark_e(**changes: object) -> tuple[float, float]:
        exposure = spec(light=False, **changes)
        electrons = debias(render_exposure(sensor, exposure, SCENE), sensor, exposure) * GAIN
        return electrons[normal].mean(), electrons[normal].var()

    d10, _ = dark_e(exposure_s=10.0)
    d20, var20 = dark_e(exposure_s=20.0)
    d20_warm, _ = dark_e(exposure_s=20.0, ccd_temperature_c=-10.0 + sensor.dark_doubling_c)
    assert d10 == pytest.approx(5.0, rel=0.03)
    assert d20 / d10 == pytest.approx(2.0, rel=0.03)
    assert d20_warm / d20 == pytest.approx(2.0, rel=0.03)
    # Shot noise of the dark current on top of read noise.
    assert var20 == pytest.approx(10.0 + 3.0**2, rel=0.05)


def test_noiseless_readout_shows_poisson_counts():
    # With no read noise and 1 e-/ADU every pixel is an integer count of dark electrons.
    sensor = replace(SENSOR, dark_current_e_s=0.05, hot_pixel_fraction=0.0, read_noise_e=0.0)
    exposure = spec(exposure_s=10.0, light=False, read_noise_e=0.0)
    result = render_exposure(sensor, exposure, None)
    pedestal = np.rint(bias_level(sensor, exposure) + column_bias(sensor))
    counts = result.image.astype(np.int64) - pedestal.astype(np.int64)[None, :]
    assert counts.min() >= 0
    frequencies = np.bincount(counts.ravel(), minlength=4)[:4] / counts.size
    mean = 0.5
    pmf = [math.exp(-mean) * mean**k / math.factorial(k) for k in range(4)]
    np.testing.assert_allclose(frequencies, pmf, atol=0.005)


def test_hot_pixels_are_where_reported():
    exposure = spec(exposure_s=300.0, light=False, bin_x=2, bin_y=2, start_x=8, start_y=4)
    exposure = replace(exposure, num_x=100, num_y=110)
    result = render_exposure(SENSOR, exposure, None)
    hot = result.hot_pixels
    all_hot = hot_pixel_map(SENSOR)[0]
    area_y = (all_hot[:, 0] >= 8) & (all_hot[:, 0] < 8 + 220)
    area_x = (all_hot[:, 1] >= 16) & (all_hot[:, 1] < 16 + 200)
    np.testing.assert_array_equal(hot, all_hot[area_y & area_x])
    assert len(hot) > 20
    # Hot pixels carry 50-500 times 3 e- of dark: far above the read noise, and nothing else is.
    signal = debias(result, SENSOR, exposure)
    hy = (hot[:, 0] - 8) // 2
    hx = (hot[:, 1] - 16) // 2
    assert np.all(signal[hy, hx] > 100)
    bright = np.argwhere(signal > 100)
    assert {tuple(p) for p in bright} == set(zip(hy.tolist(), hx.tolist(), strict=True))


def test_flat_lamp_shows_vignetting_and_no_stars():
    scene = replace(SCENE, flat_panel_e_s=2000.0)
    exposure = spec(exposure_s=10.0)
    result = render_exposure(SENSOR, exposure, scene)
    assert len(result.stars) == 0
    electrons = debias(result, SENSOR, exposure) * GAIN
    normalised = electrons / np.median(electrons)
    centre = normalised[112:144, 112:144].mean()
    for corner in (
        normalised[:16, :16],
        normalised[:16, -16:],
        normalised[-16:, :16],
        normalised[-16:, -16:],
    ):
        assert corner.mean() < 0.96 * centre
    # The lamp image is the flat response itself, to within shot noise (1/sqrt(20000)).
    flat = flat_response(SENSOR, x0=0, y0=0, width=256, height=256)
    ratio = electrons / (flat * 20000.0)
    assert np.median(ratio) == pytest.approx(1.0, abs=0.002)
    assert np.std(ratio) < 0.01
    data = np.ascontiguousarray(normalised, dtype=np.float32)
    bkg = sep.Background(data)
    assert len(sep.extract(data - bkg, 10.0, err=bkg.globalrms, minarea=5)) == 0


def test_flat_response_is_the_same_for_any_region():
    full = flat_response(SENSOR, x0=0, y0=0, width=256, height=256)
    part = flat_response(SENSOR, x0=37, y0=70, width=50, height=90)
    np.testing.assert_array_equal(part, full[70:160, 37:87])
    assert full.min() > 0.75
    assert full.max() < 1.05
    # Pixel response non-uniformity of 0.5-1 %: the pixel-to-pixel scatter.
    assert 0.004 < np.std(np.diff(full[100:150, 100:150], axis=1)) / math.sqrt(2) < 0.012
    with pytest.raises(ValueError, match="exceeds"):
        flat_response(SENSOR, x0=200, y0=0, width=100, height=10)


def test_saturation_clips_at_full_well_and_adc_range():
    scene = replace(SCENE, flat_panel_e_s=1e6)
    exposure = spec(exposure_s=1.0, num_x=64, num_y=64)
    electrons = debias(render_exposure(SENSOR, exposure, scene), SENSOR, exposure) * GAIN
    # Read noise and row noise remain on top of the full well.
    assert np.mean(electrons) == pytest.approx(SENSOR.full_well_e, abs=1.0)
    assert np.std(electrons) < 4.0
    twelve_bit = render_exposure(replace(SENSOR, max_adu=4095), exposure, scene)
    assert np.all(twelve_bit.image == 4095)


def test_cosmic_rays_grow_with_exposure_time():
    sensor = replace(SENSOR, cosmic_rate_cm2_s=20.0)
    area_cm2 = 256 * 256 * (3.76e-4) ** 2
    counts = {
        t: render_exposure(sensor, spec(exposure_s=t, light=False), None).cosmic_count
        for t in (1.0, 100.0, 1000.0)
    }
    assert counts[1.0] < counts[100.0] < counts[1000.0]
    expected = 20.0 * area_cm2 * 1000.0
    assert abs(counts[1000.0] - expected) < 5 * math.sqrt(expected)
    # Hits are visible: without hot pixels, nothing else in a dark is this bright.
    frame = render_exposure(replace(sensor, hot_pixel_fraction=0.0), spec(exposure_s=100.0), None)
    assert frame.cosmic_count >= 10
    assert np.count_nonzero(debias(frame, sensor, spec()) > 100) >= 0.3 * frame.cosmic_count


def test_same_seed_is_identical_and_different_seeds_differ(light):
    again = render_exposure(SENSOR, spec(), SCENE)
    np.testing.assert_array_equal(again.image, light.image)
    other = render_exposure(SENSOR, spec(seed=2), SCENE)
    assert not np.array_equal(other.image, light.image)
    # Only the noise differs: the fixed pattern and the sky are the same.
    np.testing.assert_array_equal(other.stars, light.stars)
    np.testing.assert_array_equal(other.hot_pixels, light.hot_pixels)
    diff = other.image.astype(np.float64) - light.image
    assert abs(diff.mean()) < 0.5


def test_subframe_outside_the_sensor_is_rejected():
    with pytest.raises(ValueError, match="exceeds the 256x256 sensor"):
        render_exposure(SENSOR, spec(start_x=100, num_x=200), SCENE)
    with pytest.raises(ValueError, match="bin_x"):
        spec(bin_x=0)
