"""Image formation of the simulated camera, checked against its own truth with SEP."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import sep

from obsctl.config import SimulatedSkyConfig
from obsctl.simulators import scenes
from obsctl.simulators.camera_model import sky_scene
from obsctl.simulators.render import (
    STAR_TRUTH_DTYPE,
    ExposureSpec,
    RenderResult,
    SensorModel,
    SkyScene,
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
from obsctl.simulators.sky import synthetic_catalog

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


# --- photometric systematics: extinction, colour terms, band zero points, seeing, clouds ---
#
# The expected electrons are computed here from the synthetic catalog (the simulator's input)
# and the configured coefficients with plain numpy; the rendered frames are measured with SEP.

CLEAN = scenes.sensor()  # 256 x 256, no dark current, hot pixels or cosmic rays
# A sparse field of bright stars: enough isolated ones for 1 % photometry in a small frame.
ATMOSPHERE_SKY = SimulatedSkyConfig(
    seeing_arcsec=3.0, moffat_beta=4.0, star_density_per_deg2=6000.0, mag_bright=10.5,
    mag_limit=16.0, seed=5,
)  # fmt: skip
SCALE = 1.5  # arcsec per pixel
EXPOSURE_S = 120.0


def atmosphere_scene(band: str, airmass: float, **changes: Any) -> SkyScene:
    scene = sky_scene(
        ATMOSPHERE_SKY, ra_deg=120.0, dec_deg=30.0, rotation_deg=0.0,
        pixel_scale_arcsec=SCALE, band=band, airmass=airmass,
    )  # fmt: skip
    return replace(scene, **changes)


def catalog_for(result: RenderResult) -> dict[str, np.ndarray]:
    """The catalog magnitudes of the frame's truth stars, straight from the synthetic sky."""
    cat = synthetic_catalog(
        120.0, 30.0, 0.2, seed=ATMOSPHERE_SKY.seed,
        density_per_deg2=ATMOSPHERE_SKY.star_density_per_deg2,
        mag_bright=ATMOSPHERE_SKY.mag_bright, mag_limit=ATMOSPHERE_SKY.mag_limit,
    )  # fmt: skip
    index = {star_id: i for i, star_id in enumerate(cat.id.tolist())}
    rows = np.array([index[i] for i in result.stars["id"].tolist()])
    return {"B": cat.mag_b[rows], "V": cat.mag_v[rows], "R": cat.mag_r[rows], "I": cat.mag_i[rows]}


def expected_electrons(
    mags: dict[str, np.ndarray], band: str, airmass: float, exposure_s: float, t: float = 1.0
) -> np.ndarray:
    """Electrons per star from the configured zero point, extinction and colour term."""
    sky = ATMOSPHERE_SKY
    m = 0.5 * (mags["V"] + mags["R"]) if band == "L" else mags[band]
    colour = {
        "B": mags["B"] - mags["V"], "V": mags["B"] - mags["V"], "R": mags["V"] - mags["R"],
        "I": mags["R"] - mags["I"], "L": mags["V"] - mags["I"],
    }[band]  # fmt: skip
    zp = sky.zero_point_mag + getattr(sky.zero_point_offset_mag, band)
    k = getattr(sky.extinction_mag_per_airmass, band)
    c = getattr(sky.colour_term, band)
    return exposure_s * t * 10 ** (-0.4 * (m + c * colour + k * airmass - zp))


def moffat_enclosed(radius_px: float, fwhm_px: float, beta: float) -> float:
    alpha = fwhm_px / (2 * math.sqrt(2 ** (1 / beta) - 1))
    return 1 - (1 + radius_px**2 / alpha**2) ** (1 - beta)


def star_electrons(result: RenderResult, exposure: ExposureSpec, sky_e_s_px: float) -> np.ndarray:
    """Calibrate as the pipeline would: bias, columns, flat and the (known) sky level off."""
    flat = flat_response(CLEAN, x0=0, y0=0, width=CLEAN.width_px, height=CLEAN.height_px)
    electrons = debias(result, CLEAN, exposure) * exposure.electrons_per_adu / flat
    electrons -= sky_e_s_px * exposure.exposure_s
    return np.ascontiguousarray(electrons, dtype=np.float32)


