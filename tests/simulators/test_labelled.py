"""Labelled synthetic frames for the classifier: truth, Sersic profiles, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from obsctl.processing.colour import bayer_masks, demosaic
from obsctl.simulators.labelled import (
    LABEL_ARTIFACT,
    LABEL_CONFLICT,
    LABEL_COSMIC_RAY,
    LABEL_GALAXY,
    LABEL_HOT_PIXEL,
    LABEL_NONE,
    LABEL_STAR,
    render_labelled_frame,
    sersic_image,
)


def test_same_seed_same_frame_and_different_seeds_differ() -> None:
    a, b, c = render_labelled_frame(4), render_labelled_frame(4), render_labelled_frame(5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.float32 and a.image.flags.c_contiguous


def test_every_kind_is_drawn_and_labelled() -> None:
    frame = render_labelled_frame(
        8, saturated_stars=(1, 1), n_hot_pixels=5, n_cosmic_rays=5, trails_mean=3.0, bayer=False
    )
    present = set(np.unique(frame.labels).tolist())
    assert {LABEL_STAR, LABEL_GALAXY, LABEL_COSMIC_RAY, LABEL_HOT_PIXEL, LABEL_ARTIFACT} <= present
    assert frame.image.max() == pytest.approx(frame.saturation_e)  # the saturated star clips
    # Every hot-pixel label sits on the hot-pixel map, and its residual stands out.
    hy, hx = np.nonzero(frame.labels == LABEL_HOT_PIXEL)
    assert frame.hot_map[hy, hx].any()
    sky_noise = math.sqrt(frame.sky_e + frame.read_noise_e**2)
    on_map = frame.hot_map & (frame.labels == LABEL_HOT_PIXEL)
    # Residuals are 80-20000 e- (log-uniform) over the sky (a gradient, vignetted up to 15 %).
    assert np.all(frame.image[on_map] > 0.7 * frame.sky_e)
    assert np.median(frame.image[on_map]) > frame.sky_e + 5 * sky_noise
    galaxies = frame.labels == LABEL_GALAXY
    assert galaxies.any() and np.all(np.isfinite(frame.galaxy_re_fwhm[galaxies]))
    assert np.all(frame.galaxy_re_fwhm[galaxies] >= 1.0)
    assert np.all(frame.galaxy_re_fwhm[galaxies] <= 8.0)
    # Where kinds put comparable light the pixel conflicts; elsewhere the leader is the label.
    single = frame.labels != LABEL_CONFLICT
    assert np.array_equal(frame.labels[single], frame.dominant[single])
    assert np.all(frame.dominant >= LABEL_NONE)


def test_crowded_groups_of_stars_are_stars() -> None:
    """Blends and close groups of bright stars: star, never a conflict, whatever the PSF."""
    for seed, distorted in ((1, True), (3, False)):  # frames without an unexposed band
        frame = render_labelled_frame(
            seed, n_stars=300, n_galaxies=0, n_cosmic_rays=0, n_hot_pixels=0, trails_mean=0.0,
            saturated_stars=(0, 0), beta_range=(2.0, 2.0), distorted_psf=distorted,
        )  # fmt: skip
        assert set(np.unique(frame.labels).tolist()) == {LABEL_NONE, LABEL_STAR}
        # Crowded, with beta = 2 wings: star light covers much of the frame.
        assert np.mean(frame.labels == LABEL_STAR) > 0.2
        assert frame.psf_distorted is distorted


def test_colour_frames_are_the_green_plane_of_the_mosaic() -> None:
    """Same seed, same draws: the colour frame is the mono frame seen through a Bayer mosaic."""
    mono = render_labelled_frame(3, bayer=False, n_cosmic_rays=60)
    colour = render_labelled_frame(3, bayer=True, n_cosmic_rays=60)
    assert mono.bayer is None and colour.bayer in ("RGGB", "BGGR", "GRBG", "GBRG")
    green = bayer_masks(mono.image.shape, colour.bayer)["G"]
    np.testing.assert_array_equal(colour.image[green], mono.image[green])
    np.testing.assert_allclose(colour.image, demosaic(mono.image, colour.bayer)["G"], rtol=1e-6)
    # Hits on red and blue pixels are gone from the green plane, and from its labels.
    hits_mono = ndimage.label(mono.labels == LABEL_COSMIC_RAY)[1]
    hits_colour = ndimage.label(colour.labels == LABEL_COSMIC_RAY)[1]
    assert 0 < hits_colour < hits_mono
    assert np.array_equal(colour.hot_map, mono.hot_map)  # the master dark's map: the mosaic's


def test_sersic_half_light_radius() -> None:
    """Half the flux of a round profile lies within its half-light radius (n = 1 and 4)."""
    from scipy.special import gammainc

    for n in (1.0, 4.0):
        stamp = sersic_image(80, 0.0, 0.0, re_px=6.0, n=n, axis_ratio=1.0, angle_rad=0.0)
        assert stamp.sum() == pytest.approx(1.0)
        yy, xx = np.mgrid[-80:81, -80:81]
        inside = stamp[np.hypot(xx, yy) <= 6.0].sum()
        # The stamp is normalised, so the wings beyond it (13 re; 15 % of a de Vaucouleurs
        # profile's light) raise the share inside re: 0.5 / L(< 80 px) (circle approximation).
        b = 2 * n - 1 / 3 + 4 / (405 * n)
        expected = 0.5 / gammainc(2 * n, b * (80 / 6.0) ** (1 / n))
        assert inside == pytest.approx(expected, abs=0.02)
    flat = sersic_image(20, 0.0, 0.0, re_px=4.0, n=1.0, axis_ratio=0.4, angle_rad=0.0)
    ys, xs = np.nonzero(flat > 0.5 * flat.max())
    assert np.ptp(xs) > 2 * np.ptp(ys)  # elongated along x


def test_an_unexposed_band_along_an_edge_is_artifact() -> None:
    """Seed 0 ends in 16 unexposed columns: read noise only; they and their step are artifact."""
    frame = render_labelled_frame(0, bayer=False)
    assert frame.image.shape == (256, 272)
    dead = frame.image[:, 256:]
    assert abs(float(np.median(dead))) < 2 * frame.read_noise_e < frame.sky_e
    assert float(np.std(dead)) == pytest.approx(frame.read_noise_e, rel=0.05)
    assert np.all(frame.labels[:, 256:] == LABEL_ARTIFACT) and not frame.hot_map[:, 256:].any()
    # And the exposed columns before the step, where the background mesh sags, unless an
    # object outshines the step there.
    assert np.mean(frame.labels[:, 240:256] == LABEL_ARTIFACT) > 0.5
    assert frame.labels.shape == frame.dominant.shape == frame.galaxy_re_fwhm.shape
