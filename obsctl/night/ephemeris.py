"""Sun, moon and target positions for a site and a night, offline, with astropy.

Everything is computed once per night on a time grid (2 min steps by default, vectorised in
one astropy transform per body), then read by interpolation: a transform costs tens of
milliseconds, a lookup microseconds, so the scheduler can ask "what is observable when" at
every decision point. Crossings (sunset, twilights) are refined by linear interpolation
between grid points; with 2 min steps the error is well under a second of time for the sun.

Offline: astropy would download the IERS-A table for current dates. `use_offline_iers` makes
it use the tables shipped in the astropy packages instead (polar motion and UT1-UTC from
predictions, degraded by well under an arcsecond, irrelevant for scheduling) and keeps the
resulting accuracy warnings out of the log.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
from numpy.typing import NDArray

from obsctl.config import SiteConfig

__all__ = [
    "SYNODIC_MONTH_DAYS",
    "Crossing",
    "NightEphemeris",
    "TargetTrack",
    "Twilights",
    "airmass_from_alt",
    "cached_night",
    "night_window",
    "quiet_astropy",
    "sky_brightness_mag",
    "use_offline_iers",
]

log = logging.getLogger(__name__)

#: Sun altitudes (deg) of the usual events; -0.833 includes refraction and the sun's radius.
SUNSET_ALT_DEG = -0.833
CIVIL_ALT_DEG = -6.0
NAUTICAL_ALT_DEG = -12.0
ASTRONOMICAL_ALT_DEG = -18.0
#: Mean length of the moon's cycle of phases (days), as N.I.N.A. Target Scheduler uses it.
SYNODIC_MONTH_DAYS = 29.53059


@functools.cache
def use_offline_iers() -> None:
    """Make astropy use only its packaged IERS data (no downloads), once per process."""
    from astropy.utils import iers

    iers.conf.auto_download = False
    # The packaged predictions are older than the default 30-day limit; accept them.
    iers.conf.auto_max_age = None
    # Beyond the predictions astropy would raise; degrade to a warning (filtered below).
    iers.conf.iers_degraded_accuracy = "warn"


@contextlib.contextmanager
def quiet_astropy() -> Iterator[None]:
    """Silence the accuracy warnings that offline IERS data and far-future dates cause.

    They say UT1-UTC or polar motion are extrapolated, which changes positions by far less
    than anything scheduling cares about.
    """
    from astropy.utils.exceptions import AstropyWarning
    from erfa import ErfaWarning

    use_offline_iers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        warnings.simplefilter("ignore", ErfaWarning)
        yield


def airmass_from_alt(alt_deg: NDArray[np.float64] | float) -> NDArray[np.float64]:
    """Return the airmass (Pickering 2002) for altitudes in degrees; inf below the horizon.

    Parameters
    ----------
    alt_deg : array_like
        Apparent altitude in degrees.

    Returns
    -------
    numpy.ndarray
        Airmass (dimensionless), ``inf`` where the altitude is at or below 0.
    """
    alt = np.asarray(alt_deg, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = 1.0 / np.sin(np.radians(alt + 244.0 / (165.0 + 47.0 * np.abs(alt) ** 1.1)))
    return np.where(alt > 0, x, np.inf)


def night_window(night: date, longitude_deg: float) -> tuple[datetime, datetime]:
    """Return the UTC span from local mean noon of ``night`` to the next local mean noon.

    Parameters
    ----------
    night : datetime.date
        The date the night starts on (the ``DAY-OBS`` convention of `obsctl.store.headers`).
    longitude_deg : float
        Site longitude, east positive, in degrees.
    """
    noon = datetime.combine(night, time(12), tzinfo=UTC) - timedelta(hours=longitude_deg / 15)
    return noon, noon + timedelta(days=1)


def sky_brightness_mag(
    dark_mag_arcsec2: float,
    sun_alt_deg: float,
    moon_alt_deg: float,
    moon_illumination: float,
    moon_separation_deg: float,
) -> float:
    """Approximate V-band sky surface brightness from twilight and moonlight.

    A coarse model for the simulators, not photometry: twilight brightens the sky by about
    one magnitude per degree of sun altitude (4 mag/arcsec2 at sunset, dark at -18 deg);
    a full moon high in the sky adds about 18 mag/arcsec2, more near the moon.

    Parameters
    ----------
    dark_mag_arcsec2 : float
        Moonless night-sky brightness in mag/arcsec2.
    sun_alt_deg, moon_alt_deg : float
        Altitudes in degrees.
    moon_illumination : float
        Illuminated fraction of the moon, 0 to 1.
    moon_separation_deg : float
        Angle between the pointing and the moon in degrees.

    Returns
    -------
    float
        Sky surface brightness in mag/arcsec2.
    """
    flux = 10.0 ** (-0.4 * dark_mag_arcsec2)
    if sun_alt_deg > ASTRONOMICAL_ALT_DEG:
        twilight_mag = 4.0 - min(sun_alt_deg, 0.0) * (dark_mag_arcsec2 - 4.0) / 18.0
        flux += 10.0 ** (-0.4 * twilight_mag)
    if moon_alt_deg > 0 and moon_illumination > 0:
        near = 1.0 + 4.0 * math.exp(-moon_separation_deg / 15.0)
        flux += (
            10.0 ** (-0.4 * 18.0)
            * moon_illumination**1.5
            * math.sin(math.radians(moon_alt_deg))
            * near
        )
    return -2.5 * math.log10(flux)


@dataclass(frozen=True, slots=True)
class Crossing:
    """When the sun crosses an altitude, going down (dusk) and up (dawn); None if never."""

    dusk: datetime | None
    dawn: datetime | None


@dataclass(frozen=True, slots=True)
class Twilights:
    """The night's sun events (UTC)."""

    sunset: Crossing
    civil: Crossing
    nautical: Crossing
    astronomical: Crossing


