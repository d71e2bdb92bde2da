"""Flats from the flat panel: lit behind its closed cover, roof closed, rain or not.

A daemon on the Alpaca simulators over HTTP with a roll-off roof, a weather station and a
flip-flat (a flat panel on a motorised cover). The truth is the simulator's: the cover's and
the roof's own states while the flats are exposed, the panel's brightness, and the stored
frames' levels against the plan's target.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from astropy.io import fits

from obsctl.acquisition.sequence import ExposureStep, Sequence
from obsctl.acquisition.sequencer import _next_brightness
from obsctl.config import Config
from obsctl.devices import CalibratorState, CoverState, ShutterState

from ..daemon_helpers import enclosure_config, overhead_target, running_daemon, wait_for

TARGET_ADU = 20000.0
MAX_BRIGHTNESS = 255


def panel_config(data_dir: Path) -> Config:
    # It rains from the start: the flats need neither the sky nor the weather.
    data = enclosure_config(data_dir, rain_rate_mm_h=1.0).model_dump(
        mode="json", exclude_unset=True
    )
    address = data["devices"]["camera"]["address"]
    data["devices"]["cover_calibrator"] = {"driver": "alpaca", "address": address}
    data["simulator"]["cover_calibrator"] = {
        "max_brightness": MAX_BRIGHTNESS,
        "cover_time_s": 30.0,
        "warmup_s": 5.0,
        "start_open": True,  # the sequencer closes it for the flats
    }
    return Config.model_validate(data)


def test_the_brightness_scales_toward_the_level_within_the_panel() -> None:
    assert _next_brightness(10, 3.0, 255) == 30
    assert _next_brightness(200, 3.0, 255) == 255
    assert _next_brightness(255, 3.0, 255) is None  # at its brightest: nothing left
    assert _next_brightness(1, 0.1, 255) is None  # at its faintest
    assert _next_brightness(100, 0.5, 255) == 50


async def test_panel_flats_under_a_closed_roof_in_the_rain_then_lights_uncovered(
    tmp_path: Path,
) -> None:
    async with running_daemon(panel_config(tmp_path / "data")) as daemon:
        obs = daemon.simulators.observatory  # type: ignore[union-attr]
        panel, dome, camera = obs.cover_calibrator, obs.dome, obs.camera
        running = daemon.running
        await wait_for(lambda: running.supervisor.reason != "not checked yet")
        assert not running.supervisor.is_safe  # raining
        seen: list[tuple[CoverState, CalibratorState, ShutterState, int, bool]] = []

        async def watch() -> None:  # the devices' own states while a flat exposes
            while True:
                if running.activity.state == "exposing":
                    seen.append(
                        (
                            panel.cover_state,
                            panel.calibrator_state,
                            dome.shutter_state,
                            panel.brightness,
                            running.supervisor.is_safe,
                        )
                    )
                await asyncio.sleep(0.002)

        watcher = asyncio.create_task(watch())
        # 5 % of the lamp reaches a quarter of the level at the longest exposure allowed:
        # the sequencer must turn the lamp up.
        flats = ExposureStep(
            image_type="FLAT",
            filter="V",
            exposure_s=1.0,
            count=3,
            flat_target_adu=TARGET_ADU,
            flat_tolerance=0.1,
            flat_max_exposure_s=2.0,
            panel_brightness_pct=5.0,
        )
        first = daemon.enqueue(Sequence(name="panel flats", steps=(flats,)))
        await wait_for(lambda: daemon.sequence_state(first) == "done", timeout_s=60)
        rows = running.log_db.exposures()
        assert [r["image_type"] for r in rows] == ["FLAT"] * 3
        root = Path(daemon.config.data.directory)
        for row in rows:
            level = float(np.median(fits.getdata(root / row["file_path"])))
            assert abs(level / TARGET_ADU - 1.0) <= 0.1, level
            header = fits.getheader(root / row["file_path"])
            assert header["FLATSRC"] == "panel" and 1 <= header["PANELBRT"] <= MAX_BRIGHTNESS
        assert seen and all(s[0] == CoverState.CLOSED for s in seen)
        assert all(s[1] == CalibratorState.READY for s in seen)
        assert all(s[2] == ShutterState.CLOSED for s in seen)  # the roof never opened
        assert not any(s[4] for s in seen)  # it rained all along
        # From the configured lamp: the level needs about this brightness at 2 s (the
        # camera's offset and the flat field's vignetting are a few per cent).
        sim = obs.config
        needed = (
            TARGET_ADU * sim.camera.electrons_per_adu / (sim.sky.flat_panel_e_s * 2.0)
        ) * MAX_BRIGHTNESS
        assert abs(seen[-1][3] / needed - 1.0) < 0.2, (seen[-1][3], needed)

        # The rain stops: a light frame switches the panel off, opens the cover and the roof.
        seen.clear()
        obs.weather.set_values(rain_rate_mm_h=0.0)
        light = ExposureStep(image_type="LIGHT", filter="V", exposure_s=10.0, count=1)
        second = daemon.enqueue(Sequence(name="light", target=overhead_target(), steps=(light,)))
        await wait_for(lambda: daemon.sequence_state(second) == "done", timeout_s=60)
        watcher.cancel()
        assert seen and all(
            s[:3] == (CoverState.OPEN, CalibratorState.OFF, ShutterState.OPEN) for s in seen
        )
        # The sky reached the sensor: neither cover nor roof cut it (a 128 x 96 field holds
        # ~2 catalog stars, none in one frame of nine: not a test of the sky).
        truth = camera.last_truth
        assert truth is not None and truth.sky is not None and truth.sky.transmission > 0.9
