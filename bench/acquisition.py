"""Acquisition figures of the daemon on the Alpaca simulators, in real time (speed 1).

1. Per-frame overhead: time from the end of one download to the start of the next exposure,
   for a sequence of short light frames (the camera should never wait for disk or pipeline).
2. Safety latency: time from the safety monitor turning unsafe to the park command, and from
   rain at the simulated weather station to the dome's close command (a dome that may close
   at once: ``close_after_park = false``), each measured while a 61 MP (9576x6388) image
   download is in flight, repeated several times.

The simulators run in this process, as ``obsctl run`` does with the default config.
Prints medians and ranges; nothing is asserted.

Usage: ``python bench/acquisition.py [--frames N] [--trials N]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from simulated import bench_config, overhead_target

from obsctl.acquisition.safety import SafetySupervisor
from obsctl.acquisition.sequence import ExposureStep, Sequence
from obsctl.config import Config
from obsctl.daemon import Daemon
from obsctl.simulators.faults import Fault


def config(data: Path, width: int, height: int, *, enclosure: bool = False) -> Config:
    safety: dict[str, Any] = {"poll_s": 0.1, "read_timeout_s": 1.0, "resume_delay_s": 0.0}
    if not enclosure:
        return bench_config(data, width, height, safety=safety)
    safety |= {
        "close_after_park": False,
        "weather": {"limits": [{"quantity": "rain_rate_mm_h", "above": 0.0}]},
    }
    data_ = bench_config(data, width, height, safety=safety).model_dump(
        mode="json", exclude_unset=True
    )
    address = data_["devices"]["camera"]["address"]
    data_["devices"] |= {r: {"driver": "alpaca", "address": address} for r in ("dome", "weather")}
    data_["simulator"] |= {"dome": {"kind": "rotating", "shutter_time_s": 1.0}, "weather": {}}
    return Config.model_validate(data_)


async def overhead(frames: int, width: int, height: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(config(Path(tmp), width, height), serve_api=False)
        seq = Sequence(
            name="overhead",
            target=overhead_target(),
            steps=(ExposureStep(filter="V", exposure_s=1.0, count=frames),),
        )
        run = asyncio.create_task(daemon.run(install_signal_handlers=False))
        await daemon.started.wait()
        assert daemon.state is not None
        gaps: list[float] = []
        downloaded: float | None = None
        async with daemon.state.events.subscribe() as events:
            daemon.enqueue(seq)
            while len(gaps) < frames - 1:
                event: dict[str, Any] = await events.get()
                now = time.perf_counter()
                if event["kind"] == "downloaded":
                    downloaded = now
                elif (
                    event["kind"] == "activity"
                    and event["state"] == "exposing"
                    and downloaded is not None
                ):
                    gaps.append(now - downloaded)
                    downloaded = None
        daemon.request_stop()
        await run
    return gaps


async def safety_latency(trials: int, *, rain: bool = False) -> list[float]:
    """Unsafe -> park command (or, with ``rain``, rain -> close command) latencies (s)."""
    latencies = []
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(config(Path(tmp), 9576, 6388, enclosure=rain), serve_api=False)
        run = asyncio.create_task(daemon.run(install_signal_handlers=False))
        await daemon.started.wait()
        state = daemon.state
        sims = daemon.simulators
        assert state is not None and sims is not None
        obs = sims.observatory
        # Stretch each download to ~2 s so that the unsafe moment falls inside one.
        sims.faults("camera", 0).set(Fault(kind="throttle_image", rate_mb_s=60.0))
        for _ in range(trials):
            sid = daemon.enqueue(
                Sequence(
                    name="safety",
                    target=overhead_target(),
                    steps=(ExposureStep(filter="V", exposure_s=1.0, count=3),),
                )
            )
            while state.activity.state != "downloading":
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.3)  # well inside the download
            before = sent(state.supervisor, rain)
            unsafe_at = time.monotonic()
            if rain:
                obs.weather.set_values(rain_rate_mm_h=2.0)
            else:
                obs.safety_monitor.set_safe(False)
            while (done := sent(state.supervisor, rain)) in (None, before):
                await asyncio.sleep(0.001)
            assert done is not None
            latencies.append(done - unsafe_at)
            await daemon.stop_sequence(sid)
            if rain:
                obs.weather.set_values(rain_rate_mm_h=0.0)
            else:
                obs.safety_monitor.set_safe(True)
            while not state.supervisor.is_safe or state.activity.state != "idle":
                await asyncio.sleep(0.01)
        daemon.request_stop()
        await run
    return latencies


def sent(supervisor: SafetySupervisor, close: bool) -> float | None:
    """Return when the supervisor last sent the close (or else the park) command."""
    return supervisor.last_close_sent if close else supervisor.last_park_sent


def report(name: str, values: list[float]) -> None:
    ms = [1e3 * v for v in values]
    print(
        f"{name}: median {statistics.median(ms):.1f} ms, min {min(ms):.1f}, "
        f"max {max(ms):.1f} (n={len(ms)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    report(
        "overhead download end -> next exposure start, 3008x2008",
        asyncio.run(overhead(args.frames, 3008, 2008)),
    )
    report(
        "overhead download end -> next exposure start, 9576x6388",
        asyncio.run(overhead(max(4, args.frames // 3), 9576, 6388)),
    )
    report(
        "unsafe -> park command during a 61 MP download", asyncio.run(safety_latency(args.trials))
    )
    report(
        "rain -> dome close command during a 61 MP download",
        asyncio.run(safety_latency(args.trials, rain=True)),
    )


if __name__ == "__main__":
    main()
