"""Calibration masters: building them from the exposure log, choosing them, applying them.

`build_masters` groups the logged bias, dark and flat frames of a night (or of every night) by
what makes them interchangeable, combines each group into a master FITS file under
``<data>/masters/<night>/`` and records it in the ``masters`` table. `select_masters` picks
the masters for a frame, and the `Calibrate` stage applies them.

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

A dark group without a matching master bias, or a flat group without one, is skipped with a
warning: without the bias, neither can follow these conventions.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from numpy.typing import NDArray

from obsctl.config import CalibrationConfig
from obsctl.errors import StageError
from obsctl.exposure_log import ExposureLog
from obsctl.fitsfile import write_fits_atomic
from obsctl.frame import Frame
from obsctl.headers import set_text_card
from obsctl.processing.calibrate import calibrate_image
from obsctl.processing.combine import (
    CombineResult,
    RowSource,
    Subtract,
    frame_levels,
    median_combine,
    sigma_clipped_mean,
)
from obsctl.raw_store import safe_name

__all__ = [
    "Calibrate",
    "FitsRows",
    "MasterKind",
    "MasterRecord",
    "MasterSelection",
    "build_masters",
    "select_masters",
]

log = logging.getLogger(__name__)

MasterKind = Literal["bias", "dark", "flat"]
CombineMethod = Literal["median", "sigma"]

_KINDS: tuple[MasterKind, ...] = ("bias", "dark", "flat")
_IMAGETYP = {"bias": "MASTER BIAS", "dark": "MASTER DARK", "flat": "MASTER FLAT"}
_METHOD_NAME = {"median": "median", "sigma": "sigma-clipped mean"}
# Exposure times closer than this (relative) are the same: headers round them differently.
_EXPOSURE_RTOL = 1e-3
# FITS BITPIX to the (big-endian) dtype of the data on disk.
_BITPIX_DTYPE = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
# Header cards copied from the first input frame onto a master.
_COPIED_CARDS = (
    "CAMERA",
    "INSTRUME",
    "XBINNING",
    "YBINNING",
    "XORGSUBF",
    "YORGSUBF",
    "XPIXSZ",
    "YPIXSZ",
    "READOUTM",
    "GAIN",
    "OFFSET",
    "EGAIN",
    "SET-TEMP",
    "TELESCOP",
)


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
class _Setup:
    """What must be equal between a frame and a master (besides temperature and exposure)."""

    camera: str | None
    bin_x: int
    bin_y: int
    readout_mode: str | None
    gain: int | None
    offset: int | None


def _opt_int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value).strip()


def _setup_of(header: Mapping[str, Any], row: Mapping[str, Any] | None = None) -> _Setup:
    row = row or {}
    return _Setup(
        camera=_opt_str(header.get("CAMERA", row.get("camera"))),
        bin_x=int(header.get("XBINNING", row.get("bin_x", 1))),
        bin_y=int(header.get("YBINNING", row.get("bin_y", 1))),
        readout_mode=_opt_str(header.get("READOUTM")),
        gain=_opt_int(header.get("GAIN", row.get("gain"))),
        offset=_opt_int(header.get("OFFSET", row.get("offset"))),
    )


def _night_date(text: Any) -> date | None:
    try:
        return date.fromisoformat(str(text)[:10])
    except ValueError:
        return None


def _frame_night(header: Mapping[str, Any]) -> date | None:
    for key in ("DAY-OBS", "DATE-OBS"):
        if key in header and (night := _night_date(header[key])) is not None:
            return night
    return None


def _same_exposure(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_EXPOSURE_RTOL, abs_tol=1e-6)


# --------------------------------------------------------------------------- reading frames


class FitsRows:
    """Rows of the first image in a FITS file, read on demand with positioned reads.

    Only the rows asked for are read and converted, so a stack of these combines within a
    tile of memory (`obsctl.processing.combine`). Reads go through ``os.preadv`` rather than a
    memory map, so the pages of dozens of large files never add up in the process's resident
    memory. The usual unsigned 16-bit encoding (int16 with ``BZERO = 32768``) is decoded by
    flipping the sign bit, without going through float. Several threads may read at once.

    Parameters
    ----------
    path : str or pathlib.Path
        The FITS file (uncompressed).

    Raises
    ------
    OSError
        If the file cannot be read.
    ValueError
        If it holds no two-dimensional uncompressed image.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.header, self._offset = self._image_header()
        bitpix = int(self.header["BITPIX"])
        if bitpix not in _BITPIX_DTYPE:
            raise ValueError(f"{self.path}: unsupported BITPIX {bitpix}")
        self._dtype = np.dtype(_BITPIX_DTYPE[bitpix])
        self._shape = (int(self.header["NAXIS2"]), int(self.header["NAXIS1"]))
        self._bzero = float(self.header.get("BZERO", 0.0))
        self._bscale = float(self.header.get("BSCALE", 1.0))
        self._u16 = bitpix == 16 and self._bzero == 32768.0 and self._bscale == 1.0
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        needed = self._offset + self._shape[0] * self._shape[1] * self._dtype.itemsize
        if os.fstat(self._fd).st_size < needed:
            self.close()
            raise OSError(f"{self.path}: file ends inside the image (truncated)")

    def _image_header(self) -> tuple[fits.Header, int]:
        """Return the header of the first 2-D image and where its data starts (bytes)."""
        with warnings.catch_warnings():
            # A truncated file is reported as an OSError (below), not as astropy's warning.
            warnings.simplefilter("ignore", AstropyUserWarning)
            with fits.open(self.path, memmap=False, do_not_scale_image_data=True) as hdul:
                for index, hdu in enumerate(hdul):
                    if not (hdu.is_image and hdu.header.get("NAXIS") == 2):
                        continue
                    if isinstance(hdu, fits.CompImageHDU):
                        raise ValueError(f"{self.path}: compressed images are not supported")
                    return hdu.header.copy(), int(hdul.fileinfo(index)["datLoc"])
        raise ValueError(f"{self.path}: no two-dimensional image")

    @property
    def shape(self) -> tuple[int, ...]:
        """``(ny, nx)`` of the image (pixels)."""
        return self._shape

    def _read(self, out: NDArray[Any], row: int) -> None:
        view = out.view(np.uint8).reshape(-1).data
        offset = self._offset + row * self._shape[1] * self._dtype.itemsize
        done = 0
        while done < view.nbytes:
            if hasattr(os, "preadv"):
                got = os.preadv(self._fd, [view[done:]], offset + done)
            else:  # Windows: no preadv; pread copies once more
                chunk = os.pread(self._fd, view.nbytes - done, offset + done)
                view[done : done + len(chunk)] = chunk
                got = len(chunk)
            if got <= 0:
                raise OSError(f"{self.path}: file ends inside the image (truncated)")
            done += got

    def __getitem__(self, key: slice, /) -> NDArray[Any]:
        """Return the rows selected by ``key`` as physical values (ADU)."""
        start, stop, step = key.indices(self._shape[0])
        rows = range(start, stop, step)
        raw = np.empty((len(rows), self._shape[1]), dtype=self._dtype)
        if step == 1:
            self._read(raw, start)
        else:
            for i, row in enumerate(rows):
                self._read(raw[i : i + 1], row)
        if self._u16:
            # int16 + 32768 is the same bits as uint16 with the top bit flipped; the ufunc's
            # output is native-endian whatever the file's byte order.
            flipped: NDArray[np.uint16] = np.bitwise_xor(raw.view(">u2"), np.uint16(0x8000))
            return flipped
        if self._bzero == 0.0 and self._bscale == 1.0:
            return raw
        scaled: NDArray[np.float32] = raw.astype(np.float32)
        scaled *= np.float32(self._bscale)
        scaled += np.float32(self._bzero)
        return scaled

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FitsRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _load_master(path: Path) -> NDArray[np.float32]:
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
    setup = _setup_of(header)
    rows = log_db.query(
        "SELECT * FROM masters WHERE kind = ? AND camera IS ? AND bin_x = ? AND bin_y = ? "
        "AND readout_mode IS ? AND gain IS ? AND offset IS ?",
        (
            kind,
            setup.camera,
            setup.bin_x,
            setup.bin_y,
            setup.readout_mode,
            setup.gain,
            setup.offset,
        ),
    )
    temp = _opt_float(header.get("CCD-TEMP"))
    night = _frame_night(header)
    exposure = _opt_float(header.get("EXPTIME", header.get("EXPOSURE")))
    filter_name = _opt_str(header.get("FILTER"))
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
    for kind in _KINDS:
        ranked = _candidates(
            log_db,
            kind,
            header,
            max_age_days=max_age_days,
            temperature_tolerance_c=temperature_tolerance_c,
        )
        chosen[kind] = next((m for m in ranked if accept is None or accept(m)), None)
    return MasterSelection(**chosen)


