"""Period search that fits the light-curve shape and weighs aliases, as pure functions.

`search_period` gathers candidate frequencies from a one-term and a multi-term Lomb-Scargle
periodogram (one vectorised pass over the normal equations, equal to astropy's
``method="chi2"``) and from a box search whose peaks astropy's `BoxLeastSquares` refines,
adds each candidate's aliases (half and double the period, and ``f +- 1/day`` for the solar
and the sidereal day, since monitoring samples a field about once a night), and lets a judge
pick among them by the Bayesian information criterion of a Fourier series or of a two-dip
eclipse model. `folded_model` returns the chosen model over one cycle for plots.

The judge is the point of the module: a one-term periodogram puts an eclipsing binary at
half its period, a Fourier series capped at a few harmonics still prefers half the period of
narrow eclipses, and a long period with several harmonics can fit a few short nightly
segments one by one.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from astropy.timeseries import LombScargle
from numpy.typing import ArrayLike, NDArray

from obsctl.timeseries.eclipse_model import (
    Box,
    Eclipse,
    binned_bls,
    bls_grid,
    bootstrap_fap,
    box_fap,
    eclipse_eval,
    fit_eclipse,
    refine_box,
)
from obsctl.timeseries.fourier_series import (
    fourier_chi2_all,
    fourier_chi2_at,
    fourier_coefficients,
    fourier_eval,
    max_phase_gap,
    rotate_phase,
)
from obsctl.timeseries.stats import _clean

__all__ = [
    "AMBIGUOUS_BIC",
    "MIN_CYCLES",
    "Candidate",
    "PeriodSearchError",
    "PeriodSearchResult",
    "folded_model",
    "minima_per_cycle",
    "period_is_determined",
    "search_period",
]

log = logging.getLogger(__name__)

Method = Literal["ls", "ls-multi", "bls"]

SIDEREAL_DAY_D = 0.99726957
"""Length of the sidereal day (day): a fixed field is observed at a fixed sidereal time."""

MIN_POINTS = 12
"""Fewest points searched: a 2-harmonic model has 5 parameters, and the BIC needs slack."""

# Fourier models are capped at one parameter per this many points, so that a candidate cannot
# buy a low chi-square with parameters the data do not constrain.
_POINTS_PER_PARAMETER = 8
# The eclipse model's parameters: out-of-eclipse level, two depths, mid-time and width.
_ECLIPSE_PARAMETERS = 5
# The eclipse model is tried on this many of the best Fourier candidates (and twice their
# periods) besides the box-search peaks.
_ECLIPSE_CANDIDATES = 4
# The best few candidates are refined before the final comparison.
_REFINED = 3
# A model at 2 to 5 times another candidate's period nests that candidate's model (its
# harmonics include the shorter period's), so it must beat it by this much BIC, "very
# strong" evidence on the Kass & Raftery (1995) scale, to be chosen instead.
_NESTED_BIC_MARGIN = 10.0
#: A rival period whose BIC is within this of the winner's (and is not one of its nested
#: multiples or its half) leaves the period undetermined: "strong" evidence (Kass & Raftery
#: 1995) is 6-10. On the simulated population it marks 1 % of right periods and 30 % of wrong
#: ones (see `period_is_determined`).
AMBIGUOUS_BIC = 10.0
#: Fewest cycles the data must span for a period to be determined.
MIN_CYCLES = 2.0


class PeriodSearchError(ValueError):
    """A light curve has too few points or too short a span for a period search.

    Raised by `search_period` before any work; the caller should wait for more data (or
    report the star as unsearched), not retry.

    Parameters
    ----------
    message : str
        What was wrong.
    n_points : int
        Usable (finite, positive-error) points.
    span_d : float
        Time span of those points (day).
    """

    def __init__(self, message: str, *, n_points: int, span_d: float) -> None:
        super().__init__(message)
        self.n_points = n_points
        self.span_d = span_d


@dataclass(frozen=True)
class Candidate:
    """One period the judge weighed.

    Parameters
    ----------
    period_d : float
        Period (day), locally refined.
    origin : str
        The periodogram peak it came from: ``"ls"``, ``"ls-multi<nterms>"`` or ``"bls"``, with
        an alias suffix (``":2P"``, ``":P/2"``, ``":+1/d"``, ``":-1/d"``, ``":+1/sd"``,
        ``":-1/sd"``; ``sd`` is the sidereal day) when it is an alias of such a peak. An
        eclipse model tried at twice a candidate's period adds another ``":2P"``.
    bic : float
        Lowest Bayesian information criterion of its models, ``n ln(chi2 / n) + k ln n``
        with `k` the model's parameters besides the frequency (smaller is better; only
        differences between candidates mean anything).
    """

    period_d: float
    origin: str
    bic: float


@dataclass(frozen=True)
class PeriodSearchResult:
    """The period the judge chose and its model.

    Parameters
    ----------
    period_d : float
        Period (day).
    method : {"ls", "ls-multi", "bls"}
        Model that won: a one-term Fourier series, a Fourier series of `nterms` > 1
        harmonics, or the eclipse model (two box-shaped or rounded dips half a cycle apart:
        a transit, or an eclipsing binary's primary and secondary eclipses).
    false_alarm : float
        False-alarm probability, the chance that noise alone gives as strong a signal.
        Fourier models: Baluev's (2008) analytic bound for the highest peak of the one-term
        Lomb-Scargle periodogram over the searched band (astropy). Eclipse models, by
        default: an analytic approximation, the one-sided Gaussian tail of the box search's
        best chi-square drop, ``P(N(0, 1) > sqrt(drop))``, times the number of boxes tried
        (frequencies x phase bins x widths) as independent trials, capped at 1; it trusts
        the errors as Baluev's does. With ``bls_bootstrap=n``: ``(k + 1) / (n + 1)``, where
        `k` of `n` light curves with the magnitudes shuffled over the times reached the
        same box-search peak. If the box search did not run, Baluev's for the Fourier
        periodogram.
    amplitude_mag : float
        Half the peak-to-peak range of the chosen model (mag): the semi-amplitude of a
        sinusoid, half the depth of the deeper eclipse.
    epoch : float
        Time of minimum light (the Fourier model's faintest point; the middle of the deeper
        eclipse), in the cycle nearest the mean time of the data (same scale as the input
        times).
    nterms : int
        Harmonics of the Fourier model (its highest: a doubled model has only harmonics 1,
        3 and the even ones); 0 for the eclipse model.
    power : float
        Fraction of the weighted variance about the mean that the model explains,
        ``1 - chi2_model / chi2_constant``.
    candidates : list of Candidate
        Every candidate weighed: the chosen one first, then the others by BIC, lowest
        first.
    mean_mag : float
        Weighted mean magnitude of the data (mag).
    coefficients : tuple of float
        The model about `mean_mag`, with phase zero at `epoch`. Fourier:
        ``(c0, a1, b1, ..., aK, bK)`` of ``c0 + sum(a_k cos(2 pi k phase) + b_k sin(2 pi k
        phase))``. Eclipse: ``(level, depth1, depth2, width, shape)``: `level` outside the
        dips, dips of `depth1` >= `depth2` (mag) centred on phases 0 and 0.5 and `width`
        (phase) wide in all, box-shaped for ``shape == 0`` and ``(1 - u^2)^2`` in the
        distance `u` from mid-eclipse in half-widths for ``shape == 1``. `folded_model`
        evaluates it.
    rival_bic : float
        BIC of the best rival, less the winner's: the best candidate that is neither the
        winner's period, nor a multiple (2-5 times) nor half of it (inf without one).
    cycles : float
        Cycles of the period in the time span of the data.
    """

    period_d: float
    method: Method
    false_alarm: float
    amplitude_mag: float
    epoch: float
    nterms: int
    power: float
    candidates: list[Candidate]
    mean_mag: float
    coefficients: tuple[float, ...]
    rival_bic: float = math.inf
    cycles: float = math.inf


@dataclass(frozen=True)
class _Scored:
    """A candidate frequency (1/day) and its best model: Fourier (`nterms` > 0) or eclipse."""

    bic: float
    freq: float
    origin: str
    nterms: int
    eclipse: Eclipse | None
    # Harmonics of a Fourier model when not all of 1..nterms (a doubled model, `_doubled`).
    harmonics: tuple[int, ...] | None = None


def search_period(
    t: ArrayLike,
    mag: ArrayLike,
    err: ArrayLike,
    *,
    min_period_d: float = 0.05,
    max_period_d: float = 300.0,
    samples_per_peak: float = 5.0,
    n_peaks: int = 5,
    multi_nterms: tuple[int, ...] = (2,),
    max_nterms: int = 6,
    use_bls: bool = True,
    bls_min_period_d: float = 0.3,
    bls_max_frequencies: int = 20_000,
    bls_bootstrap: int = 0,
    seed: int = 0,
) -> PeriodSearchResult:
    """Find a light curve's period, its shape model and a false-alarm probability.

    Candidates are the `n_peaks` highest peaks of the one-term Lomb-Scargle periodogram, of
    the multi-term ones with `multi_nterms` harmonics and of a box search (refined by
    astropy's `BoxLeastSquares`), each with its aliases ``P/2``, ``2P`` and ``f +- 1/day``
    (solar and sidereal).

    The judge's rule: every candidate is scored by the lowest BIC, ``n ln(chi2 / n) + k ln
    n`` (the noise scale profiled out, so errors quoted too small do not weaken the
    penalty), of (a) a Fourier series whose harmonic count it picks freely up to a cap (at most
    `max_nterms`, at most ``n / 8`` parameters, and at most ``1 / (2 g)`` harmonics where
    `g` is the largest gap in the folded phase, since harmonics narrower than a gap are
    unconstrained there) and, for the box peaks and the best Fourier candidates and twice
    their periods, (b) a 5-parameter eclipse model (level, two dips half a cycle apart, a
    box or a rounded shape, epoch and width) whose first dip holds points from at least two
    cycles. The lowest BIC wins, after the best `_REFINED` candidates are re-scored on finer
    grids, unless a candidate at 1/2 to 1/5 of its period, whose model it nests, comes
    within `_NESTED_BIC_MARGIN` (10) of it: then the shorter period wins. Last, the winner
    is tried at twice its period, with a model that can tell the two halves of the cycle
    apart (an eclipsing binary's minima), and doubled if that lowers the BIC by the same
    margin (`_doubled`).

    One-term and multi-term powers both come from one pass over the Fourier normal
    equations (the one-term power is their first block), which costs about what astropy's
    fast one-term method alone would; astropy's `LombScargle` gives the false-alarm
    probability.

    Frequency grids are uniform, with a step of ``1 / (samples_per_peak * span)``, so the cost
    grows with the time span, not with the number of frames per night.

    Parameters
    ----------
    t : array_like
        Times (day), e.g. MJD or BJD_TDB.
    mag, err : array_like
        Magnitudes and their errors (mag); non-finite entries and non-positive errors are
        dropped.
    min_period_d, max_period_d : float, optional
        Period range searched (day).
    samples_per_peak : float, optional
        Coarse grid points per periodogram peak width ``1 / span``.
    n_peaks : int, optional
        Peaks taken from each periodogram.
    multi_nterms : tuple of int, optional
        Harmonic counts of the multi-term periodograms (2 to 4 is sensible).
    max_nterms : int, optional
        Most harmonics the judge fits.
    use_bls : bool, optional
        Run the box search.
    bls_min_period_d : float, optional
        Shortest period of the box search (day). Shorter eclipsing systems are still fitted
        by the eclipse model, started from the best Fourier candidates.
    bls_max_frequencies : int, optional
        Cap on the box search's grid (its step is coarsened beyond it), which bounds its cost.
    bls_bootstrap : int, optional
        Shuffled light curves for an eclipse winner's false-alarm probability, each costing
        one box search (~10-40 ms for 100 points over 60 nights); 0 uses the analytic
        approximation of `PeriodSearchResult.false_alarm` instead.
    seed : int, optional
        Seed of the bootstrap shuffles.

    Returns
    -------
    PeriodSearchResult
        The chosen period and model, and every candidate weighed.

    Raises
    ------
    PeriodSearchError
        With fewer than `MIN_POINTS` usable points, or a time span shorter than twice
        `min_period_d`.
    ValueError
        For a period range that is empty.
    """
    if not 0.0 < min_period_d < max_period_d:
        raise ValueError(f"empty period range {min_period_d}-{max_period_d} d")
    tt, m, e = _clean(t, mag, err)
    n = m.size
    span = float(tt[-1] - tt[0]) if n else 0.0
    if n < MIN_POINTS:
        raise PeriodSearchError(
            f"{n} points are too few for a period search (need {MIN_POINTS})",
            n_points=n,
            span_d=span,
        )
    if span < 2.0 * min_period_d:
        raise PeriodSearchError(
            f"time span {span:.3g} d is too short for periods >= {min_period_d} d",
            n_points=n,
            span_d=span,
        )
    # Centred times keep the phases (f * t, ~1e6 cycles at MJD) and the normal equations
    # well conditioned.
    t_ref = float(np.mean(tt))
    x = tt - t_ref
    w = 1.0 / e**2
    mean_mag = float(np.sum(w * m) / np.sum(w))
    y = m - mean_mag
    chi2_0 = float(np.sum(w * y**2))

    df = 1.0 / (samples_per_peak * span)
    f_lo, f_hi = 1.0 / max_period_d, 1.0 / min_period_d
    freq = np.arange(max(f_lo, df), f_hi + 0.5 * df, df)

    # The one-term periodogram is the first block of the multi-term normal equations: the
    # exact floating-mean Lomb-Scargle power (astropy's method="chi2"), at no extra cost,
    # where astropy's own fast method would take about as long as the whole multi-term pass.
    # astropy's LombScargle still supplies the false-alarm probability.
    seeds: list[tuple[float, str, Box | None]] = []
    ls = LombScargle(x, y, e)
    chi2_multi = fourier_chi2_all(x, y, w, freq, max((1, *multi_nterms)))
    ls_power = 1.0 - chi2_multi[0] / chi2_0
    seeds += [(float(freq[i]), "ls", None) for i in _top_peaks(ls_power, n_peaks)]
    for k in multi_nterms:
        top = _top_peaks(-chi2_multi[k - 1], n_peaks)
        seeds += [(float(freq[i]), f"ls-multi{k}", None) for i in top]

    bls_freq = np.empty(0)
    bls_peak = math.nan
    if use_bls:
        bls_freq = bls_grid(span, f_lo, min(f_hi, 1.0 / bls_min_period_d), bls_max_frequencies)
        if bls_freq.size:
            bls_power = binned_bls(x, y, w, bls_freq)
            bls_peak = float(np.max(bls_power))
            step = float(bls_freq[1] - bls_freq[0]) if bls_freq.size > 1 else df
            for i in _top_peaks(bls_power, n_peaks):
                box = refine_box(x, y, e, float(bls_freq[i]), step)
                seeds.append((1.0 / box.period_d, "bls", box))

    cands = _with_aliases(seeds, f_lo, f_hi, 0.5 * df)
    kcap = min(max_nterms, max(1, (n // _POINTS_PER_PARAMETER - 1) // 2))

    grids = np.array([c[0] for c in cands])[:, None] + np.linspace(-df, df, 9)[None, :]
    bics, f_bests, k_bests = _best_fourier_bic(x, y, w, np.maximum(grids, 0.25 * df), kcap)
    scored = [
        _Scored(float(bics[i]), float(f_bests[i]), c[1], int(k_bests[i]), None)
        for i, c in enumerate(cands)
    ]
    scored.sort(key=lambda s: s.bic)

    # Eclipses: narrow dips need more harmonics than the cap allows, so a Fourier series
    # prefers half the period (whose harmonics are the true one's even ones); a two-dip
    # model at the candidate and at twice its period settles it. Its epoch comes from the
    # box search or from the faintest point of the candidate's Fourier model.
    # Box-search starts first: astropy has refined their period and epoch.
    starts = [(f, box.t0, o) for f, o, box in seeds if box is not None]
    phase = np.linspace(0.0, 1.0, 256, endpoint=False)
    for c in _distinct(scored, 0.5 * df)[:_ECLIPSE_CANDIDATES]:
        coef = fourier_coefficients(x, y, w, c.freq, c.nterms)
        faint = float(phase[int(np.argmax(fourier_eval(coef, phase)))])
        starts.append((c.freq, faint / c.freq, c.origin))
    trials: list[tuple[float, float, str]] = []
    for f_c, t0, origin in starts:
        for f_e, tag in ((f_c, ""), (0.5 * f_c, ":2P")):
            if f_lo <= f_e <= f_hi and all(abs(f_e - f) > 0.25 * df for f, _, _ in trials):
                trials.append((f_e, t0, origin + tag))
    if trials:
        # A Fourier series fits narrow eclipses poorly and may misplace their frequency by a
        # grid step; the winner is refined below.
        fits = fit_eclipse(
            x, y, w,
            np.array([f for f, _, _ in trials])[:, None] + np.linspace(-0.25, 0.25, 3) * df,
            np.array([t0 for _, t0, _ in trials]),
            0.06, 7,
        )  # fmt: skip
        scored += [
            _Scored(float(_bic(ecl.chi2, _ECLIPSE_PARAMETERS, n)), 1.0 / ecl.period_d, o, 0, ecl)
            for ecl, (_, _, o) in zip(fits, trials, strict=True)
        ]
    scored = _distinct(sorted(scored, key=lambda s: s.bic), 0.5 * df)
    # A coarse step (df / 4) costs a high-S/N signal a chi-square of tens, more than the BIC
    # penalty of a few extra harmonics, so the leaders are compared only after refinement.
    lead = _refine(x, y, w, scored[:_REFINED], df, kcap)
    scored = sorted(lead + scored[_REFINED:], key=lambda s: s.bic)
    best = _prefer_shorter(scored, df)
    scored.remove(best)
    doubled = _doubled(x, y, w, best, df)
    if doubled is not None:
        scored.insert(0, best)
        best = doubled
    scored.insert(0, best)

    if best.eclipse is not None:
        ecl = best.eclipse
        period = ecl.period_d
        chi2_w = ecl.chi2
        # Phase zero at the deeper eclipse (minimum light).
        primary = ecl.t0 if ecl.depth1 >= ecl.depth2 else ecl.t0 + 0.5 * period
        d1, d2 = sorted((ecl.depth1, ecl.depth2), reverse=True)
        mid = primary + period * round(-primary / period)
        coefficients: tuple[float, ...] = (ecl.level, d1, d2, ecl.q, float(ecl.shape))
        method: Method = "bls"
        curve = eclipse_eval(coefficients, np.linspace(0.0, 1.0, 1024, endpoint=False))
        if not bls_freq.size:
            false_alarm = _baluev(ls, ls_power, freq)
        elif bls_bootstrap > 0:
            false_alarm = bootstrap_fap(x, y, w, bls_freq, bls_peak, bls_bootstrap, seed)
        else:
            false_alarm = box_fap(bls_peak * chi2_0, bls_freq.size)
    else:
        period = 1.0 / best.freq
        coef = fourier_coefficients(x, y, w, best.freq, best.nterms, best.harmonics)
        phase = np.linspace(0.0, 1.0, 1024, endpoint=False)
        curve = fourier_eval(coef, phase)
        faint = float(phase[int(np.argmax(curve))])
        mid = period * (faint + round(-faint))
        coefficients = tuple(float(c) for c in rotate_phase(coef, faint))
        method = "ls" if best.nterms == 1 else "ls-multi"
        model = fourier_eval(coef, np.mod(best.freq * x, 1.0))
        chi2_w = float(np.sum(w * (y - model) ** 2))
        false_alarm = _baluev(ls, ls_power, freq)

    candidates = [Candidate(1.0 / c.freq, c.origin, c.bic) for c in scored]
    rivals = [
        c.bic - best.bic
        for c in scored[1:]
        if all(abs(c.freq - m * best.freq) > df for m in (0.5, 1.0, 2.0, 3.0, 4.0, 5.0))
    ]
    log.debug("period %.6f d by %s from %s", period, method, best.origin)
    return PeriodSearchResult(
        period_d=period,
        method=method,
        false_alarm=false_alarm,
        amplitude_mag=0.5 * float(np.ptp(curve)),
        epoch=t_ref + mid,
        nterms=best.nterms,
        power=1.0 - chi2_w / chi2_0 if chi2_0 > 0 else 0.0,
        candidates=candidates,
        mean_mag=mean_mag,
        coefficients=coefficients,
        rival_bic=min(rivals, default=math.inf),
        cycles=span / period,
    )


def period_is_determined(result: PeriodSearchResult) -> bool:
    """Whether the data settle the period: no close rival, and at least `MIN_CYCLES` cycles.

    A light curve with one eclipse, one transit or part of one long cycle fits many periods
    about as well; its period is not reported as found, whatever its false-alarm
    probability (which says only that the star varies).
    """
    return result.rival_bic >= AMBIGUOUS_BIC and result.cycles >= MIN_CYCLES


def folded_model(
    result: PeriodSearchResult, *, n_phase: int = 200
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the chosen model over one cycle, for drawing over the folded light curve.

    Parameters
    ----------
    result : PeriodSearchResult
        A search result.
    n_phase : int, optional
        Phase samples.

    Returns
    -------
    phase : numpy.ndarray of float64
        Phase in [0, 1), zero at `result.epoch` (minimum light).
    mag : numpy.ndarray of float64
        Model magnitude (mag).
    """
    phase = np.linspace(0.0, 1.0, n_phase, endpoint=False)
    if result.method == "bls":
        return phase, result.mean_mag + eclipse_eval(result.coefficients, phase)
    c = np.asarray(result.coefficients, dtype=np.float64)
    return phase, result.mean_mag + fourier_eval(c, phase)


def minima_per_cycle(result: PeriodSearchResult, *, prominence: float = 0.25) -> int:
    """Count the minima (faint points) of the chosen model over one cycle.

    A contact binary's model has two minima a cycle at its period and one at half of it,
    which the judge may prefer when the minima are alike (see `_doubled`).

    Parameters
    ----------
    result : PeriodSearchResult
        A period search's result.
    prominence : float, optional
        A minimum counts if the model brightens by this fraction of its peak-to-peak range
        on both sides of it before getting fainter again.

    Returns
    -------
    int
        Minima in one cycle; 0 for a flat model.
    """
    _, model = folded_model(result, n_phase=360)
    depth = prominence * float(np.ptp(model))
    if depth <= 0.0:
        return 0
    # Walk the cycle from its brightest point (magnitudes: the smallest), counting each
    # excursion that goes `depth` fainter and comes back `depth` brighter.
    ring = np.roll(model, -int(np.argmin(model)))
    count, low, high, falling = 0, ring[0], ring[0], True
    for v in np.append(ring, ring[0]):
        if falling:
            high = max(high, v)
            if high - v >= depth:
                count, falling, low = count + 1, False, v
        else:
            low = min(low, v)
            if v - low >= depth:
                falling, high = True, v
    return count


def _bic(chi2: ArrayLike, n_params: ArrayLike, n: int) -> NDArray[np.float64]:
    """Bayesian information criterion with the noise scale profiled out.

    ``n ln(chi2 / n) + k ln n``: the Gaussian likelihood maximised over a common factor on
    the errors, so that errors quoted too small (photometric errors often are) do not shrink
    the ``k ln n`` penalty against the chi-square; with right errors (``chi2 ~ n``) it moves
    like ``chi2 + k ln n``.
    """
    c = np.maximum(np.asarray(chi2, dtype=np.float64), 1e-300)
    return np.asarray(n * np.log(c / n) + np.asarray(n_params) * math.log(n), dtype=np.float64)


def _best_fourier_bic(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    w: NDArray[np.float64],
    grids: NDArray[np.float64],
    kcap: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int_]]:
    """Lowest BIC of each candidate over its frequency grid and allowed harmonic counts.

    `grids` is (C, G): G frequencies (1/day) per candidate. Returns the BIC, the frequency
    and the harmonic count of each candidate's best model.
    """
    flat = grids.ravel()
    # Harmonics shorter than twice the largest phase gap could bend freely inside it.
    gap = max_phase_gap(x, flat)
    allowed = np.clip(np.floor(0.5 / np.maximum(gap, 1e-9)), 1, kcap)
    chi2 = fourier_chi2_all(x, y, w, flat, kcap)
    k = np.arange(1, kcap + 1)[:, None]
    bic = _bic(chi2, 2 * k + 1, x.size)
    bic[k > allowed[None, :]] = np.inf
    per = bic.reshape(kcap, *grids.shape).transpose(1, 0, 2).reshape(grids.shape[0], -1)
    best = np.argmin(per, axis=1)
    rows = np.arange(grids.shape[0])
    k_best, j_best = np.divmod(best, grids.shape[1])
    return per[rows, best], grids[rows, j_best], k_best + 1


def _refine(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    w: NDArray[np.float64],
    lead: list[_Scored],
    df: float,
    kcap: int,
) -> list[_Scored]:
    """Rescore candidates on finer grids.

    Fourier candidates on steps of df / 80; eclipses in frequency, epoch and width around
    their coarse fit.
    """
    out = []
    fourier = [c for c in lead if c.eclipse is None]
    if fourier:
        grids = np.array([c.freq for c in fourier])[:, None] + np.linspace(-0.25, 0.25, 41) * df
        bics, fs, ks = _best_fourier_bic(x, y, w, np.maximum(grids, 0.25 * df), kcap)
        out += [
            _Scored(float(b), float(f), c.origin, int(k), None)
            for b, f, k, c in zip(bics, fs, ks, fourier, strict=True)
        ]
    for c in lead:
        if c.eclipse is None:
            continue
        ecl = c.eclipse
        # Two zooms: the second's steps (df / 128 in frequency, 0.001 cycle in epoch) keep a
        # few-cycle span's period within a few 1e-4 (one step of the first alone is ~1e-3).
        for zoom, dphase, spread in ((8.0, 0.02, 0.2), (32.0, 0.005, 0.1)):
            ecl = fit_eclipse(
                x, y, w, 1.0 / ecl.period_d + np.linspace(-df, df, 9)[None, :] / zoom,
                np.array([ecl.t0]), dphase, 11,
                fractions=ecl.q * np.exp(np.linspace(-spread, spread, 7)), shapes=(ecl.shape,),
            )[0]  # fmt: skip
        bic = float(_bic(ecl.chi2, _ECLIPSE_PARAMETERS, x.size))
        out.append(_Scored(bic, 1.0 / ecl.period_d, c.origin, 0, ecl))
    return out


def _prefer_shorter(scored: list[_Scored], df: float) -> _Scored:
    """Return the lowest-BIC candidate, or a shorter period that its model nests.

    A candidate at 1/2 to 1/5 of the best one's period that comes within
    `_NESTED_BIC_MARGIN` of its BIC replaces it, and so on down. The frequency rises by at
    least half at each step, so this ends: near the lowest frequencies the tolerance (a few
    grid steps) is wider than the frequency itself, and the best candidate (or one below
    it) would otherwise match its own multiples, forever.
    """
    best = scored[0]
    while True:
        shorter = [
            c
            for c in scored
            for m in (2, 3, 4, 5)
            if abs(c.freq - m * best.freq) < 0.5 * m * df
            and c.freq > 1.5 * best.freq
            and c.bic < best.bic + _NESTED_BIC_MARGIN
        ]
        if not shorter:
            return best
        best = min(shorter, key=lambda c: c.bic)


def _doubled(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    w: NDArray[np.float64],
    best: _Scored,
    df: float,
) -> _Scored | None:
    """Return the winner at twice its period if the data tell the two halves of a cycle apart.

    An eclipsing binary's two minima differ only a little, so the judge picks half the
    period, whose model is simpler. At twice the period, a Fourier winner keeps its
    harmonics (now the even ones) and gains the first and third odd ones, which carry the
    difference between the minima and between the maxima (the O'Connell effect); it must beat
    both the winner and the winner with two more harmonics (as many parameters): a pulsator
    whose shape the harmonic cap leaves under-fitted gains from any added terms, but more from
    its own harmonics than from a split of its cycle. An eclipse winner (whose two dips then
    hold primary and secondary eclipses together, and nothing) is refitted at twice its
    period with dips half as wide, either of its dips first (the first must repeat). The
    doubled model must lower the BIC by `_NESTED_BIC_MARGIN`, as a
    longer period must in `_prefer_shorter`; None otherwise.
    """
    n = x.size
    f2 = 0.5 * best.freq
    if best.eclipse is None:
        k = best.nterms
        harmonics = tuple(sorted({1, 3, *range(2, 2 * k + 1, 2)}))
        chi2 = fourier_chi2_at(x, y, w, f2, harmonics)
        control = fourier_chi2_at(x, y, w, best.freq, tuple(range(1, k + 3)))
        bic = float(_bic(chi2, 2 * len(harmonics) + 1, n))
        if bic < best.bic - _NESTED_BIC_MARGIN and chi2 < control:
            return _Scored(bic, f2, f"{best.origin}:2P", harmonics[-1], None, harmonics)
        return None
    ecl = best.eclipse
    fits = fit_eclipse(
        x, y, w, np.full((2, 1), f2) + np.linspace(-df, df, 9)[None, :] / 16.0,
        np.array([ecl.t0, ecl.t0 + ecl.period_d]), 0.01, 11,
        fractions=0.5 * ecl.q * np.linspace(0.8, 1.25, 7), shapes=(ecl.shape,),
    )  # fmt: skip
    fit = min(fits, key=lambda e: e.chi2)
    bic = float(_bic(fit.chi2, _ECLIPSE_PARAMETERS, n))
    if bic < best.bic - _NESTED_BIC_MARGIN:
        return _Scored(bic, 1.0 / fit.period_d, f"{best.origin}:2P", 0, fit)
    return None


def _top_peaks(power: NDArray[np.float64], n: int) -> list[int]:
    """Return the indices of the `n` highest local maxima of a periodogram."""
    if power.size < 3:
        return [int(np.argmax(power))] if power.size else []
    inner = np.flatnonzero((power[1:-1] >= power[:-2]) & (power[1:-1] > power[2:])) + 1
    edges = [i for i in (0, power.size - 1) if power[i] == np.max(power)]
    idx = np.concatenate([inner, np.asarray(edges, dtype=int)])
    return [int(i) for i in idx[np.argsort(power[idx])[::-1][:n]]]


def _with_aliases(
    seeds: list[tuple[float, str, Box | None]], f_lo: float, f_hi: float, tol: float
) -> list[tuple[float, str, Box | None]]:
    """Seeds plus their aliases inside the band, merging those within `tol` (1/day)."""
    out: list[tuple[float, str, Box | None]] = []
    offsets = (1.0, 1.0 / SIDEREAL_DAY_D)
    for f, origin, box in seeds:
        family = [
            (f, origin, box),
            (0.5 * f, f"{origin}:2P", None),
            (2.0 * f, f"{origin}:P/2", None),
        ]
        for off, tag in zip(offsets, ("d", "sd"), strict=True):
            family += [(f + off, f"{origin}:+1/{tag}", None), (f - off, f"{origin}:-1/{tag}", None)]
        for g, o, b in family:
            if not f_lo <= g <= f_hi:
                continue
            near = [i for i, c in enumerate(out) if abs(c[0] - g) < tol]
            if not near:
                out.append((g, o, b))
            elif b is not None and out[near[0]][2] is None:
                # Keep the box: a box peak refined by astropy carries its duration and epoch.
                out[near[0]] = (g, o, b)
    return out


def _baluev(ls: LombScargle, power: NDArray[np.float64], freq: NDArray[np.float64]) -> float:
    """Baluev (2008) false-alarm probability of the highest one-term periodogram peak."""
    return float(
        ls.false_alarm_probability(
            float(np.max(power)),
            method="baluev",
            minimum_frequency=float(freq[0]),
            maximum_frequency=float(freq[-1]),
        )
    )


def _distinct(scored: list[_Scored], tol: float) -> list[_Scored]:
    """Keep the entries of a best-first list not within `tol` (1/day) of a better one."""
    out: list[_Scored] = []
    for c in scored:
        if all(abs(c.freq - o.freq) >= tol for o in out):
            out.append(c)
    return out
