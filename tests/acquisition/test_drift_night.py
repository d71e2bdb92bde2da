"""Drift corrected from the science frames over Alpaca: the stars stay on their pixels.

The simulated mount drifts (polar misalignment: the error grows 90 arcsec an hour in RA and
45 in Dec since the last slew) while it tracks a field for 12 frames. With
``[drift_correction]`` the daemon measures each stored frame against the first and guides
the drift out with pulses; without it, the field walks away. The truth is the simulator's:
where the optics look as each light frame starts, watched in-process, in the frame's pixels.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from obsctl.acquisition.sequence import ExposureStep, Sequence, Target
from obsctl.clock import ScaledClock
from obsctl.config import Config
from obsctl.simulators.mount_model import local_sidereal_time_deg

from ..daemon_helpers import (
    LONGITUDE,
    daemon_config,
    on_each_light_frame,
    running_daemon,
    wait_for,
)

SPEED = 100.0
START = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
SCALE_ARCSEC = 206.264806 * 3.76 / 800.0
DEC_DEG = 20.0


def drift_config(data_dir: Path, *, correct: bool) -> Config:
    data = daemon_config(data_dir).model_dump(mode="json", exclude_unset=True)
    data["simulator"] |= {
        "speed": SPEED,
        "camera": {"width_px": 320, "height_px": 240, "readout_time_s": 0.5},
        "sky": {"star_density_per_deg2": 40_000.0, "galaxies": False},
        "mount": {"slew_rate_deg_s": 5.0, "drift_arcsec_per_h": (90.0, 45.0)},
    }
    data["drift_correction"] = {"enabled": correct}
    return Config.model_validate(data)


async def track(data_dir: Path, *, correct: bool) -> tuple[np.ndarray, list]:
    """Take 12 frames of 2 min; return where each looked from the first (px) and the record."""
    config = drift_config(data_dir, correct=correct)
    lst = local_sidereal_time_deg(START, LONGITUDE)
    target = Target(name="Drifting field", ra_deg=(lst + 20.0) % 360.0, dec_deg=DEC_DEG)
    sequence = Sequence(
        name="drift",
        target=target,
        steps=(ExposureStep(image_type="LIGHT", filter="V", exposure_s=120.0, count=12),),
    )
    looks: list[tuple[float, float]] = []
    async with running_daemon(config, clock=ScaledClock(SPEED, start=START)) as daemon:
        mount = daemon.simulators.observatory.mount  # type: ignore[union-attr]
        running = daemon.running

        def record() -> None:
            # Where the optics look at mid-exposure (the frame's stars' place).
            p = mount.true_pointing(after_s=60.0)
            looks.append((p.ra_deg, p.dec_deg))

        watcher = on_each_light_frame(running, record)
        sid = daemon.enqueue(sequence)
        await wait_for(lambda: daemon.sequence_state(sid) == "done", timeout_s=120)
        watcher.cancel()
        record = running.log_db.drift_visits()
    ra, dec = np.array(looks).T
    east = ((ra - ra[0] + 180.0) % 360.0 - 180.0) * math.cos(math.radians(DEC_DEG)) * 3600.0
    north = (dec - dec[0]) * 3600.0
    return np.column_stack([east, north]) / SCALE_ARCSEC, record


@pytest.mark.parametrize("correct", [True, False])
async def test_the_drift_is_guided_out(tmp_path: Path, correct: bool) -> None:
    offsets, record = await track(tmp_path, correct=correct)
    moved = np.hypot(*offsets.T)
    print(f"\ncorrection {correct}: frames off the first (px) {np.round(moved, 2).tolist()}")
    assert len(offsets) == 12
    if not correct:
        assert not record
        assert moved[-1] > 8.0  # the comparison means something
        return
    # The controller needs a few frames to learn the drift; then it holds the field.
    assert np.max(moved[6:]) <= 1.0
    (visit,) = record
    print(f"recorded: {visit}")
    assert visit["frames"] == 11 and visit["corrections"] >= 5 and visit["refused"] == 0
    assert visit["rms_px"] <= 2.0