# --------------------------------------------------------------------------- building


@dataclass(frozen=True)
class _Input:
    """One logged calibration frame with the header values that group it."""

    path: Path
    row: Mapping[str, Any]
    header: fits.Header
    setup: _Setup
    shape: tuple[int, int]
    origin: tuple[int, int]
    night: str
    temp_c: float | None
    exposure_s: float
    filter: str | None


def _read_inputs(rows: Iterable[Mapping[str, Any]], data_dir: Path) -> list[_Input]:
    inputs = []
    for row in rows:
        path = data_dir / row["file_path"]
        try:
            with FitsRows(path) as rows_of_frame:
                header = rows_of_frame.header
        except (OSError, ValueError, KeyError) as exc:
            log.warning("calibration frame %s unreadable (%s); left out", path, exc)
            continue
        inputs.append(
            _Input(
                path=path,
                row=row,
                header=header,
                setup=_setup_of(header, row),
                shape=(int(header["NAXIS2"]), int(header["NAXIS1"])),
                origin=(int(header.get("YORGSUBF", 0)), int(header.get("XORGSUBF", 0))),
                night=str(row["night"]),
                temp_c=_opt_float(header.get("CCD-TEMP", row.get("ccd_temp_c"))),
                exposure_s=float(header.get("EXPTIME", row["exposure_s"])),
                filter=_opt_str(header.get("FILTER", row.get("filter"))),
            )
        )
    return inputs


