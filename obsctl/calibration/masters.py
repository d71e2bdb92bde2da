"""Calibration masters: their records, and which ones a frame may use.

`select_masters` picks the masters for a frame from the ``masters`` table; the `Calibrate`
stage (`obsctl.pipeline.calibrate`) applies them and `obsctl.calibration.build` makes them.

Matching rules (all kinds): same camera (the ``CAMERA`` header), binning, readout mode, gain,
offset and frame geometry; sensor temperature within a tolerance (or unknown for both); the
master's night within ``max_age_days`` of the frame's night, the closest first (for frames
processed during the night: the newest). Darks are matched on exposure time too, an exact
match first, else the nearest longer one, else the nearest shorter one, scaled to the frame's
exposure. Flats are matched on filter.

Conventions of the masters:

- **bias**: ADU, the bias level with its column and row structure;
- **dark**: *thermal only*: each dark has the master bias subtracted before combining, so the
  master is the dark signal (ADU) accumulated over its exposure time and scales linearly;
- **flat**: each flat has bias and dark (scaled to its exposure) subtracted and is divided by
  its own median; the combined master is normalised to a median of 1.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from obsctl.clock import parse_night
from obsctl.errors import ConfigError
from obsctl.store.exposure_log import ExposureLog

__all__ = [
    "KINDS",
    "MasterKind",
    "MasterRecord",
    "MasterSelection",
    "MasterSelector",
    "accept_geometry",
    "geometry_of",
    "load_master",
    "select_masters",
    "setup_of",
]

log = logging.getLogger(__name__)

MasterKind = Literal["bias", "dark", "flat"]
KINDS: tuple[MasterKind, ...] = ("bias", "dark", "flat")

# Exposure times closer than this (relative) are the same: headers round them differently.
_EXPOSURE_RTOL = 1e-3


@dataclass(frozen=True, slots=True)
class MasterRecord:
    """One master, as recorded in the ``masters`` table.

    Attributes
    ----------
    id : int
        Row id.
    kind : str
        ``bias``, ``dark`` or ``flat``.
    file_path : str
        The master FITS file, relative to the data directory.
    night : str or None
        Night (``YYYY-MM-DD``) of its input frames.
    camera, readout_mode : str or None
        Camera name and readout mode of its inputs.
    bin_x, bin_y : int or None
        Binning.
    gain, offset : int or None
        Gain and offset settings.
    ccd_temp_c : float or None
        Median sensor temperature of the inputs (degC).
    exposure_s : float or None
        Exposure time of the inputs (s): what a dark is scaled from.
    filter : str or None
        Filter (flats only).
    n_frames : int
        Frames combined.
    method : str
        ``median`` or ``sigma``.
    created_utc : str
        ISO time the master was built.
    """

    id: int
    kind: str
    file_path: str
    night: str | None
    camera: str | None
    bin_x: int | None
    bin_y: int | None
    readout_mode: str | None
    gain: int | None
    offset: int | None
    ccd_temp_c: float | None
    exposure_s: float | None
    filter: str | None
    n_frames: int
    method: str
    created_utc: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> MasterRecord:
        """Build a record from a ``masters`` row."""
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class MasterSelection:
    """The masters chosen for one frame; None where none matches."""

    bias: MasterRecord | None = None
    dark: MasterRecord | None = None
    flat: MasterRecord | None = None


# --------------------------------------------------------------------------- frame keys


@dataclass(frozen=True, slots=True)
class Setup:
    """What must be equal between a frame and a master (besides temperature and exposure)."""

    camera: str | None
    bin_x: int
    bin_y: int
    readout_mode: str | None
    gain: int | None
    offset: int | None


def header_int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def header_float(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def header_str(value: Any) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value).strip()


def setup_of(header: Mapping[str, Any], row: Mapping[str, Any] | None = None) -> Setup:
    """Return what a frame (header, else its log row) must share with its masters."""
    row = row or {}
    return Setup(
        camera=header_str(header.get("CAMERA", row.get("camera"))),
        bin_x=int(header.get("XBINNING", row.get("bin_x", 1))),
        bin_y=int(header.get("YBINNING", row.get("bin_y", 1))),
        readout_mode=header_str(header.get("READOUTM")),
        gain=header_int(header.get("GAIN", row.get("gain"))),
        offset=header_int(header.get("OFFSET", row.get("offset"))),
    )


def _night_date(text: Any) -> date | None:
    try:
        return parse_night(str(text)[:10])
    except ConfigError:  # a header's DATE-OBS need not be a date
        return None


def _frame_night(header: Mapping[str, Any]) -> date | None:
    for key in ("DAY-OBS", "DATE-OBS"):
        if key in header and (night := _night_date(header[key])) is not None:
            return night
    return None


def _same_exposure(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_EXPOSURE_RTOL, abs_tol=1e-6)


def load_master(path: Path) -> NDArray[np.float32]:
    """Read a master as a read-only native float32 array."""
    with fits.open(path, memmap=False) as hdul:
        data = np.ascontiguousarray(hdul[0].data, dtype=np.float32)
    data.flags.writeable = False
    return data


# --------------------------------------------------------------------------- selection


def _candidates(
    log_db: ExposureLog,
    kind: MasterKind,
    header: Mapping[str, Any],
    *,
    max_age_days: float,
    temperature_tolerance_c: float,
) -> list[MasterRecord]:
    """Return the matching masters of one kind, best first."""
    setup = setup_of(header)
    rows = log_db.masters_for(
        kind,
        camera=setup.camera,
        bin_x=setup.bin_x,
        bin_y=setup.bin_y,
        readout_mode=setup.readout_mode,
        gain=setup.gain,
        offset=setup.offset,
    )
    temp = header_float(header.get("CCD-TEMP"))
    night = _frame_night(header)
    exposure = header_float(header.get("EXPTIME", header.get("EXPOSURE")))
    filter_name = header_str(header.get("FILTER"))
    ranked: list[tuple[tuple[float, ...], MasterRecord]] = []
    for row in rows:
        m = MasterRecord.from_row(row)
        if (temp is None) != (m.ccd_temp_c is None):
            continue
        if (
            temp is not None
            and m.ccd_temp_c is not None
            and abs(temp - m.ccd_temp_c) > temperature_tolerance_c
        ):
            continue
        age = 0.0
        master_night = _night_date(m.night)
        if night is not None and master_night is not None:
            age = abs((night - master_night).days)
        if age > max_age_days:
            continue
        if kind == "flat" and (filter_name or "").upper() != (m.filter or "").upper():
            continue
        created = datetime.fromisoformat(m.created_utc).timestamp()
        rank: tuple[float, ...] = (age, -created, -m.id)
        if kind == "dark":
            if exposure is None or m.exposure_s is None or not m.exposure_s > 0:
                continue
            if _same_exposure(m.exposure_s, exposure):
                tier = 0  # no scaling at all
            elif m.exposure_s > exposure:
                tier = 1  # scaling down also scales down the dark's noise
            else:
                tier = 2
            rank = (tier, abs(m.exposure_s - exposure) if tier else 0.0, *rank)
        ranked.append((rank, m))
    ranked.sort(key=lambda item: item[0])
    return [m for _, m in ranked]


def select_masters(
    log_db: ExposureLog,
    header: Mapping[str, Any],
    *,
    max_age_days: float,
    temperature_tolerance_c: float,
    accept: Callable[[MasterRecord], bool] | None = None,
) -> MasterSelection:
    """Pick the masters for a frame.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log with its ``masters`` table.
    header : mapping
        The frame's FITS header (``CAMERA``, ``XBINNING``, ``YBINNING``, ``READOUTM``,
        ``GAIN``, ``OFFSET``, ``CCD-TEMP``, ``EXPTIME``, ``FILTER``, ``DAY-OBS``).
    max_age_days : float
        Largest distance (days) between the master's night and the frame's.
    temperature_tolerance_c : float
        Largest sensor temperature difference (degC).
    accept : callable, optional
        Further test of a candidate (for example that its geometry fits the frame); the best
        candidate that passes is chosen.

    Returns
    -------
    MasterSelection
        The best master of each kind, None where none matches. See the module docstring for
        the rules.
    """
    chosen: dict[str, MasterRecord | None] = {}
    for kind in KINDS:
        ranked = _candidates(
            log_db,
            kind,
            header,
            max_age_days=max_age_days,
            temperature_tolerance_c=temperature_tolerance_c,
        )
        chosen[kind] = next((m for m in ranked if accept is None or accept(m)), None)
    return MasterSelection(**chosen)


Geometry = tuple[int, int, int, int]  # ny, nx, subframe origin y, x (binned pixels)


def geometry_of(header: Mapping[str, Any], shape: tuple[int, int]) -> Geometry:
    """Return a frame's size and subframe origin (binned pixels)."""
    return shape[0], shape[1], int(header.get("YORGSUBF", 0)), int(header.get("XORGSUBF", 0))


def accept_geometry(data_dir: Path, geometry: Geometry) -> Callable[[MasterRecord], bool]:
    """Return a test that a master covers the same pixels as a frame (size and origin)."""

    def accept(m: MasterRecord) -> bool:
        path = data_dir / m.file_path
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return False
        return _master_geometry(str(path), stamp) == geometry

    return accept


@lru_cache(maxsize=256)
def _master_geometry(path: str, mtime_ns: int) -> Geometry | None:
    # Cached by modification time: a master is looked at for every frame, rebuilt rarely.
    try:
        header = fits.getheader(path)
    except (OSError, ValueError):
        return None
    return geometry_of(header, (int(header.get("NAXIS2", 0)), int(header.get("NAXIS1", 0))))


#: Chooses the masters for a frame header, for example a closure over `select_masters`.
MasterSelector = Callable[[fits.Header], MasterSelection]
