"""Transients of the simulated sky: supernovae on galaxies, outbursts of stars, asteroids.

A `Transient` is a point source at a fixed sky position whose light is added on top of the
synthetic sky: a supernova at an offset from the nucleus of one of the simulated galaxies
(`obsctl.simulators.artefacts.galaxies`), or a nova-like outburst or a flare of one of the
catalog's stars (`obsctl.simulators.sky.synthetic_catalog`), drawn at the star's position as
the light the outburst adds. Their light curves are those of
`obsctl.simulators.variables.VariableStar` (``transient``: a Gaussian rise and an exponential
fade; ``flare``: seeded flares), so ``Transient.mag`` is the exact truth at any time.

An `Asteroid` moves along a great circle at a constant rate; the renderer integrates its
motion over each exposure, so a fast one is trailed (a line segment blurred by the seeing).

Hosts are found by their catalog id or as the nearest one to a sky position brighter than a
magnitude; `transients_from_config` and `asteroids_from_config` build both kinds from the
``[[simulator.sky.transients]]`` and ``[[simulator.sky.asteroids]]`` entries of
`obsctl.config.SimulatedSkyConfig`. Everything here is plain numeric code with no I/O; the
drawing is done by `obsctl.simulators.render.render_exposure`, which reports the truth of each
exposure in ``RenderResult.transients`` and ``RenderResult.asteroids``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from obsctl.config import SimulatedAsteroidConfig, SimulatedSkyConfig, SimulatedTransientConfig
from obsctl.simulators.artefacts import (
    _GALAXY_ID_BASE,
    GALAXY_DTYPE,
    _cell_galaxies,
    galaxies,
)
from obsctl.simulators.artefacts import _ID_STRIDE as _GALAXY_ID_STRIDE
from obsctl.simulators.atmosphere import COLOUR_INDEX
from obsctl.simulators.sky import (
    _ID_STRIDE,
    _MAX_RA_CELLS,
    _N_BANDS,
    StarCatalog,
    _cell_stars,
    _ra_cells_in_band,
    synthetic_catalog,
)
from obsctl.simulators.variables import VariableStar

log = logging.getLogger(__name__)

__all__ = [
    "ASTEROID_TRUTH_DTYPE",
    "TRAILED_FWHM_FRACTION",
    "TRANSIENT_TRUTH_DTYPE",
    "Asteroid",
    "Transient",
    "TransientKind",
    "asteroids_from_config",
    "galaxy_by_id",
    "nearest_galaxy",
    "nearest_star",
    "offset_position",
    "outburst_on_star",
    "star_by_id",
    "supernova_on_galaxy",
    "transients_from_config",
]

TransientKind = Literal["supernova", "nova", "flare"]
_KINDS: tuple[str, ...] = get_args(TransientKind)

TRANSIENT_TRUTH_DTYPE = np.dtype(
    [
        ("name", "U68"),
        ("kind", "U9"),
        ("ra_deg", np.float64),
        ("dec_deg", np.float64),
        ("x", np.float64),
        ("y", np.float64),
        ("mag", np.float64),
        ("flux_e", np.float64),
        ("total_mag", np.float64),
        ("host_kind", "U6"),
        ("host_id", np.int64),
        ("host_ra_deg", np.float64),
        ("host_dec_deg", np.float64),
        ("host_x", np.float64),
        ("host_y", np.float64),
        ("offset_arcsec", np.float64),
        ("offset_pa_deg", np.float64),
    ]
)
"""Row type of ``RenderResult.transients``, one row per transient centred in the image.

