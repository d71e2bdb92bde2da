"""Band mapping and colour transformations, against stars whose magnitudes are published.

Truth, independent of the relations under test:

- the Sun: Gaia (BP-RP) = 0.82 and M_G = 4.67 (Casagrande & VandenBerg 2018, MNRAS 479,
  L102); Johnson-Cousins M_V = 4.81, V-Rc = 0.356, V-Ic = 0.701 (Ramirez et al. 2012, ApJ
  752, 5); SDSS M_g = 5.11, M_r = 4.65, M_i = 4.53 (Willmer 2018, ApJS 236, 47);
- Vega, the zero point of both Johnson V and Gaia's Vega magnitudes: V = 0.03, G = 0.03,
  BP-RP = 0.0 (Riello et al. 2021, section 6).
"""

from __future__ import annotations

import typing

import numpy as np
import pytest
from astropy.table import Table

from obsctl.catalogs.bands import GAIA_RELATIONS, complete_bands, from_gaia
from obsctl.config import BandName
from obsctl.store.refcat import BANDS, reference_band

SUN_BP_RP, SUN_G = 0.82, 4.67
SUN_V, SUN_R, SUN_I = 4.81, 4.81 - 0.356, 4.81 - 0.701
SUN_SDSS = {"g": 5.11, "r": 4.65, "i": 4.53}


@pytest.mark.parametrize(("band", "truth"), [("V", SUN_V), ("R", SUN_R), ("I", SUN_I)])
def test_gaia_relations_give_the_suns_johnson_cousins_magnitudes(band: str, truth: float) -> None:
    mag, sigma = from_gaia(np.array([SUN_G]), np.array([SUN_BP_RP]), band)
    assert mag[0] == pytest.approx(truth, abs=sigma)  # within the relation's scatter


def test_gaia_relation_gives_vegas_v() -> None:
    mag, sigma = from_gaia(np.array([0.03]), np.array([0.0]), "V")
    assert mag[0] == pytest.approx(0.03, abs=sigma)


def test_gaia_relations_are_nan_outside_their_colour_range() -> None:
    mag, _ = from_gaia(np.array([10.0, 10.0, 10.0]), np.array([-1.0, 1.0, 6.0]), "V")
    assert np.isnan(mag[0]) and np.isfinite(mag[1]) and np.isnan(mag[2])
    assert set(GAIA_RELATIONS) <= set(BANDS)


def test_complete_bands_fills_only_what_is_missing() -> None:
    table = Table(
        {
            "G": [SUN_G, 12.0, np.nan],
            "G_err": [0.001, 0.001, np.nan],
            "BP": [SUN_G + 0.5, 12.4, np.nan],
            "RP": [SUN_G + 0.5 - SUN_BP_RP, 11.4, np.nan],
            "V": [np.nan, 11.9, np.nan],  # the second star has a measured V
            "V_err": [np.nan, 0.02, np.nan],
            "g": [np.nan, np.nan, SUN_SDSS["g"]],
            "r": [np.nan, np.nan, SUN_SDSS["r"]],
            "i": [np.nan, np.nan, SUN_SDSS["i"]],
        }
    )
    out = complete_bands(table)
    assert out["V"][0] == pytest.approx(SUN_V, abs=0.031)
    assert out["V_err"][0] == pytest.approx(np.hypot(0.03017, 0.001))
    assert out["V"][1] == 11.9 and out["V_err"][1] == 0.02  # measured: kept
    # Without Gaia colours, Lupton (2005) from g, r, i (tolerance: the Sun's colours' own).
    assert out["V"][2] == pytest.approx(SUN_V, abs=0.04)
    assert out["R"][2] == pytest.approx(SUN_R, abs=0.04)
    assert "V" in table.colnames and np.isnan(table["V"][0])  # the input is not changed


def test_reference_band_prefers_the_config_map() -> None:
    bands = {"L": "G", "Lum": "G", "Sloan-z": "z"}
    assert reference_band("L", bands) == "G"
    assert reference_band("Lum ", bands) == "G"
    assert reference_band("V", bands) == "V"  # built-in names for the others
    assert reference_band("L", {}) == "L"
    assert reference_band("Halpha", bands) is None
    assert reference_band(None, bands) is None
    # Every band the config accepts is one the catalogue has.
    assert set(typing.get_args(BandName)) == set(BANDS)
