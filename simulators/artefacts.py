"""Image features of the real sky and real sensors that the star field alone lacks.

Galaxies (a seeded, per-sky-cell population and a renderer of seeing-convolved Sersic
profiles), saturation with charge bleeding along columns, bad columns, satellite trails and
the colour (Bayer) mosaic of one-shot-colour sensors.

Conventions are those of `obsctl.simulators.render`: charge arrays are float32 electrons of
the unbinned read area, shape ``(height, width)``, indexed ``[y, x]``, with zero-based pixel
centres at integers (pixel ``(y, x)`` spans ``[x - 0.5, x + 0.5) x [y - 0.5, y + 0.5)``);
randomness comes from seeded `numpy.random.Generator` objects. Every function is plain
numeric code with no I/O.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy.signal import fftconvolve
from scipy.special import gammaincinv

# The galaxies live in the same sky cells as the synthetic stars, so one field query covers
# both and a galaxy is as stable as a star.
from obsctl.simulators.sky import (
    _BAND_HEIGHT_DEG,
    _MAX_RA_CELLS,
    _cells_near,
    _ra_cells_in_band,
)

log = logging.getLogger(__name__)

__all__ = [
    "BAD_COLUMN_DTYPE",
    "BAYER_PATTERNS",
    "GALAXY_DTYPE",
    "GALAXY_TRUTH_DTYPE",
    "BleedResult",
    "SatelliteTrail",
    "add_galaxies",
    "add_trail",
    "apply_bad_columns",
    "bad_columns",
    "bayer_channel_masks",
    "bayer_from_mono",
    "bayer_mosaic",
    "bleed",
    "galaxies",
    "galaxy_mag",
    "galaxy_stamp_radius_px",
    "satellite_trail",
    "sky_pa_to_image_deg",
]

GALAXY_DTYPE = np.dtype(
    [
        ("id", np.int64),
        ("ra_deg", np.float64),
        ("dec_deg", np.float64),
        ("mag_b", np.float64),
        ("mag_v", np.float64),
        ("mag_r", np.float64),
        ("mag_i", np.float64),
        ("r_eff_arcsec", np.float64),
        ("sersic_n", np.float64),
        ("ellipticity", np.float64),
        ("pa_deg", np.float64),
    ]
)
"""Row type of `galaxies`: total magnitudes (mag), the half-light semi-major axis
``r_eff_arcsec``, Sersic index, ellipticity ``1 - b/a`` and the sky position angle of the major
axis ``pa_deg`` (deg, east of north)."""

GALAXY_TRUTH_DTYPE = np.dtype(
    [
        ("id", np.int64),
        ("ra_deg", np.float64),
        ("dec_deg", np.float64),
        ("mag", np.float64),
        ("x", np.float64),
        ("y", np.float64),
        ("r_eff_px", np.float64),
        ("sersic_n", np.float64),
        ("ellipticity", np.float64),
        ("pa_deg", np.float64),
        ("flux_e", np.float64),
    ]
)
"""Truth of a rendered galaxy: ``mag`` in the exposure's band, ``x``, ``y`` zero-based output
pixels, ``r_eff_px`` the half-light semi-major axis (unbinned pixel), ``pa_deg`` the image
angle of the major axis (deg, from +x towards +y, as `add_galaxies` takes it) and ``flux_e``
the total expected electrons."""

BAD_COLUMN_DTYPE = np.dtype(
    [
        ("x", np.int64),
        ("y_start", np.int64),
        ("kind", "U4"),
        ("response", np.float32),
        ("dark_factor", np.float32),
    ]
)
"""Row type of `bad_columns`: sensor column ``x``; the defect affects rows ``y >= y_start``
(0 for a whole column); ``kind`` ``"dead"`` (light response ``response`` < 1) or ``"hot"``
(dark current ``dark_factor`` times the normal)."""

BAYER_PATTERNS: tuple[str, ...] = ("RGGB", "BGGR", "GRBG", "GBRG")
"""Bayer patterns understood by `bayer_channel_masks`, read as FITS ``BAYERPAT``."""

# Galaxy ids start above every star id (cell index * 1e8 + index < 6.5e12), so the two
# never collide in one truth table.
_GALAXY_ID_BASE = 10**13
_ID_STRIDE = 100_000_000
_STREAM_GALAXIES = 0x6A1  # third seed word: the stars' cells are seeded by two words
_STREAM_BAD_COLUMNS = 0xBAD  # away from render's fixed-pattern streams (1-7)
_MAX_GALAXY_MAG = 27.0  # the counts below are extrapolated no further

# Cumulative galaxy counts, log10 N(<m) in r, per square degree: a Euclidean-like slope of
# 0.6 at the bright end that flattens to 0.45 past r ~ 18, through about 3000 deg^-2 at
# r = 21 (SDSS, Yasuda et al. 2001; deep counts, Metcalfe et al. 2001).
_COUNT_BREAK_MAG = 18.0
_COUNT_SLOPE_BRIGHT = 0.6
_COUNT_SLOPE_FAINT = 0.45

# Size-magnitude relation: half-light radius 0.7" at r = 21, growing 0.165 dex per magnitude
# brighter (about 10" at r = 14), with 0.15 dex of scatter: a one-line fit in the spirit of
# the SDSS size-luminosity relations (Shen et al. 2003).
_R_EFF_AT_21_ARCSEC = 0.7
_R_EFF_DEX_PER_MAG = 0.165
_R_EFF_SCATTER_DEX = 0.15

_STAMP_LOST_FLUX = 0.01  # Sersic flux beyond the stamp before it is renormalised
# Sub-pixel grids of the Sersic profiles: coarse (2-8 per pixel, finer for galaxies a pixel
# or two across) except in the 3 x 3 pixels at the centre, which hold the cusp of high-index
# profiles. Against 32-128 per pixel this is within 0.5 % of the peak after 2-pixel seeing,
# and within 1 % unconvolved, for n 1-4 and r_eff 0.3-15 px.
_CORE_RADIUS_PX = 1
_CORE_OVERSAMPLE = 8  # even: no sample lands on the cusp of a centred galaxy
_BASE_SAMPLES_PER_R_EFF = 2.0
_MIN_PSF_RADIUS_PX = 3
_BATCH_SAMPLES = 2_000_000  # sub-pixel samples evaluated at once when drawing galaxies


# ------------------------------------------------------------------------------ galaxies


def _cumulative_counts(mag: NDArray[np.float64] | float, n21: float) -> NDArray[np.float64]:
    """Galaxies per square degree brighter than `mag` (r band)."""
    m = np.asarray(mag, dtype=np.float64)
    at_break = n21 * 10.0 ** (_COUNT_SLOPE_FAINT * (_COUNT_BREAK_MAG - 21.0))
    faint = n21 * 10.0 ** (_COUNT_SLOPE_FAINT * (m - 21.0))
    bright = at_break * 10.0 ** (_COUNT_SLOPE_BRIGHT * (m - _COUNT_BREAK_MAG))
    result: NDArray[np.float64] = np.where(m >= _COUNT_BREAK_MAG, faint, bright)
    return result


def _counts_to_mag(counts: NDArray[np.float64], n21: float) -> NDArray[np.float64]:
    """Inverse of `_cumulative_counts`."""
    at_break = n21 * 10.0 ** (_COUNT_SLOPE_FAINT * (_COUNT_BREAK_MAG - 21.0))
    faint = 21.0 + np.log10(counts / n21) / _COUNT_SLOPE_FAINT
    bright = _COUNT_BREAK_MAG + np.log10(counts / at_break) / _COUNT_SLOPE_BRIGHT
    result: NDArray[np.float64] = np.where(counts >= at_break, faint, bright)
    return result


def _cell_galaxies(
    band: int, ra_cell: int, *, seed: int, n21: float, mag_bright: float, mag_limit: float
) -> NDArray[np.void]:
    """Generate every galaxy of one sky cell, reproducibly."""
    n_ra = _ra_cells_in_band(band)
    cell_index = band * _MAX_RA_CELLS + ra_cell
    dec_lo = -90.0 + band * _BAND_HEIGHT_DEG
    ra_width = 360.0 / n_ra
    sin_lo = math.sin(math.radians(dec_lo))
    sin_hi = math.sin(math.radians(dec_lo + _BAND_HEIGHT_DEG))
    area_deg2 = ra_width * (sin_hi - sin_lo) * math.degrees(1.0)
    lo, hi = _cumulative_counts(np.array([mag_bright, mag_limit]), n21)

    # The draw order below is part of the population's identity: changing it moves every galaxy.
    rng = np.random.default_rng([seed, cell_index, _STREAM_GALAXIES])
    n = int(rng.poisson((hi - lo) * area_deg2))
    out = np.empty(n, dtype=GALAXY_DTYPE)
    out["id"] = _GALAXY_ID_BASE + cell_index * _ID_STRIDE + np.arange(n, dtype=np.int64)
    out["ra_deg"] = (ra_cell + rng.random(n)) * ra_width
    out["dec_deg"] = np.degrees(np.arcsin(sin_lo + rng.random(n) * (sin_hi - sin_lo)))
    mag_r = _counts_to_mag(lo + rng.random(n) * (hi - lo), n21)

    # Morphology: discs (exponential, n ~ 1), bulge-dominated spirals and ellipticals (n ~ 4),
    # roughly the field mix at these depths.
    kind = rng.random(n)
    early = kind < 0.25
    middle = (kind >= 0.25) & (kind < 0.4)
    sersic_n = np.where(
        early,
        rng.uniform(3.0, 4.0, n),
        np.where(middle, rng.uniform(1.5, 3.0, n), rng.uniform(1.0, 1.5, n)),
    )
    # Projected axis ratio of a thick disc seen at a random inclination (intrinsic thickness
    # 0.15-0.3); ellipticals are rounder.
    cos_i = rng.random(n)
    q0 = np.where(middle, 0.3, 0.15)
    q_disc = np.sqrt(q0**2 + (1.0 - q0**2) * cos_i**2)
    q = np.where(early, rng.uniform(0.6, 1.0, n), q_disc)
    out["ellipticity"] = 1.0 - q
    out["pa_deg"] = rng.uniform(0.0, 180.0, n)

    log_r = (
        math.log10(_R_EFF_AT_21_ARCSEC)
        - _R_EFF_DEX_PER_MAG * (mag_r - 21.0)
        + rng.normal(0.0, _R_EFF_SCATTER_DEX, n)
    )
    # Early types are more compact than discs of the same luminosity.
    out["r_eff_arcsec"] = np.clip(10.0**log_r * np.where(early, 0.7, 1.0), 0.2, 60.0)
    out["sersic_n"] = sersic_n

    # Rest-frame colours of E and Sbc galaxies (Fukugita et al. 1995), with scatter.
    scatter = rng.normal(0.0, 0.05, (3, n))
    b_v = np.where(early, 0.96, 0.65) + scatter[0]
    v_r = np.where(early, 0.61, 0.50) + scatter[1]
    r_i = np.where(early, 0.70, 0.55) + scatter[2]
    out["mag_r"] = mag_r
    out["mag_v"] = mag_r + v_r
    out["mag_b"] = mag_r + v_r + b_v
    out["mag_i"] = mag_r - r_i
    return out


def galaxies(
    ra_deg: float,
    dec_deg: float,
    radius_deg: float,
    *,
    seed: int,
    density_r21_per_deg2: float = 3000.0,
    mag_bright: float = 12.0,
    mag_limit: float = 21.0,
) -> NDArray[np.void]:
    """Return the deterministic synthetic galaxies within a circle on the sky.

    Galaxies are uniform on the sphere, generated per sky cell (the cells of
    `obsctl.simulators.sky.synthetic_catalog`) from ``(seed, cell)``, so a galaxy has the same
    id, position, shape and magnitudes in every frame. R magnitudes follow cumulative counts
    ``log10 N(<m) = 0.6 m + c`` brighter than R = 18 and ``0.45 m + c'`` fainter, through
    `density_r21_per_deg2` at R = 21. Three quarters are discs (Sersic n 1-1.5, axis ratio
    from a random inclination) or bulge-dominated (n 1.5-3), a quarter ellipticals (n 3-4,
    axis ratio 0.6-1). Half-light radii follow ``log10 r = log10 0.7" - 0.165 (R - 21)`` with
    0.15 dex scatter (ellipticals 0.7 times smaller), clipped to 0.2-60 arcsec. B, V, I come
    from typical E / Sbc colours.

    Parameters
    ----------
    ra_deg, dec_deg : float
        Field centre, ICRS (deg).
    radius_deg : float
        Field radius (deg), in (0, 180].
    seed : int
        Non-negative sky seed; the galaxies use their own stream, so the scene's catalog seed
        can serve both stars and galaxies.
    density_r21_per_deg2 : float, optional
        Galaxies per square degree brighter than R = 21 (about 3000 on the real sky).
    mag_bright, mag_limit : float, optional
        R magnitude range generated (mag), `mag_limit` at most 27.

    Returns
    -------
    numpy.ndarray of GALAXY_DTYPE
        The galaxies within `radius_deg` of the centre, ordered by sky cell then by index.

    Raises
    ------
    ValueError
        If an argument is out of range.
    """
    if not -90.0 <= dec_deg <= 90.0 or not 0.0 < radius_deg <= 180.0:
        raise ValueError("dec_deg must be within [-90, 90] and radius_deg within (0, 180]")
    if seed < 0 or density_r21_per_deg2 < 0.0:
        raise ValueError("seed and density_r21_per_deg2 must be non-negative")
    if not mag_bright < mag_limit <= _MAX_GALAXY_MAG:
        raise ValueError(f"need mag_bright < mag_limit <= {_MAX_GALAXY_MAG}")
    ra_deg = ra_deg % 360.0
    parts = []
    dec0 = math.radians(dec_deg)
    limit = math.sin(math.radians(radius_deg) / 2.0) ** 2
    for band, ra_cell in _cells_near(ra_deg, dec_deg, radius_deg):
        cell = _cell_galaxies(
            band,
            ra_cell,
            seed=seed,
            n21=density_r21_per_deg2,
            mag_bright=mag_bright,
            mag_limit=mag_limit,
        )
        # Haversine, as sky.py: exact for the tiny radii of small subframes.
        dec = np.radians(cell["dec_deg"])
        half_dra = np.radians(cell["ra_deg"] - ra_deg) / 2.0
        hav = np.sin((dec - dec0) / 2.0) ** 2 + math.cos(dec0) * np.cos(dec) * np.sin(half_dra) ** 2
        parts.append(cell[hav <= limit])
    return np.concatenate(parts) if parts else np.empty(0, dtype=GALAXY_DTYPE)


def galaxy_mag(catalog: NDArray[np.void], band: str) -> NDArray[np.float64]:
    """Return the galaxies' magnitudes in one band.

    Parameters
    ----------
    catalog : numpy.ndarray of GALAXY_DTYPE
        Galaxies, as from `galaxies`.
    band : str
        ``"B"``, ``"V"``, ``"R"``, ``"I"`` or ``"L"`` (clear: the mean of V and R, as
        `obsctl.simulators.sky.StarCatalog.mag`), any case.

    Returns
    -------
    numpy.ndarray of float64
        Total magnitudes (mag).

    Raises
    ------
    ValueError
        If the band is unknown.
    """
    key = band.strip().upper()
    if key == "L":
        both: NDArray[np.float64] = 0.5 * (catalog["mag_v"] + catalog["mag_r"])
        return both
    if key not in ("B", "V", "R", "I"):
        raise ValueError(f"unknown band {band!r}; expected B, V, R, I or L")
    column: NDArray[np.float64] = catalog[f"mag_{key.lower()}"].astype(np.float64)
    return column


def sky_pa_to_image_deg(
    pa_sky_deg: NDArray[np.float64],
    *,
    north_dx: float,
    north_dy: float,
    east_dx: float,
    east_dy: float,
) -> NDArray[np.float64]:
    """Turn sky position angles (east of north) into image angles for `add_galaxies`.

    Parameters
    ----------
    pa_sky_deg : numpy.ndarray of float64
        Position angle of the major axis on the sky (deg, from north through east).
    north_dx, north_dy, east_dx, east_dy : float
        Pixel displacement of a small step north and of one east (any common length), e.g.
        from the WCS at the field centre. With `obsctl.simulators.sky.field_wcs` at rotation 0,
        north is ``(0, 1)`` and east ``(-1, 0)``.

    Returns
    -------
    numpy.ndarray of float64
        Angle of the major axis in the image (deg, from +x towards +y), in [0, 180).
    """
    pa = np.radians(pa_sky_deg)
    dx = np.cos(pa) * north_dx + np.sin(pa) * east_dx
    dy = np.cos(pa) * north_dy + np.sin(pa) * east_dy
    angle: NDArray[np.float64] = np.degrees(np.arctan2(dy, dx)) % 180.0
    return angle


def _moffat_alpha(fwhm_px: float, beta: float) -> float:
    return fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


@lru_cache(maxsize=8)
def _psf_kernel(fwhm_px: float, beta: float) -> NDArray[np.float64]:
    """Pixel-integrated Moffat kernel of unit sum (radius as render's star stamps)."""
    alpha = _moffat_alpha(fwhm_px, beta)
    r_wings = alpha * math.sqrt(_STAMP_LOST_FLUX ** (1.0 / (1.0 - beta)) - 1.0)
    radius = max(_MIN_PSF_RADIUS_PX, math.ceil(min(max(4.0 * fwhm_px, r_wings), 8.0 * fwhm_px)))
    oversample = min(25, max(3, math.ceil(10.0 / fwhm_px)))
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    grid = (np.arange(-radius, radius + 1)[:, None] + sub[None, :]).ravel() / alpha
    profile = (1.0 + grid[:, None] ** 2 + grid[None, :] ** 2) ** (-beta)
    size = 2 * radius + 1
    kernel: NDArray[np.float64] = profile.reshape(size, oversample, size, oversample).mean(
        axis=(1, 3)
    )
    kernel /= kernel.sum()
    kernel.flags.writeable = False
    return kernel


def galaxy_stamp_radius_px(
    r_eff_px: NDArray[np.float64], n: NDArray[np.float64], *, max_radius_px: int = 200
) -> NDArray[np.int64]:
    """Return the half-size of the squares galaxies' Sersic profiles are drawn in.

    Parameters
    ----------
    r_eff_px : numpy.ndarray of float64
        Half-light semi-major axes (pixel).
    n : numpy.ndarray of float64
        Sersic indices.
    max_radius_px : int, optional
        Upper bound (pixel); the largest ellipticals would otherwise need thousands.

    Returns
    -------
    numpy.ndarray of int64
        Radius (pixel) of the ellipse holding 99 % of each galaxy's light, at least 2, at most
        `max_radius_px`; the seeing adds the PSF's own radius around it.
    """
    r_eff = np.asarray(r_eff_px, dtype=np.float64)
    two_n = 2.0 * np.asarray(n, dtype=np.float64)
    b = gammaincinv(two_n, 0.5)
    reach = r_eff * (gammaincinv(two_n, 1.0 - _STAMP_LOST_FLUX) / b) ** (two_n / 2.0)
    radius: NDArray[np.int64] = np.clip(np.ceil(reach), 2, max_radius_px).astype(np.int64)
    return radius


def _sersic_blocks(
    offsets: NDArray[np.float64],
    dx: NDArray[np.float64],
    dy: NDArray[np.float64],
    oversample: int,
    shape: dict[str, NDArray[np.float64]],
) -> NDArray[np.float64]:
    """Pixel means of unnormalised Sersic profiles for a batch of galaxies.

    `offsets` are the pixel centres of a square block relative to each galaxy's centre pixel,
    `dx`, `dy` the galaxies' sub-pixel offsets; returns shape ``(galaxies, size, size)``.
    """
    size = offsets.size
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    grid = (offsets[:, None] + sub[None, :]).ravel()
    xs = grid[None, None, :] - dx[:, None, None]
    ys = grid[None, :, None] - dy[:, None, None]

    def per_galaxy(name: str) -> NDArray[np.float64]:
        return shape[name][:, None, None]

    cos_pa, sin_pa = per_galaxy("cos_pa"), per_galaxy("sin_pa")
    u = xs * cos_pa + ys * sin_pa
    v = (ys * cos_pa - xs * sin_pa) / per_galaxy("q")
    r = u * u
    r += v * v
    np.sqrt(r, out=r)
    r /= per_galaxy("r_eff_px")
    np.power(r, per_galaxy("inv_n"), out=r)
    r *= -per_galaxy("b")
    np.exp(r, out=r)
    blocks: NDArray[np.float64] = r.reshape(-1, size, oversample, size, oversample).mean(
        axis=(2, 4)
    )
    return blocks


def _sersic_stamps(
    dx: NDArray[np.float64],
    dy: NDArray[np.float64],
    radius_px: int,
    oversample: int,
    shape: dict[str, NDArray[np.float64]],
) -> NDArray[np.float64]:
    """Pixel-integrated Sersic profiles of unit sum for galaxies sharing one stamp size."""
    offsets = np.arange(-radius_px, radius_px + 1, dtype=np.float64)
    stamps = _sersic_blocks(offsets, dx, dy, oversample, shape)
    # The cusp of a high-index profile changes by orders of magnitude within the central
    # pixel; only there is the fine grid worth its cost.
    c = min(radius_px, _CORE_RADIUS_PX)
    core = np.arange(-c, c + 1, dtype=np.float64)
    window = slice(radius_px - c, radius_px + c + 1)
    stamps[:, window, window] = _sersic_blocks(core, dx, dy, _CORE_OVERSAMPLE, shape)
    stamps /= stamps.sum(axis=(1, 2), keepdims=True)
    return stamps


def add_galaxies(
    charge: NDArray[np.float32],
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    flux_e: NDArray[np.float64],
    r_eff_px: NDArray[np.float64],
    n: NDArray[np.float64],
    ellipticity: NDArray[np.float64],
    pa_deg: NDArray[np.float64],
    *,
    fwhm_px: float,
    beta: float,
    max_radius_px: int = 200,
) -> NDArray[np.float64]:
    """Add seeing-convolved Sersic galaxies to a charge image, in place.

    Each profile ``I(r) ~ exp(-b_n (r / r_eff)^(1/n))`` over elliptical radius
    ``r = sqrt(u^2 + (v / q)^2)`` (``u`` along the major axis, ``q = 1 - ellipticity``) is
    pixel-integrated on a sub-pixel grid (8 x 8 per pixel in the central 3 x 3 pixels, 2-8
    elsewhere), truncated at the ellipse holding 99 % of the light (`galaxy_stamp_radius_px`),
    normalised and convolved with a pixel-integrated Moffat of the seeing, so the full stamp
    holds exactly `flux_e`. Galaxies sharing a stamp size are drawn together, which keeps a
    thousand faint ones to a few tenths of a second.

    Parameters
    ----------
    charge : numpy.ndarray of float32
        Two-dimensional image (electrons), modified in place; parts of stamps beyond it are
        dropped.
    x, y : numpy.ndarray of float64
        Galaxy centres, zero-based pixel coordinates of `charge`.
    flux_e : numpy.ndarray of float64
        Total flux of each galaxy (electrons).
    r_eff_px : numpy.ndarray of float64
        Half-light semi-major axis (pixel): the ellipse of this semi-major axis holds half the
        light of the unconvolved profile. Positive.
    n : numpy.ndarray of float64
        Sersic index, within [0.3, 10] (1 exponential disc, 4 de Vaucouleurs).
    ellipticity : numpy.ndarray of float64
        ``1 - b/a``, within [0, 0.95].
    pa_deg : numpy.ndarray of float64
        Angle of the major axis (deg, from +x towards +y); see `sky_pa_to_image_deg`.
    fwhm_px : float
        Seeing FWHM (pixel); 0 adds the unconvolved profiles.
    beta : float
        Moffat beta of the seeing, > 1.
    max_radius_px : int, optional
        Largest Sersic stamp radius (pixel), bounding the cost of the biggest galaxies.

    Returns
    -------
    numpy.ndarray of float64
        Electrons added inside `charge` by each galaxy (less than `flux_e` at the edges).

    Raises
    ------
    ValueError
        If the image is not a 2-D float32 array or a shape parameter is out of range.
    """
    if charge.dtype != np.float32 or charge.ndim != 2:
        raise ValueError("charge must be a two-dimensional float32 array")
    if fwhm_px < 0.0 or (fwhm_px > 0.0 and beta <= 1.0):
        raise ValueError("need fwhm_px >= 0 and beta > 1")
    params = (x, y, flux_e, r_eff_px, n, ellipticity, pa_deg)
    columns = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in params))
    gx, gy, gflux, greff, gn, ge, gpa = (c.ravel() for c in columns)
    if np.any(greff <= 0.0) or np.any((gn < 0.3) | (gn > 10.0)) or np.any((ge < 0) | (ge > 0.95)):
        raise ValueError("need r_eff_px > 0, 0.3 <= n <= 10 and 0 <= ellipticity <= 0.95")
    added = np.zeros(gx.size, dtype=np.float64)
    if gx.size == 0:
        return added
    kernel = _psf_kernel(float(fwhm_px), float(beta)) if fwhm_px > 0.0 else None
    k = 0 if kernel is None else kernel.shape[0] // 2
    height, width = charge.shape
    cx = np.floor(gx + 0.5).astype(np.int64)
    cy = np.floor(gy + 0.5).astype(np.int64)
    radius = galaxy_stamp_radius_px(greff, gn, max_radius_px=max_radius_px)
    reach = radius + k
    # Galaxies whose stamps miss the image cost nothing.
    touching = (cx + reach >= 0) & (cy + reach >= 0) & (cx - reach < width) & (cy - reach < height)
    # Finer grids where the profile changes within a pixel, which is where stamps are small.
    oversample = np.clip(np.ceil(_BASE_SAMPLES_PER_R_EFF / greff), 2, 8).astype(np.int64)
    pa = np.radians(gpa)
    shape_all = {
        "r_eff_px": greff,
        "b": gammaincinv(2.0 * gn, 0.5),
        "inv_n": 1.0 / gn,
        "q": np.maximum(1.0 - ge, 0.05),
        "cos_pa": np.cos(pa),
        "sin_pa": np.sin(pa),
    }
    groups = np.flatnonzero(touching)
    keys = radius[groups] * 16 + oversample[groups]
    for key in np.unique(keys):
        members = groups[keys == key]
        r_px, o = int(key) // 16, int(key) % 16
        side = (2 * r_px + 1) * o
        # Bound the temporaries (a few x 8 bytes per sub-sample) of one batch.
        per_batch = max(1, _BATCH_SAMPLES // (side * side))
        for start in range(0, members.size, per_batch):
            batch = members[start : start + per_batch]
            shape = {name: values[batch] for name, values in shape_all.items()}
            stamps = _sersic_stamps(gx[batch] - cx[batch], gy[batch] - cy[batch], r_px, o, shape)
            if kernel is not None:
                # Full convolution keeps each sum (both factors sum to 1); FFT round-off can
                # leave tiny negative values far from the galaxy.
                stamps = fftconvolve(stamps, kernel[None, :, :], mode="full", axes=(1, 2))
                np.maximum(stamps, 0.0, out=stamps)
            stamps *= (gflux[batch] / stamps.sum(axis=(1, 2)))[:, None, None]
            stamps32 = stamps.astype(np.float32)
            full = r_px + k
            for j, i in enumerate(batch):
                x0, y0 = cx[i] - full, cy[i] - full
                sx0, sy0 = max(0, -x0), max(0, -y0)
                sx1 = min(stamps32.shape[2], width - x0)
                sy1 = min(stamps32.shape[1], height - y0)
                part = stamps32[j, sy0:sy1, sx0:sx1]
                charge[y0 + sy0 : y0 + sy1, x0 + sx0 : x0 + sx1] += part
                added[i] = float(part.sum(dtype=np.float64))
    return added


# ----------------------------------------------------------------------- saturation


@dataclass(frozen=True, eq=False)
class BleedResult:
    """Outcome of `bleed`.

    Parameters
    ----------
    saturated_px : int
        Pixels at the full well after bleeding.
    mask : numpy.ndarray of bool
        Those pixels, shape of the charge image.
    lost_e : float
        Electrons that found no room in their column (a column full from end to end) and were
        drained away (electrons).
    """

    saturated_px: int
    mask: NDArray[np.bool_]
    lost_e: float


def _spill(column: NDArray[np.float64], start: int, step: int, amount: float, full: float) -> float:
    """Pour `amount` electrons into `column` from `start` onwards; return what did not fit."""
    if amount <= 0.0:
        return 0.0
    if start < 0 or start >= column.size:
        return amount
    run = column[start:] if step > 0 else column[start::-1]  # a view: writes land in column
    room = np.cumsum(full - run)
    k = int(np.searchsorted(room, amount))
    if k >= run.size:
        run[:] = full
        return float(amount - room[-1])
    run[:k] = full
    run[k] += amount - (room[k - 1] if k else 0.0)
    return 0.0


def bleed(charge: NDArray[np.float32], *, full_well_e: float) -> BleedResult:
    """Saturate a charge image and bleed the excess along the columns, in place.

    A CCD pixel holds at most `full_well_e`; the excess spills over the channel stops of the
    column (axis 0) into its neighbours, half upwards and half downwards, filling each pixel
    to the full well before passing on, and skipping pixels already full, so separate bleeds
    merge. Charge is conserved while the column has room; a bleed reaching one end of the
    column turns back the other way, and only what no longer fits anywhere in the column is
    lost (into the anti-blooming drain or serial register). Rows are not touched across.
    CMOS sensors do not bleed: for them simply clip at the full well.

    Parameters
    ----------
    charge : numpy.ndarray of float32
        Expected or noisy charge (electrons), shape ``(height, width)``, unbinned; modified
        in place.
    full_well_e : float
        Full-well capacity of one pixel (electrons), positive.

    Returns
    -------
    BleedResult
        Number and mask of full pixels, and the electrons lost.

    Raises
    ------
    ValueError
        If the image is not a 2-D float32 array or the full well is not positive.
    """
    if charge.dtype != np.float32 or charge.ndim != 2:
        raise ValueError("charge must be a two-dimensional float32 array")
    if full_well_e <= 0.0:
        raise ValueError("full_well_e must be positive")
    full32 = np.float32(full_well_e)
    full = float(full32)  # compare and fill at the value float32 can hold
    lost = 0.0
    for col in np.flatnonzero((charge > full32).any(axis=0)):
        column = charge[:, col].astype(np.float64)
        over = column > full
        edges = np.diff(np.concatenate(([0], over.view(np.int8), [0])))
        starts = np.flatnonzero(edges == 1).tolist()
        ends = (np.flatnonzero(edges == -1) - 1).tolist()
        excess = [
            float(np.sum(column[s : e + 1] - full)) for s, e in zip(starts, ends, strict=True)
        ]
        column[over] = full
        for s, e, extra in zip(starts, ends, excess, strict=True):
            left = _spill(column, e + 1, +1, extra / 2.0, full)
            left = _spill(column, s - 1, -1, extra - extra / 2.0 + left, full)
            lost += _spill(column, e + 1, +1, left, full)
        charge[:, col] = column
    mask: NDArray[np.bool_] = charge >= full32
    return BleedResult(saturated_px=int(np.count_nonzero(mask)), mask=mask, lost_e=lost)


# ---------------------------------------------------------------------- bad columns


@lru_cache(maxsize=4)
def _bad_columns(
    sensor_seed: int, width_px: int, height_px: int, dead: int, hot: int, partial: float
) -> NDArray[np.void]:
    rng = np.random.default_rng([sensor_seed, _STREAM_BAD_COLUMNS])
    count = dead + hot
    table = np.empty(count, dtype=BAD_COLUMN_DTYPE)
    table["x"] = rng.choice(width_px, size=count, replace=False)
    is_partial = rng.random(count) < partial
    table["y_start"] = np.where(is_partial, rng.integers(0, height_px, count), 0)
    table["kind"] = ["dead"] * dead + ["hot"] * hot
    # Dead columns keep 0-50 % of the light; hot ones run 5-50 times the dark current.
    table["response"] = np.where(np.arange(count) < dead, rng.uniform(0.0, 0.5, count), 1.0)
    factor = np.exp(rng.uniform(math.log(5.0), math.log(50.0), count))
    table["dark_factor"] = np.where(np.arange(count) < dead, 1.0, factor)
    table.sort(order="x")
    table.flags.writeable = False
    return table


def bad_columns(
    sensor_seed: int,
    width_px: int,
    height_px: int,
    *,
    dead_count: int = 2,
    hot_count: int = 3,
    partial_fraction: float = 0.5,
) -> NDArray[np.void]:
    """Return a sensor's fixed bad columns.

    Dead columns respond to only 0-50 % of the light; hot columns have 5-50 times the normal
    dark current (log-uniform). A partial defect is a trap or hot spot at row ``y_start``
    that spoils every pixel whose charge passes it on the way to the serial register at row 0,
    i.e. rows ``y >= y_start``. The set depends only on the arguments.

    Parameters
    ----------
    sensor_seed : int
        Non-negative seed of the sensor's fixed pattern (`SensorModel.seed`); the columns use
        their own stream.
    width_px, height_px : int
        Full sensor size (unbinned pixels).
    dead_count, hot_count : int, optional
        Number of dead and hot columns, distinct columns, together at most `width_px`.
    partial_fraction : float, optional
        Probability that a defect starts part-way up its column, in [0, 1].

    Returns
    -------
    numpy.ndarray of BAD_COLUMN_DTYPE
        Read-only table sorted by column.

    Raises
    ------
    ValueError
        If an argument is out of range.
    """
    if sensor_seed < 0 or width_px < 1 or height_px < 1 or dead_count < 0 or hot_count < 0:
        raise ValueError("need a non-negative seed and counts and a positive sensor size")
    if dead_count + hot_count > width_px or not 0.0 <= partial_fraction <= 1.0:
        raise ValueError("too many bad columns for the width, or partial_fraction not in [0, 1]")
    return _bad_columns(sensor_seed, width_px, height_px, dead_count, hot_count, partial_fraction)


def apply_bad_columns(
    charge: NDArray[np.float32],
    columns: NDArray[np.void],
    *,
    dark_e: float,
    light: bool = True,
    x0: int = 0,
    y0: int = 0,
    bin_x: int = 1,
    bin_y: int = 1,
) -> None:
    """Apply bad columns to a charge image of (part of) the sensor, in place.

    Dead columns scale the charge (call it on photo-electrons, before dark current is added,
    or with ``light=False`` to skip them); hot columns add ``(dark_factor - 1) * dark_e`` per
    affected unbinned pixel, the excess over the dark current already present.

    Parameters
    ----------
    charge : numpy.ndarray of float32
        Charge (electrons) of the read area, shape ``(height // bin_y, width // bin_x)`` of a
        region at unbinned ``(x0, y0)``; modified in place.
    columns : numpy.ndarray of BAD_COLUMN_DTYPE
        The sensor's bad columns (`bad_columns`), in full-sensor coordinates.
    dark_e : float
        Normal dark charge of one unbinned pixel in this exposure (electrons).
    light : bool, optional
        Whether `charge` holds photo-electrons, which dead columns dim.
    x0, y0 : int, optional
        Unbinned sensor origin of the read area (pixel).
    bin_x, bin_y : int, optional
        Binning of `charge`. A binned pixel sharing a dead column is dimmed by the mean
        response of its unbinned pixels, as if the light were even across it.
    """
    if charge.dtype != np.float32 or charge.ndim != 2:
        raise ValueError("charge must be a two-dimensional float32 array")
    ny, nx = charge.shape
    rows = np.arange(y0, y0 + ny * bin_y)
    for entry in columns:
        x = int(entry["x"]) - x0
        if not 0 <= x < nx * bin_x:
            continue
        affected = (rows >= int(entry["y_start"])).reshape(ny, bin_y).sum(axis=1)
        if not affected.any():
            continue
        if entry["kind"] == "dead" and light:
            # Fraction of the binned pixel's unbinned pixels that lose (1 - response).
            loss = (1.0 - float(entry["response"])) * affected / (bin_x * bin_y)
            charge[:, x // bin_x] *= (1.0 - loss).astype(np.float32)
        elif entry["kind"] == "hot":
            extra = (float(entry["dark_factor"]) - 1.0) * dark_e * affected
            charge[:, x // bin_x] += extra.astype(np.float32)


# -------------------------------------------------------------------- satellite trails


@dataclass(frozen=True)
class SatelliteTrail:
    """A satellite trail's truth.

    Parameters
    ----------
    x0, y0, x1, y1 : float
        Where the trail's centre line enters and leaves the sensor (zero-based unbinned
        sensor coordinates on its border, ``-0.5`` or ``size - 0.5``).
    flux_e_per_px : float
        Charge deposited per pixel of trail length (electrons).
    mag_per_arcsec : float
        The same as a magnitude per arcsec of trail (mag; see `satellite_trail`).
    fwhm_px : float
        Seeing FWHM (pixel). The trail's own profile across is the seeing's line-spread
        function, a Moffat of beta - 1/2, some 5-10 % wider at half maximum.
    flux_in_image_e : float
        Electrons the trail added to the image it was drawn into (electrons).
    """

    x0: float
    y0: float
    x1: float
    y1: float
    flux_e_per_px: float
    mag_per_arcsec: float
    fwhm_px: float
    flux_in_image_e: float


def _clip_line(
    px: float, py: float, dx: float, dy: float, width: int, height: int
) -> tuple[float, float, float, float] | None:
    """Clip the infinite line through (px, py) along (dx, dy) to the image rectangle."""
    t_lo, t_hi = -math.inf, math.inf
    for p, d, lo, hi in ((px, dx, -0.5, width - 0.5), (py, dy, -0.5, height - 0.5)):
        if abs(d) < 1e-12:
            if not lo <= p <= hi:
                return None
            continue
        a, b = (lo - p) / d, (hi - p) / d
        t_lo, t_hi = max(t_lo, min(a, b)), min(t_hi, max(a, b))
    if t_hi <= t_lo:
        return None
    return px + t_lo * dx, py + t_lo * dy, px + t_hi * dx, py + t_hi * dy


def add_trail(
    charge: NDArray[np.float32],
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    *,
    flux_e_per_px: float,
    fwhm_px: float,
    beta: float,
) -> float:
    """Add a straight, seeing-wide line of uniform brightness to a charge image, in place.

    The profile across is the line-spread function of the Moffat seeing,
    ``(1 + u^2/alpha^2)^(1/2 - beta)`` normalised to unit area within 5 FWHM (at least 3
    pixels) of the line, averaged over a 3 x 3 sub-pixel grid. Along the line it is cut
    sharply at the two end points (a trail crossing the frame is given ends beyond it).

    Parameters
    ----------
    charge : numpy.ndarray of float32
        Two-dimensional image (electrons), modified in place.
    x0, y0, x1, y1 : float
        End points of the centre line (zero-based pixel coordinates), distinct.
    flux_e_per_px : float
        Charge per pixel of length (electrons).
    fwhm_px : float
        FWHM across the line (pixel), positive.
    beta : float
        Moffat beta, > 1.

    Returns
    -------
    float
        Electrons added inside the image.
    """
    if charge.dtype != np.float32 or charge.ndim != 2:
        raise ValueError("charge must be a two-dimensional float32 array")
    if fwhm_px <= 0.0 or beta <= 1.0:
        raise ValueError("need fwhm_px > 0 and beta > 1")
    length = math.hypot(x1 - x0, y1 - y0)
    if length == 0.0:
        raise ValueError("the trail's end points must differ")
    height, width = charge.shape
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    alpha = _moffat_alpha(fwhm_px, beta)
    reach = max(3.0, 5.0 * fwhm_px)
    fine = np.linspace(-reach, reach, 4001)
    norm = float(np.sum((1.0 + (fine / alpha) ** 2) ** (0.5 - beta)) * (fine[1] - fine[0]))

    # Walk along the axis the line runs closest to, one pixel per step, and cover a band of
    # the other axis: every pixel is visited once, so plain fancy-index += is safe.
    steep = abs(uy) > abs(ux)
    major_len, minor_len = (height, width) if steep else (width, height)
    a0, a1 = (y0, y1) if steep else (x0, x1)
    b0, b1 = (x0, x1) if steep else (y0, y1)
    lo = max(0, math.ceil(min(a0, a1) - 0.5 - reach))
    hi = min(major_len - 1, math.floor(max(a0, a1) + 0.5 + reach))
    if hi < lo:
        return 0.0
    major = np.arange(lo, hi + 1)
    slope = (b1 - b0) / (a1 - a0) if a1 != a0 else 0.0
    centre = np.rint(b0 + (major - a0) * slope).astype(np.int64)
    half = math.ceil(reach * math.hypot(1.0, slope)) + 1
    minor = centre[:, None] + np.arange(-half, half + 1)[None, :]
    major2 = np.broadcast_to(major[:, None], minor.shape)
    px, py = (minor, major2) if steep else (major2, minor)

    sub = (np.arange(3) - 1.0) / 3.0
    values = np.zeros(px.shape, dtype=np.float64)
    for sy in sub:
        for sx in sub:
            rx = px + sx - x0
            ry = py + sy - y0
            along = rx * ux + ry * uy
            across = ry * ux - rx * uy
            lit = (np.abs(across) <= reach) & (along >= 0.0) & (along <= length)
            values += np.where(lit, (1.0 + (across / alpha) ** 2) ** (0.5 - beta), 0.0)
    values *= flux_e_per_px / (9.0 * norm)
    inside = (minor >= 0) & (minor < minor_len) & (values > 0.0)
    charge[py[inside], px[inside]] += values[inside].astype(np.float32)
    return float(values[inside].sum())


def satellite_trail(
    charge: NDArray[np.float32],
    rng: np.random.Generator,
    *,
    rate_per_hour: float,
    exposure_s: float,
    fwhm_px: float,
    beta: float,
    pixel_scale_arcsec: float,
    zero_point_mag: float,
    mag_per_arcsec_range: tuple[float, float] = (13.0, 17.0),
    sensor_shape: tuple[int, int] | None = None,
    x0: int = 0,
    y0: int = 0,
) -> SatelliteTrail | None:
    """Maybe cross the image with a satellite trail, in place.

    Trails arrive at random (Poisson) at `rate_per_hour` through the field, so an exposure
    shows one with probability ``1 - exp(-rate * exposure)``. A trail is a straight line
    through a uniform random point of the sensor at a uniform random angle, crossing the
    whole frame (a satellite crosses a field in seconds), as wide as the seeing
    (`add_trail`). Its surface brightness ``m`` (mag per arcsec of trail) is uniform in
    `mag_per_arcsec_range`: each arcsec of trail holds the electrons a star of magnitude ``m``
    gives in one second, ``10**(-0.4 (m - zero_point_mag))``. A satellite of magnitude M
    moving at w arcsec/s gives ``m = M + 2.5 log10 w``: 13-17 covers LEO satellites of
    magnitude 5-9 at ~0.3-1 deg/s down to geostationary ones drifting at 15 arcsec/s.

    Parameters
    ----------
    charge : numpy.ndarray of float32
        Two-dimensional image (electrons), modified in place.
    rng : numpy.random.Generator
        Source of randomness; always draws five numbers, trail or not.
    rate_per_hour : float
        Mean number of trails per hour of exposure in this field (>= 0). It scales with the
        field's area and the season and hour; 0.1-10 per square degree per hour is typical
        near twilight, a few times less at midnight.
    exposure_s : float
        Exposure time (s).
    fwhm_px : float
        Seeing FWHM (pixel).
    beta : float
        Moffat beta of the seeing, > 1.
    pixel_scale_arcsec : float
        Pixel scale (arcsec per pixel).
    zero_point_mag : float
        Magnitude that gives 1 electron per second.
    mag_per_arcsec_range : tuple of float, optional
        Range of trail surface brightness (mag per arcsec).
    sensor_shape : tuple of int, optional
        Full sensor ``(height, width)`` (unbinned pixels) when `charge` is only a subframe of
        it; the trail is placed on the sensor, so every subframe of one exposure seed shows
        the same trail. Defaults to the shape of `charge`.
    x0, y0 : int, optional
        Sensor origin of `charge` (unbinned pixel).

    Returns
    -------
    SatelliteTrail or None
        The trail's truth in sensor coordinates, or None when no satellite crossed. A trail
        crossing the sensor may miss a subframe (``flux_in_image_e`` 0).
    """
    if rate_per_hour < 0.0 or exposure_s < 0.0 or pixel_scale_arcsec <= 0.0:
        raise ValueError("need rate_per_hour >= 0, exposure_s >= 0 and pixel_scale_arcsec > 0")
    draws = rng.random(5)
    if draws[0] >= -math.expm1(-rate_per_hour * exposure_s / 3600.0):
        return None
    height, width = charge.shape if sensor_shape is None else sensor_shape
    angle = math.pi * draws[3]
    dx, dy = math.cos(angle), math.sin(angle)
    ends = _clip_line(draws[1] * width - 0.5, draws[2] * height - 0.5, dx, dy, width, height)
    if ends is None:  # cannot happen for a point inside the image; keeps mypy and us honest
        return None
    lo, hi = mag_per_arcsec_range
    mag = lo + draws[4] * (hi - lo)
    flux_per_px = 10.0 ** (-0.4 * (mag - zero_point_mag)) * pixel_scale_arcsec
    # Run the line past the border so the seeing profile is not cut off at the frame edge.
    pad = max(3.0, 5.0 * fwhm_px) + 2.0
    ex0, ey0, ex1, ey1 = ends
    added = add_trail(
        charge,
        ex0 - pad * dx - x0,
        ey0 - pad * dy - y0,
        ex1 + pad * dx - x0,
        ey1 + pad * dy - y0,
        flux_e_per_px=flux_per_px,
        fwhm_px=fwhm_px,
        beta=beta,
    )
    return SatelliteTrail(
        x0=float(ex0),
        y0=float(ey0),
        x1=float(ex1),
        y1=float(ey1),
        flux_e_per_px=float(flux_per_px),
        mag_per_arcsec=float(mag),
        fwhm_px=float(fwhm_px),
        flux_in_image_e=added,
    )


# ------------------------------------------------------------------------ colour sensors


def bayer_channel_masks(
    shape: tuple[int, int], pattern: str = "RGGB", *, x_offset: int = 0, y_offset: int = 0
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """Return which pixels of a colour sensor see red, green and blue.

    The pattern names the colours of the 2 x 2 cell read in array order: ``pattern[0]`` at
    ``[0, 0]``, ``pattern[1]`` at ``[0, 1]``, ``pattern[2]`` at ``[1, 0]``, ``pattern[3]`` at
    ``[1, 1]`` (``[y, x]``, row 0 being the first row of the data as stored). That is the
    meaning of the FITS keyword ``BAYERPAT`` as N.I.N.A., SharpCap, PixInsight and Siril write
    and read it, with ``XBAYROFF`` / ``YBAYROFF`` shifting the pattern for a subframe that
    starts on an odd column or row, so pixel ``(y, x)`` has the colour of
    ``pattern[2 * ((y + YBAYROFF) % 2) + (x + XBAYROFF) % 2]``. Writers that store row 0 first
    add ``ROWORDER = 'TOP-DOWN'``; a reader flipping the rows must swap the pattern's rows
    too. ASCOM describes the same with ``SensorType`` RGGB plus ``BayerOffsetX/Y``: BGGR is
    RGGB at offset (1, 1), GRBG at (1, 0) and GBRG at (0, 1).

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(height, width)``.
    pattern : str, optional
        One of `BAYER_PATTERNS`, any case.
    x_offset, y_offset : int, optional
        Pattern offsets (``XBAYROFF``, ``YBAYROFF``), e.g. the subframe origin.

    Returns
    -------
    red, green, blue : numpy.ndarray of bool
        Masks of shape `shape`; every pixel is in exactly one, a quarter red, a half green and
        a quarter blue (exactly, for even sizes).

    Raises
    ------
    ValueError
        If the pattern is unknown.
    """
    height, width = shape
    masks = tuple(np.zeros((height, width), dtype=bool) for _ in range(3))
    for row, col, channel in _bayer_cells(pattern, x_offset, y_offset):
        masks[channel][row::2, col::2] = True
    return masks[0], masks[1], masks[2]


def _bayer_cells(pattern: str, x_offset: int, y_offset: int) -> list[tuple[int, int, int]]:
    """Row parity, column parity and channel (0 R, 1 G, 2 B) of the four cells of a pattern."""
    key = pattern.strip().upper()
    if key not in BAYER_PATTERNS:
        raise ValueError(f"unknown Bayer pattern {pattern!r}; expected one of {BAYER_PATTERNS}")
    return [
        (row, col, "RGB".index(key[2 * ((row + y_offset) % 2) + (col + x_offset) % 2]))
        for row in (0, 1)
        for col in (0, 1)
    ]


def bayer_mosaic(
    red_e: NDArray[np.float32],
    green_e: NDArray[np.float32],
    blue_e: NDArray[np.float32],
    *,
    pattern: str = "RGGB",
    x_offset: int = 0,
    y_offset: int = 0,
) -> NDArray[np.float32]:
    """Build the raw frame of a colour sensor from the charge each channel would collect.

    Parameters
    ----------
    red_e, green_e, blue_e : numpy.ndarray of float32
        Charge (electrons) the whole array would collect behind the red, green and blue
        filters (e.g. renders in R, V and B with each filter's throughput), same shape.
    pattern : str, optional
        Bayer pattern, one of `BAYER_PATTERNS` (see `bayer_channel_masks`).
    x_offset, y_offset : int, optional
        Pattern offsets (``XBAYROFF``, ``YBAYROFF``).

    Returns
    -------
    numpy.ndarray of float32
        New C-contiguous mosaic (electrons): each pixel from its own channel.
    """
    if not red_e.shape == green_e.shape == blue_e.shape or red_e.ndim != 2:
        raise ValueError("the three channels must be two-dimensional and of one shape")
    channels = (red_e, green_e, blue_e)
    mosaic = np.empty(red_e.shape, dtype=np.float32)
    # Strided copies of a quarter each: no full-size masks or temporaries.
    for row, col, channel in _bayer_cells(pattern, x_offset, y_offset):
        mosaic[row::2, col::2] = channels[channel][row::2, col::2]
    return mosaic


def bayer_from_mono(
    charge: NDArray[np.float32],
    *,
    throughput_rgb: tuple[float, float, float],
    pattern: str = "RGGB",
    x_offset: int = 0,
    y_offset: int = 0,
) -> NDArray[np.float32]:
    """Turn a clear-filter charge image into a colour sensor's mosaic by channel throughput.

    The cheap alternative to `bayer_mosaic`: one render, every object the same colour.

    Parameters
    ----------
    charge : numpy.ndarray of float32
        Charge a monochrome sensor would collect (electrons).
    throughput_rgb : tuple of float
        Fraction of that charge a red, green and blue pixel collects, e.g. (0.30, 0.40, 0.25)
        for dye filters on a typical sensor.
    pattern : str, optional
        Bayer pattern, one of `BAYER_PATTERNS`.
    x_offset, y_offset : int, optional
        Pattern offsets (``XBAYROFF``, ``YBAYROFF``).

    Returns
    -------
    numpy.ndarray of float32
        New mosaic (electrons).
    """
    if charge.ndim != 2 or min(throughput_rgb) < 0.0:
        raise ValueError("charge must be two-dimensional and throughputs non-negative")
    mosaic = np.empty(charge.shape, dtype=np.float32)
    for row, col, channel in _bayer_cells(pattern, x_offset, y_offset):
        np.multiply(
            charge[row::2, col::2], np.float32(throughput_rgb[channel]), out=mosaic[row::2, col::2]
        )
    return mosaic