def clean_stars(
    stars: np.ndarray, flux_e: np.ndarray, radius_px: float, fwhm_px: float
) -> np.ndarray:
    """Indices of bright, unsaturated stars off the edges that neighbours barely touch."""
    beta = ATMOSPHERE_SKY.moffat_beta
    alpha = fwhm_px / (2 * math.sqrt(2 ** (1 / beta) - 1))
    dist = np.hypot(stars["x"][:, None] - stars["x"], stars["y"][:, None] - stars["y"])
    np.fill_diagonal(dist, np.inf)
    # A neighbour at distance d puts at most its light beyond d - r into the aperture.
    gap = np.maximum(dist - radius_px, 0.0)
    spill = (flux_e[None, :] * (1 + (gap / alpha) ** 2) ** (1 - beta)).sum(axis=1)
    peak = flux_e * 0.7 / fwhm_px**2  # well above the true peak fraction of a Moffat
    margin = radius_px + 2 * fwhm_px
    keep = (
        (flux_e > 10000)
        & (peak < 0.7 * CLEAN.full_well_e)
        & (spill < 0.002 * flux_e)
        & (stars["x"] > margin) & (stars["x"] < CLEAN.width_px - 1 - margin)
        & (stars["y"] > margin) & (stars["y"] < CLEAN.height_px - 1 - margin)
    )  # fmt: skip
    return np.flatnonzero(keep)


def aperture_fluxes(band: str, airmass: float, **changes: Any):
    """Render a frame; return its truth, the catalog's expected and the measured electrons."""
    scene = atmosphere_scene(band, airmass, **changes)
    exposure = scenes.exposure(CLEAN, exposure_s=EXPOSURE_S, seed=int(airmass * 10) + len(band))
    result = render_exposure(CLEAN, exposure, scene)
    transmission = changes.get("transmission", 1.0)
    expected = expected_electrons(catalog_for(result), band, airmass, EXPOSURE_S, transmission)
    fwhm_px = ATMOSPHERE_SKY.seeing_arcsec * airmass**0.6 / SCALE
    radius = 3.0 * fwhm_px
    data = star_electrons(result, exposure, scene.sky_e_s_px * transmission)
    use = clean_stars(result.stars, expected, radius, fwhm_px)
    flux, _, _ = sep.sum_circle(
        data, result.stars["x"][use], result.stars["y"][use], radius, subpix=10
    )
    measured = flux / moffat_enclosed(radius, fwhm_px, ATMOSPHERE_SKY.moffat_beta)
    return result, expected, use, measured


def test_truth_flux_is_the_catalog_through_the_atmosphere():
    scene = atmosphere_scene("V", 1.7, transmission=0.8)
    result = render_exposure(CLEAN, scenes.exposure(CLEAN, exposure_s=30.0), scene)
    mags = catalog_for(result)
    assert len(result.stars) > 30
    # The documented truth columns: catalog magnitudes, the colour and the flux.
    np.testing.assert_array_equal(result.stars["mag"], mags["V"])
    np.testing.assert_array_equal(result.stars["mag_b"], mags["B"])
    np.testing.assert_array_equal(result.stars["mag_i"], mags["I"])
    np.testing.assert_allclose(result.stars["colour"], mags["B"] - mags["V"])
    np.testing.assert_allclose(result.stars["mag_inst"], mags["V"] + 0.05 * (mags["B"] - mags["V"]))
    np.testing.assert_allclose(
        result.stars["flux_e"], expected_electrons(mags, "V", 1.7, 30.0, 0.8), rtol=1e-9
    )
    # The per-frame truth.
    assert result.sky is not None
    assert result.sky.band == "V" and result.sky.airmass == 1.7
    assert result.sky.extinction_mag == pytest.approx(0.15 * 1.7)
    assert result.sky.zero_point_mag == pytest.approx(21.0)
    assert result.sky.transmission == 0.8
    assert result.sky.effective_zero_point_mag == pytest.approx(
        21.0 - 0.15 * 1.7 + 2.5 * math.log10(0.8)
    )
    assert result.sky.seeing_arcsec == pytest.approx(3.0 * 1.7**0.6, rel=1e-3)
    assert result.sky.sky_e_s_px == pytest.approx(scene.sky_e_s_px * 0.8)
    assert render_exposure(CLEAN, scenes.exposure(CLEAN, light=False), scene).sky is None


