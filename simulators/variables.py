"""Variable stars and transients in the simulated sky, with their true light curves.

A `VariableStar` sits at a fixed sky position and has a quiescent V magnitude, a colour, and a
light-curve shape: a sinusoid, a detached eclipsing binary (Algol, EA), an RR Lyrae-like
sawtooth (RRab), a planetary transit, a transient that appears, rises and fades, and the
shapes of the variable-star classifier's other classes: a first-overtone RR Lyrae (RRc), a
classical Cepheid (DCEP), a delta Scuti star (one or two modes), a contact binary (W UMa, EW),
a long-period (Mira-like) variable, an irregular (red-noise) variable and a flare star. The
stochastic shapes (LPV cycle-to-cycle changes, irregular, flares) are deterministic functions
of time given their ``seed``, so `VariableStar.mag` stays the truth the tests read.
`add_variable_stars` adds the stars, at the exposure's time, to the synthetic catalog that the
camera renders. The change in magnitude is the same in every band (the
colour of the star is fixed), which is what differential photometry in one filter measures.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from obsctl.simulators.sky import StarCatalog

__all__ = [
    "VARIABLE_ID_BASE",
    "VariableKind",
    "VariableStar",
    "add_variable_stars",
    "variables_from_config",
]

log = logging.getLogger(__name__)

VariableKind = Literal[
    "constant",
    "sine",
    "eclipsing",
    "rrlyrae",
    "transit",
    "transient",
    "rrc",
    "dcep",
    "dscuti",
    "contact",
    "lpv",
    "irregular",
    "flare",
]
# The kinds, for the run-time check (`typing.get_args` of the Literal).
_KINDS: tuple[str, ...] = get_args(VariableKind)

VARIABLE_ID_BASE = -1_000
"""Variable number ``i`` has the star id ``VARIABLE_ID_BASE - i`` (catalog ids are >= 0)."""

# The eclipsing binary's secondary eclipse, at phase 0.5, is this fraction of the primary's
# depth (an Algol-like pair of unequal stars).
_SECONDARY_FRACTION = 0.4
# RR Lyrae (type ab): the rise to maximum takes this fraction of the period, the decline the rest.
_RRL_RISE_PHASE = 0.15
# A transit's ingress and egress each take this fraction of its total duration.
_TRANSIT_INGRESS_FRACTION = 0.1
# A transient is rendered once its flux exceeds this fraction of the peak (27.5 mag below peak
# would be 1e-11; 1e-6 is 15 mag below, far under any detection limit).
_TRANSIENT_MIN_FLUX = 1e-6
# RRc: rise to maximum over ~0.4 of the period, a nearly sinusoidal, slightly asymmetric curve
# (Smolec 2005, AcA 55, 59: RRc rise times 0.35-0.45 of the period).
_RRC_RISE_PHASE = 0.42
# Classical Cepheids rise to maximum over ~0.3 of the period (Soszynski et al. 2008, OGLE-III
# LMC Cepheids, their light-curve templates).
_DCEP_RISE_PHASE = 0.3
# Hertzsprung progression (Bono et al. 2000, ApJ 529, 293): a bump on the descending branch at
# P ~ 6 d moves to maximum light at ~10 d and onto the rising branch by ~16 d; its height is
# this fraction of the amplitude and its width (Gaussian sigma) this fraction of the period.
_DCEP_BUMP_PERIODS_D = (6.0, 16.0)
_DCEP_BUMP_HEIGHT = 0.15
_DCEP_BUMP_WIDTH = 0.05
# A contact binary's secondary minimum is this fraction of the primary's depth by default
# (near-equal minima: the two stars share one envelope and one temperature).
_CONTACT_SECONDARY_FRACTION = 0.92
# Mira-like rise over ~0.4 of the cycle (Mira light curves: rise 0.35-0.5 of the period).
_LPV_RISE_PHASE = 0.42
# LPV cycle-to-cycle changes: amplitude varies by this fraction (rms) and the phase wanders by
# this many cycles (rms) over about one cycle, so the period jitters by a few per cent
# (Templeton et al. 2005, AJ 130, 776: Mira period and amplitude fluctuations).
_LPV_AMPLITUDE_JITTER = 0.15
_LPV_PHASE_JITTER = 0.05
# Components of the random-phase spectral sums that make the red noise (enough for a smooth,
# non-repeating curve over any baseline the population uses).
_RED_NOISE_TERMS = 64
# Flares: one candidate flare per slot of this length (day), so the rate is capped at
# _FLARE_MAX_PER_SLOT / _FLARE_SLOT_D; flare peaks scatter log-uniformly over this factor
# either side of the typical peak (flare energies follow a steep power law).
_FLARE_SLOT_D = 0.25
_FLARE_MAX_PER_SLOT = 0.5
_FLARE_PEAK_SPREAD = 3.0
# A flare contributes until this many e-folding times after its peak (exp(-15) ~ 3e-7).
_FLARE_TAIL_EFOLDS = 15.0


@dataclass(frozen=True)
class VariableStar:
    """One variable star or transient of the simulated sky.

    Parameters
    ----------
    name : str
        Name, for logs and tests.
    kind : {"constant", "sine", "eclipsing", "rrlyrae", "transit", "transient", "rrc", \
"dcep", "dscuti", "contact", "lpv", "irregular", "flare"}
        Light-curve shape.
    ra_deg, dec_deg : float
        ICRS position (deg).
    mag_v : float
        Quiescent V magnitude (mag); for a transient, the V magnitude at peak.
    b_v : float, optional
        B-V colour (mag); other bands follow the synthetic catalog's colour relations.
    period_d : float, optional
        Period (day) of the periodic kinds (the mean period of an LPV; of a delta Scuti star,
        its main mode).
    epoch_mjd : float, optional
        Reference time (MJD): phase zero of a sine or a delta Scuti star, mid primary eclipse
        (eclipsing, contact), maximum light of an RR Lyrae, a Cepheid or an LPV, mid-transit,
        or the peak of a transient; the time origin of the stochastic kinds.
    amplitude_mag : float, optional
        Sine: semi-amplitude (mag). Eclipsing, contact: primary minimum depth (mag). RR
        Lyrae (rrlyrae, rrc), Cepheid, delta Scuti (main mode), LPV (mean over cycles):
        peak-to-peak amplitude (mag). Irregular: rms (mag). Flare: typical flare peak (mag
        above quiescence).
    depth : float, optional
        Transit depth as a fraction of the flux (0.01 is 1 %).
    duration_d : float, optional
        Total duration (day) of an eclipse or a transit.
    rise_d, fade_d : float, optional
        Transient: Gaussian rise time scale and exponential fade time (day). Flare: linear-
        in-flux rise time and exponential decay time (day) of each flare.
    seed : int, optional
        Seed of the stochastic kinds (LPV, irregular, flare): the light curve is a fixed
        function of time for a given seed.
    period2_d, amplitude2_mag : float, optional
        Delta Scuti: period (day) and peak-to-peak amplitude (mag) of a second mode; 0 for
        none.
    secondary_ratio : float or None, optional
        Eclipsing, contact: depth of the secondary minimum as a fraction of the primary's;
        None for the kind's default (0.4 eclipsing, 0.92 contact).
    timescale_d : float, optional
        Irregular: damping time (day) of the damped random walk.
    rate_per_d : float, optional
        Flare: mean number of flares per day (at most 2).
    """

    name: str
    kind: VariableKind
    ra_deg: float
    dec_deg: float
    mag_v: float
    b_v: float = 0.6
    period_d: float = 1.0
    epoch_mjd: float = 0.0
    amplitude_mag: float = 0.0
    depth: float = 0.0
    duration_d: float = 0.1
    rise_d: float = 1.0
    fade_d: float = 5.0
    seed: int = 0
    period2_d: float = 0.0
    amplitude2_mag: float = 0.0
    secondary_ratio: float | None = None
    timescale_d: float = 10.0
    rate_per_d: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"variable {self.name!r}: unknown kind {self.kind!r}")
        if not -90.0 <= self.dec_deg <= 90.0:
            raise ValueError(f"variable {self.name!r}: dec_deg must be within [-90, 90]")
        if self.period_d <= 0.0 or self.duration_d <= 0.0:
            raise ValueError(f"variable {self.name!r}: period_d and duration_d must be positive")
        if self.rise_d <= 0.0 or self.fade_d <= 0.0:
            raise ValueError(f"variable {self.name!r}: rise_d and fade_d must be positive")
        if not 0.0 <= self.depth < 1.0:
            raise ValueError(f"variable {self.name!r}: depth must be within [0, 1)")
        if self.amplitude_mag < 0.0 or self.amplitude2_mag < 0.0:
            raise ValueError(f"variable {self.name!r}: amplitude_mag must be >= 0")
        if self.period2_d < 0.0 or self.timescale_d <= 0.0:
            raise ValueError(
                f"variable {self.name!r}: period2_d must be >= 0 and timescale_d positive"
            )
        if self.secondary_ratio is not None and not 0.0 <= self.secondary_ratio <= 1.0:
            raise ValueError(f"variable {self.name!r}: secondary_ratio must be within [0, 1]")
        if not 0.0 <= self.rate_per_d <= _FLARE_MAX_PER_SLOT / _FLARE_SLOT_D:
            raise ValueError(
                f"variable {self.name!r}: rate_per_d must be within "
                f"[0, {_FLARE_MAX_PER_SLOT / _FLARE_SLOT_D:g}]"
            )

    def phase(self, mjd: ArrayLike) -> NDArray[np.float64]:
        """Return the phase in [0, 1) at the given times (MJD)."""
        t = np.asarray(mjd, dtype=np.float64)
        return np.asarray(np.mod((t - self.epoch_mjd) / self.period_d, 1.0), dtype=np.float64)

    def delta_mag(self, mjd: ArrayLike) -> NDArray[np.float64]:
        """Return the change from the quiescent magnitude at the given times.

        Parameters
        ----------
        mjd : array_like
            Times (MJD, UTC).

        Returns
        -------
        numpy.ndarray of float64
            Magnitude change (mag, positive is fainter); ``inf`` where a transient is not
            (yet or any more) visible at all.
        """
        t = np.asarray(mjd, dtype=np.float64)
        if self.kind == "constant":
            return np.zeros_like(t)
        if self.kind == "sine":
            return self.amplitude_mag * np.sin(2.0 * math.pi * (t - self.epoch_mjd) / self.period_d)
        if self.kind == "transient":
            return _transient_delta(t - self.epoch_mjd, self.rise_d, self.fade_d)
        if self.kind in ("dscuti", "lpv", "irregular", "flare"):
            return self._aperiodic_delta(t)
        phase = self.phase(t)
        if self.kind == "rrlyrae":
            return self.amplitude_mag * _rrlyrae_shape(phase)
        if self.kind == "rrc":
            return self.amplitude_mag * _skewed_cosine(phase, _RRC_RISE_PHASE)
        if self.kind == "dcep":
            return self.amplitude_mag * _cepheid_shape(phase, self.period_d)
        if self.kind == "contact":
            ratio = _CONTACT_SECONDARY_FRACTION
            if self.secondary_ratio is not None:
                ratio = self.secondary_ratio
            return self.amplitude_mag * _contact_shape(phase, ratio)
        # Distance from mid-eclipse / mid-transit as a fraction of the duration.
        half = 0.5 * self.duration_d / self.period_d
        if self.kind == "eclipsing":
            ratio = _SECONDARY_FRACTION if self.secondary_ratio is None else self.secondary_ratio
            primary = _cosine_dip(np.minimum(phase, 1.0 - phase) / half)
            secondary = _cosine_dip(np.abs(phase - 0.5) / half)
            return self.amplitude_mag * (primary + ratio * secondary)
        # transit
        x = np.minimum(phase, 1.0 - phase) / half  # 0 at mid-transit, 1 at the contacts
        ingress = 2.0 * _TRANSIT_INGRESS_FRACTION  # in units of the half duration
        shape = np.clip((1.0 - x) / ingress, 0.0, 1.0)
        return np.asarray(-2.5 * np.log10(1.0 - self.depth * shape), dtype=np.float64)

    def _aperiodic_delta(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        """Magnitude change of the multi-periodic and stochastic kinds."""
        dt = t - self.epoch_mjd
        if self.kind == "dscuti":
            main = 0.5 * self.amplitude_mag * np.sin(2.0 * math.pi * dt / self.period_d)
            if self.period2_d <= 0.0 or self.amplitude2_mag <= 0.0:
                return np.asarray(main, dtype=np.float64)
            # The second mode's phase at the epoch is fixed by the seed (beating is then
            # deterministic).
            phi = 2.0 * math.pi * _uniform(self.seed, 7, np.zeros(1, dtype=np.int64))[0]
            second = 0.5 * self.amplitude2_mag * np.sin(2.0 * math.pi * dt / self.period2_d + phi)
            return np.asarray(main + second, dtype=np.float64)
        if self.kind == "lpv":
            # Phase wander and amplitude changes on the time scale of a cycle: red noise with
            # a damping time of one period.
            wander = _LPV_PHASE_JITTER * _red_noise(dt, self.seed, 1, self.period_d)
            scale = 1.0 + _LPV_AMPLITUDE_JITTER * _red_noise(dt, self.seed, 2, self.period_d)
            phase = np.mod(dt / self.period_d + wander, 1.0)
            shape = _skewed_cosine(phase, _LPV_RISE_PHASE)
            return np.asarray(self.amplitude_mag * np.maximum(scale, 0.2) * shape, dtype=np.float64)
        if self.kind == "irregular":
            return self.amplitude_mag * _red_noise(dt, self.seed, 0, self.timescale_d)
        return _flare_delta(
            dt, self.seed, self.rate_per_d, self.amplitude_mag, self.rise_d, self.fade_d
        )

    def mag(self, band: str, mjd: ArrayLike) -> NDArray[np.float64]:
        """Return the true magnitude in a band at the given times.

        Parameters
        ----------
        band : str
            ``"B"``, ``"V"``, ``"R"``, ``"I"`` or ``"L"`` (any case).
        mjd : array_like
            Times (MJD, UTC).

        Returns
        -------
        numpy.ndarray of float64
            Magnitudes (mag); ``inf`` where a transient is invisible.
        """
        return self.quiescent_mag(band) + self.delta_mag(mjd)

    def quiescent_mag(self, band: str) -> float:
        """Return the quiescent (peak for a transient) magnitude in a band (mag)."""
        b_v = self.b_v
        v_r = 0.55 * b_v
        r_i = 0.50 * b_v + 0.02
        offsets = {"B": b_v, "V": 0.0, "R": -v_r, "I": -v_r - r_i, "L": -0.5 * v_r}
        key = band.strip().upper()
        if key not in offsets:
            raise ValueError(f"unknown band {band!r}; expected one of B, V, R, I, L")
        return self.mag_v + offsets[key]


def _cosine_dip(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """1 at x = 0 falling smoothly to 0 at |x| >= 1 (a raised cosine)."""
    out = 0.5 * (1.0 + np.cos(math.pi * np.clip(x, 0.0, 1.0)))
    return np.asarray(np.where(x < 1.0, out, 0.0), dtype=np.float64)


def _rrlyrae_shape(phase: NDArray[np.float64]) -> NDArray[np.float64]:
    """0 at maximum light (phase 0), 1 at minimum just before the rise; smooth at both ends."""
    rise = _RRL_RISE_PHASE
    decline = np.clip(phase / (1.0 - rise), 0.0, 1.0)
    rising = np.clip((1.0 - phase) / rise, 0.0, 1.0)
    # The decline slows towards minimum; the rise is steep and nearly linear.
    shape = np.where(phase < 1.0 - rise, 1.0 - (1.0 - decline) ** 1.6, rising)
    return np.asarray(shape, dtype=np.float64)


def _skewed_cosine(phase: NDArray[np.float64], rise: float) -> NDArray[np.float64]:
    """0 at maximum (phase 0), 1 at minimum (phase ``1 - rise``): half-cosine decline and rise.

    The decline takes ``1 - rise`` of the cycle and the rise ``rise``, so ``rise = 0.5`` is
    a sinusoid and smaller values skew it towards a sawtooth.
    """
    decline = np.clip(phase / (1.0 - rise), 0.0, 1.0)
    rising = np.clip((1.0 - phase) / rise, 0.0, 1.0)
    u = np.where(phase < 1.0 - rise, decline, rising)
    return np.asarray(0.5 * (1.0 - np.cos(math.pi * u)), dtype=np.float64)


def _cepheid_shape(phase: NDArray[np.float64], period_d: float) -> NDArray[np.float64]:
    """Return a classical Cepheid's shape: 0 at maximum, 1 at minimum, a bump at 6-16 d."""
    # The decline is slower at first than a half cosine (a shoulder after maximum), which
    # is what separates a Cepheid from an RR Lyrae of the same rise time.
    shape = _skewed_cosine(phase, _DCEP_RISE_PHASE) ** 0.8
    low, high = _DCEP_BUMP_PERIODS_D
    if low <= period_d <= high:
        bump_phase = (0.35 - 0.5 * (period_d - low) / (high - low)) % 1.0
        d = np.abs(phase - bump_phase)
        d = np.minimum(d, 1.0 - d)
        shape = shape - _DCEP_BUMP_HEIGHT * np.exp(-0.5 * (d / _DCEP_BUMP_WIDTH) ** 2)
    return np.asarray(np.clip(shape, 0.0, 1.0), dtype=np.float64)


