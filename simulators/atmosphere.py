"""Photometric systematics of the simulated sky: extinction, colour terms, seeing and clouds.

A real night's zero point is not one number: each filter has its own throughput, the air
dims every star by ``k * airmass`` magnitudes (more in blue than in red), the instrumental
system differs from the catalog's by a colour term, the seeing grows toward the horizon, and
clouds come and go. These pure functions give the simulated camera those effects; the
renderer (`obsctl.simulators.render`) applies them and records what it applied, so tests can
compute the expected electrons from the catalog and the configured coefficients.

The flux of a star of catalog magnitude ``m`` in band F, in electrons, is

    ``t * T * 10**(-0.4 * (m + c_F * colour_F + k_F * X - ZP_F))``

with ``t`` the exposure time (s), ``T`` the cloud transmission, ``c_F`` the colour term and
``colour_F`` the catalog colour of `COLOUR_INDEX`, ``k_F`` the extinction (mag per airmass),
``X`` the airmass and ``ZP_F`` the zero point above the atmosphere (1 e-/s).
"""

from __future__ import annotations

import itertools
import logging
import math
from functools import lru_cache
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike, NDArray

from obsctl.night.ephemeris import airmass_from_alt
from obsctl.simulators.sky import StarCatalog

log = logging.getLogger(__name__)

__all__ = [
    "COLOUR_INDEX",
    "airmass",
    "cloud_extinction_mag",
    "cloud_transmission",
    "colour_index",
    "exposure_transmission",
    "extinction_mag",
    "seeing_fwhm_arcsec",
    "seeing_wander",
    "spell_transmission",
]

COLOUR_INDEX: dict[str, tuple[str, str]] = {
    "B": ("B", "V"),
    "V": ("B", "V"),
    "R": ("V", "R"),
    "I": ("R", "I"),
    # A clear filter on silicon reaches far into the red: its colour term follows V-I.
    "L": ("V", "I"),
}
"""The catalog colour each band's colour term multiplies: ``(a, b)`` means ``mag_a - mag_b``."""

# The simulator has no ground: a pointing at or below the horizon looks through the air mass
# of this altitude (about 37 airmasses), so the frame still renders, dim and blurred.
_LOWEST_ALT_DEG = 0.05

# Below about 11 deg (airmass 5) nobody observes, but a parked or homing mount may look there:
# the seeing stops growing at this airmass. At the horizon's airmass (37) the PSF would be
# 20 arcsec wide and a full frame take seconds to render, longer than a fast simulated clock
# allows for a readout.
_SEEING_AIRMASS_CAP = 5.0

# The cloud process is a sum of random cosines (random Fourier features of a squared-
# exponential covariance): stationary, smooth, unit variance, evaluable at any time without
# state, and the same for every caller with the same seed.
_CLOUD_MODES = 256  # the spurious correlation at long lags is about 1/sqrt(2 * modes)
_CLOUD_STREAM = 0xC10D
_SEEING_STREAM = 0x5EE1  # the seeing's wander: the same process, its own draws
# Cosine phases grow with time; counting from MJD 60000 keeps them small enough that float64
# rounding stays far below a radian for centuries.
_CLOUD_EPOCH_MJD = 60000.0
_MAX_FRACTION = 1.0 - 1e-6  # a clouded fraction of 1 (overcast) as the limit of a threshold
_SAMPLES_PER_TIMESCALE = 8  # samples of the cloud series per correlation time in an exposure
_MAX_SAMPLES = 256


def airmass(alt_deg: float) -> float:
    """Return the airmass of an apparent altitude (Pickering 2002), finite everywhere.

    Parameters
    ----------
    alt_deg : float
        Apparent altitude (deg). At or below the horizon the horizon's air mass is returned.

    Returns
    -------
    float
        Airmass (dimensionless), 1 at the zenith, about 37 at the horizon.
    """
    return float(airmass_from_alt(max(float(alt_deg), _LOWEST_ALT_DEG)))


