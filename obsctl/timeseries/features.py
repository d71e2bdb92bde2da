"""Light-curve features for the variable-star classifier, as pure numpy functions.

`light_curve_features` turns one light curve (times, magnitudes, errors) and the result of a
period search into a fixed-length float32 vector, in `FEATURE_NAMES` order; the classifier
(`obsctl.timeseries.classifier`) was trained on exactly these. The period result is duck-
typed: any object with ``period_d``, ``false_alarm``, ``amplitude_mag``, ``method``,
``nterms`` and ``power`` (`obsctl.timeseries.periods.search_period`'s result, or
`obsctl.timeseries.stats.find_period`'s), or None when no search could be run (too few points,
too short a span). `search_light_curve_period` runs the search the shipped model was trained
with.

A feature that cannot be computed (no period, too few points for a Fourier fit, no night
with two points) takes the value `MISSING` (-10), below every feature's real range, so a
tree model learns "missing" as a branch of its own and no mask is needed.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from obsctl.timeseries.periods import PeriodSearchError, PeriodSearchResult, search_period
from obsctl.timeseries.stats import variability_stats

__all__ = [
    "FEATURE_NAMES",
    "MIN_POINTS",
    "MIN_SEARCH_PERIOD_D",
    "MISSING",
    "N_FEATURES",
    "SEARCH_OPTIONS",
    "PeriodLike",
    "curve_features",
    "light_curve_features",
    "period_search_name",
    "search_light_curve_period",
]

log = logging.getLogger(__name__)

#: The value of a feature that cannot be computed; every real value is above it.
MISSING = -10.0
#: Fewest finite points for any feature (fewer give a row of `MISSING`).
MIN_POINTS = 5
#: Shortest period searched (day): the shortest delta Scuti periods are ~0.02-0.03 d.
MIN_SEARCH_PERIOD_D = 0.02
#: Options `search_light_curve_period` gives `obsctl.timeseries.periods.search_period`
#: (the model card records them; a model is only valid with the search it was trained on).
SEARCH_OPTIONS: dict[str, Any] = {
    "samples_per_peak": 3.0,
    "multi_nterms": (2,),
    "bls_bootstrap": 0,
}
# Fourier harmonics of the shape decomposition (R21, R31, phi21, phi31): four, as in the
# OGLE and ASAS-SN variable-star classifiers (e.g. Jayasinghe et al. 2019, MNRAS 486, 1907).
_N_HARMONICS = 4
# Phase bins of the folded curve for the eclipse-minimum ratio.
_FOLD_BINS = 20
# Box widths (fraction of the period) of the dip search.
_BOX_WIDTHS = (0.02, 0.05, 0.1)
# A point this many sigmas (the larger of its error and the curve's robust scatter) off the
# median is an outlier for the outlier fractions.
_OUTLIER_SIGMA = 3.0

#: Feature names, in the vector's order; units and meaning in `light_curve_features`.
FEATURE_NAMES: tuple[str, ...] = (
    "log10_period_d",
    "log10_false_alarm",
    "log10_amplitude_mag",
    "period_power",
    "method_bls",
    "nterms",
    "r21",
    "r31",
    "phi21",
    "phi31",
    "fourier_r2",
    "rise_fraction",
    "log10_robust_range_mag",
    "skewness",
    "kurtosis",
    "stetson_j",
    "log10_chi2_red",
    "beyond_1std",
    "log10_mad_ratio",
    "eta",
    "log10_dip_snr",
    "eclipse_ratio",
    "eclipse_ratio_2p",
    "log10_period_over_baseline",
    "trend_mag",
    "bright_outlier_fraction",
    "bright_outlier_runs",
    "faint_outlier_fraction",
    "log10_intranight_ratio",
    "log10_n_points",
    "log10_baseline_d",
    "log10_median_err_mag",
)
#: Length of the feature vector.
N_FEATURES = len(FEATURE_NAMES)


class PeriodLike(Protocol):
    """What the features read of a period search's result."""

    @property
    def period_d(self) -> float:
        """Period (day)."""

    @property
    def false_alarm(self) -> float:
        """False-alarm probability of the period (0-1, NaN if unknown)."""

    @property
    def amplitude_mag(self) -> float:
        """Half the peak-to-peak range of the period's model (mag)."""

    @property
    def power(self) -> float:
        """Periodogram power or variance fraction explained (0-1)."""

    @property
    def nterms(self) -> int:
        """Harmonics of the model (0 for a box)."""


