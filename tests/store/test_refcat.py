"""The local reference catalog: imports with various column names, cone searches, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table

from obsctl.cli import main
from obsctl.errors import ConfigError
from obsctl.simulators.sky import import_synthetic, synthetic_catalog
from obsctl.store.refcat import RefCatalog, band_magnitudes, filter_band

from ..daemon_helpers import write_config


@pytest.fixture
def catalog(tmp_path: Path):
    with RefCatalog(tmp_path / "catalog.sqlite") as cat:
        yield cat


def ids(stars: np.ndarray) -> set[str]:
    return set(stars["source_id"].astype(str).tolist())


# ---------------------------------------------------------------------------------- imports


def test_gaia_csv_with_flux_signal_to_noise(tmp_path: Path, catalog: RefCatalog) -> None:
    t = Table()
    t["source_id"] = np.array([4295806720, 4295806721, 4295806722], dtype=np.int64)
    t["ra"] = [10.0, 10.01, 10.02]
    t["dec"] = [-20.0, -20.01, -20.02]
    t["phot_g_mean_mag"] = [12.0, 13.5, 15.0]
    t["phot_g_mean_flux_over_error"] = [1000.0, 500.0, 100.0]
    t["phot_bp_mean_mag"] = [12.5, 14.0, 15.6]
    t["phot_rp_mean_mag"] = [11.4, 12.9, 14.3]
    path = tmp_path / "gaia_extract.csv"
    t.write(path, format="ascii.csv")

    assert catalog.import_table(path) == 3
    assert catalog.catalogs() == {"gaia_extract": 3}
    stars = catalog.cone(10.0, -20.0, 0.1, band="G")
    assert stars["source_id"].astype(str).tolist() == ["4295806720", "4295806721", "4295806722"]
    assert np.allclose(stars["mag"], [12.0, 13.5, 15.0], atol=1e-6)
    # sigma_mag = 2.5 / ln 10 / (S/N)
    assert np.allclose(stars["mag_err"], 1.0857362 / np.array([1000.0, 500.0, 100.0]), rtol=1e-5)
    assert np.allclose(stars["mag_gaia_bp"] - stars["mag_gaia_rp"], [1.1, 1.1, 1.3], atol=1e-5)
    assert np.isnan(stars["mag_v"]).all()


def test_apass_ecsv_keeps_sdss_bands_apart(tmp_path: Path, catalog: RefCatalog) -> None:
    t = Table()
    t["recno"] = [1, 2]
    t["RAJ2000"] = [200.0, 200.001] * u.deg
    t["DEJ2000"] = [45.0, 45.001] * u.deg
    t["Vmag"] = [11.0, 12.0]
    t["e_Vmag"] = [0.02, 0.03]
    t["Bmag"] = [11.6, 12.9]
    t["e_Bmag"] = [0.04, 0.05]
    t["r_mag"] = [10.8, 11.7]
    t["i_mag"] = [10.6, 11.4]
    path = tmp_path / "apass.ecsv"
    t.write(path, format="ascii.ecsv")

    assert catalog.import_table(path, catalog="apass") == 2
    stars = catalog.cone(200.0, 45.0, 0.01, band="V")
    assert np.allclose(stars["mag_v"], [11.0, 12.0]) and np.allclose(stars["mag_err"], [0.02, 0.03])
    assert np.allclose(stars["mag_b_err"], [0.04, 0.05])
    assert np.allclose(stars["mag_sdss_r"], [10.8, 11.7]) and np.allclose(
        stars["mag_sdss_i"], [10.6, 11.4]
    )
    assert np.isnan(stars["mag_r"]).all() and np.isnan(stars["mag_i"]).all()


def test_fits_with_upper_case_johnson_columns_and_radian_units(
    tmp_path: Path, catalog: RefCatalog
) -> None:
    t = Table()
    t["RA"] = np.radians([359.99, 0.01]) * u.rad
    t["DEC"] = np.radians([0.0, 0.0]) * u.rad
    t["B"] = [12.0, 13.0]
    t["V"] = [11.5, 12.2]
    t["R"] = [11.2, 11.8]
    t["I"] = [10.9, 11.4]
    path = tmp_path / "johnson.fits"
    t.write(path)

    assert catalog.import_table(path) == 2
    stars = catalog.cone(0.0, 0.0, 0.05, band="L")
    assert len(stars) == 2
    assert sorted(stars["ra_deg"].round(6).tolist()) == [0.01, 359.99]
    assert np.allclose(np.sort(stars["mag"]), [11.35, 12.0])  # (V + R) / 2
    assert np.allclose(np.sort(stars["mag_i"]), [10.9, 11.4])


def test_sexagesimal_text_and_explicit_columns(tmp_path: Path, catalog: RefCatalog) -> None:
    path = tmp_path / "mine.csv"
    path.write_text(
        "star,alpha,delta,visual\na,05 35 17.3,-05 23 28,6.5\nb,05:35:20.0,-05:20:00,7.25\n"
    )
    with pytest.raises(ConfigError, match=r"mine\.csv: missing column\(s\): right ascension"):
        catalog.import_table(path)
    n = catalog.import_table(
        path,
        columns={"ra_deg": "alpha", "dec_deg": "delta", "mag_v": "visual", "source_id": "star"},
    )
    assert n == 2
    stars = catalog.cone(83.82, -5.39, 0.2)
    assert stars["source_id"].astype(str).tolist() == ["a", "b"]
    assert stars["ra_deg"][0] == pytest.approx(83.822083, abs=1e-6)
    assert stars["dec_deg"][0] == pytest.approx(-5.391111, abs=1e-6)


def test_missing_columns_are_named(tmp_path: Path, catalog: RefCatalog) -> None:
    path = tmp_path / "broken.csv"
    path.write_text("ra,declination_typo,Vmag\n1,2,3\n")
    with pytest.raises(ConfigError, match=r"broken\.csv: missing column\(s\): declination") as err:
        catalog.import_table(path)
    assert "DEJ2000" in str(err.value)  # names what was looked for
    assert "declination_typo" in str(err.value)  # and what the file has
    assert err.value.path == str(path)

    path.write_text("ra,dec,colour\n1,2,0.5\n")
    with pytest.raises(ConfigError, match=r"missing column\(s\): a magnitude \(looked for .*Vmag"):
        catalog.import_table(path)
    with pytest.raises(ConfigError, match=r"column 'nope' .* not in the file"):
        catalog.import_table(path, columns={"mag_v": "nope"})
    with pytest.raises(ConfigError, match="no such file"):
        catalog.import_table(tmp_path / "absent.csv")
    path.write_text("ra,dec,V\n1,95,3\n")
    with pytest.raises(ConfigError, match=r"declinations outside \[-90, 90\]"):
        catalog.import_table(path)
    assert len(catalog) == 0


def test_reimport_replaces_rows_and_moves_stars(tmp_path: Path, catalog: RefCatalog) -> None:
    path = tmp_path / "cat.csv"
    path.write_text("id,ra,dec,V\n1,10.0,10.0,12\n2,10.1,10.0,13\n")
    catalog.import_table(path)
    path.write_text("id,ra,dec,V\n1,10.0,10.0,11\n2,50.0,-30.0,13\n")  # star 2 moved far away
    catalog.import_table(path)
    assert len(catalog) == 2
    near = catalog.cone(10.0, 10.0, 0.5)
    assert ids(near) == {"1"} and near["mag_v"][0] == 11.0
    assert ids(catalog.cone(50.0, -30.0, 0.1)) == {"2"}


def test_synthetic_import_agrees_with_the_simulator(catalog: RefCatalog) -> None:
    args = {"seed": 3, "density_per_deg2": 3000.0, "mag_bright": 8.0, "mag_limit": 18.0}
    n = import_synthetic(catalog, 120.0, 35.0, 0.6, **args)
    sim = synthetic_catalog(120.0, 35.0, 0.6, **args)
    assert n == len(sim)
    stars = catalog.cone(120.0, 35.0, 0.6, band="B")
    assert ids(stars) == {str(i) for i in sim.id.tolist()}
    by_id = {int(s): k for k, s in enumerate(stars["source_id"].astype(str))}
    k = np.array([by_id[int(i)] for i in sim.id])
    assert np.array_equal(stars["ra_deg"][k], sim.ra_deg)
    assert np.array_equal(stars["dec_deg"][k], sim.dec_deg)
    for band in "BVRI":
        assert np.allclose(stars[f"mag_{band.lower()}"][k], sim.mag(band), atol=1e-5)
    assert np.all(np.diff(stars["mag"]) >= 0)  # brightest first, in B
    # Overlapping imports do not duplicate stars.
    import_synthetic(catalog, 120.3, 35.0, 0.6, **args)
    both = catalog.cone(120.15, 35.0, 1.0)
    assert len(both) == len(ids(both))


# --------------------------------------------------------------------------------- queries


def brute_force(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float, r: float) -> np.ndarray:
    d0, d = math.radians(dec0), np.radians(dec)
    hav = (
        np.sin((d - d0) / 2) ** 2 + math.cos(d0) * np.cos(d) * np.sin(np.radians(ra - ra0) / 2) ** 2
    )
    inside: np.ndarray = hav <= math.sin(math.radians(r) / 2) ** 2
    return inside


@pytest.fixture(scope="module")
def sky_sample(tmp_path_factory: pytest.TempPathFactory):
    """40 000 stars: uniform on the sphere plus dense patches at RA 0 and the north pole."""
    rng = np.random.default_rng(9)
    n = 20_000
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    patch_ra = rng.uniform(-2, 2, 10_000) % 360
    patch_dec = rng.uniform(-2, 2, 10_000)
    cap_ra = rng.uniform(0, 360, 10_000)
    cap_dec = 90 - np.degrees(np.arccos(rng.uniform(math.cos(math.radians(3)), 1, 10_000)))
    t = Table()
    t["ra"] = np.concatenate([ra, patch_ra, cap_ra])
    t["dec"] = np.concatenate([dec, patch_dec, cap_dec])
    t["V"] = rng.uniform(8, 18, len(t))
    t["V"][rng.random(len(t)) < 0.05] = np.nan  # some stars lack V: ranked by G instead
    t["Gmag"] = t["V"] - 0.2
    t["Gmag"][np.isnan(t["V"])] = rng.uniform(8, 18, int(np.isnan(t["V"]).sum()))
    path = tmp_path_factory.mktemp("sky") / "sample.fits"
    t.write(path)
    cat = RefCatalog(path.with_suffix(".sqlite"))
    cat.import_table(path)
    yield cat, t
    cat.close()


@pytest.mark.parametrize(
    ("ra0", "dec0", "radius"),
    [
        (0.0, 0.0, 1.0),
        (359.7, 0.5, 0.8),
        (0.2, -1.0, 1.5),
        (123.0, 45.0, 5.0),
        (20.0, 89.5, 1.0),
        (200.0, 88.0, 2.5),
        (0.0, 90.0, 0.5),
        (300.0, -60.0, 30.0),
        (10.0, 10.0, 180.0),
        (0.001, 0.001, 0.01),
        (-0.5, 0.0, 1.0),
        (719.5, 0.0, 1.0),
    ],
)
def test_cone_matches_brute_force(sky_sample, ra0: float, dec0: float, radius: float) -> None:
    cat, t = sky_sample
    got = cat.cone(ra0, dec0, radius)
    expected = brute_force(np.asarray(t["ra"]), np.asarray(t["dec"]), ra0, dec0, radius)
    assert len(got) == expected.sum()
    assert np.allclose(np.sort(got["ra_deg"]), np.sort(np.asarray(t["ra"])[expected] % 360))
    # Brightest first in V; stars without V follow, ranked by Gaia G.
    has_v = np.isfinite(got["mag"])
    first_missing = np.argmin(has_v) if not has_v.all() else len(got)
    assert has_v[:first_missing].all() and not has_v[first_missing:].any()
    assert np.all(np.diff(got["mag"][:first_missing]) >= 0)
    assert np.all(np.diff(got["mag_gaia_g"][first_missing:]) >= 0)


def test_cone_limits(sky_sample) -> None:
    cat, _ = sky_sample
    everything = cat.cone(0.0, 0.0, 2.0)
    bright = cat.cone(0.0, 0.0, 2.0, mag_limit=12.0)
    assert len(bright) > 0 and (bright["mag"] <= 12.0).all()
    assert len(bright) == int((everything["mag"] <= 12.0).sum())
    top = cat.cone(0.0, 0.0, 2.0, limit=25)
    assert np.array_equal(top["id"], everything["id"][:25])
    by_g = cat.cone(0.0, 0.0, 2.0, band="G")
    assert np.all(np.diff(by_g["mag"]) >= 0) and np.isfinite(by_g["mag"]).all()
    with pytest.raises(ValueError, match="unknown band"):
        cat.cone(0.0, 0.0, 1.0, band="X")
    with pytest.raises(ValueError, match="radius_deg"):
        cat.cone(0.0, 0.0, 0.0)


def test_pickles_by_path(tmp_path: Path) -> None:
    import pickle

    with RefCatalog(tmp_path / "catalog.sqlite") as cat:
        import_synthetic(
            cat, 10.0, 10.0, 0.1, seed=1, density_per_deg2=2000.0, mag_bright=8.0, mag_limit=17.0
        )
        with pickle.loads(pickle.dumps(cat)) as copy:
            assert copy.path == cat.path and len(copy) == len(cat)


def test_empty_catalog_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "catalog.sqlite"
    with RefCatalog(path) as cat:
        assert len(cat.cone(10.0, 10.0, 1.0)) == 0
        import_synthetic(
            cat, 10.0, 10.0, 0.2, seed=1, density_per_deg2=2000.0, mag_bright=8.0, mag_limit=17.0
        )
        n = len(cat)
    with RefCatalog(path) as cat:
        assert len(cat) == n > 0
        assert len(cat.cone(10.0, 10.0, 0.2)) == n


# ------------------------------------------------------------------------------- band names


@pytest.mark.parametrize(
    ("name", "band"),
    [
        ("V", "V"),
        ("B", "B"),
        ("Rc", "R"),
        ("Johnson V", "V"),
        ("Bessell-R", "R"),
        ("I", "I"),
        ("Ic", "I"),
        ("L", "L"),
        ("Lum", "L"),
        ("Luminance", "L"),
        ("Clear", "L"),
        ("Red", "R"),
        ("G", "V"),
        ("Green", "V"),
        ("Blue", "B"),
        ("r'", "r"),
        ("Sloan g", "g"),
        ("SDSS_i", "i"),
        ("Halpha", None),
        ("OIII", None),
        ("", None),
        (None, None),
    ],
)
def test_filter_band(name: str | None, band: str | None) -> None:
    assert filter_band(name) == band


def test_band_magnitudes_of_a_partial_table() -> None:
    stars = np.zeros(2, dtype=[("mag_v", "f8"), ("mag_r", "f8"), ("mag_v_err", "f8")])
    stars["mag_v"] = [10.0, 11.0]
    stars["mag_r"] = [9.0, np.nan]
    stars["mag_v_err"] = [0.03, 0.04]
    mag, err = band_magnitudes(stars, "L")
    assert mag[0] == 9.5 and np.isnan(mag[1])
    assert np.isnan(err).all()  # R has no errors
    mag, err = band_magnitudes(stars, "V")
    assert np.allclose(err, [0.03, 0.04])
    mag, _ = band_magnitudes(stars, "B")
    assert np.isnan(mag).all()


# ------------------------------------------------------------------------------------- CLI

CONFIG = """
[data]
directory = "{data}"
[simulator]
start = "never"
[simulator.sky]
seed = 99
star_density_per_deg2 = 1500
mag_limit = 17.0
"""


def test_cli_catalog_import_and_import_synthetic(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path, CONFIG.format(data=tmp_path / "data"))
    code = main(
        [
            "-c",
            str(config),
            "catalog",
            "import-synthetic",
            "--ra",
            "30",
            "--dec",
            "-10",
            "--radius",
            "0.3",
        ]
    )
    assert code == 0
    sim = synthetic_catalog(
        30.0, -10.0, 0.3, seed=99, density_per_deg2=1500.0, mag_bright=8.0, mag_limit=17.0
    )
    out = capsys.readouterr().out
    assert f"imported {len(sim)} stars" in out and "catalog.sqlite" in out

    table = tmp_path / "mine.csv"
    table.write_text("name,RA_deg,Dec_deg,Vmag\nx,31,-10,9\ny,31.01,-10,10\n")
    assert (
        main(
            [
                "-c",
                str(config),
                "catalog",
                "import",
                str(table),
                "--name",
                "mine",
                "--column",
                "ra_deg=RA_deg",
                "--column",
                "dec_deg=Dec_deg",
            ]
        )
        == 0
    )
    assert f"it now holds {len(sim) + 2} stars" in capsys.readouterr().out
    with RefCatalog(tmp_path / "data" / "catalog.sqlite") as cat:
        assert cat.catalogs() == {"synthetic": len(sim), "mine": 2}

    table.write_text("ra,Vmag\n1,2\n")
    assert main(["-c", str(config), "catalog", "import", str(table)]) == 2
    err = capsys.readouterr().err
    assert "mine.csv: missing column(s): declination" in err
    assert main(["-c", str(config), "catalog", "import", str(table), "--column", "bad"]) == 2
    assert "expected TABLE_COLUMN=FILE_COLUMN" in capsys.readouterr().err