@dataclass(frozen=True, slots=True)
class TargetTrack:
    """A target's altitude, airmass, hour angle and moon separation on the night's grid.

    Attributes
    ----------
    alt_deg : numpy.ndarray
        Altitude in degrees.
    airmass : numpy.ndarray
        Airmass (inf below the horizon).
    hour_angle_h : numpy.ndarray
        Hour angle in hours, wrapped to [-12, 12).
    moon_sep_deg : numpy.ndarray
        Angle to the moon in degrees.
    az_deg : numpy.ndarray
        Azimuth in degrees, north = 0, east = 90 (for the local horizon).
    """

    alt_deg: NDArray[np.float64]
    airmass: NDArray[np.float64]
    hour_angle_h: NDArray[np.float64]
    moon_sep_deg: NDArray[np.float64]
    az_deg: NDArray[np.float64]


class NightEphemeris:
    """Sun, moon and targets over one night at one site.

    Parameters
    ----------
    site : SiteConfig
        Latitude, longitude (east positive) and elevation.
    night : datetime.date
        The date the night starts on.
    step_s : float
        Grid step in seconds.
    """

    def __init__(self, site: SiteConfig, night: date, *, step_s: float = 120.0) -> None:
        from astropy import units as u
        from astropy.coordinates import AltAz, EarthLocation, get_body
        from astropy.time import Time

        self.site = site
        self.night = night
        self.start, self.end = night_window(night, site.longitude_deg)
        n = int((self.end - self.start).total_seconds() // step_s) + 1
        #: Grid times in seconds from `start`.
        self.t_s = np.arange(n, dtype=np.float64) * step_s
        self._location = EarthLocation.from_geodetic(
            site.longitude_deg * u.deg, site.latitude_deg * u.deg, site.elevation_m * u.m
        )
        with quiet_astropy():
            self._times = Time(self.start) + self.t_s * u.s
            # No refraction model: astropy's needs pressure; ~0.5 deg near the horizon is
            # covered by SUNSET_ALT_DEG and irrelevant above the minimum altitudes used.
            self._frame = AltAz(obstime=self._times, location=self._location)
            sun = get_body("sun", self._times, self._location)
            moon = get_body("moon", self._times, self._location)
            sun_altaz = sun.transform_to(self._frame)
            moon_altaz = moon.transform_to(self._frame)
            self.sun_alt_deg = np.asarray(sun_altaz.alt.deg, dtype=np.float64)
            self.moon_alt_deg = np.asarray(moon_altaz.alt.deg, dtype=np.float64)
            elongation = sun.separation(moon).rad
            # Illuminated fraction from the sun-moon elongation (phase angle ~ pi - elong.).
            self.moon_illumination = np.asarray((1.0 - np.cos(elongation)) / 2.0)
            # The moon's age (days since new moon) from its right ascension east of the
            # sun's, as N.I.N.A. computes it (AstroUtil.GetMoonPositionAngle, Target
            # Scheduler's AstrometryUtils.GetMoonAge): 0 new, half a cycle full.
            east_deg = np.mod(np.asarray(moon.ra.deg) - np.asarray(sun.ra.deg), 360.0)
            #: Moon's age in days (0 to `SYNODIC_MONTH_DAYS`) on the grid.
            self.moon_age_days = np.asarray(east_deg * SYNODIC_MONTH_DAYS / 360.0)
            self._moon_icrs = moon.icrs
            lst = self._times.sidereal_time("mean", longitude=self._location.lon)
            self._lst_deg = np.asarray(lst.deg, dtype=np.float64)

    # -- lookups --------------------------------------------------------------------------

    def seconds(self, when: datetime) -> float:
        """Return seconds of ``when`` since the grid start."""
        return (when - self.start).total_seconds()

    def time_at(self, seconds: float) -> datetime:
        """Return the datetime ``seconds`` after the grid start."""
        return self.start + timedelta(seconds=float(seconds))

    def _interp(self, values: NDArray[np.float64], when: datetime) -> float:
        return float(np.interp(self.seconds(when), self.t_s, values))

    def sun_alt(self, when: datetime) -> float:
        """Sun altitude in degrees at ``when``."""
        return self._interp(self.sun_alt_deg, when)

    def moon_alt(self, when: datetime) -> float:
        """Moon altitude in degrees at ``when``."""
        return self._interp(self.moon_alt_deg, when)

    def moon_phase(self, when: datetime) -> float:
        """Illuminated fraction of the moon (0 to 1) at ``when``."""
        return self._interp(self.moon_illumination, when)

    def moon_age(self, when: datetime) -> float:
        """Moon's age in days since new moon (0 to `SYNODIC_MONTH_DAYS`) at ``when``."""
        # Nearest grid point: the age jumps from a full cycle back to 0 at new moon.
        return float(self.moon_age_days[self.index(when)])

    def crossing(self, alt_deg: float) -> Crossing:
        """Return when the sun goes below ``alt_deg`` (dusk) and back above it (dawn)."""
        alt = self.sun_alt_deg - alt_deg
        down = np.flatnonzero((alt[:-1] > 0) & (alt[1:] <= 0))
        up = np.flatnonzero((alt[:-1] <= 0) & (alt[1:] > 0))
        return Crossing(
            dusk=self._refine(alt, int(down[0])) if down.size else None,
            dawn=self._refine(alt, int(up[-1])) if up.size else None,
        )

    def _refine(self, alt: NDArray[np.float64], i: int) -> datetime:
        frac = alt[i] / (alt[i] - alt[i + 1])
        return self.time_at(self.t_s[i] + frac * (self.t_s[i + 1] - self.t_s[i]))

    def twilights(self) -> Twilights:
        """Sunset/sunrise and civil, nautical and astronomical twilights."""
        return Twilights(
            sunset=self.crossing(SUNSET_ALT_DEG),
            civil=self.crossing(CIVIL_ALT_DEG),
            nautical=self.crossing(NAUTICAL_ALT_DEG),
            astronomical=self.crossing(ASTRONOMICAL_ALT_DEG),
        )

    def track(self, ra_deg: float, dec_deg: float) -> TargetTrack:
        """Compute a target's track over the night's grid.

        Parameters
        ----------
        ra_deg, dec_deg : float
            ICRS (J2000) coordinates in degrees.
        """
        return self.tracks([ra_deg], [dec_deg])[0]

    def tracks(self, ra_deg: Sequence[float], dec_deg: Sequence[float]) -> list[TargetTrack]:
        """Compute the tracks of many targets at once (one broadcast transform).

        One transform of all targets over the grid costs about as much as one target's
        (astropy's cost is mostly per call): 100 targets take ~70 ms instead of ~5 s.

        Parameters
        ----------
        ra_deg, dec_deg : sequence of float
            ICRS (J2000) coordinates in degrees.
        """
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        ra = np.asarray(ra_deg, dtype=np.float64)[:, None]
        dec = np.asarray(dec_deg, dtype=np.float64)[:, None]
        if ra.size == 0:
            return []
        with quiet_astropy():
            coord = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
            altaz = coord.transform_to(self._frame)
            alt = np.asarray(altaz.alt.deg, dtype=np.float64)
            az = np.asarray(altaz.az.deg, dtype=np.float64)
            sep = np.asarray(coord.separation(self._moon_icrs[None, :]).deg, dtype=np.float64)
        ha = ((self._lst_deg[None, :] - ra) / 15.0 + 12.0) % 24.0 - 12.0
        return [
            TargetTrack(
                alt_deg=alt[i],
                airmass=airmass_from_alt(alt[i]),
                hour_angle_h=ha[i],
                moon_sep_deg=sep[i],
                az_deg=az[i],
            )
            for i in range(ra.shape[0])
        ]

    def index(self, when: datetime) -> int:
        """Return the grid index at or just before ``when`` (clipped to the grid)."""
        i = int(self.seconds(when) // (self.t_s[1] - self.t_s[0]))
        return min(max(i, 0), self.t_s.size - 1)

    def sky_mag(
        self, when: datetime, ra_deg: float, dec_deg: float, dark_mag_arcsec2: float
    ) -> float:
        """Sky brightness (mag/arcsec2) toward ``ra_deg, dec_deg`` at ``when``.

        See `sky_brightness_mag`; the moon separation is computed on the sphere from the
        moon's ICRS position at the nearest grid point.
        """
        i = self.index(when)
        moon_ra = math.radians(float(self._moon_icrs.ra.deg[i]))
        moon_dec = math.radians(float(self._moon_icrs.dec.deg[i]))
        ra, dec = math.radians(ra_deg), math.radians(dec_deg)
        cos_sep = math.sin(dec) * math.sin(moon_dec) + math.cos(dec) * math.cos(
            moon_dec
        ) * math.cos(ra - moon_ra)
        sep = math.degrees(math.acos(max(-1.0, min(1.0, cos_sep))))
        return sky_brightness_mag(
            dark_mag_arcsec2,
            self.sun_alt(when),
            self.moon_alt(when),
            self.moon_phase(when),
            sep,
        )


@functools.lru_cache(maxsize=4)
def cached_night(site: SiteConfig, night: date) -> NightEphemeris:
    """Return the (shared, cached) `NightEphemeris` of ``site`` for ``night``.

    The scheduler and the simulated sky ask for the same nights; computing one costs about
    a second, so it is done once per process.
    """
    return NightEphemeris(site, night)
