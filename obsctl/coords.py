"""Small coordinate conversions that device drivers need, as pure functions.

Mounts report either J2000 or "topocentric" (equinox-of-date, JNow) coordinates. The
conversion uses the IAU 2006/2000A precession-nutation matrix from ERFA (shipped with
astropy), which needs no IERS tables or network; it leaves out annual aberration (up to
20 arcsec), which is below the pointing accuracy of the mounts it serves.
"""

from __future__ import annotations

import math
from datetime import datetime

import erfa
import numpy as np

__all__ = ["j2000_to_jnow", "jnow_to_j2000", "julian_date"]

_UNIX_EPOCH_JD = 2440587.5
_TT_MINUS_UTC_S = 69.184  # 37 leap seconds + 32.184 s; a second's error is negligible here


def julian_date(when: datetime) -> float:
    """Return the Julian date (UTC) of a timezone-aware datetime."""
    return _UNIX_EPOCH_JD + when.timestamp() / 86400.0


def _rotate(ra_deg: float, dec_deg: float, matrix: np.ndarray) -> tuple[float, float]:
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    v = np.array([math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)])
    x, y, z = matrix @ v
    out_ra = math.degrees(math.atan2(y, x)) % 360.0
    out_dec = math.degrees(math.asin(max(-1.0, min(1.0, z))))
    return out_ra, out_dec


def _matrix(when: datetime) -> np.ndarray:
    jd_tt = julian_date(when) + _TT_MINUS_UTC_S / 86400.0
    return np.asarray(erfa.pnm06a(2400000.5, jd_tt - 2400000.5))


def j2000_to_jnow(ra_deg: float, dec_deg: float, when: datetime) -> tuple[float, float]:
    """Precess and nutate J2000 (ICRS) coordinates to the true equator and equinox of date.

    Parameters
    ----------
    ra_deg, dec_deg : float
        J2000 right ascension and declination in degrees.
    when : datetime
        The date (timezone-aware).

    Returns
    -------
    tuple of float
        Right ascension and declination of date in degrees.
    """
    return _rotate(ra_deg, dec_deg, _matrix(when))


def jnow_to_j2000(ra_deg: float, dec_deg: float, when: datetime) -> tuple[float, float]:
    """Invert `j2000_to_jnow`: coordinates of date back to J2000, in degrees."""
    return _rotate(ra_deg, dec_deg, _matrix(when).T)
