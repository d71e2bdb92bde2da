"""Deterministic synthetic star catalogs and the simulated camera's sky geometry.

The simulated sky is divided into fixed cells: declination bands one degree high, each split in
right ascension into cells of roughly one square degree. Every cell's stars come from a random
generator seeded by ``(seed, cell index)``, so a star has the same id, position and magnitudes
whichever field asks for it, and overlapping fields agree.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import numpy as np
from astropy.wcs import WCS
from numpy.typing import NDArray

from obsctl.config import SimulatedSkyConfig
from obsctl.store.refcat import RefCatalog

log = logging.getLogger(__name__)

__all__ = [
    "BANDS",
    "StarCatalog",
    "SyntheticCone",
    "field_wcs",
    "import_synthetic",
    "pixel_scale_arcsec",
    "synthetic_catalog",
]

BANDS: tuple[str, ...] = ("B", "V", "R", "I", "L")
"""Band names understood by `StarCatalog.mag` (case-insensitive)."""

_BAND_HEIGHT_DEG = 1.0
_N_BANDS = 180
_MAX_RA_CELLS = 360
# Star ids are ``cell index * _ID_STRIDE + index in cell``; readable and unique while a cell
# holds fewer stars than the stride, which `synthetic_catalog` guarantees via its density limit.
_ID_STRIDE = 100_000_000
_MAX_DENSITY_PER_DEG2 = 1.0e7
# log10 N(<m) = _MAG_SLOPE * m + const, the classic slope of star counts at intermediate
# galactic latitude.
_MAG_SLOPE = 0.35
# Johnson-Cousins colours of main-sequence dwarfs against B-V (A0 to M4), after Bessell
# (1990, PASP 102, 1181) and Pecaut & Mamajek (2013, ApJS 208, 9); the Sun: 0.65, 0.36, 0.34.
_DWARF_B_V = (-0.10, 0.00, 0.30, 0.58, 0.65, 0.82, 1.00, 1.15, 1.40, 1.48, 1.53, 1.60, 1.90)
_DWARF_V_R = (-0.05, 0.00, 0.17, 0.34, 0.36, 0.46, 0.57, 0.65, 0.85, 0.92, 0.98, 1.05, 1.20)
_DWARF_R_I = (-0.05, 0.00, 0.17, 0.33, 0.34, 0.42, 0.50, 0.58, 0.85, 1.05, 1.20, 1.40, 1.70)
_COLOUR_SCATTER_MAG = 0.03  # intrinsic spread of V-R and R-I about the sequences


@dataclass(frozen=True, eq=False)
class StarCatalog:
    """A table of stars as equal-length one-dimensional arrays.

    Parameters
    ----------
    id : numpy.ndarray of int64
        Stable star identifier (the same star always has the same id).
    ra_deg, dec_deg : numpy.ndarray of float64
        ICRS right ascension in [0, 360) and declination, in degrees.
    mag_b, mag_v, mag_r, mag_i : numpy.ndarray of float64
        Johnson-Cousins B, V, R and I magnitudes (mag).
    """

    id: NDArray[np.int64]
    ra_deg: NDArray[np.float64]
    dec_deg: NDArray[np.float64]
    mag_b: NDArray[np.float64]
    mag_v: NDArray[np.float64]
    mag_r: NDArray[np.float64]
    mag_i: NDArray[np.float64]

    def __post_init__(self) -> None:
        n = self.id.shape
        columns = (self.ra_deg, self.dec_deg, self.mag_b, self.mag_v, self.mag_r, self.mag_i)
        if self.id.ndim != 1 or any(c.shape != n for c in columns):
            raise ValueError("StarCatalog columns must be one-dimensional and of equal length")

    def __len__(self) -> int:
        return int(self.id.shape[0])

    def mag(self, band: str) -> NDArray[np.float64]:
        """Return the magnitudes in one photometric band.

        Parameters
        ----------
        band : str
            ``"B"``, ``"V"``, ``"R"``, ``"I"`` or ``"L"`` (luminance / clear filter), in any
            case. ``"L"`` is approximated by the mean of V and R, the centre of a clear
            filter's response on a silicon sensor.

        Returns
        -------
        numpy.ndarray of float64
            Magnitudes (mag), one per star.

        Raises
        ------
        ValueError
            If the band is not one of `BANDS`.
        """
        key = band.strip().upper()
        if key == "B":
            return self.mag_b
        if key == "V":
            return self.mag_v
        if key == "R":
            return self.mag_r
        if key == "I":
            return self.mag_i
        if key == "L":
            return 0.5 * (self.mag_v + self.mag_r)
        raise ValueError(f"unknown band {band!r}; expected one of {', '.join(BANDS)}")

    def magnitudes(self) -> dict[str, NDArray[np.float64]]:
        """Return the magnitude columns keyed as the reference catalog names them (``mag_v``)."""
        return {"mag_b": self.mag_b, "mag_v": self.mag_v, "mag_r": self.mag_r, "mag_i": self.mag_i}

    def take(self, index: NDArray[np.bool_] | NDArray[np.intp]) -> StarCatalog:
        """Return the stars selected by a boolean mask or an index array.

        Parameters
        ----------
        index : numpy.ndarray of bool or int
            Mask of length ``len(self)`` or integer positions.

        Returns
        -------
        StarCatalog
            A new catalog holding copies of the selected rows.
        """
        return StarCatalog(
            id=self.id[index],
            ra_deg=self.ra_deg[index],
            dec_deg=self.dec_deg[index],
            mag_b=self.mag_b[index],
            mag_v=self.mag_v[index],
            mag_r=self.mag_r[index],
            mag_i=self.mag_i[index],
        )


def _ra_cells_in_band(band: int) -> int:
    dec_mid = -90.0 + (band + 0.5) * _BAND_HEIGHT_DEG
    return max(1, min(_MAX_RA_CELLS, round(_MAX_RA_CELLS * math.cos(math.radians(dec_mid)))))


def _cell_stars(
    band: int,
    ra_cell: int,
    *,
    seed: int,
    density_per_deg2: float,
    mag_bright: float,
    mag_limit: float,
) -> StarCatalog:
    """Generate every star of one sky cell, reproducibly."""
    n_ra = _ra_cells_in_band(band)
    cell_index = band * _MAX_RA_CELLS + ra_cell
    dec_lo = -90.0 + band * _BAND_HEIGHT_DEG
    dec_hi = dec_lo + _BAND_HEIGHT_DEG
    ra_width = 360.0 / n_ra
    sin_lo = math.sin(math.radians(dec_lo))
    sin_hi = math.sin(math.radians(dec_hi))
    area_deg2 = ra_width * (sin_hi - sin_lo) * math.degrees(1.0)

    # The draw order below is part of the catalog's identity: changing it changes every star.
    rng = np.random.default_rng([seed, cell_index])
    n = int(rng.poisson(density_per_deg2 * area_deg2))
    ra = (ra_cell + rng.random(n)) * ra_width
    # Uniform in sin(dec) is uniform in area on the sphere.
    dec = np.degrees(np.arcsin(sin_lo + rng.random(n) * (sin_hi - sin_lo)))
    # Inverse CDF of N(<m) proportional to 10**(0.35 m) between the two limits.
    lo = 10.0 ** (_MAG_SLOPE * mag_bright)
    hi = 10.0 ** (_MAG_SLOPE * mag_limit)
    mag_v = np.log10(lo + rng.random(n) * (hi - lo)) / _MAG_SLOPE
    # Field stars are a mix of dwarfs (bluer) and giants (redder); B-V mostly within 0.3-1.5.
    giant = rng.random(n) < 0.35
    b_v = np.where(giant, rng.normal(1.15, 0.2, n), rng.normal(0.6, 0.2, n))
    b_v = np.clip(b_v, -0.1, 1.9)
    # Dwarfs follow the main sequence, whose R-I climbs steeply into the M dwarfs; giants a
    # near-linear branch. Each star scatters about its sequence as real stars do (metallicity,
    # binarity), so V-R and R-I are not functions of B-V: colour terms in different colours
    # can be told apart. These draws come last so that positions, V and B-V stay as they were.
    scatter = rng.normal(0.0, _COLOUR_SCATTER_MAG, (2, n))
    v_r = np.where(giant, 0.55 * b_v, np.interp(b_v, _DWARF_B_V, _DWARF_V_R)) + scatter[0]
    r_i = np.where(giant, 0.50 * b_v + 0.02, np.interp(b_v, _DWARF_B_V, _DWARF_R_I)) + scatter[1]
    ids = cell_index * _ID_STRIDE + np.arange(n, dtype=np.int64)
    return StarCatalog(
        id=ids,
        ra_deg=ra,
        dec_deg=dec,
        mag_b=mag_v + b_v,
        mag_v=mag_v,
        mag_r=mag_v - v_r,
        mag_i=mag_v - v_r - r_i,
    )


def _cells_near(ra_deg: float, dec_deg: float, radius_deg: float) -> list[tuple[int, int]]:
    """List the (band, RA cell) pairs that may hold stars within the radius."""
    first = max(0, math.floor((dec_deg - radius_deg + 90.0) / _BAND_HEIGHT_DEG))
    last = min(_N_BANDS - 1, math.floor((dec_deg + radius_deg + 90.0) / _BAND_HEIGHT_DEG))
    if abs(dec_deg) + radius_deg >= 90.0:
        half_width = 180.0  # the circle holds a pole: every right ascension
    else:
        # Largest RA offset reached anywhere on a small circle of this radius.
        half_width = math.degrees(
            math.asin(math.sin(math.radians(radius_deg)) / math.cos(math.radians(dec_deg)))
        )
    cells: list[tuple[int, int]] = []
    for band in range(first, last + 1):
        n_ra = _ra_cells_in_band(band)
        width = 360.0 / n_ra
        if half_width >= 180.0 or 2.0 * half_width + 2.0 * width >= 360.0:
            cells.extend((band, i) for i in range(n_ra))
            continue
        i_lo = math.floor((ra_deg - half_width) / width)
        i_hi = math.floor((ra_deg + half_width) / width)
        cells.extend((band, i % n_ra) for i in sorted({j % n_ra for j in range(i_lo, i_hi + 1)}))
    return cells


def synthetic_catalog(
    ra_deg: float,
    dec_deg: float,
    radius_deg: float,
    *,
    seed: int,
    density_per_deg2: float,
    mag_bright: float,
    mag_limit: float,
) -> StarCatalog:
    """Return the deterministic synthetic stars within a circle on the sky.

    Stars are uniform on the sphere with, per cell, a Poisson number of mean
    ``density_per_deg2 * cell area``. V magnitudes follow ``log10 N(<m) = 0.35 m + const``
    between `mag_bright` and `mag_limit`; B-V colours are drawn from a dwarf/giant mix
    (mostly 0.3-1.5) and V-R, R-I follow the dwarf or giant sequence with a 0.03 mag
    scatter. The same arguments (other than
    the field centre and radius) always give the same stars, ids and magnitudes.

    Parameters
    ----------
    ra_deg, dec_deg : float
        Field centre, ICRS right ascension and declination (deg). Any RA is wrapped to
        [0, 360).
    radius_deg : float
        Field radius (deg), true angular distance, in (0, 180].
    seed : int
        Non-negative catalog seed; different seeds give different skies.
    density_per_deg2 : float
        Mean number of stars per square degree between the two magnitude limits.
    mag_bright, mag_limit : float
        Brightest and faintest V magnitude generated (mag).

    Returns
    -------
    StarCatalog
        The stars within `radius_deg` of the centre, ordered by sky cell then by index.

    Raises
    ------
    ValueError
        If an argument is out of range.
    """
    if not -90.0 <= dec_deg <= 90.0:
        raise ValueError(f"dec_deg must be within [-90, 90], got {dec_deg}")
    if not 0.0 < radius_deg <= 180.0:
        raise ValueError(f"radius_deg must be within (0, 180], got {radius_deg}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if not 0.0 <= density_per_deg2 <= _MAX_DENSITY_PER_DEG2:
        raise ValueError(
            f"density_per_deg2 must be within [0, {_MAX_DENSITY_PER_DEG2:g}], "
            f"got {density_per_deg2}"
        )
    if not mag_limit > mag_bright:
        raise ValueError(f"mag_limit ({mag_limit}) must be fainter than mag_bright ({mag_bright})")

    ra_deg = ra_deg % 360.0
    parts = []
    for band, ra_cell in _cells_near(ra_deg, dec_deg, radius_deg):
        cell = _cell_stars(
            band,
            ra_cell,
            seed=seed,
            density_per_deg2=density_per_deg2,
            mag_bright=mag_bright,
            mag_limit=mag_limit,
        )
        parts.append(cell.take(_within(cell, ra_deg, dec_deg, radius_deg)))
    catalog = StarCatalog(
        id=np.concatenate([p.id for p in parts]),
        ra_deg=np.concatenate([p.ra_deg for p in parts]),
        dec_deg=np.concatenate([p.dec_deg for p in parts]),
        mag_b=np.concatenate([p.mag_b for p in parts]),
        mag_v=np.concatenate([p.mag_v for p in parts]),
        mag_r=np.concatenate([p.mag_r for p in parts]),
        mag_i=np.concatenate([p.mag_i for p in parts]),
    )
    log.debug(
        "synthetic catalog: %d stars within %.3f deg of (%.4f, %.4f) from %d cells",
        len(catalog),
        radius_deg,
        ra_deg,
        dec_deg,
        len(parts),
    )
    return catalog


@dataclass(frozen=True)
class SyntheticCone:
    """Reference stars from the synthetic sky, generated on demand (a cone query).

    With simulated cameras the sky is this deterministic catalog, so the pipeline reads it as
    it would read a catalog file, with no import step and nothing downloaded. Picklable: it
    crosses to the pipeline's worker processes.
    """

    sky: SimulatedSkyConfig

    def __call__(self, ra_deg: float, dec_deg: float, radius_deg: float) -> NDArray[Any]:
        """Return the stars within ``radius_deg`` of the centre, brightest (V) first.

        Returns
        -------
        numpy.ndarray
            Structured: ``ra_deg``, ``dec_deg`` (deg), ``mag_b``, ``mag_v``, ``mag_r``,
            ``mag_i`` (mag), the columns `obsctl.store.refcat` names.
        """
        cat = synthetic_catalog(
            ra_deg,
            dec_deg,
            radius_deg,
            seed=self.sky.seed,
            density_per_deg2=self.sky.star_density_per_deg2,
            mag_bright=self.sky.mag_bright,
            mag_limit=self.sky.mag_limit,
        )
        mags = cat.magnitudes()
        out = np.zeros(
            len(cat), dtype=[("ra_deg", "f8"), ("dec_deg", "f8")] + [(c, "f8") for c in mags]
        )
        out["ra_deg"], out["dec_deg"] = cat.ra_deg, cat.dec_deg
        for column, values in mags.items():
            out[column] = values
        return out[np.argsort(out["mag_v"])]


class _SkyArgs(TypedDict):
    """The `synthetic_catalog` arguments that choose the sky (not the field)."""

    seed: int
    density_per_deg2: float
    mag_bright: float
    mag_limit: float


def import_synthetic(
    catalog: RefCatalog,
    ra_deg: float,
    dec_deg: float,
    radius_deg: float,
    *,
    name: str = "synthetic",
    **sky: Unpack[_SkyArgs],
) -> int:
    """Load the synthetic stars within a circle into a reference catalog.

    Parameters
    ----------
    catalog : obsctl.store.refcat.RefCatalog
        Where the stars go.
    ra_deg, dec_deg : float
        Circle centre (deg).
    radius_deg : float
        Circle radius (deg).
    name : str, optional
        Catalog name stored with the rows. Source ids are the synthetic star ids, so
        overlapping imports do not duplicate stars.
    **sky
        ``seed``, ``density_per_deg2``, ``mag_bright`` and ``mag_limit``, as for
        `synthetic_catalog`; use the simulated sky's values so the catalog holds the stars the
        simulated camera renders.

    Returns
    -------
    int
        Number of stars stored.
    """
    stars = synthetic_catalog(ra_deg, dec_deg, radius_deg, **sky)
    where = "synthetic catalog"
    n = catalog.insert_stars(
        name, stars.id.astype(str), stars.ra_deg, stars.dec_deg, stars.magnitudes(), {}, where=where
    )
    log.info(
        "imported %d synthetic stars within %.3f deg of (%.4f, %.4f)",
        n,
        radius_deg,
        ra_deg,
        dec_deg,
    )
    return n


def _within(
    cell: StarCatalog, ra_deg: float, dec_deg: float, radius_deg: float
) -> NDArray[np.bool_]:
    # Haversine form: accurate for the tiny radii of small subframes, where acos is not.
    dec0 = math.radians(dec_deg)
    dec = np.radians(cell.dec_deg)
    half_dra = np.radians(cell.ra_deg - ra_deg) / 2.0
    hav = np.sin((dec - dec0) / 2.0) ** 2 + math.cos(dec0) * np.cos(dec) * np.sin(half_dra) ** 2
    mask: NDArray[np.bool_] = hav <= math.sin(math.radians(radius_deg) / 2.0) ** 2
    return mask


def pixel_scale_arcsec(pixel_size_um: float, focal_length_mm: float) -> float:
    """Return the pixel scale of a pixel behind a telescope.

    Parameters
    ----------
    pixel_size_um : float
        Pixel pitch (micrometre).
    focal_length_mm : float
        Effective focal length (millimetre).

    Returns
    -------
    float
        Pixel scale (arcsec per pixel), ``206.265 * pixel_size_um / focal_length_mm``.

    Raises
    ------
    ValueError
        If either argument is not positive.
    """
    if pixel_size_um <= 0.0 or focal_length_mm <= 0.0:
        raise ValueError("pixel_size_um and focal_length_mm must be positive")
    return 206.265 * pixel_size_um / focal_length_mm


def field_wcs(
    ra_deg: float,
    dec_deg: float,
    *,
    width_px: int,
    height_px: int,
    pixel_scale_arcsec: float,
    rotation_deg: float = 0.0,
) -> WCS:
    """Return the gnomonic (TAN) WCS of a full, unbinned sensor.

    Parameters
    ----------
    ra_deg, dec_deg : float
        Pointing (deg), placed at the centre of the sensor:
        ``CRPIX = ((width_px + 1) / 2, (height_px + 1) / 2)`` in the FITS 1-based convention.
    width_px, height_px : int
        Sensor size in unbinned pixels.
    pixel_scale_arcsec : float
        Unbinned pixel scale (arcsec per pixel).
    rotation_deg : float, optional
        Rotation of the sky on the sensor (deg), with the meaning of FITS ``CROTA2``. At 0,
        north is +y and east is -x (north up, east left when row 0 is drawn at the bottom).

    Returns
    -------
    astropy.wcs.WCS
        The celestial WCS, with ``pixel_shape`` set to ``(width_px, height_px)``.

    Raises
    ------
    ValueError
        If the sensor size or pixel scale is not positive.
    """
    if width_px <= 0 or height_px <= 0 or pixel_scale_arcsec <= 0.0:
        raise ValueError("width_px, height_px and pixel_scale_arcsec must be positive")
    scale_deg = pixel_scale_arcsec / 3600.0
    cos_r = math.cos(math.radians(rotation_deg))
    sin_r = math.sin(math.radians(rotation_deg))
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.crval = [ra_deg % 360.0, dec_deg]
    wcs.wcs.crpix = [(width_px + 1) / 2.0, (height_px + 1) / 2.0]
    wcs.wcs.cdelt = [-scale_deg, scale_deg]
    # PC from CROTA2 with CDELT1 = -CDELT2 (Calabretta & Greisen 2002, eq. 189).
    wcs.wcs.pc = [[cos_r, sin_r], [-sin_r, cos_r]]
    wcs.pixel_shape = (width_px, height_px)
    wcs.wcs.set()
    return wcs