@pytest.mark.parametrize(("band", "airmass"), [("V", 1.3), ("B", 2.2), ("L", 1.0)])
def test_measured_fluxes_match_the_catalog_through_the_atmosphere(band, airmass):
    _, expected, use, measured = aperture_fluxes(band, airmass)
    assert len(use) >= 5
    # Summed over the clean stars, shot, sky and read noise are well under 1 %.
    assert measured.sum() == pytest.approx(expected[use].sum(), rel=0.015)
    np.testing.assert_allclose(measured, expected[use], rtol=0.05)


def test_zero_point_differs_by_filter_and_falls_with_airmass():
    zero_points: dict[tuple[str, float], float] = {}
    for band in ("B", "V", "R", "I", "L"):
        for airmass in (1.0, 2.0):
            result, _, use, measured = aperture_fluxes(band, airmass)
            assert len(use) >= 5
            mags = catalog_for(result)
            m = 0.5 * (mags["V"] + mags["R"]) if band == "L" else mags[band]
            # The zero point a frame shows: catalog magnitude minus instrumental magnitude.
            zero_points[band, airmass] = float(
                np.median(m[use] + 2.5 * np.log10(measured / EXPOSURE_S))
            )
    at_zenith = {band: zero_points[band, 1.0] for band in "BVRIL"}
    # Configured: B 20.4, V 21.0, R 21.1, I 20.6, L 21.6 above the air, less k at airmass 1.
    assert sorted(at_zenith, key=at_zenith.__getitem__) == ["B", "I", "V", "R", "L"]
    assert at_zenith["V"] - at_zenith["B"] > 0.5
    sky = ATMOSPHERE_SKY
    for band in "BVRIL":
        k = getattr(sky.extinction_mag_per_airmass, band)
        # The same stars at both airmasses: the colour term cancels, the extinction stays.
        assert zero_points[band, 2.0] - zero_points[band, 1.0] == pytest.approx(-k, abs=0.02)


def moffat_image(
    shape: tuple[int, int], x: np.ndarray, y: np.ndarray, fwhm_px: float, beta: float
) -> np.ndarray:
    """Unit-flux Moffat stars integrated over pixels (10 x 10 sub-samples), written here."""
    alpha = fwhm_px / (2 * math.sqrt(2 ** (1 / beta) - 1))
    half = math.ceil(6 * fwhm_px)
    image = np.zeros((shape[0] + 2 * half, shape[1] + 2 * half))  # margins for edge stars
    sub = (np.arange(10) + 0.5) / 10 - 0.5
    for xs, ys in zip(x, y, strict=True):
        cx, cy = round(xs), round(ys)
        px = (np.arange(cx - half, cx + half + 1)[:, None] + sub).ravel() - xs
        py = (np.arange(cy - half, cy + half + 1)[:, None] + sub).ravel() - ys
        r2 = py[:, None] ** 2 + px[None, :] ** 2
        profile = (beta - 1) / (math.pi * alpha**2) * (1 + r2 / alpha**2) ** -beta
        n = 2 * half + 1
        image[cy : cy + n, cx : cx + n] += profile.reshape(n, 10, n, 10).mean(axis=(1, 3))
    return np.ascontiguousarray(image[half:-half, half:-half])