def extinction_mag(k_mag_per_airmass: float, airmass: float) -> float:
    """Return the atmospheric extinction (mag): ``k * X``.

    Parameters
    ----------
    k_mag_per_airmass : float
        Extinction coefficient of the band (mag per airmass), >= 0.
    airmass : float
        Airmass (dimensionless), >= 0 (0 is above the atmosphere).

    Returns
    -------
    float
        Extinction (mag) added to every star's magnitude (first-order: grey within the band).
    """
    if k_mag_per_airmass < 0.0 or airmass < 0.0:
        raise ValueError("k_mag_per_airmass and airmass must be >= 0")
    return k_mag_per_airmass * airmass


def colour_index(catalog: StarCatalog, band: str) -> NDArray[np.float64]:
    """Return each star's catalog colour that the band's colour term multiplies.

    Parameters
    ----------
    catalog : obsctl.simulators.sky.StarCatalog
        The stars.
    band : str
        ``B``, ``V``, ``R``, ``I`` or ``L`` (case-insensitive); see `COLOUR_INDEX`.

    Returns
    -------
    numpy.ndarray of float64
        Colour (mag), one per star.

    Raises
    ------
    ValueError
        If the band is not one of `COLOUR_INDEX`.
    """
    key = band.strip().upper()
    if key not in COLOUR_INDEX:
        raise ValueError(f"unknown band {band!r}; expected one of {', '.join(COLOUR_INDEX)}")
    a, b = COLOUR_INDEX[key]
    colour: NDArray[np.float64] = catalog.mag(a) - catalog.mag(b)
    return colour


def seeing_fwhm_arcsec(zenith_fwhm_arcsec: float, airmass: float, exponent: float = 0.6) -> float:
    """Return the seeing FWHM at an airmass.

    The turbulent path grows with the airmass and the FWHM of Kolmogorov seeing as the path
    to the power 3/5 (Roddier 1981), hence the default exponent 0.6.

    Parameters
    ----------
    zenith_fwhm_arcsec : float
        Seeing FWHM at the zenith (arcsec), > 0.
    airmass : float
        Airmass (dimensionless), > 0.
    exponent : float, optional
        Power of the airmass, >= 0; 0 keeps the seeing constant.

    Returns
    -------
    float
        Seeing FWHM (arcsec), ``zenith_fwhm_arcsec * airmass**exponent``, the airmass at
        most 5 (altitude 11 deg): lower, the simulator keeps the seeing of airmass 5.
    """
    if zenith_fwhm_arcsec <= 0.0 or airmass <= 0.0 or exponent < 0.0:
        raise ValueError("need zenith_fwhm_arcsec > 0, airmass > 0 and exponent >= 0")
    return float(zenith_fwhm_arcsec * min(airmass, _SEEING_AIRMASS_CAP) ** exponent)


def seeing_wander(
    time_mjd: ArrayLike, *, rms: float, timescale_s: float, seed: int
) -> NDArray[np.float64]:
    """Return the factor the seeing changes by over the night: a seeded, smooth series.

    The seeing wanders log-normally about its median, ``exp(rms * g(t))``, with ``g`` the
    smooth, unit-variance random series of the clouds (`cloud_extinction_mag`) drawn from a
    stream of its own, so that frames of one field taken minutes or hours apart have
    different PSFs, as image subtraction meets them.

    Parameters
    ----------
    time_mjd : array_like
        Times (MJD, UTC).
    rms : float
        Standard deviation of the natural log of the seeing, >= 0 (0.2 is a typical site's
        variation within a night); 0 gives a factor of 1.
    timescale_s : float
        Correlation time (s), > 0.
    seed : int
        Non-negative seed.

    Returns
    -------
    numpy.ndarray of float64
        The factor (dimensionless, > 0, median 1), the shape of `time_mjd`.

    Raises
    ------
    ValueError
        If an argument is out of range.
    """
    if rms < 0.0 or timescale_s <= 0.0 or seed < 0:
        raise ValueError("need rms >= 0, timescale_s > 0 and seed >= 0")
    t = np.asarray(time_mjd, dtype=np.float64)
    if rms == 0.0:
        return np.ones(t.shape)
    return np.asarray(np.exp(rms * _cloud_field(t, seed, timescale_s, _SEEING_STREAM)), np.float64)