``x``, ``y``, ``host_x``, ``host_y`` are zero-based output pixels (as the stars'); ``mag`` is
the magnitude of the light the transient adds in the frame's band at the exposure's middle
(``inf`` before it appears or after it has faded: the row is there, with ``flux_e`` 0, so a
test can check a non-detection); ``flux_e`` its expected electrons (extinction, colour term
and clouds applied, as a star's); ``total_mag`` the host star plus its outburst (a star host)
or ``mag`` (a supernova); ``offset_arcsec`` and ``offset_pa_deg`` (east of north) place the
transient from its host's centre.
"""

ASTEROID_TRUTH_DTYPE = np.dtype(
    [
        ("name", "U68"),
        ("mag", np.float64),
        ("flux_e", np.float64),
        ("rate_arcsec_min", np.float64),
        ("pa_deg", np.float64),
        ("start_mjd", np.float64),
        ("end_mjd", np.float64),
        ("ra_start_deg", np.float64),
        ("dec_start_deg", np.float64),
        ("ra_mid_deg", np.float64),
        ("dec_mid_deg", np.float64),
        ("ra_end_deg", np.float64),
        ("dec_end_deg", np.float64),
        ("x_start", np.float64),
        ("y_start", np.float64),
        ("x_mid", np.float64),
        ("y_mid", np.float64),
        ("x_end", np.float64),
        ("y_end", np.float64),
        ("length_px", np.float64),
        ("trailed", np.bool_),
    ]
)
"""Row type of ``RenderResult.asteroids``, one row per asteroid whose track crosses the image.

Positions at the start, middle and end of the exposure, on the sky (deg) and in zero-based
output pixels (they may lie outside the image when the track crosses its edge); ``mag`` the
magnitude in the frame's band and ``flux_e`` the expected electrons of the whole track (as a
star's, part of it maybe off the image); ``length_px`` the track's length (output pixels) and
``trailed`` whether it is at least `TRAILED_FWHM_FRACTION` of the seeing FWHM long.
"""

TRAILED_FWHM_FRACTION = 0.5
"""An asteroid moving at least this fraction of the seeing FWHM in an exposure is trailed:
its image's second moment along the motion grows by ``L^2 / 12``, over 10 % of a Moffat
profile's, which shape measurements see. Every track is drawn exactly whatever its length."""

# Defaults of the light curves when a config entry leaves them out (day): a type Ia
# supernova rises over about three weeks (Gaussian time scale 6 d: 1e-6 of the peak 32 d
# before it) and fades by about a magnitude in 20 days; a classical nova rises in a day
# or two and fades over weeks; an M-dwarf flare rises in minutes and decays in tens of them.
_DEFAULT_RISE_FADE_D: dict[str, tuple[float, float]] = {
    "supernova": (6.0, 20.0),
    "nova": (1.0, 10.0),
    "flare": (0.002, 0.01),
}
_SEARCH_START_DEG = 0.02  # the nearest-host search starts here and doubles
_MAX_SEARCH_DEG = 5.0


def _band_index(band: str) -> str:
    key = band.strip().upper()
    if key not in COLOUR_INDEX:
        raise ValueError(f"unknown band {band!r}; expected one of {', '.join(COLOUR_INDEX)}")
    return key


def _mag_from_bvri(mags: tuple[float, float, float, float], band: str) -> float:
    """Magnitude in a band from B, V, R, I, with L the mean of V and R as the catalogs do."""
    b, v, r, i = mags
    return {"B": b, "V": v, "R": r, "I": i, "L": 0.5 * (v + r)}[_band_index(band)]


def offset_position(
    ra_deg: ArrayLike, dec_deg: ArrayLike, distance_arcsec: ArrayLike, pa_deg: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the point a distance away along a great circle leaving at a position angle.

    Parameters
    ----------
    ra_deg, dec_deg : array_like
        Start position, ICRS (deg).
    distance_arcsec : array_like
        Angular distance along the great circle (arcsec); negative goes the other way.
    pa_deg : array_like
        Position angle of the great circle at the start (deg, east of north).

    Returns
    -------
    ra_deg, dec_deg : numpy.ndarray of float64
        The end point (deg), RA in [0, 360).
    """
    ra0 = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec0 = np.radians(np.asarray(dec_deg, dtype=np.float64))
    d = np.radians(np.asarray(distance_arcsec, dtype=np.float64) / 3600.0)
    pa = np.radians(np.asarray(pa_deg, dtype=np.float64))
    sin_dec = np.sin(dec0) * np.cos(d) + np.cos(dec0) * np.sin(d) * np.cos(pa)
    dec = np.arcsin(np.clip(sin_dec, -1.0, 1.0))
    dra = np.arctan2(np.sin(pa) * np.sin(d) * np.cos(dec0), np.cos(d) - np.sin(dec0) * sin_dec)
    return np.degrees(ra0 + dra) % 360.0, np.degrees(dec)


def _separation_deg(
    ra_deg: NDArray[np.float64], dec_deg: NDArray[np.float64], ra0_deg: float, dec0_deg: float
) -> NDArray[np.float64]:
    """Angular distances (deg) by the haversine formula, exact at small separations."""
    dec, dec0 = np.radians(dec_deg), math.radians(dec0_deg)
    hav = (
        np.sin((dec - dec0) / 2.0) ** 2
        + math.cos(dec0) * np.cos(dec) * np.sin(np.radians(ra_deg - ra0_deg) / 2.0) ** 2
    )
    return np.asarray(np.degrees(2.0 * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0)))), np.float64)


# ------------------------------------------------------------------------------- hosts


def _cell_of(object_id: int, base: int, stride: int) -> tuple[int, int, int] | None:
    """Split a cell-based catalog id into (dec band, RA cell, index); None if impossible."""
    cell_index, index = divmod(object_id - base, stride)
    band, ra_cell = divmod(cell_index, _MAX_RA_CELLS)
    if object_id < base or not 0 <= band < _N_BANDS or ra_cell >= _ra_cells_in_band(band):
        return None
    return band, ra_cell, index


def galaxy_by_id(
    galaxy_id: int,
    *,
    seed: int,
    density_r21_per_deg2: float,
    mag_bright: float,
    mag_limit: float,
) -> np.void:
    """Return the galaxy with an id, from the population `artefacts.galaxies` draws.

    Parameters
    ----------
    galaxy_id : int
        The galaxy's id (``GALAXY_TRUTH_DTYPE["id"]`` of a rendered frame).
    seed, density_r21_per_deg2, mag_bright, mag_limit
        The population's parameters, as given to `obsctl.simulators.artefacts.galaxies`
        (a scene's ``catalog_seed`` and ``galaxy_*`` fields).

    Returns
    -------
    numpy.void
        The galaxy, a record of GALAXY_DTYPE.

    Raises
    ------
    ValueError
        If the population has no galaxy with that id.
    """
    cell = _cell_of(galaxy_id, _GALAXY_ID_BASE, _GALAXY_ID_STRIDE)
    if cell is not None:
        band, ra_cell, index = cell
        rows = _cell_galaxies(
            band, ra_cell, seed=seed, n21=density_r21_per_deg2, mag_bright=mag_bright,
            mag_limit=mag_limit,
        )  # fmt: skip
        if index < rows.size:
            galaxy: np.void = rows[index]
            return galaxy
    raise ValueError(f"the simulated sky has no galaxy with id {galaxy_id}")


def nearest_galaxy(
    ra_deg: float,
    dec_deg: float,
    *,
    seed: int,
    density_r21_per_deg2: float,
    mag_bright: float,
    mag_limit: float,
    brighter_than_mag: float = math.inf,
    max_distance_arcsec: float = _MAX_SEARCH_DEG * 3600.0,
) -> np.void:
    """Return the galaxy nearest to a position among those brighter than a magnitude.

    Parameters
    ----------
    ra_deg, dec_deg : float
        Position, ICRS (deg).
    seed, density_r21_per_deg2, mag_bright, mag_limit
        The population's parameters (see `galaxy_by_id`).
    brighter_than_mag : float, optional
        Only galaxies with an R magnitude below this (mag).
    max_distance_arcsec : float, optional
        Search no further than this (arcsec).

    Returns
    -------
    numpy.void
        The galaxy, a record of GALAXY_DTYPE.

    Raises
    ------
    ValueError
        If no such galaxy lies within `max_distance_arcsec`.
    """
    limit_deg = min(max_distance_arcsec / 3600.0, 180.0)
    radius = min(_SEARCH_START_DEG, limit_deg)
    while True:
        found = galaxies(
            ra_deg, dec_deg, radius, seed=seed, density_r21_per_deg2=density_r21_per_deg2,
            mag_bright=mag_bright, mag_limit=mag_limit,
        )  # fmt: skip
        found = found[found["mag_r"] < brighter_than_mag]
        if found.size:
            distance = _separation_deg(found["ra_deg"], found["dec_deg"], ra_deg, dec_deg)
            if distance.min() <= limit_deg:
                nearest: np.void = found[int(np.argmin(distance))]
                return nearest
        if radius >= limit_deg:
            raise ValueError(
                f"no simulated galaxy brighter than R = {brighter_than_mag:g} within "
                f"{max_distance_arcsec:g} arcsec of ({ra_deg:g}, {dec_deg:g})"
            )
        radius = min(2.0 * radius, limit_deg)


def star_by_id(
    star_id: int, *, seed: int, density_per_deg2: float, mag_bright: float, mag_limit: float
) -> StarCatalog:
    """Return the catalog star with an id, as a one-star `StarCatalog`.

    Parameters
    ----------
    star_id : int
        The star's id (``STAR_TRUTH_DTYPE["id"]``; catalog ids are >= 0).
    seed, density_per_deg2, mag_bright, mag_limit
        The catalog's parameters, as given to `obsctl.simulators.sky.synthetic_catalog`.

    Returns
    -------
    StarCatalog
        The star.

    Raises
    ------
    ValueError
        If the catalog has no star with that id.
    """
    cell = _cell_of(star_id, 0, _ID_STRIDE)
    if cell is not None:
        band, ra_cell, index = cell
        stars = _cell_stars(
            band, ra_cell, seed=seed, density_per_deg2=density_per_deg2, mag_bright=mag_bright,
            mag_limit=mag_limit,
        )  # fmt: skip
        if index < len(stars):
            return stars.take(np.array([index]))
    raise ValueError(f"the simulated sky has no star with id {star_id}")


def nearest_star(
    ra_deg: float,
    dec_deg: float,
    *,
    seed: int,
    density_per_deg2: float,
    mag_bright: float,
    mag_limit: float,
    brighter_than_mag: float = math.inf,
    max_distance_arcsec: float = 600.0,
) -> StarCatalog:
    """Return the catalog star nearest to a position among those brighter than a magnitude.

    Parameters
    ----------
    ra_deg, dec_deg : float
        Position, ICRS (deg).
    seed, density_per_deg2, mag_bright, mag_limit
        The catalog's parameters (see `star_by_id`).
    brighter_than_mag : float, optional
        Only stars with a V magnitude below this (mag).
    max_distance_arcsec : float, optional
        Search no further than this (arcsec).

    Returns
    -------
    StarCatalog
        The star.

    Raises
    ------
    ValueError
        If no such star lies within `max_distance_arcsec`.
    """
    radius_deg = min(max_distance_arcsec / 3600.0, 180.0)
    stars = synthetic_catalog(
        ra_deg, dec_deg, radius_deg, seed=seed, density_per_deg2=density_per_deg2,
        mag_bright=mag_bright, mag_limit=mag_limit,
    )  # fmt: skip
    stars = stars.take(stars.mag_v < brighter_than_mag)
    if not len(stars):
        raise ValueError(
            f"no simulated star brighter than V = {brighter_than_mag:g} within "
            f"{max_distance_arcsec:g} arcsec of ({ra_deg:g}, {dec_deg:g})"
        )
    distance = _separation_deg(stars.ra_deg, stars.dec_deg, ra_deg, dec_deg)
    return stars.take(np.array([int(np.argmin(distance))]))


# -------------------------------------------------------------------------- transients


@dataclass(frozen=True)
class Transient:
    """A transient of the simulated sky, placed on its host (build with the functions below).

    Parameters
    ----------
    name : str
        Name, for logs and the truth table.
    kind : {"supernova", "nova", "flare"}
        A supernova on a galaxy, or an outburst or flares of a catalog star.
    ra_deg, dec_deg : float
        Where the transient's light falls, ICRS (deg).
    light_curve : VariableStar
        Supernova: the supernova itself (kind ``transient``, ``mag_v`` its V peak). Star
        host: the outburst's shape (``transient`` for a nova, ``flare``), whose ``delta_mag``
        is the change of the star's total magnitude, the same in every band.
    host_kind : {"galaxy", "star"}
        What the host is.
    host_id : int
        The host's catalog id (galaxy ids from `obsctl.simulators.artefacts.galaxies`, star
        ids from `obsctl.simulators.sky.synthetic_catalog`).
    host_ra_deg, host_dec_deg : float
        The host's centre, ICRS (deg).
    host_mags_bvri : tuple of float
        The host's total B, V, R, I magnitudes (mag).
    offset_arcsec, offset_pa_deg : float
        The transient's distance from the host's centre (arcsec, 0 nuclear) and its position
        angle (deg, east of north); 0 for an outburst of a star.
    amplitude_mag : float
        Nova: the star's brightening at peak (mag); unused otherwise.
    """

    name: str
    kind: TransientKind
    ra_deg: float
    dec_deg: float
    light_curve: VariableStar
    host_kind: Literal["galaxy", "star"]
    host_id: int
    host_ra_deg: float
    host_dec_deg: float
    host_mags_bvri: tuple[float, float, float, float]
    offset_arcsec: float = 0.0
    offset_pa_deg: float = 0.0
    amplitude_mag: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"transient {self.name!r}: unknown kind {self.kind!r}")
        if (self.kind == "supernova") != (self.host_kind == "galaxy"):
            raise ValueError(f"transient {self.name!r}: a supernova (only) has a galaxy host")
        if self.offset_arcsec < 0.0 or (self.kind == "nova" and self.amplitude_mag <= 0.0):
            raise ValueError(
                f"transient {self.name!r}: need offset_arcsec >= 0 and a nova amplitude_mag > 0"
            )

    def excess_fraction(self, mjd: ArrayLike) -> NDArray[np.float64]:
        """Return the light a star host's outburst adds, as a fraction of the star's.

        Parameters
        ----------
        mjd : array_like
            Times (MJD, UTC).

        Returns
        -------
        numpy.ndarray of float64
            Added flux over the quiescent star's flux (dimensionless, >= 0); ``nan`` for a
            supernova, whose light is not a fraction of its host's.
        """
        t = np.asarray(mjd, dtype=np.float64)
        if self.host_kind == "galaxy":
            return np.full(t.shape, np.nan)
        if self.kind == "nova":
            # The transient shape (mag below peak) scales the peak excess 10**(0.4 A) - 1.
            shape = 10.0 ** (-0.4 * self.light_curve.delta_mag(t))
            return np.asarray((10.0 ** (0.4 * self.amplitude_mag) - 1.0) * shape, np.float64)
        return np.asarray(10.0 ** (-0.4 * self.light_curve.delta_mag(t)) - 1.0, np.float64)

    def host_mag(self, band: str) -> float:
        """Return the host's total magnitude in a band (mag; L the mean of V and R)."""
        return _mag_from_bvri(self.host_mags_bvri, band)

    def mag(self, band: str, mjd: ArrayLike) -> NDArray[np.float64]:
        """Return the magnitude of the light the transient adds, in a band at given times.

        This is what a difference image against a quiescent reference measures.

        Parameters
        ----------
        band : str
            ``"B"``, ``"V"``, ``"R"``, ``"I"`` or ``"L"`` (any case).
        mjd : array_like
            Times (MJD, UTC).

        Returns
        -------
        numpy.ndarray of float64
            Magnitudes (mag); ``inf`` where the transient adds no light.
        """
        if self.host_kind == "galaxy":
            _band_index(band)
            return self.light_curve.mag(band, mjd)
        excess = self.excess_fraction(mjd)
        with np.errstate(divide="ignore"):
            return np.asarray(self.host_mag(band) - 2.5 * np.log10(excess), dtype=np.float64)

    def total_mag(self, band: str, mjd: ArrayLike) -> NDArray[np.float64]:
        """Return a star host's total magnitude with its outburst; a supernova's own `mag`."""
        if self.host_kind == "galaxy":
            return self.mag(band, mjd)
        excess = self.excess_fraction(mjd)
        return np.asarray(self.host_mag(band) - 2.5 * np.log10(1.0 + excess), dtype=np.float64)

    def colour(self, band: str) -> float:
        """Return the catalog colour (mag) the band's colour term multiplies (`COLOUR_INDEX`).

        An outburst has its star's colour (the change is grey); a supernova its ``b_v``.
        """
        first, second = COLOUR_INDEX[_band_index(band)]
        if self.host_kind == "star":
            return self.host_mag(first) - self.host_mag(second)
        lc = self.light_curve
        return lc.quiescent_mag(first) - lc.quiescent_mag(second)


def supernova_on_galaxy(
    name: str,
    host: np.void,
    *,
    peak_mag_v: float,
    peak_mjd: float,
    offset_arcsec: float = 0.0,
    offset_pa_deg: float = 0.0,
    rise_d: float = _DEFAULT_RISE_FADE_D["supernova"][0],
    fade_d: float = _DEFAULT_RISE_FADE_D["supernova"][1],
    b_v: float = 0.0,
) -> Transient:
    """Return a supernova on a galaxy, at an offset from its nucleus.

    Parameters
    ----------
    name : str
        Name.
    host : numpy.void
        The host galaxy, a record of GALAXY_DTYPE (from `galaxies`, `galaxy_by_id` or
        `nearest_galaxy`).
    peak_mag_v : float
        V magnitude at peak (mag).
    peak_mjd : float
        Time of the peak (MJD).
    offset_arcsec : float, optional
        Distance from the nucleus (arcsec), >= 0; 0 is a nuclear transient.
    offset_pa_deg : float, optional
        Position angle of the offset (deg, east of north).
    rise_d, fade_d : float, optional
        Gaussian rise time scale and exponential fade time (day), as a ``transient``
        `VariableStar` (the light is 1e-6 of the peak, and left out, 5.3 rise times before).
    b_v : float, optional
        B-V colour (mag); the other bands follow `VariableStar.quiescent_mag`.

    Returns
    -------
    Transient
        The supernova.
    """
    if host.dtype != GALAXY_DTYPE:
        raise ValueError("host must be a record of GALAXY_DTYPE")
    host_ra, host_dec = float(host["ra_deg"]), float(host["dec_deg"])
    ra, dec = offset_position(host_ra, host_dec, offset_arcsec, offset_pa_deg)
    curve = VariableStar(
        name=name, kind="transient", ra_deg=float(ra), dec_deg=float(dec), mag_v=peak_mag_v,
        b_v=b_v, epoch_mjd=peak_mjd, rise_d=rise_d, fade_d=fade_d,
    )  # fmt: skip
    return Transient(
        name=name,
        kind="supernova",
        ra_deg=float(ra),
        dec_deg=float(dec),
        light_curve=curve,
        host_kind="galaxy",
        host_id=int(host["id"]),
        host_ra_deg=host_ra,
        host_dec_deg=host_dec,
        host_mags_bvri=(
            float(host["mag_b"]),
            float(host["mag_v"]),
            float(host["mag_r"]),
            float(host["mag_i"]),
        ),
        offset_arcsec=float(offset_arcsec),
        offset_pa_deg=float(offset_pa_deg) % 360.0,
    )


def outburst_on_star(
    name: str,
    kind: Literal["nova", "flare"],
    host: StarCatalog,
    *,
    amplitude_mag: float,
    epoch_mjd: float,
    rise_d: float | None = None,
    fade_d: float | None = None,
    rate_per_d: float = 0.5,
    seed: int = 0,
) -> Transient:
    """Return a nova-like outburst or the flares of a catalog star.

    The star stays in the catalog; the renderer adds, at its exact position, the light the
    outburst adds (`Transient.excess_fraction` of the star's in every band).

    Parameters
    ----------
    name : str
        Name.
    kind : {"nova", "flare"}
        A single outburst (a ``transient`` light curve) or seeded flares (``flare``).
    host : StarCatalog
        The star (one row: `star_by_id`, `nearest_star`).
    amplitude_mag : float
        Nova: brightening at peak (mag), > 0. Flare: typical flare peak above quiescence
        (mag), as `VariableStar.amplitude_mag`.
    epoch_mjd : float
        Nova: time of the peak (MJD). Flare: the time origin of the flare sequence.
    rise_d, fade_d : float or None, optional
        Rise and fade times (day), as `VariableStar`; None for the kind's typical values
        (nova 1 and 10 d, flare 0.002 and 0.01 d).
    rate_per_d, seed : optional
        Flare: mean flares per day (at most 2) and the seed of their times and sizes.

    Returns
    -------
    Transient
        The outburst.
    """
    if len(host) != 1:
        raise ValueError("host must hold exactly one star")
    if kind not in ("nova", "flare"):
        raise ValueError(f"outburst {name!r}: kind must be 'nova' or 'flare', not {kind!r}")
    default_rise, default_fade = _DEFAULT_RISE_FADE_D[kind]
    ra, dec = float(host.ra_deg[0]), float(host.dec_deg[0])
    curve = VariableStar(
        name=name,
        kind="transient" if kind == "nova" else "flare",
        ra_deg=ra,
        dec_deg=dec,
        mag_v=float(host.mag_v[0]),
        b_v=float(host.mag_b[0] - host.mag_v[0]),
        epoch_mjd=epoch_mjd,
        amplitude_mag=amplitude_mag,
        rise_d=default_rise if rise_d is None else rise_d,
        fade_d=default_fade if fade_d is None else fade_d,
        rate_per_d=rate_per_d,
        seed=seed,
    )
    return Transient(
        name=name,
        kind=kind,
        ra_deg=ra,
        dec_deg=dec,
        light_curve=curve,
        host_kind="star",
        host_id=int(host.id[0]),
        host_ra_deg=ra,
        host_dec_deg=dec,
        host_mags_bvri=(
            float(host.mag_b[0]),
            float(host.mag_v[0]),
            float(host.mag_r[0]),
            float(host.mag_i[0]),
        ),
        amplitude_mag=float(amplitude_mag),
    )


# --------------------------------------------------------------------------- asteroids


@dataclass(frozen=True)
class Asteroid:
    """A moving object: a constant-rate great-circle track and a constant magnitude.

    Parameters
    ----------
    name : str
        Name, for logs and the truth table.
    ra_deg, dec_deg : float
        Position at `epoch_mjd`, ICRS (deg).
    epoch_mjd : float
        Time of that position (MJD, UTC).
    rate_arcsec_min : float
        Angular rate (arcsec per minute), >= 0: main-belt asteroids near opposition move
        about 0.5, near-Earth objects up to hundreds.
    pa_deg : float
        Direction of motion at the epoch (deg, east of north).
    mag_v : float
        V magnitude (mag), constant (phase angle and distance changes are ignored).
    b_v : float, optional
        B-V colour (mag); 0.7 is a typical asteroid (about solar, slightly red).
    """

    name: str
    ra_deg: float
    dec_deg: float
    epoch_mjd: float
    rate_arcsec_min: float
    pa_deg: float
    mag_v: float
    b_v: float = 0.7

    def __post_init__(self) -> None:
        if not -90.0 <= self.dec_deg <= 90.0 or self.rate_arcsec_min < 0.0:
            raise ValueError(f"asteroid {self.name!r}: need dec_deg in [-90, 90] and rate >= 0")

    def position(self, mjd: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Return the position at given times.

        Parameters
        ----------
        mjd : array_like
            Times (MJD, UTC).

        Returns
        -------
        ra_deg, dec_deg : numpy.ndarray of float64
            ICRS position (deg), along the great circle leaving the epoch's position at
            `pa_deg` (so the track is a straight line in a gnomonic image).
        """
        minutes = (np.asarray(mjd, dtype=np.float64) - self.epoch_mjd) * 1440.0
        return offset_position(
            self.ra_deg, self.dec_deg, self.rate_arcsec_min * minutes, self.pa_deg
        )

    def mag(self, band: str) -> float:
        """Return the magnitude in a band (mag), by the colour relations of `VariableStar`."""
        return self._as_star().quiescent_mag(band)

    def colour(self, band: str) -> float:
        """Return the catalog colour (mag) the band's colour term multiplies."""
        first, second = COLOUR_INDEX[_band_index(band)]
        star = self._as_star()
        return star.quiescent_mag(first) - star.quiescent_mag(second)

    def _as_star(self) -> VariableStar:
        # A constant star of the same V and B-V: one set of colour relations for everything.
        return VariableStar(
            name=self.name, kind="constant", ra_deg=self.ra_deg % 360.0, dec_deg=self.dec_deg,
            mag_v=self.mag_v, b_v=self.b_v,
        )  # fmt: skip


# ------------------------------------------------------------------------------ config


def _transient_from_entry(entry: SimulatedTransientConfig, sky: SimulatedSkyConfig) -> Transient:
    """Resolve one ``[[simulator.sky.transients]]`` entry against the sky's catalogs."""
    rise, fade = entry.rise_d, entry.fade_d
    if entry.kind == "supernova":
        if entry.host_id is not None:
            galaxy = galaxy_by_id(
                entry.host_id, seed=sky.seed,
                density_r21_per_deg2=sky.galaxy_density_r21_per_deg2,
                mag_bright=sky.galaxy_mag_bright, mag_limit=sky.galaxy_mag_limit,
            )  # fmt: skip
        else:
            # The config's validator makes sure both coordinates are there.
            galaxy = nearest_galaxy(
                float(entry.ra_deg or 0.0), float(entry.dec_deg or 0.0), seed=sky.seed,
                density_r21_per_deg2=sky.galaxy_density_r21_per_deg2,
                mag_bright=sky.galaxy_mag_bright, mag_limit=sky.galaxy_mag_limit,
                brighter_than_mag=entry.host_brighter_than_mag,
                max_distance_arcsec=entry.search_radius_arcsec,
            )  # fmt: skip
        default_rise, default_fade = _DEFAULT_RISE_FADE_D["supernova"]
        return supernova_on_galaxy(
            entry.name,
            galaxy,
            peak_mag_v=float(entry.mag_v or 0.0),
            peak_mjd=entry.epoch_mjd,
            offset_arcsec=entry.offset_arcsec,
            offset_pa_deg=entry.offset_pa_deg,
            rise_d=default_rise if rise is None else rise,
            fade_d=default_fade if fade is None else fade,
            b_v=entry.b_v,
        )
    if entry.host_id is not None:
        star = star_by_id(
            entry.host_id, seed=sky.seed, density_per_deg2=sky.star_density_per_deg2,
            mag_bright=sky.mag_bright, mag_limit=sky.mag_limit,
        )  # fmt: skip
    else:
        star = nearest_star(
            float(entry.ra_deg or 0.0), float(entry.dec_deg or 0.0), seed=sky.seed,
            density_per_deg2=sky.star_density_per_deg2, mag_bright=sky.mag_bright,
            mag_limit=sky.mag_limit, brighter_than_mag=entry.host_brighter_than_mag,
            max_distance_arcsec=entry.search_radius_arcsec,
        )  # fmt: skip
    return outburst_on_star(
        entry.name,
        "nova" if entry.kind == "nova" else "flare",
        star,
        amplitude_mag=entry.amplitude_mag,
        epoch_mjd=entry.epoch_mjd,
        rise_d=rise,
        fade_d=fade,
        rate_per_d=entry.rate_per_d,
        seed=entry.seed,
    )


def transients_from_config(sky: SimulatedSkyConfig) -> tuple[Transient, ...]:
    """Build the transients of the sky config's ``transients`` entries, hosts resolved.

    Supernova hosts come from the galaxy population of ``seed``, ``galaxy_density_r21_per_
    deg2``, ``galaxy_mag_bright`` and ``galaxy_mag_limit`` (whether or not ``galaxies``
    draws them); star hosts from the star catalog of ``seed``, ``star_density_per_deg2``,
    ``mag_bright`` and ``mag_limit``: the same objects the camera renders.

    Parameters
    ----------
    sky : SimulatedSkyConfig
        The simulated sky.

    Returns
    -------
    tuple of Transient
        One per entry, in order.

    Raises
    ------
    ValueError
        If an entry's host cannot be found (no such id, none near enough).
    """
    transients = tuple(_transient_from_entry(entry, sky) for entry in sky.transients)
    for t in transients:
        log.debug(
            "transient %s (%s) on %s %d at %.6f %+.6f", t.name, t.kind, t.host_kind, t.host_id,
            t.ra_deg, t.dec_deg,
        )  # fmt: skip
    return transients


def asteroids_from_config(entries: Sequence[SimulatedAsteroidConfig]) -> tuple[Asteroid, ...]:
    """Build `Asteroid` objects from the sky config's ``asteroids`` entries.

    Parameters
    ----------
    entries : sequence
        The ``asteroids`` entries of a `SimulatedSkyConfig`.

    Returns
    -------
    tuple of Asteroid
        One per entry, in order.
    """
    names = Asteroid.__dataclass_fields__.keys()
    return tuple(Asteroid(**{n: getattr(e, n) for n in names}) for e in entries)
