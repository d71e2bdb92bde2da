"""The labelled variable-star population and the new kinds' light-curve shapes.

Truth is `VariableStar.mag`, the simulator's own light curve.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from obsctl.simulators.population import (
    CLASSES,
    draw_star,
    photometric_error,
    population,
    shows_class,
    truncate,
)
from obsctl.simulators.variables import VariableStar


def star(kind, **kw) -> VariableStar:
    return VariableStar("x", kind, 10.0, 10.0, mag_v=12.0, **kw)


def test_same_seed_same_curves_other_seed_other_curves() -> None:
    a, b = population(22, seed=5), population(22, seed=5)
    c = population(22, seed=6)
    assert [x.label for x in a] == [x.label for x in b] == list(CLASSES) * 2
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.t, y.t)
        np.testing.assert_array_equal(x.mag, y.mag)
        np.testing.assert_array_equal(x.err, y.err)
        assert x.params == y.params
    assert not np.array_equal(a[0].mag[:5], c[0].mag[:5])


def test_curves_have_real_cadences_errors_and_truth() -> None:
    curves = population(44, seed=3, min_points=10, max_points=300)
    for c in curves:
        t, _, err, label, params = c.as_tuple()
        assert 10 <= t.size <= 300 and np.all(np.diff(t) >= 0)
        assert params["cadence"] in ("continuous", "sparse") and label in CLASSES
        assert 10 <= params["baseline_nights"] <= 731
        assert np.all(err >= 0.8 * 0.003)  # the floor, times the under-estimate
        # Nights: no point in daytime (each night's points within 8 h of its start).
        assert np.all(np.mod(t - 60_000.0, 1.0) < 8.0 / 24.0 + 1e-3)
    gaps = np.concatenate([np.diff(np.unique(np.floor(c.t))) for c in curves])
    assert gaps.max() > 60  # a season's gap somewhere
    # The errors follow the CCD equation: faint stars noisier.
    m = np.array([10.0, 14.0, 16.0])
    e = photometric_error(m, m0_mag=15.0)
    assert e[0] == pytest.approx(0.003, rel=0.2) and e[0] < e[1] < e[2]


def test_sparse_classes_show_their_events() -> None:
    """Every eclipse, transit or flare curve has >= 3 points >= 2 sigma off in its truth."""
    curves = population(110, seed=8, min_points=10, max_points=60)
    for c in curves:
        if c.label in ("ea", "transit", "flare"):
            true = c.star.mag("V", c.t)
            sigma = photometric_error(true, m0_mag=c.params["m0_mag"])
            assert np.sum(np.abs(true - c.params["mag_v"]) >= 2.0 * sigma) >= 3, c.label
        assert shows_class(c)
    # A transit observed only out of transit does not show: its first points before one.
    transit = next(c for c in curves if c.label == "transit")
    phase = np.mod(transit.t - transit.star.epoch_mjd, transit.star.period_d)
    half = 0.5 * transit.star.duration_d
    out = np.flatnonzero((phase > half) & (phase < transit.star.period_d - half))
    blind = replace(transit, t=transit.t[out], mag=transit.mag[out], err=transit.err[out])
    assert not shows_class(blind)
    # Classes with a signal all the time always show.
    assert all(shows_class(truncate(c, 10)) for c in curves if c.label in ("rrab", "constant"))


def test_truncate_keeps_the_first_points() -> None:
    c = population(1, seed=1, min_points=30)[0]
    cut = truncate(c, 20)
    assert cut.t.size == 20 and cut.params["n_points"] == 20
    np.testing.assert_array_equal(cut.mag, c.mag[:20])
    assert truncate(c, 10_000).t.size == c.t.size


def test_contact_minima_nearly_equal_algol_minima_unequal() -> None:
    ew = star("contact", period_d=0.4, amplitude_mag=0.5)
    p0, p5, q = ew.delta_mag([0.0, 0.2, 0.1])
    assert p0 == pytest.approx(0.5) and 0.85 < p5 / p0 < 1.0 and q == pytest.approx(0.0)
    t = np.linspace(0.0, 0.4, 4001)
    assert np.all(ew.delta_mag(t) > 0.0) or np.mean(ew.delta_mag(t) > 0.01) > 0.8  # continuous
    ea = draw_star("ea", np.random.default_rng(2))
    e0 = float(ea.delta_mag(ea.epoch_mjd))
    e5 = float(ea.delta_mag(ea.epoch_mjd + ea.period_d / 2))
    assert e0 == pytest.approx(ea.amplitude_mag) and e5 / e0 <= 0.8
    # Out of eclipse an Algol is flat.
    assert ea.delta_mag(ea.epoch_mjd + ea.period_d / 4) == 0.0


def test_pulsators_have_their_rise_times_and_periods() -> None:
    t = np.linspace(0.0, 1.0, 100_001)
    for kind, rise in (("rrc", 0.42), ("dcep", 0.3)):
        s = star(kind, period_d=1.0, amplitude_mag=0.5)
        d = s.delta_mag(t)
        assert d.max() - d.min() == pytest.approx(0.5, abs=0.01)
        assert 1.0 - t[np.argmax(d)] == pytest.approx(rise, abs=0.02)  # minimum to maximum
    dsct = star("dscuti", period_d=0.1, amplitude_mag=0.1, period2_d=0.077, amplitude2_mag=0.05)
    d = dsct.delta_mag(np.linspace(0.0, 10.0, 200_001))
    assert 0.1 < d.max() - d.min() <= 0.15 + 1e-9  # two modes beat
    assert star("dscuti", period_d=0.1, amplitude_mag=0.1).delta_mag(0.025) == pytest.approx(0.05)


def test_lpv_is_large_and_changes_from_cycle_to_cycle() -> None:
    lpv = star("lpv", period_d=200.0, amplitude_mag=3.0, seed=4)
    t = np.arange(0.0, 2000.0, 1.0)
    d = lpv.delta_mag(t)
    assert d.max() - d.min() > 2.0
    cycles = [np.ptp(d[i * 200 : (i + 1) * 200]) for i in range(10)]
    assert np.std(cycles) > 0.05  # not strictly periodic
    np.testing.assert_array_equal(d, star("lpv", period_d=200.0, amplitude_mag=3.0, seed=4)
                                  .delta_mag(t))  # fmt: skip


def test_irregular_is_a_deterministic_function_of_time() -> None:
    irr = star("irregular", amplitude_mag=0.2, timescale_d=5.0, seed=9)
    t = np.linspace(0.0, 500.0, 5001)
    d = irr.delta_mag(t)
    assert np.std(d) == pytest.approx(0.2, rel=0.35)
    # Point by point, in another order, the same values.
    assert irr.delta_mag(t[1234]) == pytest.approx(d[1234])
    np.testing.assert_allclose(irr.delta_mag(t[::-1]), d[::-1])
    other = star("irregular", amplitude_mag=0.2, timescale_d=5.0, seed=10).delta_mag(t)
    assert not np.allclose(d, other)


def test_flares_rise_faster_than_they_decay() -> None:
    flare = star("flare", amplitude_mag=0.5, rate_per_d=1.0, rise_d=5 / 1440, fade_d=30 / 1440,
                 seed=3)  # fmt: skip
    t = np.arange(0.0, 20.0, 0.5 / 1440)
    d = flare.delta_mag(t)
    assert np.median(d) == 0.0 and d.min() < -0.1  # quiescent, then flares (brighter)
    peak = int(np.argmin(d))
    level = 0.1 * d[peak]
    before = np.flatnonzero(d[:peak][::-1] > level)[0] + 1
    after = np.flatnonzero(d[peak:] > level)[0]
    assert before < after / 3
    assert 5 <= np.sum((d[1:] < -0.01) & (d[:-1] >= -0.01)) <= 40  # ~1 a day over 20 days