def _log10(x: float) -> float:
    return math.log10(x) if x > 0.0 and math.isfinite(x) else MISSING


def _fourier(
    t: NDArray[np.float64], m: NDArray[np.float64], e: NDArray[np.float64], period_d: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], float] | None:
    """Weighted least-squares Fourier series at a period.

    Returns the amplitudes ``A_k`` and phases ``phi_k`` of ``m = c + sum A_k sin(k w t +
    phi_k)`` and the fraction of the weighted variance the model explains; None with too few
    points for the harmonics.
    """
    k = np.arange(1, _N_HARMONICS + 1)
    if t.size < 2 * _N_HARMONICS + 3:
        return None
    x = 2.0 * math.pi * np.multiply.outer((t - t[0]) / period_d, k)
    design = np.hstack([np.ones((t.size, 1)), np.sin(x), np.cos(x)])
    w = 1.0 / e
    coef, *_ = np.linalg.lstsq(design * w[:, None], m * w, rcond=None)
    a, b = coef[1 : _N_HARMONICS + 1], coef[_N_HARMONICS + 1 :]
    resid = m - design @ coef
    mean = float(np.sum(m / e**2) / np.sum(1.0 / e**2))
    chi2_const = float(np.sum(((m - mean) / e) ** 2))
    r2 = 1.0 - float(np.sum((resid / e) ** 2)) / chi2_const if chi2_const > 0 else 0.0
    return np.hypot(a, b), np.arctan2(b, a), r2


def _fold_levels(phase: NDArray[np.float64], m: NDArray[np.float64]) -> NDArray[np.float64]:
    """Median magnitude in `_FOLD_BINS` phase bins (NaN for an empty bin)."""
    idx = np.minimum((phase * _FOLD_BINS).astype(np.int64), _FOLD_BINS - 1)
    out = np.full(_FOLD_BINS, np.nan)
    for b in np.unique(idx):
        out[b] = float(np.median(m[idx == b]))
    return out


