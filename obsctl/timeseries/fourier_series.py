"""Fourier series of a light curve at trial frequencies, as pure vectorised functions.

The period search's workhorse (`obsctl.timeseries.periods`): the chi-square of floating-mean
Fourier series of 1..K harmonics at many frequencies in one pass over the normal equations
(`fourier_chi2_all`), the least-squares coefficients at one frequency, and their evaluation.
Times are best centred on the data (``x = t - mean(t)``), which keeps the phases and the
normal equations well conditioned.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CHUNK_ELEMENTS",
    "fourier_chi2",
    "fourier_chi2_all",
    "fourier_chi2_at",
    "fourier_coefficients",
    "fourier_eval",
    "max_phase_gap",
    "rotate_phase",
]

#: Elements (frequencies x points) per vectorised chunk: bounds memory at ~16 MB of complex.
CHUNK_ELEMENTS = 1_000_000


def fourier_chi2(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    w: NDArray[np.float64],
    freq: NDArray[np.float64],
    nterms: int,
) -> NDArray[np.float64]:
    """Weighted chi-square of a floating-mean Fourier series of `nterms` at each frequency.

    Equals astropy's ``LombScargle(nterms=nterms)`` with ``method="chi2"``: its power is
    ``1 - chi2 / sum(w (y - ybar)^2)``.

    Parameters
    ----------
    x : numpy.ndarray
        Times (day), best centred.
    y : numpy.ndarray
        Values (mag).
    w : numpy.ndarray
        Weights, ``1 / err^2`` (mag^-2).
    freq : numpy.ndarray
        Frequencies (1/day).
    nterms : int
        Harmonics.

    Returns
    -------
    numpy.ndarray of float64
        Chi-square at each frequency.
    """
    return np.asarray(fourier_chi2_all(x, y, w, freq, nterms)[nterms - 1], dtype=np.float64)


def fourier_chi2_all(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    w: NDArray[np.float64],
    freq: NDArray[np.float64],
    nterms: int,
) -> NDArray[np.float64]:
    """Chi-square of the nested Fourier series of 1..`nterms` harmonics, shape (nterms, F).

    The normal equations need only the moments ``sum(w z^m)`` (m <= 2 nterms) and
    ``sum(w y z^k)`` (k <= nterms) of ``z = exp(2 pi i f t)``, since products of harmonics are
    harmonics. Columns are ordered ``1, cos, sin, cos 2, sin 2, ...``, so the leading blocks
    of one Cholesky factor serve every smaller harmonic count: the explained chi-square of
    the first ``2k + 1`` columns is the sum of the first ``2k + 1`` squared entries of
    ``L^-1 b``.
    """
    out = np.empty((nterms, freq.size))
    chunk = max(1, CHUNK_ELEMENTS // max(1, x.size))
    yy = float(np.sum(w * y**2))
    for s in range(0, freq.size, chunk):
        a, b = _normal_equations(x, y, w, freq[s : s + chunk], nterms)
        explained = np.cumsum(_whitened_rhs(a, b) ** 2, axis=1)
        out[:, s : s + chunk] = yy - explained[:, 2::2].T
    return out


def _whitened_rhs(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """``L^-1 b`` for the Cholesky factor ``L`` of each normal matrix, shape (F, p).

    Written out over the (small) matrix index and vectorised over frequencies: LAPACK's
    batched solve pays microseconds of overhead per 7x7 system, far more than the algebra.
    A column that is (numerically) a combination of earlier ones, as the harmonics of the
    lowest frequencies nearly are, is dropped rather than allowed to blow up.
    """
    n_f, p = b.shape
    low = np.zeros((n_f, p, p))
    u = np.zeros((n_f, p))
    for j in range(p):
        row = low[:, j, :j]
        d2 = a[:, j, j] - np.einsum("fk,fk->f", row, row)
        ok = d2 > 1e-10 * a[:, j, j]
        d = np.where(ok, np.sqrt(np.where(ok, d2, 1.0)), 1.0)
        low[:, j, j] = d
        if j + 1 < p:
            below = a[:, j + 1 :, j] - np.einsum("fik,fk->fi", low[:, j + 1 :, :j], row)
            low[:, j + 1 :, j] = np.where(ok[:, None], below / d[:, None], 0.0)
        u[:, j] = np.where(ok, (b[:, j] - np.einsum("fk,fk->f", row, u[:, :j])) / d, 0.0)
    return u


def _phasors(freq: NDArray[np.float64], x: NDArray[np.float64]) -> NDArray[np.complex128]:
    """``exp(2 pi i f x)``, shape (F, n).

    On a uniform grid each block of rows is the previous block times one phasor row, so the
    exponential (the dominant cost) is evaluated on one block only; the rounding error grows
    by ~1e-16 per block.
    """
    block = 64
    n_f = freq.size
    step = float(freq[1] - freq[0]) if n_f > 1 else 0.0
    if n_f < 4 * block or not np.allclose(np.diff(freq), step, rtol=1e-9, atol=0.0):
        return np.asarray(np.exp(2j * math.pi * np.outer(freq, x)), dtype=np.complex128)
    z = np.empty((n_f, x.size), dtype=np.complex128)
    z[:block] = np.exp(2j * math.pi * np.outer(freq[:block], x))
    shift = np.exp(2j * math.pi * block * step * x)
    for s in range(block, n_f, block):
        e = min(s + block, n_f)
        np.multiply(z[s - block : e - block], shift, out=z[s:e])
    return z


def _normal_equations(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    w: NDArray[np.float64],
    freq: NDArray[np.float64],
    nterms: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the normal matrix (F, p, p) and right-hand side (F, p) of the Fourier design."""
    z = _phasors(freq, x)
    moments = np.empty((2 * nterms + 1, freq.size), dtype=np.complex128)
    proj = np.empty((nterms + 1, freq.size), dtype=np.complex128)
    wc = w.astype(np.complex128)
    wyc = (w * y).astype(np.complex128)
    moments[0] = np.sum(w)
    proj[0] = np.sum(w * y)
    zm = z.copy()
    for k in range(1, 2 * nterms + 1):
        moments[k] = np.einsum("fn,n->f", zm, wc)
        if k <= nterms:
            proj[k] = np.einsum("fn,n->f", zm, wyc)
        if k < 2 * nterms:
            zm *= z
    c, s = moments.real, moments.imag
    p = 2 * nterms + 1
    a = np.empty((freq.size, p, p))
    b = np.empty((freq.size, p))
    a[:, 0, 0] = c[0]
    b[:, 0] = proj[0].real
    for j in range(1, nterms + 1):
        cj, sj = 2 * j - 1, 2 * j
        a[:, 0, cj] = a[:, cj, 0] = c[j]
        a[:, 0, sj] = a[:, sj, 0] = s[j]
        b[:, cj] = proj[j].real
        b[:, sj] = proj[j].imag
        for k in range(1, nterms + 1):
            ck, sk = 2 * k - 1, 2 * k
            d = abs(j - k)
            sign = 1.0 if k >= j else -1.0
            a[:, cj, ck] = 0.5 * (c[d] + c[j + k])
            a[:, sj, sk] = 0.5 * (c[d] - c[j + k])
            # cos(jx) sin(kx) = (sin((k + j) x) + sin((k - j) x)) / 2
            a[:, cj, sk] = a[:, sk, cj] = 0.5 * (s[j + k] + sign * s[d])
    return a, b