def _temperature_clusters(inputs: list[_Input], tolerance_c: float) -> list[list[_Input]]:
    """Split frames into runs whose temperatures span at most ``tolerance_c``.

    Frames without a temperature form a group of their own.
    """
    known = sorted((i for i in inputs if i.temp_c is not None), key=lambda i: i.temp_c or 0.0)
    clusters: list[list[_Input]] = []
    start: float | None = None
    for item in known:
        assert item.temp_c is not None
        if start is not None and item.temp_c - start <= tolerance_c:
            clusters[-1].append(item)
        else:
            clusters.append([item])
            start = item.temp_c
    unknown = [i for i in inputs if i.temp_c is None]
    return [unknown, *clusters] if unknown else clusters


def _groups(inputs: list[_Input], kind: MasterKind, tolerance_c: float) -> list[list[_Input]]:
    by_key: dict[tuple[Any, ...], list[_Input]] = {}
    for item in inputs:
        key: tuple[Any, ...] = (item.night, item.setup, item.shape, item.origin)
        if kind == "dark":
            key += (round(item.exposure_s, 3),)
        elif kind == "flat":
            key += ((item.filter or "").upper(),)
        by_key.setdefault(key, []).append(item)
    groups = []
    for members in by_key.values():
        groups.extend(_temperature_clusters(members, tolerance_c))
    return groups


