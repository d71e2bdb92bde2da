"""Variable stars and transients in the simulated sky, with their true light curves.

A `VariableStar` sits at a fixed sky position and has a quiescent V magnitude, a colour, and a
light-curve shape: a sinusoid, an eclipsing binary, an RR Lyrae-like sawtooth, a planetary
transit, or a transient that appears, rises and fades. `VariableStar.mag` is the truth the
tests read; `add_variable_stars` adds the stars, at the exposure's time, to the synthetic
catalog that the camera renders. The change in magnitude is the same in every band (the
colour of the star is fixed), which is what differential photometry in one filter measures.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

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

VariableKind = Literal["constant", "sine", "eclipsing", "rrlyrae", "transit", "transient"]

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


@dataclass(frozen=True)
class VariableStar:
    """One variable star or transient of the simulated sky.

    Parameters
    ----------
    name : str
        Name, for logs and tests.
    kind : {"constant", "sine", "eclipsing", "rrlyrae", "transit", "transient"}
        Light-curve shape.
    ra_deg, dec_deg : float
        ICRS position (deg).
    mag_v : float
        Quiescent V magnitude (mag); for a transient, the V magnitude at peak.
    b_v : float, optional
        B-V colour (mag); other bands follow the synthetic catalog's colour relations.
    period_d : float, optional
        Period (day) of the periodic kinds.
    epoch_mjd : float, optional
        Reference time (MJD): phase zero of a sine, mid primary eclipse, maximum light of an
        RR Lyrae, mid-transit, or the peak of a transient.
    amplitude_mag : float, optional
        Sine: semi-amplitude (mag). Eclipsing: primary eclipse depth (mag). RR Lyrae: peak-to-
        peak amplitude (mag).
    depth : float, optional
        Transit depth as a fraction of the flux (0.01 is 1 %).
    duration_d : float, optional
        Total duration (day) of an eclipse or a transit.
    rise_d, fade_d : float, optional
        Transient: Gaussian rise time scale and exponential fade time (day).
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

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "sine", "eclipsing", "rrlyrae", "transit", "transient"):
            raise ValueError(f"variable {self.name!r}: unknown kind {self.kind!r}")
        if not -90.0 <= self.dec_deg <= 90.0:
            raise ValueError(f"variable {self.name!r}: dec_deg must be within [-90, 90]")
        if self.period_d <= 0.0 or self.duration_d <= 0.0:
            raise ValueError(f"variable {self.name!r}: period_d and duration_d must be positive")
        if self.rise_d <= 0.0 or self.fade_d <= 0.0:
            raise ValueError(f"variable {self.name!r}: rise_d and fade_d must be positive")
        if not 0.0 <= self.depth < 1.0:
            raise ValueError(f"variable {self.name!r}: depth must be within [0, 1)")
        if self.amplitude_mag < 0.0:
            raise ValueError(f"variable {self.name!r}: amplitude_mag must be >= 0")

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
        phase = self.phase(t)
        if self.kind == "rrlyrae":
            return self.amplitude_mag * _rrlyrae_shape(phase)
        # Distance from mid-eclipse / mid-transit as a fraction of the duration.
        half = 0.5 * self.duration_d / self.period_d
        if self.kind == "eclipsing":
            primary = _cosine_dip(np.minimum(phase, 1.0 - phase) / half)
            secondary = _cosine_dip(np.abs(phase - 0.5) / half)
            return self.amplitude_mag * (primary + _SECONDARY_FRACTION * secondary)
        # transit
        x = np.minimum(phase, 1.0 - phase) / half  # 0 at mid-transit, 1 at the contacts
        ingress = 2.0 * _TRANSIT_INGRESS_FRACTION  # in units of the half duration
        shape = np.clip((1.0 - x) / ingress, 0.0, 1.0)
        return np.asarray(-2.5 * np.log10(1.0 - self.depth * shape), dtype=np.float64)

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
    return tuple(VariableStar(**{n: getattr(e, n) for n in names}) for e in entries)
