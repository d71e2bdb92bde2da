"""Eclipse and transit models of a light curve at trial periods, as pure vectorised functions.

A fast binned box search over many frequencies (`binned_bls`) whose peaks astropy's
`BoxLeastSquares` refines (`refine_box`), its false-alarm probabilities, and a two-dip
eclipse model (two dips half a cycle apart, a box or a rounded shape) fitted by linear least
squares over grids of frequency, epoch and width (`fit_eclipse`). Used by
`obsctl.timeseries.periods`; times in its centred scale (day).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.timeseries import BoxLeastSquares
from numpy.typing import ArrayLike, NDArray

from obsctl.timeseries.fourier_series import CHUNK_ELEMENTS

__all__ = [
    "Box",
    "Eclipse",
    "binned_bls",
    "bls_grid",
    "bootstrap_fap",
    "box_fap",
    "eclipse_eval",
    "fit_eclipse",
    "refine_box",
]

# The box search folds into this many phase bins and tries boxes this many bins wide (duty
# cycles 1/32 to 1/8: transits to detached eclipses; wider dips are Fourier's job).
_BLS_BINS = 32
_BLS_WIDTHS = (1, 2, 4)
# The astropy refinement tries these durations, as fractions of the period.
_BLS_DURATION_FRACTIONS = (0.02, 0.03, 0.045, 0.065, 0.09, 0.12, 0.16)
# Dip widths of the eclipse model, as fractions of the period.
_ECLIPSE_FRACTIONS = (0.02, 0.032, 0.05, 0.08, 0.13, 0.2)
# Dip shapes: a box (flat-bottomed transit) and a smooth, rounded dip (a detached eclipse),
# the biweight ``(1 - u^2)^2`` of the distance from mid-eclipse in half-widths.
_BOX, _SMOOTH = 0, 1


@dataclass(frozen=True)
class Eclipse:
    """A two-dip eclipse model at one period: dips at phases 0 and 0.5 of one width."""

    period_d: float
    t0: float
    q: float
    shape: int
    level: float
    depth1: float
    depth2: float
    chi2: float


@dataclass(frozen=True)
class Box:
    """A box (transit or eclipse) at one period: times in the centred scale (day)."""

    period_d: float
    duration_d: float
    t0: float


def bls_grid(span: float, f_lo: float, f_hi: float, max_freq: int) -> NDArray[np.float64]:
    """Return the box-search frequencies (1/day).

    At least two transits fit in the span, and the step keeps a box within a quarter of a
    phase bin of the grid over half the span; the grid is coarsened to `max_freq` points.
    """
    lo = max(f_lo, 2.0 / span)
    if not f_hi > lo:
        return np.empty(0)
    step = max(1.0 / (_BLS_BINS * span), (f_hi - lo) / max_freq)
    return np.arange(lo, f_hi, step)


def binned_bls(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    w: NDArray[np.float64],
    freq: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Box-search power at each frequency: the chi-square drop of the best dip, over chi2_0.

    The fold goes into `_BLS_BINS` fixed phase bins and boxes of `_BLS_WIDTHS` bins slide
    over them with wrap-around; a box of in-box weight ``W_in`` and weighted sum ``S`` (of
    the mean-subtracted magnitudes) lowers the chi-square by ``S^2 / (W_in (1 - W_in /
    W))``. Only dips (fainter, ``S > 0``) count. astropy's `BoxLeastSquares` loops over
    periods at ~20 us each, too slow for the ~10^4 periods a 60-night span needs in the
    monitor's budget; it refines the peaks instead (`refine_box`).
    """
    nb = _BLS_BINS
    w_tot = float(np.sum(w))
    chi2_0 = float(np.sum(w * y**2))
    # Times from the first point keep every product positive, so truncation is floor, and
    # with a power-of-two bin count the fold is a bit mask.
    x0 = x - np.min(x)
    out = np.empty(freq.size)
    chunk = max(1, CHUNK_ELEMENTS // max(1, x.size))
    width_max = max(_BLS_WIDTHS)
    for s in range(0, freq.size, chunk):
        f = freq[s : s + chunk]
        n_f = f.size
        bins = np.outer(f * nb, x0).astype(np.int32)
        bins &= nb - 1
        bins += (nb * np.arange(n_f, dtype=np.int32))[:, None]
        flat = bins.ravel()
        sw = np.bincount(flat, np.tile(w, n_f), nb * n_f).reshape(n_f, nb)
        swy = np.bincount(flat, np.tile(w * y, n_f), nb * n_f).reshape(n_f, nb)
        # Cumulative sums over the bins, continued over the first bins again so that a box
        # may straddle phase 0, bin-major so that each step adds two contiguous rows
        # (numpy's cumsum along short rows is many times slower).
        cw = np.zeros((nb + width_max + 1, n_f))
        cy = np.zeros((nb + width_max + 1, n_f))
        for i in range(nb + width_max):
            np.add(cw[i], sw[:, i % nb], out=cw[i + 1])
            np.add(cy[i], swy[:, i % nb], out=cy[i + 1])
        best = np.zeros(n_f)
        for width in _BLS_WIDTHS:
            w_in = cw[width : width + nb] - cw[:nb]
            s_in = cy[width : width + nb] - cy[:nb]
            # An empty box (or one holding every point) has s_in = 0: the floor only keeps
            # the division finite.
            denom = np.maximum(w_in - w_in * w_in / w_tot, 1e-12 * w_tot)
            np.maximum(s_in, 0.0, out=s_in)
            s_in *= s_in
            s_in /= denom
            np.maximum(best, np.max(s_in, axis=0), out=best)
        out[s : s + chunk] = best / chi2_0 if chi2_0 > 0 else best
    return out


def refine_box(
    x: NDArray[np.float64], y: NDArray[np.float64], e: NDArray[np.float64], f: float, step: float
) -> Box:
    """Astropy `BoxLeastSquares` on a fine local grid around a coarse box peak."""
    fine = f + np.linspace(-1.5 * step, 1.5 * step, 31)
    fine = fine[fine > 0.0]
    periods = np.sort(1.0 / fine)
    durations = np.asarray(_BLS_DURATION_FRACTIONS) * periods[0]
    # BoxLeastSquares looks for flux dips; in magnitudes a dip is a rise, hence -y.
    res = BoxLeastSquares(x, -y, e).power(periods, durations, objective="likelihood")
    i = int(np.argmax(res.power))
    return Box(float(res.period[i]), float(res.duration[i]), float(res.transit_time[i]))


def box_fap(drop: float, n_freq: int) -> float:
    """Bonferroni false-alarm probability of the best box: one-sided tail times the trials."""
    trials = n_freq * _BLS_BINS * len(_BLS_WIDTHS)
    tail = 0.5 * math.erfc(math.sqrt(max(drop, 0.0) / 2.0))
    return min(1.0, -math.expm1(trials * math.log1p(-min(tail, 1.0 - 1e-16))))


def bootstrap_fap(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    w: NDArray[np.float64],
    freq: NDArray[np.float64],
    peak: float,
    n_boot: int,
    seed: int,
) -> float:
    """``(k + 1) / (n + 1)``: `k` of `n` shuffled light curves reach the box-search `peak`."""
    if n_boot <= 0 or freq.size == 0:
        return math.nan
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_boot):
        # Shuffle magnitude and weight together: a point keeps its own error.
        order = rng.permutation(y.size)
        hits += float(np.max(binned_bls(x, y[order], w[order], freq))) >= peak
    return (hits + 1) / (n_boot + 1)


