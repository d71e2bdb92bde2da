"""Period search on simulated variables; the truth is the simulator's period, never the code's."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.timeseries import LombScargle

from obsctl.simulators.population import population
from obsctl.simulators.variables import VariableStar
from obsctl.timeseries.features import search_light_curve_period
from obsctl.timeseries.fourier_series import fourier_chi2
from obsctl.timeseries.periods import (
    PeriodSearchError,
    _prefer_shorter,
    _Scored,
    folded_model,
    minima_per_cycle,
    period_is_determined,
    search_period,
)

NOISE_MAG = 0.01


def monitoring_times(
    rng: np.random.Generator, *, nights: int = 40, per_night: int = 3, weather_loss: float = 0.2
) -> np.ndarray:
    """A few points per night inside an 8 h window, with nights lost to weather (MJD)."""
    t: list[float] = []
    for night in range(nights):
        if rng.random() < weather_loss:
            continue
        t += list(60000.0 + night + 0.05 + np.sort(rng.uniform(0.0, 1.0 / 3.0, per_night)))
    return np.array(t)


def light_curve(
    star: VariableStar, seed: int, *, noise: float = NOISE_MAG, **sampling: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = monitoring_times(rng, **sampling)
    mag = star.mag("V", t) + rng.normal(0.0, noise, t.size)
    return t, mag, np.full(t.size, noise)


def star(kind: str, **kw: float) -> VariableStar:
    return VariableStar(f"test-{kind}", kind, 10.0, 20.0, 12.0, **kw)  # type: ignore[arg-type]


def rel_err(found: float, truth: float) -> float:
    return abs(found - truth) / truth


@pytest.mark.parametrize("seed", [1, 2])
def test_eclipsing_binary_at_its_period_not_a_harmonic_or_alias(seed: int) -> None:
    eb = star("eclipsing", period_d=1.37, amplitude_mag=0.5, duration_d=0.15, epoch_mjd=60000.3)
    t, mag, err = light_curve(eb, seed)
    result = search_period(t, mag, err)
    assert rel_err(result.period_d, eb.period_d) < 1e-3, result.candidates[:5]
    # Unequal eclipses: the half period is among the candidates and scored worse.
    half = [c for c in result.candidates if rel_err(c.period_d, eb.period_d / 2) < 1e-2]
    assert half
    assert all(c.bic > result.candidates[0].bic for c in half)


@pytest.mark.parametrize(
    ("kind", "period_d", "amplitude_mag"), [("sine", 0.71, 0.1), ("rrlyrae", 0.567, 0.8)]
)
def test_sinusoid_and_sawtooth(kind: str, period_d: float, amplitude_mag: float) -> None:
    var = star(kind, period_d=period_d, amplitude_mag=amplitude_mag, epoch_mjd=60000.1)
    t, mag, err = light_curve(var, 3)
    result = search_period(t, mag, err)
    assert rel_err(result.period_d, period_d) < 1e-3
    assert result.false_alarm < 1e-6
    # Half the peak-to-peak: the semi-amplitude of the sine, half the RR Lyrae's full range.
    expected = amplitude_mag if kind == "sine" else amplitude_mag / 2
    assert result.amplitude_mag == pytest.approx(expected, rel=0.15)


def test_transit_found_by_bls() -> None:
    transit = star("transit", period_d=3.3, depth=0.01, duration_d=0.12, epoch_mjd=60000.2)
    t, mag, err = light_curve(transit, 4, noise=0.002, nights=60, per_night=6)
    result = search_period(t, mag, err, bls_bootstrap=5)
    # 11 points in transit over 60 nights: the box's period is good to a few 0.1 %.
    assert rel_err(result.period_d, transit.period_d) < 5e-3, result.candidates[:5]
    assert result.method == "bls"
    assert any(c.origin.startswith("bls") for c in result.candidates)
    # The bootstrap FAP is (k + 1) / (n + 1): no shuffle beat the transit.
    assert result.false_alarm == pytest.approx(1 / 6)


@pytest.mark.parametrize("seed", [5, 6, 7])
@pytest.mark.parametrize("use_bls", [False, True])
def test_constant_star_has_a_high_false_alarm_probability(seed: int, use_bls: bool) -> None:
    t, mag, err = light_curve(star("constant"), seed)
    result = search_period(t, mag, err, use_bls=use_bls)
    assert result.false_alarm > 0.1


def test_transit_false_alarm_probability_by_default_is_analytic_and_small() -> None:
    transit = star("transit", period_d=3.3, depth=0.01, duration_d=0.12, epoch_mjd=60000.2)
    t, mag, err = light_curve(transit, 4, noise=0.002, nights=60, per_night=6)
    result = search_period(t, mag, err)
    assert result.method == "bls"
    assert result.false_alarm < 1e-6
    # Half the model's peak-to-peak: half the 1 % (0.0109 mag) depth.
    assert result.amplitude_mag == pytest.approx(0.5 * -2.5 * math.log10(0.99), rel=0.2)


def test_sweep_of_sinusoid_periods() -> None:
    """>= 95 % of sinusoids with 0.05-2 d periods (>= 50 points, 60 nights) within 0.1 %.

    Longer periods need a longer baseline: over 60 nights a 0.1 mag sinusoid at S/N 10 per
    point pins the frequency to ~1e-4 / d, which is 0.1 % only for P <~ 4 d.
    """
    rng = np.random.default_rng(7)
    periods = np.exp(rng.uniform(math.log(0.05), math.log(2.0), 20))
    hits = 0
    for i, p in enumerate(periods):
        var = star("sine", period_d=float(p), amplitude_mag=0.1, epoch_mjd=float(rng.uniform()))
        t, mag, err = light_curve(var, 100 + i, nights=60, per_night=2)
        assert t.size >= 50
        hits += rel_err(search_period(t, mag, err, use_bls=False).period_d, float(p)) < 1e-3
    assert hits / periods.size >= 0.95


def test_too_few_points_is_a_typed_error() -> None:
    t = np.arange(5.0)
    with pytest.raises(PeriodSearchError) as info:
        search_period(t, np.zeros(5), np.full(5, 0.01))
    assert info.value.n_points == 5


def test_too_short_a_span_is_a_typed_error() -> None:
    t = 60000.0 + np.linspace(0.0, 0.08, 30)  # 0.08 d: not two cycles of 0.05 d
    with pytest.raises(PeriodSearchError) as info:
        search_period(t, np.zeros(t.size), np.full(t.size, 0.01))
    assert info.value.n_points == 30
    assert info.value.span_d == pytest.approx(0.08)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "freq",
    # From one cycle over the 30 d span: below it the 3- and 4-harmonic normal equations are
    # so ill-conditioned that astropy and an SVD solution differ by more than 1e-6 too.
    [np.linspace(0.05, 3.0, 40), np.arange(1.0 / 30.0, 6.0, 1.0 / 150.0)],
    ids=["direct", "uniform-grid-recurrence"],
)
def test_batched_multiterm_power_matches_astropy(freq: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0.0, 30.0, 80))
    y = np.sin(2.0 * t) ** 3 + rng.normal(0.0, 0.1, t.size)
    e = np.full(t.size, 0.1)
    w = 1.0 / e**2
    y -= np.sum(w * y) / np.sum(w)
    chi2_0 = np.sum(w * y**2)
    for nterms in (1, 2, 3, 4):
        ours = 1.0 - fourier_chi2(t - t.mean(), y, w, freq, nterms) / chi2_0
        theirs = LombScargle(t, y, e, nterms=nterms).power(freq, method="chi2")
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_sine_on_five_short_nights_is_not_overfit_at_a_long_period() -> None:
    """Regression: 3.015 d was chosen for this 0.6137 d sine (timeseries_sky sampling).

    Five nights over ten days, 16 frames 0.0167 d apart (0.25 d a night): a long period with
    several harmonics can fit five short segments one by one; the judge must not let it.
    Over a 10.25 d span the period itself is only so precise: 80 points of a 0.08 mag sine
    pin the frequency to ``sqrt(6 / N) sigma / (pi T A)``, 0.035 % of the period at 0.005
    mag noise but 0.07 % at 0.01 mag, so 0.1 % is asserted at 0.005 mag, and at 0.01 mag
    only that the right peak (not an alias, >= 6 % away) wins.
    """
    sine = VariableStar("VSINE", "sine", 150.0, 20.0, mag_v=12.8, period_d=0.6137,
                        epoch_mjd=61000.05, amplitude_mag=0.08)  # fmt: skip
    nights, per_night, start, cadence = (61000, 61001, 61003, 61006, 61010), 16, 0.12, 0.0167
    t = np.array([n + start + k * cadence for n in nights for k in range(per_night)])
    for seed, noise, tolerance in ((11, 0.005, 1e-3), (12, 0.005, 1e-3), (13, 0.005, 1e-3),
                                   (14, 0.01, 4e-3), (15, 0.01, 4e-3)):  # fmt: skip
        rng = np.random.default_rng(seed)
        mag = sine.mag("V", t) + rng.normal(0.0, noise, t.size)
        result = search_period(t, mag, np.full(t.size, noise))
        assert rel_err(result.period_d, sine.period_d) < tolerance, result.candidates[:5]


def test_errors_quoted_too_small_do_not_let_a_long_period_win() -> None:
    """The same five nights with 0.01 mag noise quoted as 0.004 mag: chi-square is six times
    too large, which must not shrink the BIC's penalty on harmonics (the right peak wins)."""
    sine = VariableStar("VSINE", "sine", 150.0, 20.0, mag_v=12.8, period_d=0.6137,
                        epoch_mjd=61000.05, amplitude_mag=0.08)  # fmt: skip
    nights, per_night, start, cadence = (61000, 61001, 61003, 61006, 61010), 16, 0.12, 0.0167
    t = np.array([n + start + k * cadence for n in nights for k in range(per_night)])
    for seed in range(20, 26):
        rng = np.random.default_rng(seed)
        mag = sine.mag("V", t) + rng.normal(0.0, 0.01, t.size)
        result = search_period(t, mag, np.full(t.size, 0.004))
        assert rel_err(result.period_d, sine.period_d) < 4e-3, result.candidates[:5]


