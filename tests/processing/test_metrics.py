"""Frame metrics and the injection-recovery limiting magnitude against simulator truth.

The truth limiting magnitude of a simulated frame is measured the direct way: the fraction
of the frame's real (simulated) stars that the same detector finds, per 0.1 mag, for stars
with no brighter neighbour within 3 FWHM and away from the border, fitted with the same
logistic curve (`fit_completeness`). The injection method must agree with it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
import pytest

from obsctl.processing.metrics import (
    fit_completeness,
    frame_metrics,
    limiting_magnitude,
    psf_stars,
)
from obsctl.processing.photometry import FLAG_SHARP, measure_sources
from obsctl.processing.zeropoint import fit_zero_point, instrumental_magnitudes
from obsctl.simulators.render import column_bias, flat_response, render_exposure

from .test_photometry import (
    EXPOSURE_S,
    FWHM_PX,
    GAIN,
    READ_NOISE_E,
    SATURATION_ADU,
    SCENE,
    SENSOR,
    SIZE,
    exposure,
    isolated,
    match,
    render,
)

KWARGS = {"gain_e_per_adu": GAIN, "read_noise_e": READ_NOISE_E, "saturation_adu": SATURATION_ADU}
# Stars from V = 14 to 19.5 at 20 000 per square degree: ~400 in the frame, ~230 isolated,
# ~90 of them within 0.5 mag of the detection limit (V ~ 17.9 here).
DEEP = replace(SCENE, catalog_seed=3, density_per_deg2=20000.0, mag_bright=14.0, mag_limit=19.5)


@pytest.fixture(scope="module")
def measured():
    data, truth = render(SCENE)
    catalog, info = measure_sources(data, **KWARGS)
    return data, truth, catalog, info


def test_frame_metrics_match_the_simulated_seeing_and_sky(measured):
    _, _, catalog, info = measured
    metrics = frame_metrics(catalog, info, pixel_scale_arcsec=SCENE.pixel_scale_arcsec)
    # Gaussian-core FWHM of a beta-3 Moffat reads ~7 % wide (documented).
    assert 1.0 < metrics["fwhm_px"] / FWHM_PX < 1.10
    assert metrics["fwhm_arcsec"] == pytest.approx(metrics["fwhm_px"] * SCENE.pixel_scale_arcsec)
    alpha = FWHM_PX / (2.0 * math.sqrt(2.0 ** (1.0 / 3.0) - 1.0))
    assert metrics["hfr_px"] == pytest.approx(alpha * math.sqrt(2.0**0.5 - 1.0), rel=0.04)
    assert metrics["hfr_arcsec"] == pytest.approx(metrics["hfr_px"])
    assert metrics["ellipticity"] < 0.04
    assert metrics["psf_star_count"] >= 30
    assert metrics["star_count"] == len(catalog)
    # Sky: 3 e-/s/px for 30 s at 1.5 e-/ADU. Dividing by the flat (vignetting to 0.81)
    # makes the noise 3 % higher on average; the wings of this field's ~300 stars inside the
    # 64 px boxes add another ~6 % to SEP's mesh rms (so faint stars' errors are that much
    # conservative).
    sky_e = SCENE.sky_e_s_px * EXPOSURE_S
    assert metrics["background"] == pytest.approx(sky_e / GAIN, rel=0.02)
    sky_rms = 1.03 * math.sqrt(sky_e + READ_NOISE_E**2) / GAIN
    assert 0.98 < metrics["background_rms"] / sky_rms < 1.12


def test_metrics_without_stars_are_nan(measured):
    _, _, catalog, info = measured
    flagged = catalog.copy()
    flagged["flags"] |= 1
    metrics = frame_metrics(flagged, info, pixel_scale_arcsec=None)
    assert math.isnan(metrics["fwhm_px"]) and math.isnan(metrics["ellipticity"])
    assert metrics["psf_star_count"] == 0
    metrics = frame_metrics(catalog, info, pixel_scale_arcsec=None)
    assert math.isnan(metrics["fwhm_arcsec"]) and math.isfinite(metrics["fwhm_px"])


def test_cosmic_rays_are_flagged_sharp_and_kept_out_of_the_metrics():
    sensor = replace(SENSOR, cosmic_rate_cm2_s=100.0)  # ~100 hits in 30 s on 0.037 cm^2
    raw = render_exposure(sensor, exposure(2), SCENE)
    flat = flat_response(sensor, x0=0, y0=0, width=SIZE, height=SIZE)
    level = np.float32(sensor.bias_adu + 10 * sensor.adu_per_offset)
    data = ((raw.image - level - column_bias(sensor)[None, :SIZE]) / flat).astype(np.float32)
    catalog, info = measure_sources(data, **KWARGS)
    src, _ = match(catalog, raw.stars, radius=2.0)
    is_star = np.zeros(len(catalog), dtype=bool)
    is_star[src] = True
    sharp = (catalog["flags"] & FLAG_SHARP) != 0
    assert raw.cosmic_count > 50 and np.count_nonzero(~is_star) > 50
    # Single hits and short tracks are caught; long tracks (elongated, FWHM-wide) are not.
    assert np.count_nonzero(sharp & ~is_star) >= 0.85 * np.count_nonzero(~is_star)
    assert np.count_nonzero(sharp & is_star) <= 2  # a star hit by a cosmic ray
    assert not np.any(psf_stars(catalog) & ~is_star)
    metrics = frame_metrics(catalog, info, pixel_scale_arcsec=1.0)
    assert metrics["star_count"] == np.count_nonzero(~sharp)
    assert 1.0 < metrics["fwhm_px"] / FWHM_PX < 1.10


def test_fit_completeness_recovers_a_known_curve():
    rng = np.random.default_rng(5)
    mags = np.round(np.arange(16.0, 20.0, 0.1), 2)
    p = 1.0 / (1.0 + np.exp((mags - 18.2) / 0.15))
    injected = np.full(mags.size, 40)
    recovered = rng.binomial(injected, p)
    assert fit_completeness(mags, recovered, injected) == pytest.approx(18.2, abs=0.05)
    m90 = 18.2 + 0.15 * math.log(1 / 0.9 - 1)
    assert fit_completeness(mags, recovered, injected, level=0.9) == pytest.approx(m90, abs=0.07)
    assert math.isnan(fit_completeness([], [], []))
    with pytest.raises(ValueError, match="level"):
        fit_completeness(mags, recovered, injected, level=1.0)


def truth_limiting_magnitude(catalog: np.ndarray, truth: np.ndarray, fwhm_px: float) -> float:
    """50 % completeness of the frame's own isolated stars, with the same detector."""
    margin = 3.0 * fwhm_px
    inside = (truth["x"] > margin) & (truth["x"] < SIZE - 1 - margin)
    inside &= (truth["y"] > margin) & (truth["y"] < SIZE - 1 - margin)
    sample = truth[inside & isolated(truth, radius=3.0 * fwhm_px, contrast_mag=2.5)]
    d2 = (sample["x"][:, None] - catalog["x"][None, :]) ** 2
    d2 += (sample["y"][:, None] - catalog["y"][None, :]) ** 2
    found = d2.min(axis=1) <= max(1.0, 0.5 * fwhm_px) ** 2
    mags, index = np.unique(np.round(sample["mag"], 1), return_inverse=True)
    return fit_completeness(mags, np.bincount(index, weights=found), np.bincount(index))


