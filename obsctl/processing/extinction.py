"""A night's photometric solution per filter: extinction, colour term and frame zero points.

Model, for star ``j`` on frame ``i`` of one filter (all in magnitudes)::

    reference_mag - instrumental_mag = zp_i + colour_term * colour_j          (differential)
    zp_i = zp0 - k * airmass_i                                                (all-sky)

``instrumental_mag`` is on the electrons-per-second scale of `obsctl.processing.zeropoint`,
``colour_term`` has the sign of `obsctl.processing.zeropoint.ZeroPointResult.colour_term`
(``m = m_inst + zp + colour_term * colour``), and ``k`` (mag per airmass, > 0) is the
extinction: frame zero points fall as the airmass grows. In the notation
``inst - ref = -zp0 + k * X + c * colour`` the colour coefficient is ``c = -colour_term``.

The differential solution always holds: one zero point per frame (clouds included) and one
colour term for the night. When the frame zero points lie on a straight line in airmass (the
night was photometric: their scatter about the line is small and few frames fall off it),
the all-sky solution ``zp0, k`` is fitted too; under clouds ``k`` cannot be told from the
clouds and is not given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ExtinctionFit", "FrameZeroPoints", "fit_extinction"]

_MAD_TO_SIGMA = 1.4826
_ERR_FLOOR_MAG = 1e-4  # keeps noise-free synthetic data from dividing by zero
_MAX_PAIRS = 250_000  # of frames, for the robust starting line

Mode = Literal["all-sky", "differential"]


@dataclass(frozen=True, eq=False)
class FrameZeroPoints:
    """Per-frame results of a night's fit (one filter), aligned with each other.

    Attributes
    ----------
    frame : numpy.ndarray of int64
        Frame identifiers, as given, sorted.
    airmass : numpy.ndarray of float64
        Airmass of each frame.
    zero_point, zero_point_err : numpy.ndarray of float64
        Frame zero point at colour 0 and its standard error (mag); NaN for a frame left
        with too few stars.
    residual : numpy.ndarray of float64
        ``zero_point - (zp0 - k * airmass)`` (mag): negative under clouds; NaN without an
        all-sky line.
    n_stars : numpy.ndarray of int64
        Stars of the frame used in the fit.
    used : numpy.ndarray of bool
        The frame entered the all-sky line (not clipped, e.g. as clouded).
    """

    frame: NDArray[np.int64]
    airmass: NDArray[np.float64]
    zero_point: NDArray[np.float64]
    zero_point_err: NDArray[np.float64]
    residual: NDArray[np.float64]
    n_stars: NDArray[np.int64]
    used: NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class ExtinctionFit:
    """A night's photometric solution in one filter.

    Attributes
    ----------
    mode : {"all-sky", "differential"}
        ``all-sky`` when ``zp0`` and ``k`` hold for the whole night, else ``differential``
        (frame zero points and the colour term only).
    photometric : bool
        The frame zero points follow a straight line in airmass within ``max_frame_rms``,
        with few frames clipped off it.
    zp0, zp0_err : float
        Zero point above the atmosphere, at airmass 0 and colour 0, and its error (mag);
        NaN unless all-sky.
    k, k_err : float
        Extinction coefficient and its error (mag per airmass); NaN unless all-sky.
    colour_term, colour_term_err : float
        Colour coefficient (mag per mag of colour, ``m = m_inst + zp + colour_term *
        colour``) and its error; ``colour_term_err`` is NaN when it was held fixed (no
        colours, or too small a colour range).
    colour_fitted : bool
        Whether the colour term was fitted.
    rms : float
        Root-mean-square residual of the stars used about the differential solution (mag).
    star_scatter : float
        Scatter (mag) added in quadrature to every star's error so that the residuals have
        a reduced chi-square of one.
    frame_rms : float
        Robust standard deviation of the frame zero points about the all-sky line (mag),
        every frame counted; NaN with fewer than 3 frames.
    frame_scatter : float
        Scatter (mag) added to the frame zero points' errors in the line fit.
    airmass_span : float
        Airmass range of the frames with a zero point.
    n_frames, n_frames_used, n_stars : int
        Frames with a zero point, frames on the all-sky line, star measurements used.
    reason : str
        Why the solution is differential, and why the colour term was held at 0, if so
        ("" when neither).
    frames : FrameZeroPoints
        The per-frame zero points and residuals.
    star_used : numpy.ndarray of bool
        The measurements used, aligned with the inputs.
    star_residual : numpy.ndarray of float64
        Residual of each measurement about the differential solution (mag), NaN where it
        had no value; aligned with the inputs.
    """

    mode: Mode
    photometric: bool
    zp0: float
    zp0_err: float
    k: float
    k_err: float
    colour_term: float
    colour_term_err: float
    colour_fitted: bool
    rms: float
    star_scatter: float
    frame_rms: float
    frame_scatter: float
    airmass_span: float
    n_frames: int
    n_frames_used: int
    n_stars: int
    reason: str
    frames: FrameZeroPoints
    star_used: NDArray[np.bool_]
    star_residual: NDArray[np.float64]

    def zero_point_at(self, airmass: ArrayLike) -> NDArray[np.float64]:
        """Return the all-sky zero point ``zp0 - k * airmass`` (mag; NaN unless all-sky)."""
        return np.asarray(self.zp0 - self.k * np.asarray(airmass, dtype=np.float64))


def _robust_std(values: NDArray[np.float64]) -> float:
    if values.size == 0:
        return math.nan
    return _MAD_TO_SIGMA * float(np.median(np.abs(values - np.median(values))))


def _scatter(resid: NDArray[np.float64], variance: NDArray[np.float64], dof: int) -> float:
    """Return the extra scatter s (mag) with ``sum(resid^2 / (variance + s^2)) = dof``."""
    if dof <= 0 or float(np.sum(resid**2 / variance)) <= dof:
        return 0.0
    lo, hi = 0.0, float(np.sqrt(np.mean(resid**2))) * 2.0 + 1e-6
    for _ in range(40):  # bisection: the sum falls as s grows
        mid = 0.5 * (lo + hi)
        if float(np.sum(resid**2 / (variance + mid * mid))) > dof:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class _Differential:
    zp: NDArray[np.float64]  # per frame index
    zp_var: NDArray[np.float64]
    colour_term: float
    colour_var: float
    resid: NDArray[np.float64]  # per star
    used: NDArray[np.bool_]
    scatter: float
    n_per_frame: NDArray[np.int64]


def _solve_differential(
    idx: NDArray[np.intp],
    n_frames: int,
    y: NDArray[np.float64],
    variance: NDArray[np.float64],
    colour: NDArray[np.float64],
    used: NDArray[np.bool_],
    scatter: float,
    fixed_colour: float | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], float, float, NDArray[np.int64]]:
    """Weighted least squares of ``y = zp[idx] + c * colour`` over the used stars.

    The frame zero points are profiled out (per-frame weighted means), so the cost is linear
    in the number of stars however many frames there are.
    """
    w = np.where(used, 1.0 / (variance + scatter**2), 0.0)
    wsum = np.bincount(idx, w, n_frames)
    count = np.bincount(idx, used.astype(np.float64), n_frames).astype(np.int64)
    safe = np.where(wsum > 0, wsum, 1.0)
    ybar = np.bincount(idx, w * y, n_frames) / safe
    cbar = np.bincount(idx, w * colour, n_frames) / safe
    if fixed_colour is None:
        dc = colour - cbar[idx]
        sxx = float(np.sum(w * dc * dc))
        c = float(np.sum(w * dc * (y - ybar[idx])) / sxx) if sxx > 0 else 0.0
        c_var = 1.0 / sxx if sxx > 0 else math.inf
    else:
        c, c_var = fixed_colour, 0.0
    zp = np.where(wsum > 0, ybar - c * cbar, np.nan)
    zp_var = np.where(wsum > 0, 1.0 / safe + cbar**2 * c_var, np.nan)
    return zp, zp_var, c, c_var, count


def _differential(
    idx: NDArray[np.intp],
    n_frames: int,
    y: NDArray[np.float64],
    variance: NDArray[np.float64],
    colour: NDArray[np.float64],
    valid: NDArray[np.bool_],
    fixed_colour: float | None,
    *,
    clip_sigma: float,
    max_iterations: int,
    min_stars_per_frame: int,
) -> _Differential:
    used = valid.copy()
    scatter = 0.0
    n_params = 1 if fixed_colour is None else 0  # the colour term, when fitted
    for _ in range(max_iterations):
        zp, _, c, _, count = _solve_differential(
            idx, n_frames, y, variance, colour, used, scatter, fixed_colour
        )
        # A frame left with too few stars has no zero point: its stars leave the fit.
        used &= count[idx] >= min_stars_per_frame
        resid = y - np.nan_to_num(zp)[idx] - c * colour
        dof = int(np.count_nonzero(used)) - int(np.count_nonzero(count >= min_stars_per_frame))
        scatter = _scatter(resid[used], variance[used], dof - n_params)
        z = resid / np.sqrt(variance + scatter**2)
        spread = max(_robust_std(z[used]), 1e-6) if used.any() else 1.0
        keep = valid & (np.abs(z) <= clip_sigma * max(spread, 1.0))
        keep &= np.bincount(idx, keep.astype(np.float64), n_frames)[idx] >= min_stars_per_frame
        if np.array_equal(keep, used) or not keep.any():
            break
        used = keep
    zp, zp_var, c, c_var, count = _solve_differential(
        idx, n_frames, y, variance, colour, used, scatter, fixed_colour
    )
    zp = np.where(count >= min_stars_per_frame, zp, np.nan)
    resid = np.where(valid, y - np.nan_to_num(zp)[idx] - c * colour, np.nan)
    return _Differential(zp, zp_var, c, c_var, resid, used, scatter, count)


def _theil_sen(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[float, float]:
    """Return a robust ``(intercept, slope)``: the median of the pairwise slopes.

    Beyond about 700 points a fixed random sample of 250 000 pairs stands for all of them
    (memory grows with the square of the points; the median hardly changes).
    """
    if x.size * (x.size - 1) // 2 <= _MAX_PAIRS:
        i, j = np.triu_indices(x.size, 1)
    else:
        rng = np.random.default_rng(0)
        i, j = rng.integers(0, x.size, (2, _MAX_PAIRS))
    dx = x[j] - x[i]
    ok = np.abs(dx) > 1e-9
    slope = float(np.median((y[j] - y[i])[ok] / dx[ok])) if ok.any() else 0.0
    return float(np.median(y - slope * x)), slope


def _line(
    x: NDArray[np.float64], y: NDArray[np.float64], variance: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Weighted straight line ``y = a + b x``: the coefficients and their covariance."""
    design = np.column_stack([np.ones_like(x), x])
    w = 1.0 / variance
    normal = (design * w[:, None]).T @ design
    covariance = np.asarray(np.linalg.inv(normal), dtype=np.float64)
    return covariance @ (design * w[:, None]).T @ y, covariance


