"""The V-curve of a focus run: a hyperbola (and a parabola, for comparison) through HFR points.

A star's half-flux radius against the focuser position is a hyperbola: near focus the seeing
sets it, far out the blur circle grows linearly with the focus offset. N.I.N.A. and Ekos fit
the same form, ``hfr = a sqrt(1 + ((x - c) / b)^2)``: ``a`` is the in-focus HFR, ``c`` the
best focus and ``a / b`` the slope of the V's arms. A parabola fits only the bottom of the
V, so it is the comparison, not the default. A fit that is not a V is refused with the
reason (`FocusCurveError`): too few points, a minimum without two positions tried on each
side, arms that do not rise, or points far off the curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares

__all__ = [
    "MIN_POINTS",
    "FocusCurveError",
    "FocusFit",
    "fit_focus_curve",
]

#: Fewest (position, HFR) points fitted: the hyperbola has three parameters.
MIN_POINTS = 5
# A fit whose rms residual exceeds this fraction of its in-focus HFR is not a V.
_MAX_RMS_FRACTION = 0.15
# Points each arm of the V needs beyond the minimum.
_MIN_ARM_POINTS = 2
# A V whose half-width exceeds this many times the positions' range is flat: no focus seen.
_MAX_HALF_WIDTH_RANGES = 20.0

Model = Literal["hyperbola", "parabola"]


class FocusCurveError(ValueError):
    """A focus run's points do not make a V: the fit is refused, with the reason.

    The caller returns the focuser to where the run started.
    """


@dataclass(frozen=True)
class FocusFit:
    """A V-curve fitted to a focus run.

    Parameters
    ----------
    model : {"hyperbola", "parabola"}
        The curve fitted.
    best_position : float
        The curve's minimum (focuser steps).
    best_hfr_px : float
        The HFR at the minimum (pixel).
    half_width_steps : float
        Distance from the minimum at which the curve's HFR is twice its minimum (steps):
        the V's half-width, the scale of focus tolerance.
    rms_px : float
        Rms residual of the points about the curve (pixel).
    n_points : int
        Points fitted.
    coefficients : tuple of float
        Hyperbola ``(a, b, c)``; parabola ``(p0, p1, p2)`` of ``p0 + p1 u + p2 u^2`` with
        ``u`` the position less the mean position.
    """

    model: Model
    best_position: float
    best_hfr_px: float
    half_width_steps: float
    rms_px: float
    n_points: int
    coefficients: tuple[float, ...]


def fit_focus_curve(
    positions: ArrayLike,
    hfr_px: ArrayLike,
    *,
    model: Model = "hyperbola",
    n_stars: ArrayLike | None = None,
) -> FocusFit:
    """Fit a V-curve to a focus run's points.

    Parameters
    ----------
    positions : array_like
        Focuser positions (steps).
    hfr_px : array_like
        Median half-flux radius of the stars at each position (pixel); non-finite or
        non-positive values (a frame without stars) are left out.
    model : {"hyperbola", "parabola"}, optional
        The curve.
    n_stars : array_like, optional
        Stars behind each median HFR: a point weighs by their number (the median's variance
        falls as 1 / n), so that a frame with three stars left far out does not pull the
        V as much as one with thirty. Equal weights when not given.

    Returns
    -------
    FocusFit
        The fit.

    Raises
    ------
    FocusCurveError
        With fewer than `MIN_POINTS` usable points, arms that do not rise (no V: a flat or
        downward curve), a minimum without two positions tried on each side of it, or an
        rms residual over 15 % of the in-focus HFR.
    """
    x = np.asarray(positions, dtype=np.float64).ravel()
    y = np.asarray(hfr_px, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise FocusCurveError(f"{x.size} positions but {y.size} HFR values")
    w = np.ones_like(x) if n_stars is None else np.asarray(n_stars, dtype=np.float64).ravel()
    if w.shape != x.shape:
        raise FocusCurveError(f"{x.size} positions but {w.size} star counts")
    ok = np.isfinite(x) & np.isfinite(y) & (y > 0) & np.isfinite(w) & (w > 0)
    x, y, w = x[ok], y[ok], w[ok]
    if x.size < MIN_POINTS or np.unique(x).size < MIN_POINTS:
        raise FocusCurveError(
            f"{x.size} usable point(s) at {np.unique(x).size} position(s); a V needs {MIN_POINTS}"
        )
    w = w / np.mean(w)  # weights that average 1 keep the rms in pixels
    fit = _hyperbola(x, y, w) if model == "hyperbola" else _parabola(x, y, w)
    lo, hi = float(x.min()), float(x.max())
    if fit.half_width_steps > _MAX_HALF_WIDTH_RANGES * (hi - lo):
        raise FocusCurveError(
            f"the HFR hardly changes over {lo:.0f}-{hi:.0f}: no V (too small a step, or no "
            "stars in focus)"
        )
    # Both arms seen: a minimum at the run's edge is a guess at where the V turns.
    if min(np.sum(x < fit.best_position), np.sum(x > fit.best_position)) < _MIN_ARM_POINTS:
        raise FocusCurveError(
            f"the {model}'s minimum {fit.best_position:.0f} is not inside the positions "
            f"tried ({lo:.0f}-{hi:.0f}) with {_MIN_ARM_POINTS} on each side: start the run "
            "nearer focus"
        )
    if fit.rms_px > _MAX_RMS_FRACTION * fit.best_hfr_px:
        raise FocusCurveError(
            f"the points scatter {fit.rms_px:.2f} px about the {model}, over "
            f"{_MAX_RMS_FRACTION:.0%} of its in-focus HFR {fit.best_hfr_px:.2f} px"
        )
    return fit


def _hyperbola(x: NDArray[np.float64], y: NDArray[np.float64], w: NDArray[np.float64]) -> FocusFit:
    """Weighted least squares for ``a sqrt(1 + ((x - c) / b)^2)``, started from the data."""
    i = int(np.argmin(y))
    a0, c0 = float(y[i]), float(x[i])
    # The arms' slope from the outermost points: hfr ~ a |x - c| / b far out.
    far = np.argsort(np.abs(x - c0))[-2:]
    slope = float(np.mean(y[far] / np.maximum(np.abs(x[far] - c0), 1e-9)))
    b0 = a0 / slope if slope > 0 else float(np.ptp(x))

    def residual(p: NDArray[np.float64]) -> NDArray[np.float64]:
        a, b, c = p
        model = a * np.sqrt(1.0 + ((x - c) / b) ** 2)
        return np.asarray(np.sqrt(w) * (model - y), dtype=np.float64)

    span = float(np.ptp(x))
    lower = np.array([1e-9 * a0, 1e-6 * span, x.min() - span])
    upper = np.array([np.inf, 100.0 * span, x.max() + span])
    # The start inside the bounds whatever the data (a start on a bound is refused).
    start = np.clip([a0, b0, c0], lower * (1 + 1e-9) + 1e-12, upper * (1 - 1e-9))
    res = least_squares(
        residual, x0=start, bounds=(lower, upper), x_scale=[a0, start[1], span / 10.0]
    )
    a, b, c = (float(v) for v in res.x)
    rms = float(np.sqrt(np.mean(res.fun**2)))  # weighted: the weights average 1
    # hfr = 2a where ((x - c) / b)^2 = 3.
    return FocusFit("hyperbola", c, a, b * math.sqrt(3.0), rms, int(x.size), (a, b, c))


def _parabola(x: NDArray[np.float64], y: NDArray[np.float64], w: NDArray[np.float64]) -> FocusFit:
    """Weighted least squares for ``p0 + p1 u + p2 u^2`` about the mean position."""
    mean = float(np.mean(x))
    # np.polyfit weighs the residuals themselves: the square root of the variance weight.
    p2, p1, p0 = (float(v) for v in np.polyfit(x - mean, y, 2, w=np.sqrt(w)))
    if p2 <= 0.0:
        raise FocusCurveError("the points curve down, not up: no V")
    u = -p1 / (2.0 * p2)
    best = p0 - p1 * p1 / (4.0 * p2)
    if best <= 0.0:
        raise FocusCurveError(f"the parabola's minimum HFR {best:.2f} px is not positive")
    residual = p0 + p1 * (x - mean) + p2 * (x - mean) ** 2 - y
    rms = float(np.sqrt(np.mean(w * residual**2)))
    return FocusFit(
        "parabola", mean + u, best, math.sqrt(best / p2), rms, int(x.size), (p0, p1, p2)
    )
