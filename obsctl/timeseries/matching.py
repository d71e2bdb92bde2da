"""Cross-frame matching of sources by sky position, as pure numeric functions."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree

__all__ = ["match_positions", "separation_arcsec", "unit_vectors"]


def unit_vectors(ra_deg: ArrayLike, dec_deg: ArrayLike) -> NDArray[np.float64]:
    """Return ``(N, 3)`` Cartesian unit vectors of sky positions given in degrees."""
    ra = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec_deg, dtype=np.float64))
    cos_dec = np.cos(dec)
    return np.column_stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)])


def separation_arcsec(
    ra1_deg: ArrayLike, dec1_deg: ArrayLike, ra2_deg: ArrayLike, dec2_deg: ArrayLike
) -> NDArray[np.float64]:
    """Return the angular separation (arcsec) between positions in degrees (haversine)."""
    ra1, dec1 = np.radians(ra1_deg), np.radians(dec1_deg)
    ra2, dec2 = np.radians(ra2_deg), np.radians(dec2_deg)
    hav = (
        np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    )
    return np.asarray(np.degrees(2 * np.arcsin(np.sqrt(np.clip(hav, 0, 1)))) * 3600.0)


def match_positions(
    ra_deg: ArrayLike,
    dec_deg: ArrayLike,
    ref_ra_deg: ArrayLike,
    ref_dec_deg: ArrayLike,
    *,
    radius_arcsec: float,
) -> NDArray[np.intp]:
    """Match sources to reference positions one to one, nearest first.

    Parameters
    ----------
    ra_deg, dec_deg : array_like
        Positions of the new sources (deg); NaN positions never match.
    ref_ra_deg, ref_dec_deg : array_like
        Positions of the known objects (deg).
    radius_arcsec : float
        Largest separation of a match (arcsec).

    Returns
    -------
    numpy.ndarray of intp
        For each source, the index of its reference object, or -1. When two sources fall on
        the same object only the nearer keeps it (a blend or a spurious detection must not
        put two points into one light curve).
    """
    if radius_arcsec <= 0.0:
        raise ValueError(f"radius_arcsec must be positive, got {radius_arcsec}")
    src = unit_vectors(ra_deg, dec_deg)
    ref = unit_vectors(ref_ra_deg, ref_dec_deg)
    out = np.full(src.shape[0], -1, dtype=np.intp)
    if src.shape[0] == 0 or ref.shape[0] == 0:
        return out
    good = np.all(np.isfinite(src), axis=1)
    chord = 2.0 * math.sin(math.radians(radius_arcsec / 3600.0) / 2.0)
    tree = cKDTree(ref)
    dist, idx = tree.query(src[good], k=1, distance_upper_bound=chord)
    found = np.isfinite(dist)
    cand = np.flatnonzero(good)[found]
    dist, idx = dist[found], idx[found]
    # Nearest claim wins: sort by distance and keep the first source per object.
    order = np.argsort(dist, kind="stable")
    _, first = np.unique(idx[order], return_index=True)
    keep = order[first]
    out[cand[keep]] = idx[keep]
    return out
