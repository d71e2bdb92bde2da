"""The safety supervisor runs on its own thread: a blocked daemon loop cannot delay the park.

The simulators run in a thread of their own here, as real hardware does beside the daemon,
so that stalling the daemon's event loop stalls only the daemon.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from obsctl.acquisition.sequence import ExposureStep, Sequence
from obsctl.config import Config
from obsctl.simulators.observatory import RunningSimulators, running_simulators

from ..daemon_helpers import daemon_config, overhead_target, running_daemon, wait_for

# The daemon's event loop is blocked this long (real seconds) while it turns unsafe.
STALL_S = 2.0


@contextmanager
def simulators_in_a_thread(config: Config) -> Iterator[RunningSimulators]:
    """Serve the config's simulators from another thread and event loop."""
    assert config.simulator is not None
    sim = config.simulator.model_copy(update={"start": "never"})
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        box["loop"], box["stop"] = asyncio.get_running_loop(), stop
        async with running_simulators(sim, config.site, config.telescope) as running:
            box["running"] = running
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(10), "the simulators did not start"
    try:
        yield box["running"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)


async def test_a_blocked_daemon_loop_does_not_delay_the_park(tmp_path: Path) -> None:
    config = daemon_config(tmp_path / "data", safety={"resume_delay_s": 0.0})
    assert config.simulator is not None
    config = config.model_copy(
        update={"simulator": config.simulator.model_copy(update={"start": "never"})}
    )
    with simulators_in_a_thread(config) as sims:
        async with running_daemon(config) as daemon:
            lights = ExposureStep(image_type="LIGHT", filter="V", exposure_s=300.0, count=1)
            daemon.enqueue(Sequence(name="long", target=overhead_target(), steps=(lights,)))
            await wait_for(lambda: daemon.running.activity.state == "exposing")
            supervisor = daemon.running.supervisor
            unsafe_at = time.monotonic()
            sims.observatory.safety_monitor.set_safe(False)
            time.sleep(STALL_S)  # noqa: ASYNC251 -- blocking the daemon's loop is the point
            parked_after = (supervisor.last_park_sent or float("inf")) - unsafe_at
            print(f"unsafe -> park command with the daemon's loop blocked: {parked_after:.3f} s")
            assert parked_after < STALL_S / 2
            await wait_for(lambda: sims.observatory.mount.at_park, timeout_s=30)
            # The daemon's loop hears of it once it runs again: the gate is closed.
            await wait_for(lambda: not supervisor.is_safe)
            assert daemon.running.activity.safety_abort
