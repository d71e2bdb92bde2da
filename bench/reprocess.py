"""Archive reprocessing on Dask: frames/s against workers, overhead per task, the single writer.

A simulated night (`obsctl.simulators.archive`: M light frames of SIZE px with about a hundred
to a few hundred stars each) is filed in a temporary data directory as the daemon files it,
then reprocessed every way below, all five stages (calibrate, photometry, classify,
astrometry, zero point), results written to the exposure log:

1. Dask: `obsctl.pipeline.reprocess.reprocess` on a `LocalCluster` of 1, 2 and (when the
   machine has more cores) all-cores worker processes, one thread each. Wall time from the
   first task handed over to the last result written (the cluster's start and the workers'
   stage building are excluded, the start printed apart; a first run warms the workers up
   and is not counted), median of R runs, frames/s.
2. The same frames through the live pipeline's pool (`worker_pool`, spawn processes, stages
   built once each, a warm-up frame per worker excluded), results written by the same batched
   writer: the comparison for Dask's overhead (the goal: a 2-worker LocalCluster within 15 %
   of the 2-worker pool).
3. Overhead per task: R rounds of K empty tasks through the same cluster (submit, schedule,
   run, result back, as `as_completed` sees them), per task; and the difference of the Dask
   and pool wall times per frame.
4. The writer alone: the results of a run written again into a copy of the log, in batches
   of B (one transaction each, as reprocess writes them), one transaction per frame, and one
   per statement (as the live runner writes a frame), frames/s and measurement rows/s (goal
   >= 50 frames/s).
5. A paper projection for a million frames on N workers: each worker does 1/c frames/s
   (c the measured per-frame cost of one worker; ``--frame-cost-s`` for another frame size,
   e.g. the 4096 px frame of bench/pipeline.py), the writer W frames/s (measured rows/s over
   ``--sources`` sources per frame); throughput min(N / c, W), and where the writer saturates.

Prints figures; nothing is asserted. Usage: ``python bench/reprocess.py [--frames M]
[--size SIZE] [--repeats R] [--tasks K] [--batch B] [--frame-cost-s C] [--sources S]``
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import dask
import distributed
import numpy as np

from obsctl.embedded import reference_catalog
from obsctl.pipeline import worker
from obsctl.pipeline.queue import ProcessingQueue
from obsctl.pipeline.reprocess import ResultWriter, Selection, dask_client, reprocess
from obsctl.pipeline.runner import store_result
from obsctl.pipeline.runs import ReprocessRuns
from obsctl.pipeline.stages import build_stages
from obsctl.pipeline.worker import FrameResult, process_file, worker_pool
from obsctl.simulators.archive import take_night, write_config
from obsctl.store.datadir import DataDir

WRITE_GOAL = 50.0  # frames/s, measured alone
DASK_GOAL = 0.15  # a LocalCluster of 2 within 15 % of the pool of 2


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def dask_runs(config: Any, workers: int, repeats: int) -> tuple[list[float], float, int]:
    """Return the wall times of `repeats` full runs, the start-up time and frames per run."""
    data_dir = DataDir(config.data.directory)
    factory = functools.partial(build_stages, config, data_dir, reference_catalog(config))
    walls: list[float] = []
    frames = 0
    t0 = time.perf_counter()
    with dask_client("local", workers=workers, dashboard=False) as client:
        started = time.perf_counter() - t0
        log_db = data_dir.open_log(existing=True)
        try:
            for k in range(repeats + 1):  # the first run warms the workers up, as the pool's
                summary = reprocess(
                    log_db, data_dir, factory, config.pipeline.stages, Selection(),
                    cluster=lambda: contextlib.nullcontext(client), new=True, refit_nights=False,
                )  # fmt: skip
                if summary.failed:
                    raise SystemExit(f"{summary.failed} frame(s) failed")
                if k:
                    walls.append(summary.wall_s)
                frames = summary.done
        finally:
            log_db.close()
    return walls, started, frames


def task_overhead(workers: int, tasks: int, repeats: int) -> float:
    """Return the median seconds per empty task, round trip, on a LocalCluster."""
    per_task = []
    with dask_client("local", workers=workers, dashboard=False) as client:
        for _ in range(repeats + 1):  # the first round warms the workers up
            t0 = time.perf_counter()
            futures = [client.submit(int, i, pure=False) for i in range(tasks)]
            for future in distributed.as_completed(futures):
                future.result()
            per_task.append((time.perf_counter() - t0) / tasks)
    return median(per_task[1:])


def _warm_up(path: str) -> int:
    worker.process_file(path)
    return os.getpid()


def pool_runs(config: Any, workers: int, repeats: int, batch: int) -> list[float]:
    """Wall times of the same frames through `worker_pool`, written by the batched writer."""
    data_dir = DataDir(config.data.directory)
    factory = functools.partial(build_stages, config, data_dir, reference_catalog(config))
    log_db = data_dir.open_log(existing=True)
    runs = ReprocessRuns(log_db)
    ids = runs.select()
    files = runs.files(ids)
    walls = []
    pool = worker_pool(workers, factory, data_dir)
    try:
        seen: set[int] = set()
        for _ in range(5):  # warm-up: a frame on every worker (imports, stages)
            seen |= {
                f.result()
                for f in [
                    pool.submit(_warm_up, str(data_dir.path(files[ids[0]]))) for _ in range(workers)
                ]
            }
            if len(seen) == workers:
                break
        for _ in range(repeats):
            writer = ResultWriter(log_db, runs, 0, data_dir, _summary(), None)
            t0 = time.perf_counter()
            futures = [
                pool.submit(process_file, str(data_dir.path(files[eid])), eid) for eid in ids
            ]
            for future in concurrent.futures.as_completed(futures):
                writer.add(future.result())
                if len(writer.batch) >= batch:
                    writer.flush()
            writer.flush()
            walls.append(time.perf_counter() - t0)
    finally:
        pool.shutdown()
        log_db.close()
    return walls


def _summary() -> Any:
    from obsctl.pipeline.reprocess import Summary

    return Summary(0, False, 0, 0)


def write_rates(config: Any, tmp: Path, batch: int, repeats: int) -> tuple[dict[str, float], float]:
    """Write a run's results again into a copy of the log, three ways; frames/s of each.

    Returns the median frames/s per way (batches of ``batch``, a transaction per frame, a
    transaction per statement as the live runner writes) and the sources per frame.
    """
    data_dir = DataDir(config.data.directory)
    stages = build_stages(config, data_dir, reference_catalog(config))
    log_db = data_dir.open_log(existing=True)
    runs = ReprocessRuns(log_db)
    ids = runs.select()
    files = runs.files(ids)
    results: list[FrameResult] = [
        process_file(str(data_dir.path(files[eid])), eid, stages=stages, data_dir=data_dir)
        for eid in ids
    ]
    log_db.close()
    rows_per_frame = float(np.mean([len(r.sources) for r in results if r.sources is not None]))
    copy = DataDir(tmp / "writer")
    shutil.copytree(data_dir.root, copy.root, ignore=shutil.ignore_patterns("raw", "reduced"))
    log_db = copy.open_log(existing=True)
    runs = ReprocessRuns(log_db)
    queue = ProcessingQueue(log_db)
    stream = results * max(1, 400 // len(results))  # a few hundred frames per timing
    ways: dict[str, list[float]] = {
        f"batches of {batch}": [],
        "a transaction per frame": [],
        "a transaction per statement (live runner)": [],
    }
    try:
        for _ in range(repeats):
            for way, size in zip(ways, (batch, 1, 0), strict=True):
                writer = ResultWriter(log_db, runs, 0, copy, _summary(), None)
                t0 = time.perf_counter()
                for result in stream:
                    if size == 0:
                        assert result.exposure_id is not None
                        store_result(log_db, queue, result, copy)
                        runs.finish_frame(0, result.exposure_id, failed_stage=None,
                                          reason=None, seconds=None)  # fmt: skip
                        continue
                    writer.add(result)
                    if len(writer.batch) >= size:
                        writer.flush()
                writer.flush()
                ways[way].append(len(stream) / (time.perf_counter() - t0))
    finally:
        log_db.close()
    return {way: median(rates) for way, rates in ways.items()}, rows_per_frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="frames of the night")
    parser.add_argument("--size", type=int, default=512, help="frame width and height, px")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=500, help="empty tasks per round")
    parser.add_argument("--batch", type=int, default=50, help="results per transaction")
    parser.add_argument(
        "--frame-cost-s",
        type=float,
        default=None,
        help="per-frame cost of one worker for the projection (default: measured)",
    )
    parser.add_argument(
        "--sources",
        type=float,
        default=None,
        help="sources per frame for the projection (default: measured)",
    )
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(
        f"machine: {platform.platform()}, {cores} cores; Python {platform.python_version()}; "
        f"dask {dask.__version__}, distributed {distributed.__version__}, numpy {np.__version__}"
    )
    with tempfile.TemporaryDirectory(prefix="obsctl-bench-reprocess-") as name:
        tmp = Path(name)
        config = write_config(tmp / "obsctl.toml", tmp / "data", size_px=args.size)
        t0 = time.perf_counter()
        take_night(config, args.frames)
        took = time.perf_counter() - t0
        print(f"rendered {args.frames} frames of {args.size} px in {took:.1f} s")

        print(f"\n1. Dask LocalCluster, {args.frames} frames, median of {args.repeats} runs")
        rates: dict[int, float] = {}
        for workers in sorted({1, 2, cores}):
            walls, started, frames = dask_runs(config, workers, args.repeats)
            rates[workers] = frames / median(walls)
            print(
                f"   {workers} worker(s): {median(walls):6.2f} s -> {rates[workers]:6.2f} frames/s "
                f"(runs {', '.join(f'{w:.2f}' for w in walls)} s; cluster start {started:.1f} s)"
            )
        if 2 in rates:
            print(f"   2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")

        print(f"\n2. worker_pool, same frames and writer, median of {args.repeats} runs")
        pool_rates: dict[int, float] = {}
        for workers in sorted({1, 2}):
            walls = pool_runs(config, workers, args.repeats, args.batch)
            pool_rates[workers] = args.frames / median(walls)
            print(
                f"   {workers} worker(s): {median(walls):6.2f} s -> "
                f"{pool_rates[workers]:6.2f} frames/s"
            )
        for workers in pool_rates:
            ratio = rates[workers] / pool_rates[workers]
            goal = f" (goal >= {1 - DASK_GOAL:.2f})" if workers == 2 else ""
            print(f"   Dask / pool, {workers} worker(s): {ratio:.3f}{goal}")

        print("\n3. overhead per task")
        empty = task_overhead(2, args.tasks, args.repeats)
        print(f"   empty task round trip, 2 workers: {1e3 * empty:.2f} ms per task "
              f"(median of {args.repeats} rounds of {args.tasks})")  # fmt: skip
        for workers in pool_rates:
            extra = 1 / rates[workers] - 1 / pool_rates[workers]
            print(f"   Dask - pool, {workers} worker(s): {1e3 * extra:+.1f} ms per frame")

        print(
            f"\n4. the writer alone, median of {args.repeats} (goal >= {WRITE_GOAL:.0f} frames/s)"
        )
        written, rows = write_rates(config, tmp, args.batch, args.repeats)
        for way, rate in written.items():
            print(
                f"   {way:42s} {rate:7.1f} frames/s = {rate * rows:8.0f} measurement rows/s "
                f"({rows:.0f} sources per frame)"
            )
        batched = written[f"batches of {args.batch}"]
        print(f"   batches / per statement: {batched / list(written.values())[-1]:.2f}x")

        cost = args.frame_cost_s or 1.0 / rates[1]
        sources = args.sources or rows
        write = batched * rows / sources
        print(
            f"\n5. projection, 1 000 000 frames: {cost:.3f} s per frame per worker "
            f"({'given' if args.frame_cost_s else 'measured, 1 worker'}), writer {write:.0f} "
            f"frames/s at {sources:.0f} sources per frame"
        )
        saturation = write * cost
        for n in (1, 2, 8, 32, 128, 512, 2048):
            rate = min(n / cost, write)
            bound = "writer" if n / cost > write else "workers"
            print(
                f"   N = {n:5d}: {rate:8.1f} frames/s -> {1e6 / rate / 3600:8.2f} h ({bound}-bound)"
            )
        print(
            f"   the single writer saturates at N = {saturation:.0f} workers; past it: larger "
            "batches help little (the rows themselves cost), so shard the log per night (one "
            "writer each, merged by the Parquet export) or move results to a server database"
        )


if __name__ == "__main__":
    main()
