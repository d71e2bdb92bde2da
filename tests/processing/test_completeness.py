"""Completeness of difference imaging half a magnitude above the frame's limit (issue 19's goal).

Point transients are injected half a magnitude brighter than the new frame's 5-sigma
point-source limit, half on galaxies and half on empty sky; at least half of each must be
found (a score of 5 within 1.5 px). The limit comes from the simulator's inputs alone: its
sky and read noise and its Moffat profile at the rendered seeing, never from the code under
test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from obsctl.processing.alignment import align_reference
from obsctl.processing.subtraction import detect_transients, estimate_psf, subtract_zogy
from obsctl.simulators import scenes
from obsctl.simulators.artefacts import galaxies
from obsctl.simulators.pairs import render_pair
from obsctl.simulators.render import moffat_stamp, scene_wcs

SIZE = 384
SEEING_NEW = 3.5  # arcsec, at 1 arcsec per pixel: render_pair's default
EXPOSURE_NEW = 60.0
GALAXY_DENSITY = 30_000.0
PER_GROUP = 14
SEED = 4


def _limit_mag(sigma_e: float) -> float:
    """The 5-sigma limit of a PSF fit: flux 5 sigma / sqrt(sum P^2) (mag)."""
    sky = scenes.sky()
    stamp = moffat_stamp(0.0, 0.0, fwhm_px=SEEING_NEW, beta=sky.moffat_beta, radius_px=15,
                         oversample=9)  # fmt: skip
    psf = stamp / stamp.sum()
    flux_e = 5.0 * sigma_e / math.sqrt(float(np.sum(psf**2)))
    return sky.zero_point_mag - 2.5 * math.log10(flux_e / EXPOSURE_NEW)


def _places(rng: np.random.Generator) -> list[tuple[float, float]]:
    """Half on galaxies brighter than R = 19 (at half their half-light radius), half away."""
    chip = scenes.sensor(width_px=SIZE, height_px=SIZE)
    scene = scenes.sky(catalog_seed=SEED, galaxy_density_r21_per_deg2=GALAXY_DENSITY)
    wcs = scene_wcs(scene, chip)
    found = galaxies(scene.ra_deg, scene.dec_deg, SIZE / 3600.0, seed=SEED,
                     density_r21_per_deg2=GALAXY_DENSITY)  # fmt: skip
    gx, gy = wcs.world_to_pixel_values(found["ra_deg"], found["dec_deg"])
    keep = (found["mag_r"] < 19.0) & (gx > 30) & (gx < SIZE - 30) & (gy > 30) & (gy < SIZE - 30)
    gx, gy, reff = gx[keep], gy[keep], found["r_eff_arcsec"][keep]
    assert gx.size >= PER_GROUP
    pick = rng.choice(gx.size, PER_GROUP, replace=False)
    angle = rng.uniform(0, 2 * math.pi, PER_GROUP)
    on = [(gx[i] + 0.5 * reff[i] * math.cos(a), gy[i] + 0.5 * reff[i] * math.sin(a))
          for i, a in zip(pick, angle, strict=True)]  # fmt: skip
    tree = cKDTree(np.column_stack([gx, gy]))
    away: list[tuple[float, float]] = []
    while len(away) < PER_GROUP:
        x, y = rng.uniform(30, SIZE - 30, 2)
        if tree.query((x, y))[0] > 25:
            away.append((float(x), float(y)))
    return [(float(x), float(y)) for x, y in on] + away


def test_half_the_transients_half_a_magnitude_above_the_limit_are_found() -> None:
    rng = np.random.default_rng(SEED)
    places = _places(rng)
    probe = render_pair(size_px=SIZE, seed=SEED, galaxy_density_r21_per_deg2=GALAXY_DENSITY)
    mag = _limit_mag(probe.sigma_new) - 0.5
    pair = render_pair(
        size_px=SIZE, seed=SEED, galaxy_density_r21_per_deg2=GALAXY_DENSITY,
        transient_mags=(mag,) * len(places), transient_xy=tuple(places),
    )  # fmt: skip
    aligned = align_reference(
        pair.reference, reference_wcs=pair.reference_wcs, target_wcs=pair.new_wcs,
        target_shape=pair.new.shape,
    )  # fmt: skip
    stars = pair.new_truth.stars
    bright = (stars["id"] >= 0) & (stars["mag"] < 16.0)
    bright &= (stars["x"] > 20) & (stars["x"] < SIZE - 20) & (stars["y"] > 20)
    bright &= stars["y"] < SIZE - 20
    x, y = stars["x"][bright], stars["y"][bright]
    result = subtract_zogy(
        pair.new, aligned.image,
        psf_new=estimate_psf(pair.new, x, y, radius_px=12),
        psf_ref=estimate_psf(aligned.image, x, y, radius_px=12, mask=aligned.mask),
        sigma_new=pair.sigma_new, sigma_ref=pair.sigma_ref, flux_ratio=pair.flux_ratio,
        gain_new=1.0, gain_ref=1.0, mask=aligned.mask,
    )  # fmt: skip
    found = detect_transients(result.score, threshold=5.0, mask=result.mask)
    found = found[found["score"] > 0]
    distance, _ = cKDTree(np.column_stack([found["x"], found["y"]])).query(
        np.column_stack([pair.transients["x"], pair.transients["y"]])
    )
    hit = distance <= 1.5
    on_galaxies, empty = hit[:PER_GROUP].mean(), hit[PER_GROUP:].mean()
    assert on_galaxies >= 0.5, (on_galaxies, mag)
    assert empty >= 0.5, (empty, mag)
    assert pair.transients["mag"] == pytest.approx(mag)
