"""The local reference-star catalog: an indexed SQLite table of positions and magnitudes.

The pipeline never downloads anything: astrometry and the zero point read reference stars from
``<data>/catalog.sqlite``. A user fills it with `RefCatalog.import_table` from an extract made
elsewhere (a Gaia, APASS or other download as CSV, ECSV, FITS or VOTable), and the simulators'
synthetic sky goes in the same way (`obsctl.simulators.sky.import_synthetic`), so everything
works offline. `obsctl.catalogs` fills it from TAP services ahead of the night, with the
stars' proper motions (applied to a frame's epoch by `RefCatalog.cone`) and a record of the
cones fetched (``refcat_cones``), so that a field is fetched once.

One table, ``refstars``, holds one row per star. Magnitudes are NULL where a catalog has no
such band; Johnson-Cousins, SDSS and Gaia bands are kept apart because they differ by tenths
of a magnitude. Rows carry a sky cell (a declination zone a quarter of a degree high, split in
right ascension into cells at least as wide on the sky), indexed. Cone searches read a second table,
``refstars_tiles``, which holds each cell's stars as one packed numpy record array, rebuilt
from ``refstars`` whenever an import touches the cell: fetching rows one by one through
``sqlite3`` costs microseconds per star, a 1-degree cone of a deep catalog holds tens of
thousands, and the pipeline queries one per frame.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from obsctl.errors import ConfigError, StorageError

__all__ = [
    "BANDS",
    "COLOUR_INDEX",
    "MAG_COLUMNS",
    "MOTION_COLUMNS",
    "REFSTAR_DTYPE",
    "RefCatalog",
    "band_colour",
    "band_magnitudes",
    "filter_band",
    "propagate",
    "reference_band",
]

log = logging.getLogger(__name__)

#: Magnitude columns of ``refstars`` (mag), each with a ``<column>_err`` (mag) beside it.
MAG_COLUMNS: tuple[str, ...] = (
    "mag_u",
    "mag_b",
    "mag_v",
    "mag_r",
    "mag_i",
    "mag_sdss_u",
    "mag_sdss_g",
    "mag_sdss_r",
    "mag_sdss_i",
    "mag_sdss_z",
    "mag_gaia_g",
    "mag_gaia_bp",
    "mag_gaia_rp",
)

#: Band names accepted by `band_magnitudes` and `RefCatalog.cone`, and their columns. ``L``
#: (a clear or luminance filter) is the mean of V and R, as in the simulator.
BANDS: dict[str, tuple[str, ...]] = {
    "U": ("mag_u",),
    "B": ("mag_b",),
    "V": ("mag_v",),
    "R": ("mag_r",),
    "I": ("mag_i",),
    "L": ("mag_v", "mag_r"),
    "u": ("mag_sdss_u",),
    "g": ("mag_sdss_g",),
    "r": ("mag_sdss_r",),
    "i": ("mag_sdss_i",),
    "z": ("mag_sdss_z",),
    "G": ("mag_gaia_g",),
    "BP": ("mag_gaia_bp",),
    "RP": ("mag_gaia_rp",),
}

#: The colour index a band's colour term is taken against (the standard choices: B-V for B
#: and V, V-R for R, R-I for I, V-I for a clear filter reaching far into the red, g-r for
#: SDSS g and r, BP-RP for Gaia), as ``(blue column, red column)``.
COLOUR_INDEX: dict[str, tuple[str, str]] = {
    "U": ("mag_u", "mag_b"),
    "B": ("mag_b", "mag_v"),
    "V": ("mag_b", "mag_v"),
    "R": ("mag_v", "mag_r"),
    "I": ("mag_r", "mag_i"),
    "L": ("mag_v", "mag_i"),
    "u": ("mag_sdss_u", "mag_sdss_g"),
    "g": ("mag_sdss_g", "mag_sdss_r"),
    "r": ("mag_sdss_g", "mag_sdss_r"),
    "i": ("mag_sdss_r", "mag_sdss_i"),
    "z": ("mag_sdss_i", "mag_sdss_z"),
    "G": ("mag_gaia_bp", "mag_gaia_rp"),
    "BP": ("mag_gaia_bp", "mag_gaia_rp"),
    "RP": ("mag_gaia_bp", "mag_gaia_rp"),
}


# The band a single magnitude column holds (the inverse of `BANDS` without "L").
_COLUMN_BAND = {columns[0]: band for band, columns in BANDS.items() if len(columns) == 1}


def band_colour(stars: NDArray[Any], band: str | None) -> tuple[NDArray[np.float64], str] | None:
    """Return the colour index a band is calibrated against, and its name (``"V-R"``).

    Parameters
    ----------
    stars : numpy.ndarray
        Reference stars with some of the `MAG_COLUMNS`.
    band : str or None
        A key of `BANDS`; None or a band whose colour columns are missing falls back to B-V
        when the stars have it.

    Returns
    -------
    tuple or None
        The colour (mag, NaN where unknown) and its name; None without the columns.
    """
    names = stars.dtype.names or ()
    for blue, red in (COLOUR_INDEX.get(band or "", ("", "")), ("mag_b", "mag_v")):
        if blue in names and red in names:
            colour = np.asarray(stars[blue], dtype=np.float64) - stars[red]
            return colour, f"{_COLUMN_BAND[blue]}-{_COLUMN_BAND[red]}"
    return None


#: Proper-motion columns of ``refstars``: ``pmra_mas_yr`` is mu_alpha* (the RA rate times
#: cos Dec) and ``epoch_yr`` the Julian epoch of the stored position; NULL when unknown.
MOTION_COLUMNS: tuple[str, ...] = ("pmra_mas_yr", "pmdec_mas_yr", "epoch_yr")

_TILE_DTYPE = np.dtype(
    [
        ("id", "<i8"),
        ("catalog", "S32"),
        ("source_id", "S40"),
        ("ra_deg", "<f8"),
        ("dec_deg", "<f8"),
        *[(c, "<f4" if c != "epoch_yr" else "<f8") for c in MOTION_COLUMNS],
        *[(c, "<f4") for c in MAG_COLUMNS],
        *[(c + "_err", "<f4") for c in MAG_COLUMNS],
    ]
)
"""Layout of a packed cell in ``refstars_tiles`` (explicit little-endian: files move).
Magnitudes as float32 (1e-6 mag) keep the rows short; positions stay float64."""

REFSTAR_DTYPE = np.dtype(
    [
        ("id", np.int64),
        ("catalog", "S32"),
        ("source_id", "S40"),
        ("ra_deg", np.float64),
        ("dec_deg", np.float64),
        *[(c, np.float64) for c in MOTION_COLUMNS],
        *[(c, np.float64) for c in MAG_COLUMNS],
        *[(c + "_err", np.float64) for c in MAG_COLUMNS],
        ("mag", np.float64),
        ("mag_err", np.float64),
    ]
)
"""Row type returned by `RefCatalog.cone`: table columns (NULL as NaN) plus ``mag`` and
``mag_err``, the magnitude in the requested band. Positions are at the epoch asked for when
the star has a proper motion, else at the catalogue's. ``catalog`` and ``source_id`` are ASCII
bytes (``.astype(str)`` gives text): decoding every row would double the query time."""

# Sky cells of the cone index: zones this high in declination, cut in RA into cells at least
# this wide on the sky. A 1-degree cone reads about a hundred cells in a dozen range scans.
_ZONE_DEG = 0.25
_N_ZONES = round(180.0 / _ZONE_DEG)
# Version 2 added proper motions, U/u/z magnitudes and the record of fetched cones.
_SCHEMA_VERSION = 2
_V2_COLUMNS = (
    *MOTION_COLUMNS,
    *(f"{c}{e}" for c in ("mag_u", "mag_sdss_u", "mag_sdss_z") for e in ("", "_err")),
)
# Two cones are the same fetch when their centres and radii agree this closely (deg).
_CONE_TOLERANCE_DEG = 1e-6
# Stars with none of the requested band's magnitudes sort after all others, in this order of
# stand-ins: a brightness ranking only needs to be roughly right for matching.
_SORT_FALLBACK = ("mag_v", "mag_gaia_g", "mag_r", "mag_sdss_r", "mag_b", "mag_i", "mag_sdss_g")

# Recognised input column names. Matching is exact first, then case-insensitive for names
# whose lower-case form is unambiguous ("rmag" could be Cousins R or SDSS r: exact only).
_ALIASES: dict[str, tuple[str, ...]] = {
    "ra_deg": ("ra", "ra_deg", "RAJ2000", "_RAJ2000", "RA_ICRS", "RAdeg", "ra_j2000",
               "ALPHA_J2000", "raMean"),
    "dec_deg": ("dec", "dec_deg", "DE", "DEJ2000", "_DEJ2000", "DE_ICRS", "DEC_ICRS", "DEdeg",
                "DECdeg", "dec_j2000", "DELTA_J2000", "decMean"),
    "source_id": ("source_id", "id", "source", "designation", "recno", "name", "objid",
                  "objectid", "star_id", "seqno", "hip", "tyc", "ucac4"),
    "mag_u": ("U", "Umag", "U_mag", "mag_u", "johnson_u"),
    "mag_sdss_u": ("u", "umag", "u_mag", "u'mag", "upmag", "mag_sdss_u", "sdss_u", "u_sdss"),
    "mag_sdss_z": ("z", "zmag", "z_mag", "z'mag", "zpmag", "mag_sdss_z", "sdss_z", "z_sdss"),
    "mag_b": ("B", "Bmag", "B_mag", "mag_b", "bmag", "johnson_b", "Johnson_B", "Johnson_B (B)"),
    "mag_v": ("V", "Vmag", "V_mag", "mag_v", "vmag", "johnson_v", "Johnson_V", "Johnson_V (V)"),
    "mag_r": ("R", "Rmag", "R_mag", "mag_r", "Rcmag", "Rc", "cousins_r", "RCmag"),
    "mag_i": ("I", "Imag", "I_mag", "mag_i", "Icmag", "Ic", "cousins_i", "ICmag"),
    "mag_sdss_g": ("g", "gmag", "g_mag", "g'mag", "gpmag", "mag_sdss_g", "sdss_g", "sloan_g",
                   "Sloan_g", "SG", "Sloan_g (SG)", "g_sdss"),
    "mag_sdss_r": ("r", "rmag", "r_mag", "r'mag", "rpmag", "mag_sdss_r", "sdss_r", "sloan_r",
                   "Sloan_r", "SR", "Sloan_r (SR)", "r_sdss"),
    "mag_sdss_i": ("i", "imag", "i_mag", "i'mag", "ipmag", "mag_sdss_i", "sdss_i", "sloan_i",
                   "Sloan_i", "SI", "Sloan_i (SI)", "i_sdss"),
    "mag_gaia_g": ("phot_g_mean_mag", "Gmag", "G_mag", "mag_gaia_g", "gaia_g", "G"),
    "mag_gaia_bp": ("phot_bp_mean_mag", "BPmag", "BP_mag", "mag_gaia_bp", "gaia_bp", "BP"),
    "mag_gaia_rp": ("phot_rp_mean_mag", "RPmag", "RP_mag", "mag_gaia_rp", "gaia_rp", "RP"),
}  # fmt: skip
_ERROR_PATTERNS = ("e_{}", "{}_err", "err_{}", "{}_error", "{}err", "e{}", "sigma_{}", "{}_sigma")
# Error columns APASS's own exports use, beside "Johnson_V (V)" and friends.
_EXTRA_ERRORS: dict[str, tuple[str, ...]] = {
    "mag_b": ("Berr", "B_err", "e_B"),
    "mag_v": ("Verr", "V_err", "e_V"),
    "mag_sdss_g": ("SGerr",),
    "mag_sdss_r": ("SRerr",),
    "mag_sdss_i": ("SIerr",),
}
# Gaia gives flux signal-to-noise, not magnitude errors: sigma_mag = 2.5 / ln(10) / (S/N).
_GAIA_SNR = {
    "mag_gaia_g": "phot_g_mean_flux_over_error",
    "mag_gaia_bp": "phot_bp_mean_flux_over_error",
    "mag_gaia_rp": "phot_rp_mean_flux_over_error",
}
_MAG_PER_SNR = 2.5 / math.log(10.0)

_FORMATS = {
    ".csv": "ascii.csv",
    ".ecsv": "ascii.ecsv",
    ".tsv": "ascii.tab",
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".fits.gz": "fits",
    ".vot": "votable",
    ".xml": "votable",
}

_COLUMNS_SQL = ", ".join(_TILE_DTYPE.names or ())


def filter_band(filter_name: str | None) -> str | None:
    """Return the catalog band for a filter name, or None when there is no sensible one.

    Parameters
    ----------
    filter_name : str or None
        The header's ``FILTER`` value: ``"B"``, ``"V"``, ``"R"``/``"Rc"``, ``"I"``/``"Ic"``
        (with or without a Johnson, Bessell or Cousins prefix); ``"L"``, ``"Lum"``,
        ``"Clear"`` (luminance); the RGB colour filters ``"Red"``, ``"Green"``/``"G"``,
        ``"Blue"``; SDSS filters when primed or prefixed (``"r'"``, ``"Sloan r"``).

    Returns
    -------
    str or None
        A key of `BANDS`. A green RGB filter maps to V, the nearest standard band.
    """
    if filter_name is None:
        return None
    key = re.sub(r"[\s_\-]+", "", filter_name.strip()).lower()
    sdss = re.fullmatch(r"(sloan|sdss)?([ugriz])(')?", key)
    if sdss and (sdss.group(1) or sdss.group(3)):
        return sdss.group(2)
    key = re.sub(r"^(johnson|bessell|bessel|cousins)(?=.)", "", key)
    return _FILTER_BANDS.get(key)


def reference_band(filter_name: str | None, bands: Mapping[str, str]) -> str | None:
    """Return the catalogue band a filter is calibrated in, None when there is none.

    Parameters
    ----------
    filter_name : str or None
        The frame's ``FILTER``.
    bands : mapping
        The config's ``[catalogs] bands``: filter name (exactly as in the header) to a key
        of `BANDS`; it wins over the built-in names.
    """
    if filter_name is None:
        return None
    mapped = bands.get(filter_name.strip())
    if mapped is not None and mapped in BANDS:
        return mapped
    return filter_band(filter_name)


_FILTER_BANDS = {
    "u": "U",
    "b": "B",
    "blue": "B",
    "v": "V",
    "g": "V",
    "green": "V",
    "r": "R",
    "rc": "R",
    "red": "R",
    "i": "I",
    "ic": "I",
    "l": "L",
    "lum": "L",
    "luminance": "L",
    "clear": "L",
    "c": "L",
    "clr": "L",
    "none": "L",
}


def band_magnitudes(
    stars: NDArray[Any], band: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return magnitudes and their errors in one band.

    Parameters
    ----------
    stars : numpy.ndarray
        A structured array with some of the `MAG_COLUMNS` (and optionally their ``_err``
        columns), such as `RefCatalog.cone` returns.
    band : str
        A key of `BANDS`, or a column name such as ``"mag_v"``.

    Returns
    -------
    mag, mag_err : numpy.ndarray of float64
        Magnitude (mag) and its error (mag), NaN where unknown. ``L`` is the mean of V and R
        with the errors combined in quadrature.

    Raises
    ------
    ValueError
        For an unknown band.
    """
    columns = _band_columns(band)
    names = stars.dtype.names or ()
    index = np.arange(len(stars))
    return _band_values(stars, index, columns, names)