def _contact_shape(phase: NDArray[np.float64], secondary: float) -> NDArray[np.float64]:
    """W UMa: continuous variation, 1 at phase 0, `secondary` at 0.5, 0 at quadratures."""
    # Ellipsoidal variation (twice per orbit) with the minima a little sharper than a cosine;
    # the depth weight goes smoothly from the primary (1) to the secondary (`secondary`).
    ellipsoidal = (0.5 * (1.0 + np.cos(4.0 * math.pi * phase))) ** 1.3
    weight = secondary + (1.0 - secondary) * 0.5 * (1.0 + np.cos(2.0 * math.pi * phase))
    return np.asarray(weight * ellipsoidal, dtype=np.float64)


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _uniform(seed: int, stream: int, k: NDArray[np.int64]) -> NDArray[np.float64]:
    """Uniform [0, 1) numbers, a fixed function of (seed, stream, k): splitmix64 hashing.

    A hash rather than a generator so any time can be evaluated alone, in any order, and
    give the same light curve.
    """
    with np.errstate(over="ignore"):
        x = k.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        x ^= np.uint64(
            (seed * 0x632BE59BD9B4E019 + stream * 0x8CB92BA72F3D8DD7) & 0xFFFFFFFFFFFFFFFF
        )
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        x = x ^ (x >> np.uint64(31))
    return np.asarray((x >> np.uint64(11)).astype(np.float64) * 2.0**-53, dtype=np.float64)


