"""What the quick-look page reads about difference imaging: candidates, transients, tracks.

The difference stage stores each frame's candidates (``difference_candidates``) and writes
their cutouts to the frame's ``_diff.fits`` (HDU ``CUTOUTS``, ``(n, 3, size, size)``: new
frame, reference, difference; row ``i`` is the candidate whose ``row`` is ``i``). The
transient watch groups them into transients and moving objects. These functions gather a
night's for the page, render a candidate's three cutouts as one PNG and read a transient's
light curve. Every number that is not finite is None, so the replies are standard JSON.

Synchronous and short; the routes run them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from numpy.typing import NDArray

from obsctl.processing.display import cutout_strip, encode_png
from obsctl.store import candidates as store
from obsctl.store.exposure_log import ExposureLog
from obsctl.web.frames import FrameFileError

__all__ = [
    "cutouts_url",
    "night_candidates",
    "read_cutouts",
    "render_cutouts",
    "transient_lightcurve",
]

log = logging.getLogger(__name__)

#: Black columns between the three cutouts of a PNG (pixel).
GAP_PX = 2


def _finite(value: Any) -> Any:
    """Return a value as it is, a float that is not finite as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _finite(v) for k, v in row.items()}


def cutouts_url(candidate_id: Any) -> str | None:
    """Return the address of a candidate's cutouts PNG (None without a candidate)."""
    return None if candidate_id is None else f"/api/candidates/{int(candidate_id)}/cutouts.png"


def night_candidates(
    log_db: ExposureLog, night: str | None, *, limit: int, min_real_bogus: float | None
) -> dict[str, Any]:
    """Return a night's latest difference detections, its transients and moving objects.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log.
    night : str or None
        The night (``YYYY-MM-DD``); None: the latest night with a difference.
    limit : int
        Detections returned, at most (the newest frames' first).
    min_real_bogus : float or None
        Only detections scored at least this real (those not scored pass); None: all.

    Returns
    -------
    dict
        ``night`` (None before the first difference); ``total``, the night's detections
        that pass ``min_real_bogus``; ``candidates``, newest frames first and the strongest
        first within a frame: the ``difference_candidates`` columns with their frame's
        ``mjd_mid``, ``date_obs``, ``filter`` and ``field``, and ``cutouts`` (the PNG's
        address); ``transients``, those alerted and sighted on the night, last seen first:
        the ``transients`` columns (the host's offset among them), ``candidate_id`` (the
        newest detection), ``real_bogus``, ``cutouts`` and ``lightcurve`` (addresses);
        ``moving_objects``, the ``moving_objects`` columns with ``candidate_id`` and
        ``cutouts`` of their newest detection; ``mpc``, the address of the night's MPC
        report (None without moving objects).
    """
    if night is None:
        night = store.latest_difference_night(log_db)
    if night is None:
        return {
            "night": None, "total": 0, "candidates": [], "transients": [],
            "moving_objects": [], "mpc": None,
        }  # fmt: skip
    rows, total = store.night_candidates(log_db, night, limit=limit, min_real_bogus=min_real_bogus)
    candidates = [_plain(r) | {"cutouts": cutouts_url(r["id"])} for r in rows]
    transients = [
        _plain(t)
        | {
            "cutouts": cutouts_url(t["candidate_id"]),
            "lightcurve": f"/api/transients/{int(t['id'])}/lightcurve",
        }
        for t in store.night_transients(log_db, night)
    ]
    objects = store.moving_objects(log_db, night)
    latest = store.track_latest_candidates(log_db, [int(m["id"]) for m in objects])
    moving = [
        _plain(m)
        | {
            "candidate_id": latest.get(int(m["id"])),
            "cutouts": cutouts_url(latest.get(int(m["id"]))),
        }
        for m in objects
    ]
    return {
        "night": night,
        "total": total,
        "candidates": candidates,
        "transients": transients,
        "moving_objects": moving,
        "mpc": f"/api/moving/{night}/mpc" if moving else None,
    }


def read_cutouts(path: Path, row: int) -> NDArray[np.float32]:
    """Return one candidate's cutouts from its difference file: ``(3, size, size)``.

    Raises
    ------
    FrameFileError
        When the file is missing (``missing``), unreadable, truncated, without a
        ``CUTOUTS`` cube of three planes, or holds no row ``row``.
    """
    try:
        hdul = fits.open(path, memmap=True)
    except FileNotFoundError as exc:
        raise FrameFileError(path, "the file is not on disk", missing=True) from exc
    except (OSError, ValueError) as exc:
        raise FrameFileError(path, f"not a readable FITS file ({exc})") from exc
    with hdul:
        try:
            hdu = hdul["CUTOUTS"]
            shape = hdu.shape
        # No such HDU, a corrupt header, or (where warnings are errors) astropy's warning
        # that the file is shorter than its headers say; elsewhere the size check finds it.
        except (KeyError, OSError, ValueError, AstropyUserWarning) as exc:
            raise FrameFileError(path, f"no readable CUTOUTS image ({exc})") from exc
        if len(shape) != 4 or shape[1] != 3 or min(shape[2:]) < 1:
            raise FrameFileError(path, f"CUTOUTS is not (n, 3, size, size), but {shape}")
        if not 0 <= row < shape[0]:
            raise FrameFileError(path, f"CUTOUTS has {shape[0]} rows, none {row}")
        # astropy opens a truncated file with a warning and fails later, deep in numpy.
        needed = int(hdu.fileinfo()["datLoc"]) + int(hdu.size)  # size: bytes
        actual = path.stat().st_size
        if actual < needed:
            raise FrameFileError(path, f"the file is truncated: {actual} bytes, needs {needed}")
        try:
            planes = np.asarray(hdu.section[row], dtype=np.float32)
        except (OSError, ValueError, TypeError) as exc:
            raise FrameFileError(path, f"CUTOUTS unreadable ({exc})") from exc
    return planes


def render_cutouts(planes: NDArray[np.float32], size_px: int) -> tuple[bytes, int]:
    """Return a candidate's cutouts as one PNG and the enlargement used.

    ``size_px`` is each cutout's side in the PNG, rounded down to a whole multiple of the
    cutout's own (at least once its side).
    """
    factor = max(1, size_px // max(planes.shape[1:]))
    return encode_png(cutout_strip(planes, factor=factor, gap_px=GAP_PX)), factor


def transient_lightcurve(log_db: ExposureLog, transient_id: int) -> dict[str, Any] | None:
    """Return a transient and its points, oldest first; None if there is no such transient.

    Returns
    -------
    dict or None
        ``transient`` (its ``transients`` row) and ``points``: per frame where it was
        detected or forced, ``candidate_id``, ``exposure_id``, ``kind`` (``detection`` or
        ``transient``, forced), ``mjd`` (the frame's middle, MJD UTC), ``filter``, ``mag``,
        ``mag_err``, ``flux``, ``flux_err`` (ADU), ``snr``, ``score`` and ``real_bogus``.
    """
    row = store.transient(log_db, transient_id)
    if row is None:
        return None
    points = [_plain(p) for p in store.transient_points(log_db, transient_id)]
    return {"transient": _plain(row), "points": points}