def fit_extinction(
    frame: ArrayLike,
    airmass: ArrayLike,
    instrumental_mag: ArrayLike,
    instrumental_err: ArrayLike,
    reference_mag: ArrayLike,
    *,
    reference_err: ArrayLike | None = None,
    colour: ArrayLike | None = None,
    colour_term: float | None = None,
    clip_sigma: float = 3.0,
    max_iterations: int = 10,
    min_stars_per_frame: int = 3,
    min_colour_stars: int = 10,
    min_colour_span: float = 0.3,
    min_frames: int = 3,
    min_airmass_span: float = 0.3,
    max_frame_rms: float = 0.02,
    max_clipped_fraction: float = 0.2,
) -> ExtinctionFit:
    """Fit a night's frame zero points, colour term and extinction in one filter.

    One row per star measurement. First the differential solution: a zero point per frame
    and one colour term, by weighted least squares with weights ``1 / (err^2 + s^2)`` (``s``
    brings the reduced chi-square to one) and sigma clipping of the stars. Then the frame
    zero points against airmass: a Theil-Sen line to start (robust to a third of the frames
    clouded), then weighted fits with clipping at `clip_sigma` robust deviations. The night
    is photometric when the frames' robust scatter about that line is at most
    `max_frame_rms` and at most `max_clipped_fraction` of them were clipped; the all-sky
    solution needs, besides, `min_frames` frames spanning `min_airmass_span` in airmass.

    Parameters
    ----------
    frame : array_like of int
        Frame identifier of each measurement (e.g. the exposure id).
    airmass : array_like
        Airmass of each measurement's frame (one value per frame).
    instrumental_mag, instrumental_err : array_like
        Instrumental magnitudes and errors (mag, electrons-per-second scale).
    reference_mag : array_like
        Catalog magnitudes (mag), NaN where unknown.
    reference_err : array_like, optional
        Catalog magnitude errors (mag); NaN counts as zero.
    colour : array_like, optional
        Catalog colour index of each star (mag), e.g. B-V; NaN where unknown.
    colour_term : float, optional
        Hold the colour term at this value (mag per mag) rather than fit it.
    clip_sigma : float, optional
        Rejection threshold (robust standard deviations), for stars and for frames.
    max_iterations : int, optional
        Fit-and-clip iterations at most, for stars and for frames.
    min_stars_per_frame : int, optional
        A frame with fewer usable stars gets no zero point.
    min_colour_stars : int, optional
        Fewest stars with a colour for the colour term to be fitted.
    min_colour_span : float, optional
        Smallest colour range (mag, 5th to 95th percentile) for the colour term to be
        fitted; below it the term is held at `colour_term` or 0.
    min_frames : int, optional
        Fewest frames for an all-sky solution.
    min_airmass_span : float, optional
        Smallest airmass range for an all-sky solution.
    max_frame_rms : float, optional
        Largest robust scatter (mag) of frame zero points about the line on a
        photometric night.
    max_clipped_fraction : float, optional
        Largest fraction of frames off the line (clouded) on a photometric night.

    Returns
    -------
    ExtinctionFit
        The solution, the per-frame zero points and the stars used.

    Raises
    ------
    ValueError
        If the arrays differ in length, or no frame has `min_stars_per_frame` usable stars.
    """
    fid = np.asarray(frame).ravel().astype(np.int64)
    am = np.asarray(airmass, dtype=np.float64).ravel()
    inst = np.asarray(instrumental_mag, dtype=np.float64).ravel()
    ierr = np.asarray(instrumental_err, dtype=np.float64).ravel()
    ref = np.asarray(reference_mag, dtype=np.float64).ravel()
    rerr = (
        np.zeros_like(ref)
        if reference_err is None
        else np.nan_to_num(np.asarray(reference_err, dtype=np.float64).ravel())
    )
    col = (
        np.full(ref.shape, np.nan)
        if colour is None
        else np.asarray(colour, dtype=np.float64).ravel()
    )
    if not fid.size == am.size == inst.size == ierr.size == ref.size == rerr.size == col.size:
        raise ValueError("frame, airmass, magnitudes, errors and colour lengths differ")
    frames, idx = np.unique(fid, return_inverse=True)
    n_frames = frames.size
    y = ref - inst
    variance = np.maximum(ierr**2 + rerr**2, _ERR_FLOOR_MAG**2)
    valid = np.isfinite(y) & np.isfinite(variance) & np.isfinite(am)

    # Fit the colour term only with enough stars over enough colour; else hold it.
    has_colour = valid & np.isfinite(col)
    span = float(np.subtract(*np.percentile(col[has_colour], [95, 5]))) if has_colour.any() else 0.0
    fixed = colour_term
    why_fixed = ""
    too_few = np.count_nonzero(has_colour) < min_colour_stars
    if fixed is None and (too_few or span < min_colour_span):
        fixed = 0.0
        why_fixed = (
            f"colour term held at 0: {np.count_nonzero(has_colour)} stars with colours "
            f"spanning {span:.2f} mag"
        )
    if fixed is None or fixed != 0.0:
        valid &= np.isfinite(col)  # the colour enters the model: it must be known
    colour_used = np.where(np.isfinite(col), col, 0.0)

    diff = _differential(
        idx,
        n_frames,
        np.where(valid, y, 0.0),
        np.where(valid, variance, 1.0),
        colour_used,
        valid,
        fixed,
        clip_sigma=clip_sigma,
        max_iterations=max_iterations,
        min_stars_per_frame=min_stars_per_frame,
    )
    has_zp = np.isfinite(diff.zp)
    if not has_zp.any():
        raise ValueError(
            f"no frame has {min_stars_per_frame} usable stars ({np.count_nonzero(valid)} "
            "measurements usable)"
        )
    frame_airmass = np.full(n_frames, np.nan)
    frame_airmass[idx] = am  # one airmass per frame
    resid_used = diff.resid[diff.used]
    rms = float(np.sqrt(np.mean(resid_used**2))) if resid_used.size else math.nan

    # The frame zero points against airmass.
    x, z, zvar = frame_airmass[has_zp], diff.zp[has_zp], diff.zp_var[has_zp]
    n_zp = int(np.count_nonzero(has_zp))
    airmass_span = float(np.ptp(x)) if n_zp else 0.0
    coeffs = np.array([math.nan, math.nan])
    covariance = np.full((2, 2), math.nan)
    frame_resid = np.full(n_zp, np.nan)
    line_used = np.zeros(n_zp, dtype=bool)
    frame_scatter = 0.0
    frame_rms = math.nan
    if n_zp >= 3 and airmass_span > 1e-6:
        intercept, slope = _theil_sen(x, z)
        frame_resid = z - intercept - slope * x
        spread = max(_robust_std(frame_resid), 1e-4)
        line_used = np.abs(frame_resid) <= clip_sigma * spread
        for _ in range(max_iterations):
            if np.count_nonzero(line_used) < 3:
                break
            var = zvar[line_used] + frame_scatter**2
            coeffs, covariance = _line(x[line_used], z[line_used], var)
            frame_resid = z - coeffs[0] - coeffs[1] * x
            frame_scatter = _scatter(
                frame_resid[line_used], zvar[line_used], int(np.count_nonzero(line_used)) - 2
            )
            norm = frame_resid / np.sqrt(zvar + frame_scatter**2)
            spread = max(_robust_std(norm[line_used]), 1.0)
            keep = np.abs(norm) <= clip_sigma * spread
            if np.array_equal(keep, line_used):
                break
            line_used = keep
        if np.count_nonzero(line_used) >= 3:
            var = zvar[line_used] + frame_scatter**2
            coeffs, covariance = _line(x[line_used], z[line_used], var)
            frame_resid = z - coeffs[0] - coeffs[1] * x
        frame_rms = _robust_std(frame_resid)
    elif n_zp >= 3:  # one airmass: no line, but the sky is judged by the scatter all the same
        spread = max(_robust_std(z), 1e-4)
        line_used = np.abs(z - np.median(z)) <= clip_sigma * spread
        frame_rms = _robust_std(z)

    clipped = 1.0 - np.count_nonzero(line_used) / n_zp if n_zp else 1.0
    photometric = (
        n_zp >= 3
        and np.count_nonzero(line_used) >= 3
        and frame_rms <= max_frame_rms
        and clipped <= max_clipped_fraction
    )
    reasons: list[str] = []
    if n_zp < min_frames:
        reasons.append(f"{n_zp} frames, an all-sky solution needs {min_frames}")
    elif not photometric:
        reasons.append(
            f"not photometric: frame zero points scatter {frame_rms:.3f} mag about the "
            f"airmass line ({max_frame_rms} allowed), {clipped:.0%} of frames off it"
        )
    if n_zp >= min_frames and airmass_span < min_airmass_span:
        reasons.append(
            f"airmass spans {airmass_span:.2f}, {min_airmass_span} needed to fit extinction"
        )
    mode: Mode = "differential" if reasons else "all-sky"
    all_sky = mode == "all-sky"

    zp_full = diff.zp
    residual = np.full(n_frames, np.nan)
    used_full = np.zeros(n_frames, dtype=bool)
    if all_sky:
        residual[has_zp] = frame_resid
        used_full[has_zp] = line_used
    fitted = fixed is None
    return ExtinctionFit(
        mode=mode,
        photometric=bool(photometric),
        zp0=float(coeffs[0]) if all_sky else math.nan,
        zp0_err=float(math.sqrt(covariance[0, 0])) if all_sky else math.nan,
        k=-float(coeffs[1]) if all_sky else math.nan,
        k_err=float(math.sqrt(covariance[1, 1])) if all_sky else math.nan,
        colour_term=float(diff.colour_term),
        colour_term_err=float(math.sqrt(diff.colour_var)) if fitted else math.nan,
        colour_fitted=fitted,
        rms=rms,
        star_scatter=float(diff.scatter),
        frame_rms=float(frame_rms),
        frame_scatter=float(frame_scatter),
        airmass_span=airmass_span,
        n_frames=n_zp,
        n_frames_used=int(np.count_nonzero(used_full)),
        n_stars=int(np.count_nonzero(diff.used)),
        reason="; ".join(r for r in (*reasons, why_fixed) if r),
        frames=FrameZeroPoints(
            frame=frames.astype(np.int64),
            airmass=frame_airmass,
            zero_point=zp_full,
            zero_point_err=np.sqrt(diff.zp_var),
            residual=residual,
            n_stars=diff.n_per_frame,
            used=used_full,
        ),
        star_used=diff.used,
        star_residual=diff.resid,
    )