def _red_noise(
    dt_d: NDArray[np.float64], seed: int, stream: int, tau_d: float
) -> NDArray[np.float64]:
    """Unit-variance red noise with a damped-random-walk spectrum, a fixed function of time.

    A sum of `_RED_NOISE_TERMS` sinusoids at log-spaced, jittered frequencies with random
    phases, weighted by the DRW power spectrum ``1 / (1 + (2 pi f tau)^2)`` (Kelly et al.
    2009, ApJ 698, 895), from 1/(100 tau) to 30/tau; it is Gaussian-like and stationary, and
    unlike a recursive simulation can be evaluated at any time.
    """
    n = _RED_NOISE_TERMS
    k = np.arange(n, dtype=np.int64)
    edges = np.geomspace(0.01 / tau_d, 30.0 / tau_d, n + 1)
    log_lo, log_hi = np.log(edges[:-1]), np.log(edges[1:])
    freq = np.exp(log_lo + (log_hi - log_lo) * _uniform(seed, 100 + stream, k))
    phase = 2.0 * math.pi * _uniform(seed, 200 + stream, k)
    # Power per component: the spectrum times the width of its (log) bin.
    power = (edges[1:] - edges[:-1]) / (1.0 + (2.0 * math.pi * freq * tau_d) ** 2)
    weight = np.sqrt(2.0 * power / power.sum())
    arg = 2.0 * math.pi * np.multiply.outer(dt_d, freq) + phase
    return np.asarray(np.cos(arg) @ weight, dtype=np.float64)


