"""Barycentric times of light-curve points, offline (no IERS download, built-in ephemeris)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from astropy import units as u
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.time import Time
from astropy.utils import iers
from numpy.typing import ArrayLike, NDArray

__all__ = ["bjd_tdb", "configure_offline_iers"]

log = logging.getLogger(__name__)


def configure_offline_iers() -> None:
    """Make astropy use its bundled IERS tables and never download.

    Dates beyond the bundled tables then lose UT1-UTC (under a second): negligible for
    BJD_TDB, where it enters only through the observatory's rotation (microseconds).
    """
    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    iers.conf.iers_degraded_accuracy = "warn"


def bjd_tdb(
    mjd_utc: ArrayLike,
    ra_deg: float,
    dec_deg: float,
    *,
    latitude_deg: float,
    longitude_deg: float,
    elevation_m: float = 0.0,
) -> NDArray[np.float64]:
    """Return barycentric Julian dates (TDB) of observations.

    Parameters
    ----------
    mjd_utc : array_like
        Mid-exposure times (MJD, UTC).
    ra_deg, dec_deg : float
        ICRS position of the target (deg).
    latitude_deg, longitude_deg : float
        Site (deg, east positive).
    elevation_m : float, optional
        Site elevation (m).

    Returns
    -------
    numpy.ndarray of float64
        BJD_TDB (day, full Julian date), using astropy's built-in ephemeris.
    """
    configure_offline_iers()
    site = EarthLocation.from_geodetic(
        longitude_deg * u.deg, latitude_deg * u.deg, elevation_m * u.m
    )
    mjd = np.atleast_1d(np.asarray(mjd_utc, dtype=np.float64))
    times = Time(mjd, format="mjd", scale="utc", location=site)
    target = SkyCoord(ra_deg * u.deg, dec_deg * u.deg, frame="icrs")
    with warnings.catch_warnings():
        # Past the bundled IERS table astropy warns that UT1 is degraded; see the docstring
        # of `configure_offline_iers` for why that does not matter here.
        warnings.filterwarnings("ignore", category=iers.IERSDegradedAccuracyWarning)
        warnings.filterwarnings("ignore", message=".*IERS.*")
        ltt = times.light_travel_time(target, kind="barycentric", ephemeris="builtin")
        bjd = (times.tdb + ltt).jd
    return np.asarray(bjd, dtype=np.float64)
