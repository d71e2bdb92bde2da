"""Background, detection, centroids, shapes and aperture photometry of one frame with SEP.

`measure_sources` turns a calibrated frame into a source catalog (a structured array, one row
per detection): windowed centroids, a Gaussian-core FWHM and ellipticity, the half-flux radius,
circular-aperture fluxes at radii set from the frame's FWHM, Kron (AUTO) fluxes, errors from
the CCD equation and flag bits. Everything here is pure numeric code: arrays in, arrays out.

Speed matters (a 4096 x 4096 frame with a few thousand stars in about half a second on one
core), so a few choices trade generality for time; each is explained where it is made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import numpy as np
import sep
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "FLAG_BLENDED",
    "FLAG_CROWDED",
    "FLAG_EDGE",
    "FLAG_SATURATED",
    "FLAG_SHAPE_FAILED",
    "FLAG_SHARP",
    "FLAG_WINPOS_FAILED",
    "SEP_FLAGS",
    "BackgroundInfo",
    "DetectionResult",
    "DetectionSettings",
    "catalog_dtype",
    "detect_sources",
    "measure_sources",
]

# --------------------------------------------------------------------------------- flags

SEP_FLAGS = 0x00FF
"""Bits 0-7 of ``flags`` are SEP's own (``sep.OBJ_MERGED`` = 1, ``OBJ_TRUNC`` = 2,
``OBJ_DOVERFLOW`` = 4, ``OBJ_SINGU`` = 8, ``APER_TRUNC`` = 16, ``APER_HASMASKED`` = 32,
``APER_ALLMASKED`` = 64, ``APER_NONPOSITIVE`` = 128), OR-ed over detection, the main aperture
and the Kron aperture."""

FLAG_SATURATED = 0x0100
"""A pixel within one pixel of the peak reaches the saturation level."""
FLAG_EDGE = 0x0200
"""The main aperture crosses the image border, or the object touches it."""
FLAG_BLENDED = 0x0400
"""SEP deblended the object out of a larger connected region (``sep.OBJ_MERGED``)."""
FLAG_CROWDED = 0x0800
"""Another detection lies within twice the main aperture radius: its light may enter the
aperture."""
FLAG_WINPOS_FAILED = 0x1000
"""The windowed centroid failed or wandered; ``x``, ``y`` are SEP's isophotal barycentre."""
FLAG_SHAPE_FAILED = 0x2000
"""The Gaussian-core fit failed (too few pixels, not peaked); ``fwhm_px`` and ``ellipticity``
are NaN."""
FLAG_SHARP = 0x4000
"""Much sharper than the frame's PSF (FWHM below half of it, or the pixels around the peak
far fainter than a star's): a cosmic ray or hot pixel."""

# ------------------------------------------------------------------------------ constants

_UPSAMPLE_BLOCK_ROWS = 128  # even; 128 rows of 4096 float32 = 2 MB, within L2/L3
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
# SEP's default buffers (300 000 active pixels, 1024 sub-objects) hold a crowded 4096^2
# frame at 3 sigma, and a bigger pixel stack slows every extraction, so they are only grown
# (4x per retry, up to these limits) when an extraction overflows them.
_MAX_PIXSTACK = 64_000_000
_MAX_SUB_OBJECTS = 65_536
# Pixels at or above this fraction of the peak take part in the Gaussian-core fit: high enough
# that Moffat wings bias the FWHM by < 8 % (beta 3), low enough for 9+ pixels from FWHM 2 px.
_CORE_FRACTION = 0.25
_CORE_FRACTION_LOW = 0.1
_CORE_COMFORT_PIXELS = 9  # fewer pixels above _CORE_FRACTION: use _CORE_FRACTION_LOW
_CORE_MIN_PIXELS = 7
# Stars that set the frame's FWHM: peak at least this many background sigma.
_CLEAN_PEAK_SIGMA = 20.0
_CLEAN_MAX_STARS = 500
_FALLBACK_FWHM_PX = 3.0
_SHARP_MIN_SIGMA = 5.0  # below this the neighbour test is noise
# A windowed centroid moving further than this (in frame FWHM, at least 1 px) from the
# isophotal barycentre has locked onto something else.
_WINPOS_MAX_SHIFT_FWHM = 0.5
_KRON_WINDOW = 6.0  # Kron radius measured within 6 isophotal radii (SExtractor)
_KRON_MIN_SCALE = 3.5  # minimum Kron scale in isophotal radii (SExtractor's PHOT_AUTOPARAMS)
# The half-flux radius is searched within 2 FWHM (a Moffat star's is 0.5-0.7 FWHM); the
# search costs the square of this.
_HFR_RMAX_FWHM = 2.0


