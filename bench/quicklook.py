"""Quick-look figures for a 61 MP (9576x6388) frame.

1. Preview generation: reading a calibrated (float32) or raw (uint16) 61 MP FITS file from
   the page cache, block-averaging it to the page's size, the display limits, and the PNG.
2. End to end: the daemon on simulators with a 61 MP camera and the pipeline, the quick-look
   page open in headless Chromium (Debian's /usr/bin/chromium); the time from each frame's
   ``processed`` event (server clock) to the new preview drawn in the page (browser clock,
   the same machine), as the page itself measures it. Goal: under 1 s.

Prints medians and ranges; nothing is asserted.

Usage: ``python bench/quicklook.py [--repeat N] [--frames N] [--skip-e2e] [--stages a,b]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from simulated import bench_config, overhead_target

from obsctl.acquisition.sequence import ExposureStep, Sequence
from obsctl.config import Config
from obsctl.daemon import Daemon
from obsctl.processing.display import block_mean, encode_png, render
from obsctl.store.fitsfile import write_fits_atomic
from obsctl.web.previews import bin_frame

WIDTH, HEIGHT = 9576, 6388
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PAGE_SIZE = 1280  # what the page asks for in a 1400 px wide window


def report(name: str, seconds: list[float]) -> None:
    ms = [1e3 * s for s in seconds]
    print(
        f"{name}: median {statistics.median(ms):.0f} ms, min {min(ms):.0f}, max {max(ms):.0f} "
        f"(n={len(ms)})"
    )


def synthetic_frame(rng: np.random.Generator) -> np.ndarray:
    image = rng.normal(1000.0, 12.0, (HEIGHT, WIDTH)).astype(np.float32)
    ys = rng.integers(5, HEIGHT - 5, 3000)
    xs = rng.integers(5, WIDTH - 5, 3000)
    image[ys, xs] += rng.uniform(200, 40000, 3000).astype(np.float32)
    return image


def preview_generation(repeat: int) -> None:
    rng = np.random.default_rng(61)
    image = synthetic_frame(rng)
    with tempfile.TemporaryDirectory() as tmp:
        calibrated = Path(tmp) / "cal.fits"
        raw = Path(tmp) / "raw.fits"
        write_fits_atomic(calibrated, image, durable=False)
        write_fits_atomic(raw, np.clip(image, 0, 65535).astype(np.uint16), durable=False)
        in_memory, binned_cal, binned_raw, png = [], [], [], []
        for _ in range(repeat):
            t = time.perf_counter()
            block_mean(image, 8)
            in_memory.append(time.perf_counter() - t)
            t = time.perf_counter()
            b = bin_frame(calibrated, PAGE_SIZE)
            binned_cal.append(time.perf_counter() - t)
            t = time.perf_counter()
            bin_frame(raw, PAGE_SIZE)
            binned_raw.append(time.perf_counter() - t)
            t = time.perf_counter()
            blob = encode_png(render(b.data, "zscale", b.limits["zscale"]))
            png.append(time.perf_counter() - t)
        print(f"preview of {WIDTH}x{HEIGHT} at {PAGE_SIZE} px: factor {b.factor}, ", end="")
        print(f"{b.data.shape[1]}x{b.data.shape[0]} px, PNG {len(blob) / 1e6:.2f} MB")
        report("  block mean, in memory (float32)", in_memory)
        report("  read + block mean + limits, calibrated float32 FITS", binned_cal)
        report("  read + block mean + limits, raw uint16 FITS", binned_raw)
        report("  stretch + PNG", png)


def config(data: Path, stages: list[str] | None) -> Config:
    pipeline = {"enabled": True, "workers": 1, "reference_catalog": "synthetic"}
    if stages is not None:
        pipeline["stages"] = stages
    return bench_config(data, WIDTH, HEIGHT, pipeline=pipeline)


async def end_to_end(frames: int, stages: list[str] | None) -> None:
    from playwright.async_api import async_playwright

    field = overhead_target()
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(config(Path(tmp), stages))
        run = asyncio.create_task(daemon.run(install_signal_handlers=False))
        await daemon.started.wait()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            await page.goto(f"{daemon.api_url}/")
            await page.wait_for_selector("body[data-ready]")
            daemon.enqueue(
                Sequence(
                    name="bench",
                    target=field,
                    steps=(ExposureStep(filter="V", exposure_s=1.0, count=frames),),
                )
            )
            started = time.perf_counter()
            await page.wait_for_function(
                f"window.quicklook.shown.length >= {frames}", timeout=600_000
            )
            shown = await page.evaluate("window.quicklook.shown")
            timings = await page.evaluate(
                """() => performance.getEntriesByType('resource')
                   .filter(e => e.name.includes('preview.png'))
                   .map(e => ({name: e.name, ms: e.duration,
                               server: (e.serverTiming || []).map(t => t.duration)}))"""
            )
            await browser.close()
        daemon.request_stop()
        await run
    print(
        f"{frames} frame(s) of {WIDTH}x{HEIGHT} taken and processed in "
        f"{time.perf_counter() - started:.0f} s"
    )
    report(
        "processed event -> frame shown in Chromium, 61 MP",
        [s["latency_ms"] / 1e3 for s in shown],
    )
    for s in shown:
        print(
            f"  exposure {s['exposure_id']}: {s['latency_ms']:.0f} ms, block {s['factor']}, "
            f"{s['sources']} sources"
        )
    for t in timings:
        print(f"  preview request {t['ms']:.0f} ms (server bin {t['server']})")
    print(json.dumps({"latency_ms": [round(s["latency_ms"]) for s in shown]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument(
        "--stages", help="pipeline stages, comma-separated (default: the configured default)"
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    preview_generation(args.repeat)
    if not args.skip_e2e:
        stages = None if args.stages is None else args.stages.split(",")
        asyncio.run(end_to_end(args.frames, stages))


if __name__ == "__main__":
    main()
