"""Photometric calibration: a frame's zero point from reference stars, calibrated magnitudes.

Magnitudes here are on the electrons-per-second scale::

    m_inst = -2.5 log10(flux * gain / exposure_s)     (flux in ADU, gain in e-/ADU)
    m      = m_inst + zero_point [+ colour_term * colour]

so the zero point is the magnitude of a source giving 1 electron per second in the chosen
aperture. In electrons rather than ADU it does not change with the camera's gain setting, so
its trend over a night follows the sky's transparency (clouds, extinction) alone. It is an
aperture zero point: the PSF wings outside the aperture are part of it, so it is only
comparable between frames measured with the same aperture in units of the FWHM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ZeroPointResult",
    "calibrated_magnitudes",
    "fit_zero_point",
    "instrumental_magnitudes",
    "transparency",
]

_MAG_PER_LN = 2.5 / math.log(10.0)  # 1.0857: d(mag) = 1.0857 d(flux) / flux
_MAD_TO_SIGMA = 1.4826
_ERR_FLOOR_MAG = 1e-4  # keeps noise-free synthetic data from dividing by zero


@dataclass(frozen=True, eq=False)
class ZeroPointResult:
    """A fitted zero point.

    Attributes
    ----------
    zero_point : float
        Zero point (mag), at colour 0 when a colour term was fitted.
    error : float
        Its standard error (mag), from the weights including `intrinsic_scatter`.
    colour_term : float
        Colour coefficient (mag per mag of colour); the value held when not fitted.
    n_used : int
        Stars left after clipping.
    rms : float
        Root-mean-square residual of the stars used (mag).
    mask : numpy.ndarray of bool
        True for the stars used, aligned with the inputs.
    colour_term_err : float
        Standard error of `colour_term` (mag per mag); 0 when not fitted (held).
    intrinsic_scatter : float
        Scatter (mag) added in quadrature to every star's error so that the normalised
        residuals have unit (robust) spread: reference-catalog errors not given, colour
        mismatch, flat-field residuals. 0 when the given errors explain the scatter.
    """

    zero_point: float
    error: float
    colour_term: float
    n_used: int
    rms: float
    mask: NDArray[np.bool_]
    colour_term_err: float = 0.0
    intrinsic_scatter: float = 0.0


def transparency(zero_point: float, reference: float) -> float:
    """Return the fraction of a clear sky's light that a frame received.

    Parameters
    ----------
    zero_point : float
        The frame's zero point (mag, e-/s).
    reference : float
        The clear-sky zero point of the same filter and aperture (mag, e-/s).

    Returns
    -------
    float
        ``10**(-0.4 * (reference - zero_point))``: 1 under a clear sky, 0.5 when clouds
        take half the light (0.75 mag); above 1 when the frame beats the reference.
    """
    return float(10.0 ** (-0.4 * (reference - zero_point)))


def instrumental_magnitudes(
    flux: ArrayLike,
    flux_err: ArrayLike,
    exposure_s: float,
    *,
    gain_e_per_adu: float = 1.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Convert fluxes to instrumental magnitudes on the electrons-per-second scale.

    Parameters
    ----------
    flux, flux_err : array_like
        Flux and its error (ADU; electrons with ``gain_e_per_adu=1``).
    exposure_s : float
        Exposure time (s), > 0.
    gain_e_per_adu : float, optional
        Conversion gain (electrons per ADU).

    Returns
    -------
    mag, mag_err : numpy.ndarray of float64
        ``-2.5 log10(flux * gain / exposure_s)`` and ``1.0857 * flux_err / flux`` (mag);
        NaN where the flux is not positive.

    Raises
    ------
    ValueError
        If `exposure_s` or `gain_e_per_adu` is not positive.
    """
    if not exposure_s > 0.0 or not gain_e_per_adu > 0.0:
        raise ValueError("exposure_s and gain_e_per_adu must be positive")
    f = np.asarray(flux, dtype=np.float64)
    e = np.asarray(flux_err, dtype=np.float64)
    positive = np.isfinite(f) & (f > 0.0)
    safe = np.where(positive, f, 1.0)
    mag = np.where(positive, -2.5 * np.log10(safe * gain_e_per_adu / exposure_s), np.nan)
    err = np.where(positive, _MAG_PER_LN * e / safe, np.nan)
    return mag, err


