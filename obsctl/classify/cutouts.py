"""The classifier's input: normalised cutouts and per-source features (input spec v1).

This module is the contract between the pipeline and any model it runs, the shipped one or a
user's. For every detection:

- **centre**: the brightest pixel (after subtracting the source's local background) within
  one pixel of the rounded catalog position ``(x, y)`` (clamped into the image). Pixels of a
  cutout beyond the image border count as background: 0 in every channel.
- **scale** ``p``: the centre pixel above the local background (ADU), at least the frame's
  background rms. Shapes are compared at equal brightness; brightness goes in a feature.
- ``cutouts``, float32 ``[N, 3, 11, 11]``:

  0. the 11 x 11 pixels around the centre, ``(pixel - background) / p``;
  1. the 33 x 33 pixels around the centre averaged in 3 x 3 blocks (a wider, coarser view for
     galaxies, trails and bleeds), same normalisation;
  2. the hot-pixel map of the master dark around the centre (1 = hot), zeros when the frame
     had no master dark.

  Channels 0 and 1 are clipped to [-3, 3].
- ``features``, float32 ``[N, 4]``: ``log10(max(p / rms, 1))``; the frame FWHM in units of
  4 pixels; 1 when photometry flagged the source saturated, else 0; ``log10(max(snr, 1)) / 2``.

``background``, ``flags`` and ``snr`` are the columns of
`obsctl.processing.photometry.measure_sources`; ``rms`` and the FWHM are the frame's
``background_rms_adu`` and ``fwhm_px`` (`obsctl.frame.Frame`), which photometry sets.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from obsctl.processing.photometry import FLAG_SATURATED

__all__ = [
    "CONTEXT_BIN",
    "CUTOUT_SIZE",
    "INPUT_SPEC_VERSION",
    "N_CHANNELS",
    "N_FEATURES",
    "detection_mask",
    "hot_pixel_map",
    "model_inputs",
    "trained_scale",
]

INPUT_SPEC_VERSION = 1
CUTOUT_SIZE = 11
CONTEXT_BIN = 3
N_CHANNELS = 3
N_FEATURES = 4
_CLIP = 3.0
_FWHM_UNIT_PX = 4.0
# The widest PSF of the training frames (`obsctl.simulators.labelled`, fwhm_range_px): beyond
# it an 11-pixel cutout holds only a star's core, which looks like a galaxy's flat top.
_TRAINED_FWHM_PX = 5.0


def hot_pixel_map(
    master_dark: ArrayLike, *, nsigma: float = 8.0, min_excess: float = 0.0
) -> NDArray[np.bool_]:
    """Return the hot pixels of a master dark.

    A pixel is hot when it exceeds the dark's median by more than `nsigma` robust standard
    deviations (1.4826 x the median absolute deviation) and by more than `min_excess`.

    Parameters
    ----------
    master_dark : array_like
        Master dark (ADU, any exposure), shape ``(ny, nx)``.
    nsigma : float, optional
        Threshold in robust sigma.
    min_excess : float, optional
        Smallest excess over the median (ADU), for very quiet darks.

    Returns
    -------
    numpy.ndarray of bool
        True for hot pixels.
    """
    dark = np.asarray(master_dark, dtype=np.float32)
    finite = np.isfinite(dark)
    # A strided sample keeps the median cheap on a 61 MP dark; hot pixels are < 1 %.
    sample = dark[finite][:: max(1, dark.size // 1_000_000)]
    if sample.size == 0:
        return np.zeros(dark.shape, dtype=bool)
    median = float(np.median(sample))
    sigma = 1.4826 * float(np.median(np.abs(sample - median)))
    threshold = median + max(nsigma * sigma, min_excess, 1e-6)
    hot: NDArray[np.bool_] = finite & (dark > threshold)
    return hot


def _centres(
    image: NDArray[Any], x: NDArray[np.float64], y: NDArray[np.float64]
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    ny, nx = image.shape
    cx = np.clip(np.rint(np.nan_to_num(x)).astype(np.intp), 0, nx - 1)
    cy = np.clip(np.rint(np.nan_to_num(y)).astype(np.intp), 0, ny - 1)
    off = np.array([-1, 0, 1])
    rows = np.clip(cy[:, None, None] + off[None, :, None], 0, ny - 1)
    cols = np.clip(cx[:, None, None] + off[None, None, :], 0, nx - 1)
    patch = np.nan_to_num(image[rows, cols].reshape(cx.size, 9), nan=-np.inf)
    best = np.argmax(patch, axis=1)
    return np.clip(cy + off[best // 3], 0, ny - 1), np.clip(cx + off[best % 3], 0, nx - 1)


def _windows(
    array: NDArray[Any], cy: NDArray[np.intp], cx: NDArray[np.intp], half: int, fill: Any
) -> NDArray[Any]:
    """Return the ``(2 half + 1)``-square windows centred on each pixel; `fill` off the image.

    Windows inside the image are read through a strided view (one copy per window, no index
    arrays); only those crossing the border take the slower fancy-indexing path.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    ny, nx = array.shape
    side = 2 * half + 1
    r0, c0 = cy - half, cx - half
    inside = (r0 >= 0) & (c0 >= 0) & (r0 + side <= ny) & (c0 + side <= nx)
    out = np.empty(
        (cy.size, side, side), dtype=np.result_type(array.dtype, np.min_scalar_type(fill))
    )
    if inside.all():
        out[:] = sliding_window_view(array, (side, side))[r0, c0]
        return out
    if inside.any():
        out[inside] = sliding_window_view(array, (side, side))[r0[inside], c0[inside]]
    edge = ~inside
    off = np.arange(side)
    rows = r0[edge, None] + off[None, :]
    cols = c0[edge, None] + off[None, :]
    values = array[np.clip(rows, 0, ny - 1)[:, :, None], np.clip(cols, 0, nx - 1)[:, None, :]]
    outside = ((rows < 0) | (rows >= ny))[:, :, None] | ((cols < 0) | (cols >= nx))[:, None, :]
    values = np.where(outside, fill, values)
    out[edge] = values
    return out