def _band_values(
    stars: NDArray[Any], index: NDArray[np.intp], columns: tuple[str, ...], names: Sequence[str]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Band magnitudes of ``stars[index]``, reading only the needed fields."""
    n = len(index)
    mags = [
        stars[c][index].astype(np.float64) if c in names else np.full(n, np.nan) for c in columns
    ]
    errs = [
        stars[c + "_err"][index].astype(np.float64) if c + "_err" in names else np.full(n, np.nan)
        for c in columns
    ]
    mag = np.mean(mags, axis=0) if len(mags) > 1 else mags[0]
    err = np.sqrt(np.sum(np.square(errs), axis=0)) / len(columns)
    return mag, err


def _band_columns(band: str) -> tuple[str, ...]:
    if band in BANDS:
        return BANDS[band]
    if band in MAG_COLUMNS:
        return (band,)
    raise ValueError(f"unknown band {band!r}; expected one of {', '.join(BANDS)} or a column")


@dataclass(frozen=True)
class _Mapping:
    """Which input column feeds which table column."""

    ra: str
    dec: str
    source_id: str | None
    mags: dict[str, str]
    errors: dict[str, str]
    snr: dict[str, str]


class RefCatalog:
    """An SQLite file of reference stars.

    Parameters
    ----------
    path : str or pathlib.Path
        The database file; created (with its folder) when missing.

    Raises
    ------
    StorageError
        When the file cannot be opened or is not a reference catalog.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One connection, used by one stage at a time, possibly from a worker thread.
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._create()
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"{self.path}: cannot open reference catalog: {exc}") from exc

    def _create(self) -> None:
        mags = ",\n".join(f"    {c} REAL,\n    {c}_err REAL" for c in MAG_COLUMNS)
        with self._db:
            self._db.executescript(
                f"""
                CREATE TABLE IF NOT EXISTS refstars (
                    id INTEGER PRIMARY KEY,
                    catalog TEXT NOT NULL,
                    source_id TEXT NOT NULL,
                    ra_deg REAL NOT NULL,
                    dec_deg REAL NOT NULL,
                    zone INTEGER NOT NULL,
                    cell INTEGER NOT NULL,
                    pmra_mas_yr REAL,
                    pmdec_mas_yr REAL,
                    epoch_yr REAL,
                {mags}
                );
                CREATE INDEX IF NOT EXISTS refstars_cell ON refstars (zone, cell, ra_deg);
                CREATE UNIQUE INDEX IF NOT EXISTS refstars_source
                    ON refstars (catalog, source_id);
                CREATE TABLE IF NOT EXISTS refstars_tiles (
                    zone INTEGER NOT NULL,
                    cell INTEGER NOT NULL,
                    n INTEGER NOT NULL,
                    data BLOB NOT NULL,
                    PRIMARY KEY (zone, cell)
                ) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS refcat_cones (
                    id INTEGER PRIMARY KEY,
                    provider TEXT NOT NULL,
                    ra_deg REAL NOT NULL,
                    dec_deg REAL NOT NULL,
                    radius_deg REAL NOT NULL,
                    mag_limit REAL NOT NULL,
                    n_stars INTEGER NOT NULL,
                    fetched_utc TEXT NOT NULL
                );
                """
            )
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            elif version == 1:
                self._migrate_v1()
            elif version != _SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path}: reference catalog schema {version}, expected {_SCHEMA_VERSION}"
                )

    def _migrate_v1(self) -> None:
        """Add version 2's columns to a version-1 file and re-pack every cell (in a transaction)."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(refstars)")}
        for column in _V2_COLUMNS:
            if column not in have:
                self._db.execute(f"ALTER TABLE refstars ADD COLUMN {column} REAL")
        # Every packed cell has the old layout: all are re-packed.
        self._db.execute("DELETE FROM refstars_tiles")
        cells = self._db.execute("SELECT DISTINCT zone, cell FROM refstars").fetchall()
        self._rebuild_tiles(cells)
        self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        log.info("%s: reference catalog migrated to schema %d", self.path, _SCHEMA_VERSION)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __reduce__(self) -> tuple[type[RefCatalog], tuple[Path]]:
        # A process pool gets the path and opens its own connection.
        return (RefCatalog, (self.path,))

    def __enter__(self) -> RefCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM refstars").fetchone()[0])

    def catalogs(self) -> dict[str, int]:
        """Return the number of stars per imported catalog name."""
        rows = self._db.execute("SELECT catalog, COUNT(*) FROM refstars GROUP BY catalog")
        return {str(name): int(n) for name, n in rows}

    # ------------------------------------------------------------------------------ import

    def import_table(
        self,
        path: str | Path,
        *,
        catalog: str | None = None,
        columns: Mapping[str, str] | None = None,
        format: str | None = None,
    ) -> int:
        """Load a user's catalog extract.

        Parameters
        ----------
        path : str or pathlib.Path
            CSV, ECSV, FITS table, VOTable or anything ``astropy.table.Table.read`` reads.
        catalog : str, optional
            Name stored with every row (default: the file name without extension). Rows of
            the same catalog and source id replace earlier ones, so re-importing is safe.
        columns : mapping, optional
            Explicit ``{table column: input column}`` choices (``"ra_deg"``, ``"dec_deg"``,
            ``"source_id"``, a `MAG_COLUMNS` name or its ``_err``), overriding the automatic
            recognition of common names (``ra``/``RAJ2000``/``ra_deg``, ``dec``/``DEJ2000``,
            Gaia ``phot_g_mean_mag``, APASS ``Vmag``/``Bmag``/``r_mag``, ``B``, ``V``, ...).
            Positions are degrees; sexagesimal text is read as hours (RA) and degrees (Dec).
        format : str, optional
            An astropy table format, when the file extension does not tell.

        Returns
        -------
        int
            Number of stars stored.

        Raises
        ------
        ConfigError
            When the file cannot be read, lacks position or magnitude columns (naming the
            file and the names looked for), or holds positions out of range.
        """
        from astropy.table import Table

        file = Path(path)
        fmt = format or _guess_format(file)
        try:
            table = Table.read(file, format=fmt) if fmt else Table.read(file)
        except FileNotFoundError as exc:
            raise ConfigError(f"{file}: no such file", path=str(file)) from exc
        except Exception as exc:  # astropy raises many types for unreadable input
            raise ConfigError(f"{file}: cannot read table: {exc}", path=str(file)) from exc
        mapping = _map_columns(file, list(table.colnames), columns or {})
        ra = _degrees(file, table[mapping.ra], hours=True, what="RA")
        dec = _degrees(file, table[mapping.dec], hours=False, what="Dec")
        if mapping.source_id is not None:
            ids = np.array([str(v).strip() for v in _filled(table[mapping.source_id], "")])
        else:
            ids = np.array([str(i) for i in range(len(table))])
        mags = {c: _floats(table[name]) for c, name in mapping.mags.items()}
        errs = {c: _floats(table[name]) for c, name in mapping.errors.items()}
        for c, name in mapping.snr.items():
            if c not in errs:
                with np.errstate(divide="ignore", invalid="ignore"):
                    errs[c] = np.where(
                        _floats(table[name]) > 0, _MAG_PER_SNR / _floats(table[name]), np.nan
                    )
        name = catalog or file.name.split(".")[0]
        n = self.insert_stars(name, ids, ra, dec, mags, errs, where=str(file))
        log.info("imported %d stars from %s as catalog %r", n, file, name)
        return n

    def insert_stars(
        self,
        catalog: str,
        source_ids: NDArray[Any],
        ra_deg: NDArray[np.float64],
        dec_deg: NDArray[np.float64],
        mags: Mapping[str, NDArray[np.float64]],
        errors: Mapping[str, NDArray[np.float64]],
        *,
        where: str,
        motion: Mapping[str, NDArray[np.float64]] | None = None,
    ) -> int:
        """Store stars, replacing earlier rows of the same catalog and source id.

        ``mags`` and ``errors`` (mag) are keyed by column (``mag_v``, see `MAG_COLUMNS`);
        ``motion`` by `MOTION_COLUMNS` (proper motions in mas/yr, the positions' Julian
        epoch). Stars without a finite position are left out, and ``where`` names their
        source in errors. Returns the number stored; raises `ConfigError` for a declination
        outside [-90, 90] deg and `StorageError` when the database cannot be written.
        """
        ok = np.isfinite(ra_deg) & np.isfinite(dec_deg)
        if np.any(ok & ((dec_deg < -90.0) | (dec_deg > 90.0))):
            raise ConfigError(f"{where}: declinations outside [-90, 90] deg", path=where)
        ids = np.asarray(source_ids)[ok].astype(str)
        ra = np.mod(ra_deg[ok], 360.0)
        dec = dec_deg[ok]
        zone, cell = _cells_of(ra, dec)
        values: list[list[Any]] = [ids.tolist(), ra.tolist(), dec.tolist(), zone.tolist()]
        values.append(cell.tolist())
        names = ["source_id", "ra_deg", "dec_deg", "zone", "cell"]
        for c in MOTION_COLUMNS:
            if motion is not None and c in motion:
                names.append(c)
                values.append(_nullable(np.asarray(motion[c], dtype=np.float64)[ok]))
        for c in MAG_COLUMNS:
            for col, source in ((c, mags), (c + "_err", errors)):
                if c in source:
                    names.append(col)
                    values.append(_nullable(np.asarray(source[c], dtype=np.float64)[ok]))
        sql = (
            f"INSERT OR REPLACE INTO refstars (catalog, {', '.join(names)}) "
            f"VALUES (?, {', '.join('?' * len(names))})"
        )
        dirty = set(zip(zone.tolist(), cell.tolist(), strict=True))
        try:
            with self._db:
                # Re-imported stars may have moved cell: their old cells need rebuilding too.
                self._db.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS incoming (source_id TEXT PRIMARY KEY)"
                )
                self._db.execute("DELETE FROM incoming")
                self._db.executemany(
                    "INSERT OR IGNORE INTO incoming VALUES (?)", ((i,) for i in values[0])
                )
                dirty.update(
                    self._db.execute(
                        "SELECT DISTINCT r.zone, r.cell FROM refstars AS r "
                        "JOIN incoming AS i ON r.source_id = i.source_id WHERE r.catalog = ?",
                        (catalog,),
                    ).fetchall()
                )
                self._db.executemany(sql, ((catalog, *row) for row in zip(*values, strict=True)))
                self._rebuild_tiles(dirty)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot store reference stars: {exc}") from exc
        return int(ok.sum())

    def _rebuild_tiles(self, cells: Iterable[tuple[int, int]]) -> None:
        """Re-pack the given cells from ``refstars``, in one pass (inside a transaction)."""
        db = self._db
        db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS dirty (zone INTEGER, cell INTEGER, "
            "PRIMARY KEY (zone, cell)) WITHOUT ROWID"
        )
        db.execute("DELETE FROM dirty")
        db.executemany("INSERT OR IGNORE INTO dirty VALUES (?, ?)", cells)
        db.execute(
            "DELETE FROM refstars_tiles WHERE EXISTS (SELECT 1 FROM dirty AS d "
            "WHERE d.zone = refstars_tiles.zone AND d.cell = refstars_tiles.cell)"
        )
        columns = ", ".join(f"r.{c}" for c in _TILE_DTYPE.names or ())
        rows = db.execute(
            f"SELECT r.zone, r.cell, {columns} FROM dirty AS d JOIN refstars AS r "
            "ON r.zone = d.zone AND r.cell = d.cell ORDER BY r.zone, r.cell, r.id"
        ).fetchall()
        if not rows:
            return
        keys = np.array([(z, c) for z, c, *_ in rows], dtype=np.int64)
        tiles = _pack([row[2:] for row in rows])
        starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
        ends = np.r_[starts[1:], len(rows)]
        db.executemany(
            "INSERT INTO refstars_tiles (zone, cell, n, data) VALUES (?, ?, ?, ?)",
            (
                (int(keys[a, 0]), int(keys[a, 1]), int(b - a), tiles[a:b].tobytes())
                for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
            ),
        )

    # -------------------------------------------------------------------------------- query

    def cone(
        self,
        ra_deg: float,
        dec_deg: float,
        radius_deg: float,
        *,
        band: str = "V",
        mag_limit: float | None = None,
        limit: int | None = None,
        epoch_yr: float | None = None,
    ) -> NDArray[Any]:
        """Return the reference stars within a circle, brightest first.

        Parameters
        ----------
        ra_deg, dec_deg : float
            Circle centre (deg); any RA is wrapped.
        radius_deg : float
            Circle radius (deg), true angular distance, in (0, 180].
        band : str, optional
            Band for ``mag``, ``mag_err``, the order and `mag_limit`: a key of `BANDS` or a
            column name. Stars without it come last, ranked by other bands.
        mag_limit : float, optional
            Drop stars fainter than this in `band` (mag), and stars without it.
        limit : int, optional
            Return at most this many (the brightest).
        epoch_yr : float, optional
            Julian epoch (a frame's DATE-OBS, e.g. 2026.9) to move stars with a proper
            motion to; the circle itself is tested at the catalogue's epoch.

        Returns
        -------
        numpy.ndarray of REFSTAR_DTYPE
            NULL magnitudes as NaN; ``catalog`` and ``source_id`` as ASCII bytes, with
            other characters replaced by ``?`` (the ``refstars`` table keeps the text).

        Raises
        ------
        ValueError
            For a radius out of range or an unknown band.
        """
        if not 0.0 < radius_deg <= 180.0:
            raise ValueError(f"radius_deg must be within (0, 180], got {radius_deg}")
        if not -90.0 <= dec_deg <= 90.0:
            raise ValueError(f"dec_deg must be within [-90, 90], got {dec_deg}")
        columns = _band_columns(band)
        ra0 = ra_deg % 360.0
        blobs: list[bytes] = []
        for zone, lo, hi in _cells_near(ra0, dec_deg, radius_deg):
            blobs.extend(
                row[0]
                for row in self._db.execute(
                    "SELECT data FROM refstars_tiles WHERE zone = ? AND cell BETWEEN ? AND ?",
                    (zone, lo, hi),
                )
            )
        tiles = np.frombuffer(b"".join(blobs), dtype=_TILE_DTYPE)
        # Index arithmetic on column views first; wide records are copied once, at the end.
        idx = np.flatnonzero(_within(tiles["ra_deg"], tiles["dec_deg"], ra0, dec_deg, radius_deg))
        mag, err = _band_values(tiles, idx, columns, _TILE_DTYPE.names or ())
        if mag_limit is not None:
            keep = mag <= mag_limit
            idx, mag, err = idx[keep], mag[keep], err[keep]
        # Rank by the band; stars without it after all others, by the first stand-in they have.
        key = mag.copy()
        for penalty, column in enumerate(_SORT_FALLBACK, start=1):
            missing = np.isnan(key)
            if not missing.any():
                break
            key[missing] = tiles[column][idx[missing]].astype(np.float64) + 1000.0 * penalty
        key[np.isnan(key)] = np.inf
        order = np.lexsort((tiles["id"][idx], key))
        if limit is not None:
            order = order[: max(0, int(limit))]
        picked = tiles[idx[order]]
        out = np.empty(len(order), dtype=REFSTAR_DTYPE)
        for name in _TILE_DTYPE.names or ():
            out[name] = picked[name]
        out["mag"] = mag[order]
        out["mag_err"] = err[order]
        if epoch_yr is not None:
            out["ra_deg"], out["dec_deg"] = propagate(
                out["ra_deg"],
                out["dec_deg"],
                out["pmra_mas_yr"],
                out["pmdec_mas_yr"],
                out["epoch_yr"],
                epoch_yr,
            )
        return out

    # ------------------------------------------------------------------------- fetched cones

    def add_cone(
        self,
        provider: str,
        ra_deg: float,
        dec_deg: float,
        radius_deg: float,
        *,
        mag_limit: float,
        n_stars: int,
        fetched_utc: str,
    ) -> None:
        """Record that a provider's stars within a circle (to ``mag_limit``) are stored."""
        try:
            with self._db:
                self._db.execute(
                    "INSERT INTO refcat_cones (provider, ra_deg, dec_deg, radius_deg, mag_limit, "
                    "n_stars, fetched_utc) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        provider,
                        ra_deg % 360.0,
                        dec_deg,
                        radius_deg,
                        mag_limit,
                        n_stars,
                        fetched_utc,
                    ),
                )
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot record a fetched cone: {exc}") from exc

    def cones(self, provider: str | None = None) -> list[dict[str, Any]]:
        """Return the recorded fetches (all, or one provider's), oldest first."""
        sql = (
            "SELECT provider, ra_deg, dec_deg, radius_deg, mag_limit, n_stars, fetched_utc "
            "FROM refcat_cones"
        )
        args: tuple[str, ...] = ()
        if provider is not None:
            sql += " WHERE provider = ?"
            args = (provider,)
        cursor = self._db.execute(sql + " ORDER BY id", args)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def covered(
        self, provider: str, ra_deg: float, dec_deg: float, radius_deg: float, mag_limit: float
    ) -> bool:
        """Whether one recorded fetch of ``provider`` holds the whole circle to ``mag_limit``."""
        for cone in self.cones(provider):
            if cone["mag_limit"] < mag_limit:
                continue
            distance = _separation_deg(ra_deg, dec_deg, cone["ra_deg"], cone["dec_deg"])
            if distance + radius_deg <= cone["radius_deg"] + _CONE_TOLERANCE_DEG:
                return True
        return False


