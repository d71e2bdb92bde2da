"""Combine aligned frames of one field into a reference image, with its noise.

The frames are already on one pixel grid, background-subtracted and on one flux scale;
pixels a frame does not cover (or that it masks) are NaN. Per pixel, values further than
``clip_sigma`` of their own noise from the median are rejected (a cosmic ray, a satellite, an
asteroid, a transient that was bright in one frame), and the rest are averaged with one weight
per frame, the inverse of its sky variance. Per-frame rather than per-pixel weights keep a
star's flux unbiased: per-pixel inverse variances would favour the frames where the star came
out faint. The clipping threshold uses each value's own expected noise, not the spread of the
values, which a handful of frames estimates badly.

Rows are combined in blocks, so memory stays at a block of every frame besides the inputs.
Pure numeric code: arrays in, arrays out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["StackResult", "flux_scale", "stack_reference"]


@dataclass(frozen=True)
class StackResult:
    """A combined reference.

    Attributes
    ----------
    image : numpy.ndarray of float32
        The weighted mean of the values kept, in the inputs' flux unit; NaN where no frame
        gave a value.
    noise : numpy.ndarray of float32
        Its standard deviation per pixel (same unit), from the inputs' variances; NaN where
        ``image`` is.
    count : numpy.ndarray of uint16
        Frames kept per pixel.
    rejected_fraction : float
        Share of the finite input values rejected.
    """

    image: NDArray[np.float32]
    noise: NDArray[np.float32]
    count: NDArray[np.uint16]
    rejected_fraction: float


def _check(
    images: Sequence[NDArray[np.floating]], variances: Sequence[NDArray[np.floating]]
) -> None:
    if not images or len(images) != len(variances):
        raise ValueError("need one variance map per image and at least one image")
    shape = images[0].shape
    if len(shape) != 2 or any(a.shape != shape for a in (*images, *variances)):
        raise ValueError("images and variances must be 2-D and of one shape")


def stack_reference(
    images: Sequence[NDArray[np.floating]],
    variances: Sequence[NDArray[np.floating]],
    *,
    sky_variances: Sequence[float],
    clip_sigma: float = 4.0,
    block_rows: int = 256,
) -> StackResult:
    """Combine aligned frames: reject outliers against each value's noise, then average.

    Parameters
    ----------
    images : sequence of numpy.ndarray
        The frames on one grid, background-subtracted and scaled to one flux unit; NaN where a
        frame has no value.
    variances : sequence of numpy.ndarray
        Each frame's per-pixel variance in the same unit squared (sky, read and source
        noise), NaN or non-positive where unknown.
    sky_variances : sequence of float
        Each frame's typical sky variance (same unit squared), > 0: the frame's weight is its
        inverse.
    clip_sigma : float, optional
        A value further than this many of its own standard deviations from the pixel's median
        is rejected, > 0. With two frames nothing is rejected (the median is their mean).
    block_rows : int, optional
        Rows combined at a time, >= 1.

    Returns
    -------
    StackResult
        The combined image, its noise, the frames kept per pixel and the rejected share.

    Raises
    ------
    ValueError
        When the inputs' shapes differ or are not 2-D, or a knob is out of range.
    """
    _check(images, variances)
    weights = np.asarray(sky_variances, dtype=np.float64)
    if weights.shape != (len(images),) or not np.all(np.isfinite(weights) & (weights > 0)):
        raise ValueError("sky_variances must be one finite positive value per image")
    if not clip_sigma > 0 or block_rows < 1:
        raise ValueError("clip_sigma must be > 0 and block_rows >= 1")
    weights = (1.0 / weights)[:, None, None]
    height, width = images[0].shape
    image = np.full((height, width), np.nan, dtype=np.float32)
    noise = np.full((height, width), np.nan, dtype=np.float32)
    count = np.zeros((height, width), dtype=np.uint16)
    finite_total = rejected_total = 0
    for top in range(0, height, block_rows):
        rows = slice(top, min(top + block_rows, height))
        values = np.stack([np.asarray(a[rows], dtype=np.float64) for a in images])
        var = np.stack([np.asarray(v[rows], dtype=np.float64) for v in variances])
        good = np.isfinite(values) & np.isfinite(var) & (var > 0)
        values = np.where(good, values, np.nan)
        finite_total += int(good.sum())
        with np.errstate(all="ignore"):
            median = np.nanmedian(values, axis=0)
            kept = good & (np.abs(values - median) <= clip_sigma * np.sqrt(np.where(good, var, 1)))
        rejected_total += int(good.sum() - kept.sum())
        w = np.where(kept, weights, 0.0)
        total = w.sum(axis=0)
        have = total > 0
        with np.errstate(all="ignore"):
            mean = (w * np.where(kept, values, 0.0)).sum(axis=0) / total
            variance = (w * w * np.where(kept, var, 0.0)).sum(axis=0) / (total * total)
        image[rows] = np.where(have, mean, np.nan)
        noise[rows] = np.where(have, np.sqrt(variance), np.nan)
        count[rows] = kept.sum(axis=0)
    rejected = rejected_total / finite_total if finite_total else 0.0
    return StackResult(image, noise, count, rejected)


def flux_scale(
    flux: NDArray[np.floating], flux_reference: NDArray[np.floating], *, min_stars: int = 5
) -> float | None:
    """Return the factor that puts a frame's fluxes on the reference's scale.

    The median of ``flux_reference / flux`` over stars measured in both (finite, positive):
    the median because a variable star or a blend among them must not move it.

    Parameters
    ----------
    flux, flux_reference : numpy.ndarray
        The same stars' fluxes in the frame and in the reference frame (any unit each).
    min_stars : int, optional
        Fewest stars for a scale, >= 1.

    Returns
    -------
    float or None
        The factor, None when fewer than ``min_stars`` stars have both fluxes.
    """
    flux = np.asarray(flux, dtype=np.float64)
    flux_reference = np.asarray(flux_reference, dtype=np.float64)
    ok = np.isfinite(flux) & np.isfinite(flux_reference) & (flux > 0) & (flux_reference > 0)
    if int(ok.sum()) < min_stars:
        return None
    return float(np.median(flux_reference[ok] / flux[ok]))
