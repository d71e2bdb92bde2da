"""The simulated mount's pointing error: where the optics look minus where the mount reports.

The error is an offset on the sky in the tangent plane at the reported position,
``(east, north) = (dRA cos Dec, dDec)`` in arcseconds. It is the sum of

- a fixed part per pier side (a German equatorial mount's flexure, cone and axis errors
  change sign or size across a meridian flip), less what syncs have taken out of it;
- a drift that grows linearly with the time since the last slew or sync (polar misalignment,
  flexure while tracking);
- the periodic error of the RA worm, a sinusoid in RA.

Pure functions only; `obsctl.simulators.mount_model.MountModel` keeps the state (pier side,
slew time, sync corrections) and calls them.
"""

from __future__ import annotations

import math

__all__ = [
    "drift_arcsec",
    "offset_radec_deg",
    "periodic_error_arcsec",
    "pointing_error_arcsec",
]

_ARCSEC_PER_RAD = 180.0 * 3600.0 / math.pi


def drift_arcsec(rate_arcsec_per_h: tuple[float, float], elapsed_s: float) -> tuple[float, float]:
    """Return the drift accumulated since the last slew or sync.

    Parameters
    ----------
    rate_arcsec_per_h : tuple of float
        ``(east, north)`` drift rate in arcsec per hour.
    elapsed_s : float
        Time since the last slew ended or the last sync, in seconds; negative (a slew still
        under way) counts as 0.

    Returns
    -------
    tuple of float
        ``(east, north)`` drift in arcsec.
    """
    hours = max(0.0, elapsed_s) / 3600.0
    return rate_arcsec_per_h[0] * hours, rate_arcsec_per_h[1] * hours


def periodic_error_arcsec(t_s: float, amplitude_arcsec: float, period_s: float) -> float:
    """Return the RA periodic error (east, arcsec) of the worm at a time.

    Parameters
    ----------
    t_s : float
        Simulated monotonic time in seconds; the worm's phase is 0 at ``t_s = 0``.
    amplitude_arcsec : float
        Half the peak-to-peak error, in arcsec.
    period_s : float
        Worm period in seconds, > 0.

    Returns
    -------
    float
        ``amplitude_arcsec * sin(2 pi t_s / period_s)`` in arcsec, along RA (east positive).
    """
    if amplitude_arcsec == 0.0:
        return 0.0
    return amplitude_arcsec * math.sin(2.0 * math.pi * t_s / period_s)


def pointing_error_arcsec(
    *,
    fixed_arcsec: tuple[float, float],
    drift_rate_arcsec_per_h: tuple[float, float],
    since_slew_s: float,
    periodic_amplitude_arcsec: float,
    periodic_period_s: float,
    t_s: float,
) -> tuple[float, float]:
    """Return the total pointing error, true minus reported position.

    Parameters
    ----------
    fixed_arcsec : tuple of float
        ``(east, north)`` fixed part of the present pier side (after syncs), in arcsec.
    drift_rate_arcsec_per_h : tuple of float
        ``(east, north)`` drift rate in arcsec per hour.
    since_slew_s : float
        Seconds since the last slew ended or the last sync.
    periodic_amplitude_arcsec, periodic_period_s : float
        RA periodic error amplitude (arcsec) and worm period (s).
    t_s : float
        Simulated monotonic time in seconds (the worm's phase).

    Returns
    -------
    tuple of float
        ``(east, north)`` = ``(dRA cos Dec, dDec)`` in arcsec.
    """
    drift_east, drift_north = drift_arcsec(drift_rate_arcsec_per_h, since_slew_s)
    periodic = periodic_error_arcsec(t_s, periodic_amplitude_arcsec, periodic_period_s)
    return fixed_arcsec[0] + drift_east + periodic, fixed_arcsec[1] + drift_north


def offset_radec_deg(
    ra_deg: float, dec_deg: float, east_arcsec: float, north_arcsec: float
) -> tuple[float, float]:
    """Return the position a tangent-plane offset away from a position.

    The offset is read as gnomonic standard coordinates (xi, eta) about the position, the
    way a TAN WCS centred there maps pixels, so the shift is exact in a frame and stays
    finite at the pole (where ``dRA = east / cos Dec`` would not).

    Parameters
    ----------
    ra_deg, dec_deg : float
        Starting position in degrees.
    east_arcsec, north_arcsec : float
        Offset toward increasing RA and toward the north, in arcsec.

    Returns
    -------
    tuple of float
        ``(ra_deg, dec_deg)``, RA in [0, 360); the input unchanged when the offset is 0.
    """
    if east_arcsec == 0.0 and north_arcsec == 0.0:
        # Bit for bit the input: an error-free mount renders exactly as it did before.
        return ra_deg, dec_deg
    xi, eta = east_arcsec / _ARCSEC_PER_RAD, north_arcsec / _ARCSEC_PER_RAD
    dec0 = math.radians(dec_deg)
    denom = math.cos(dec0) - eta * math.sin(dec0)
    ra = math.radians(ra_deg) + math.atan2(xi, denom)
    dec = math.atan2(math.sin(dec0) + eta * math.cos(dec0), math.hypot(xi, denom))
    return math.degrees(ra) % 360.0, math.degrees(dec)