def test_seeing_grows_as_airmass_to_the_0_6():
    beta = ATMOSPHERE_SKY.moffat_beta
    zenith_arcsec = 3.75
    r_half: dict[float, float] = {}
    for airmass in (1.0, 2.0, 3.0):
        scene = atmosphere_scene("R", airmass, seeing_arcsec=zenith_arcsec)
        exposure = scenes.exposure(CLEAN, exposure_s=EXPOSURE_S)
        result = render_exposure(CLEAN, exposure, scene)
        data = star_electrons(result, exposure, scene.sky_e_s_px)
        expected_px = zenith_arcsec * airmass**0.6 / SCALE
        use = clean_stars(result.stars, result.stars["flux_e"], 3 * expected_px, expected_px)
        assert len(use) >= 3
        x, y = result.stars["x"][use], result.stars["y"][use]
        rmax = np.full(len(use), 3 * expected_px)
        measured, _ = sep.flux_radius(data, x, y, rmax, 0.5, subpix=10)
        # The same measurement on pixelated profiles of the expected FWHM, free of noise.
        model = moffat_image(data.shape, x, y, expected_px, beta)
        reference, _ = sep.flux_radius(model, x, y, rmax, 0.5, subpix=10)
        np.testing.assert_allclose(measured, reference, rtol=0.06)  # noise: a few % a star
        assert np.median(measured / reference) == pytest.approx(1.0, abs=0.01)
        r_half[airmass] = float(np.median(measured / reference)) * expected_px
        assert result.sky is not None
        assert result.sky.seeing_arcsec == pytest.approx(zenith_arcsec * airmass**0.6, rel=1e-3)
    for airmass in (2.0, 3.0):
        assert r_half[airmass] / r_half[1.0] == pytest.approx(airmass**0.6, rel=0.015)


def test_clouds_dim_stars_and_sky_alike():
    clear, expected_clear, use, measured_clear = aperture_fluxes("V", 1.2)
    cloudy, expected_cloudy, use_c, measured_cloudy = aperture_fluxes("V", 1.2, transmission=0.5)
    np.testing.assert_allclose(expected_cloudy, 0.5 * expected_clear)
    common, i1, i2 = np.intersect1d(use, use_c, return_indices=True)
    assert len(common) >= 5
    ratio = measured_cloudy[i2].sum() / measured_clear[i1].sum()
    assert ratio == pytest.approx(0.5, rel=0.02)
    # The sky level (the frame's median, calibrated, in a sparse field) halves too.
    exposure = scenes.exposure(CLEAN, exposure_s=EXPOSURE_S)
    levels = [np.median(star_electrons(frame, exposure, 0.0)) for frame in (clear, cloudy)]
    sky_e = atmosphere_scene("V", 1.2).sky_e_s_px * EXPOSURE_S
    assert levels[0] == pytest.approx(sky_e, rel=0.02)
    assert levels[1] == pytest.approx(0.5 * sky_e, rel=0.02)


# ---------------------------------------------------- galaxies, trails, bleeds, bad columns


def electrons(result: RenderResult, sensor: SensorModel, exposure: ExposureSpec) -> np.ndarray:
    """Debiased frame in electrons (float64)."""
    return debias(result, sensor, exposure) * exposure.electrons_per_adu


def test_hand_built_scenes_render_no_artefacts(light):
    # SCENE and SENSOR are built without the new fields: all of them default to off.
    assert light.galaxies.size == 0
    assert light.trail is None
    assert light.bad_columns.size == 0


# Galaxies only, bright against a faint sky: 2"/px keeps their stamps small enough to find
# several isolated ones in 256 x 256 pixels.
GALAXY_SCENE = scenes.sky(
    density_per_deg2=0.0, pixel_scale_arcsec=2.0, galaxy_density_r21_per_deg2=10000.0,
    galaxy_mag_bright=15.0, galaxy_mag_limit=19.0, zero_point_mag=26.0, sky_e_s_px=1.0,
)  # fmt: skip