@dataclass(frozen=True)
class BackgroundInfo:
    """Frame-level background statistics and the PSF scale the measurement used.

    Attributes
    ----------
    level_adu : float
        Global background level (ADU per pixel), SEP's ``globalback``.
    rms_adu : float
        Global background noise (ADU per pixel), SEP's ``globalrms``, floored at the read
        noise. It contains read noise, sky and dark shot noise: the pixel term of the CCD
        equation.
    box_px : int
        Background mesh box size (pixel, full resolution).
    fwhm_px : float
        The frame's PSF FWHM (pixel) that set the window and aperture radii: the median
        Gaussian-core FWHM of clean stars, or the value passed in (3 px when no star could
        be measured).
    aperture_radii_px : tuple of float
        Radii of the ``flux_ap{i}`` apertures (pixel).
    main_aperture : int
        Index into `aperture_radii_px` of the aperture reported as ``flux``.
    """

    level_adu: float
    rms_adu: float
    box_px: int
    fwhm_px: float
    aperture_radii_px: tuple[float, ...]
    main_aperture: int


@dataclass(frozen=True, eq=False)
class DetectionResult:
    """SEP's raw detections on a background-subtracted private copy of the frame.

    Attributes
    ----------
    objects : numpy.ndarray
        ``sep.extract``'s structured array.
    subtracted : numpy.ndarray of float32
        The background-subtracted image (ADU), native C-contiguous float32.
    mask : numpy.ndarray of bool or None
        Bad pixels (True = bad): the caller's mask plus non-finite pixels.
    level_adu, rms_adu : float
        Global background level and noise (ADU), as in `BackgroundInfo`.
    box_px : int
        Background mesh box size (pixel), as in `BackgroundInfo`.
    """

    objects: NDArray[Any]
    subtracted: NDArray[np.float32]
    mask: NDArray[np.bool_] | None
    level_adu: float
    rms_adu: float
    box_px: int


class DetectionSettings(TypedDict, total=False):
    """The background and detection settings of `detect_sources`, where their defaults are.

    `measure_sources` passes them on unchanged.
    """

    detect_sigma: float
    minarea: int
    back_size: int
    back_filter: int
    back_subsample: int
    deblend_nthresh: int
    deblend_cont: float


def catalog_dtype(n_apertures: int) -> np.dtype[Any]:
    """Return the row type of the catalog `measure_sources` builds.

    Parameters
    ----------
    n_apertures : int
        Number of circular apertures (``flux_ap0`` ... ``flux_ap{n-1}``).

    Returns
    -------
    numpy.dtype
        Structured dtype. Positions are zero-based pixels with pixel centres at integers;
        fluxes are background-subtracted ADU in the image's units; see `measure_sources`.
    """
    fields: list[tuple[str, Any]] = [
        ("id", np.int32),
        ("x", np.float64),
        ("y", np.float64),
        ("x_iso", np.float64),
        ("y_iso", np.float64),
        ("a", np.float64),
        ("b", np.float64),
        ("theta", np.float64),
        ("npix", np.int32),
        ("ellipticity", np.float64),
        ("fwhm_px", np.float64),
        ("hfr_px", np.float64),
        ("peak", np.float64),
        ("background", np.float64),
        ("flux", np.float64),
        ("flux_err", np.float64),
        ("flux_auto", np.float64),
        ("flux_auto_err", np.float64),
        ("kron_radius", np.float64),
        ("snr", np.float64),
        ("flags", np.int32),
    ]
    for i in range(n_apertures):
        fields.append((f"flux_ap{i}", np.float64))
        fields.append((f"flux_ap{i}_err", np.float64))
    return np.dtype(fields)


# ------------------------------------------------------------------------------ detection


