"""Export the exposure log's results to Parquet for analysis at scale (``obsctl export parquet``).

Three datasets, each a folder of Parquet files partitioned by night in the Hive layout
(``<out>/<dataset>/night=YYYY-MM-DD/part-0.parquet``), which pandas, pyarrow, Dask dataframes
and DuckDB read as one table with a ``night`` column (the partition key, in the folder names,
not in the files):

- ``frame_metrics``: one row per processed frame, with its exposure's time, target and filter;
- ``measurements``: one row per measured source;
- ``lc_points``: one row per light-curve point, with its object's field, target and position.

Every column carries its unit and meaning in the Parquet schema's field metadata (``unit``,
``description``); `schema_markdown` writes the same as a document (``docs/parquet.md``).
A night is exported whole: a night exported again replaces its files. The log is read one
night at a time, so the memory needed is one night's rows, not the archive's.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obsctl.errors import StorageError
from obsctl.store.exposure_log import ExposureLog

__all__ = ["DATASETS", "Column", "export_parquet", "schema_markdown"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Column:
    """One exported column: its name, Arrow type, unit and meaning.

    Attributes
    ----------
    name : str
        Column name (as in the exposure log).
    kind : str
        ``float64``, ``int64``, ``string`` or ``bool``.
    unit : str
        Unit (FITS/astropy spelling, ``""`` for a pure number or text).
    description : str
        What it holds.
    sql : str
        The expression that selects it (default: the name in the dataset's main table).
    """

    name: str
    kind: str
    unit: str
    description: str
    sql: str = ""


def _c(name: str, kind: str, unit: str, description: str, sql: str = "") -> Column:
    return Column(name, kind, unit, description, sql)


_EXPOSURE = (_c("exposure_id", "int64", "", "the frame's row in the exposure log", "e.id"),)
_FRAME = (
    _c("date_obs", "string", "", "start of the exposure, ISO 8601 UTC (DATE-OBS)", "e.date_obs"),
    _c("mjd_mid", "float64", "d", "modified Julian date (UTC) at mid-exposure", "e.mjd_mid"),
    _c("target", "string", "", "target name", "e.target"),
    _c("filter", "string", "", "filter name", "e.filter"),
    _c("exposure_s", "float64", "s", "exposure time", "e.exposure_s"),
    _c("airmass", "float64", "", "airmass of the frame (AIRMASS)", "e.airmass"),
    _c("camera", "string", "", "camera name", "e.camera"),
)

_METRICS = (
    *_EXPOSURE,
    *_FRAME,
    _c("fwhm_px", "float64", "pix", "median FWHM of the stars"),
    _c("fwhm_arcsec", "float64", "arcsec", "median FWHM of the stars"),
    _c("hfr_px", "float64", "pix", "median half-flux radius of the stars"),
    _c("hfr_arcsec", "float64", "arcsec", "median half-flux radius of the stars"),
    _c("ellipticity", "float64", "", "median ellipticity of the stars, 1 - b/a"),
    _c("star_count", "int64", "", "stars measured"),
    _c("background", "float64", "adu", "global sky background per pixel"),
    _c("background_rms", "float64", "adu", "background noise per pixel"),
    _c("zero_point", "float64", "mag", "zero point: magnitude of 1 e-/s in the main aperture"),
    _c("zero_point_err", "float64", "mag", "zero point error"),
    _c("limiting_mag", "float64", "mag", "5-sigma point-source limiting magnitude"),
    _c("wcs_rms_arcsec", "float64", "arcsec", "rms of the astrometric fit"),
    _c("n_star", "int64", "", "sources classified star"),
    _c("n_galaxy", "int64", "", "sources classified galaxy"),
    _c("n_cosmic_ray", "int64", "", "sources classified cosmic ray"),
    _c("n_hot_pixel", "int64", "", "sources classified hot pixel"),
    _c("n_artifact", "int64", "", "sources classified artifact"),
    _c("artifact_fraction", "float64", "", "fraction of the sources that are artifacts"),
    _c("colour_term", "float64", "mag/mag", "colour term of the zero point"),
    _c("colour_term_err", "float64", "mag/mag", "colour term error (NULL when held)"),
    _c("colour_term_fitted", "bool", "", "colour term fitted on the frame (else held)"),
    _c("quality_score", "float64", "", "frame quality score, 0 to 1"),
    _c("quality_grade", "string", "", "frame quality grade, A to D"),
    _c("flags", "string", "", "pipeline warnings, '; '-separated"),
)

_MEASUREMENTS = (
    _c("id", "int64", "", "the measurement's row", "m.id"),
    *_EXPOSURE,
    _c("mjd_mid", "float64", "d", "modified Julian date (UTC) at mid-exposure", "e.mjd_mid"),
    _c("filter", "string", "", "filter name", "e.filter"),
    _c("x", "float64", "pix", "centroid column, zero-based (first pixel centred on 0)"),
    _c("y", "float64", "pix", "centroid row, zero-based (first pixel centred on 0)"),
    _c("ra_deg", "float64", "deg", "right ascension (ICRS) from the frame's WCS"),
    _c("dec_deg", "float64", "deg", "declination (ICRS) from the frame's WCS"),
    _c("flux", "float64", "adu", "flux in the main aperture, background subtracted"),
    _c("flux_err", "float64", "adu", "flux error"),
    _c("flux_auto", "float64", "adu", "flux in the Kron aperture"),
    _c("flux_auto_err", "float64", "adu", "Kron flux error"),
    _c("flux_psf", "float64", "adu", "PSF-fitted flux"),
    _c("flux_psf_err", "float64", "adu", "PSF-fitted flux error"),
    _c("mag", "float64", "mag", "calibrated magnitude (zero point and colour term applied)"),
    _c("mag_err", "float64", "mag", "calibrated magnitude error"),
    _c("inst_mag", "float64", "mag", "instrumental magnitude, -2.5 log10(e-/s)"),
    _c("inst_mag_err", "float64", "mag", "instrumental magnitude error"),
    _c("ref_mag", "float64", "mag", "matched reference star's magnitude in the frame's band"),
    _c("ref_mag_err", "float64", "mag", "reference magnitude error"),
    _c("ref_colour", "float64", "mag", "matched reference star's colour index"),
    _c("zp_used", "bool", "", "used in the frame's zero-point fit"),
    _c("fwhm_px", "float64", "pix", "the source's FWHM"),
    _c("flags", "int64", "", "SEP and pipeline flag bits (0x8000: not celestial)"),
    _c("source_class", "string", "", "class: star, galaxy, cosmic_ray, hot_pixel, artifact"),
    _c("p_star", "float64", "", "probability of class star"),
    _c("p_galaxy", "float64", "", "probability of class galaxy"),
    _c("p_cosmic_ray", "float64", "", "probability of class cosmic_ray"),
    _c("p_hot_pixel", "float64", "", "probability of class hot_pixel"),
    _c("p_artifact", "float64", "", "probability of class artifact"),
)

_POINTS = (
    _c("object_id", "int64", "", "the light curve's object", "p.object_id"),
    *_EXPOSURE,
    _c("field", "string", "", "the object's field", "o.field"),
    _c("target", "string", "", "monitored target name (NULL for a field star)", "o.target"),
    _c("ra_deg", "float64", "deg", "the object's right ascension (ICRS)", "o.ra_deg"),
    _c("dec_deg", "float64", "deg", "the object's declination (ICRS)", "o.dec_deg"),
    _c("mjd", "float64", "d", "modified Julian date (UTC) at mid-exposure", "p.mjd"),
    _c("bjd_tdb", "float64", "d", "barycentric Julian date (TDB) at mid-exposure", "p.bjd_tdb"),
    _c("filter", "string", "", "filter name", "p.filter"),
    _c("airmass", "float64", "", "airmass", "p.airmass"),
    _c("inst_mag", "float64", "mag", "instrumental magnitude", "p.inst_mag"),
    _c("inst_mag_err", "float64", "mag", "instrumental magnitude error", "p.inst_mag_err"),
    _c("mag", "float64", "mag", "differential magnitude against the comparison stars", "p.mag"),
    _c("mag_err", "float64", "mag", "magnitude error", "p.mag_err"),
    _c("quality", "string", "", "frame quality grade of the point", "p.quality"),
    _c("flags", "int64", "", "point flag bits", "p.flags"),
)


@dataclass(frozen=True)
class _Dataset:
    columns: tuple[Column, ...]
    sql: str  # FROM ... JOIN ..., with ``e`` the exposures and a WHERE clause to add to


#: The exported datasets: their columns and where they come from.
DATASETS: dict[str, _Dataset] = {
    "frame_metrics": _Dataset(
        _METRICS, "FROM frame_metrics m JOIN exposures e ON e.id = m.exposure_id"
    ),
    "measurements": _Dataset(
        _MEASUREMENTS, "FROM measurements m JOIN exposures e ON e.id = m.exposure_id"
    ),
    "lc_points": _Dataset(
        _POINTS,
        "FROM lc_points p JOIN lc_objects o ON o.id = p.object_id "
        "JOIN exposures e ON e.id = p.exposure_id",
    ),
}


def _schema(columns: Sequence[Column]) -> Any:
    import pyarrow as pa

    types = {
        "float64": pa.float64(),
        "int64": pa.int64(),
        "string": pa.string(),
        "bool": pa.bool_(),
    }
    return pa.schema(
        [
            pa.field(
                c.name,
                types[c.kind],
                metadata={"unit": c.unit, "description": c.description},
            )
            for c in columns
        ],
        metadata={"producer": "obsctl export parquet", "partitioning": "hive: night"},
    )


def export_parquet(
    log_db: ExposureLog,
    out: str | Path,
    *,
    first_night: str | None = None,
    last_night: str | None = None,
) -> dict[str, int]:
    """Write the results of the nights chosen to Parquet, one file per dataset and night.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log.
    out : str or pathlib.Path
        The folder; each dataset goes to ``out/<dataset>/night=<night>/part-0.parquet``.
    first_night, last_night : str or None
        Nights (``YYYY-MM-DD``) from and to, both included; None for no bound.

    Returns
    -------
    dict of str to int
        Rows written per dataset.

    Raises
    ------
    StorageError
        When the log cannot be read or a file cannot be written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(out)
    counts = dict.fromkeys(DATASETS, 0)
    where, args = [], []
    if first_night is not None:
        where.append("night >= ?")
        args.append(first_night)
    if last_night is not None:
        where.append("night <= ?")
        args.append(last_night)
    rows = log_db.query(
        "SELECT DISTINCT night FROM exposures"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY night",
        args,
    )
    for night in (str(r["night"]) for r in rows):
        for name, dataset in DATASETS.items():
            expressions = ", ".join(
                f"{c.sql or 'm.' + c.name} AS {c.name}" for c in dataset.columns
            )
            records = log_db.query(
                f"SELECT {expressions} {dataset.sql} WHERE e.night = ? ORDER BY e.id", (night,)
            )
            folder = root / name / f"night={night}"
            try:
                if folder.exists():  # a night exported again replaces its files
                    shutil.rmtree(folder)
                if not records:
                    continue
                schema = _schema(dataset.columns)
                table = pa.Table.from_pylist(
                    [_converted(r, dataset.columns) for r in records], schema=schema
                )
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / ".part-0.parquet.tmp"
                pq.write_table(table, tmp, compression="zstd")
                tmp.replace(folder / "part-0.parquet")
            except OSError as exc:
                raise StorageError(f"cannot write {folder}: {exc}") from exc
            counts[name] += len(records)
    log.info("exported %s to %s", counts, root)
    return counts


def _converted(row: dict[str, Any], columns: Sequence[Column]) -> dict[str, Any]:
    """Return a row with SQLite's 0/1 as booleans and numbers as their column's kind."""
    out = dict(row)
    for c in columns:
        value = out.get(c.name)
        if value is None:
            continue
        if c.kind == "bool":
            out[c.name] = bool(value)
        elif c.kind == "int64":
            out[c.name] = int(value)
        elif c.kind == "float64":
            out[c.name] = float(value)
    return out


def schema_markdown() -> str:
    """Return the datasets' schema as a Markdown document (``docs/parquet.md``)."""
    lines = [
        "# Parquet export: schema",
        "",
        "Written by `obsctl export parquet [--out DIR] [--night N | --from-night A "
        "--to-night B]` (`obsctl.store.parquet`). Each dataset is a folder of Parquet files "
        "partitioned by night in the Hive layout, `DIR/<dataset>/night=YYYY-MM-DD/"
        "part-0.parquet`; read a dataset as one table with its `night` column:",
        "",
        "```python",
        'pandas.read_parquet("DIR/measurements")',
        'pyarrow.dataset.dataset("DIR/measurements", partitioning="hive")',
        'dask.dataframe.read_parquet("DIR/measurements")',
        "duckdb.sql(\"SELECT * FROM read_parquet('DIR/measurements/*/*.parquet', "
        'hive_partitioning = true)")',
        "```",
        "",
        "Units and meanings are also in each file's schema (field metadata `unit` and "
        "`description`). Missing values are null. Exporting a night again replaces its files.",
        "This document is generated by `obsctl.store.parquet.schema_markdown`.",
    ]
    for name, dataset in DATASETS.items():
        lines += ["", f"## {name}", "", "| column | type | unit | description |"]
        lines.append("| --- | --- | --- | --- |")
        lines.append(
            "| `night` | string | | night of the frame (DAY-OBS), YYYY-MM-DD: the partition "
            "key, from the folder name |"
        )
        for c in dataset.columns:
            lines.append(f"| `{c.name}` | {c.kind} | {c.unit} | {c.description} |")
    return "\n".join(lines) + "\n"