def isolated_galaxy_boxes(galaxies: np.ndarray, shape: tuple[int, int], psf_radius: int):
    """Yield (row, box slices) of galaxies whose whole stamp is inside and overlaps no other."""
    from obsctl.simulators.artefacts import galaxy_stamp_radius_px

    reach = galaxy_stamp_radius_px(galaxies["r_eff_px"], galaxies["sersic_n"]) + psf_radius + 1
    cx = np.floor(galaxies["x"] + 0.5).astype(int)
    cy = np.floor(galaxies["y"] + 0.5).astype(int)
    ny, nx = shape
    for i in range(len(galaxies)):
        r = int(reach[i])
        if cx[i] - r < 0 or cy[i] - r < 0 or cx[i] + r >= nx or cy[i] + r >= ny:
            continue
        near = (np.abs(cx - cx[i]) <= r + reach) & (np.abs(cy - cy[i]) <= r + reach)
        if near.sum() > 1:
            continue
        yield galaxies[i], (slice(cy[i] - r, cy[i] + r + 1), slice(cx[i] - r, cx[i] + r + 1))


@pytest.mark.parametrize("catalog_seed", [1, 2])
def test_galaxy_flux_and_position_match_truth(catalog_seed):
    chip = scenes.sensor()
    scene = replace(GALAXY_SCENE, catalog_seed=catalog_seed)
    exposure = scenes.exposure(chip)
    result = render_exposure(chip, exposure, scene)
    assert len(result.galaxies) > 10
    assert result.stars.size == 0
    sky_e = scene.sky_e_s_px * exposure.exposure_s
    flat = flat_response(chip, x0=0, y0=0, width=chip.width_px, height=chip.height_px)
    light_e = electrons(result, chip, exposure) / flat - sky_e
    checked = 0
    fwhm_px = scene.seeing_arcsec / scene.pixel_scale_arcsec
    for galaxy, box in isolated_galaxy_boxes(
        result.galaxies, light_e.shape, stamp_radius_px(fwhm_px, scene.moffat_beta)
    ):
        stamp = light_e[box]
        assert stamp.sum() == pytest.approx(galaxy["flux_e"], rel=0.03)
        yy, xx = np.mgrid[box]
        weight = np.clip(stamp, 0.0, None)
        assert (weight * xx).sum() / weight.sum() == pytest.approx(galaxy["x"], abs=0.3)
        assert (weight * yy).sum() / weight.sum() == pytest.approx(galaxy["y"], abs=0.3)
        checked += 1
    assert checked >= 2


def test_galaxies_go_through_the_atmosphere():
    from obsctl.simulators.artefacts import galaxies

    chip = scenes.sensor(width_px=128, height_px=128)
    exposure = scenes.exposure(chip)
    clear = render_exposure(chip, exposure, GALAXY_SCENE)
    hazy_scene = replace(
        GALAXY_SCENE, airmass=1.5, extinction_mag_per_airmass=0.2, colour_term=0.1,
        transmission=0.5,
    )  # fmt: skip
    hazy = render_exposure(chip, exposure, hazy_scene)
    assert clear.galaxies.size > 3
    assert np.array_equal(clear.galaxies["id"], hazy.galaxies["id"])
    # The colour term multiplies the galaxy's own B - V (the V band's catalog colour).
    catalog = galaxies(150.0, 20.0, 0.1, seed=1, density_r21_per_deg2=10000.0,
                       mag_bright=15.0, mag_limit=19.0)  # fmt: skip
    by_id = {row["id"]: row for row in catalog}
    colour = np.array([by_id[i]["mag_b"] - by_id[i]["mag_v"] for i in clear.galaxies["id"]])
    expected = 0.5 * 10.0 ** (-0.4 * (0.2 * 1.5 + 0.1 * colour))
    np.testing.assert_allclose(hazy.galaxies["flux_e"] / clear.galaxies["flux_e"], expected)
    # And the frame holds that much less galaxy light.
    sky_e = GALAXY_SCENE.sky_e_s_px * 60.0 * flat_response(chip, x0=0, y0=0, width=128, height=128)
    clear_e = electrons(clear, chip, exposure) - sky_e
    hazy_e = electrons(hazy, chip, exposure) - 0.5 * sky_e
    ratio = hazy_e.sum() / clear_e.sum()
    assert ratio == pytest.approx(float(np.average(expected, weights=clear.galaxies["flux_e"])),
                                  rel=0.03)  # fmt: skip


