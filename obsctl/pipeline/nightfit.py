"""The night's photometric solution: extinction and colour terms from all its frames.

`refit_night` reads the calibration stars of a night's processed light frames from the
exposure log (their instrumental and reference magnitudes and colours, stored by the
`ZeroPoint` stage), fits each filter with `obsctl.processing.extinction.fit_extinction`
and stores the solution and each frame's zero point and residual (``night_fits``,
``night_fit_frames``). The pipeline runner calls it after each processed light frame, so the
quick-look page follows the fit through the night; for a night of 300 frames of 100 stars it
takes about 0.1 s.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from obsctl.processing.extinction import ExtinctionFit, fit_extinction
from obsctl.store.exposure_log import ExposureLog

__all__ = ["refit_night"]

log = logging.getLogger(__name__)


def _number(value: float) -> float | None:
    """Return a finite float, None for NaN (SQL NULL)."""
    return float(value) if math.isfinite(value) else None


def _fit_row(filter_name: str, fit: ExtinctionFit) -> dict[str, Any]:
    airmass = fit.frames.airmass[np.isfinite(fit.frames.zero_point)]
    return {
        "filter": filter_name,
        "mode": fit.mode,
        "photometric": int(fit.photometric),
        "zp0": _number(fit.zp0),
        "zp0_err": _number(fit.zp0_err),
        "k": _number(fit.k),
        "k_err": _number(fit.k_err),
        "colour_term": _number(fit.colour_term),
        "colour_term_err": _number(fit.colour_term_err),
        "colour_fitted": int(fit.colour_fitted),
        "rms": _number(fit.rms),
        "frame_rms": _number(fit.frame_rms),
        "airmass_min": _number(float(airmass.min())) if airmass.size else None,
        "airmass_max": _number(float(airmass.max())) if airmass.size else None,
        "n_frames": fit.n_frames,
        "n_frames_used": fit.n_frames_used,
        "n_stars": fit.n_stars,
        "reason": fit.reason or None,
    }


def _frame_rows(filter_name: str, fit: ExtinctionFit) -> list[dict[str, Any]]:
    fr = fit.frames
    return [
        {
            "exposure_id": int(fr.frame[i]),
            "filter": filter_name,
            "airmass": _number(fr.airmass[i]),
            "zero_point": _number(fr.zero_point[i]),
            "zero_point_err": _number(fr.zero_point_err[i]),
            "residual": _number(fr.residual[i]),
            "n_stars": int(fr.n_stars[i]),
            "used": int(fr.used[i]),
        }
        for i in range(fr.frame.size)
    ]


def refit_night(log_db: ExposureLog, night: str, **options: Any) -> dict[str, ExtinctionFit]:
    """Fit a night's extinction and colour terms per filter and store them.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log: the night's calibration stars are read from it, the solution is
        written to it (replacing the night's earlier one).
    night : str
        The night (``YYYY-MM-DD``).
    **options
        Passed on to `fit_extinction` (thresholds: ``max_frame_rms``, ``min_airmass_span``
        ...).

    Returns
    -------
    dict of str to ExtinctionFit
        The solution per filter; a filter whose frames have too few stars has none.

    Raises
    ------
    StorageError
        When the exposure log cannot be read or written.
    """
    rows = log_db.night_calibration_stars(night)
    fits: dict[str, ExtinctionFit] = {}
    if rows:
        columns = list(zip(*rows, strict=True))
        filters = np.array([str(f) if f is not None else "" for f in columns[0]])
        exposure = np.asarray(columns[1], dtype=np.int64)
        numbers = [np.asarray(c, dtype=np.float64) for c in columns[2:]]
        airmass, inst, inst_err, ref, ref_err, colour = numbers
        for name in np.unique(filters):
            mask = filters == name
            try:
                fits[str(name)] = fit_extinction(
                    exposure[mask],
                    airmass[mask],
                    inst[mask],
                    inst_err[mask],
                    ref[mask],
                    reference_err=ref_err[mask],
                    colour=colour[mask],
                    **options,
                )
            except ValueError as exc:  # too few stars so far: no solution for this filter
                log.debug("night %s, filter %r: no solution yet: %s", night, name, exc)
    log_db.put_night_fit(
        night,
        [_fit_row(name, fit) for name, fit in fits.items()],
        [row for name, fit in fits.items() for row in _frame_rows(name, fit)],
    )
    return fits
