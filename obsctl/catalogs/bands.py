"""Bands a catalogue lacks, derived from those it has by colour transformations.

(Which band a frame's ``FILTER`` is calibrated in, through the config's ``[catalogs] bands``
table and the built-in names, is `obsctl.store.refcat.reference_band`.)

Where a catalogue lacks a band, `complete_bands` derives it from the bands it has:

- from Gaia G and BP-RP with the Gaia DR3 photometric relationships (Riello et al. 2021,
  A&A 649, A3, Table C.2; Gaia DR3 documentation section 5.5.1, Table 5.9): Johnson-Cousins
  V, R, I and SDSS g, r, i, each within the colour range it was fitted over (Table 5.10),
  with the fit's scatter as its error;
- from SDSS-like g, r, i with Lupton (2005, on the SDSS DR5 "Transformations between SDSS
  magnitudes and UBVRcIc" page, fitted to Stetson's standards): B, V, R, I.

Measured magnitudes (including Gaia's synthetic photometry) always win over derived ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

__all__ = [
    "GAIA_RELATIONS",
    "LUPTON_RELATIONS",
    "GaiaRelation",
    "complete_bands",
    "from_gaia",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GaiaRelation:
    """``G - X = sum(c[k] * (BP - RP)**k)``, valid for ``lo < BP - RP < hi``, scatter ``sigma``."""

    coefficients: tuple[float, ...]
    sigma: float
    lo: float
    hi: float


#: Gaia DR3 (= EDR3) photometry to other systems: Riello et al. 2021, Table C.2, as in the Gaia
#: DR3 documentation, section 5.5.1 (Table 5.9 coefficients, Table 5.10 colour ranges).
GAIA_RELATIONS: dict[str, GaiaRelation] = {
    "V": GaiaRelation((-0.02704, 0.01424, -0.2156, 0.01426), 0.03017, -0.5, 5.0),
    "R": GaiaRelation((-0.02275, 0.3961, -0.1243, -0.01396, 0.003775), 0.03167, 0.0, 4.0),
    "I": GaiaRelation((0.01753, 0.76, -0.0991), 0.03765, -0.5, 4.5),
    "g": GaiaRelation((0.2199, -0.6365, -0.1548, 0.0064), 0.0745, 0.3, 3.0),
    "r": GaiaRelation((-0.09837, 0.08592, 0.1907, -0.1701, 0.02263), 0.03776, 0.0, 3.0),
    "i": GaiaRelation((-0.293, 0.6404, -0.09609, -0.002104), 0.04092, 0.5, 2.0),
}

#: Lupton (2005): band = a + b * (first - second) + base, as (base, first, second, b, a, sigma).
LUPTON_RELATIONS: dict[str, tuple[str, str, str, float, float, float]] = {
    "B": ("g", "g", "r", 0.3130, 0.2271, 0.0107),
    "V": ("g", "g", "r", -0.5784, -0.0038, 0.0054),
    "R": ("r", "r", "i", -0.2936, -0.1439, 0.0072),
    "I": ("r", "r", "i", -1.2444, -0.3820, 0.0078),
}


def from_gaia(
    g: NDArray[np.float64], bp_rp: NDArray[np.float64], band: str
) -> tuple[NDArray[np.float64], float]:
    """Return a band's magnitudes from Gaia G and BP-RP, NaN outside the fitted colours.

    Parameters
    ----------
    g : numpy.ndarray
        Gaia G (mag).
    bp_rp : numpy.ndarray
        BP - RP colour (mag).
    band : str
        A key of `GAIA_RELATIONS`.

    Returns
    -------
    mag : numpy.ndarray of float64
        The band's magnitude (mag).
    sigma : float
        The relation's scatter (mag).
    """
    rel = GAIA_RELATIONS[band]
    colour = np.asarray(bp_rp, dtype=np.float64)
    g_minus_x = np.polynomial.polynomial.polyval(colour, rel.coefficients)
    inside = (colour > rel.lo) & (colour < rel.hi)
    mag = np.where(inside, np.asarray(g, dtype=np.float64) - g_minus_x, np.nan)
    return mag, rel.sigma


def complete_bands(table: Table) -> Table:
    """Return a copy of a provider's table with missing bands derived where possible.

    A band is filled per star: only where it is NaN (or absent) and the inputs are finite
    and in range. Errors are the relation's scatter and the inputs' errors in quadrature.
    """
    out = table.copy(copy_data=True)
    n = len(out)

    def column(name: str) -> NDArray[np.float64]:
        if name in out.colnames:
            return np.asarray(out[name], dtype=np.float64)
        return np.full(n, np.nan)

    def fill(band: str, mag: NDArray[np.float64], err: NDArray[np.float64]) -> None:
        current, current_err = column(band), column(band + "_err")
        use = np.isnan(current) & np.isfinite(mag)
        out[band] = np.where(use, mag, current)
        out[band + "_err"] = np.where(use, err, current_err)

    g, bp, rp = column("G"), column("BP"), column("RP")
    g_err = np.nan_to_num(column("G_err"))
    for band in GAIA_RELATIONS:
        mag, sigma = from_gaia(g, bp - rp, band)
        fill(band, mag, np.hypot(sigma, g_err))
    for band, (base, first, second, slope, offset, sigma) in LUPTON_RELATIONS.items():
        colour = column(first) - column(second)
        mag = column(base) + slope * colour + offset
        err = np.sqrt(
            sigma**2
            + np.nan_to_num(column(base + "_err")) ** 2
            + (slope * np.nan_to_num(column(first + "_err"))) ** 2
        )
        fill(band, mag, err)
    return out