def test_galaxy_truth_in_binned_subframe():
    chip = scenes.sensor()
    full = render_exposure(chip, scenes.exposure(chip), GALAXY_SCENE)
    sub_spec = scenes.exposure(chip, bin_x=2, bin_y=2, start_x=16, start_y=8, num_x=64, num_y=64)
    sub = render_exposure(chip, sub_spec, GALAXY_SCENE)
    assert sub.galaxies.size > 0
    for galaxy in sub.galaxies:
        (match,) = full.galaxies[full.galaxies["id"] == galaxy["id"]]
        # Output pixel j of a 2x binned subframe is centred on unbinned 2 * (j + start) + 0.5.
        assert 2 * (galaxy["x"] + 16) + 0.5 == pytest.approx(match["x"])
        assert 2 * (galaxy["y"] + 8) + 0.5 == pytest.approx(match["y"])
        assert galaxy["flux_e"] == pytest.approx(match["flux_e"])


TRAIL_SCENE = scenes.sky(
    density_per_deg2=0.0, satellite_rate_per_hour=1e9, sky_e_s_px=1.0,
    trail_mag_per_arcsec_range=(15.0, 15.0),
)  # fmt: skip


def distance_to_trail(trail, shape, x0=0, y0=0) -> np.ndarray:
    """Signed distance (unbinned pixel) of each pixel of a read area from the trail's line."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    dx, dy = trail.x1 - trail.x0, trail.y1 - trail.y0
    length = math.hypot(dx, dy)
    return ((yy + y0 - trail.y0) * dx - (xx + x0 - trail.x0) * dy) / length


def test_trail_lies_where_the_truth_says():
    chip = scenes.sensor()
    exposure = scenes.exposure(chip)
    result = render_exposure(chip, exposure, TRAIL_SCENE)
    trail = result.trail
    assert trail is not None
    # 15 mag/arcsec at zero point 22 and 1"/px: 10**(0.4 * 7) e- per pixel of length.
    assert trail.flux_e_per_px == pytest.approx(10 ** (0.4 * 7.0))
    flat = flat_response(chip, x0=0, y0=0, width=256, height=256)
    excess = electrons(result, chip, exposure) / flat - TRAIL_SCENE.sky_e_s_px * 60.0
    d = distance_to_trail(trail, excess.shape)
    fwhm = trail.fwhm_px
    near, far = np.abs(d) < 0.5 * fwhm, np.abs(d) > 8 * fwhm
    assert np.median(excess[near]) > 0.3 * trail.flux_e_per_px / fwhm
    assert abs(np.median(excess[far])) < 5.0
    band = np.abs(d) < 6 * fwhm
    assert excess[band].sum() == pytest.approx(trail.flux_in_image_e, rel=0.03)
    assert (excess[band] * d[band]).sum() / excess[band].sum() == pytest.approx(0.0, abs=0.2)


def test_trail_is_placed_on_the_sensor_and_dimmed_by_the_sky():
    chip = scenes.sensor()
    full = render_exposure(chip, scenes.exposure(chip, seed=4), TRAIL_SCENE)
    sub = render_exposure(
        chip, scenes.exposure(chip, seed=4, start_x=64, start_y=32, num_x=128, num_y=128),
        TRAIL_SCENE,
    )  # fmt: skip
    assert full.trail is not None and sub.trail is not None
    assert (sub.trail.x0, sub.trail.y0, sub.trail.x1, sub.trail.y1) == pytest.approx(
        (full.trail.x0, full.trail.y0, full.trail.x1, full.trail.y1)
    )
    cloudy = replace(TRAIL_SCENE, transmission=0.25, airmass=2.0, extinction_mag_per_airmass=0.5)
    dim = render_exposure(chip, scenes.exposure(chip, seed=4), cloudy)
    assert dim.trail is not None
    assert dim.trail.flux_e_per_px == pytest.approx(full.trail.flux_e_per_px * 0.25 * 10**-0.4)
    never = replace(TRAIL_SCENE, satellite_rate_per_hour=0.0)
    assert render_exposure(chip, scenes.exposure(chip, seed=4), never).trail is None


# Three bright stars only, well inside the frame (V 9-10 at zero point 22: 4-8 million
# electrons each, some 20 full pixels tall).
BRIGHT_SCENE = scenes.sky(density_per_deg2=1000.0, mag_bright=9.0, mag_limit=10.0, catalog_seed=39)


def test_saturated_stars_bleed_along_columns_conserving_charge():
    chip = scenes.sensor(bleeds=True)
    exposure = scenes.exposure(chip)
    result = render_exposure(chip, exposure, BRIGHT_SCENE)
    stars = result.stars
    assert stars.size == 3
    assert np.all((stars["x"] > 20) & (stars["x"] < 235) & (stars["y"] > 20) & (stars["y"] < 235))
    assert result.saturated_px > 0
    flat = flat_response(chip, x0=0, y0=0, width=256, height=256)
    light_e = electrons(result, chip, exposure) - BRIGHT_SCENE.sky_e_s_px * 60.0 * flat
    expected = sum(
        s["flux_e"] * flat[round(s["y"]), round(s["x"])] for s in stars
    )  # the flat multiplies the light before it bleeds
    assert light_e.sum() == pytest.approx(expected, rel=0.03)
    # The full pixels form vertical streaks: taller than wide.
    full = result.image >= bias_level(chip, exposure) + 0.98 * chip.full_well_e
    assert full.sum() == pytest.approx(result.saturated_px, rel=0.1)
    rows, cols = np.nonzero(full)
    for star in stars:
        mine = np.abs(cols - star["x"]) < 15
        height, width = np.ptp(rows[mine]) + 1, np.ptp(cols[mine]) + 1
        assert height > 3 * width
        assert rows[mine].min() < star["y"] < rows[mine].max()
    # A sensor that does not bleed loses what its full wells cannot hold.
    clipped = render_exposure(scenes.sensor(), exposure, BRIGHT_SCENE)
    clipped_e = electrons(clipped, chip, exposure) - BRIGHT_SCENE.sky_e_s_px * 60.0 * flat
    assert clipped_e.sum() < 0.5 * expected


def test_dead_columns_dim_the_light():
    chip = scenes.sensor(dead_columns=3, partial_column_fraction=0.0)
    exposure = scenes.exposure(chip, exposure_s=1.0)
    lamp = scenes.sky(flat_panel_e_s=20000.0)
    result = render_exposure(chip, exposure, lamp)
    assert result.bad_columns.size == 3
    assert set(result.bad_columns["kind"]) == {"dead"}
    flat = flat_response(chip, x0=0, y0=0, width=256, height=256)
    response = electrons(result, chip, exposure) / (flat * 20000.0)
    for column in result.bad_columns:
        x = int(column["x"])
        assert np.median(response[:, x]) == pytest.approx(column["response"], abs=0.02)
        if 0 < x < 255:
            assert np.median(response[:, x - 1]) == pytest.approx(1.0, abs=0.02)


def test_hot_columns_glow_in_darks():
    chip = scenes.sensor(hot_columns=3, partial_column_fraction=1.0, dark_current_e_s=1.0)
    exposure = scenes.exposure(chip, light=False, exposure_s=100.0)
    result = render_exposure(chip, exposure, None)
    assert result.bad_columns.size == 3
    dark = electrons(result, chip, exposure)
    for column in result.bad_columns:
        x, y_start = int(column["x"]), int(column["y_start"])
        glow = dark[y_start:, x]
        expected = float(column["dark_factor"]) * 100.0
        if glow.size > 10:
            assert np.median(glow) == pytest.approx(expected, rel=0.1)
        if y_start > 10:
            assert np.median(dark[:y_start, x]) == pytest.approx(100.0, rel=0.1)


def test_bayer_pixels_carry_their_filter_throughput():
    from obsctl.simulators.artefacts import bayer_channel_masks

    chip = scenes.sensor(bayer_pattern="GRBG")
    exposure = scenes.exposure(chip, exposure_s=1.0)
    lamp = scenes.sky(flat_panel_e_s=20000.0)
    result = render_exposure(chip, exposure, lamp)
    flat = flat_response(chip, x0=0, y0=0, width=256, height=256)
    response = electrons(result, chip, exposure) / (flat * 20000.0)
    red, green, blue = bayer_channel_masks(response.shape, "GRBG")
    for mask, throughput in zip((red, green, blue), chip.bayer_throughput_rgb, strict=True):
        assert np.median(response[mask]) == pytest.approx(throughput, abs=0.01)
    # A subframe at an odd origin sees the pattern shifted: its pixels are the full frame's.
    sub = render_exposure(
        chip, scenes.exposure(chip, exposure_s=1.0, start_x=3, start_y=5, num_x=32, num_y=32),
        lamp,
    )  # fmt: skip
    sub_e = (sub.image.astype(np.float64) - bias_level(chip, exposure)
             - column_bias(chip)[3:35][None, :]) / (flat[5:37, 3:35] * 20000.0)  # fmt: skip
    r, g, b = bayer_channel_masks((32, 32), "GRBG", x_offset=3, y_offset=5)
    assert np.median(sub_e[g]) == pytest.approx(0.40, abs=0.01)
    assert np.median(sub_e[r]) == pytest.approx(0.30, abs=0.01)
    assert np.median(sub_e[b]) == pytest.approx(0.25, abs=0.01)


def test_configuration_switches_the_artefacts():
    from obsctl.config import SimulatedCameraConfig
    from obsctl.simulators.camera_model import sensor_model

    def scene_of(config: SimulatedSkyConfig) -> SkyScene:
        return sky_scene(
            config, ra_deg=10.0, dec_deg=20.0, rotation_deg=0.0, pixel_scale_arcsec=1.0, band="R"
        )

    default = scene_of(SimulatedSkyConfig())
    assert default.galaxy_density_r21_per_deg2 == 3000.0
    assert default.satellite_rate_per_hour > 0.0
    off = scene_of(SimulatedSkyConfig(galaxies=False, satellite_trails=False))
    assert off.galaxy_density_r21_per_deg2 == 0.0
    assert off.satellite_rate_per_hour == 0.0

    chip = sensor_model(SimulatedCameraConfig())
    assert (chip.bleeds, chip.bayer_pattern) == (False, None)  # the default is a CMOS mono
    assert chip.dead_columns + chip.hot_columns >= 2
    colour = sensor_model(SimulatedCameraConfig(bayer_pattern="BGGR", bleeds=True))
    assert (colour.bayer_pattern, colour.bleeds) == ("BGGR", True)


def test_binned_colour_frame_sums_its_colours():
    # Rendered as the hardware does it, not refused: a 2x2 bin holds R + 2 G + B.
    chip = scenes.sensor(bayer_pattern="RGGB")
    exposure = scenes.exposure(chip, exposure_s=1.0, bin_x=2, bin_y=2, num_x=128, num_y=128)
    result = render_exposure(chip, exposure, scenes.sky(flat_panel_e_s=5000.0))
    flat = bin_charge(flat_response(chip, x0=0, y0=0, width=256, height=256), 2, 2) / 4.0
    response = electrons(result, chip, exposure) / (flat * 4 * 5000.0)
    red, green, blue = chip.bayer_throughput_rgb
    assert np.median(response) == pytest.approx((red + 2 * green + blue) / 4.0, abs=0.01)
