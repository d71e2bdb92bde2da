"""Run the pipeline's stages on frames, in worker processes, off the acquisition path.

SEP holds the GIL, so frames are processed in a pool of worker processes (each builds its
stages once). The event loop only claims queued frames from the database, hands their paths
to the pool and stores what comes back: metrics, measurements and the processing state. A
stage that fails is handled by its configured policy; the frame is marked with the stage and
the reason and the runner moves on. The raw frame is only ever read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import multiprocessing
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from numpy.typing import NDArray

from obsctl.classify.quality import grade_frame
from obsctl.events import EventBus
from obsctl.exposure_log import ExposureLog
from obsctl.fitsfile import write_fits_atomic
from obsctl.frame import Frame
from obsctl.headers import set_text_card
from obsctl.pipeline.queue import ProcessingQueue
from obsctl.pipeline.stage import FailurePolicy, Stage

__all__ = [
    "FrameResult",
    "PipelineRunner",
    "init_worker",
    "load_frame",
    "output_paths",
    "process_file",
    "run_stages",
    "worker_pool",
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


def load_frame(path: str | Path, exposure_id: int | None = None) -> Frame:
    """Read a FITS file (primary HDU or first image extension) into a `Frame`.

    Raises
    ------
    OSError, ValueError
        When the file is unreadable or holds no 2-D image; the caller reports and skips it.
    """
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
            reason = f"{type(exc).__name__}: {exc}"
            if policy == "abort":
                return frame, stage.name, reason, seconds
            if policy == "mark":
                frame = frame.flagged(f"{stage.name} failed: {reason}")
        finally:
            seconds[stage.name] = time.perf_counter() - start
    return frame, None, None, seconds


def output_paths(raw: Path, data_dir: Path | None) -> tuple[Path, Path]:
    """Where the calibrated frame and the catalog of a raw frame go.

    Frames of the raw store go to ``<data>/reduced/<night>/``; files from elsewhere get their
    outputs beside them.
    """
    stem = raw.name.removesuffix(".fits").removesuffix(".fit").removesuffix(".fts")
    if data_dir is not None and raw.parent.parent == data_dir / "raw":
        folder = data_dir / "reduced" / raw.parent.name
    else:
        folder = raw.parent
    return folder / f"{stem}_cal.fits", folder / f"{stem}_cat.fits"


_STAGES: StageList | None = None
_DATA_DIR: Path | None = None


def init_worker(factory: Callable[[], StageList], data_dir: str | None) -> None:
    """Build the stages once in a worker process (a process pool's initializer)."""
    global _STAGES, _DATA_DIR
    _STAGES = factory()
    _DATA_DIR = Path(data_dir) if data_dir else None


def worker_pool(
    workers: int, stage_factory: Callable[[], StageList], data_dir: Path | str | None
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
        initargs=(stage_factory, None if data_dir is None else str(data_dir)),
    )


def process_file(
    path: str,
    exposure_id: int | None = None,
    *,
    stages: StageList | None = None,
    data_dir: Path | None = None,
    write_outputs: bool = True,
) -> FrameResult:
    """Process one FITS file through the stages; write the calibrated frame and catalog.

    In a worker process the stages built by the pool initializer are used.
    """
    stages = stages if stages is not None else _STAGES
    data_dir = data_dir if data_dir is not None else _DATA_DIR
    assert stages is not None, "no stages: call through PipelineRunner or pass stages"
    result = FrameResult(path=path, exposure_id=exposure_id)
    try:
        frame = load_frame(path, exposure_id)
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
            table = Table(frame.sources)
            # HIERARCH: metric names are longer than FITS's eight characters.
            table.meta.update(
                {f"HIERARCH {k.upper()}": v for k, v in frame.metrics.items() if _finite(v)}
            )
            catalog.parent.mkdir(parents=True, exist_ok=True)
            tmp = catalog.with_name(f".{catalog.name}.tmp")
            table.write(tmp, format="fits", overwrite=True)
            tmp.replace(catalog)
            result.catalog_path = str(catalog)
    return result


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


_METRIC_COLUMNS = (
    "fwhm_px",
    "fwhm_arcsec",
    "hfr_px",
    "hfr_arcsec",
    "ellipticity",
    "star_count",
    "background",
    "background_rms",
    "zero_point",
    "zero_point_err",
    "limiting_mag",
    "wcs_rms_arcsec",
    # classify stage
    "n_star",
    "n_galaxy",
    "n_cosmic_ray",
    "n_hot_pixel",
    "n_artifact",
    "artifact_fraction",
)
_MEASUREMENT_COLUMNS = (
    "x",
    "y",
    "ra_deg",
    "dec_deg",
    "flux",
    "flux_err",
    "flux_auto",
    "flux_auto_err",
    "mag",
    "mag_err",
    "fwhm_px",
    "flags",
    # classify stage
    "source_class",
    "p_star",
    "p_galaxy",
    "p_cosmic_ray",
    "p_hot_pixel",
    "p_artifact",
)


def store_result(log_db: ExposureLog, queue: ProcessingQueue, result: FrameResult) -> None:
    """Write a frame's metrics, measurements and final state to the exposure log."""
    assert result.exposure_id is not None
    eid = result.exposure_id
    rel = _relative(log_db, result)
    if result.failed_stage is not None:
        queue.finish(eid, state="failed", stage=result.failed_stage, reason=result.reason)
        return
    m = result.metrics
    values = [m.get(c) if _finite(m.get(c)) else None for c in _METRIC_COLUMNS]
    log_db.execute(
        f"INSERT OR REPLACE INTO frame_metrics (exposure_id, {', '.join(_METRIC_COLUMNS)}, "
        f"flags) VALUES ({', '.join('?' for _ in range(len(_METRIC_COLUMNS) + 2))})",
        [eid, *values, "; ".join(result.flags) or None],
    )
    if "classify" in result.provenance:
        score, grade = grade_frame(log_db.query, eid, m)
        log_db.execute(
            "UPDATE frame_metrics SET quality_score = ?, quality_grade = ? WHERE exposure_id = ?",
            (score if math.isfinite(score) else None, grade, eid),
        )
    log_db.execute("DELETE FROM measurements WHERE exposure_id = ?", (eid,))
    if result.sources is not None and len(result.sources):
        src = result.sources
        names = src.dtype.names or ()
        columns = [c for c in _MEASUREMENT_COLUMNS if c in names]
        rows = zip(*(src[c].tolist() for c in columns), strict=True)
        log_db.executemany(
            f"INSERT INTO measurements (exposure_id, {', '.join(columns)}) "
            f"VALUES (?, {', '.join('?' for _ in columns)})",
            ([eid, *(_sql(v) for v in row)] for row in rows),
        )
    queue.finish(eid, state="done", calibrated_path=rel[0], catalog_path=rel[1])


def _sql(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _relative(log_db: ExposureLog, result: FrameResult) -> tuple[str | None, str | None]:
    base = log_db.path.parent
    out: list[str | None] = []
    for p in (result.calibrated_path, result.catalog_path):
        if p is None:
            out.append(None)
            continue
        try:
            out.append(str(Path(p).relative_to(base)))
        except ValueError:
            out.append(p)
    return out[0], out[1]


class PipelineRunner:
    """Feed queued frames to a pool of worker processes and store the results.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log with the processing queue.
    data_dir : pathlib.Path
        The data directory (raw frames are relative to it).
    stage_factory : callable
        Picklable callable building ``[(stage, policy), ...]`` in each worker.
    workers : int
        Worker processes.
    events : EventBus or None
        Publishes a ``processed`` event per frame.
    after_store : callable or None
        Awaited with the exposure id after a frame's results are stored (light curves and
        alerts); its errors are logged, never raised.
    """

    def __init__(
        self,
        log_db: ExposureLog,
        data_dir: Path,
        stage_factory: Callable[[], StageList],
        *,
        workers: int = 2,
        events: EventBus | None = None,
        after_store: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.after_store = after_store
        # Frames whose after-store step is running: done in the queue, not yet finished.
        self.finishing = 0
        self.log_db = log_db
        self.data_dir = data_dir
        self.queue = ProcessingQueue(log_db)
        self.stage_factory = stage_factory
        self.workers = workers
        self.events = events
        self._wake = asyncio.Event()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        #: Exposure ids handed to a worker and not stored yet.
        self.in_flight: set[int] = set()
        # Frames that were in a worker when one died, so each is retried once, not forever.
        self._crashed: set[int] = set()
        self._after_queue: asyncio.Queue[int] = asyncio.Queue()
        self.idle = asyncio.Event()

    def notify(self, exposure_id: int) -> None:
        """Queue a stored frame and wake the runner."""
        self.queue.enqueue(exposure_id)
        self.idle.clear()
        self._wake.set()

    async def run(self) -> None:
        """Process queued frames until cancelled."""
        self.queue.recover()
        self.queue.enqueue_unprocessed()
        self._pool = worker_pool(self.workers, self.stage_factory, self.data_dir)
        loop = asyncio.get_running_loop()
        running: dict[asyncio.Future[FrameResult], int] = {}
        after = None if self.after_store is None else asyncio.create_task(self._after_stored())
        try:
            while True:
                free = self.workers - len(running)
                claimed = await asyncio.to_thread(self.queue.claim, free) if free > 0 else []
                for eid in claimed:
                    path = await asyncio.to_thread(self._raw_path, eid)
                    if path is None:
                        self.queue.finish(eid, state="failed", stage="queue", reason="not logged")
                        continue
                    try:
                        future = loop.run_in_executor(self._pool, process_file, path, eid)
                    except concurrent.futures.BrokenExecutor:
                        # A worker died (killed, out of memory): the pool is unusable.
                        log.error("a pipeline worker died; starting new workers")
                        self._pool.shutdown(wait=False, cancel_futures=True)
                        self._pool = worker_pool(self.workers, self.stage_factory, self.data_dir)
                        future = loop.run_in_executor(self._pool, process_file, path, eid)
                    running[future] = eid
                    self.in_flight.add(eid)
                if not running:
                    self.idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                # Wait for a frame to finish, or for a new frame to fill a free worker.
                woken: asyncio.Future[Any] = asyncio.ensure_future(self._wake.wait())
                waiting: list[asyncio.Future[Any]] = [*running, woken]
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                self._wake.clear()
                for future in [f for f in running if f.done()]:
                    await self._store(running.pop(future), future)
        finally:
            if after is not None:  # frames left without light-curve points are caught up later
                after.cancel()
                self.finishing -= self._after_queue.qsize()
                self._after_queue = asyncio.Queue()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            self.in_flight.clear()  # left 'running' in the queue: recovered at the next start

    async def _after_stored(self) -> None:
        """Run the after-store step of stored frames, one at a time and in order.

        Apart from the storing itself, so that light curves and alert delivery (a webhook
        may take seconds) never hold up the next frame or its ``processed`` event.
        """
        assert self.after_store is not None
        while True:
            eid = await self._after_queue.get()
            try:
                await self.after_store(eid)
            except Exception:  # light curves must never stop frame processing
                log.exception("exposure %d: after-store step failed", eid)
            finally:
                self.finishing -= 1

    def _raw_path(self, exposure_id: int) -> str | None:
        rows = self.log_db.query("SELECT file_path FROM exposures WHERE id = ?", (exposure_id,))
        return str(self.data_dir / rows[0]["file_path"]) if rows else None

    async def _store(self, eid: int, future: asyncio.Future[FrameResult]) -> None:
        try:
            result = future.result()
        except concurrent.futures.BrokenExecutor as exc:
            if eid not in self._crashed:  # it may only have shared the pool with the culprit
                self._crashed.add(eid)
                self.in_flight.discard(eid)
                log.warning("exposure %d was in a worker that died; queued again", eid)
                self.notify(eid)
                return
            log.error("exposure %d: its worker died twice: %s", eid, exc)
            result = FrameResult(
                path="", exposure_id=eid, failed_stage="worker", reason="worker died twice"
            )
        except Exception as exc:  # the stage code raised past its policy: mark the frame
            log.error("processing exposure %d crashed: %s", eid, exc)
            result = FrameResult(
                path="",
                exposure_id=eid,
                failed_stage="worker",
                reason=f"{type(exc).__name__}: {exc}",
            )
        # Counted from before the frame is marked done, so that no one sees the queue idle
        # while its after-store step is still to run.
        self.finishing += 1
        handed_on = False
        try:
            await asyncio.to_thread(store_result, self.log_db, self.queue, result)
            self.in_flight.discard(eid)
            if result.failed_stage:
                log.warning("exposure %d: %s failed: %s", eid, result.failed_stage, result.reason)
            elif self.after_store is not None:
                self._after_queue.put_nowait(eid)  # `_after_stored` counts it down
                handed_on = True
        finally:
            if not handed_on:
                self.finishing -= 1
        if self.events is not None:
            self.events.publish(
                "processed",
                exposure_id=eid,
                failed_stage=result.failed_stage,
                reason=result.reason,
                metrics={k: v for k, v in result.metrics.items() if _finite(v)},
                flags=list(result.flags),
                sources=0 if result.sources is None else len(result.sources),
            )
