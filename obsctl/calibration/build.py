"""Building calibration masters from the logged bias, dark and flat frames.

`build_masters` groups the logged frames of a night (or of every night) by what makes them
interchangeable (`obsctl.calibration.masters`), combines each group into a master FITS file
in the data directory's masters (one folder per night) and records it in the ``masters`` table.

A dark group without a matching master bias, or a flat group without one, is skipped with a
warning: without the bias, neither can follow the conventions of the masters.
"""

from __future__ import annotations

import logging
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from obsctl.calibration.fitsrows import FitsRows
from obsctl.calibration.masters import (
    KINDS,
    MasterKind,
    MasterRecord,
    Setup,
    accept_geometry,
    header_float,
    header_str,
    load_master,
    select_masters,
    setup_of,
)
from obsctl.config import CalibrationConfig
from obsctl.processing.combine import (
    CombineResult,
    RowSource,
    Subtract,
    frame_levels,
    median_combine,
    sigma_clipped_mean,
)
from obsctl.store.datadir import DataDir
from obsctl.store.exposure_log import ExposureLog
from obsctl.store.fitsfile import write_fits_atomic
from obsctl.store.headers import set_text_card
from obsctl.store.raw_store import safe_name

__all__ = [
    "CombineMethod",
    "build_configured_masters",
    "build_masters",
    "frames_missing_masters",
    "kinds_affected",
]

log = logging.getLogger(__name__)

CombineMethod = Literal["median", "sigma"]

_IMAGETYP = {"bias": "MASTER BIAS", "dark": "MASTER DARK", "flat": "MASTER FLAT"}
_METHOD_NAME = {"median": "median", "sigma": "sigma-clipped mean"}
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


@dataclass(frozen=True)
class _Input:
    """One logged calibration frame with the header values that group it."""

    path: Path
    row: Mapping[str, Any]
    header: fits.Header
    setup: Setup
    shape: tuple[int, int]
    origin: tuple[int, int]
    night: str
    temp_c: float | None
    exposure_s: float
    filter: str | None


def _read_inputs(rows: Iterable[Mapping[str, Any]], data_dir: DataDir) -> list[_Input]:
    inputs = []
    for row in rows:
        path = data_dir.path(row["file_path"])
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
                setup=setup_of(header, row),
                shape=(int(header["NAXIS2"]), int(header["NAXIS1"])),
                origin=(int(header.get("YORGSUBF", 0)), int(header.get("XORGSUBF", 0))),
                night=str(row["night"]),
                temp_c=header_float(header.get("CCD-TEMP", row.get("ccd_temp_c"))),
                exposure_s=float(header.get("EXPTIME", row["exposure_s"])),
                filter=header_str(header.get("FILTER", row.get("filter"))),
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
    cfg: _BuildSettings,
    *,
    subtract: Subtract | None,
    scale: Sequence[float] | None,
) -> CombineResult:
    if cfg.method == "median":
        return median_combine(
            frames, subtract=subtract, scale=scale, tile_rows=cfg.tile_rows, threads=cfg.threads
        )
    return sigma_clipped_mean(
        frames,
        sigma=cfg.sigma,
        max_iters=cfg.max_iters,
        subtract=subtract,
        scale=scale,
        tile_rows=cfg.tile_rows,
        threads=cfg.threads,
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
    return MasterRecord.from_row(log_db.put_master(values))


def _master_header(
    kind: MasterKind,
    group: list[_Input],
    result: CombineResult,
    cfg: _BuildSettings,
    *,
    temp_c: float | None,
    exposure_s: float,
    used: Mapping[str, str],
) -> fits.Header:
    method, sigma, max_iters = cfg.method, cfg.sigma, cfg.max_iters
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
        set_text_card(h, "FILTER", group[0].filter, "filter in the beam")
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
    data_dir: DataDir
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
            accept=accept_geometry(cfg.data_dir.root, (*first.shape, *first.origin)),
        )
        if selection.bias is None:
            log.warning("no matching master bias for the %s; not built", label)
            return None
        bias = load_master(cfg.data_dir.path(selection.bias.file_path))
        used["MBIAS"] = Path(selection.bias.file_path).name
        subtract = bias
        if kind == "flat" and selection.dark is not None and selection.dark.exposure_s:
            dark = load_master(cfg.data_dir.path(selection.dark.file_path))
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
        result = _combine(frames, cfg, subtract=subtract, scale=scale)
    data = result.data
    if kind == "flat":
        data /= np.float32(np.median(data))
    name = _master_name(kind, group, temp_c)
    rel_path = cfg.data_dir.master_file(first.night, name)
    master_header = _master_header(
        kind, group, result, cfg, temp_c=temp_c, exposure_s=exposure_s, used=used
    )
    write_fits_atomic(cfg.data_dir.path(rel_path), data, master_header)
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
    data_dir: DataDir | str | Path,
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
    kinds: Sequence[MasterKind] = KINDS,
) -> list[MasterRecord]:
    """Combine the logged bias, dark and flat frames into masters.

    Biases are built first, then darks (each with the best matching master bias subtracted),
    then flats (bias and scaled dark subtracted, each normalised to its median, the master to
    1), so each kind can use the masters just built. Masters are written atomically to
    the data directory's masters and recorded in the ``masters`` table; rebuilding one
    replaces its file and row.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log.
    data_dir : DataDir, str or pathlib.Path
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
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown master kinds {sorted(unknown)}; expected {list(KINDS)}")
    cfg = _BuildSettings(
        data_dir=DataDir(data_dir),
        method=method,
        sigma=sigma,
        max_iters=max_iters,
        tile_rows=tile_rows,
        threads=threads if threads is not None else min(4, os.cpu_count() or 1),
        temperature_tolerance_c=temperature_tolerance_c,
        max_age_days=max_age_days,
    )
    built: list[MasterRecord] = []
    for kind in KINDS:
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
    data_dir: DataDir | str | Path,
    settings: CalibrationConfig,
    *,
    night: str | None = None,
    method: CombineMethod | None = None,
    kinds: Sequence[MasterKind] = KINDS,
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
    first = next((i for i, kind in enumerate(KINDS) if kind.upper() in types), len(KINDS))
    return list(KINDS[first:])


def frames_missing_masters(log_db: ExposureLog, night: str) -> list[int]:
    """Return the ids of a night's processed light frames flagged for a missing master.

    After new masters are built these are worth processing again: a frame taken before the
    night's darks (which come at dawn) was calibrated without them.
    """
    return log_db.lights_flagged(night, "no master")