def _flare_delta(
    dt_d: NDArray[np.float64],
    seed: int,
    rate_per_d: float,
    peak_mag: float,
    rise_d: float,
    fade_d: float,
) -> NDArray[np.float64]:
    """Magnitude change of a flare star: a quiescent level plus flares at seeded times.

    Time is cut into slots of `_FLARE_SLOT_D`; slot ``k`` holds a flare with probability
    ``rate_per_d * _FLARE_SLOT_D``, peaking at a hashed time within it, with a hashed peak
    (log-uniform within `_FLARE_PEAK_SPREAD` of `peak_mag`). Each flare rises linearly in
    flux over `rise_d` and decays exponentially with e-folding time `fade_d`.
    """
    if rate_per_d <= 0.0 or peak_mag <= 0.0:
        return np.zeros_like(dt_d)
    p = rate_per_d * _FLARE_SLOT_D
    typical = 10.0 ** (0.4 * peak_mag) - 1.0  # flux excess at a typical peak (quiescent = 1)
    slot = np.floor(dt_d / _FLARE_SLOT_D).astype(np.int64)
    behind = math.ceil(_FLARE_TAIL_EFOLDS * fade_d / _FLARE_SLOT_D) + 1
    ahead = math.ceil(rise_d / _FLARE_SLOT_D) + 1
    excess = np.zeros_like(dt_d)
    for m in range(-ahead, behind + 1):
        k = slot - m
        occurs = _uniform(seed, 10, k) < p
        peak_t = (k + _uniform(seed, 11, k)) * _FLARE_SLOT_D
        size = typical * _FLARE_PEAK_SPREAD ** (2.0 * _uniform(seed, 12, k) - 1.0)
        x = dt_d - peak_t
        with np.errstate(over="ignore"):
            profile = np.where(
                x < 0.0, np.clip(1.0 + x / rise_d, 0.0, 1.0), np.exp(-np.maximum(x, 0.0) / fade_d)
            )
        excess += np.where(occurs, size * profile, 0.0)
    return np.asarray(-2.5 * np.log10(1.0 + excess), dtype=np.float64)


