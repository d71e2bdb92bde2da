"""A processed frame as it stood before a stage: where a reprocessing from that stage begins.

The pipeline keeps no copy of a frame between its stages; what it keeps is the calibrated
frame and the source catalog (`obsctl.pipeline.worker.process_file`). `frame_before` reads
them back and takes off what the stages to be redone added: their catalog columns and flag
bits, their metrics, provenance and warnings. The pixels are the calibrated ones (no later
stage changes them), the typed fields that photometry hands on come from the catalog's and
the frame's headers. So ``obsctl reprocess --from-stage classify`` runs a new classifier on
the sources photometry found, without calibrating or measuring again.

What does not come back: the calibration stage's bad-pixel mask (bad flat pixels) is not
written, so a stage after calibration sees only the classifier's cosmic-ray mask; warnings
longer than a FITS card (68 characters) come back cut, and a redone stage's warnings are
told by their start (`StageProducts.warnings`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from numpy.typing import NDArray

from obsctl.classify.labels import FLAG_NOT_CELESTIAL, PROBABILITY_COLUMNS
from obsctl.frame import Frame
from obsctl.store.datadir import DataDir

__all__ = ["STAGE_PRODUCTS", "StageProducts", "frame_before"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageProducts:
    """What a stage adds to a frame, taken off before the stage runs again.

    Attributes
    ----------
    columns : tuple of str
        Catalog columns.
    metrics : tuple of str
        Metrics, by the start of their names.
    flag_bits : int
        Bits of the catalog's ``flags`` column.
    warnings : tuple of str
        Frame warnings, by their start (besides the stage's name, which starts them all).
    """

    columns: tuple[str, ...]
    metrics: tuple[str, ...]
    flag_bits: int = 0
    warnings: tuple[str, ...] = ()


#: The stages after photometry, the ones a reprocessing can begin at.
STAGE_PRODUCTS: dict[str, StageProducts] = {
    "classify": StageProducts(
        ("source_class", *PROBABILITY_COLUMNS), ("n_", "artifact_fraction"), FLAG_NOT_CELESTIAL
    ),
    "astrometry": StageProducts(
        ("ra_deg", "dec_deg", "ref_id", "ref_mag", "ref_mag_err", "ref_colour"), ("wcs_",)
    ),
    "zeropoint": StageProducts(
        ("mag", "mag_err", "zp_used", "inst_mag", "inst_mag_err"),
        ("zero_point", "colour_term", "transparency", "limiting_mag"),
        warnings=("colour term", "limiting magnitude"),
    ),
    # Its candidates and cutouts are stored apart (difference_candidates), not in the catalog.
    "difference": StageProducts((), ()),
}

# Catalog columns in the FITS pixel convention (first pixel centred on 1), see `catalog_table`.
_PIXEL_COLUMNS = ("x", "y", "x_iso", "y_iso")
# Catalog header keys that are no metric.
_NOT_METRICS = {"pixorign", "aperture_fwhm_px", "aperture_radius_px"}


def frame_before(
    stage: str,
    stage_names: Sequence[str],
    raw_path: str | Path,
    exposure_id: int | None,
    data_dir: DataDir | Path,
) -> Frame:
    """Return a processed frame as it stood before ``stage`` ran, from its stored outputs.

    Parameters
    ----------
    stage : str
        The first stage to run again; one of `STAGE_PRODUCTS` (a stage after photometry:
        calibration and photometry are redone from the raw frame).
    stage_names : sequence of str
        The configured stages, in order.
    raw_path : str or pathlib.Path
        The raw frame; its calibrated frame and catalog are where `DataDir.reduced_files`
        puts them.
    exposure_id : int or None
        The frame's row in the exposure log.
    data_dir : DataDir or pathlib.Path
        The data directory.

    Returns
    -------
    Frame
        The calibrated pixels (float32, native byte order), the header and catalog less what
        ``stage`` and the stages after it added, and the typed fields photometry set.

    Raises
    ------
    ValueError
        When ``stage`` is not one that can be resumed at, or it is not configured.
    OSError
        When the calibrated frame or the catalog is missing or unreadable (the frame was not
        processed to the end before).
    """
    if stage not in STAGE_PRODUCTS or stage not in stage_names:
        raise ValueError(f"cannot resume at stage {stage!r} of {list(stage_names)}")
    redone = list(stage_names)[list(stage_names).index(stage) :]
    calibrated, catalog = DataDir(data_dir).reduced_files(Path(raw_path))
    with fits.open(calibrated, memmap=False) as hdul:
        data = np.ascontiguousarray(hdul[0].data, dtype=np.float32)
        header = hdul[0].header.copy()
        cosmic = (
            np.asarray(hdul["CRMASK"].data, dtype=bool)
            if "classify" not in redone and "CRMASK" in hdul
            else None
        )
    table = Table.read(catalog, format="fits")
    meta = {str(k).lower(): v for k, v in table.meta.items()}

    dropped_columns: set[str] = set()
    metric_names: list[str] = []
    warnings: list[str] = list(redone)
    bits = 0
    for name in redone:
        products = STAGE_PRODUCTS.get(name, StageProducts((), ()))
        dropped_columns.update(products.columns)
        metric_names += products.metrics
        warnings += products.warnings
        bits |= products.flag_bits
    sources = _sources(table, dropped_columns, bits)
    metrics_kept = {
        k: float(v)
        for k, v in meta.items()
        if k not in _NOT_METRICS
        and isinstance(v, int | float)
        and not isinstance(v, bool)
        and not k.startswith(tuple(metric_names))
    }
    provenance = tuple(
        p for p in str(header.get("PIPEPROV", "")).split(",") if p and p not in redone
    )
    flags = tuple(
        str(header[key])
        for key in sorted((k for k in header if k.startswith("PIPEFLG")), key=_flag_number)
        if not str(header[key]).startswith(tuple(warnings))
    )
    for key in [k for k in header if k.startswith("PIPEFLG") or k == "PIPEPROV"]:
        header.remove(key, remove_all=True)
    return Frame(
        data=data,
        header=header,
        exposure_id=exposure_id,
        path=str(raw_path),
        mask=cosmic,
        sources=sources,
        metrics=metrics_kept,
        flags=flags,
        provenance=provenance,
        cosmic_mask=cosmic,
        background_adu=_number(metrics_kept.get("background")),
        background_rms_adu=_number(metrics_kept.get("background_rms")),
        fwhm_px=_number(meta.get("aperture_fwhm_px")),
        aperture_radius_px=_number(meta.get("aperture_radius_px")),
        gain_e_per_adu=_number(header.get("PHGAIN")),
    )


def _sources(table: Table, dropped: set[str], clear_bits: int) -> NDArray[Any]:
    """Return the catalog as the pipeline holds it: zero-based pixels, text as str."""
    kept = [n for n in table.colnames if n not in dropped]
    columns: dict[str, NDArray[Any]] = {}
    for name in kept:
        values = np.asarray(table[name])
        if values.dtype.kind == "S":  # FITS keeps text as bytes
            values = values.astype("U")
        if name in _PIXEL_COLUMNS:
            values = values - 1.0
        if name == "flags" and clear_bits:
            values = values & ~np.asarray(clear_bits, dtype=values.dtype)
        columns[name] = values
    out = np.empty(len(table), dtype=[(n, columns[n].dtype) for n in kept])
    for name in kept:
        out[name] = columns[name]
    return out


def _flag_number(key: str) -> int:
    digits = key[len("PIPEFLG") :]
    return int(digits) if digits.isdigit() else 0


def _number(value: Any) -> float | None:
    """Return a finite number as float, None for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