def propagate(
    ra_deg: NDArray[np.float64],
    dec_deg: NDArray[np.float64],
    pmra_mas_yr: NDArray[np.float64],
    pmdec_mas_yr: NDArray[np.float64],
    epoch_yr: NDArray[np.float64],
    to_epoch_yr: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Move positions along their proper motions to another epoch.

    Linear in RA and Dec: over the decades between a catalogue's epoch and tonight the
    neglected curvature is below a microarcsecond for all but the fastest stars near a pole.
    Stars without a finite proper motion or epoch keep their position.

    Parameters
    ----------
    ra_deg, dec_deg : numpy.ndarray
        Positions (deg) at ``epoch_yr``.
    pmra_mas_yr, pmdec_mas_yr : numpy.ndarray
        Proper motion (mas/yr); ``pmra`` is mu_alpha*, which includes cos(Dec).
    epoch_yr : numpy.ndarray
        Julian epoch of each position (yr).
    to_epoch_yr : float
        The epoch wanted (yr).

    Returns
    -------
    ra_deg, dec_deg : numpy.ndarray of float64
        RA wrapped to [0, 360) and Dec (deg) at ``to_epoch_yr``.
    """
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    dt = to_epoch_yr - np.asarray(epoch_yr, dtype=np.float64)
    pmra = np.asarray(pmra_mas_yr, dtype=np.float64)
    pmdec = np.asarray(pmdec_mas_yr, dtype=np.float64)
    moves = np.isfinite(dt) & np.isfinite(pmra) & np.isfinite(pmdec)
    cos_dec = np.maximum(np.cos(np.radians(dec)), 1e-9)
    d_ra = np.where(moves, pmra * dt / 3.6e6 / cos_dec, 0.0)
    d_dec = np.where(moves, pmdec * dt / 3.6e6, 0.0)
    return np.mod(ra + d_ra, 360.0), np.clip(dec + d_dec, -90.0, 90.0)


def _separation_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Angular distance (deg), haversine form."""
    p1, p2 = math.radians(dec1), math.radians(dec2)
    hav = (
        math.sin((p2 - p1) / 2.0) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(ra2 - ra1) / 2.0) ** 2
    )
    return math.degrees(2.0 * math.asin(min(1.0, math.sqrt(hav))))