@lru_cache(maxsize=8)
def _cloud_modes(
    seed: int, timescale_s: float, stream: int = _CLOUD_STREAM
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Angular frequencies (rad/s) and phases (rad) of the cloud (or seeing) process."""
    rng = np.random.default_rng([seed, stream])
    # Frequencies of a squared-exponential covariance exp(-dt^2 / (2 tau^2)) are N(0, 1/tau^2).
    omega = rng.standard_normal(_CLOUD_MODES) / timescale_s
    phase = rng.uniform(0.0, 2.0 * math.pi, _CLOUD_MODES)
    omega.flags.writeable = False
    phase.flags.writeable = False
    return omega, phase


def _cloud_field(
    time_mjd: NDArray[np.float64], seed: int, timescale_s: float, stream: int = _CLOUD_STREAM
) -> NDArray[np.float64]:
    """Return a smooth, zero-mean, unit-variance, near-Gaussian random series at the times."""
    omega, phase = _cloud_modes(seed, timescale_s, stream)
    t_s = (time_mjd - _CLOUD_EPOCH_MJD) * 86400.0
    field: NDArray[np.float64] = math.sqrt(2.0 / _CLOUD_MODES) * np.cos(
        t_s[..., None] * omega + phase
    ).sum(axis=-1)
    return field


def cloud_extinction_mag(
    time_mjd: ArrayLike,
    *,
    clouded_fraction: float,
    mean_extinction_mag: float,
    timescale_s: float,
    seed: int,
) -> NDArray[np.float64]:
    """Return the grey extinction by clouds at given times: a seeded, smooth random series.

    A stationary, smooth random field ``g(t)`` of unit variance (correlation
    ``exp(-dt^2 / (2 timescale^2))``) is thresholded: the sky is clouded where ``g`` exceeds
    the level ``theta`` above which a standard normal spends `clouded_fraction` of the time,
    and there the extinction is ``s * (g - theta)``, rising smoothly from 0 at the cloud's
    edge, with ``s`` set so that its mean under cloud is `mean_extinction_mag`. The same
    arguments give the same clouds at the same times, whoever asks.

    Parameters
    ----------
    time_mjd : array_like
        Times (MJD, UTC).
    clouded_fraction : float
        Fraction of the time under cloud, in [0, 1]; 0 is a photometric night, 1 overcast
        (then the extinction varies about its mean by about a fifth).
    mean_extinction_mag : float
        Mean extinction while clouded (mag), >= 0.
    timescale_s : float
        Correlation time of the clouds (s), > 0: clouds come and go over a few of these.
    seed : int
        Non-negative seed of the cloud pattern.

    Returns
    -------
    numpy.ndarray of float64
        Extinction (mag), >= 0, the shape of `time_mjd`.

    Raises
    ------
    ValueError
        If an argument is out of range.
    """
    if not 0.0 <= clouded_fraction <= 1.0:
        raise ValueError(f"clouded_fraction must be within [0, 1], got {clouded_fraction}")
    if mean_extinction_mag < 0.0 or timescale_s <= 0.0 or seed < 0:
        raise ValueError("need mean_extinction_mag >= 0, timescale_s > 0 and seed >= 0")
    t = np.asarray(time_mjd, dtype=np.float64)
    if clouded_fraction == 0.0 or mean_extinction_mag == 0.0:
        return np.zeros(t.shape)
    f = min(clouded_fraction, _MAX_FRACTION)
    normal = NormalDist()
    theta = normal.inv_cdf(1.0 - f)
    # Mean excess of a standard normal above theta, given that it is above (inverse Mills).
    mean_excess = normal.pdf(theta) / f - theta
    scale = mean_extinction_mag / mean_excess
    g = _cloud_field(t, seed, timescale_s)
    extinction: NDArray[np.float64] = scale * np.maximum(g - theta, 0.0)
    return extinction


def cloud_transmission(
    time_mjd: ArrayLike,
    *,
    clouded_fraction: float,
    mean_extinction_mag: float,
    timescale_s: float,
    seed: int,
) -> NDArray[np.float64]:
    """Return the grey transmission of the clouds, ``10**(-0.4 * extinction)``.

    Parameters are those of `cloud_extinction_mag`.

    Returns
    -------
    numpy.ndarray of float64
        Transmission in (0, 1], the shape of `time_mjd`.
    """
    extinction = cloud_extinction_mag(
        time_mjd,
        clouded_fraction=clouded_fraction,
        mean_extinction_mag=mean_extinction_mag,
        timescale_s=timescale_s,
        seed=seed,
    )
    transmission: NDArray[np.float64] = 10.0 ** (-0.4 * extinction)
    return transmission


def exposure_transmission(
    mid_mjd: float,
    exposure_s: float,
    *,
    clouded_fraction: float,
    mean_extinction_mag: float,
    timescale_s: float,
    seed: int,
) -> float:
    """Return the cloud transmission averaged over an exposure.

    The light collected is the integral of the transmission over the exposure; it is
    sampled `_SAMPLES_PER_TIMESCALE` times per correlation time (at least once, at the
    middle), which follows the smooth series to well under a percent.

    Parameters
    ----------
    mid_mjd : float
        Middle of the exposure (MJD, UTC).
    exposure_s : float
        Exposure time (s), >= 0.
    clouded_fraction, mean_extinction_mag, timescale_s, seed
        The clouds, as for `cloud_extinction_mag`.

    Returns
    -------
    float
        Mean transmission in (0, 1].
    """
    if exposure_s < 0.0:
        raise ValueError("exposure_s must be >= 0")
    if clouded_fraction == 0.0 or mean_extinction_mag == 0.0:
        return 1.0
    n = min(_MAX_SAMPLES, max(1, math.ceil(_SAMPLES_PER_TIMESCALE * exposure_s / timescale_s)))
    # Midpoints of n equal slices of the exposure.
    offsets_s = ((np.arange(n) + 0.5) / n - 0.5) * exposure_s
    times = mid_mjd + offsets_s / 86400.0
    return float(
        cloud_transmission(
            times,
            clouded_fraction=clouded_fraction,
            mean_extinction_mag=mean_extinction_mag,
            timescale_s=timescale_s,
            seed=seed,
        ).mean()
    )


def spell_transmission(
    start_s: float, exposure_s: float, spells: list[tuple[float, float, float]]
) -> float:
    """Return the transmission of cloud spells averaged over an exposure.

    Each spell is ``(start, end, extinction_mag)`` on the exposure's time axis (s); the
    light collected is the exposure's share outside every spell plus, inside each, that
    share dimmed by its extinction (spells that overlap each other multiply).

    Parameters
    ----------
    start_s : float
        Start of the exposure (s, on the spells' axis).
    exposure_s : float
        Exposure time (s), >= 0; 0 takes the transmission at ``start_s``.
    spells : list of (float, float, float)
        The spells: start (s), end (s), grey extinction (mag).

    Returns
    -------
    float
        Mean transmission in (0, 1].
    """
    if not spells:
        return 1.0
    edges = sorted({start_s, start_s + exposure_s, *(t for a, b, _ in spells for t in (a, b))})
    edges = [t for t in edges if start_s <= t <= start_s + exposure_s]
    if exposure_s <= 0.0 or len(edges) < 2:
        ext = sum(m for a, b, m in spells if a <= start_s < b)
        return float(10.0 ** (-0.4 * ext))
    light = 0.0
    for a, b in itertools.pairwise(edges):
        mid = 0.5 * (a + b)
        ext = sum(m for lo, hi, m in spells if lo <= mid < hi)
        light += (b - a) * 10.0 ** (-0.4 * ext)
    return light / exposure_s