def _as_work_copy(
    data: ArrayLike, mask: ArrayLike | None
) -> tuple[NDArray[np.float32], NDArray[np.bool_] | None]:
    """Return a private native C-contiguous float32 copy and the effective bad-pixel mask."""
    array = np.asarray(data)
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 2:
        raise ValueError(f"data must be a two-dimensional image, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"data must be real numbers, got dtype {array.dtype}")
    # Always a copy: the background is subtracted in place, and SEP rejects read-only,
    # non-contiguous and big-endian (FITS) arrays.
    work = np.array(array, dtype=np.float32, order="C", copy=True)
    bad: NDArray[np.bool_] | None = None
    if mask is not None:
        bad = np.asarray(mask, dtype=bool)
        if bad.shape != work.shape:
            raise ValueError(f"mask shape {bad.shape} differs from data shape {work.shape}")
        bad = np.ascontiguousarray(bad)
    # min/max propagate NaN and expose inf, and are much cheaper than an isfinite pass.
    if not (np.isfinite(work.max()) and np.isfinite(work.min())):
        # Rare (calibration should not produce them): mask NaN/inf so SEP never sees them.
        nonfinite = ~np.isfinite(work)
        work[nonfinite] = 0.0
        bad = nonfinite if bad is None else (bad | nonfinite)
    return work, bad


def _midpoints(a: NDArray[np.float32], n: int, axis: int) -> NDArray[np.float32]:
    """Return the ``n`` means of neighbouring samples along an axis, repeating the edge."""
    m = a.shape[axis]
    out = np.empty((n, a.shape[1]) if axis == 0 else (a.shape[0], n), dtype=np.float32)
    pairs = min(n, m - 1)
    if axis == 0:
        np.add(a[:pairs], a[1 : pairs + 1], out=out[:pairs])
        out[pairs:] = 2.0 * a[-1]
    else:
        np.add(a[:, :pairs], a[:, 1 : pairs + 1], out=out[:, :pairs])
        out[:, pairs:] = 2.0 * a[:, -1:]
    out *= np.float32(0.5)
    return out


def _subtract_upsampled(image: NDArray[np.float32], coarse: NDArray[np.float32]) -> None:
    """Subtract a map sampled at the even pixels, interpolated bilinearly, in place.

    Works through blocks of `_UPSAMPLE_BLOCK_ROWS` rows so the four interleaved (strided)
    updates of a block hit the cache: half the time of four whole-image passes.
    """
    ny, nx = image.shape
    across_all = _midpoints(coarse, nx // 2, axis=1)
    for r0 in range(0, ny, _UPSAMPLE_BLOCK_ROWS):
        block = image[r0 : r0 + _UPSAMPLE_BLOCK_ROWS]
        c0 = r0 // 2
        n_even = (block.shape[0] + 1) // 2
        n_odd = block.shape[0] // 2
        # One more coarse row than the block's own, for its last odd row.
        samples = coarse[c0 : c0 + n_even + 1]
        across = across_all[c0 : c0 + n_even + 1]
        block[0::2, 0::2] -= samples[:n_even]
        block[0::2, 1::2] -= across[:n_even]
        block[1::2, 0::2] -= _midpoints(samples, n_odd, axis=0)
        block[1::2, 1::2] -= _midpoints(across, n_odd, axis=0)


def _subtract_background(
    work: NDArray[np.float32],
    mask: NDArray[np.bool_] | None,
    *,
    box_px: int,
    filter_boxes: int,
    subsample: int,
) -> tuple[float, float]:
    """Estimate the background, subtract it from `work` in place; return (level, rms)."""
    if subsample not in (1, 2):
        raise ValueError(f"back_subsample must be 1 or 2, got {subsample}")
    ny, nx = work.shape
    if subsample == 2 and min(ny, nx) >= 4 * box_px:
        # The background is smooth on the box scale, and for independent pixels every second
        # pixel of every second row has the same noise statistics, so the mesh is measured on
        # a quarter of the pixels (0.07 s instead of 0.26 s at 4096^2) and the map is
        # interpolated back; the added interpolation error is far below the mesh noise.
        coarse_img = np.ascontiguousarray(work[::2, ::2])
        coarse_mask = None if mask is None else np.ascontiguousarray(mask[::2, ::2])
        half = max(1, box_px // 2)
        bkg = sep.Background(
            coarse_img, mask=coarse_mask, bw=half, bh=half, fw=filter_boxes, fh=filter_boxes
        )
        _subtract_upsampled(work, bkg.back(dtype=np.float32))
    else:
        bkg = sep.Background(
            work, mask=mask, bw=box_px, bh=box_px, fw=filter_boxes, fh=filter_boxes
        )
        bkg.subfrom(work)
    return float(bkg.globalback), float(bkg.globalrms)


def _extract(image: NDArray[np.float32], thresh: float, **kwargs: Any) -> NDArray[Any]:
    """Run ``sep.extract``, growing SEP's buffers and retrying when they overflow."""
    pixstack, sub_objects = sep.get_extract_pixstack(), sep.get_sub_object_limit()
    try:
        while True:
            try:
                return sep.extract(image, thresh, clean=True, **kwargs)  # type: ignore[no-any-return]
            except Exception as exc:  # SEP raises bare Exception for its C errors
                message = str(exc)
                current_stack = sep.get_extract_pixstack()
                current_subs = sep.get_sub_object_limit()
                if "pixel buffer full" in message and current_stack < _MAX_PIXSTACK:
                    sep.set_extract_pixstack(min(4 * current_stack, _MAX_PIXSTACK))
                elif "sub-objects" in message and current_subs < _MAX_SUB_OBJECTS:
                    sep.set_sub_object_limit(min(4 * current_subs, _MAX_SUB_OBJECTS))
                else:
                    raise RuntimeError(f"SEP extraction failed: {message}") from exc
    finally:
        # Process-wide settings: leave them as found.
        sep.set_extract_pixstack(pixstack)
        sep.set_sub_object_limit(sub_objects)


def detect_sources(
    data: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    detect_sigma: float = 3.0,
    minarea: int = 5,
    back_size: int = 64,
    back_filter: int = 3,
    back_subsample: int = 2,
    deblend_nthresh: int = 32,
    deblend_cont: float = 0.005,
    rms_floor_adu: float = 0.0,
    rms_adu: float | None = None,
) -> DetectionResult:
    """Subtract the background and detect sources with SEP.

    The first half of `measure_sources`, public so that injection tests (see
    `obsctl.processing.metrics.limiting_magnitude`) detect exactly as the catalog does.

    Parameters
    ----------
    data : array_like
        Calibrated image (ADU or electrons), shape ``(ny, nx)``; any real dtype or byte order.
        It is never modified.
    mask : array_like of bool, optional
        Bad pixels (True = bad), same shape.
    detect_sigma : float, optional
        Detection threshold in units of the global background rms, applied to the image
        filtered with SEP's 3 x 3 default kernel.
    minarea : int, optional
        Minimum connected pixels above threshold.
    back_size : int, optional
        Background mesh box (pixel).
    back_filter : int, optional
        Median filter over the mesh (boxes).
    back_subsample : {2, 1}, optional
        Measure the background mesh on every second pixel in each axis (2, the default,
        3.5 times faster) or on every pixel (1). Use 1 for images whose pixel noise is
        correlated at the one-pixel scale (resampled or stacked images).
    deblend_nthresh, deblend_cont : optional
        SEP's deblending levels and minimum contrast. 32 levels down to 0.5 % contrast
        (SExtractor's defaults) separate stars a couple of FWHM apart in crowded fields.
    rms_floor_adu : float, optional
        Lower bound on the background rms (ADU), e.g. the read noise over the gain.
    rms_adu : float, optional
        Use this background rms (ADU) for the threshold instead of the measured one, e.g.
        the whole frame's when detecting on a cutout.

    Returns
    -------
    DetectionResult
        SEP's objects, the background-subtracted copy, the effective mask and the global
        background level and rms.

    Raises
    ------
    ValueError
        If the image is not two-dimensional or the mask's shape differs.
    TypeError
        If the image is not real-valued.

    Notes
    -----
    The threshold uses the global rms, not SEP's full-resolution noise map: the per-pixel
    map roughly triples extraction time on a 4096 x 4096 frame, and after flat-fielding the
    noise varies by only ~10 % across a frame.
    """
    work, bad = _as_work_copy(data, mask)
    level, rms = _subtract_background(
        work, bad, box_px=back_size, filter_boxes=back_filter, subsample=back_subsample
    )
    rms = max(rms if rms_adu is None else rms_adu, rms_floor_adu)
    if not rms > 0.0:
        raise ValueError("the background rms is zero: is this a synthetic noiseless image?")
    objects = _extract(
        work,
        detect_sigma,
        err=rms,
        mask=bad,
        minarea=minarea,
        deblend_nthresh=deblend_nthresh,
        deblend_cont=deblend_cont,
    )
    return DetectionResult(
        objects=objects, subtracted=work, mask=bad, level_adu=level, rms_adu=rms, box_px=back_size
    )


# -------------------------------------------------------------------------------- shapes


@dataclass(frozen=True, eq=False)
class _Shapes:
    fwhm_px: NDArray[np.float64]
    ellipticity: NDArray[np.float64]
    peak_sigma: NDArray[np.float64]  # peak pixel over the background rms
    neighbour_ratio: NDArray[np.float64]  # mean of the 8 pixels around the peak over the peak


def _core_shapes(
    image: NDArray[np.float32],
    mask: NDArray[np.bool_] | None,
    xpeak: NDArray[np.int64],
    ypeak: NDArray[np.int64],
    *,
    half_size: int,
    rms: float,
    gain: float,
) -> _Shapes:
    """Fit ln(I) with a 2-D quadratic (an elliptical Gaussian) to each star's core.

    Linear least squares over the pixels at or above `_CORE_FRACTION` of the peak (or
    `_CORE_FRACTION_LOW` for undersampled stars with too few such pixels), all
    stars at once (one small matrix product per star): a few milliseconds for thousands of
    stars, where a nonlinear PSF fit per star would take seconds. The centre is a free
    parameter, so centroid errors do not widen the FWHM. The 1/12 px^2 variance a pixel adds
    is removed, so undersampled stars are not overestimated.
    """
    ny, nx = image.shape
    n = xpeak.size
    offsets = np.arange(-half_size, half_size + 1)
    dy_grid, dx_grid = np.meshgrid(offsets, offsets, indexing="ij")
    dx = dx_grid.ravel().astype(np.float64)
    dy = dy_grid.ravel().astype(np.float64)
    inside_circle = dx * dx + dy * dy <= (half_size + 0.5) ** 2
    rows = ypeak[:, None] + dy_grid.ravel()[None, :]
    cols = xpeak[:, None] + dx_grid.ravel()[None, :]
    on_image = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    values = image[np.clip(rows, 0, ny - 1), np.clip(cols, 0, nx - 1)].astype(np.float64)
    usable = on_image & inside_circle[None, :]
    if mask is not None:
        usable &= ~mask[np.clip(rows, 0, ny - 1), np.clip(cols, 0, nx - 1)]
    centre = (dx == 0) & (dy == 0)
    peak = values[:, centre][:, 0]
    # Only pixels of this star: a brighter neighbour's pixels exceed our peak.
    candidates = usable & (values <= peak[:, None]) & (values > 0.0)
    fit = candidates & (values >= _CORE_FRACTION * peak[:, None])
    # Undersampled stars (FWHM < 2 px) have too few such pixels: go down the profile.
    few = fit.sum(axis=1) < _CORE_COMFORT_PIXELS
    fit[few] = (candidates & (values >= _CORE_FRACTION_LOW * peak[:, None]))[few]
    counts = fit.sum(axis=1)
    safe = np.where(fit, values, 1.0)
    # Inverse variance of ln(I): I^2 / (background variance + shot noise).
    weights = np.where(fit, safe * safe / (rms * rms + safe / gain), 0.0)
    design = np.stack([np.ones_like(dx), dx, dy, dx * dx, dx * dy, dy * dy], axis=1)
    outer = (design[:, :, None] * design[:, None, :]).reshape(dx.size, 36)
    normal = (weights @ outer).reshape(n, 6, 6)
    rhs = (weights * np.log(safe)) @ design
    ok = counts >= _CORE_MIN_PIXELS
    coeffs = np.full((n, 6), np.nan)
    if ok.any():
        sub_normal = normal[ok]
        # A whisker of ridge keeps the batch solvable when one star's pixels are degenerate.
        ridge = 1e-12 * np.trace(sub_normal, axis1=1, axis2=2)[:, None, None] * np.eye(6)
        coeffs[ok] = np.linalg.solve(sub_normal + ridge, rhs[ok][:, :, None])[:, :, 0]
    # ln I = ... - (1/2) r^T C^-1 r: the quadratic terms give C^-1 = -2 [[c3, c4/2], [c4/2, c5]].
    qxx, qxy, qyy = -2.0 * coeffs[:, 3], -coeffs[:, 4], -2.0 * coeffs[:, 5]
    det_q = qxx * qyy - qxy * qxy
    with np.errstate(invalid="ignore", divide="ignore"):
        cxx = qyy / det_q - 1.0 / 12.0
        cyy = qxx / det_q - 1.0 / 12.0
        cxy = -qxy / det_q
        half_trace = 0.5 * (cxx + cyy)
        spread = np.sqrt(np.maximum(0.25 * (cxx - cyy) ** 2 + cxy * cxy, 0.0))
        major = half_trace + spread
        minor = half_trace - spread
        good = (qxx > 0) & (qyy > 0) & (det_q > 0) & (minor > 0) & np.isfinite(major)
        fwhm = np.where(good, _FWHM_PER_SIGMA * np.sqrt(np.sqrt(major * minor)), np.nan)
        ellipticity = np.where(good, 1.0 - np.sqrt(minor / major), np.nan)
        peak_sigma = peak / rms
        ring = usable & (np.abs(dx) <= 1) & (np.abs(dy) <= 1) & ~centre
        neighbours = np.where(ring, values, 0.0).sum(axis=1) / np.maximum(ring.sum(axis=1), 1)
        neighbour_ratio = np.where(peak > 0, neighbours / np.where(peak > 0, peak, 1.0), np.nan)
    return _Shapes(
        fwhm_px=fwhm,
        ellipticity=ellipticity,
        peak_sigma=peak_sigma,
        neighbour_ratio=neighbour_ratio,
    )


def _nearest_neighbour_px(
    x: NDArray[np.float64], y: NDArray[np.float64], *, within: float
) -> NDArray[np.float64]:
    """Distance from each point to its nearest other point (pixel).

    Distances of `within` or more may come back as inf. Points are sorted by x and compared
    with the neighbours 1, 2, 3... ranks away, all points at once, until every remaining x
    gap exceeds both the best distance found so far and `within`: O(N) per rank, and the
    number of ranks is the number of points in an x strip `within` wide.
    """
    n = x.size
    nearest = np.full(n, np.inf)
    if n < 2:
        return nearest
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    best = np.full(n, np.inf)  # squared distances, in sorted order
    cap = within * within
    for lag in range(1, n):
        gap2 = (xs[lag:] - xs[:-lag]) ** 2
        # Gaps only grow with the rank offset: stop when none can still matter.
        if np.all(gap2 >= np.minimum(np.maximum(best[lag:], best[:-lag]), cap)):
            break
        d2 = gap2 + (ys[lag:] - ys[:-lag]) ** 2
        np.minimum(best[:-lag], d2, out=best[:-lag])
        np.minimum(best[lag:], d2, out=best[lag:])
    nearest[order] = np.sqrt(best)
    return nearest


def _frame_fwhm(
    fwhm: NDArray[np.float64],
    peak_sigma: NDArray[np.float64],
    clean: NDArray[np.bool_],
) -> float:
    """Return the sigma-clipped median FWHM of bright, clean, unsaturated stars."""
    good = clean & np.isfinite(fwhm) & (peak_sigma >= _CLEAN_PEAK_SIGMA)
    if np.count_nonzero(good) < 3:
        good = clean & np.isfinite(fwhm) & (peak_sigma >= 5.0)
    if np.count_nonzero(good) < 3:
        good = np.isfinite(fwhm)
    if not good.any():
        return math.nan
    values = fwhm[good]
    if values.size > _CLEAN_MAX_STARS:
        values = values[np.argsort(peak_sigma[good])[-_CLEAN_MAX_STARS:]]
    for _ in range(5):
        centre = float(np.median(values))
        spread = 1.4826 * float(np.median(np.abs(values - centre)))
        keep = np.abs(values - centre) <= 3.0 * max(spread, 0.01 * centre)
        if keep.all() or keep.sum() < 3:
            break
        values = values[keep]
    return float(np.median(values))


# ---------------------------------------------------------------------------- the catalog


def measure_sources(
    data: ArrayLike,
    *,
    gain_e_per_adu: float,
    read_noise_e: float,
    saturation_adu: float,
    mask: ArrayLike | None = None,
    aperture_fwhm: Sequence[float] = (1.0, 1.5, 2.0, 3.0),
    main_aperture: int = 1,
    kron_factor: float = 2.5,
    fwhm_px: float | None = None,
    min_window_sigma_px: float = 1.0,
    **detect: Unpack[DetectionSettings],
) -> tuple[NDArray[Any], BackgroundInfo]:
    """Detect and measure the sources of one calibrated frame.

    Steps: private float32 copy; SEP background (mesh of `back_size` boxes) subtracted;
    ``sep.extract`` at `detect_sigma` times the global rms; a Gaussian fit to every star's
    core (FWHM, ellipticity); the frame FWHM from clean stars; windowed centroids
    (``sep.winpos``, window sigma = FWHM / 2.355, at least `min_window_sigma_px`); circular
    apertures at `aperture_fwhm` times the frame FWHM; Kron (AUTO) photometry; the half-flux
    radius; flags.

    Parameters
    ----------
    data : array_like
        Calibrated image (bias, dark and flat corrected), shape ``(ny, nx)``, in ADU (or in
        electrons with ``gain_e_per_adu=1``). Any real dtype and byte order; never modified.
    gain_e_per_adu : float
        Conversion gain (electrons per ADU), for the shot noise of the sources.
    read_noise_e : float
        Read noise (electrons RMS). The measured background rms already contains it; it
        only sets a floor on that rms (``read_noise_e / gain_e_per_adu``).
    saturation_adu : float
        Level (ADU, in the calibrated image) at or above which a pixel is saturated; use
        ``math.inf`` to disable.
    mask : array_like of bool, optional
        Bad pixels (True = bad), same shape. Masked pixels are ignored by the background,
        the detection and the apertures (which then carry ``sep.APER_HASMASKED``).
    aperture_fwhm : sequence of float, optional
        Radii of the circular apertures in units of the frame FWHM.
    main_aperture : int, optional
        Index into `aperture_fwhm` of the aperture reported as ``flux``/``flux_err``.
        1.5 FWHM (the default) holds ~90 % of a Moffat star's flux and is close to the S/N
        optimum; the zero point absorbs the missing wings.
    kron_factor : float, optional
        Kron aperture scale (SExtractor's 2.5), with a minimum of 3.5 isophotal radii.
    fwhm_px : float, optional
        Use this frame FWHM (pixel) for windows and apertures instead of measuring it.
    min_window_sigma_px : float, optional
        Smallest Gaussian sigma of the centroid window (pixel); below about one pixel the
        windowed centroid of an undersampled star is pulled towards the pixel centre.
    **detect
        Background and detection settings (`DetectionSettings`); see `detect_sources`.

    Returns
    -------
    catalog : numpy.ndarray
        Structured array of `catalog_dtype`, one row per source:

        - ``id``: 1-based running number.
        - ``x``, ``y``: windowed centroid (pixel, zero-based, pixel centres at integers);
          ``x_iso``, ``y_iso``: SEP's isophotal barycentre.
        - ``a``, ``b``, ``theta``: SEP's isophotal second-moment ellipse (pixel, radian),
          ``npix``: isophotal area (pixel).
        - ``fwhm_px``, ``ellipticity``: from the Gaussian-core fit (1 - minor/major axis);
          NaN when it fails. The core FWHM of a Moffat star reads wide: +1 % for beta 20
          (near Gaussian), +4 % for beta 4.5, +7 % for beta 3 at FWHM >= 2.5 px; +10-17 %
          for undersampled stars (FWHM 2-1.5 px). Noise widens it below S/N ~50.
        - ``hfr_px``: half-flux radius (pixel), the radius holding half of ``flux_auto``.
        - ``peak``: brightest pixel above the background (ADU); ``background``: the
          background there (ADU).
        - ``flux``, ``flux_err``: main circular aperture (ADU); ``flux_ap{i}``,
          ``flux_ap{i}_err``: every aperture.
        - ``flux_auto``, ``flux_auto_err``: Kron aperture (ADU); ``kron_radius``: SEP's Kron
          radius in isophotal radii.
        - ``snr``: ``flux / flux_err``.
        - ``flags``: SEP's bits (`SEP_FLAGS`) and the ``FLAG_*`` bits of this module.

        Errors follow the CCD equation: ``var = N_pix * rms^2 + flux / gain``, where the
        background rms holds the read, sky and dark noise (``err`` and ``gain`` passed to
        SEP). Sources with a non-positive or non-finite main-aperture flux are dropped.
    info : BackgroundInfo
        Background level and rms, the frame FWHM and the aperture radii used.

    Raises
    ------
    ValueError
        If the image is not two-dimensional, the mask's shape differs, a knob is out of
        range or the image has no noise.
    TypeError
        If the image is not real-valued.
    """
    if not gain_e_per_adu > 0.0 or read_noise_e < 0.0:
        raise ValueError("gain_e_per_adu must be positive and read_noise_e >= 0")
    radii_fwhm = tuple(float(k) for k in aperture_fwhm)
    if not radii_fwhm or min(radii_fwhm) <= 0.0:
        raise ValueError("aperture_fwhm must hold positive radii")
    if not 0 <= main_aperture < len(radii_fwhm):
        raise ValueError(f"main_aperture {main_aperture} is not an index of aperture_fwhm")
    gain = float(gain_e_per_adu)
    detection = detect_sources(data, mask=mask, rms_floor_adu=read_noise_e / gain, **detect)
    image, bad, rms, objects = (
        detection.subtracted,
        detection.mask,
        detection.rms_adu,
        detection.objects,
    )
    ny, nx = image.shape
    original = np.asarray(data)

    xpeak = objects["xpeak"].astype(np.int64)
    ypeak = objects["ypeak"].astype(np.int64)
    x_iso = objects["x"].astype(np.float64)
    y_iso = objects["y"].astype(np.float64)
    a = objects["a"].astype(np.float64)
    b = objects["b"].astype(np.float64)
    theta = objects["theta"].astype(np.float64)
    sep_flags = objects["flag"].astype(np.int32)

    # Saturation from the raw pixels (the background-subtracted copy hides the true level).
    saturated = np.zeros(xpeak.size, dtype=bool)
    if math.isfinite(saturation_adu):
        for oy in (-1, 0, 1):
            for ox in (-1, 0, 1):
                rr = np.clip(ypeak + oy, 0, ny - 1)
                cc = np.clip(xpeak + ox, 0, nx - 1)
                saturated |= original[rr, cc] >= saturation_adu

    # First pass: the frame FWHM from bright isolated stars, with a window from their
    # isophotal size; second pass: every source, in a window scaled to that FWHM.
    if fwhm_px is None:
        flux_order = np.argsort(objects["flux"])
        bright = flux_order[-min(flux_order.size, _CLEAN_MAX_STARS) :]
        iso_scale = float(np.median(np.sqrt(a[bright] * b[bright]))) if bright.size else 1.5
        half = int(np.clip(math.ceil(3.0 * iso_scale), 3, 15))
        isolation = 4.0 * half
        nn_first = _nearest_neighbour_px(x_iso, y_iso, within=isolation)
        clean = (sep_flags[bright] == 0) & ~saturated[bright] & (nn_first[bright] > isolation)
        first = _core_shapes(
            image, bad, xpeak[bright], ypeak[bright], half_size=half, rms=rms, gain=gain
        )
        frame_fwhm = _frame_fwhm(first.fwhm_px, first.peak_sigma, clean)
        if not math.isfinite(frame_fwhm):
            frame_fwhm = _FALLBACK_FWHM_PX
    else:
        if not fwhm_px > 0.0:
            raise ValueError(f"fwhm_px must be positive, got {fwhm_px}")
        frame_fwhm = float(fwhm_px)
    half = int(np.clip(math.ceil(frame_fwhm) + 1, 2, 25))
    shapes = _core_shapes(image, bad, xpeak, ypeak, half_size=half, rms=rms, gain=gain)

    # Windowed centroids. subpix=1: at the window edge (4 sigma) the weight is e^-8, so
    # exact pixel overlap changes nothing but costs 5x the time.
    window_sigma = max(frame_fwhm / _FWHM_PER_SIGMA, min_window_sigma_px)
    x_win, y_win, win_flag = sep.winpos(
        image, x_iso, y_iso, np.full(x_iso.size, window_sigma), mask=bad, subpix=1
    )
    shift = np.hypot(x_win - x_iso, y_win - y_iso)
    winpos_failed = (
        (win_flag != 0)
        | ~np.isfinite(shift)
        | (shift > max(1.0, _WINPOS_MAX_SHIFT_FWHM * frame_fwhm))
    )
    x = np.where(winpos_failed, x_iso, x_win)
    y = np.where(winpos_failed, y_iso, y_win)

    # Circular apertures. Exact pixel overlap (subpix=0) because sub-percent photometry is
    # the goal and it costs about the same as SEP's default subpix=5.
    radii = np.array([k * frame_fwhm for k in radii_fwhm])
    ap_flux = np.empty((x.size, radii.size))
    ap_err = np.empty((x.size, radii.size))
    ap_flag = np.empty((x.size, radii.size), dtype=np.int32)
    for i, radius in enumerate(radii):
        ap_flux[:, i], ap_err[:, i], ap_flag[:, i] = sep.sum_circle(
            image, x, y, radius, err=rms, gain=gain, mask=bad, subpix=0
        )
    flux = ap_flux[:, main_aperture]
    flux_err = ap_err[:, main_aperture]
    main_flag = ap_flag[:, main_aperture].astype(np.int32)

    # Kron (AUTO): SExtractor's recipe on the isophotal ellipse, from the windowed centre.
    ellipse_ok = (a > 0) & (b > 0) & np.isfinite(theta)
    a_safe = np.where(ellipse_ok, a, 1.0)
    b_safe = np.where(ellipse_ok, np.minimum(b, a_safe), 1.0)
    theta_safe = np.where(ellipse_ok, np.clip(theta, -math.pi / 2, math.pi / 2), 0.0)
    kron_r, kron_flag = sep.kron_radius(
        image, x, y, a_safe, b_safe, theta_safe, _KRON_WINDOW, mask=bad
    )
    kron_ok = ellipse_ok & np.isfinite(kron_r) & (kron_r > 0)
    scale = np.maximum(kron_factor * np.where(kron_ok, kron_r, 0.0), _KRON_MIN_SCALE)
    auto_flux, auto_err, auto_flag = sep.sum_ellipse(
        image, x, y, a_safe, b_safe, theta_safe, scale, err=rms, gain=gain, mask=bad, subpix=1
    )
    if not kron_ok.all():
        # No usable ellipse: a circle of the largest aperture stands in.
        fallback = ~kron_ok
        c_flux, c_err, c_flag = sep.sum_circle(
            image, x[fallback], y[fallback], radii.max(), err=rms, gain=gain, mask=bad, subpix=1
        )
        auto_flux[fallback], auto_err[fallback], auto_flag[fallback] = c_flux, c_err, c_flag

    # Half-flux radius, normalised by the AUTO flux (as SExtractor's FLUX_RADIUS).
    norm = np.where(auto_flux > 0, auto_flux, flux)
    hfr, _ = sep.flux_radius(
        image,
        x,
        y,
        np.full(x.size, _HFR_RMAX_FWHM * frame_fwhm),
        0.5,
        normflux=norm,
        mask=bad,
        subpix=1,
    )

    flags = sep_flags | main_flag | kron_flag.astype(np.int32) | auto_flag.astype(np.int32)
    flags &= SEP_FLAGS
    flags |= np.where(saturated, FLAG_SATURATED, 0)
    # Geometry, not sep.APER_TRUNC alone: SEP truncates the aperture's pixel bounds toward
    # zero, so it misses apertures reaching up to a pixel past the low (x or y = 0) edges.
    r_main = radii[main_aperture]
    off_image = (x - r_main < -0.5) | (y - r_main < -0.5)
    off_image |= (x + r_main > nx - 0.5) | (y + r_main > ny - 0.5)
    edge = off_image | ((main_flag & sep.APER_TRUNC) != 0) | ((sep_flags & sep.OBJ_TRUNC) != 0)
    flags |= np.where(edge, FLAG_EDGE, 0).astype(np.int32)
    flags |= np.where(sep_flags & sep.OBJ_MERGED, FLAG_BLENDED, 0).astype(np.int32)
    crowding = 2.0 * radii[main_aperture]
    nn_dist = _nearest_neighbour_px(x, y, within=crowding)
    flags |= np.where(nn_dist < crowding, FLAG_CROWDED, 0)
    flags |= np.where(winpos_failed, FLAG_WINPOS_FAILED, 0)
    flags |= np.where(np.isfinite(shapes.fwhm_px), 0, FLAG_SHAPE_FAILED)
    # Sharp: a fitted FWHM under half the frame's, or (when too few pixels were bright enough
    # to fit, as for a one-pixel hit) neighbours far fainter, relative to the peak, than a
    # star's: under half of a Gaussian's mean of exp(-r^2 / 2 s^2) at r = 1 and sqrt(2).
    s2 = 2.0 * (frame_fwhm / _FWHM_PER_SIGMA) ** 2
    star_ratio = 0.5 * (math.exp(-1.0 / s2) + math.exp(-2.0 / s2))
    sharp = shapes.fwhm_px < 0.5 * frame_fwhm
    sharp |= (shapes.neighbour_ratio < 0.5 * star_ratio) & (shapes.peak_sigma >= _SHARP_MIN_SIGMA)
    flags |= np.where(sharp, FLAG_SHARP, 0)

    # Local background at the peak: the raw value minus the subtracted one.
    background = original[ypeak, xpeak].astype(np.float64) - image[ypeak, xpeak]

    keep = np.isfinite(flux) & (flux > 0.0)
    catalog = np.zeros(int(keep.sum()), dtype=catalog_dtype(len(radii_fwhm)))
    catalog["id"] = np.arange(1, catalog.size + 1)
    columns: dict[str, NDArray[Any]] = {
        "x": x,
        "y": y,
        "x_iso": x_iso,
        "y_iso": y_iso,
        "a": a,
        "b": b,
        "theta": theta,
        "npix": objects["npix"],
        "ellipticity": shapes.ellipticity,
        "fwhm_px": shapes.fwhm_px,
        "hfr_px": hfr,
        "peak": objects["peak"],
        "background": background,
        "flux": flux,
        "flux_err": flux_err,
        "flux_auto": auto_flux,
        "flux_auto_err": auto_err,
        "kron_radius": np.where(kron_ok, kron_r, np.nan),
        "snr": flux / flux_err,
        "flags": flags,
    }
    for i in range(len(radii_fwhm)):
        columns[f"flux_ap{i}"] = ap_flux[:, i]
        columns[f"flux_ap{i}_err"] = ap_err[:, i]
    for name, values in columns.items():
        catalog[name] = values[keep]

    info = BackgroundInfo(
        level_adu=detection.level_adu,
        rms_adu=rms,
        box_px=detection.box_px,
        fwhm_px=frame_fwhm,
        aperture_radii_px=tuple(float(r) for r in radii),
        main_aperture=main_aperture,
    )
    return catalog, info
