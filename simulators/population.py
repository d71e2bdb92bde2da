"""A labelled population of simulated variable stars, observed as a monitoring plan would.

Each star is a `obsctl.simulators.variables.VariableStar` of one of the variable-star
classifier's classes (`CLASSES`), with parameters drawn from ranges like the published ones
(the comment on each class gives the source), observed at a real cadence (a monitoring plan
that visits the field either continuously for a few hours or a few times a night, losing
cloudy nights in runs and the months the field is behind the Sun) and with the errors the
photometry delivers (the CCD equation plus a floor, errors a little under-estimated, and
occasional outliers). `population` returns the labelled curves (an eclipsing binary, transit
or flare curve only if its points show an event, `shows_class`), `truncate` cuts one to its
first points (the classification-quality-vs-points curve). Everything is a function of the
seed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from obsctl.simulators.variables import VariableKind, VariableStar

__all__ = [
    "CLASSES",
    "KIND_OF_CLASS",
    "MIN_SIGNAL_POINTS",
    "SIGNAL_SIGMA",
    "SPARSE_CLASSES",
    "LabelledCurve",
    "draw_star",
    "observing_times",
    "photometric_error",
    "population",
    "shows_class",
    "simulate_curve",
    "truncate",
]

log = logging.getLogger(__name__)

#: The variable-star classes, in the classifier's order. ``ea`` is a detached (Algol)
#: eclipsing binary, ``ew`` a contact (W UMa) one; ``rrab`` and ``rrc`` the fundamental and
#: first-overtone RR Lyrae; ``lpv`` a long-period (Mira-like) variable.
CLASSES: tuple[str, ...] = (
    "constant",
    "rrab",
    "rrc",
    "cepheid",
    "dscuti",
    "ea",
    "ew",
    "transit",
    "lpv",
    "irregular",
    "flare",
)

#: The `VariableStar` kind that draws each class.
KIND_OF_CLASS: dict[str, VariableKind] = {
    "constant": "constant",
    "rrab": "rrlyrae",
    "rrc": "rrc",
    "cepheid": "dcep",
    "dscuti": "dscuti",
    "ea": "eclipsing",
    "ew": "contact",
    "transit": "transit",
    "lpv": "lpv",
    "irregular": "irregular",
    "flare": "flare",
}

_MJD0 = 60_000.0  # the population's time origin (2023 Feb 25); only differences matter
_YEAR_D = 365.25
# The field is observable ~8 months a year (a field near the ecliptic is behind the Sun for
# the rest).
_SEASON_D = 243.0
# Photometric errors: the CCD equation's source term (sigma ~ 1/sqrt(F)) reaches this error
# at the plan's reference magnitude m0, its sky-and-read-noise term (sigma ~ 1/F) the same at
# m0 + _SKY_OFFSET_MAG; then a floor (scintillation, flat field) added in quadrature.
_ERR_AT_M0 = 0.01
_SKY_OFFSET_MAG = 1.0
_ERR_FLOOR_MAG = 0.003
# A star's quiescent magnitude is drawn from m0 - 5 to m0 + _FAINT_LIMIT_MAG (a 1 % error
# at m0; ~4 % at the faint end).
_BRIGHT_RANGE_MAG = 5.0
_FAINT_LIMIT_MAG = 1.0
# A variable is only put in the population if its amplitude is at least this many times the
# error at its quiescent magnitude: a smaller one is not a variable the photometry shows, and
# labelling it one would teach the classifier noise. For transits the limit is stricter
# (their signal is a few in-transit points out of many).
_MIN_SNR = 3.0
_MIN_SNR_TRANSIT = 4.0
#: Classes whose signal covers a small part of the time; see `shows_class`.
SPARSE_CLASSES: tuple[str, ...] = ("ea", "transit", "flare")
#: Points a sparse class's curve needs off its quiescent level (see `shows_class`) ...
MIN_SIGNAL_POINTS = 3
#: ... by at least this many times their error.
SIGNAL_SIGMA = 2.0


@dataclass(frozen=True)
class LabelledCurve:
    """One simulated light curve with its class and the truth it was drawn from.

    Parameters
    ----------
    t : numpy.ndarray of float64
        Times of the points (MJD), increasing.
    mag, err : numpy.ndarray of float64
        Measured magnitudes and their reported errors (mag).
    label : str
        The class, one of `CLASSES`.
    star : VariableStar
        The star; ``star.mag("V", t)`` is the true light curve.
    params : dict
        Truth: the class's drawn parameters, the cadence and the noise model's numbers.
    """

    t: NDArray[np.float64]
    mag: NDArray[np.float64]
    err: NDArray[np.float64]
    label: str
    star: VariableStar
    params: dict[str, Any] = field(default_factory=dict)

    def as_tuple(
        self,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], str, dict[str, Any]]:
        """Return ``(t, mag, err, label, params)``."""
        return self.t, self.mag, self.err, self.label, self.params


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def draw_star(label: str, rng: np.random.Generator, *, name: str = "v") -> VariableStar:
    """Draw one star of a class with parameters from published-like ranges.

    Parameters
    ----------
    label : str
        The class, one of `CLASSES`.
    rng : numpy.random.Generator
        The source of randomness.
    name : str, optional
        The star's name.

    Returns
    -------
    VariableStar
        Quiescent magnitude 12 (`simulate_curve` sets the real one), epoch in the first
        period after `_MJD0`.

    Raises
    ------
    ValueError
        For an unknown class.
    """
    if label not in KIND_OF_CLASS:
        raise ValueError(f"unknown class {label!r}; expected one of {', '.join(CLASSES)}")
    kind = KIND_OF_CLASS[label]
    p: dict[str, Any] = {}
    if label == "rrab":
        # GCVS / OGLE-IV bulge RRab: P 0.45-0.9 d, V amplitudes 0.5-1.3 mag (Bailey diagram,
        # Soszynski et al. 2014, AcA 64, 177).
        p = {"period_d": rng.uniform(0.45, 0.9), "amplitude_mag": rng.uniform(0.5, 1.3)}
    elif label == "rrc":
        # RRc: P 0.2-0.45 d, V amplitudes 0.2-0.55 mag (same source).
        p = {"period_d": rng.uniform(0.2, 0.45), "amplitude_mag": rng.uniform(0.2, 0.55)}
    elif label == "cepheid":
        # Classical Cepheids: P 1-60 d log-uniform, V amplitudes 0.3-1.2 mag (OGLE-III
        # Magellanic Cloud Cepheids, Soszynski et al. 2008, AcA 58, 163; GCVS DCEP).
        p = {"period_d": _log_uniform(rng, 1.0, 60.0), "amplitude_mag": rng.uniform(0.3, 1.2)}
    elif label == "dscuti":
        # delta Scuti: P 0.03-0.25 d (GCVS DSCT: 0.01-0.2 d; HADS to 0.25 d), amplitudes from
        # the low-amplitude few hundredths to HADS ~0.4 mag, log-uniform (Breger 2000, ASP
        # Conf 210, 3); half have a second mode at the first-overtone / fundamental ratio
        # 0.756-0.78 (Poretti et al. 2005), a third to most of the main amplitude.
        p = {"period_d": rng.uniform(0.03, 0.25), "amplitude_mag": _log_uniform(rng, 0.03, 0.4)}
        if rng.random() < 0.5:
            p["period2_d"] = p["period_d"] * rng.uniform(0.756, 0.78)
            p["amplitude2_mag"] = p["amplitude_mag"] * rng.uniform(0.3, 0.8)
    elif label == "ea":
        # Detached (Algol) binaries: P 0.5-20 d log-uniform, primary depth 0.1-1.5 mag,
        # secondary 5-80 % of it (GCVS EA; Kepler EB catalogue, Prsa et al. 2011, AJ 141, 83).
        # The eclipse lasts ~(R1 + R2) / (pi a) of the period, and a ~ P^(2/3) (Kepler's third
        # law), so the fractional duration falls as P^(-2/3): ~10 % at 1 d.
        period = _log_uniform(rng, 0.5, 20.0)
        fraction = min(0.2, 0.1 * period ** (-2.0 / 3.0) * rng.uniform(0.7, 1.4))
        p = {
            "period_d": period,
            "amplitude_mag": rng.uniform(0.1, 1.5),
            "duration_d": max(0.01, fraction) * period,
            "secondary_ratio": rng.uniform(0.05, 0.8),
        }
    elif label == "ew":
        # W UMa: P 0.22-0.8 d, amplitudes 0.1-0.8 mag, minima within ~15 % of each other
        # (GCVS EW; Rucinski 1993).
        p = {
            "period_d": rng.uniform(0.22, 0.8),
            "amplitude_mag": rng.uniform(0.1, 0.8),
            "secondary_ratio": rng.uniform(0.85, 1.0),
        }
    elif label == "transit":
        # Hot and warm Jupiters: P 0.8-10 d, depth 0.5-3 %; a central transit of a Sun-like
        # star lasts ~13 h (P / 365 d)^(1/3), less for a grazing one (Seager & Mallen-Ornelas
        # 2003, ApJ 585, 1038).
        period = rng.uniform(0.8, 10.0)
        p = {
            "period_d": period,
            "depth": rng.uniform(0.005, 0.03),
            "duration_d": 13.0 / 24.0 * (period / 365.25) ** (1.0 / 3.0) * rng.uniform(0.6, 1.0),
        }
    elif label == "lpv":
        # Mira-like: P 80-300 d (semiregulars and short-period Miras; Miras reach 1000 d),
        # V amplitudes 1.5-5 mag (GCVS M > 2.5 mag, SR less; Whitelock 2012).
        p = {"period_d": rng.uniform(80.0, 300.0), "amplitude_mag": rng.uniform(1.5, 5.0)}
    elif label == "irregular":
        # Irregular / red-noise variables (young stars, slow irregulars, AGN-like): rms 0.05-
        # 0.4 mag, damping times 1-50 d (DRW fits of quasar and YSO light curves, MacLeod et
        # al. 2010, ApJ 721, 1014).
        p = {"amplitude_mag": rng.uniform(0.05, 0.4), "timescale_d": _log_uniform(rng, 1.0, 50.0)}
    elif label == "flare":
        # Active M dwarfs (dMe): flares of 0.1-1.5 mag in V rising in minutes and decaying in
        # tens of minutes, at 0.5-2 per day above that size (Hawley et al. 2014, ApJ 797,
        # 121; Gunther et al. 2020, AJ 159, 60). Rarer or smaller flares than that a few
        # points a night cannot tell from a constant star.
        p = {
            "amplitude_mag": _log_uniform(rng, 0.15, 1.5),
            "rate_per_d": rng.uniform(0.5, 2.0),
            "rise_d": rng.uniform(2.0, 15.0) / 1440.0,
            "fade_d": rng.uniform(10.0, 60.0) / 1440.0,
        }
    period = float(p.get("period_d", 1.0))
    p["epoch_mjd"] = _MJD0 + float(rng.uniform(0.0, period))
    p["seed"] = int(rng.integers(0, 2**31 - 1))
    values: dict[str, Any] = {k: (v if isinstance(v, int) else float(v)) for k, v in p.items()}
    return VariableStar(name, kind, 150.0, 20.0, mag_v=12.0, **values)


def observing_times(rng: np.random.Generator) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """Draw a monitoring plan and return the times it observes the field.

    The baseline is 10 nights to 2 years (log-uniform); the field is up 8 months a year;
    cloudy nights come in runs (a two-state Markov chain, 25-40 % of nights lost); the plan
    visits a fraction of the usable nights and then either observes continuously (one
    point every 3-30 minutes for 1-6 hours) or takes 1-4 points at random times of the
    night.

    Parameters
    ----------
    rng : numpy.random.Generator
        The source of randomness.

    Returns
    -------
    numpy.ndarray of float64
        Times (MJD), increasing.
    dict
        The plan: ``cadence`` ("continuous" | "sparse"), ``baseline_nights``,
        ``step_min`` / ``hours`` or ``points_per_night``, ``visit_fraction``,
        ``cloudy_fraction``.
    """
    n_nights = round(_log_uniform(rng, 10.0, 2.0 * _YEAR_D))
    start = _MJD0 + float(rng.integers(0, 365))  # night n starts at MJD n (0 h UT)
    season_offset = float(rng.uniform(0.0, _YEAR_D))
    nights = start + np.arange(n_nights, dtype=np.float64)
    in_season = np.mod(nights - _MJD0 + season_offset, _YEAR_D) < _SEASON_D
    # Weather: P(clear -> cloudy) and P(cloudy -> cloudy) give runs of cloudy nights (mean
    # length 1 / (1 - stay)) and a stationary cloudy fraction go / (go + 1 - stay).
    go, stay = rng.uniform(0.15, 0.3), rng.uniform(0.4, 0.7)
    cloudy = np.zeros(n_nights, dtype=bool)
    state = rng.random() < go / (go + 1.0 - stay)
    draws = rng.random(n_nights)
    for i in range(n_nights):
        state = bool(draws[i] < (stay if state else go))
        cloudy[i] = state
    visit_fraction = float(rng.uniform(0.4, 1.0))
    usable = nights[in_season & ~cloudy & (rng.random(n_nights) < visit_fraction)]
    plan: dict[str, Any] = {
        "baseline_nights": n_nights,
        "visit_fraction": visit_fraction,
        "cloudy_fraction": float(cloudy.mean()),
    }
    chunks = []
    if rng.random() < 0.5:
        step_d = _log_uniform(rng, 3.0, 30.0) / 1440.0
        hours = float(rng.uniform(1.0, 6.0))
        plan.update(cadence="continuous", step_min=step_d * 1440.0, hours=hours)
        for night in usable:
            # The field's window drifts through the night over the season; a night's run
            # starts somewhere in the 8-hour dark time and may be cut short at its end.
            begin = night + float(rng.uniform(0.0, max(0.0, 8.0 - hours))) / 24.0
            n = max(1, int(hours / 24.0 / step_d))
            jitter = rng.uniform(-0.1, 0.1, n) * step_d
            chunks.append(begin + np.arange(n) * step_d + jitter)
    else:
        per_night = int(rng.integers(1, 5))
        plan.update(cadence="sparse", points_per_night=per_night)
        for night in usable:
            chunks.append(np.sort(night + rng.uniform(0.0, 8.0, per_night) / 24.0))
    t = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float64)
    return np.asarray(np.sort(t), dtype=np.float64), plan


def photometric_error(
    mag: NDArray[np.float64], *, m0_mag: float, floor_mag: float = _ERR_FLOOR_MAG
) -> NDArray[np.float64]:
    """Return the magnitude error the photometry delivers at a magnitude (CCD equation).

    ``sigma^2 = floor^2 + s^2 10^(0.4 (m - m0)) + s^2 10^(0.8 (m - m0 - 1))``: the source's
    Poisson noise (sigma ~ F^-1/2), the sky's and the read noise (sigma ~ F^-1, the same at
    one magnitude fainter), with ``s = 0.01`` mag, and a floor in quadrature.

    Parameters
    ----------
    mag : numpy.ndarray of float64
        Magnitudes (mag).
    m0_mag : float
        Magnitude at which the source's own noise is 0.01 mag (the plan's depth).
    floor_mag : float, optional
        Error floor (mag): scintillation, flat-field errors.

    Returns
    -------
    numpy.ndarray of float64
        Errors (mag).
    """
    x = np.asarray(mag, dtype=np.float64) - m0_mag
    var = (
        floor_mag**2
        + _ERR_AT_M0**2 * 10.0 ** (0.4 * x)
        + _ERR_AT_M0**2 * 10.0 ** (0.8 * (x - _SKY_OFFSET_MAG))
    )
    return np.asarray(np.sqrt(var), dtype=np.float64)


def simulate_curve(
    star: VariableStar, t: NDArray[np.float64], rng: np.random.Generator, *, m0_mag: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], dict[str, Any]]:
    """Observe a star at times: noise from `photometric_error`, mis-estimated errors, outliers.

    The reported error is the true one times a per-curve factor of 0.8-1.0 (pipelines
    under-estimate); 0-1 % of the points are outliers, 5-20 times their error off (a cosmic
    ray or a satellite in the aperture, a bad flat; mostly fainter).

    Parameters
    ----------
    star : VariableStar
        The star.
    t : numpy.ndarray of float64
        Times (MJD).
    rng : numpy.random.Generator
        The source of randomness.
    m0_mag : float
        The plan's depth (see `photometric_error`).

    Returns
    -------
    mag, err : numpy.ndarray of float64
        Measured magnitudes and reported errors (mag).
    dict
        The noise model's numbers (``m0_mag``, ``err_scale``, ``outlier_fraction``).
    """
    true = star.mag("V", t)
    sigma = photometric_error(true, m0_mag=m0_mag)
    mag = true + sigma * rng.standard_normal(t.size)
    err_scale = float(rng.uniform(0.8, 1.0))
    outlier_fraction = float(rng.uniform(0.0, 0.01))
    hit = rng.random(t.size) < outlier_fraction
    size = rng.uniform(5.0, 20.0, t.size) * np.where(rng.random(t.size) < 0.7, 1.0, -1.0)
    mag = np.where(hit, mag + size * sigma, mag)
    noise = {"m0_mag": m0_mag, "err_scale": err_scale, "outlier_fraction": outlier_fraction}
    return np.asarray(mag), np.asarray(sigma * err_scale), noise


def _amplitude(star: VariableStar) -> float:
    """Return the signal to compare with the noise: a peak-to-peak-like change (mag)."""
    if star.kind == "transit":
        return -2.5 * math.log10(1.0 - star.depth)
    if star.kind == "irregular":
        return 2.0 * star.amplitude_mag
    return star.amplitude_mag


def population(
    n: int,
    *,
    seed: int,
    classes: tuple[str, ...] = CLASSES,
    min_points: int = 10,
    max_points: int = 300,
    shown_only: bool = True,
) -> list[LabelledCurve]:
    """Draw a labelled population: equal numbers per class, each at its own plan and depth.

    Parameters
    ----------
    n : int
        Number of curves (classes take turns, so ``n // len(classes)`` each at least).
    seed : int
        The seed: the same seed gives the same curves.
    classes : tuple of str, optional
        The classes to draw (a subset of `CLASSES`).
    min_points : int, optional
        Curves with fewer points (a plan clouded out) are redrawn.
    max_points : int, optional
        A plan giving more points keeps a random subset of its nights (whole nights, so the
        cadence within a night stays) until under this; the period search's cost grows with
        the points.
    shown_only : bool, optional
        Draw again a curve that does not show its class (`shows_class`: an eclipsing
        binary, transit or flare star observed between its events). False keeps them, for
        a figure of what such curves cost.

    Returns
    -------
    list of LabelledCurve
        The curves, classes interleaved.
    """
    rng = np.random.default_rng(seed)
    out: list[LabelledCurve] = []
    for i in range(n):
        label = classes[i % len(classes)]
        while True:  # a sparse class's curve that missed every event is drawn again
            curve = _draw_curve(
                label, rng, name=f"{label}-{seed}-{i}", min_points=min_points, max_points=max_points
            )
            if not shown_only or shows_class(curve):
                break
        out.append(curve)
    return out


def _draw_curve(
    label: str, rng: np.random.Generator, *, name: str, min_points: int, max_points: int
) -> LabelledCurve:
    """Draw one star of a class and its light curve (see `population`)."""
    while True:
        t, plan = observing_times(rng)
        if t.size > max_points:
            nights = np.floor(t - 0.5)
            unique = np.unique(nights)
            keep_n = max(1, int(unique.size * max_points / t.size))
            kept = rng.choice(unique, size=keep_n, replace=False)
            t = t[np.isin(nights, kept)][:max_points]
            plan["nights_kept"] = keep_n
        if t.size >= min_points:
            break
    star = draw_star(label, rng, name=name)
    m0 = float(rng.uniform(14.0, 17.0))
    # The quiescent magnitude: anywhere in the plan's range, but bright enough that the
    # variation shows (see _MIN_SNR); a constant star anywhere.
    mag_v = float(rng.uniform(m0 - _BRIGHT_RANGE_MAG, m0 + _FAINT_LIMIT_MAG))
    if label != "constant":
        need = _MIN_SNR_TRANSIT if label == "transit" else _MIN_SNR
        while (
            float(photometric_error(np.array([mag_v]), m0_mag=m0)[0]) * need > _amplitude(star)
            and mag_v > m0 - _BRIGHT_RANGE_MAG - 3.0
        ):
            mag_v -= 0.25
    star = replace(star, mag_v=mag_v)
    mag, err, noise = simulate_curve(star, t, rng, m0_mag=m0)
    params: dict[str, Any] = {
        "kind": star.kind,
        "mag_v": mag_v,
        "period_d": star.period_d,
        "amplitude_mag": star.amplitude_mag,
        "depth": star.depth,
        "duration_d": star.duration_d,
        "seed": star.seed,
        "n_points": int(t.size),
        **plan,
        **noise,
    }
    return LabelledCurve(t, mag, err, label, star, params)


def shows_class(curve: LabelledCurve) -> bool:
    """Whether the curve's points show its class's signal.

    The eclipses, transits and flares of `SPARSE_CLASSES` cover a small fraction of the time,
    so a curve can miss them all: a transit with no point in transit is, to any classifier,
    a constant star, and labelling it a transit teaches noise (the held-out set counted them
    as transits missed). Such a class is shown when at least `MIN_SIGNAL_POINTS` points lie
    at least `SIGNAL_SIGMA` times their error off the quiescent magnitude, in the noise-free
    light curve. Every other class always shows.

    Parameters
    ----------
    curve : LabelledCurve
        A curve of `population` or `truncate`.

    Returns
    -------
    bool
        True when the curve may carry its label.
    """
    if curve.label not in SPARSE_CLASSES:
        return True
    true = curve.star.mag("V", curve.t)
    sigma = photometric_error(true, m0_mag=float(curve.params["m0_mag"]))
    off = np.abs(true - curve.star.quiescent_mag("V")) >= SIGNAL_SIGMA * sigma
    return int(np.count_nonzero(off)) >= MIN_SIGNAL_POINTS


def truncate(curve: LabelledCurve, n_points: int) -> LabelledCurve:
    """Return the curve cut to its first `n_points` points (all of them if it has fewer).

    Parameters
    ----------
    curve : LabelledCurve
        The curve.
    n_points : int
        Points to keep (>= 1).

    Returns
    -------
    LabelledCurve
        The first points; the truth's ``n_points`` updated.
    """
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    k = min(n_points, curve.t.size)
    params = {**curve.params, "n_points": k}
    return replace(curve, t=curve.t[:k], mag=curve.mag[:k], err=curve.err[:k], params=params)
