"""Variability statistics and periodograms of one light curve, as pure functions."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.timeseries import LombScargle
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "PeriodResult",
    "VariabilityStats",
    "find_period",
    "stetson_j",
    "variability_stats",
]


@dataclass(frozen=True)
class VariabilityStats:
    """Summary of a light curve's variability.

    Parameters
    ----------
    n_points : int
        Points used (finite, unflagged).
    wmean_mag : float
        Inverse-variance weighted mean magnitude (mag).
    wscatter_mag : float
        Weighted standard deviation about that mean (mag).
    expected_mag : float
        RMS of the point errors, the scatter expected of a constant star (mag).
    chi2_red : float
        Reduced chi-square against a constant at the weighted mean.
    stetson_j : float
        Stetson (1996) J index; near 0 for noise, large and positive for correlated variation.
    """

    n_points: int
    wmean_mag: float
    wscatter_mag: float
    expected_mag: float
    chi2_red: float
    stetson_j: float


def _clean(
    t: ArrayLike | None, mag: ArrayLike, err: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    m = np.asarray(mag, dtype=np.float64)
    e = np.asarray(err, dtype=np.float64)
    tt = np.arange(m.size, dtype=np.float64) if t is None else np.asarray(t, dtype=np.float64)
    ok = np.isfinite(tt) & np.isfinite(m) & np.isfinite(e) & (e > 0)
    order = np.argsort(tt[ok], kind="stable")
    return tt[ok][order], m[ok][order], e[ok][order]


def stetson_j(
    t: ArrayLike, mag: ArrayLike, err: ArrayLike, *, pair_window_d: float = 0.02
) -> float:
    """Stetson's J variability index.

    Consecutive observations closer than `pair_window_d` form pairs (``P = delta_i
    delta_j``); the others count alone (``P = delta^2 - 1``), with ``delta = sqrt(n / (n - 1))
    (m - mean) / err`` and ``J = sum(sign(P) sqrt(|P|)) / n_groups`` (Stetson 1996, PASP 108,
    851, with equal weights).

    Parameters
    ----------
    t : array_like
        Times (day).
    mag, err : array_like
        Magnitudes and errors (mag).
    pair_window_d : float, optional
        Largest separation of a pair (day).

    Returns
    -------
    float
        J; NaN for fewer than two points.
    """
    tt, m, e = _clean(t, mag, err)
    n = m.size
    if n < 2:
        return math.nan
    w = 1.0 / e**2
    mean = float(np.sum(w * m) / np.sum(w))
    delta = math.sqrt(n / (n - 1)) * (m - mean) / e
    total = 0.0
    groups = 0
    i = 0
    while i < n:
        if i + 1 < n and tt[i + 1] - tt[i] <= pair_window_d:
            p = delta[i] * delta[i + 1]
            i += 2
        else:
            p = delta[i] ** 2 - 1.0
            i += 1
        total += math.copysign(math.sqrt(abs(p)), p)
        groups += 1
    return total / groups


def variability_stats(t: ArrayLike, mag: ArrayLike, err: ArrayLike) -> VariabilityStats:
    """Weighted mean, weighted scatter, reduced chi-square and Stetson J of a light curve.

    Parameters
    ----------
    t : array_like
        Times (day); non-finite entries (and NaN magnitudes) are ignored.
    mag, err : array_like
        Magnitudes and errors (mag).

    Returns
    -------
    VariabilityStats
        The statistics (NaN where undefined: fewer than two points).
    """
    tt, m, e = _clean(t, mag, err)
    n = m.size
    if n < 2:
        nan = math.nan
        mean = float(m[0]) if n else nan
        return VariabilityStats(n, mean, nan, float(e[0]) if n else nan, nan, nan)
    w = 1.0 / e**2
    mean = float(np.sum(w * m) / np.sum(w))
    resid = m - mean
    wvar = float(np.sum(w * resid**2) / np.sum(w)) * n / (n - 1)
    chi2 = float(np.sum((resid / e) ** 2) / (n - 1))
    return VariabilityStats(
        n_points=n,
        wmean_mag=mean,
        wscatter_mag=math.sqrt(wvar),
        expected_mag=float(np.sqrt(np.mean(e**2))),
        chi2_red=chi2,
        stetson_j=stetson_j(tt, m, e),
    )


@dataclass(frozen=True)
class PeriodResult:
    """The best period of a Lomb-Scargle periodogram and the fitted amplitude.

    Parameters
    ----------
    period_d : float
        Best period (day).
    power : float
        Periodogram power at the peak (standard normalisation, 0-1).
    false_alarm : float
        False-alarm probability of the peak (Baluev 2008).
    amplitude_mag : float
        Half the peak-to-peak range of the best-fit Fourier model (mag); for a sinusoid, its
        semi-amplitude.
    epoch : float
        Time of maximum light (minimum magnitude) of the model (same scale as the input).
    nterms : int
        Fourier terms of the model.
    """

    period_d: float
    power: float
    false_alarm: float
    amplitude_mag: float
    epoch: float
    nterms: int


def find_period(
    t: ArrayLike,
    mag: ArrayLike,
    err: ArrayLike,
    *,
    min_period_d: float = 0.05,
    max_period_d: float | None = None,
    nterms: int = 1,
    samples_per_peak: int = 10,
    refine: int = 200,
) -> PeriodResult:
    """Find the best period with astropy's Lomb-Scargle periodogram.

    A coarse grid finds the peak; a grid `refine` times finer around it then locates the
    peak to a small fraction of its width, which over many cycles is what makes the period
    precise.

    Parameters
    ----------
    t : array_like
        Times (day), e.g. BJD_TDB.
    mag, err : array_like
        Magnitudes and errors (mag).
    min_period_d, max_period_d : float, optional
        Period range searched (day); the longest defaults to half the time span.
    nterms : int, optional
        Fourier terms of the periodogram and amplitude model.
    samples_per_peak : int, optional
        Coarse grid density.
    refine : int, optional
        Fine grid points across the coarse grid step on either side of the peak.

    Returns
    -------
    PeriodResult
        Best period, power, false-alarm probability and amplitude.

    Raises
    ------
    ValueError
        With fewer than ``2 * nterms + 3`` points or a time span shorter than the shortest
        period.
    """
    tt, m, e = _clean(t, mag, err)
    if m.size < 2 * nterms + 3:
        raise ValueError(f"{m.size} points are too few for a periodogram")
    span = float(tt[-1] - tt[0])
    max_p = max_period_d if max_period_d is not None else span / 2.0
    if not span > min_period_d or not max_p > min_period_d:
        raise ValueError(f"time span {span:.3g} d is too short for periods >= {min_period_d} d")
    ls = LombScargle(tt, m, e, nterms=nterms)
    freq, power = ls.autopower(
        minimum_frequency=1.0 / max_p,
        maximum_frequency=1.0 / min_period_d,
        samples_per_peak=samples_per_peak,
    )
    best = int(np.argmax(power))
    step = float(freq[1] - freq[0]) if freq.size > 1 else 1.0 / span
    fine = np.linspace(freq[best] - step, freq[best] + step, 2 * refine + 1)
    fine = fine[fine > 0]
    fine_power = ls.power(fine)
    k = int(np.argmax(fine_power))
    f_best = float(fine[k])
    phase_t = np.linspace(0.0, 1.0 / f_best, 512, endpoint=False) + tt[0]
    model = ls.model(phase_t, f_best)
    fap = float(ls.false_alarm_probability(power[best])) if nterms == 1 else math.nan
    return PeriodResult(
        period_d=1.0 / f_best,
        power=float(fine_power[k]),
        false_alarm=fap,
        amplitude_mag=0.5 * float(np.ptp(model)),
        epoch=float(phase_t[int(np.argmin(model))]),
        nterms=nterms,
    )
