"""The safety supervisor and the weather: rain aborts, parks, then closes the roof; it waits.

A daemon on the Alpaca simulators over HTTP with a roll-off roof and a weather station; the
weather changes on the simulator's models, as a real station's would under the daemon.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from obsctl.acquisition.sequence import ExposureStep, Sequence
from obsctl.devices import ShutterState
from obsctl.simulators.faults import Fault

from ..daemon_helpers import (
    FEED_DEADLINE_S,
    RAIN_WAIT_MIN,
    RESUME_DELAY_S,
    enclosure_config,
    overhead_target,
    running_daemon,
    wait_for,
)


async def test_rain_aborts_parks_then_closes_waits_and_the_frame_is_retaken_under_an_open_roof(
    tmp_path: Path,
) -> None:
    async with running_daemon(enclosure_config(tmp_path / "data")) as daemon:
        sims = daemon.simulators
        assert sims is not None
        obs = sims.observatory
        dome, weather = obs.dome, obs.weather
        assert dome is not None and weather is not None
        supervisor, activity = daemon.running.supervisor, daemon.running.activity
        await wait_for(lambda: supervisor.is_safe)
        assert dome.shutter_state == ShutterState.CLOSED
        exposed_closed: list[str] = []

        async def watch() -> None:  # a light exposing under a roof that is not open
            while True:
                light = activity.state == "exposing" and activity.image_type == "LIGHT"
                if light and not activity.safety_abort and dome.shutter_state != ShutterState.OPEN:
                    exposed_closed.append(dome.shutter_state.name)
                await asyncio.sleep(0.001)

        watcher = asyncio.create_task(watch())
        lights = ExposureStep(image_type="LIGHT", filter="V", exposure_s=600.0, count=1)
        daemon.enqueue(Sequence(name="long", target=overhead_target(), steps=(lights,)))
        await wait_for(lambda: activity.state == "exposing")
        assert dome.shutter_state == ShutterState.OPEN  # the sequencer opened it

        weather.set_values(rain_rate_mm_h=1.5)
        rain_at = time.monotonic()
        await wait_for(lambda: not supervisor.is_safe)
        assert supervisor.reason.startswith("rain 1.5 mm/h (limit above 0 mm/h)")
        assert supervisor.safe_in_s is None  # no estimate while it rains
        await wait_for(lambda: activity.safety_abort)
        # The roof closes only over a parked telescope: watch both.
        parked_at = None
        while dome.shutter_state == ShutterState.OPEN:
            if parked_at is None and obs.mount.at_park:
                parked_at = time.monotonic()
            await asyncio.sleep(0.001)
        assert parked_at is not None and supervisor.last_close_sent is not None
        assert supervisor.last_park_sent is not None
        assert supervisor.last_park_sent < parked_at <= supervisor.last_close_sent
        print(f"rain -> close command: {supervisor.last_close_sent - rain_at:.3f} s (real)")
        await wait_for(lambda: dome.shutter_state == ShutterState.CLOSED)

        # The rain stops: unsafe for the wait and the resume delay, with an estimate.
        weather.set_values(rain_rate_mm_h=0.0)
        await wait_for(lambda: supervisor.safe_in_s is not None)
        assert 0 < supervisor.safe_in_s <= RAIN_WAIT_MIN * 60 + RESUME_DELAY_S
        assert "rain clear for" in supervisor.reason
        assert dome.shutter_state == ShutterState.CLOSED  # nothing opens it while unsafe
        cleared = obs.mount.clock.monotonic()
        await wait_for(lambda: supervisor.is_safe)
        waited = obs.mount.clock.monotonic() - cleared
        assert RAIN_WAIT_MIN * 60 + RESUME_DELAY_S <= waited < RAIN_WAIT_MIN * 60 + 40
        # Safe again: the sequencer reopens the roof and takes the frame again, whole.
        await wait_for(lambda: len(daemon.running.log_db.exposures()) == 1, timeout_s=60)
        assert dome.shutter_state == ShutterState.OPEN
        watcher.cancel()
        assert exposed_closed == []


async def test_a_silent_station_is_unsafe_after_its_deadline(tmp_path: Path) -> None:
    async with running_daemon(enclosure_config(tmp_path / "data")) as daemon:
        obs = daemon.simulators.observatory  # type: ignore[union-attr]
        supervisor = daemon.running.supervisor
        await wait_for(lambda: supervisor.is_safe)
        assert obs.weather is not None
        obs.weather.set_stalled(True)
        stalled = obs.mount.clock.monotonic()
        await wait_for(lambda: not supervisor.is_safe)
        assert obs.mount.clock.monotonic() - stalled >= FEED_DEADLINE_S - 5.0  # refresh step
        assert supervisor.reason.startswith("weather feed lost (nothing new for")
        obs.weather.set_stalled(False)
        await wait_for(lambda: supervisor.is_safe)


async def test_a_humidity_spike_inside_the_hysteresis_keeps_it_unsafe(tmp_path: Path) -> None:
    config = enclosure_config(tmp_path / "data", missing=["wind_gust_m_s"])
    async with running_daemon(config) as daemon:
        obs = daemon.simulators.observatory  # type: ignore[union-attr]
        supervisor = daemon.running.supervisor
        await wait_for(lambda: supervisor.is_safe)
        assert supervisor.weather is not None and supervisor.weather.values["humidity_pct"] == 50
        assert supervisor.weather.values["wind_gust_m_s"] is None  # a sensor it lacks
        assert obs.weather is not None
        obs.weather.set_values(humidity_pct=93.0)
        await wait_for(lambda: not supervisor.is_safe)
        obs.weather.set_values(humidity_pct=88.0)  # below the limit, above limit - hysteresis
        await asyncio.sleep(1.0)  # 100 s simulated: more than the 1 min wait
        assert not supervisor.is_safe and supervisor.safe_in_s is None
        obs.weather.set_values(humidity_pct=80.0)
        await wait_for(lambda: supervisor.is_safe)


@pytest.mark.parametrize("refuse_park", [False, True])
async def test_shutdown_closes_the_roof_over_a_parked_mount_and_never_over_an_unparked_one(
    tmp_path: Path, refuse_park: bool
) -> None:
    async with running_daemon(enclosure_config(tmp_path / "data")) as daemon:
        sims = daemon.simulators
        dome, mount = sims.observatory.dome, sims.observatory.mount
        await wait_for(lambda: daemon.running.supervisor.is_safe)
        dome.open_shutter()
        await wait_for(lambda: dome.shutter_state == ShutterState.OPEN)
        mount.unpark()
        if refuse_park:
            park = frozenset({"park"})
            sims.faults("telescope", 0).set(Fault(kind="http500", members=park, count=100))
    # The daemon has stopped: parked and closed, or left open over the unparked mount.
    if refuse_park:
        assert not mount.at_park and dome.shutter_state == ShutterState.OPEN
    else:
        assert mount.at_park and dome.shutter_state == ShutterState.CLOSED


async def test_a_mount_moved_off_park_while_unsafe_is_parked_again_then_the_roof_closes(
    tmp_path: Path,
) -> None:
    async with running_daemon(enclosure_config(tmp_path / "data")) as daemon:
        obs = daemon.simulators.observatory  # type: ignore[union-attr]
        dome, mount = obs.dome, obs.mount
        supervisor = daemon.running.supervisor
        await wait_for(lambda: supervisor.is_safe)
        dome.open_shutter()
        await wait_for(lambda: dome.shutter_state == ShutterState.OPEN)
        # A recovery that aborts the park (as the sequencer's does for a slew it did not
        # start) the moment the park is sent: the mount stands still away from park.
        mount.unpark()
        park = mount.park

        def park_then_abort() -> None:  # once
            park()
            mount.abort_slew()
            mount.park = park

        mount.park = park_then_abort
        obs.weather.set_values(humidity_pct=95.0)
        await wait_for(lambda: not supervisor.is_safe)
        await wait_for(lambda: mount.at_park, timeout_s=20)
        await wait_for(lambda: dome.shutter_state == ShutterState.CLOSED)