def test_eclipsing_binary_of_the_monitoring_config_and_plan() -> None:
    """The EB of configs/monitoring.toml observed as configs/plans/monitoring.toml plans it.

    One frame every 20 minutes for ~8 h on the local nights of 2025-11-21, 22, 24, 27 and 28
    (MJD 61000 is 2025-11-21; the field is up ~06-14 h UTC of the next date in November).
    """
    eb = VariableStar("VECL", "eclipsing", 149.985, 20.03, mag_v=13.2, period_d=1.37,
                      epoch_mjd=61000.3, amplitude_mag=0.5, duration_d=0.15)  # fmt: skip
    t = np.array(
        [n + 1.25 + k / 72.0 for n in (61000, 61001, 61003, 61006, 61007) for k in range(24)]
    )
    rng = np.random.default_rng(13)
    mag = eb.mag("V", t) + rng.normal(0.0, 0.01, t.size)
    result = search_period(t, mag, np.full(t.size, 0.01))
    assert rel_err(result.period_d, eb.period_d) < 1e-3, result.candidates[:5]
    # Minimum light is mid primary eclipse: a whole number of periods from the simulator's.
    cycles = (result.epoch - eb.epoch_mjd) / eb.period_d
    assert abs(cycles - round(cycles)) < 0.01