def _master_name(kind: MasterKind, group: list[_Input], temp_c: float | None) -> str:
    first = group[0]
    s = first.setup
    parts = [
        first.night,
        f"M{kind.upper()}",
        safe_name(s.camera, "camera")[:20],
        f"{s.bin_x}x{s.bin_y}",
        f"{first.shape[1]}x{first.shape[0]}",
    ]
    if first.origin != (0, 0):
        parts.append(f"at{first.origin[1]}-{first.origin[0]}")
    if s.readout_mode is not None:
        parts.append(safe_name(s.readout_mode))
    if s.gain is not None:
        parts.append(f"g{s.gain}")
    if s.offset is not None:
        parts.append(f"o{s.offset}")
    if temp_c is not None:
        parts.append(f"{temp_c:+.1f}C".replace("+", "p").replace("-", "m").replace(".", "p"))
    if kind == "dark":
        parts.append(f"{first.exposure_s:g}s".replace(".", "p"))
    if kind == "flat":
        parts.append(safe_name(first.filter))
    return "_".join(parts) + ".fits"


def _combine(
    frames: Sequence[RowSource],
    *,
    method: CombineMethod,
    sigma: float,
    max_iters: int,
    subtract: Subtract | None,
    scale: Sequence[float] | None,
    tile_rows: int,
    threads: int,
) -> CombineResult:
    if method == "median":
        return median_combine(
            frames, subtract=subtract, scale=scale, tile_rows=tile_rows, threads=threads
        )
    return sigma_clipped_mean(
        frames,
        sigma=sigma,
        max_iters=max_iters,
        subtract=subtract,
        scale=scale,
        tile_rows=tile_rows,
        threads=threads,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _record_master(
    log_db: ExposureLog,
    *,
    kind: MasterKind,
    rel_path: str,
    group: list[_Input],
    temp_c: float | None,
    exposure_s: float,
    method: CombineMethod,
) -> MasterRecord:
    s = group[0].setup
    values: dict[str, Any] = {
        "kind": kind,
        "file_path": rel_path,
        "night": group[0].night,
        "camera": s.camera,
        "bin_x": s.bin_x,
        "bin_y": s.bin_y,
        "readout_mode": s.readout_mode,
        "gain": s.gain,
        "offset": s.offset,
        "ccd_temp_c": temp_c,
        "exposure_s": exposure_s,
        "filter": group[0].filter if kind == "flat" else None,
        "n_frames": len(group),
        "method": method,
        "created_utc": _now(),
    }
    names = list(values)
    # Rebuilding a master replaces its file and its row (the file name is its identity).
    log_db.execute(
        f"INSERT INTO masters ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)}) "
        "ON CONFLICT (file_path) DO UPDATE SET "
        + ", ".join(f"{n} = excluded.{n}" for n in names if n != "file_path"),
        [values[n] for n in names],
    )
    row = log_db.query("SELECT * FROM masters WHERE file_path = ?", (rel_path,))[0]
    return MasterRecord.from_row(row)


def _master_header(
    kind: MasterKind,
    group: list[_Input],
    result: CombineResult,
    *,
    method: CombineMethod,
    sigma: float,
    max_iters: int,
    temp_c: float | None,
    exposure_s: float,
    used: Mapping[str, str],
) -> fits.Header:
    first = group[0].header
    h = fits.Header()
    h["IMAGETYP"] = (_IMAGETYP[kind], "combined calibration frame")
    h["DAY-OBS"] = (group[0].night, "night of the input frames")
    h["DATE"] = (_now()[:23], "[UTC] when this master was built")
    for key in _COPIED_CARDS:
        if key in first:
            h[key] = (first[key], first.comments[key])
    if temp_c is not None:
        temps = [i.temp_c for i in group if i.temp_c is not None]
        h["CCD-TEMP"] = (round(temp_c, 2), "[C] median sensor temperature of the inputs")
        h["CCDTMIN"] = (round(min(temps), 2), "[C] lowest input temperature")
        h["CCDTMAX"] = (round(max(temps), 2), "[C] highest input temperature")
    h["EXPTIME"] = (exposure_s, "[s] exposure time of the inputs")
    if kind == "flat" and group[0].filter is not None:
        h["FILTER"] = (group[0].filter, "filter in the beam")
    h["NCOMBINE"] = (len(group), "number of frames combined")
    h["COMBINE"] = (_METHOD_NAME[method], "combination method")
    if method == "sigma":
        h["CLIPSIG"] = (sigma, "clipping threshold (standard deviations)")
        h["CLIPITER"] = (max_iters, "largest number of clipping rounds")
        h["REJFRAC"] = (round(result.rejected_fraction, 6), "fraction of input values rejected")
    if kind == "bias":
        h["BUNIT"] = ("ADU", "bias level and structure")
    elif kind == "dark":
        h["BUNIT"] = ("ADU", "dark signal over EXPTIME")
        h["BIASSUB"] = (True, "master bias subtracted: thermal signal only")
    else:
        h["FLATNORM"] = (True, "inputs and master normalised to median 1")
    for key, name in used.items():
        set_text_card(h, key, name, f"master {key[1:].lower()} used on the inputs")
    h.add_history(f"obsctl calib build: {_METHOD_NAME[method]} of {len(group)} frames:")
    for item in group:
        h.add_history(item.path.name)
    return h


@dataclass(frozen=True)
class _BuildSettings:
    data_dir: Path
    method: CombineMethod
    sigma: float
    max_iters: int
    tile_rows: int
    threads: int
    temperature_tolerance_c: float
    max_age_days: float


def _representative(group: list[_Input], temp_c: float | None) -> fits.Header:
    """Return a header standing for the whole group when looking up masters for it."""
    header = group[0].header.copy()
    if temp_c is not None:
        header["CCD-TEMP"] = temp_c
    header["DAY-OBS"] = group[0].night
    return header


_Geometry = tuple[int, int, int, int]  # ny, nx, subframe origin y, x (binned pixels)


def _geometry(header: Mapping[str, Any], shape: tuple[int, int]) -> _Geometry:
    return shape[0], shape[1], int(header.get("YORGSUBF", 0)), int(header.get("XORGSUBF", 0))


def _accept_geometry(data_dir: Path, geometry: _Geometry) -> Callable[[MasterRecord], bool]:
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
def _master_geometry(path: str, mtime_ns: int) -> _Geometry | None:
    # Cached by modification time: a master is looked at for every frame, rebuilt rarely.
    try:
        header = fits.getheader(path)
    except (OSError, ValueError):
        return None
    return _geometry(header, (int(header.get("NAXIS2", 0)), int(header.get("NAXIS1", 0))))


def _build_group(
    log_db: ExposureLog, kind: MasterKind, group: list[_Input], cfg: _BuildSettings
) -> MasterRecord | None:
    temps = [i.temp_c for i in group if i.temp_c is not None]
    temp_c = statistics.median(temps) if temps else None
    exposure_s = statistics.median(i.exposure_s for i in group)
    header = _representative(group, temp_c)
    first = group[0]
    label = f"{kind} group of {len(group)} ({first.night}, {first.setup.camera}, {temp_c} C)"
    used: dict[str, str] = {}
    subtract: Subtract | None = None
    if kind in ("dark", "flat"):
        selection = select_masters(
            log_db,
            header,
            max_age_days=cfg.max_age_days,
            temperature_tolerance_c=cfg.temperature_tolerance_c,
            accept=_accept_geometry(cfg.data_dir, (*first.shape, *first.origin)),
        )
        if selection.bias is None:
            log.warning("no matching master bias for the %s; not built", label)
            return None
        bias = _load_master(cfg.data_dir / selection.bias.file_path)
        used["MBIAS"] = Path(selection.bias.file_path).name
        subtract = bias
        if kind == "flat" and selection.dark is not None and selection.dark.exposure_s:
            dark = _load_master(cfg.data_dir / selection.dark.file_path)
            used["MDARK"] = Path(selection.dark.file_path).name
            ratios = [i.exposure_s / selection.dark.exposure_s for i in group]

            def bias_and_dark(index: int, rows: slice) -> NDArray[np.float32]:
                part: NDArray[np.float32] = dark[rows] * np.float32(ratios[index])
                part += bias[rows]
                return part

            subtract = bias_and_dark
        elif kind == "flat":
            log.warning("no matching master dark for the %s; flats are bias-subtracted only", label)
    with ExitStack() as stack:
        try:
            frames = [stack.enter_context(FitsRows(i.path)) for i in group]
        except (OSError, ValueError) as exc:
            log.warning("cannot read the %s (%s); not built", label, exc)
            return None
        scale: list[float] | None = None
        if kind == "flat":
            levels = frame_levels(frames, subtract=subtract)
            if not np.all(levels > 0):
                log.warning("a flat of the %s has no signal above bias; not built", label)
                return None
            scale = [1.0 / float(level) for level in levels]
        result = _combine(
            frames,
            method=cfg.method,
            sigma=cfg.sigma,
            max_iters=cfg.max_iters,
            subtract=subtract,
            scale=scale,
            tile_rows=cfg.tile_rows,
            threads=cfg.threads,
        )
    data = result.data
    if kind == "flat":
        data /= np.float32(np.median(data))
    name = _master_name(kind, group, temp_c)
    rel_path = f"masters/{first.night}/{name}"
    master_header = _master_header(
        kind,
        group,
        result,
        method=cfg.method,
        sigma=cfg.sigma,
        max_iters=cfg.max_iters,
        temp_c=temp_c,
        exposure_s=exposure_s,
        used=used,
    )
    write_fits_atomic(cfg.data_dir / rel_path, data, master_header)
    record = _record_master(
        log_db,
        kind=kind,
        rel_path=rel_path,
        group=group,
        temp_c=temp_c,
        exposure_s=exposure_s,
        method=cfg.method,
    )
    log.info("built %s from %d frames (%s)", rel_path, len(group), _METHOD_NAME[cfg.method])
    return record


def build_masters(
    log_db: ExposureLog,
    data_dir: str | Path,
    *,
    night: str | None = None,
    method: CombineMethod = "sigma",
    sigma: float = 3.0,
    max_iters: int = 5,
    tile_rows: int = 256,
    temperature_tolerance_c: float = 2.0,
    max_age_days: float = 30.0,
    min_frames: int = 3,
    threads: int | None = None,
    kinds: Sequence[MasterKind] = _KINDS,
) -> list[MasterRecord]:
    """Combine the logged bias, dark and flat frames into masters.

    Biases are built first, then darks (each with the best matching master bias subtracted),
    then flats (bias and scaled dark subtracted, each normalised to its median, the master to
    1), so each kind can use the masters just built. Masters are written atomically to
    ``<data_dir>/masters/<night>/`` and recorded in the ``masters`` table; rebuilding one
    replaces its file and row.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log.
    data_dir : str or pathlib.Path
        The data directory, which logged file paths are relative to.
    night : str or None, optional
        Build only from this night's frames (``YYYY-MM-DD``); None builds every night.
    method : {"sigma", "median"}, optional
        Sigma-clipped mean around the median, or the median.
    sigma : float, optional
        Clipping threshold (standard deviations).
    max_iters : int, optional
        Largest number of clipping rounds.
    tile_rows : int, optional
        Rows of every input frame held in memory at once (see
        `obsctl.processing.combine.median_combine`).
    temperature_tolerance_c : float, optional
        Frames whose temperatures span at most this (degC) are combined together; also the
        tolerance when choosing the master bias (and dark) for darks and flats.
    max_age_days : float, optional
        How far (days) the master bias and dark used for darks and flats may be from them.
    min_frames : int, optional
        Groups with fewer frames are skipped with a warning.
    threads : int or None, optional
        Threads used by the combination; None uses up to 4 of the machine's cores.
    kinds : sequence of str, optional
        Which kinds to build.

    Returns
    -------
    list of MasterRecord
        The masters built, in build order.
    """
    unknown = set(kinds) - set(_KINDS)
    if unknown:
        raise ValueError(f"unknown master kinds {sorted(unknown)}; expected {list(_KINDS)}")
    cfg = _BuildSettings(
        data_dir=Path(data_dir),
        method=method,
        sigma=sigma,
        max_iters=max_iters,
        tile_rows=tile_rows,
        threads=threads if threads is not None else min(4, os.cpu_count() or 1),
        temperature_tolerance_c=temperature_tolerance_c,
        max_age_days=max_age_days,
    )
    built: list[MasterRecord] = []
    for kind in _KINDS:
        if kind not in kinds:
            continue
        rows = log_db.exposures(night=night, image_type=kind.upper())
        for group in _groups(_read_inputs(rows, cfg.data_dir), kind, temperature_tolerance_c):
            if len(group) < min_frames:
                log.warning(
                    "only %d %s frame(s) of %s at %s C; at least %d needed, not built",
                    len(group),
                    kind,
                    group[0].night,
                    group[0].temp_c,
                    min_frames,
                )
                continue
            record = _build_group(log_db, kind, group, cfg)
            if record is not None:
                built.append(record)
    return built


def build_configured_masters(
    log_db: ExposureLog,
    data_dir: str | Path,
    settings: CalibrationConfig,
    *,
    night: str | None = None,
    method: CombineMethod | None = None,
    kinds: Sequence[MasterKind] = _KINDS,
) -> list[MasterRecord]:
    """Build masters with the ``[calibration]`` settings (see `build_masters`)."""
    return build_masters(
        log_db,
        data_dir,
        night=night,
        method=method or settings.method,
        sigma=settings.sigma,
        tile_rows=settings.tile_rows,
        temperature_tolerance_c=settings.temperature_tolerance_c,
        max_age_days=settings.max_age_days,
        kinds=kinds,
    )


def kinds_affected(image_types: Iterable[str]) -> list[MasterKind]:
    """Return the master kinds to build again after new frames of these image types.

    A master is combined from bias-subtracted (darks) and dark-subtracted (flats) frames,
    so new biases call for new darks and flats, new darks for new flats.
    """
    types = {t.upper() for t in image_types}
    first = next((i for i, kind in enumerate(_KINDS) if kind.upper() in types), len(_KINDS))
    return list(_KINDS[first:])


def frames_missing_masters(log_db: ExposureLog, night: str) -> list[int]:
    """Return the ids of a night's processed light frames flagged for a missing master.

    After new masters are built these are worth processing again: a frame taken before the
    night's darks (which come at dawn) was calibrated without them.
    """
    rows = log_db.query(
        "SELECT e.id FROM exposures e JOIN frame_metrics m ON m.exposure_id = e.id "
        "WHERE e.night = ? AND e.image_type = 'LIGHT' AND m.flags LIKE '%no master%' "
        "ORDER BY e.id",
        (night,),
    )
    return [int(r["id"]) for r in rows]


# --------------------------------------------------------------------------- the stage

#: Chooses the masters for a frame header, for example a closure over `select_masters`.
MasterSelector = Callable[[fits.Header], MasterSelection]


class Calibrate:
    """Pipeline stage: bias, dark and flat correction with the best matching masters.

    The output is native, C-contiguous float32 (ADU, ``BUNIT``). The header records the
    masters used (``MBIAS``, ``MDARK`` with its scale ``MDARKSCL``, ``MFLAT``) and ``CALSTAT``
    (letters of the corrections applied: B, D, F). A missing master is not an error: the frame
    is calibrated with what exists and flagged ``no master bias`` (``dark``, ``flat``).

    Parameters
    ----------
    masters : ExposureLog, str, pathlib.Path or callable
        Where masters are looked up: the exposure log, the path of its database (opened on
        first use, so the stage can be built in a worker process), or a function choosing the
        masters from a frame header.
    data_dir : str or pathlib.Path
        The data directory master paths are relative to.
    max_age_days : float, optional
        Largest distance (days) between a master's night and the frame's.
    temperature_tolerance_c : float, optional
        Largest sensor temperature difference (degC).
    cache_size : int, optional
        Masters kept in memory (each is one float32 frame).
    """

    name = "calibrate"

    def __init__(
        self,
        masters: ExposureLog | str | Path | MasterSelector,
        data_dir: str | Path,
        *,
        max_age_days: float = 30.0,
        temperature_tolerance_c: float = 2.0,
        cache_size: int = 4,
    ) -> None:
        self._masters = masters
        self._log_db: ExposureLog | None = None
        self.data_dir = Path(data_dir)
        self.max_age_days = max_age_days
        self.temperature_tolerance_c = temperature_tolerance_c
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, int], NDArray[np.float32]] = OrderedDict()

    def close(self) -> None:
        """Close the exposure log if the stage opened it, and drop the cached masters."""
        if self._log_db is not None and not isinstance(self._masters, ExposureLog):
            self._log_db.close()
        self._log_db = None
        self._cache.clear()

    def _select(self, header: fits.Header, shape: tuple[int, int]) -> MasterSelection:
        if callable(self._masters):
            return self._masters(header)
        if self._log_db is None:
            self._log_db = (
                self._masters
                if isinstance(self._masters, ExposureLog)
                else ExposureLog(self._masters)
            )
        return select_masters(
            self._log_db,
            header,
            max_age_days=self.max_age_days,
            temperature_tolerance_c=self.temperature_tolerance_c,
            accept=_accept_geometry(self.data_dir, _geometry(header, shape)),
        )

    def _load(self, record: MasterRecord) -> NDArray[np.float32]:
        path = self.data_dir / record.file_path
        # The modification time is part of the key: a rebuilt master has the same name.
        key = (str(path), path.stat().st_mtime_ns)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        data = _load_master(path)
        self._cache[key] = data
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return data

    def process(self, frame: Frame) -> Frame:
        """Return the calibrated frame (see the class docstring).

        Raises
        ------
        StageError
            If the frame is not a 2-D image or the master table cannot be read.
        """
        if frame.data.ndim != 2:
            raise StageError(
                f"expected a 2-D image, got shape {frame.data.shape}",
                stage=self.name,
                frame_id=frame.exposure_id,
            )
        header = frame.header
        shape = (int(frame.data.shape[0]), int(frame.data.shape[1]))
        try:
            selection = self._select(header, shape)
        except Exception as exc:
            raise StageError(
                f"cannot look up masters: {exc}", stage=self.name, frame_id=frame.exposure_id
            ) from exc
        loaded: dict[str, tuple[MasterRecord, NDArray[np.float32]] | None] = {}
        problems: list[str] = []
        for kind in _KINDS:
            record = getattr(selection, kind)
            loaded[kind] = None
            if record is None:
                continue
            try:
                data = self._load(record)
            except (OSError, ValueError) as exc:
                log.warning(
                    "master %s unreadable (%s); frame left without it", record.file_path, exc
                )
                problems.append(f"master {kind} unreadable")
                continue
            if data.shape != shape:
                problems.append(f"master {kind} shape mismatch")
                continue
            loaded[kind] = (record, data)
        bias, dark, flat = loaded["bias"], loaded["dark"], loaded["flat"]
        exposure_s = float(header.get("EXPTIME", header.get("EXPOSURE", 0.0)))
        result = calibrate_image(
            frame.data,
            bias=None if bias is None else bias[1],
            dark=None if dark is None else dark[1],
            dark_exposure_s=None if dark is None else dark[0].exposure_s,
            exposure_s=exposure_s,
            flat=None if flat is None else flat[1],
        )
        out = header.copy()
        out["BUNIT"] = ("ADU", "pixel unit; corrections applied: CALSTAT")
        applied = ""
        for key, letter, entry in (
            ("MBIAS", "B", bias),
            ("MDARK", "D", dark),
            ("MFLAT", "F", flat),
        ):
            if entry is not None:
                set_text_card(out, key, Path(entry[0].file_path).name, "master used")
                applied += letter
        if result.dark_scale is not None:
            out["MDARKSCL"] = (result.dark_scale, "master dark scaled by this factor")
        out["CALSTAT"] = (applied or "none", "corrections applied: B bias, D dark, F flat")
        mask = frame.mask
        if result.bad_flat is not None and result.bad_flat.any():
            mask = result.bad_flat if mask is None else (mask | result.bad_flat)
        calibrated = frame.with_stage(self.name, data=result.data, header=out, mask=mask)
        for problem in problems:
            calibrated = calibrated.flagged(problem)
        for absent in result.missing:
            calibrated = calibrated.flagged(f"no master {absent}")
        return calibrated