def _dip(u: NDArray[np.float64], shape: int) -> NDArray[np.float64]:
    """Return a dip of unit depth against ``u``, the distance from its centre in half-widths."""
    if shape == _BOX:
        return (u < 1.0).astype(np.float64)
    v = np.maximum(1.0 - u * u, 0.0)
    return v * v


def eclipse_eval(
    coefficients: tuple[float, ...], phase: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``level + depth1 dip(phase) + depth2 dip(phase - 0.5)`` about the mean (mag)."""
    level, d1, d2, q, shape = coefficients
    u1 = np.minimum(phase, 1.0 - phase) / (0.5 * q)
    u2 = np.abs(phase - 0.5) / (0.5 * q)
    return level + d1 * _dip(u1, int(shape)) + d2 * _dip(u2, int(shape))


def fit_eclipse(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    w: NDArray[np.float64],
    freqs: NDArray[np.float64],
    t0: NDArray[np.float64],
    dphase: float,
    n_t0: int,
    *,
    fractions: ArrayLike = _ECLIPSE_FRACTIONS,
    shapes: tuple[int, ...] = (_BOX, _SMOOTH),
) -> list[Eclipse]:
    """Best two-dip eclipse model of each start over its grid of frequencies, epochs, widths.

    Start `s` searches the frequencies ``freqs[s]`` (1/day) and epochs within `dphase`
    cycles of ``t0[s]`` (day, centred scale) in `n_t0` steps; for each width (fraction of
    the period) and shape, the level and both depths follow by weighted linear least
    squares, and the lowest chi-square wins. Depths are free in sign, so a missing
    secondary costs only its parameter.
    """
    n_s, n_f = freqs.shape
    offs = np.linspace(-dphase, dphase, n_t0)
    ff = np.repeat(freqs.ravel(), n_t0)  # (G,) with G = n_s * n_f * n_t0
    oo = np.tile(offs, n_s * n_f)
    tt = np.repeat(t0, n_f * n_t0)
    turns = ff[:, None] * (x[None, :] - tt[:, None]) - oo[:, None]
    phase = np.mod(turns, 1.0)
    near1 = np.minimum(phase, 1.0 - phase)
    near2 = np.abs(phase - 0.5)
    qs = np.asarray(fractions, dtype=np.float64)
    combos = [(q, sh) for sh in shapes for q in qs]
    g1 = np.stack([_dip(near1 / (0.5 * q), sh) for q, sh in combos], axis=1)  # (G, C, n)
    g2 = np.stack([_dip(near2 / (0.5 * q), sh) for q, sh in combos], axis=1)
    # The dip at phase 0 must repeat to say anything about a period: one seen in a single
    # cycle could absorb any one night's trend. The dip at phase 0.5 may be seen once; the
    # first dip has already fixed where it falls.
    cycle = np.floor(turns + 0.5)
    seen = np.stack([_repeats(near1 < 0.5 * q, cycle) for q, _ in combos], axis=1)
    wy = w * y
    a = np.empty((*g1.shape[:2], 3, 3))
    a[..., 0, 0] = np.sum(w)
    a[..., 0, 1] = a[..., 1, 0] = np.einsum("gcn,n->gc", g1, w)
    a[..., 0, 2] = a[..., 2, 0] = np.einsum("gcn,n->gc", g2, w)
    a[..., 1, 1] = np.einsum("gcn,gcn,n->gc", g1, g1, w)
    a[..., 2, 2] = np.einsum("gcn,gcn,n->gc", g2, g2, w)
    a[..., 1, 2] = a[..., 2, 1] = np.einsum("gcn,gcn,n->gc", g1, g2, w)
    # A dip that holds no point leaves its depth undetermined; the ridge sets it to zero.
    a += 1e-9 * np.sum(w) * np.eye(3)
    b = np.stack(
        [
            np.full(g1.shape[:2], np.sum(wy)),
            np.einsum("gcn,n->gc", g1, wy),
            np.einsum("gcn,n->gc", g2, wy),
        ],
        axis=-1,
    )
    sol = np.linalg.solve(a, b[..., None])[..., 0]
    chi2 = float(np.sum(w * y**2)) - np.sum(b * sol, axis=-1)
    chi2 = np.where(seen, chi2, np.inf).reshape(n_s, -1)
    out = []
    for s_i, flat in enumerate(np.argmin(chi2, axis=1)):
        g, j = divmod(int(flat), len(combos))
        g += s_i * n_f * n_t0
        q, sh = combos[j]
        out.append(
            Eclipse(
                period_d=1.0 / float(ff[g]),
                t0=float(tt[g]) + float(oo[g]) / float(ff[g]),
                q=float(q),
                shape=sh,
                level=float(sol[g, j, 0]),
                depth1=float(sol[g, j, 1]),
                depth2=float(sol[g, j, 2]),
                chi2=float(chi2[s_i, flat]),
            )
        )
    return out


def _repeats(inside: NDArray[np.bool_], cycle: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Whether the points inside a dip, (G, n), belong to more than one cycle, (G,)."""
    first = np.min(np.where(inside, cycle, np.inf), axis=1)
    last = np.max(np.where(inside, cycle, -np.inf), axis=1)
    return np.asarray(np.isfinite(first) & (last > first))
