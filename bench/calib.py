"""Calibration master build: time and memory of combining a stack of large frames.

Writes N raw bias-like frames (uint16, default 20 of 4096x4096, the FITS way: int16 with
BZERO) into a temporary data directory once, logs them, then measures, each in a fresh
process so that peak memory is its own:

1. the combination alone, frames read in row tiles with positioned reads (`FitsRows`):
   median and sigma-clipped mean, median time of a few runs;
2. ``calib build`` itself (`build_masters`: header reads, grouping, combination, the master
   written atomically and recorded in the database), median and sigma;
3. for comparison, the whole stack loaded as float32 and combined with ``numpy.median`` and
   with ``astropy.stats.sigma_clip`` + mean (one run each; several GB of memory).

Memory: ``heap`` is the tracemalloc peak (numpy's allocations) in a separate run; ``maxrss``
is the process's peak resident set (Python, numpy and astropy themselves take about 60 MB).
The input files are in the page cache (just written), so the figures exclude disk reads.

Prints figures; nothing is asserted.

Usage: ``python bench/calib.py [--frames N] [--size PX] [--runs N] [--skip-reference]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from obsctl.calibration.build import build_masters
from obsctl.calibration.fitsrows import FitsRows
from obsctl.processing.combine import median_combine, sigma_clipped_mean
from obsctl.store.exposure_log import ExposureLog, ExposureRecord
from obsctl.store.fitsfile import write_fits_atomic

NIGHT = "2026-11-25"


def write_frames(data_dir: Path, n: int, size: int) -> list[Path]:
    rng = np.random.default_rng(1)
    columns = rng.normal(0.0, 2.0, size).astype(np.float32)
    db = ExposureLog(data_dir / "obsctl.sqlite")
    paths = []
    start = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    try:
        for i in range(n):
            frame = rng.standard_normal((size, size), dtype=np.float32)
            frame *= np.float32(3.5)
            frame += columns[None, :] + np.float32(600.0)
            hits = rng.integers(0, size, (200, 2))  # cosmic-ray-like outliers
            frame[hits[:, 0], hits[:, 1]] += rng.uniform(500, 20000, 200).astype(np.float32)
            image = np.clip(np.rint(frame), 0, 65535).astype(np.uint16)
            when = start + timedelta(seconds=10 * i)
            header = fits.Header()
            header["DATE-OBS"] = when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
            header["DAY-OBS"] = NIGHT
            header["EXPTIME"] = 0.0
            header["IMAGETYP"] = "BIAS"
            header["XBINNING"] = 1
            header["YBINNING"] = 1
            header["GAIN"] = 0
            header["OFFSET"] = 10
            header["CCD-TEMP"] = -10.0
            header["READOUTM"] = "Normal"
            header["CAMERA"] = "bench camera"
            rel = f"raw/{NIGHT}/{NIGHT}_{i + 1:04d}_BIAS_cal_none_0s.fits"
            paths.append(write_fits_atomic(data_dir / rel, image, header))
            db.add_exposure(
                ExposureRecord(
                    night=NIGHT,
                    file_path=rel,
                    image_type="BIAS",
                    exposure_s=0.0,
                    date_obs=str(header["DATE-OBS"]),
                    mjd_start=61004.9 + i * 1e-4,
                    mjd_mid=61004.9 + i * 1e-4,
                    bin_x=1,
                    bin_y=1,
                    gain=0,
                    offset=10,
                    ccd_temp_c=-10.0,
                    camera="bench camera",
                )
            )
    finally:
        db.close()
    return paths


def _combine_tiled(paths: list[Path], method: str, tile_rows: int, threads: int) -> None:
    with ExitStack() as stack:
        frames = [stack.enter_context(FitsRows(p)) for p in paths]
        if method == "median":
            median_combine(frames, tile_rows=tile_rows, threads=threads)
        else:
            sigma_clipped_mean(frames, tile_rows=tile_rows, threads=threads)


def _build(data_dir: Path, method: str, tile_rows: int, threads: int) -> None:
    db = ExposureLog(data_dir / "obsctl.sqlite")
    try:
        built = build_masters(
            db, data_dir, night=NIGHT, method=method, tile_rows=tile_rows, threads=threads
        )
        assert len(built) == 1
    finally:
        db.close()


def _load_stack(paths: list[Path]) -> np.ndarray:
    first = fits.getdata(paths[0])
    stack = np.empty((len(paths), *first.shape), dtype=np.float32)
    for i, p in enumerate(paths):
        stack[i] = fits.getdata(p)
    return stack


def _numpy_median(paths: list[Path]) -> dict[str, float]:
    stack = _load_stack(paths)
    t0 = time.perf_counter()
    np.median(stack, axis=0)
    return {"combine_s": time.perf_counter() - t0}


def _astropy_sigma(paths: list[Path]) -> dict[str, float]:
    from astropy.stats import sigma_clip

    stack = _load_stack(paths)
    t0 = time.perf_counter()
    sigma_clip(stack, axis=0, sigma=3.0, maxiters=5).mean(axis=0)
    return {"combine_s": time.perf_counter() - t0}


def _child(task: str, args: tuple[Any, ...], runs: int, heap: bool) -> dict[str, Any]:
    func: Callable[..., Any] = {
        "tiled": _combine_tiled,
        "build": _build,
        "numpy": _numpy_median,
        "astropy": _astropy_sigma,
    }[task]
    if heap:
        tracemalloc.start()
        func(*args)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return {"heap_mb": peak / 2**20}
    times = []
    extra: dict[str, float] = {}
    for _ in range(runs):
        t0 = time.perf_counter()
        result = func(*args)
        times.append(time.perf_counter() - t0)
        if isinstance(result, dict):
            extra = result
    # ru_maxrss is in kilobytes on Linux.
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"times": times, "maxrss_mb": maxrss, **extra}


def measure(task: str, args: tuple[Any, ...], *, runs: int, heap: bool = True) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        result: dict[str, Any] = pool.apply(_child, (task, args, runs, False))
    if heap:
        with ctx.Pool(1) as pool:
            result |= pool.apply(_child, (task, args, 1, True))
    return result


def describe(label: str, r: dict[str, Any]) -> None:
    times = r["times"]
    text = f"{label:44s} median {statistics.median(times):6.2f} s"
    if len(times) > 1:
        text += f" (range {min(times):.2f}-{max(times):.2f}, {len(times)} runs)"
    if "combine_s" in r:
        text += f"; combine alone {r['combine_s']:.2f} s"
    text += f"; maxrss {r['maxrss_mb']:.0f} MB"
    if "heap_mb" in r:
        text += f", heap peak {r['heap_mb']:.0f} MB"
    print(text, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096, help="frame width and height (px)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tile-rows", type=int, default=256)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--skip-reference", action="store_true", help="skip numpy/astropy")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}"
    )
    n, size = args.frames, args.size
    stack_mb = n * size * size * 4 / 2**20
    tile_mb = n * args.tile_rows * size * 4 / 2**20
    print(
        f"{n} frames of {size}x{size} uint16; float32 stack {stack_mb:.0f} MB, "
        f"tile of {args.tile_rows} rows {tile_mb:.0f} MB, output {size * size * 6 / 2**20:.0f} MB "
        f"(float32 + uint16 count); {args.threads} threads"
    )
    with tempfile.TemporaryDirectory(prefix="obsctl-bench-calib-") as tmp:
        data_dir = Path(tmp)
        t0 = time.perf_counter()
        paths = write_frames(data_dir, n, size)
        print(f"wrote the frames in {time.perf_counter() - t0:.1f} s (page cache warm from here)")
        for method in ("median", "sigma"):
            r = measure("tiled", (paths, method, args.tile_rows, args.threads), runs=args.runs)
            describe(f"tiled combine, {method}", r)
        for method in ("median", "sigma"):
            r = measure("build", (data_dir, method, args.tile_rows, args.threads), runs=args.runs)
            describe(f"calib build (build_masters), {method}", r)
        r = measure("tiled", (paths, "sigma", args.tile_rows, 1), runs=args.runs, heap=False)
        describe("tiled combine, sigma, 1 thread", r)
        if not args.skip_reference:
            describe(
                "numpy.median, whole stack in memory",
                measure("numpy", (paths,), runs=1, heap=False),
            )
            describe(
                "astropy sigma_clip + mean, whole stack",
                measure("astropy", (paths,), runs=1, heap=False),
            )


if __name__ == "__main__":
    main()
