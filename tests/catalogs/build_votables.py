"""Build the replayed TAP answers in tests/data/catalogs/ (run from the checkout's root).

    python tests/catalogs/build_votables.py

Each file is what the service's ``/sync`` endpoint returns for a cone around the fields of
the tests (`FIELDS`): a VOTable 1.4 with ``RESOURCE type="results"``, ``INFO
name="QUERY_STATUS" value="OK"`` and one TABLE whose FIELDs carry the column names, types,
units and UCDs of the service's documentation:

- ``gaia_dr3.vot``: the Gaia archive's answer to `obsctl.catalogs.GaiaTap.query`
  (``gaiadr3.gaia_source`` columns; ``gaiadr3.synthetic_photometry_gspc`` ``*_mag``,
  ``*_flux`` [W.m**-2.nm**-1], ``*_flux_error``, ``*_flag``; ``pmra`` [mas.yr**-1]);
- ``apass_dr9.vot``: TAPVizieR's answer from ``II/336/apass9`` (``recno``, ``RAJ2000``,
  ``DEJ2000``, ``Bmag``, ``Vmag``, ``g'mag``, ``r'mag``, ``i'mag`` and ``e_`` errors);
- ``atlas_refcat2.vot``: TAPVizieR's answer from ``J/ApJ/867/105/refcat2`` (``RA_ICRS``,
  ``DE_ICRS``, ``pmRA``, ``pmDE``, ``Gmag``, ``gmag``... with ``e_`` errors);
- ``tap_error.vot``: a TAP error document (``QUERY_STATUS`` ``ERROR``).

The stars are the simulators' synthetic sky around each field (so that a rendered frame of
the field matches them), moved back from `FRAME_EPOCH` to the catalogue's epoch by a proper
motion drawn per star, plus a few stars written by hand (`PM_STAR` and friends) whose values
the tests state.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from astropy.io.votable.tree import Field as VoField
from astropy.io.votable.tree import Info, Resource, TableElement, VOTableFile
from astropy.time import Time

from obsctl.simulators.sky import synthetic_catalog

OUT = Path(__file__).resolve().parents[1] / "data" / "catalogs"

#: The tests' fields: (name, RA, Dec) in deg; the first is the rendered frame's.
FIELDS = (("Scene field", 150.0, 20.0), ("Second field", 30.0, 40.0))
#: Radius of the recorded cones (deg) and the synthetic sky they hold.
RADIUS_DEG = 0.07
SKY = {"seed": 1, "density_per_deg2": 10000.0, "mag_bright": 10.0, "mag_limit": 17.0}
#: DATE-OBS of the rendered frame, and its Julian epoch.
FRAME_DATE_OBS = "2026-11-25T22:00:00.000"
FRAME_EPOCH = float(Time(FRAME_DATE_OBS, scale="utc").jyear)
GAIA_EPOCH = 2016.0
ATLAS_EPOCH = 2015.5
#: Gaia G of the synthetic stars: V - 0.3 (a constant colour, so a G zero point is 0.3 mag
#: below the V one); BP - RP = 1.0.
G_MINUS_V = -0.3
#: A star with a known proper motion: (source_id, ra, dec, pmra, pmdec) at epoch J2016.0.
PM_STAR = (4_000_000_000_000_000_001, 150.02, 19.98, 500.0, -300.0)
#: A Gaia star without synthetic photometry: (source_id, ra, dec, G, BP, RP).
XP_LESS_STAR = (4_000_000_000_000_000_002, 150.03, 20.03, 12.5, 12.9, 12.0)
#: An APASS star: (recno, ra, dec, B, V, g', r', i').
APASS_STAR = (42_000_001, 150.01, 20.01, 13.111, 12.345, 12.701, 12.102, 11.903)
#: A RefCat2 star: (ra, dec, pmRA, pmDE, G, g, r, i, z).
ATLAS_STAR = (150.015, 20.015, -12.5, 40.25, 13.02, 13.61, 13.05, 12.84, 12.77)

# The synthetic-photometry bands recorded (the others of the query are left out of the files
# to keep them small: a missing column is a band the star does not have).
_GSPC = ("b_jkc", "v_jkc", "r_jkc", "i_jkc", "g_sdss")


def _votable(
    columns: list[tuple[str, str, str | None, str, np.ndarray]], status: str = "OK"
) -> VOTableFile:
    """A TAP answer: (name, datatype, unit, ucd, values) per column; NaN / -1 as NULL."""
    vot = VOTableFile(version="1.4")
    resource = Resource(type="results")
    vot.resources.append(resource)
    resource.infos.append(Info(name="QUERY_STATUS", value=status))
    table = TableElement(vot)
    resource.tables.append(table)
    for name, datatype, unit, ucd, _ in columns:
        kwargs = {"arraysize": "*"} if datatype == "char" else {}
        table.fields.append(
            VoField(vot, name=name, datatype=datatype, unit=unit, ucd=ucd, **kwargs)
        )
    n = len(columns[0][4])
    table.create_arrays(n)
    for name, datatype, _, _, values in columns:
        table.array[name] = values
        if datatype in ("double", "float"):
            table.array.mask[name] = ~np.isfinite(values.astype(float))
        elif datatype == "short":
            table.array.mask[name] = values < 0
    return vot


def _moved_back(ra, dec, pmra, pmdec, from_epoch, to_epoch):
    dt = to_epoch - from_epoch
    return ra - pmra * dt / 3.6e6 / np.cos(np.radians(dec)), dec - pmdec * dt / 3.6e6


def gaia() -> VOTableFile:
    rng = np.random.default_rng(23)
    rows: dict[str, list[np.ndarray]] = {}
    for _, ra0, dec0 in FIELDS:
        cat = synthetic_catalog(ra0, dec0, RADIUS_DEG, **SKY)
        n = len(cat)
        pmra = rng.normal(0.0, 100.0, n)
        pmdec = rng.normal(0.0, 100.0, n)
        ra, dec = _moved_back(cat.ra_deg, cat.dec_deg, pmra, pmdec, GAIA_EPOCH, FRAME_EPOCH)
        g = cat.mag_v + G_MINUS_V
        block = {
            "source_id": 3_000_000_000_000_000_000 + cat.id,
            "ra": ra % 360.0, "dec": dec, "pmra": pmra, "pmdec": pmdec,
            "ref_epoch": np.full(n, GAIA_EPOCH),
            "phot_g_mean_mag": g, "phot_bp_mean_mag": g + 0.4, "phot_rp_mean_mag": g - 0.6,
            # S/N 100: G errors equal to the synthetic V ones (1 % in flux), so that a zero
            # point fitted in G weighs the stars as one fitted in V.
            "phot_g_mean_flux_over_error": np.full(n, 100.0),
            "phot_bp_mean_flux_over_error": np.full(n, 100.0),
            "phot_rp_mean_flux_over_error": np.full(n, 100.0),
        }  # fmt: skip
        mags = {"b_jkc": cat.mag_b, "v_jkc": cat.mag_v, "r_jkc": cat.mag_r, "i_jkc": cat.mag_i}
        for prefix in _GSPC:
            mag = mags.get(prefix, np.full(n, np.nan))
            flux = np.where(np.isfinite(mag), 10 ** (-0.4 * (mag + 21.1)), np.nan)
            block[f"{prefix}_mag"] = mag
            block[f"{prefix}_flux"] = flux
            block[f"{prefix}_flux_error"] = flux * 0.01  # 0.01086 mag
            block[f"{prefix}_flag"] = np.where(np.isfinite(mag), 1, -1).astype(np.int16)
        for key, value in block.items():
            rows.setdefault(key, []).append(np.asarray(value))
    # The hand-written stars.
    sid, ra, dec, pmra, pmdec = PM_STAR
    extra = {"source_id": sid, "ra": ra, "dec": dec, "pmra": pmra, "pmdec": pmdec,
             "ref_epoch": GAIA_EPOCH, "phot_g_mean_mag": 11.0, "phot_bp_mean_mag": 11.4,
             "phot_rp_mean_mag": 10.4}  # fmt: skip
    sid2, ra2, dec2, g2, bp2, rp2 = XP_LESS_STAR
    extra2 = {"source_id": sid2, "ra": ra2, "dec": dec2, "pmra": math.nan, "pmdec": math.nan,
              "ref_epoch": GAIA_EPOCH, "phot_g_mean_mag": g2, "phot_bp_mean_mag": bp2,
              "phot_rp_mean_mag": rp2}  # fmt: skip
    for star in (extra, extra2):
        for key in rows:
            default = (
                -1 if key.endswith("_flag") else (100.0 if key.endswith("over_error") else math.nan)
            )
            rows[key].append(np.array([star.get(key, default)]))
    rows["v_jkc_mag"][-2] = np.array([11.3])  # the pm star has a synthetic V
    rows["v_jkc_flag"][-2] = np.array([1], dtype=np.int16)
    rows["v_jkc_flux"][-2] = np.array([10 ** (-0.4 * (11.3 + 21.1))])
    rows["v_jkc_flux_error"][-2] = rows["v_jkc_flux"][-2] * 0.01
    values = {k: np.concatenate(v) for k, v in rows.items()}
    units = {"ra": "deg", "dec": "deg", "pmra": "mas.yr**-1", "pmdec": "mas.yr**-1",
             "ref_epoch": "yr"}  # fmt: skip
    ucds = {
        "source_id": "meta.id;meta.main", "ra": "pos.eq.ra;meta.main",
        "dec": "pos.eq.dec;meta.main", "pmra": "pos.pm;pos.eq.ra", "pmdec": "pos.pm;pos.eq.dec",
        "ref_epoch": "meta.ref;time.epoch", "phot_g_mean_mag": "phot.mag;em.opt",
        "phot_bp_mean_mag": "phot.mag;em.opt.B", "phot_rp_mean_mag": "phot.mag;em.opt.R",
    }  # fmt: skip
    columns = []
    for key, value in values.items():
        if key == "source_id":
            datatype = "long"
        elif key.endswith("_flag"):
            datatype = "short"
        elif key in ("ra", "dec", "pmra", "pmdec", "ref_epoch"):
            datatype = "double"
        else:
            datatype = "float"
        unit = units.get(key)
        if key.endswith("_mag"):
            unit = "mag"
        elif key.endswith(("_flux", "_flux_error")):
            unit = "W.m**-2.nm**-1"
        ucd = ucds.get(key, "stat.snr" if key.endswith("over_error") else
                       "stat.error;phot.flux" if key.endswith("_error") else
                       "meta.code.qual" if key.endswith("_flag") else
                       "phot.flux" if key.endswith("_flux") else "phot.mag")  # fmt: skip
        columns.append((key, datatype, unit, ucd, value))
    return _votable(columns)


def apass() -> VOTableFile:
    rng = np.random.default_rng(24)
    cat = synthetic_catalog(*FIELDS[0][1:], RADIUS_DEG, **SKY)
    n = len(cat)
    recno, ra, dec, b, v, g, r, i = APASS_STAR
    err = np.round(rng.uniform(0.01, 0.08, n), 3)
    values = {
        "recno": np.r_[np.arange(1, n + 1) + 10_000_000, recno].astype(np.int32),
        "RAJ2000": np.r_[cat.ra_deg, ra], "DEJ2000": np.r_[cat.dec_deg, dec],
        "Bmag": np.r_[cat.mag_b, b], "e_Bmag": np.r_[err, 0.021],
        "Vmag": np.r_[cat.mag_v, v], "e_Vmag": np.r_[err, 0.012],
        "g'mag": np.r_[cat.mag_v + 0.35, g], "e_g'mag": np.r_[err, 0.015],
        "r'mag": np.r_[cat.mag_v - 0.2, r], "e_r'mag": np.r_[err, 0.018],
        "i'mag": np.r_[cat.mag_v - 0.4, i], "e_i'mag": np.r_[err, 0.031],
    }  # fmt: skip
    ucds = {"recno": "meta.record", "RAJ2000": "pos.eq.ra;meta.main",
            "DEJ2000": "pos.eq.dec;meta.main"}  # fmt: skip
    columns = []
    for key, value in values.items():
        datatype = "int" if key == "recno" else "double" if key.endswith("2000") else "float"
        unit = None if key == "recno" else "deg" if key.endswith("2000") else "mag"
        ucd = ucds.get(key, "stat.error;phot.mag" if key.startswith("e_") else "phot.mag")
        columns.append((key, datatype, unit, ucd, value))
    return _votable(columns)


def atlas() -> VOTableFile:
    rng = np.random.default_rng(25)
    cat = synthetic_catalog(*FIELDS[0][1:], RADIUS_DEG, **SKY)
    n = len(cat)
    pmra, pmdec = rng.normal(0, 20, n), rng.normal(0, 20, n)
    ra, dec = _moved_back(cat.ra_deg, cat.dec_deg, pmra, pmdec, ATLAS_EPOCH, FRAME_EPOCH)
    s_ra, s_dec, s_pmra, s_pmdec, s_g, s_gg, s_r, s_i, s_z = ATLAS_STAR
    values = {
        "RA_ICRS": np.r_[ra, s_ra], "DE_ICRS": np.r_[dec, s_dec],
        "pmRA": np.r_[pmra, s_pmra], "pmDE": np.r_[pmdec, s_pmdec],
        "Gmag": np.r_[cat.mag_v - 0.3, s_g], "e_Gmag": np.r_[np.full(n, 0.001), 0.001],
        "gmag": np.r_[cat.mag_v + 0.35, s_gg], "e_gmag": np.r_[np.full(n, 0.01), 0.011],
        "rmag": np.r_[cat.mag_v - 0.2, s_r], "e_rmag": np.r_[np.full(n, 0.01), 0.012],
        "imag": np.r_[cat.mag_v - 0.4, s_i], "e_imag": np.r_[np.full(n, 0.01), 0.013],
        "zmag": np.r_[cat.mag_v - 0.5, s_z], "e_zmag": np.r_[np.full(n, 0.02), 0.021],
    }  # fmt: skip
    columns = []
    for key, value in values.items():
        axis = "ra" if key in ("RA_ICRS", "pmRA") else "dec"
        if key in ("RA_ICRS", "DE_ICRS"):
            columns.append((key, "double", "deg", f"pos.eq.{axis};meta.main", value))
        elif key.startswith("pm"):
            columns.append((key, "double", "mas/yr", f"pos.pm;pos.eq.{axis}", value))
        else:
            ucd = "stat.error;phot.mag" if key.startswith("e_") else "phot.mag"
            columns.append((key, "float", "mag", ucd, value))
    return _votable(columns)


def tap_error() -> VOTableFile:
    vot = VOTableFile(version="1.4")
    resource = Resource(type="results")
    vot.resources.append(resource)
    info = Info(name="QUERY_STATUS", value="ERROR")
    info.content = "Cannot parse query: table gaiadr3.gaia_sourc does not exist"
    resource.infos.append(info)
    return vot


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in (("gaia_dr3", gaia), ("apass_dr9", apass), ("atlas_refcat2", atlas),
                        ("tap_error", tap_error)):  # fmt: skip
        path = OUT / f"{name}.vot"
        build().to_xml(str(path))
        print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
