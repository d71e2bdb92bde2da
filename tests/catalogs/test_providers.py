"""Catalogue providers against a local TAP server replaying recorded answers (no internet).

The truth is the hand-written stars of the recorded files (`build_votables`), stated there.
"""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest

from obsctl.catalogs import ApassVizier, AtlasVizier, GaiaTap
from obsctl.catalogs.bands import complete_bands
from obsctl.errors import CatalogError, CatalogOverflowError, CatalogUnreachableError

from ..daemon_helpers import free_port
from . import build_votables as rec
from .tap_replay import tap_replay


def separation_deg(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = (np.radians(v) for v in (ra1, dec1, ra2, dec2))
    hav = (
        np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    )
    return np.degrees(2 * np.arcsin(np.sqrt(hav)))


async def test_gaia_answer_is_parsed() -> None:
    async with tap_replay() as server:
        gaia = GaiaTap(url=server.url("gaia"), timeout_s=5)
        table = await asyncio.to_thread(gaia.cone, 150.0, 20.0, 0.05, mag_limit=16.0)
    # The query names Gaia DR3's tables and asks for the synthetic photometry.
    query = server.requests[0].query
    assert "FROM gaiadr3.gaia_source AS g" in query
    assert "LEFT OUTER JOIN gaiadr3.synthetic_photometry_gspc AS s" in query
    assert "v_jkc_mag" in query and "g.phot_g_mean_mag <= 16.000" in query
    assert server.requests[0].maxrec == gaia.max_rows

    assert len(table) > 50
    assert (separation_deg(table["ra_deg"], table["dec_deg"], 150.0, 20.0) <= 0.05).all()
    assert np.nanmax(table["G"]) <= 16.0
    sid, ra, dec, pmra, pmdec = rec.PM_STAR
    star = table[table["source_id"] == str(sid)][0]
    assert (star["ra_deg"], star["dec_deg"]) == (ra, dec)
    assert (star["pmra_mas_yr"], star["pmdec_mas_yr"], star["epoch_yr"]) == (pmra, pmdec, 2016.0)
    assert star["G"] == pytest.approx(11.0) and star["V"] == pytest.approx(11.3, abs=1e-5)
    # Flux errors of 1 % are 0.010857 mag; G's from its flux S/N of 100.
    assert star["V_err"] == pytest.approx(0.010857, rel=1e-3)
    assert star["G_err"] == pytest.approx(2.5 / math.log(10) / 100, rel=1e-3)
    # A star without XP spectra has G/BP/RP only; its V comes from the DR3 relation.
    sid2, *_, g2, bp2, rp2 = rec.XP_LESS_STAR
    xp_less = table[table["source_id"] == str(sid2)][0]
    assert np.isnan(xp_less["V"]) and np.isnan(xp_less["pmra_mas_yr"])
    filled = complete_bands(table)
    v = filled[filled["source_id"] == str(sid2)][0]["V"]
    c = bp2 - rp2
    assert v == pytest.approx(g2 - (-0.02704 + 0.01424 * c - 0.2156 * c**2 + 0.01426 * c**3))
    # A synthetic magnitude, where there is one, is kept as measured.
    assert filled[filled["source_id"] == str(sid)][0]["V"] == pytest.approx(11.3, abs=1e-5)


async def test_apass_answer_is_parsed() -> None:
    async with tap_replay() as server:
        apass = ApassVizier(url=server.url("vizier"), timeout_s=5)
        table = await asyncio.to_thread(apass.cone, 150.0, 20.0, 0.05, mag_limit=15.0)
    query = server.requests[0].query
    assert 'FROM "II/336/apass9"' in query and '"g\'mag"' in query
    recno, ra, dec, b, v, g, r, i = rec.APASS_STAR
    star = table[table["source_id"] == str(recno)][0]
    assert star["ra_deg"] == pytest.approx(ra) and star["dec_deg"] == pytest.approx(dec)
    assert [star[k] for k in ("B", "V", "g", "r", "i")] == pytest.approx([b, v, g, r, i])
    assert star["V_err"] == pytest.approx(0.012) and star["i_err"] == pytest.approx(0.031)
    assert np.isnan(star["pmra_mas_yr"]) and np.isnan(star["epoch_yr"])  # APASS has none
    assert np.nanmax(table["V"]) <= 15.0 and len(table) > 10


async def test_atlas_answer_is_parsed() -> None:
    async with tap_replay() as server:
        atlas = AtlasVizier(url=server.url("vizier"), timeout_s=5)
        table = await asyncio.to_thread(atlas.cone, 150.0, 20.0, 0.05, mag_limit=16.0)
    assert 'FROM "J/ApJ/867/105/refcat2"' in server.requests[0].query
    ra, dec, pmra, pmdec, g_gaia, g, r, i, z = rec.ATLAS_STAR
    near = separation_deg(table["ra_deg"], table["dec_deg"], ra, dec) < 1e-6
    star = table[near][0]
    assert (star["pmra_mas_yr"], star["pmdec_mas_yr"], star["epoch_yr"]) == (pmra, pmdec, 2015.5)
    assert [star[k] for k in ("G", "g", "r", "i", "z")] == pytest.approx([g_gaia, g, r, i, z])
    assert star["r_err"] == pytest.approx(0.012)
    assert np.nanmax(table["r"]) <= 16.0


async def test_http_error_is_one_clear_line() -> None:
    async with tap_replay() as server:
        gaia = GaiaTap(url=server.url("broken"), timeout_s=5)
        with pytest.raises(CatalogError) as info:
            await asyncio.to_thread(gaia.cone, 150.0, 20.0, 0.05, mag_limit=16.0)
    assert not isinstance(info.value, CatalogUnreachableError)
    message = str(info.value)
    assert message.startswith("gaia: ") and "500" in message and "\n" not in message


async def test_tap_error_document_is_a_clear_error() -> None:
    async with tap_replay() as server:
        apass = ApassVizier(url=server.url("refusing"), timeout_s=5)
        with pytest.raises(CatalogError, match=r"refused the query.*does not exist") as info:
            await asyncio.to_thread(apass.cone, 150.0, 20.0, 0.05, mag_limit=16.0)
    assert "\n" not in str(info.value)


async def test_a_stalled_service_times_out_quickly() -> None:
    async with tap_replay(stall_s=10.0) as server:
        gaia = GaiaTap(url=server.url("stalling"), timeout_s=0.5)
        start = time.monotonic()
        with pytest.raises(CatalogUnreachableError, match=r"no answer .* within 0\.5 s"):
            await asyncio.to_thread(gaia.cone, 150.0, 20.0, 0.05, mag_limit=16.0)
        assert time.monotonic() - start < 3.0


async def test_no_server_is_unreachable() -> None:
    atlas = AtlasVizier(url=f"http://127.0.0.1:{free_port()}/tap", timeout_s=2)
    with pytest.raises(CatalogUnreachableError, match="atlas: no answer"):
        await asyncio.to_thread(atlas.cone, 150.0, 20.0, 0.05, mag_limit=16.0)


async def test_a_truncated_answer_is_an_overflow_error() -> None:
    async with tap_replay() as server:
        gaia = GaiaTap(url=server.url("gaia"), timeout_s=5, max_rows=10)
        with pytest.raises(CatalogOverflowError, match=r"truncated at 10 rows \(MAXREC 10\)"):
            await asyncio.to_thread(gaia.cone, 150.0, 20.0, 0.05, mag_limit=18.0)
    assert server.requests[0].maxrec == 10


def test_a_bad_cone_is_refused_before_any_request() -> None:
    with pytest.raises(CatalogError, match="bad cone"):
        GaiaTap(url="http://127.0.0.1:1/tap").cone(150.0, 95.0, 0.1, mag_limit=16.0)