def _eclipse_ratio(t: NDArray[np.float64], m: NDArray[np.float64], period_d: float) -> float:
    """Depth of the minimum half a phase from the deepest, over the deepest's (0-1).

    Depths are measured from the brightest bin of the folded curve; 1 is two equal minima
    (a contact binary, or a pulsator folded at twice its period), near 0 one minimum only.
    """
    levels = _fold_levels(np.mod((t - t[0]) / period_d, 1.0), m)
    if np.sum(np.isfinite(levels)) < _FOLD_BINS // 2:
        return MISSING
    deep = int(np.nanargmax(levels))
    top = float(np.nanmin(levels))
    depth = float(levels[deep]) - top
    # The opposite minimum: the faintest of the three bins around half a phase away, which
    # tolerates an eccentric orbit's slight shift and an empty bin.
    around = [(deep + _FOLD_BINS // 2 + d) % _FOLD_BINS for d in (-1, 0, 1)]
    opposite = levels[around]
    if depth <= 0.0 or not np.any(np.isfinite(opposite)):
        return MISSING
    return float(np.clip((float(np.nanmax(opposite)) - top) / depth, 0.0, 1.0))


def _dip_snr(
    t: NDArray[np.float64], m: NDArray[np.float64], period_d: float, sigma: float
) -> float:
    """Best box dip in the folded curve: depth over its error, ``d / (sigma / sqrt(n_in))``."""
    phase = np.mod((t - t[0]) / period_d, 1.0)
    order = np.argsort(phase)
    ph, mm = phase[order], m[order]
    ph2 = np.concatenate([ph, ph + 1.0])  # wrap so a box may straddle phase 0
    cs = np.concatenate([[0.0], np.cumsum(np.concatenate([mm, mm]))])
    total, n = float(mm.sum()), mm.size
    best = 0.0
    for width in _BOX_WIDTHS:
        end = np.searchsorted(ph2, ph + width, side="left")
        start = np.arange(n)
        n_in = end - start
        ok = (n_in >= 2) & (n_in <= n - 2)
        if not np.any(ok):
            continue
        s_in = cs[end[ok]] - cs[start[ok]]
        mean_in = s_in / n_in[ok]
        mean_out = (total - s_in) / (n - n_in[ok])
        snr = (mean_in - mean_out) / (sigma / np.sqrt(n_in[ok]))
        best = max(best, float(snr.max()))
    return best


def _rise_fraction(amplitudes: NDArray[np.float64], phases: NDArray[np.float64]) -> float:
    """Fraction of the cycle from minimum to maximum light of the Fourier model (0-1)."""
    x = np.linspace(0.0, 1.0, 200, endpoint=False)
    k = np.arange(1, amplitudes.size + 1)
    model = np.sin(2.0 * math.pi * np.multiply.outer(x, k) + phases) @ amplitudes
    faint, bright = x[int(np.argmax(model))], x[int(np.argmin(model))]
    return float(np.mod(bright - faint, 1.0))


def light_curve_features(
    t: ArrayLike, mag: ArrayLike, err: ArrayLike, period: PeriodLike | Any | None
) -> NDArray[np.float32]:
    """Compute the classifier's feature vector of one light curve.

    Parameters
    ----------
    t : array_like
        Times (day), e.g. MJD.
    mag, err : array_like
        Magnitudes and their errors (mag); points with a non-finite value or a non-positive
        error are dropped.
    period : object or None
        The period search's result (see `PeriodLike`; ``method`` is read if present), or None.

    Returns
    -------
    numpy.ndarray of float32
        ``[N_FEATURES]``, in `FEATURE_NAMES` order, `MISSING` where undefined:

        - ``log10_period_d``: log10 of the period (day).
        - ``log10_false_alarm``: log10 of its false-alarm probability, clipped to >= -9.
        - ``log10_amplitude_mag``: log10 of the period model's half range (mag).
        - ``period_power``: the search's power / variance fraction explained (0-1).
        - ``method_bls``: 1 if a box model won the search, else 0.
        - ``nterms``: harmonics of the search's model (0 for a box).
        - ``r21``, ``r31``: Fourier amplitude ratios A2/A1, A3/A1 of a 4-harmonic
          least-squares fit at the period.
        - ``phi21``, ``phi31``: phase differences ``phi_k - k phi_1`` (rad, 0 to 2 pi).
        - ``fourier_r2``: weighted variance fraction the 4-harmonic fit explains (<= 1).
        - ``rise_fraction``: fraction of the cycle from minimum to maximum light of that
          fit (0.5 for a sinusoid, ~0.15 for an RRab).
        - ``log10_robust_range_mag``: log10 of the 5-95 percentile range (mag).
        - ``skewness``, ``kurtosis``: of the magnitudes (kurtosis in excess of a Gaussian's).
        - ``stetson_j``: asinh of Stetson's J (`obsctl.timeseries.stats.variability_stats`).
        - ``log10_chi2_red``: log10 of the reduced chi-square about the weighted mean.
        - ``beyond_1std``: fraction of points more than one standard deviation from the mean.
        - ``log10_mad_ratio``: log10 of the scatter from the median absolute deviation
          (1.4826 MAD) over the median error.
        - ``eta``: von Neumann ratio, mean squared successive difference over the variance
          (~2 for noise, small for a smooth curve).
        - ``log10_dip_snr``: log10(1 + s), s the significance of the best box dip (widths 2,
          5, 10 % of the period) in the folded curve, depth over ``scatter / sqrt(n_in)``.
        - ``eclipse_ratio``, ``eclipse_ratio_2p``: folded at the period and at twice it, the
          depth of the minimum half a phase from the deepest over the deepest's (0-1).
        - ``log10_period_over_baseline``: log10 of period / time span.
        - ``trend_mag``: slope of a weighted linear fit times the time span (mag, positive
          is fading).
        - ``bright_outlier_fraction``, ``faint_outlier_fraction``: fraction of points more
          than 3 sigma (the larger of the point's error and the robust scatter) brighter /
          fainter than the median.
        - ``bright_outlier_runs``: fraction of the bright outliers whose neighbour in time is
          also one (a flare lasts several points; a cosmic ray one).
        - ``log10_intranight_ratio``: log10 of the scatter about each night's median over the
          total scatter (nights with two or more points).
        - ``log10_n_points``, ``log10_baseline_d``, ``log10_median_err_mag``: the sampling
          and the noise (points, day, mag).

    Raises
    ------
    ValueError
        If the arrays' lengths differ.
    """
    tt = np.asarray(t, dtype=np.float64).ravel()
    mm = np.asarray(mag, dtype=np.float64).ravel()
    ee = np.asarray(err, dtype=np.float64).ravel()
    if not tt.size == mm.size == ee.size:
        raise ValueError(f"t, mag, err lengths differ: {tt.size}, {mm.size}, {ee.size}")
    out = np.full(N_FEATURES, MISSING, dtype=np.float64)
    ok = np.isfinite(tt) & np.isfinite(mm) & np.isfinite(ee) & (ee > 0)
    order = np.argsort(tt[ok], kind="stable")
    tt, mm, ee = tt[ok][order], mm[ok][order], ee[ok][order]
    n = tt.size
    if n < MIN_POINTS:
        return out.astype(np.float32)
    f: dict[str, float] = {}
    span = float(tt[-1] - tt[0])
    median = float(np.median(mm))
    std = float(np.std(mm))
    mad_sigma = 1.4826 * float(np.median(np.abs(mm - median)))
    med_err = float(np.median(ee))
    scatter = max(mad_sigma, med_err)

    # Sampling, noise and distribution.
    f["log10_n_points"] = math.log10(n)
    f["log10_baseline_d"] = _log10(span)
    f["log10_median_err_mag"] = _log10(med_err)
    f["log10_robust_range_mag"] = _log10(float(np.percentile(mm, 95) - np.percentile(mm, 5)))
    if std > 0.0:
        z = (mm - mm.mean()) / std
        f["skewness"] = float(np.mean(z**3))
        f["kurtosis"] = float(np.mean(z**4)) - 3.0
        f["beyond_1std"] = float(np.mean(np.abs(z) > 1.0))
        f["eta"] = float(np.mean(np.diff(mm) ** 2)) / std**2
    f["log10_mad_ratio"] = _log10(mad_sigma / med_err)
    stats = variability_stats(tt, mm, ee)
    if math.isfinite(stats.stetson_j):
        f["stetson_j"] = math.asinh(stats.stetson_j)
    f["log10_chi2_red"] = _log10(stats.chi2_red)
    if span > 0.0:
        w = 1.0 / ee**2
        tc = tt - np.sum(w * tt) / np.sum(w)
        slope = float(np.sum(w * tc * (mm - np.sum(w * mm) / np.sum(w))) / np.sum(w * tc**2))
        f["trend_mag"] = slope * span

    # Outliers: single points (cosmic rays, bad frames) or runs (flares, eclipses).
    limit = _OUTLIER_SIGMA * np.maximum(ee, scatter)
    bright = (median - mm) > limit
    f["bright_outlier_fraction"] = float(np.mean(bright))
    f["faint_outlier_fraction"] = float(np.mean((mm - median) > limit))
    if np.any(bright):
        neighbour = np.zeros(n, dtype=bool)
        neighbour[1:] |= bright[:-1]
        neighbour[:-1] |= bright[1:]
        f["bright_outlier_runs"] = float(np.mean(neighbour[bright]))
    else:
        f["bright_outlier_runs"] = 0.0

    # Variation within nights against all of it (local noon-to-noon nights, via MJD + 0.5
    # rounding, which only has to separate nights, not name them).
    night = np.floor(tt + 0.5)
    _, inverse, counts = np.unique(night, return_inverse=True, return_counts=True)
    multi = counts[inverse] >= 2
    if np.sum(multi) >= 3 and std > 0.0:
        nightly = np.array([np.median(mm[inverse == i]) for i in range(counts.size)])
        within = float(np.std((mm - nightly[inverse])[multi]))
        f["log10_intranight_ratio"] = _log10(within / std)

    # The period and the shape at it.
    if period is not None and math.isfinite(float(period.period_d)) and period.period_d > 0:
        p = float(period.period_d)
        f["log10_period_d"] = math.log10(p)
        fap = float(period.false_alarm)
        if math.isfinite(fap):
            f["log10_false_alarm"] = max(-9.0, _log10(max(fap, 1e-300)))
        f["log10_amplitude_mag"] = _log10(float(period.amplitude_mag))
        if math.isfinite(float(period.power)):
            f["period_power"] = float(period.power)
        f["method_bls"] = 1.0 if getattr(period, "method", "") == "bls" else 0.0
        f["nterms"] = float(period.nterms)
        if span > 0.0:
            f["log10_period_over_baseline"] = math.log10(p / span)
        fit = _fourier(tt, mm, ee, p)
        if fit is not None:
            amp, phi, r2 = fit
            f["fourier_r2"] = r2
            if amp[0] > 0.0:
                f["r21"] = float(amp[1] / amp[0])
                f["r31"] = float(amp[2] / amp[0])
                f["phi21"] = float(np.mod(phi[1] - 2.0 * phi[0], 2.0 * math.pi))
                f["phi31"] = float(np.mod(phi[2] - 3.0 * phi[0], 2.0 * math.pi))
                f["rise_fraction"] = _rise_fraction(amp, phi)
        f["log10_dip_snr"] = math.log10(1.0 + _dip_snr(tt, mm, p, scatter))
        f["eclipse_ratio"] = _eclipse_ratio(tt, mm, p)
        f["eclipse_ratio_2p"] = _eclipse_ratio(tt, mm, 2.0 * p)

    for i, name in enumerate(FEATURE_NAMES):
        value = f.get(name, MISSING)
        # Clip to above the sentinel so a real value is never read as missing.
        out[i] = max(value, MISSING + 0.5) if math.isfinite(value) and value != MISSING else MISSING
    return out.astype(np.float32)


def period_search_name() -> str:
    """Return the name of the period search `search_light_curve_period` runs (for the card)."""
    return f"{search_period.__module__}.{search_period.__name__}"


def search_light_curve_period(
    t: ArrayLike, mag: ArrayLike, err: ArrayLike, *, min_period_d: float = MIN_SEARCH_PERIOD_D
) -> PeriodSearchResult | None:
    """Run the period search the classifier was trained with; None if it cannot run.

    `obsctl.timeseries.periods.search_period` with `SEARCH_OPTIONS`, periods from
    `min_period_d` to the time span (longer ones are trends).

    Parameters
    ----------
    t : array_like
        Times (day).
    mag, err : array_like
        Magnitudes and errors (mag).
    min_period_d : float, optional
        Shortest period searched (day).

    Returns
    -------
    PeriodSearchResult or None
        The search's result; None with too few points or too short a span for a search.
    """
    tt = np.asarray(t, dtype=np.float64)
    span = float(np.nanmax(tt) - np.nanmin(tt)) if tt.size else 0.0
    if span <= 2.0 * min_period_d:
        return None
    try:
        return search_period(
            t, mag, err, min_period_d=min_period_d, max_period_d=max(span, 0.1), **SEARCH_OPTIONS
        )
    except PeriodSearchError as exc:  # too few points so far
        log.debug("no period search: %s", exc)
        return None


def curve_features(t: ArrayLike, mag: ArrayLike, err: ArrayLike) -> NDArray[np.float32]:
    """Return `light_curve_features` with the period from `search_light_curve_period`.

    Parameters
    ----------
    t : array_like
        Times (day).
    mag, err : array_like
        Magnitudes and errors (mag).

    Returns
    -------
    numpy.ndarray of float32
        ``[N_FEATURES]``.
    """
    return light_curve_features(t, mag, err, search_light_curve_period(t, mag, err))