def _pack(rows: Sequence[tuple[Any, ...]]) -> NDArray[Any]:
    """Rows of ``SELECT {_COLUMNS_SQL}`` as a tile record array."""
    cols = list(zip(*rows, strict=True))
    tile = np.empty(len(rows), dtype=_TILE_DTYPE)
    tile["id"] = cols[0]
    for k, name in ((1, "catalog"), (2, "source_id")):
        tile[name] = [
            str(v).encode("ascii", "replace")[: _TILE_DTYPE[name].itemsize] for v in cols[k]
        ]
    numeric = np.array(cols[3:], dtype=np.float64)  # NULL (None) becomes NaN
    for k, name in enumerate((_TILE_DTYPE.names or ())[3:]):
        tile[name] = numeric[k]
    return tile


def _n_cells(zone: int) -> int:
    """RA cells in a declination zone: each at least `_ZONE_DEG` wide on the sky."""
    dec_lo = -90.0 + zone * _ZONE_DEG
    widest = max(abs(dec_lo), abs(dec_lo + _ZONE_DEG))
    per_circle = round(360.0 / _ZONE_DEG)
    return max(1, min(per_circle, math.floor(per_circle * math.cos(math.radians(widest)))))


def _cells_of(
    ra_deg: NDArray[np.float64], dec_deg: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    zone = np.clip(_zone(dec_deg), 0, _N_ZONES - 1)
    n_cells = np.array([_n_cells(z) for z in range(_N_ZONES)], dtype=np.int64)[zone]
    cell = np.minimum((ra_deg / 360.0 * n_cells).astype(np.int64), n_cells - 1)
    return zone, cell


def _cells_near(ra_deg: float, dec_deg: float, radius_deg: float) -> list[tuple[int, int, int]]:
    """``(zone, first cell, last cell)`` ranges covering a circle."""
    z_lo = max(0, math.floor((dec_deg - radius_deg + 90.0) / _ZONE_DEG))
    z_hi = min(_N_ZONES - 1, math.floor((dec_deg + radius_deg + 90.0) / _ZONE_DEG))
    if abs(dec_deg) + radius_deg >= 90.0:
        half = 180.0  # the circle holds a pole: every right ascension
    else:
        # The largest RA offset anywhere on the circle.
        half = math.degrees(
            math.asin(
                min(1.0, math.sin(math.radians(radius_deg)) / math.cos(math.radians(dec_deg)))
            )
        )
    ranges: list[tuple[int, int, int]] = []
    for zone in range(z_lo, z_hi + 1):
        n = _n_cells(zone)
        width = 360.0 / n
        lo = math.floor((ra_deg - half) / width)
        hi = math.floor((ra_deg + half) / width)
        if half >= 180.0 or hi - lo + 1 >= n:
            ranges.append((zone, 0, n - 1))
        elif lo < 0:
            ranges += [(zone, lo + n, n - 1), (zone, 0, hi)]
        elif hi >= n:
            ranges += [(zone, lo, n - 1), (zone, 0, hi - n)]
        else:
            ranges.append((zone, lo, hi))
    return ranges


def _within(
    ra_deg: NDArray[np.float64],
    dec_deg: NDArray[np.float64],
    ra0_deg: float,
    dec0_deg: float,
    radius_deg: float,
) -> NDArray[np.bool_]:
    # Haversine form: exact for tiny radii too, where a cosine test loses precision.
    dec0 = math.radians(dec0_deg)
    dec = np.radians(dec_deg)
    hav = (
        np.sin((dec - dec0) / 2.0) ** 2
        + math.cos(dec0) * np.cos(dec) * np.sin(np.radians(ra_deg - ra0_deg) / 2.0) ** 2
    )
    inside: NDArray[np.bool_] = hav <= math.sin(math.radians(radius_deg) / 2.0) ** 2
    return inside


def _zone(dec_deg: NDArray[np.float64]) -> NDArray[np.int64]:
    zone: NDArray[np.int64] = np.floor((np.asarray(dec_deg) + 90.0) / _ZONE_DEG).astype(np.int64)
    return zone


def _guess_format(file: Path) -> str | None:
    name = file.name.lower()
    for suffix, fmt in _FORMATS.items():
        if name.endswith(suffix):
            return fmt
    return None


def _map_columns(file: Path, names: list[str], explicit: Mapping[str, str]) -> _Mapping:
    """Recognise the input columns, or raise a ConfigError naming what is missing."""
    targets = {"ra_deg", "dec_deg", "source_id", *MAG_COLUMNS, *(c + "_err" for c in MAG_COLUMNS)}
    for target, name in explicit.items():
        if target not in targets:
            raise ConfigError(
                f"{file}: unknown table column {target!r} in the column mapping; expected "
                f"one of ra_deg, dec_deg, source_id, {', '.join(MAG_COLUMNS)} (or _err)",
                path=str(file),
            )
        if name not in names:
            raise ConfigError(
                f"{file}: column {name!r} (given for {target}) is not in the file; it has "
                f"{', '.join(names)}",
                path=str(file),
            )

    by_lower: dict[str, list[str]] = {}
    for n in names:
        by_lower.setdefault(n.lower(), []).append(n)
    ambiguous = _ambiguous_aliases()

    def find(target: str, aliases: Iterable[str]) -> str | None:
        if target in explicit:
            return explicit[target]
        aliases = list(aliases)
        for alias in aliases:
            if alias in names:
                return alias
        for alias in aliases:
            if alias.lower() in ambiguous:
                continue
            hits = by_lower.get(alias.lower(), [])
            if len(hits) == 1:
                return hits[0]
        return None

    ra = find("ra_deg", _ALIASES["ra_deg"])
    dec = find("dec_deg", _ALIASES["dec_deg"])
    missing = [
        f"{what} (looked for {', '.join(_ALIASES[key])})"
        for what, key, found in (("right ascension", "ra_deg", ra), ("declination", "dec_deg", dec))
        if found is None
    ]
    mags: dict[str, str] = {}
    errors: dict[str, str] = {}
    snr: dict[str, str] = {}
    used = {ra, dec}
    for c in MAG_COLUMNS:
        m = find(c, (a for a in _ALIASES[c] if a not in used))
        if m is None:
            continue
        mags[c] = m
        used.add(m)
        patterns = [p.format(m) for p in _ERROR_PATTERNS] + list(_EXTRA_ERRORS.get(c, ()))
        e = find(c + "_err", patterns)
        if e is not None:
            errors[c] = e
        elif c in _GAIA_SNR and _GAIA_SNR[c] in names:
            snr[c] = _GAIA_SNR[c]
    if not mags:
        looked = sorted({a for c in MAG_COLUMNS for a in _ALIASES[c]}, key=str.lower)
        missing.append(f"a magnitude (looked for {', '.join(looked)})")
    if missing:
        raise ConfigError(
            f"{file}: missing column(s): {'; '.join(missing)}. The file has "
            f"{', '.join(names) or 'no columns'}",
            path=str(file),
        )
    assert ra is not None and dec is not None
    source_id = find("source_id", (a for a in _ALIASES["source_id"] if a not in used))
    return _Mapping(ra=ra, dec=dec, source_id=source_id, mags=mags, errors=errors, snr=snr)


def _ambiguous_aliases() -> set[str]:
    owners: dict[str, set[str]] = {}
    for target, aliases in _ALIASES.items():
        for alias in aliases:
            owners.setdefault(alias.lower(), set()).add(target)
    return {alias for alias, targets in owners.items() if len(targets) > 1}


def _filled(column: Any, fill: Any) -> NDArray[Any]:
    if hasattr(column, "filled"):
        return np.asarray(column.filled(fill))
    return np.asarray(column)


def _floats(column: Any) -> NDArray[np.float64]:
    """Return a column as float64 with masked or unparsable entries as NaN."""
    if hasattr(column, "mask") and np.any(column.mask):
        data: Any = np.ma.asarray(column)
        try:
            return np.asarray(data.astype(np.float64).filled(np.nan))
        except (TypeError, ValueError):
            pass
    try:
        return np.asarray(getattr(column, "value", column), dtype=np.float64)
    except (TypeError, ValueError):
        out = np.full(len(column), np.nan)
        for k, v in enumerate(_filled(column, "")):
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                continue
        return out


def _degrees(file: Path, column: Any, *, hours: bool, what: str) -> NDArray[np.float64]:
    """Positions in degrees from a numeric (deg, or with a unit) or sexagesimal column."""
    from astropy import units as u
    from astropy.coordinates import Angle

    unit = getattr(column, "unit", None)
    if column.dtype.kind in "iuf":
        values = _floats(column)
        if unit is not None and unit != u.deg:
            try:
                values = (values * u.Unit(unit)).to_value(u.deg)
            except (u.UnitsError, ValueError, TypeError) as exc:
                raise ConfigError(
                    f"{file}: {what} column {column.name!r} has unit {unit}, not an angle",
                    path=str(file),
                ) from exc
        return np.asarray(values, dtype=np.float64)
    text = [str(v).strip() for v in _filled(column, "")]
    out = np.full(len(text), np.nan)
    for k, v in enumerate(text):
        if not v:
            continue
        try:
            out[k] = float(v)  # decimal degrees stored as text
            continue
        except ValueError:
            pass
        try:
            out[k] = Angle(v, unit=u.hourangle if hours else u.deg).degree
        except (ValueError, u.UnitsError) as exc:
            raise ConfigError(
                f"{file}: row {k + 1}: cannot read {what} {v!r} from column {column.name!r}",
                path=str(file),
            ) from exc
    return out


def _nullable(values: NDArray[np.float64]) -> list[float | None]:
    return [None if not math.isfinite(v) else v for v in values.tolist()]