def _transient_delta(
    dt_d: NDArray[np.float64], rise_d: float, fade_d: float
) -> NDArray[np.float64]:
    """Magnitude below peak of a Gaussian rise and exponential fade; inf when negligible."""
    with np.errstate(divide="ignore"):
        log_flux = np.where(dt_d < 0.0, -0.5 * (dt_d / rise_d) ** 2, -dt_d / fade_d)
    delta = -2.5 * log_flux / math.log(10.0)
    return np.asarray(
        np.where(log_flux < math.log(_TRANSIENT_MIN_FLUX), np.inf, delta), dtype=np.float64
    )


def add_variable_stars(
    catalog: StarCatalog, variables: Sequence[VariableStar], mjd: float | None
) -> StarCatalog:
    """Return the catalog with the variables appended, at their magnitudes at a time.

    Parameters
    ----------
    catalog : StarCatalog
        The field's constant stars.
    variables : sequence of VariableStar
        The variables of the sky (those off the field are dropped later by the renderer).
    mjd : float or None
        Time of the exposure's middle (MJD, UTC); None renders every variable at its
        quiescent magnitude and leaves transients out.

    Returns
    -------
    StarCatalog
        The catalog followed by the visible variables, with ids ``VARIABLE_ID_BASE - i``.
    """
    if not variables:
        return catalog
    keep = []
    for index, star in enumerate(variables):
        if mjd is None:
            delta = math.inf if star.kind == "transient" else 0.0
        else:
            delta = float(star.delta_mag(mjd))
        if math.isfinite(delta):
            keep.append((index, star, delta))
    if not keep:
        return catalog

    def band(name: str) -> NDArray[np.float64]:
        return np.array([s.quiescent_mag(name) + d for _, s, d in keep], dtype=np.float64)

    return StarCatalog(
        id=np.concatenate([catalog.id, [VARIABLE_ID_BASE - i for i, _, _ in keep]]).astype(
            np.int64
        ),
        ra_deg=np.concatenate([catalog.ra_deg, [s.ra_deg % 360.0 for _, s, _ in keep]]),
        dec_deg=np.concatenate([catalog.dec_deg, [s.dec_deg for _, s, _ in keep]]),
        mag_b=np.concatenate([catalog.mag_b, band("B")]),
        mag_v=np.concatenate([catalog.mag_v, band("V")]),
        mag_r=np.concatenate([catalog.mag_r, band("R")]),
        mag_i=np.concatenate([catalog.mag_i, band("I")]),
    )


def variables_from_config(entries: Sequence[object]) -> tuple[VariableStar, ...]:
    """Build `VariableStar` objects from the sky config's ``variables`` entries.

    Parameters
    ----------
    entries : sequence
        ``obsctl.config.SimulatedVariableConfig`` models (anything with the same attributes).

    Returns
    -------
    tuple of VariableStar
        One per entry, in order (the order fixes their star ids).
    """
    names = VariableStar.__dataclass_fields__.keys()
    # The config need not carry every field (the population's seeds and second-mode and
    # flare parameters have defaults); those it lacks keep theirs.
    return tuple(
        VariableStar(**{n: getattr(e, n) for n in names if hasattr(e, n)}) for e in entries
    )
