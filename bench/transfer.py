"""Download a 9576x6388 16-bit frame from the Alpaca camera simulator three ways.

1. obsctl's ImageBytes reader (`obsctl.drivers.alpaca.imagebytes.download_image`),
2. alpyca's ``Camera.ImageArray`` (the ASCOM Initiative's client) plus ``np.array``,
3. the JSON ImageArray, through obsctl's JSON fallback.

The simulator runs in its own process (``obsctl simulate``), as a real camera server would,
so client and server do not share a GIL. Prints MB/s per path (medians of several runs) and
the ratios. Goal: ImageBytes >= 2x alpyca and >= 15x JSON.

Usage: ``python bench/transfer.py [--runs N] [--width W --height H]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from simulated import free_port

CONFIG = """
version = 1
[site]
name = "bench"
latitude_deg = 28.76
longitude_deg = -17.88
[telescope]
focal_length_mm = 800
aperture_mm = 200
[devices.camera]
driver = "alpaca"
address = "127.0.0.1:{port}"
[simulator]
start = "never"
port = {port}
discovery_port = {discovery}
speed = 100.0
[simulator.camera]
width_px = {width}
height_px = {height}
readout_time_s = 0.1
"""


def wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("simulator did not start")


async def prepare(address: str) -> None:
    from obsctl.drivers.alpaca import AlpacaCamera, AlpacaClient

    client = AlpacaClient(address)
    try:
        camera = AlpacaCamera("camera", client, timeout_s=30.0)
        await camera.connect()
        await camera.start_exposure(1.0)
        async with asyncio.timeout(300):
            while not (await camera.status()).image_ready:
                await asyncio.sleep(0.1)
    finally:
        await client.close()


async def time_obsctl(address: str, runs: int, *, imagebytes: bool) -> tuple[list[float], int]:
    from obsctl.drivers.alpaca import AlpacaClient
    from obsctl.drivers.alpaca.imagebytes import download_image

    client = AlpacaClient(address)
    times: list[float] = []
    nbytes = 0
    try:
        for _ in range(runs):
            start = time.perf_counter()
            image = await download_image(
                client,
                0,
                device="camera",
                timeout_s=600.0,
                max_adu=65535,
                prefer_imagebytes=imagebytes,
            )
            times.append(time.perf_counter() - start)
            nbytes = image.nbytes
            del image
    finally:
        await client.close()
    return times, nbytes


def time_alpyca(address: str, runs: int) -> list[float]:
    from alpaca.camera import Camera

    cam = Camera(address, 0)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        # What a user has to do to get the same C-contiguous [y, x] array as obsctl gives.
        image = np.ascontiguousarray(np.array(cam.ImageArray, dtype=np.uint16).T)
        times.append(time.perf_counter() - start)
        del image
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="ImageBytes runs (others: 3)")
    parser.add_argument("--slow-runs", type=int, default=3, help="alpyca and JSON runs")
    parser.add_argument("--width", type=int, default=9576)
    parser.add_argument("--height", type=int, default=6388)
    args = parser.parse_args()

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.toml"
        config.write_text(
            CONFIG.format(port=port, discovery=free_port(), width=args.width, height=args.height)
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "obsctl.cli", "--config", str(config), "simulate"],
            cwd=tmp,
        )
        try:
            wait_for_port(port)
            address = f"127.0.0.1:{port}"
            asyncio.run(prepare(address))
            ib, nbytes = asyncio.run(time_obsctl(address, args.runs, imagebytes=True))
            alp = time_alpyca(address, args.slow_runs)
            js, _ = asyncio.run(time_obsctl(address, args.slow_runs, imagebytes=False))
        finally:
            server.terminate()
            server.wait(timeout=30)

    mb = nbytes / 1e6
    rows = [("obsctl ImageBytes", ib), ("alpyca ImageArray", alp), ("JSON ImageArray", js)]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"frame: {args.width}x{args.height} uint16 = {mb:.1f} MB")
    for name, times in rows:
        med = statistics.median(times)
        print(
            f"{name:20s} median {med:7.3f} s  {mb / med:8.1f} MB/s  "
            f"(runs: {', '.join(f'{t:.2f}' for t in times)})"
        )
    ib_med, alp_med, js_med = (statistics.median(t) for _, t in rows)
    print(f"ratio ImageBytes/alpyca: {alp_med / ib_med:.1f}x (goal >= 2x)")
    print(f"ratio ImageBytes/JSON:   {js_med / ib_med:.1f}x (goal >= 15x)")


if __name__ == "__main__":
    main()
