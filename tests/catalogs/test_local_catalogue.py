"""The local catalogue's part: proper motion to a frame's epoch, fetched cones, old files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from obsctl.catalogs import GaiaTap
from obsctl.catalogs.prefetch import store_table
from obsctl.store.refcat import RefCatalog

from . import build_votables as rec
from .tap_replay import tap_replay


@pytest.fixture
async def gaia_field(tmp_path: Path):
    async with tap_replay() as server:
        gaia = GaiaTap(url=server.url("gaia"), timeout_s=5)
        table = await asyncio.to_thread(gaia.cone, 150.0, 20.0, 0.06, mag_limit=18.0)
    with RefCatalog(tmp_path / "catalog.sqlite") as catalog:
        store_table(catalog, gaia, table)
        yield catalog


def test_proper_motion_moves_a_star_to_the_frames_epoch(gaia_field: RefCatalog) -> None:
    sid = str(rec.PM_STAR[0]).encode()
    # The recorded star: (150.02, +19.98) at J2016.0, pmra* +500 mas/yr, pmdec -300 mas/yr.
    at_2016 = gaia_field.cone(150.02, 19.98, 0.01, band="G")
    star = at_2016[at_2016["source_id"] == sid][0]
    assert (star["ra_deg"], star["dec_deg"]) == (150.02, 19.98)
    assert star["pmra_mas_yr"] == 500.0 and star["epoch_yr"] == 2016.0
    # Ten years later, by hand: dDec = -300 mas/yr * 10 yr = -3000 mas = -0.000833333 deg;
    # dRA = 500 * 10 mas / cos(19.98 deg) = 5320.2133 mas = 0.001477837 deg.
    later = gaia_field.cone(150.02, 19.98, 0.01, band="G", epoch_yr=2026.0)
    moved = later[later["source_id"] == sid][0]
    assert moved["ra_deg"] == pytest.approx(150.02147783701548, abs=1e-9)
    assert moved["dec_deg"] == pytest.approx(19.979166666666668, abs=1e-9)
    # A star without a proper motion stays where it is.
    xp_less = str(rec.XP_LESS_STAR[0]).encode()
    around = gaia_field.cone(150.03, 20.03, 0.001, band="G", epoch_yr=2026.0)
    still = around[around["source_id"] == xp_less]
    assert len(still) == 1 and (still["ra_deg"][0], still["dec_deg"][0]) == (150.03, 20.03)


def test_stored_bands_include_the_derived_ones(gaia_field: RefCatalog) -> None:
    stars = gaia_field.cone(150.03, 20.03, 0.001, band="V")
    xp_less = stars[stars["source_id"] == str(rec.XP_LESS_STAR[0]).encode()][0]
    _, _, _, g, bp, rp = rec.XP_LESS_STAR
    c = bp - rp
    assert xp_less["mag"] == pytest.approx(
        g - (-0.02704 + 0.01424 * c - 0.2156 * c**2 + 0.01426 * c**3), abs=1e-5
    )
    assert xp_less["catalog"] == b"gaia_dr3"


def test_fetched_cones_cover_smaller_ones(tmp_path: Path) -> None:
    with RefCatalog(tmp_path / "c.sqlite") as catalog:
        assert not catalog.covered("gaia", 10.0, 20.0, 0.1, 17.0)
        catalog.add_cone("gaia", 10.0, 20.0, 0.5, mag_limit=17.0, n_stars=5,
                         fetched_utc="2026-11-25T12:00:00+00:00")  # fmt: skip
        assert catalog.covered("gaia", 10.0, 20.0, 0.5, 17.0)
        assert catalog.covered("gaia", 10.2, 20.1, 0.2, 16.0)
        assert not catalog.covered("gaia", 10.5, 20.0, 0.2, 17.0)  # partly outside
        assert not catalog.covered("gaia", 10.0, 20.0, 0.2, 18.0)  # deeper than fetched
        assert not catalog.covered("apass", 10.0, 20.0, 0.2, 17.0)  # another provider
        (cone,) = catalog.cones("gaia")
        assert cone["radius_deg"] == 0.5 and cone["n_stars"] == 5


def test_a_version_1_catalogue_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old_mags = ("mag_b", "mag_v", "mag_r", "mag_i", "mag_sdss_g", "mag_sdss_r", "mag_sdss_i",
                "mag_gaia_g", "mag_gaia_bp", "mag_gaia_rp")  # fmt: skip
    columns = ", ".join(f"{c} REAL, {c}_err REAL" for c in old_mags)
    db = sqlite3.connect(path)
    db.executescript(
        f"""
        CREATE TABLE refstars (id INTEGER PRIMARY KEY, catalog TEXT NOT NULL,
            source_id TEXT NOT NULL, ra_deg REAL NOT NULL, dec_deg REAL NOT NULL,
            zone INTEGER NOT NULL, cell INTEGER NOT NULL, {columns});
        CREATE TABLE refstars_tiles (zone INTEGER NOT NULL, cell INTEGER NOT NULL,
            n INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (zone, cell)) WITHOUT ROWID;
        INSERT INTO refstars (catalog, source_id, ra_deg, dec_deg, zone, cell, mag_v)
            VALUES ('old', 'a', 10.0, 20.0, 440, 37, 12.5);
        INSERT INTO refstars_tiles VALUES (440, 37, 1, x'00');  -- a version-1 packing
        PRAGMA user_version = 1;
        """
    )
    db.close()
    with RefCatalog(path) as catalog:
        stars = catalog.cone(10.0, 20.0, 0.01, epoch_yr=2026.0)
        assert len(stars) == 1 and stars["mag"][0] == 12.5
        assert np.isnan(stars["pmra_mas_yr"][0]) and stars["ra_deg"][0] == 10.0
        assert catalog.cones() == []
