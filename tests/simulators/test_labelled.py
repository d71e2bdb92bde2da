"""Labelled synthetic frames for the classifier: truth, Sersic profiles, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest

from obsctl.simulators.labelled import (
    LABEL_ARTIFACT,
    LABEL_COSMIC_RAY,
    LABEL_GALAXY,
    LABEL_HOT_PIXEL,
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
        8, saturated_stars=(1, 1), n_hot_pixels=5, n_cosmic_rays=5, trails_mean=3.0
    )
    present = set(np.unique(frame.labels).tolist())
    assert {LABEL_STAR, LABEL_GALAXY, LABEL_COSMIC_RAY, LABEL_HOT_PIXEL, LABEL_ARTIFACT} <= present
    assert frame.image.max() == pytest.approx(frame.saturation_e)  # the saturated star clips
    # Every hot-pixel label sits on the hot-pixel map, and its residual stands out.
    hy, hx = np.nonzero(frame.labels == LABEL_HOT_PIXEL)
    assert frame.hot_map[hy, hx].any()
    sky_noise = math.sqrt(frame.sky_e + frame.read_noise_e**2)
    on_map = frame.hot_map & (frame.labels == LABEL_HOT_PIXEL)
    # Residuals are 80-20000 e- (log-uniform) over the sky: most stand well out.
    assert np.all(frame.image[on_map] > frame.sky_e)
    assert np.median(frame.image[on_map]) > frame.sky_e + 5 * sky_noise
    galaxies = frame.labels == LABEL_GALAXY
    assert np.all(frame.galaxy_re_fwhm[galaxies] >= 1.0)
    assert np.all(frame.galaxy_re_fwhm[galaxies] <= 4.0)


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