def model_inputs(
    image: ArrayLike,
    sources: NDArray[Any],
    *,
    rms_adu: float,
    fwhm_px: float,
    hot_map: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.intp], NDArray[np.intp]]:
    """Build the model inputs for every source (see the module docstring for the spec).

    Parameters
    ----------
    image : array_like
        Calibrated image (ADU), shape ``(ny, nx)``, background not subtracted.
    sources : numpy.ndarray
        Catalog with columns ``x``, ``y`` (zero-based pixel), ``background`` (ADU),
        ``flags`` and ``snr``.
    rms_adu : float
        The frame's background noise (ADU per pixel), > 0.
    fwhm_px : float
        The frame's PSF FWHM (pixel), > 0.
    hot_map : numpy.ndarray of bool, optional
        Hot pixels of the master dark, same shape as `image`.

    Returns
    -------
    cutouts : numpy.ndarray of float32
        ``[N, 3, 11, 11]``.
    features : numpy.ndarray of float32
        ``[N, 4]``.
    centre_y, centre_x : numpy.ndarray of intp
        The centre pixel of each cutout.

    Raises
    ------
    ValueError
        If the image is not 2-D, the hot-pixel map's shape differs, a column is missing or
        `rms_adu` / `fwhm_px` are not positive and finite.
    """
    data = np.asarray(image)
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {data.shape}")
    if hot_map is not None and hot_map.shape != data.shape:
        raise ValueError(f"hot-pixel map shape {hot_map.shape} differs from image {data.shape}")
    missing = {"x", "y", "background", "flags", "snr"} - set(sources.dtype.names or ())
    if missing:
        raise ValueError(f"source catalog lacks columns {sorted(missing)}")
    if not (math.isfinite(rms_adu) and rms_adu > 0 and math.isfinite(fwhm_px) and fwhm_px > 0):
        raise ValueError(f"rms_adu ({rms_adu}) and fwhm_px ({fwhm_px}) must be positive")
    n = len(sources)
    background = np.asarray(sources["background"], dtype=np.float32)
    background = np.where(np.isfinite(background), background, np.float32(0.0))
    cy, cx = _centres(data, sources["x"], sources["y"])

    half_ctx = CUTOUT_SIZE * CONTEXT_BIN // 2
    # Beyond the border there is nothing: NaN here, background (zero) below, not repeated
    # edge pixels, which would draw streaks.
    wide = _windows(data, cy, cx, half_ctx, np.nan).astype(np.float32, copy=False)
    wide -= background[:, None, None]
    bad = np.isnan(wide)  # (np.nan_to_num is ten times slower than this)
    if bad.any():
        wide[bad] = 0.0
    rms = np.float32(rms_adu)
    scale = np.maximum(wide[:, half_ctx, half_ctx], rms)
    wide /= scale[:, None, None]

    cutouts = np.empty((n, N_CHANNELS, CUTOUT_SIZE, CUTOUT_SIZE), dtype=np.float32)
    lo = half_ctx - CUTOUT_SIZE // 2
    cutouts[:, 0] = wide[:, lo : lo + CUTOUT_SIZE, lo : lo + CUTOUT_SIZE]
    # Block means by strided sums: several times faster than a reshape and mean.
    rows = wide[:, 0::CONTEXT_BIN] + wide[:, 1::CONTEXT_BIN] + wide[:, 2::CONTEXT_BIN]
    blocks = rows[:, :, 0::CONTEXT_BIN] + rows[:, :, 1::CONTEXT_BIN] + rows[:, :, 2::CONTEXT_BIN]
    cutouts[:, 1] = blocks * np.float32(1.0 / CONTEXT_BIN**2)
    np.clip(cutouts[:, :2], -_CLIP, _CLIP, out=cutouts[:, :2])
    if hot_map is None:
        cutouts[:, 2] = 0.0
    else:
        cutouts[:, 2] = _windows(hot_map, cy, cx, CUTOUT_SIZE // 2, False)

    features = np.empty((n, N_FEATURES), dtype=np.float32)
    features[:, 0] = np.log10(np.maximum(scale / rms, 1.0))
    features[:, 1] = fwhm_px / _FWHM_UNIT_PX
    features[:, 2] = (np.asarray(sources["flags"]) & FLAG_SATURATED) != 0
    snr = np.nan_to_num(np.asarray(sources["snr"], dtype=np.float64), nan=1.0)
    features[:, 3] = np.log10(np.maximum(snr, 1.0)) / 2.0
    return cutouts, features, cy, cx


def detection_mask(
    image: ArrayLike,
    centre_y: NDArray[np.intp],
    centre_x: NDArray[np.intp],
    background: NDArray[Any],
    *,
    rms_adu: float,
    nsigma: float = 2.0,
    half_size: int = 12,
) -> NDArray[np.bool_]:
    """Return the pixels of sharp detections (cosmic rays, hot pixels), grown by one pixel.

    From each centre, the pixels above ``background + nsigma * rms_adu`` connected to it
    (8-connectivity) within ``half_size`` pixels are marked, then the mask is dilated by one
    pixel to cover the hit's faint edge.

    Parameters
    ----------
    image : array_like
        Calibrated image (ADU), shape ``(ny, nx)``.
    centre_y, centre_x : numpy.ndarray of intp
        The detections' centre pixels (from `model_inputs`).
    background : numpy.ndarray
        Each detection's local background (ADU).
    rms_adu : float
        Background noise (ADU per pixel).
    nsigma : float, optional
        Threshold above the background, in noise sigma.
    half_size : int, optional
        Half-size of the square searched around each centre (pixel): the longest tracks.

    Returns
    -------
    numpy.ndarray of bool
        The mask, same shape as `image`.
    """
    from scipy import ndimage

    data = np.asarray(image)
    ny, nx = data.shape
    mask = np.zeros((ny, nx), dtype=bool)
    for cy, cx, bkg in zip(
        centre_y.tolist(), centre_x.tolist(), np.asarray(background).tolist(), strict=True
    ):
        y0, y1 = max(0, cy - half_size), min(ny, cy + half_size + 1)
        x0, x1 = max(0, cx - half_size), min(nx, cx + half_size + 1)
        above = (
            np.asarray(data[y0:y1, x0:x1]) > (bkg if math.isfinite(bkg) else 0.0) + nsigma * rms_adu
        )
        above[cy - y0, cx - x0] = True
        regions, _ = ndimage.label(above, structure=np.ones((3, 3), dtype=bool))
        hit = regions == regions[cy - y0, cx - x0]
        mask[y0:y1, x0:x1] |= ndimage.binary_dilation(hit, structure=np.ones((3, 3), dtype=bool))
    return mask


def trained_scale(
    image: ArrayLike, sources: NDArray[Any], *, rms_adu: float, fwhm_px: float
) -> tuple[NDArray[np.float32], NDArray[Any], float, float, int]:
    """Bin a frame whose PSF is wider than the training frames' into their range.

    Stars of a well-sampled frame (a long focal length, poor seeing) are wider than any the
    classifier saw; binned by ``ceil(fwhm / 4)`` their FWHM falls back to 2.5-4 pixels, where
    the model was trained, while a cosmic ray stays sharper than the PSF. The block mean
    keeps ADU per pixel, so the noise falls by the factor.

    Parameters
    ----------
    image : array_like
        Calibrated image (ADU), shape ``(ny, nx)``.
    sources : numpy.ndarray
        Catalog with ``x``, ``y`` (zero-based pixel).
    rms_adu, fwhm_px : float
        The frame's background noise (ADU) and FWHM (pixel).

    Returns
    -------
    image : numpy.ndarray of float32
        The binned image (the original when no binning is needed).
    sources : numpy.ndarray
        A copy with ``x``, ``y`` in binned pixels.
    rms_adu, fwhm_px : float
        Noise and FWHM of the binned image.
    factor : int
        The binning factor, 1 when the frame is within the training range.
    """
    data = np.asarray(image, dtype=np.float32)
    if not fwhm_px > _TRAINED_FWHM_PX:
        return data, sources, rms_adu, fwhm_px, 1
    factor = math.ceil(fwhm_px / _FWHM_UNIT_PX)
    ny, nx = (data.shape[0] // factor) * factor, (data.shape[1] // factor) * factor
    binned = data[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))
    moved = sources.copy()
    # Binned pixel j spans original [j f - 0.5, (j + 1) f - 0.5): centre j f + (f - 1) / 2.
    moved["x"] = (sources["x"] - (factor - 1) / 2.0) / factor
    moved["y"] = (sources["y"] - (factor - 1) / 2.0) / factor
    return binned.astype(np.float32), moved, rms_adu / factor, fwhm_px / factor, factor