def calibrated_magnitudes(
    flux: ArrayLike,
    flux_err: ArrayLike,
    exposure_s: float,
    zero_point: float,
    zp_err: float = 0.0,
    *,
    gain_e_per_adu: float = 1.0,
    colour: ArrayLike | None = None,
    colour_term: float = 0.0,
    default_colour: float = 0.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return calibrated magnitudes and their errors.

    Parameters
    ----------
    flux, flux_err : array_like
        Flux and its error (ADU; electrons with ``gain_e_per_adu=1``), measured in the
        aperture the zero point was fitted with.
    exposure_s : float
        Exposure time (s).
    zero_point, zp_err : float
        Zero point and its error (mag), see `fit_zero_point`.
    gain_e_per_adu : float, optional
        Conversion gain (electrons per ADU).
    colour : array_like, optional
        Colour index of each source (mag); NaN where unknown.
    colour_term : float, optional
        Colour coefficient (mag per mag).
    default_colour : float, optional
        Colour used where `colour` is NaN or not given, e.g. the median colour of the
        calibration stars (then the frame's typical star is calibrated without bias).

    Returns
    -------
    mag, mag_err : numpy.ndarray of float64
        ``m_inst + zero_point + colour_term * colour`` (mag) and the quadrature sum of the
        measurement error and `zp_err` (mag); NaN where the flux is not positive.
    """
    mag, err = instrumental_magnitudes(flux, flux_err, exposure_s, gain_e_per_adu=gain_e_per_adu)
    mag = mag + zero_point
    if colour_term != 0.0:
        c = np.full(mag.shape, default_colour) if colour is None else np.asarray(colour, float)
        mag = mag + colour_term * np.where(np.isfinite(c), c, default_colour)
    total_err: NDArray[np.float64] = np.hypot(err, zp_err)
    return mag, total_err


def _robust_std(values: NDArray[np.float64]) -> float:
    centre = float(np.median(values))
    return _MAD_TO_SIGMA * float(np.median(np.abs(values - centre)))


def _weighted_fit(
    y: NDArray[np.float64], design: NDArray[np.float64], weights: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Weighted linear least squares: the coefficients and their covariance."""
    root = np.sqrt(weights)
    normal = (design * weights[:, None]).T @ design
    covariance = np.asarray(np.linalg.inv(normal), dtype=np.float64)
    solution = np.linalg.lstsq(design * root[:, None], y * root, rcond=None)[0]
    return np.asarray(solution, dtype=np.float64), covariance


def _intrinsic_scatter(resid: NDArray[np.float64], variance: NDArray[np.float64]) -> float:
    """Return the extra scatter (mag) that brings the robust spread of resid/sigma to one."""
    if _robust_std(resid / np.sqrt(variance)) <= 1.0:
        return 0.0
    lo, hi = 0.0, 2.0 * max(_robust_std(resid), float(np.sqrt(variance.max())))
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if _robust_std(resid / np.sqrt(variance + mid * mid)) > 1.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def fit_zero_point(
    instrumental_mag: ArrayLike,
    instrumental_err: ArrayLike,
    reference_mag: ArrayLike,
    *,
    reference_err: ArrayLike | None = None,
    colour: ArrayLike | None = None,
    fit_colour_term: bool = False,
    colour_term: float = 0.0,
    clip_sigma: float = 3.0,
    max_iterations: int = 10,
    min_stars: int = 3,
) -> ZeroPointResult:
    """Fit a frame's zero point to matched reference stars, rejecting outliers.

    Model: ``reference_mag = instrumental_mag + zero_point + colour_term * colour``, the
    colour term fitted or held at a known value (e.g. the night's, `obsctl.processing.
    extinction`).
    Each iteration fits by weighted least squares with weights ``1 / (instrumental_err^2 +
    reference_err^2 + s^2)``, where the intrinsic scatter ``s`` is chosen so that the
    normalised residuals have a robust (MAD) standard deviation of one, and then rejects
    stars whose normalised residual exceeds `clip_sigma` times that robust spread. Variable
    stars, blends and mismatches are clipped; a bright star with a tiny error cannot pull
    the fit.

    Parameters
    ----------
    instrumental_mag, instrumental_err : array_like
        Instrumental magnitudes and errors (mag), see `instrumental_magnitudes`.
    reference_mag : array_like
        Catalog magnitudes (mag), NaN where unmatched.
    reference_err : array_like, optional
        Catalog magnitude errors (mag); NaN counts as unknown (zero, the intrinsic scatter
        takes it up).
    colour : array_like, optional
        Catalog colour index (mag), needed when `fit_colour_term` is True.
    fit_colour_term : bool, optional
        Also fit a linear colour term.
    colour_term : float, optional
        Without `fit_colour_term`, the colour term (mag per mag) to hold; with a non-zero
        value `colour` is needed and stars without a colour are not used.
    clip_sigma : float, optional
        Rejection threshold (robust standard deviations).
    max_iterations : int, optional
        Fit-and-clip iterations at most.
    min_stars : int, optional
        Fewest usable stars accepted (at least 2, 3 with a colour term).

    Returns
    -------
    ZeroPointResult
        The zero point, its error, the colour term, the stars used and the residual rms.

    Raises
    ------
    ValueError
        If the arrays differ in length, a colour term is asked for without colours, or
        fewer than `min_stars` stars have finite values.
    """
    inst = np.asarray(instrumental_mag, dtype=np.float64).ravel()
    ierr = np.asarray(instrumental_err, dtype=np.float64).ravel()
    ref = np.asarray(reference_mag, dtype=np.float64).ravel()
    rerr = (
        np.zeros_like(ref)
        if reference_err is None
        else np.asarray(reference_err, dtype=np.float64).ravel()
    )
    if not inst.size == ierr.size == ref.size == rerr.size:
        raise ValueError("instrumental_mag, instrumental_err, reference_mag(_err) lengths differ")
    held = 0.0 if fit_colour_term else float(colour_term)
    if (fit_colour_term or held != 0.0) and colour is None:
        raise ValueError("a colour term needs the reference stars' colour")
    n_params = 2 if fit_colour_term else 1
    design = np.ones((inst.size, n_params))
    valid = np.isfinite(inst) & np.isfinite(ierr) & np.isfinite(ref)
    col = np.zeros_like(inst)
    if fit_colour_term or held != 0.0:
        col = np.asarray(colour, dtype=np.float64).ravel()
        if col.size != inst.size:
            raise ValueError("colour must have one entry per star")
        valid &= np.isfinite(col)
    if fit_colour_term:
        design[:, 1] = col
    needed = max(min_stars, n_params + 1)
    if np.count_nonzero(valid) < needed:
        raise ValueError(
            f"only {np.count_nonzero(valid)} usable reference stars, need at least {needed}"
        )
    delta = np.where(valid, ref - inst - held * col, 0.0)
    design = np.where(valid[:, None], design, 0.0)
    variance = np.where(valid, ierr**2 + np.nan_to_num(rerr) ** 2, 1.0)
    variance = np.maximum(variance, _ERR_FLOOR_MAG**2)

    used = valid.copy()
    scatter = 0.0
    for _ in range(max_iterations):
        coeffs, _ = _weighted_fit(delta[used], design[used], 1.0 / (variance[used] + scatter**2))
        resid = delta - design @ coeffs
        scatter = _intrinsic_scatter(resid[used], variance[used])
        z = resid / np.sqrt(variance + scatter**2)
        spread = max(_robust_std(z[used]), 1e-6)
        keep = valid & (np.abs(z) <= clip_sigma * spread)
        if np.count_nonzero(keep) < needed or np.array_equal(keep, used):
            break
        used = keep

    weights = 1.0 / (variance[used] + scatter**2)
    coeffs, covariance = _weighted_fit(delta[used], design[used], weights)
    resid = delta[used] - design[used] @ coeffs
    return ZeroPointResult(
        zero_point=float(coeffs[0]),
        error=float(math.sqrt(covariance[0, 0])),
        colour_term=float(coeffs[1]) if fit_colour_term else held,
        n_used=int(np.count_nonzero(used)),
        rms=float(np.sqrt(np.mean(resid**2))),
        mask=used,
        colour_term_err=float(math.sqrt(covariance[1, 1])) if fit_colour_term else 0.0,
        intrinsic_scatter=float(scatter),
    )
