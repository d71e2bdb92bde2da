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
from obsctl.store.candidates import save_difference
from obsctl.store.datadir import DataDir
from obsctl.store.exposure_log import ExposureLog

__all__ = ["PipelineRunner", "store_result"]

log = logging.getLogger(__name__)


def store_result(
    log_db: ExposureLog,
    queue: ProcessingQueue,
    result: FrameResult,
    data_dir: DataDir | None = None,
) -> None:
    """Write a frame's metrics, measurements and final state to the exposure log.

    Output paths are logged relative to ``data_dir`` when they are inside it.
    """
    assert result.exposure_id is not None
    eid = result.exposure_id
    if result.failed_stage is not None:
        queue.finish(eid, state="failed", stage=result.failed_stage, reason=result.reason)
        return
    quality = None
    if "classify" in result.provenance:
        score, grade = grade_frame(log_db.best_metrics_of_field(eid), result.metrics)
        quality = (score if math.isfinite(score) else None, grade)
    queue.save_results(eid, result.metrics, result.flags, result.sources, quality)
    if result.difference is not None and result.difference_path is not None:
        where = data_dir.relative(result.difference_path) if data_dir else result.difference_path
        save_difference(log_db, eid, result.difference, where)
    paths = [
        None if p is None else (data_dir.relative(p) if data_dir is not None else p)
        for p in (result.calibrated_path, result.catalog_path)
    ]
    queue.finish(eid, state="done", calibrated_path=paths[0], catalog_path=paths[1])


class PipelineRunner:
    """Feed queued frames to a pool of worker processes and store the results.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log with the processing queue.
    data_dir : DataDir or pathlib.Path
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
    refit_nights : bool
        Fit the night's extinction and colour terms again (`obsctl.pipeline.nightfit`)
        after each processed frame, and publish a ``nightfit`` event. Refits queued while
        one runs are done once; its errors are logged, never raised.
    """

    def __init__(
        self,
        log_db: ExposureLog,
        data_dir: DataDir | Path,
        stage_factory: Callable[[], StageList],
        *,
        workers: int = 2,
        events: EventBus | None = None,
        after_store: Callable[[int], Awaitable[None]] | None = None,
        refit_nights: bool = True,
    ) -> None:
        self.after_store = after_store
        self.refit_nights = refit_nights
        # Frames whose after-store step is running: done in the queue, not yet finished.
        self.finishing = 0
        self.log_db = log_db
        self.data_dir = DataDir(data_dir)
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
        # Frames whose night is to be fitted again (`_refit`), counted in `finishing`.
        self._refit_queue: asyncio.Queue[int] = asyncio.Queue()
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
        refit = asyncio.create_task(self._refit()) if self.refit_nights else None
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
            for future in running:  # their results would reach no one now
                if not future.cancel() and not future.cancelled():
                    future.exception()  # done: its failure is seen, not "never retrieved"
            if after is not None:  # frames left without light-curve points are caught up later
                after.cancel()
                self.finishing -= self._after_queue.qsize()
                self._after_queue = asyncio.Queue()
            if refit is not None:  # refitted with the night's next frame
                refit.cancel()
                self.finishing -= self._refit_queue.qsize()
                self._refit_queue = asyncio.Queue()
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

    async def _refit(self) -> None:
        """Fit the nights of processed frames again, coalescing the frames queued meanwhile."""
        from obsctl.pipeline.nightfit import refit_night

        while True:
            eids = [await self._refit_queue.get()]
            while not self._refit_queue.empty():
                eids.append(self._refit_queue.get_nowait())
            try:
                nights = await asyncio.to_thread(self._nights_of, eids)
                for night in nights:
                    fits = await asyncio.to_thread(refit_night, self.log_db, night)
                    if self.events is not None:
                        self.events.publish(
                            "nightfit",
                            night=night,
                            filters={
                                name: {
                                    "mode": fit.mode,
                                    "k": fit.k if math.isfinite(fit.k) else None,
                                    "colour_term": fit.colour_term,
                                    "n_frames": fit.n_frames,
                                }
                                for name, fit in fits.items()
                            },
                        )
            except Exception:  # the night's fit must never stop frame processing
                log.exception("refitting the night of exposure(s) %s failed", eids)
            finally:
                self.finishing -= len(eids)

    def _nights_of(self, exposure_ids: list[int]) -> list[str]:
        nights: list[str] = []
        for eid in exposure_ids:
            row = self.log_db.exposure(eid)
            if row is not None and row["image_type"] == "LIGHT" and row["night"] not in nights:
                nights.append(str(row["night"]))
        return nights

    def _raw_path(self, exposure_id: int) -> str | None:
        row = self.log_db.exposure(exposure_id)
        return None if row is None else str(self.data_dir.path(row["file_path"]))

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
            await asyncio.to_thread(store_result, self.log_db, self.queue, result, self.data_dir)
            self.in_flight.discard(eid)
            if result.failed_stage:
                log.warning("exposure %d: %s failed: %s", eid, result.failed_stage, result.reason)
            else:
                if self.refit_nights:
                    self.finishing += 1
                    self._refit_queue.put_nowait(eid)  # `_refit` counts it down
                if self.after_store is not None:
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
