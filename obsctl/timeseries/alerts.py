"""Alert rules over a light curve, as pure functions, and the alert value type.

Baselines are robust (median and scaled MAD of earlier good points), and significances use
the larger of the quoted errors and the scatter actually seen, so a star whose errors are
underestimated does not raise alerts on every frame.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Alert",
    "AlertKind",
    "Baseline",
    "baseline",
    "brightness_change",
    "transit_dip",
]

AlertKind = Literal[
    "brighten", "fade", "dip", "new_source", "class", "anomaly", "transient", "moving_object"
]

_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Alert:
    """One alert, as stored, logged and sent to the sinks.

    Parameters
    ----------
    kind : {"brighten", "fade", "dip", "new_source", "class", "anomaly", "transient", \
            "moving_object"}
        What happened: a change of brightness, a transit-like dip, a new source, a variable
        class found or changed with confidence, a light curve unlike every class, a
        transient on the difference images, a moving object linked over frames.
    field, target : str or None
        The monitored field and target.
    object_id, exposure_id : int or None
        The light-curve object and the frame that raised it.
    mjd : float or None
        Time of the frame (MJD, UTC).
    mag : float or None
        The magnitude that raised it (mag).
    delta_mag : float or None
        Change from the baseline (mag, positive is fainter).
    significance : float or None
        Change in units of its uncertainty.
    message : str
        One line for people.
    dedup_key : str
        Alerts with the same key are one alert (stored and sent once).
    ra_deg, dec_deg : float or None, optional
        Where it is (deg, ICRS), for alerts of a position (transients, moving objects).
    details : dict or None, optional
        More, JSON-ready: for a transient its candidate, real/bogus score, host galaxy and
        the address of its cutouts; for a moving object its rate, direction and detections.
    """

    kind: AlertKind
    field: str | None
    target: str | None
    object_id: int | None
    exposure_id: int | None
    mjd: float | None
    mag: float | None
    delta_mag: float | None
    significance: float | None
    message: str
    dedup_key: str
    ra_deg: float | None = None
    dec_deg: float | None = None
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the alert as a JSON-ready mapping."""
        return asdict(self)


@dataclass(frozen=True)
class Baseline:
    """Typical brightness of a star before now.

    Parameters
    ----------
    mag : float
        Median magnitude of the earlier good points (mag).
    scatter : float
        Robust standard deviation of those points (mag).
    error : float
        Median quoted error of those points (mag).
    n : int
        Points used.
    """

    mag: float
    scatter: float
    error: float
    n: int

    @property
    def noise_factor(self) -> float:
        """Observed scatter over quoted error, at least 1."""
        return max(1.0, self.scatter / self.error) if self.error > 0 else 1.0


def baseline(mag: NDArray[np.float64], err: NDArray[np.float64]) -> Baseline | None:
    """Return the robust baseline of good earlier points, None with fewer than three."""
    ok = np.isfinite(mag) & np.isfinite(err) & (err > 0)
    if np.count_nonzero(ok) < 3:
        return None
    m, e = mag[ok], err[ok]
    med = float(np.median(m))
    mad = float(np.median(np.abs(m - med))) * _MAD_TO_SIGMA
    return Baseline(mag=med, scatter=mad, error=float(np.median(e)), n=int(m.size))


def brightness_change(
    mag: float, err: float, base: Baseline, *, threshold_mag: float, sigma: float
) -> tuple[Literal["brighten", "fade"], float, float] | None:
    """Test one point against the baseline.

    Parameters
    ----------
    mag, err : float
        The new point (mag).
    base : Baseline
        The star's baseline.
    threshold_mag : float
        Smallest change that alerts (mag).
    sigma : float
        Smallest significance that alerts.

    Returns
    -------
    tuple or None
        ``(kind, delta_mag, significance)`` when both limits are exceeded.
    """
    if not (math.isfinite(mag) and math.isfinite(err)):
        return None
    delta = mag - base.mag
    noise = math.hypot(err * base.noise_factor, base.scatter / math.sqrt(base.n))
    significance = abs(delta) / noise if noise > 0 else math.inf
    if abs(delta) < threshold_mag or significance < sigma:
        return None
    return ("fade" if delta > 0 else "brighten"), delta, significance


def transit_dip(
    mag: NDArray[np.float64],
    err: NDArray[np.float64],
    base: Baseline,
    *,
    min_points: int,
    depth_mag: float,
    sigma: float,
) -> tuple[float, float] | None:
    """Test the latest points of a night for a transit-like dip.

    The last `min_points` or more consecutive points (the tail of the night so far, all of
    them fainter than the baseline) are averaged; a dip is their mean lying at least
    `depth_mag` below the baseline at `sigma` significance.

    Parameters
    ----------
    mag, err : numpy.ndarray
        The night's good points so far, in time order (mag).
    base : Baseline
        The star's baseline from earlier points.
    min_points : int
        Fewest points in the dip.
    depth_mag : float
        Smallest depth (mag).
    sigma : float
        Smallest significance.

    Returns
    -------
    tuple or None
        ``(depth_mag, significance)`` of the longest qualifying tail.
    """
    ok = np.isfinite(mag) & np.isfinite(err) & (err > 0)
    m, e = mag[ok], err[ok]
    n_faint = 0
    while n_faint < m.size and m[m.size - 1 - n_faint] > base.mag:
        n_faint += 1
    if n_faint < min_points:
        return None
    tail_m, tail_e = m[-n_faint:], e[-n_faint:] * base.noise_factor
    w = 1.0 / tail_e**2
    depth = float(np.sum(w * tail_m) / np.sum(w)) - base.mag
    noise = math.hypot(1.0 / math.sqrt(float(np.sum(w))), base.scatter / math.sqrt(base.n))
    significance = depth / noise if noise > 0 else math.inf
    if depth < depth_mag or significance < sigma:
        return None
    return depth, significance