@pytest.fixture(scope="module")
def deep():
    data, truth = render(DEEP)
    catalog, info = measure_sources(data, **KWARGS)
    src, tru = match(catalog, truth, radius=1.0)
    inst, inst_err = instrumental_magnitudes(
        catalog["flux"], catalog["flux_err"], EXPOSURE_S, gain_e_per_adu=GAIN
    )
    use = (catalog["flags"][src] == 0) & (catalog["snr"][src] > 10)
    zp = fit_zero_point(inst[src[use]], inst_err[src[use]], truth["mag"][tru[use]])
    return data, truth, catalog, info, zp.zero_point


def test_limiting_magnitude_matches_the_truth_completeness(deep):
    data, truth, catalog, info, zero_point = deep
    expected = truth_limiting_magnitude(catalog, truth, info.fwhm_px)
    assert 17.0 < expected < 18.8  # the frame's real limit lies inside the catalog's range
    measure = functools.partial(
        limiting_magnitude,
        data,
        catalog,
        zero_point=zero_point,
        exposure_s=EXPOSURE_S,
        fwhm_px=info.fwhm_px,
        gain_e_per_adu=GAIN,
        rms_adu=info.rms_adu,
        seed=1,
    )
    measured = measure()
    assert measured == pytest.approx(expected, abs=0.2)  # measured within ~0.06 over 8 fields
    assert measure() == measured  # reproducible


def test_limiting_magnitude_with_a_model_psf_and_a_given_grid(deep):
    """No star to copy (all flagged): a Gaussian of the frame's FWHM is injected instead."""
    data, truth, catalog, info, zero_point = deep
    expected = truth_limiting_magnitude(catalog, truth, info.fwhm_px)
    flagged = catalog.copy()
    flagged["flags"] |= 1
    measured = limiting_magnitude(
        data,
        flagged,
        zero_point=zero_point,
        exposure_s=EXPOSURE_S,
        fwhm_px=info.fwhm_px,
        gain_e_per_adu=GAIN,
        aperture_radius_px=info.aperture_radii_px[info.main_aperture],
        mags=np.arange(16.5, 19.5, 0.1),
        n_per_mag=12,
    )
    # A Gaussian is more peaked than the real Moffat at the same aperture flux: a little deeper.
    assert measured == pytest.approx(expected, abs=0.3)


def test_limiting_magnitude_rejects_bad_arguments(deep):
    data, _, catalog, _, zero_point = deep
    with pytest.raises(ValueError, match="positive"):
        limiting_magnitude(data, catalog, zero_point=zero_point, exposure_s=0.0, fwhm_px=3.0)
    with pytest.raises(ValueError, match="two-dimensional"):
        limiting_magnitude(data[0], catalog, zero_point=zero_point, exposure_s=1.0, fwhm_px=3.0)
