"""Display images of frames: downsampling, zscale and asinh stretches, PNG encoding.

Plain functions over numpy arrays, no I/O. The quick-look page shows a 61 MP frame within a
second of its processing, so every step here is linear in the pixels and cheap: a block mean
reads each pixel once (about 60 ms for 61 MP on one core), the display limits come from a
sample of a thousand pixels, and the PNG is written with zlib at its fastest level (a noisy
sky hardly compresses anyway, and the page is local).
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "STRETCHES",
    "Stretch",
    "asinh_to_uint8",
    "block_factor",
    "block_mean",
    "cutout_strip",
    "difference_limit",
    "display_limits",
    "encode_png",
    "linear_to_uint8",
    "percentile_limits",
    "render",
    "zscale_limits",
]

Stretch = Literal["zscale", "asinh"]
STRETCHES: tuple[Stretch, ...] = ("zscale", "asinh")


def block_factor(shape: tuple[int, ...], max_size_px: int) -> int:
    """Return the smallest integer block size that fits a frame into ``max_size_px``.

    Parameters
    ----------
    shape : tuple of int
        Frame shape ``(ny, nx)`` (pixel).
    max_size_px : int
        Largest side of the display image (pixel).

    Returns
    -------
    int
        Block size ``f >= 1`` such that ``max(ny, nx) // f <= max_size_px``.
    """
    if max_size_px < 1:
        raise ValueError(f"max_size_px must be positive, got {max_size_px}")
    return max(1, math.ceil(max(shape[0], shape[1]) / max_size_px))


def block_mean(data: NDArray[Any], factor: int) -> NDArray[np.float32]:
    """Average ``factor`` x ``factor`` blocks of pixels; a trailing partial block is dropped.

    Averaging rather than striding keeps faint stars visible and the noise honest. Works on
    any numeric dtype and byte order (a memory-mapped big-endian FITS array is fine) and
    reads each pixel once.

    Parameters
    ----------
    data : numpy.ndarray
        2-D image, shape ``(ny, nx)``.
    factor : int
        Block size (pixel), at least 1.

    Returns
    -------
    numpy.ndarray
        float32 image of shape ``(ny // factor, nx // factor)``, in the units of ``data``.
    """
    if data.ndim != 2:
        raise ValueError(f"block_mean needs a 2-D image, got shape {data.shape}")
    if factor < 1:
        raise ValueError(f"factor must be at least 1, got {factor}")
    ny, nx = (data.shape[0] // factor) * factor, (data.shape[1] // factor) * factor
    if ny == 0 or nx == 0:
        raise ValueError(f"image {data.shape} is smaller than one {factor} px block")
    if factor == 1:
        same: NDArray[np.float32] = np.ascontiguousarray(data, dtype=np.float32)
        return same
    # Summing the rows of each block with strided views (one pass, float32 accumulator)
    # is three times faster than a 4-D reshape that sums over two axes.
    rows = np.zeros((ny // factor, nx), dtype=np.float32)
    for i in range(factor):
        rows += data[i:ny:factor, :nx]
    out: NDArray[np.float32] = rows.reshape(ny // factor, nx // factor, factor).sum(axis=2)
    out *= np.float32(1.0 / (factor * factor))
    return out


def _sample(data: NDArray[Any], n_samples: int) -> NDArray[np.float64]:
    flat = np.asarray(data).ravel()
    stride = max(1, flat.size // n_samples)
    sample = np.asarray(flat[::stride][:n_samples], dtype=np.float64)
    return sample[np.isfinite(sample)]


def zscale_limits(
    data: NDArray[Any],
    *,
    n_samples: int = 1000,
    contrast: float = 0.25,
    max_reject: float = 0.5,
    min_npixels: int = 5,
    krej: float = 2.5,
    max_iterations: int = 5,
) -> tuple[float, float]:
    """Return the IRAF zscale display limits of an image.

    A line is fitted to the sorted sample of pixel values, rejecting outliers (stars) in a
    few rounds; the limits are the median minus and plus the range that line spans, scaled by
    ``1 / contrast``. This is the algorithm of IRAF's ``display`` and astropy's
    ``ZScaleInterval``, with the same defaults.

    Parameters
    ----------
    data : numpy.ndarray
        Image (any shape); non-finite values are ignored.
    n_samples : int
        Pixels sampled, evenly spaced in memory order.
    contrast : float
        Scale of the slope; smaller shows a wider range.
    max_reject : float
        Fraction of the sample that may be rejected before the fit is given up.
    min_npixels : int
        Fewest pixels kept for a fit.
    krej : float
        Rejection threshold, in standard deviations of the residuals.
    max_iterations : int
        Rounds of fitting and rejection.

    Returns
    -------
    tuple of float
        ``(low, high)`` in the units of ``data``; ``(0, 1)`` when it holds no finite value.
    """
    sample = np.sort(_sample(data, n_samples))
    npix = sample.size
    if npix == 0:
        return 0.0, 1.0
    vmin, vmax = float(sample[0]), float(sample[-1])
    if npix < 2:
        return vmin, vmax
    minpix = max(min_npixels, int(npix * max_reject))
    x = np.arange(npix, dtype=np.float64)
    bad = np.zeros(npix, dtype=bool)
    kernel = np.ones(max(1, int(npix * 0.01)), dtype=int)
    good, last_good = npix, npix + 1
    slope = 0.0
    for _ in range(max_iterations):
        if good >= last_good or good < minpix:
            break
        keep = ~bad
        slope, intercept = np.polyfit(x[keep], sample[keep], 1)
        residual = sample - (slope * x + intercept)
        threshold = krej * residual[keep].std()
        bad |= np.abs(residual) > threshold
        # Grow rejected runs by 1 % of the sample: a star's wings go with its core.
        bad = np.convolve(bad, kernel, mode="same").astype(bool)
        last_good, good = good, int(np.count_nonzero(~bad))
    if good >= minpix:
        if contrast > 0:
            slope /= contrast
        center = (npix - 1) // 2
        median = float(np.median(sample))
        vmin = max(vmin, median - (center - 1) * slope)
        vmax = min(vmax, median + (npix - center) * slope)
    return float(vmin), float(vmax)


def percentile_limits(
    data: NDArray[Any], *, low: float = 1.0, high: float = 99.95, n_samples: int = 100_000
) -> tuple[float, float]:
    """Return percentiles of a sample of the image, for stretches that show bright stars.

    Parameters
    ----------
    data : numpy.ndarray
        Image; non-finite values are ignored.
    low, high : float
        Percentiles (0-100) of the low and high limits.
    n_samples : int
        Pixels sampled, evenly spaced in memory order.

    Returns
    -------
    tuple of float
        ``(low, high)`` in the units of ``data``; ``(0, 1)`` when it holds no finite value.
    """
    sample = _sample(data, n_samples)
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(sample, [low, high])
    return float(lo), float(hi)


def _unit(data: NDArray[Any], low: float, high: float) -> NDArray[np.float32]:
    span = high - low if high > low else 1.0
    unit: NDArray[np.float32] = (np.asarray(data, dtype=np.float32) - np.float32(low)) * (
        np.float32(1.0 / span)
    )
    np.nan_to_num(unit, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(unit, 0.0, 1.0, out=unit)
    return unit


def linear_to_uint8(data: NDArray[Any], low: float, high: float) -> NDArray[np.uint8]:
    """Map ``[low, high]`` linearly onto 0-255 (clipped; NaN shows black).

    Parameters
    ----------
    data : numpy.ndarray
        Image.
    low, high : float
        Display limits, in the units of ``data``.

    Returns
    -------
    numpy.ndarray
        uint8 image of the same shape.
    """
    return (_unit(data, low, high) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def asinh_to_uint8(
    data: NDArray[Any], low: float, high: float, *, softening: float = 0.1
) -> NDArray[np.uint8]:
    """Map ``[low, high]`` onto 0-255 through ``asinh(x / a) / asinh(1 / a)``.

    Linear near ``low`` and logarithmic towards ``high``, so the sky noise and the cores of
    bright stars both stay visible (Lupton et al. 2004; astropy's ``AsinhStretch``).

    Parameters
    ----------
    data, low, high
        As for `linear_to_uint8`.
    softening : float
        ``a``: the fraction of the range where the curve turns from linear to logarithmic.

    Returns
    -------
    numpy.ndarray
        uint8 image of the same shape.
    """
    if softening <= 0:
        raise ValueError(f"softening must be positive, got {softening}")
    unit = _unit(data, low, high)
    scale = np.float32(255.0 / math.asinh(1.0 / softening))
    out: NDArray[np.uint8] = (
        np.arcsinh(unit * np.float32(1.0 / softening)) * scale + np.float32(0.5)
    ).astype(np.uint8)
    return out


def display_limits(data: NDArray[Any], stretch: Stretch) -> tuple[float, float, float]:
    """Return the display scale of a stretch: its limits and, for asinh, its softening.

    zscale shows the sky and its noise linearly. asinh runs from the zscale low limit to the
    brightest pixel, and its softening (a tenth of the zscale range) puts the sky at about a
    quarter of full brightness while star cores stay apart; a sparse field has too few star
    pixels for a high percentile to reach the stars.

    Parameters
    ----------
    data : numpy.ndarray
        Image.
    stretch : {"zscale", "asinh"}
        The stretch.

    Returns
    -------
    tuple of float
        ``(low, high, softening)``; limits in the units of ``data``, softening as for
        `asinh_to_uint8` (1 for zscale, where it is not used).
    """
    if stretch not in STRETCHES:
        raise ValueError(f"unknown stretch {stretch!r}; expected one of {STRETCHES}")
    z_low, z_high = zscale_limits(data)
    if stretch == "zscale":
        return z_low, z_high, 1.0
    finite = np.asarray(data)[np.isfinite(data)]
    high = max(float(finite.max()) if finite.size else z_high, z_high)
    span = max(high - z_low, 1e-6)
    softening = min(1.0, max(1e-5, (z_high - z_low) / span / 10.0))
    return z_low, z_low + span, softening


def render(
    data: NDArray[Any],
    stretch: Stretch,
    scale: tuple[float, float, float] | None = None,
) -> NDArray[np.uint8]:
    """Stretch an image for display, FITS-style: row 0 (the first FITS row) at the bottom.

    Parameters
    ----------
    data : numpy.ndarray
        2-D image, shape ``(ny, nx)``.
    stretch : {"zscale", "asinh"}
        The stretch.
    scale : tuple of float or None
        ``(low, high, softening)`` from `display_limits`; None computes it from ``data``
        (pass the whole frame's when rendering a part of it, so that parts match).

    Returns
    -------
    numpy.ndarray
        uint8 image, shape ``(ny, nx)``, flipped vertically for top-down image formats.
    """
    low, high, softening = display_limits(data, stretch) if scale is None else scale
    flipped = data[::-1]
    if stretch == "zscale":
        return linear_to_uint8(flipped, low, high)
    return asinh_to_uint8(flipped, low, high, softening=softening)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body))
        + kind
        + body
        + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def encode_png(image: NDArray[np.uint8], *, level: int = 1) -> bytes:
    """Encode an 8-bit grayscale (2-D) or RGB (``ny, nx, 3``) image as PNG.

    Parameters
    ----------
    image : numpy.ndarray
        uint8 pixels, first row on top.
    level : int
        zlib compression level, 0-9; 1 is fastest and nearly as small on noisy skies.

    Returns
    -------
    bytes
        The PNG file.
    """
    if image.dtype != np.uint8:
        raise ValueError(f"encode_png needs uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        colour_type, channels = 0, 1
    elif image.ndim == 3 and image.shape[2] == 3:
        colour_type, channels = 2, 3
    else:
        raise ValueError(f"encode_png needs (ny, nx) or (ny, nx, 3) pixels, got {image.shape}")
    ny, nx = image.shape[:2]
    if ny == 0 or nx == 0:
        raise ValueError("encode_png needs a non-empty image")
    # Each scanline starts with its filter type; 0 ("none") is the cheapest to write.
    raw = np.zeros((ny, nx * channels + 1), dtype=np.uint8)
    raw[:, 1:] = image.reshape(ny, nx * channels)
    header = struct.pack(">IIBBBBB", nx, ny, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level))
        + _chunk(b"IEND", b"")
    )


#: Half the side of a difference cutout's core (pixel), where its candidate's peak is.
_CORE_HALF_PX = 2
#: A difference cutout's display range is at least this many times its noise (both signs).
_MIN_DIFFERENCE_SIGMA = 5.0
_MAD_TO_SIGMA = 1.4826


def difference_limit(data: NDArray[Any]) -> float:
    """Return the half range of a symmetric display of a difference cutout (its units).

    The larger of the peak's magnitude in the central 5x5 pixels (the candidate, whichever
    its sign) and five times the cutout's robust noise (scaled MAD): a faint candidate
    shows over its noise, a bright one is not clipped to a block. Non-finite pixels (beyond
    the frame's edge) are ignored; 1 when there is none.
    """
    finite = np.asarray(data, dtype=np.float64)
    values = finite[np.isfinite(finite)]
    if values.size == 0:
        return 1.0
    sigma = _MAD_TO_SIGMA * float(np.median(np.abs(values - np.median(values))))
    cy, cx = finite.shape[0] // 2, finite.shape[1] // 2
    core = finite[
        max(0, cy - _CORE_HALF_PX) : cy + _CORE_HALF_PX + 1,
        max(0, cx - _CORE_HALF_PX) : cx + _CORE_HALF_PX + 1,
    ]
    peak = float(np.nanmax(np.abs(core))) if np.isfinite(core).any() else 0.0
    limit = max(peak, _MIN_DIFFERENCE_SIGMA * sigma)
    return limit if limit > 0.0 else 1.0


def cutout_strip(planes: NDArray[Any], *, factor: int, gap_px: int = 2) -> NDArray[np.uint8]:
    """Render a candidate's cutouts side by side: new frame, reference, difference.

    The new frame and the reference share one asinh scale (`display_limits` of both), so a
    source in one and not the other looks it; the difference is linear and symmetric about
    zero (`difference_limit`): mid grey is no change, white new light, black light gone.
    Pixels beyond the frame (NaN) are black. Each cutout is enlarged ``factor`` times by
    repeating pixels (nearest neighbour: the pixels stay visible as pixels).

    Parameters
    ----------
    planes : numpy.ndarray
        ``(3, ny, nx)``: new frame, reference and difference, in one unit (ADU).
    factor : int
        Enlargement, at least 1.
    gap_px : int
        Black columns between the cutouts (pixel of the result), at least 0.

    Returns
    -------
    numpy.ndarray
        uint8 image ``(ny * factor, 3 * nx * factor + 2 * gap_px)``, FITS row 0 at the bottom.

    Raises
    ------
    ValueError
        If ``planes`` is not three 2-D planes, or ``factor`` or ``gap_px`` is out of range.
    """
    if planes.ndim != 3 or planes.shape[0] != 3 or min(planes.shape[1:]) < 1:
        raise ValueError(f"cutout_strip needs (3, ny, nx) planes, got shape {planes.shape}")
    if factor < 1 or gap_px < 0:
        raise ValueError(f"factor must be >= 1 and gap_px >= 0, got {factor} and {gap_px}")
    data = np.asarray(planes, dtype=np.float32)
    scale = display_limits(data[:2], "asinh")
    limit = difference_limit(data[2])
    shown = [
        render(data[0], "asinh", scale),
        render(data[1], "asinh", scale),
        linear_to_uint8(data[2][::-1], -limit, limit),
    ]
    ny, nx = data.shape[1] * factor, data.shape[2] * factor
    out = np.zeros((ny, 3 * nx + 2 * gap_px), dtype=np.uint8)
    for i, image in enumerate(shown):
        x0 = i * (nx + gap_px)
        out[:, x0 : x0 + nx] = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
    return out
