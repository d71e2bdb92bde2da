"""ZOGY subtraction, detection on the score and forced photometry, on simulated pairs.

The truth is the simulator's input: the transients' positions and electrons
(`FramePair.transients`, from the new frame's star truth) and the rendered seeing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from obsctl.processing.alignment import AlignedReference, align_reference
from obsctl.processing.subtraction import (
    DifferenceResult,
    detect_transients,
    estimate_psf,
    forced_photometry,
    subtract_zogy,
)
from obsctl.simulators.pairs import FramePair, render_pair
from obsctl.simulators.render import moffat_stamp

TRANSIENT_XY = ((60.2, 70.7), (180.5, 120.3), (100.1, 200.9), (200.6, 40.2), (130.4, 150.6))
TRANSIENT_MAGS = (16.5, 17.0, 17.5, 18.0, 18.0)
PSF_RADIUS = 12


def _psf_stars(pair: FramePair) -> tuple[np.ndarray, np.ndarray]:
    stars = pair.new_truth.stars
    size = pair.new.shape[0]
    keep = (
        (stars["id"] >= 0)
        & (stars["mag"] < 16.5)
        & (stars["x"] > 20)
        & (stars["x"] < size - 20)
        & (stars["y"] > 20)
        & (stars["y"] < size - 20)
    )
    return stars["x"][keep], stars["y"][keep]


def _subtract(pair: FramePair, **knobs: object) -> tuple[AlignedReference, DifferenceResult]:
    aligned = align_reference(
        pair.reference,
        reference_wcs=pair.reference_wcs,
        target_wcs=pair.new_wcs,
        target_shape=pair.new.shape,
    )
    x, y = _psf_stars(pair)
    psf_new = estimate_psf(pair.new, x, y, radius_px=PSF_RADIUS)
    psf_ref = estimate_psf(aligned.image, x, y, radius_px=PSF_RADIUS, mask=aligned.mask)
    options: dict[str, object] = {"gain_new": 1.0, "gain_ref": 1.0} | knobs
    result = subtract_zogy(
        pair.new,
        aligned.image,
        psf_new=psf_new,
        psf_ref=psf_ref,
        sigma_new=pair.sigma_new,
        sigma_ref=pair.sigma_ref,
        flux_ratio=pair.flux_ratio,
        mask=aligned.mask,
        **options,  # type: ignore[arg-type]
    )
    return aligned, result


@pytest.fixture(scope="module")
def with_transients() -> tuple[FramePair, DifferenceResult]:
    pair = render_pair(transient_mags=TRANSIENT_MAGS, transient_xy=TRANSIENT_XY, seed=1)
    return pair, _subtract(pair)[1]


@pytest.fixture(scope="module")
def clean() -> tuple[FramePair, AlignedReference, DifferenceResult]:
    pair = render_pair(seed=2, density_per_deg2=20000.0)
    aligned, result = _subtract(pair)
    return pair, aligned, result


def test_psf_estimate_matches_the_rendered_profile() -> None:
    pair = render_pair(seed=3, density_per_deg2=20000.0)
    x, y = _psf_stars(pair)
    psf = estimate_psf(pair.new, x, y, radius_px=PSF_RADIUS)
    truth = moffat_stamp(0.0, 0.0, fwhm_px=3.5, beta=3.0, radius_px=PSF_RADIUS, oversample=9)
    truth /= truth.sum()
    assert psf.shape == truth.shape and psf.sum() == pytest.approx(1.0)
    assert np.max(np.abs(psf - truth)) < 0.1 * truth.max()


def test_transients_are_detected_at_their_positions(
    with_transients: tuple[FramePair, DifferenceResult],
) -> None:
    pair, result = with_transients
    found = detect_transients(result.score, mask=result.mask)
    truth = pair.transients
    for x, y in zip(truth["x"], truth["y"], strict=True):
        distance = np.hypot(found["x"] - x, found["y"] - y)
        nearest = int(np.argmin(distance))
        assert distance[nearest] < 0.5, (x, y, found[nearest])
        assert found["score"][nearest] > 5.0


def test_forced_fluxes_match_the_injected_electrons(
    with_transients: tuple[FramePair, DifferenceResult],
) -> None:
    pair, result = with_transients
    truth = pair.transients
    phot = forced_photometry(
        result.difference, result.noise, result.psf_at, truth["x"], truth["y"], mask=result.mask
    )
    pull = (phot.flux - truth["flux_e"]) / phot.flux_err
    assert np.all(np.abs(pull) < 3.5), pull
    assert np.all(phot.snr > 5.0)
    # The error is the PSF-weighted noise of both images: at least the new frame's alone.
    psf = moffat_stamp(0.0, 0.0, fwhm_px=3.5, beta=3.0, radius_px=PSF_RADIUS, oversample=9)
    new_only = pair.sigma_new / math.sqrt(float(np.sum((psf / psf.sum()) ** 2)))
    assert np.all(phot.flux_err > new_only)
    # Blank positions measure nothing.
    blank = forced_photometry(
        result.difference, result.noise, result.psf_at, [30.3, 220.7], [220.2, 215.5]
    )
    assert np.all(np.abs(blank.snr) < 4.0)


def test_difference_noise_is_unit_on_blank_sky(
    clean: tuple[FramePair, AlignedReference, DifferenceResult],
) -> None:
    pair, aligned, result = clean
    sources = (np.abs(pair.new) > 3 * pair.sigma_new) | (np.abs(aligned.image) > 3 * pair.sigma_ref)
    blank = ~result.mask & ~ndimage.binary_dilation(sources, iterations=6)
    assert blank.sum() > 10000
    z = result.difference[blank] / result.noise[blank]
    assert abs(float(np.mean(z))) < 0.05
    assert float(np.std(z)) == pytest.approx(1.0, abs=0.1)
    assert float(np.std(result.score[blank])) == pytest.approx(1.0, abs=0.1)
    assert result.psf.sum() == pytest.approx(1.0)


def test_constant_stars_leave_no_detection(
    clean: tuple[FramePair, AlignedReference, DifferenceResult],
) -> None:
    pair, _, result = clean
    stars = pair.new_truth.stars
    assert np.sum(stars["mag"] < 15.5) >= 3  # bright stars to leave residuals, if any
    found = detect_transients(result.score, mask=result.mask, threshold=5.0)
    assert found.size == 0, found


def test_tiles_agree_with_one_transform(
    with_transients: tuple[FramePair, DifferenceResult],
) -> None:
    pair, whole = with_transients
    _, tiled = _subtract(pair, tile_px=160)
    assert tiled.psfs.shape[:2] == (3, 3)
    valid = ~whole.mask
    gap = np.abs(tiled.difference - whole.difference)[valid] / whole.noise[valid]
    assert float(np.max(gap)) < 0.5
    assert float(np.max(np.abs(tiled.score - whole.score)[valid])) < 0.2


def test_masked_pixels_stay_masked(
    with_transients: tuple[FramePair, DifferenceResult],
) -> None:
    pair, _ = with_transients
    new = pair.new.copy()
    new[128, 40] = np.nan
    aligned = align_reference(
        pair.reference,
        reference_wcs=pair.reference_wcs,
        target_wcs=pair.new_wcs,
        target_shape=pair.new.shape,
    )
    x, y = _psf_stars(pair)
    psf = estimate_psf(pair.new, x, y, radius_px=PSF_RADIUS)
    result = subtract_zogy(
        new,
        aligned.image,
        psf_new=psf,
        psf_ref=psf,
        sigma_new=pair.sigma_new,
        sigma_ref=pair.sigma_ref,
        flux_ratio=pair.flux_ratio,
        mask=aligned.mask,
    )
    assert result.mask[128, 40 - PSF_RADIUS : 40 + PSF_RADIUS + 1].all()
    assert result.mask[aligned.mask].all()
    assert np.isinf(result.noise[result.mask]).all()
    assert np.isfinite(result.difference).all() and np.isfinite(result.score).all()
