"""Frames for the web tests: a real FITS file, its exposure-log row, processing results."""

from __future__ import annotations

import math
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table

from obsctl.acquisition.autofocus import FocusPoint, FocusRun
from obsctl.acquisition.focus_curve import fit_focus_curve
from obsctl.store.exposure_log import ExposureLog, ExposureRecord
from obsctl.store.fitsfile import write_fits_atomic

NIGHT = "2026-01-01"
SHAPE = (60, 90)  # ny, nx
# Three stars at known pixels (0-based x, y) on a 1000 ADU sky.
STARS = [(10.0, 12.0), (45.0, 30.0), (80.0, 50.0)]


def wcs_header() -> fits.Header:
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 30.0
    h["CRPIX1"], h["CRPIX2"] = 45.5, 30.5
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -2.5e-4, 0.0, 0.0, 2.5e-4
    return h


def make_frame(
    data_dir: Path, log_db: ExposureLog, index: int, *, filt: str = "V", exposure_s: float = 10.0
) -> int:
    """Write a raw and a calibrated frame, a catalog and their rows; return the exposure id."""
    rng = np.random.default_rng(index)
    raw = rng.normal(1000.0, 5.0, SHAPE)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    for x, y in STARS:
        raw += 5000.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.0)
    rel = f"raw/{NIGHT}/frame_{index:03d}.fits"
    header = wcs_header()
    header["OBJECT"], header["FILTER"], header["EXPTIME"] = "Field", filt, exposure_s
    write_fits_atomic(data_dir / rel, np.round(raw).astype(np.uint16), header)
    eid = log_db.add_exposure(
        ExposureRecord(
            night=NIGHT,
            file_path=rel,
            image_type="LIGHT",
            exposure_s=exposure_s,
            date_obs=f"{NIGHT}T22:00:{index:02d}",
            mjd_start=61041.9 + index * 1e-3,
            mjd_mid=61041.9 + index * 1e-3,
            bin_x=1,
            bin_y=1,
            target="Field",
            filter=filt,
            airmass=1.1,
        )
    )
    cal = f"reduced/{NIGHT}/frame_{index:03d}_cal.fits"
    cat = f"reduced/{NIGHT}/frame_{index:03d}_cat.fits"
    header["PHOTZP"] = (21.0, "[mag] zero point")
    write_fits_atomic(data_dir / cal, (raw - 1000.0).astype(np.float32), header, durable=False)
    Table({"x": [s[0] for s in STARS], "y": [s[1] for s in STARS]}).write(data_dir / cat)
    log_db.execute(
        "INSERT INTO processing (exposure_id, state, attempts, calibrated_path, catalog_path, "
        "updated_utc) VALUES (?, 'done', 1, ?, ?, 'now')",
        (eid, cal, cat),
    )
    log_db.execute(
        "INSERT INTO frame_metrics (exposure_id, fwhm_arcsec, star_count, zero_point) "
        "VALUES (?, 2.0, 3, 21.0)",
        (eid,),
    )
    log_db.executemany(
        "INSERT INTO measurements (exposure_id, x, y, mag, fwhm_px) VALUES (?, ?, ?, ?, 2.4)",
        [(eid, x, y, 15.0 + i) for i, (x, y) in enumerate(STARS)],
    )
    return eid


def png_size(blob: bytes) -> tuple[int, int]:
    """Return a PNG's width and height."""
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", blob[16:24])


def v_curve(position: float, best: float, hfr_px: float, half_width: float) -> float:
    """Return the truth's HFR (pixel) at a focuser position: the V whose HFR doubles at
    ``half_width`` steps from ``best``."""
    return hfr_px * math.sqrt(1.0 + 3.0 * ((position - best) / half_width) ** 2)


def focus_row(
    positions: list[int],
    *,
    best: float = 30_010.0,
    hfr_px: float = 1.8,
    half_width: float = 120.0,
    minute: int = 0,
    night: str = NIGHT,
    **changes: Any,
) -> dict[str, Any]:
    """Return the ``focus_runs`` row of a focused run over noise-free points of a known V.

    The row is the daemon's (`FocusRun.row`, the fit by `fit_focus_curve`); ``changes``
    replace columns after, as a refused run or a hand-made row would hold them.
    """
    hfr = [v_curve(p, best, hfr_px, half_width) for p in positions]
    fit = fit_focus_curve(positions, hfr)
    run = FocusRun(
        trigger="start of night",
        started=datetime.fromisoformat(f"{night}T21:{minute:02d}:00+00:00"),
        filter_name="V",
        temperature_c=8.25,
        start_position=round(best),
        points=tuple(FocusPoint(p, h, 30) for p, h in zip(positions, hfr, strict=True)),
        fit=fit,
        parabola=None,
        final_position=round(fit.best_position),
        check_hfr_px=hfr_px * 1.02,
        outcome="focused",
        reason="",
    )
    return run.row(night) | changes
