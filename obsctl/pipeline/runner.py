"""The pipeline's event-loop side: feed queued frames to the workers, store their results.

The event loop only claims queued frames from the database, hands their paths to the worker
pool (`obsctl.pipeline.worker`) and stores what comes back: metrics, measurements and the
processing state. A stage that fails is handled by its configured policy; the frame is marked
with the stage and the reason and the runner moves on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from obsctl.classify.quality import grade_frame
from obsctl.events import EventBus
from obsctl.pipeline.queue import ProcessingQueue
from obsctl.pipeline.worker import FrameResult, StageList, finite_number, process_file, worker_pool
from obsctl.store.exposure_log import ExposureLog

__all__ = ["PipelineRunner", "store_result"]

log = logging.getLogger(__name__)


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
    values = [m.get(c) if finite_number(m.get(c)) else None for c in _METRIC_COLUMNS]
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
                metrics={k: v for k, v in result.metrics.items() if finite_number(v)},
                flags=list(result.flags),
                sources=0 if result.sources is None else len(result.sources),
            )
