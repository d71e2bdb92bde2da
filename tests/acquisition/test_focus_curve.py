"""The V-curve fit on half-flux radii measured by SEP in rendered frames of known focus.

Truth from the inputs: the simulator's best focus, and the V's half-width from the physics
(in focus the seeing, far out a ring of radii ``a R`` and ``R`` whose half-light radius is
``R sqrt((1 + a^2) / 2)``), never from the fit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sep

from obsctl.acquisition.focus_curve import FocusCurveError, fit_focus_curve
from obsctl.simulators import scenes
from obsctl.simulators.render import render_exposure

SIZE = 320
BEST = 30_013.0  # between the positions tried
PX_PER_STEP = 1.0 / 16.0  # blur radius per step off focus: 1 um steps, f/4, 2 um pixels
OBSTRUCTION = 0.35


def median_hfr(defocus_px: float, seed: int) -> float:
    """Median half-flux radius (pixel) by SEP of one rendered frame's bright isolated stars.

    Measured at the truth's positions: finding rings in a frame is the autofocus's job, not
    the fit's.
    """
    sensor = scenes.sensor(width_px=SIZE, height_px=SIZE, seed=seed)
    scene = scenes.sky(
        ra_deg=120.0, dec_deg=30.0, pixel_scale_arcsec=1.5, seeing_arcsec=3.0,
        catalog_seed=3, density_per_deg2=1500.0, mag_limit=14.0,
        defocus_px=defocus_px, obstruction=OBSTRUCTION,
    )  # fmt: skip
    result = render_exposure(sensor, scenes.exposure(sensor, exposure_s=30.0), scene)
    data = result.image.astype(np.float64)
    data -= sep.Background(data).back()
    rmax = 4.0 + 1.5 * defocus_px
    x, y, flux = result.stars["x"], result.stars["y"], result.stars["flux_e"]
    apart = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    apart[flux[None, :] < 0.1 * flux[:, None]] = np.inf
    np.fill_diagonal(apart, np.inf)
    keep = (apart.min(axis=1) > 2 * rmax) & (flux > 2e4) & (x > rmax) & (y > rmax)
    keep &= (x < SIZE - rmax) & (y < SIZE - rmax)
    r, _ = sep.flux_radius(data, x[keep], y[keep], np.full(int(keep.sum()), rmax), 0.5)
    return float(np.median(r))


@pytest.fixture(scope="module")
def run() -> tuple[np.ndarray, np.ndarray]:
    """Nine frames 40 steps apart around focus (a focus run), each with its own noise."""
    positions = 30_000.0 + 40.0 * np.arange(-4, 5)
    hfr = [median_hfr(abs(p - BEST) * PX_PER_STEP, seed=i) for i, p in enumerate(positions)]
    return positions, np.array(hfr)


def test_the_hyperbola_finds_the_true_best_focus(run) -> None:
    positions, hfr = run
    fit = fit_focus_curve(positions, hfr)
    in_focus = hfr[np.argmin(np.abs(positions - BEST))]
    # Where sqrt(h0^2 + (k d s)^2) = 2 h0: s the ring's half-light factor.
    ring = math.sqrt((1.0 + OBSTRUCTION**2) / 2.0)
    half_width = math.sqrt(3.0) * in_focus / (PX_PER_STEP * ring)
    print(f"best {fit.best_position:.1f} (truth {BEST}), half-width {half_width:.0f} steps")
    assert abs(fit.best_position - BEST) < 0.02 * half_width
    assert fit.half_width_steps == pytest.approx(half_width, rel=0.25)
    assert fit.best_hfr_px == pytest.approx(in_focus, rel=0.15)


def test_the_parabola_for_comparison(run) -> None:
    positions, hfr = run
    hyperbola = fit_focus_curve(positions, hfr)
    near = np.abs(positions - BEST) < 100  # the V's bottom: 5 points
    fit = fit_focus_curve(positions[near], hfr[near], model="parabola")
    print(f"parabola {fit.best_position:.1f}, hyperbola {hyperbola.best_position:.1f}")
    assert fit.model == "parabola" and abs(fit.best_position - BEST) < 0.1 * fit.half_width_steps
    # Over the whole run the parabola cannot follow the V's straight arms.
    with pytest.raises(FocusCurveError, match="scatter"):
        fit_focus_curve(positions, hfr, model="parabola")


def test_a_run_that_misses_focus_is_refused(run) -> None:
    positions, hfr = run
    # One arm only, focus beyond the last position: no two positions past the minimum.
    with pytest.raises(FocusCurveError, match="not inside the positions"):
        fit_focus_curve(positions[:5] - 200, hfr[:5] + np.linspace(2.0, 0.0, 5))
    with pytest.raises(FocusCurveError, match="not inside the positions"):
        fit_focus_curve(positions[:6] - 400, np.linspace(9.0, 4.0, 6))


def test_too_few_points_flat_or_scattered_are_refused() -> None:
    x = np.arange(9) * 50.0
    with pytest.raises(FocusCurveError, match="a V needs 5"):
        fit_focus_curve(x[:4], [3.0, 2.0, 2.0, 3.0])
    with pytest.raises(FocusCurveError, match="a V needs 5"):
        fit_focus_curve(x, [3.0, np.nan, 0.0, -1.0, 2.0, np.inf, 2.5, np.nan, 4.0])
    with pytest.raises(FocusCurveError, match="no V"):
        fit_focus_curve(x, np.full(9, 2.0) + 0.001 * np.sin(x))
    rng = np.random.default_rng(1)
    with pytest.raises(FocusCurveError, match="scatter"):
        fit_focus_curve(x, 2.0 + np.abs(x - 200) / 100 + rng.normal(0, 1.0, 9))


@pytest.mark.parametrize(
    "hfr",
    [
        [1e-9, 5.0, 9.0, 12.0, 20.0, 30.0],
        [1e12, 1.0, 1e12, 1.0, 1e12, 1.0],
        [2.0, 2.0, 2.0, 2.0, 2.0, 2.0],
        [9.0, 7.0, 5.0, 3.0, 2.0, 1.5],
        [3.0, 1.0, 1e-6, 1.0, 3.0, 5.0],
    ],
)
def test_odd_points_give_a_fit_or_a_reason_never_another_error(hfr: list[float]) -> None:
    x = 1_000.0 + 25.0 * np.arange(6)
    try:
        fit = fit_focus_curve(x, hfr)
    except FocusCurveError:
        return
    assert x.min() < fit.best_position < x.max() and fit.best_hfr_px > 0