@pytest.mark.parametrize("kind", ["sine", "eclipsing"])
def test_folded_model_follows_the_folded_truth(kind: str) -> None:
    var = star(kind, period_d=0.83, amplitude_mag=0.3, duration_d=0.1, epoch_mjd=60000.2)
    t, mag, err = light_curve(var, 21)
    result = search_period(t, mag, err)
    phase, model = folded_model(result, n_phase=400)
    assert phase.shape == model.shape == (400,)
    assert np.all(np.diff(phase) > 0) and phase[0] >= 0.0 and phase[-1] < 1.0
    truth = var.mag("V", result.epoch + phase * var.period_d)
    # Phase zero is minimum light, so the model and the truth line up without a shift.
    assert np.sqrt(np.mean((model - truth) ** 2)) < 0.03
    expected = {"sine": "ls", "eclipsing": "bls"}[kind]
    assert result.method == expected


def test_preferring_shorter_periods_ends_at_the_lowest_frequencies() -> None:
    """Near 1 / span the tolerance is wider than the frequency: no candidate is its own 2P.

    A light curve whose best period was near its time span made the search loop forever
    (found by the classifier's training on LPV and irregular curves).
    """
    df = 0.01
    best = _Scored(bic=0.0, freq=0.1 * df, origin="ls", nterms=1, eclipse=None)
    near = _Scored(bic=5.0, freq=0.15 * df, origin="ls:2P", nterms=1, eclipse=None)
    half = _Scored(bic=8.0, freq=0.2 * df + 0.5 * df, origin="ls:P/2", nterms=1, eclipse=None)
    assert _prefer_shorter([best, near], df) is best
    assert _prefer_shorter([best, near, half], df) is half


