"""The pipeline's worker side: one frame through the stages, in a worker process.

SEP holds the GIL, so frames are processed in a pool of worker processes (each builds its
stages once, `init_worker`). `process_file` reads a FITS file, applies the stages under their
failure policies, writes the calibrated frame and the source catalog, and sends back a
picklable `FrameResult`. The raw frame is only ever read.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import multiprocessing
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from numpy.typing import NDArray

from obsctl.errors import StageError
from obsctl.frame import DifferenceOutcome, Frame
from obsctl.pipeline.stage import FailurePolicy, Stage
from obsctl.store.datadir import DataDir
from obsctl.store.fitsfile import incomplete_fits, write_fits_atomic
from obsctl.store.headers import set_text_card

__all__ = [
    "FrameResult",
    "StageList",
    "catalog_table",
    "finite_number",
    "init_worker",
    "load_frame",
    "output_paths",
    "process_file",
    "run_stages",
    "worker_pool",
    "write_difference",
]

log = logging.getLogger(__name__)

StageList = list[tuple[Stage, FailurePolicy]]


@dataclass
class FrameResult:
    """What a worker sends back for one frame (picklable)."""

    path: str
    exposure_id: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    sources: NDArray[Any] | None = None
    flags: tuple[str, ...] = ()
    provenance: tuple[str, ...] = ()
    failed_stage: str | None = None
    reason: str | None = None
    calibrated_path: str | None = None
    catalog_path: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    #: Difference imaging's outcome, its cutouts left in `difference_path`'s file.
    difference: DifferenceOutcome | None = None
    difference_path: str | None = None


def load_frame(path: str | Path, exposure_id: int | None = None) -> Frame:
    """Read a FITS file (primary HDU or first image extension) into a `Frame`.

    Raises
    ------
    OSError, ValueError
        When the file is unreadable, holds less data than its headers declare (truncated,
        or a damaged NAXIS), or holds no 2-D image; the message names the file and what is
        wrong. The caller reports and skips it.
    """
    # Checked before astropy reads it: a header declaring terabytes makes astropy fail
    # with a bare "[Errno 22] Invalid argument" (a seek past what the file system allows).
    problem = incomplete_fits(path)
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    with fits.open(path, memmap=False) as hdul:
        for hdu in hdul:
            if hdu.data is not None and getattr(hdu.data, "ndim", 0) == 2:
                return Frame(
                    data=np.asarray(hdu.data),
                    header=hdu.header.copy(),
                    exposure_id=exposure_id,
                    path=str(path),
                )
    raise ValueError(f"{path}: no 2-D image in the file")


def run_stages(
    frame: Frame, stages: StageList
) -> tuple[Frame, str | None, str | None, dict[str, float]]:
    """Apply stages in order under their failure policies.

    Returns
    -------
    tuple
        The last good frame, the failed stage and reason (None when none aborted), and the
        seconds each stage took.
    """
    import time

    seconds: dict[str, float] = {}
    for stage, policy in stages:
        start = time.perf_counter()
        try:
            frame = stage.process(frame)
        except Exception as exc:  # a stage bug must not end the night: report it per policy
            # A stage's own error says what failed; anything else is a bug, named by its type.
            reason = exc.reason if isinstance(exc, StageError) else f"{type(exc).__name__}: {exc}"
            if policy == "abort":
                return frame, stage.name, reason, seconds
            if policy == "mark":
                frame = frame.flagged(f"{stage.name} failed: {reason}")
        finally:
            seconds[stage.name] = time.perf_counter() - start
    return frame, None, None, seconds


def output_paths(raw: Path, data_dir: DataDir | Path | None) -> tuple[Path, Path]:
    """Where the calibrated frame and the catalog of a raw frame go (`DataDir.reduced_files`).

    Frames of the raw store go to the data directory's reduced frames; files from elsewhere
    get their outputs beside them.
    """
    return DataDir(data_dir if data_dir is not None else raw.parent).reduced_files(raw)


_STAGES: StageList | None = None
_DATA_DIR: DataDir | None = None


def _exit_with_parent() -> None:
    """End this worker process as soon as the process that started it is gone.

    A worker outlives a daemon killed with SIGKILL otherwise, re-parented to init and
    holding the exposure log open. The spawn start method leaves the worker the read end
    of a pipe whose other end only the parent holds: it turns readable when the parent
    dies, however it died. A thread waits on it (not PR_SET_PDEATHSIG, which fires when
    the *thread* that started the worker ends, and the pool may start workers from any).
    The wait needs no polling; a stage holding the GIL delays the exit until it lets go.
    """
    parent = multiprocessing.parent_process()
    if parent is None:  # not started by multiprocessing: nothing to watch
        return

    def watch() -> None:
        parent.join()
        log.warning("the process that started this pipeline worker is gone; exiting")
        os._exit(1)  # no clean-up: the parent that wanted the results is gone

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def init_worker(factory: Callable[[], StageList], data_dir: DataDir | None) -> None:
    """Build the stages once in a worker process (a process pool's initializer).

    The worker exits when the process that started it dies (`_exit_with_parent`).
    """
    global _STAGES, _DATA_DIR
    _exit_with_parent()
    _STAGES = factory()
    _DATA_DIR = data_dir


def worker_pool(
    workers: int, stage_factory: Callable[[], StageList], data_dir: DataDir | Path | str | None
) -> concurrent.futures.ProcessPoolExecutor:
    """Return a pool of worker processes that build the stages once each."""
    # One BLAS thread per worker: the workers already fill the cores, and threaded BLAS
    # calls stalled for tens of milliseconds while the other core was busy.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    # spawn, not fork: the daemon has threads and an event loop that must not be copied.
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(stage_factory, None if data_dir is None else DataDir(data_dir)),
    )


def process_file(
    path: str,
    exposure_id: int | None = None,
    *,
    stages: StageList | None = None,
    data_dir: DataDir | Path | None = None,
    write_outputs: bool = True,
    start: Callable[[], Frame] | None = None,
) -> FrameResult:
    """Process one FITS file through the stages; write the calibrated frame and catalog.

    In a worker process the stages built by the pool initializer are used. ``start``, when
    given, returns the frame to begin from instead of the raw file (a reprocessing from a
    later stage on, `obsctl.pipeline.checkpoint`); its `OSError` or `ValueError` fails the
    frame in ``load`` as an unreadable raw file does.
    """
    stages = stages if stages is not None else _STAGES
    data_dir = data_dir if data_dir is not None else _DATA_DIR
    assert stages is not None, "no stages: call through PipelineRunner or pass stages"
    result = FrameResult(path=path, exposure_id=exposure_id)
    try:
        frame = load_frame(path, exposure_id) if start is None else start()
    except (OSError, ValueError) as exc:
        result.failed_stage, result.reason = "load", f"{type(exc).__name__}: {exc}"
        return result
    frame, result.failed_stage, result.reason, result.seconds = run_stages(frame, stages)
    result.metrics = dict(frame.metrics)
    result.sources = frame.sources
    result.flags = frame.flags
    result.provenance = frame.provenance
    if write_outputs and result.failed_stage is None:
        calibrated, catalog = output_paths(Path(path), data_dir)
        header = frame.header.copy()
        # One FWHM everywhere: the stars' median the database and the catalog hold (the
        # classifier's stars once it ran), not the photometry's first guess over all sources.
        fwhm = frame.metrics.get("fwhm_px", math.nan)
        if finite_number(fwhm):
            header["FWHM"] = (round(fwhm, 3), "[px] median FWHM of the stars")
        set_text_card(header, "PIPEPROV", ",".join(frame.provenance), "pipeline stages applied")
        for i, flag in enumerate(frame.flags):
            set_text_card(header, f"PIPEFLG{i + 1}", flag[:68], "pipeline warning")
        extensions = []
        if frame.cosmic_mask is not None:
            # Cosmic rays and hot pixels the classifier found (1 = masked), for stacking tools.
            crmask = fits.ImageHDU(frame.cosmic_mask.astype(np.uint8), name="CRMASK")
            crmask.header["COMMENT"] = "1 = cosmic-ray hit or hot pixel (obsctl classify)"
            extensions.append(crmask)
        write_fits_atomic(
            calibrated,
            np.asarray(frame.data, dtype=np.float32),
            header,
            durable=False,
            extensions=extensions,
        )
        result.calibrated_path = str(calibrated)
        if frame.sources is not None:
            meta = {**frame.metrics, "aperture_fwhm_px": frame.fwhm_px}
            meta["aperture_radius_px"] = frame.aperture_radius_px
            table = catalog_table(frame.sources, meta)
            catalog.parent.mkdir(parents=True, exist_ok=True)
            tmp = catalog.with_name(f".{catalog.name}.tmp")
            table.write(tmp, format="fits", overwrite=True)
            tmp.replace(catalog)
            result.catalog_path = str(catalog)
        if frame.difference is not None:
            path_out = DataDir(data_dir if data_dir is not None else Path(path).parent)
            result.difference_path = str(
                write_difference(path_out.difference_file(Path(path)), frame.difference)
            )
            result.difference = replace(frame.difference, cutouts=frame.difference.cutouts[:0])
    return result


def write_difference(path: Path, outcome: DifferenceOutcome) -> Path:
    """Write a frame's difference candidates (a table) and their cutouts (an image cube).

    HDU ``CANDIDATES``: one row per candidate then per forced target, zero-based pixels
    (``PIXORIGN`` 0: they index ``CUTOUTS``); ``CUTOUTS``: ``(n, 3, size, size)`` float32,
    new frame, reference and difference around each row, in the new frame's ADU.
    """
    table = fits.BinTableHDU(Table(outcome.candidates), name="CANDIDATES")
    table.header["PIXORIGN"] = (0, "x, y: zero-based, as the cutouts are indexed")
    table.header["REFID"] = (outcome.reference_id, "reference image subtracted")
    table.header["NDETECT"] = (outcome.detections, "rows that are detections")
    table.header["NTRUNC"] = (outcome.truncated, "detections left out")
    cube = fits.ImageHDU(outcome.cutouts, name="CUTOUTS")
    cube.header["COMMENT"] = "planes: new frame, reference, difference"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fits.HDUList([fits.PrimaryHDU(), table, cube]).writeto(tmp, overwrite=True)
    tmp.replace(path)
    return path


# Units of the catalog's columns by name (FITS TUNIT, in the FITS standard's spelling).
_UNITS = {
    "x": "pix", "y": "pix", "x_iso": "pix", "y_iso": "pix", "a": "pix", "b": "pix",
    "theta": "rad", "npix": "pix2", "fwhm_px": "pix", "hfr_px": "pix", "kron_radius": "",
    "peak": "adu", "background": "adu", "ra_deg": "deg", "dec_deg": "deg",
}  # fmt: skip
_PIXEL_COLUMNS = ("x", "y", "x_iso", "y_iso")


def _unit(column: str) -> str | None:
    if column in _UNITS:
        return _UNITS[column] or None
    if column.startswith("flux"):
        return "adu"
    if column.startswith(("mag", "ref_mag", "inst_mag")) or column.endswith("_mag"):
        return "mag"
    return None


def catalog_table(sources: NDArray[Any], meta: dict[str, Any]) -> Table:
    """Return a frame's source catalog as it is written: FITS pixel convention, with units.

    The pipeline measures in numpy's zero-based pixels; the file follows FITS (and
    SExtractor's ``X_IMAGE``): the centre of the first pixel is 1, said by ``PIXORIGN`` in
    its header, so DS9 regions and WCS tools read the positions as they are. Fluxes are in
    ADU of the calibrated frame; every column with a unit carries it (``TUNIT``).

    Parameters
    ----------
    sources : numpy.ndarray
        The frame's catalog (structured array, zero-based pixels).
    meta : dict
        Frame metrics to keep in the header (finite numbers only; HIERARCH keywords).

    Returns
    -------
    astropy.table.Table
        The table to write.
    """
    table = Table(sources)
    for name in _PIXEL_COLUMNS:
        if name in table.colnames:
            table[name] = table[name] + 1.0
    for name in table.colnames:
        unit = _unit(name)
        if unit is not None:
            table[name].unit = unit
    # HIERARCH: metric names are longer than FITS's eight characters.
    table.meta.update({f"HIERARCH {k.upper()}": v for k, v in meta.items() if finite_number(v)})
    table.meta["PIXORIGN"] = (1, "x, y: centre of the first pixel is 1 (FITS)")
    return table


def finite_number(value: Any) -> bool:
    """Return whether ``value`` is an int or a finite float (a storable metric)."""
    return isinstance(value, int | float) and math.isfinite(value)