def fourier_coefficients(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    w: NDArray[np.float64],
    f: float,
    nterms: int,
    harmonics: tuple[int, ...] | None = None,
) -> NDArray[np.float64]:
    """Least-squares ``(c0, a1, b1, ...)`` at one frequency, phase zero at ``x = 0``.

    With `harmonics`, only those of 1..`nterms` are fitted; the others' coefficients are 0.
    """
    used = range(1, nterms + 1) if harmonics is None else harmonics
    cols = [np.ones_like(x)]
    for k in used:
        arg = 2.0 * math.pi * k * f * x
        cols += [np.cos(arg), np.sin(arg)]
    design = np.stack(cols, axis=1) * np.sqrt(w)[:, None]
    fit, *_ = np.linalg.lstsq(design, y * np.sqrt(w), rcond=None)
    coef = np.zeros(2 * nterms + 1)
    coef[0] = fit[0]
    for i, k in enumerate(used):
        coef[2 * k - 1 : 2 * k + 1] = fit[2 * i + 1 : 2 * i + 3]
    return coef


def fourier_eval(coef: NDArray[np.float64], phase: NDArray[np.float64]) -> NDArray[np.float64]:
    """Evaluate ``c0 + sum(a_k cos(2 pi k phase) + b_k sin(2 pi k phase))``."""
    out = np.full(phase.shape, coef[0])
    for k in range(1, (coef.size - 1) // 2 + 1):
        arg = 2.0 * math.pi * k * phase
        out += coef[2 * k - 1] * np.cos(arg) + coef[2 * k] * np.sin(arg)
    return out


def rotate_phase(coef: NDArray[np.float64], phase0: float) -> NDArray[np.float64]:
    """Coefficients of the same series with phase zero moved to `phase0`."""
    out = coef.copy()
    for k in range(1, (coef.size - 1) // 2 + 1):
        v = 2.0 * math.pi * k * phase0
        a, b = coef[2 * k - 1], coef[2 * k]
        out[2 * k - 1] = a * math.cos(v) + b * math.sin(v)
        out[2 * k] = -a * math.sin(v) + b * math.cos(v)
    return out


def max_phase_gap(x: NDArray[np.float64], freq: NDArray[np.float64]) -> NDArray[np.float64]:
    """Largest gap in the folded phase at each frequency (cycles, wrap-around included)."""
    phase = np.sort(np.mod(np.outer(freq, x), 1.0), axis=1)
    inner = np.max(np.diff(phase, axis=1), axis=1) if x.size > 1 else np.zeros(freq.size)
    wrap = 1.0 - phase[:, -1] + phase[:, 0]
    return np.asarray(np.maximum(inner, wrap), dtype=np.float64)


def fourier_chi2_at(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    w: NDArray[np.float64],
    f: float,
    harmonics: tuple[int, ...],
) -> float:
    """Weighted chi-square of the Fourier series of the given `harmonics` at frequency `f`."""
    coef = fourier_coefficients(x, y, w, f, harmonics[-1], harmonics)
    return float(np.sum(w * (y - fourier_eval(coef, np.mod(f * x, 1.0))) ** 2))