def test_eclipsing_binary_as_the_monitoring_demo_observed_it() -> None:
    """The demo's own sampling: 13-15 frames 20 min apart from ~08:40 UTC, five nights.

    Measured in a run of the five demo nights (configs/plans/monitoring.toml at 400x): the
    field is above 25 deg in the dark for about 4.5 h. There, with three peaks per
    periodogram, the true period was not among the candidates and 0.82 d won.
    """
    eb = VariableStar("VECL", "eclipsing", 149.985, 20.03, mag_v=13.2, period_d=1.37,
                      epoch_mjd=61000.3, amplitude_mag=0.5, duration_d=0.15)  # fmt: skip
    nights = ((61001.3694, 13), (61002.3670, 13), (61004.3635, 14), (61007.3557, 14),
              (61008.3513, 15))  # fmt: skip
    t = np.concatenate([start + np.arange(n) / 72.0 for start, n in nights])
    rng = np.random.default_rng(21)
    mag = eb.mag("V", t) + rng.normal(0.0, 0.007, t.size)
    result = search_light_curve_period(t, mag, np.full(t.size, 0.007))
    assert result is not None
    assert rel_err(result.period_d, eb.period_d) < 1e-3, result.candidates[:5]


def test_eclipsing_binaries_of_the_population_at_their_period_not_half() -> None:
    """Two minima a little unequal: the period is the one that tells them apart.

    The same 24 curves of each class (the population's plans and errors) were found at
    their period 14 (EW) and 9 (EA) times before the search tested the doubled period; it
    finds 20 and 12 now.
    """
    for label, at_least in (("ew", 18), ("ea", 11)):
        curves = population(24, seed=5, classes=(label,), min_points=50)
        ratios = []
        for curve in curves:
            result = search_light_curve_period(curve.t, curve.mag, curve.err)
            assert result is not None
            ratios.append(result.period_d / curve.star.period_d)
        exact = sum(abs(r - 1.0) < 1e-3 for r in ratios)
        assert exact >= at_least, (label, np.round(ratios, 3))


@pytest.mark.parametrize(
    ("kind", "extra", "minima"),
    [("eclipsing", {"duration_d": 0.1}, 2), ("sine", {}, 1), ("rrlyrae", {}, 1)],
)
def test_minima_per_cycle_of_the_chosen_model(kind: str, extra: dict, minima: int) -> None:
    var = star(kind, period_d=0.83, amplitude_mag=0.4, epoch_mjd=60000.2, **extra)
    t, mag, err = light_curve(var, 5)
    result = search_period(t, mag, err)
    assert rel_err(result.period_d, var.period_d) < 1e-3
    assert minima_per_cycle(result) == minima


def test_one_eclipse_or_one_transit_leaves_the_period_undetermined() -> None:
    """Five nights in a row of the demo (14-15 frames 20 min apart from ~08:30 UTC).

    Measured in a run of five consecutive demo nights: the EB of configs/monitoring.toml
    showed one primary and one secondary eclipse, the transit one transit. Many periods fit
    as well; the search's best is not reported as the period. The same EB over the README's
    nights (two primaries) is determined.
    """
    nights = ((61001.3575, 14), (61002.3544, 14), (61003.3532, 14), (61004.3507, 15),
              (61005.3481, 15))  # fmt: skip
    t = np.concatenate([start + np.arange(n) / 72.0 for start, n in nights])
    eb = VariableStar("VECL", "eclipsing", 149.985, 20.03, mag_v=13.2, period_d=1.37,
                      epoch_mjd=61000.3, amplitude_mag=0.5, duration_d=0.15)  # fmt: skip
    transit = VariableStar("VTRANSIT", "transit", 149.976, 20.022, mag_v=12.3, period_d=2.71,
                           epoch_mjd=61004.45, depth=0.01, duration_d=0.125)  # fmt: skip
    rng = np.random.default_rng(3)
    for var, noise in ((eb, 0.007), (transit, 0.0045)):
        mag = var.mag("V", t) + rng.normal(0.0, noise, t.size)
        result = search_light_curve_period(t, mag, np.full(t.size, noise))
        assert result is not None
        assert not period_is_determined(result), (var.name, result.period_d, result.rival_bic)
    readme = ((61001.3694, 13), (61002.3670, 13), (61004.3635, 14), (61007.3557, 14),
              (61008.3513, 15))  # fmt: skip
    t = np.concatenate([start + np.arange(n) / 72.0 for start, n in readme])
    mag = eb.mag("V", t) + rng.normal(0.0, 0.007, t.size)
    result = search_light_curve_period(t, mag, np.full(t.size, 0.007))
    assert result is not None and period_is_determined(result)
    assert rel_err(result.period_d, eb.period_d) < 1e-3


def test_a_period_longer_than_half_the_span_is_undetermined() -> None:
    lpv = star("sine", period_d=30.0, amplitude_mag=1.0, epoch_mjd=60000.0)
    t, mag, err = light_curve(lpv, 4, nights=40)
    result = search_period(t, mag, err, max_period_d=40.0)
    assert result.cycles < 2.0 and not period_is_determined(result)
