"""Monitoring visits centred by the daemon: the target on the same pixel, night after night.

Two visits to one field, on two nights, with the mount on either side of the pier: the
simulated mount looks 15 arcmin off where it reports (a different error on each side) and
drifts 30 arcsec an hour. With ``[centring]`` the daemon solves a short frame after the slew
and corrects; the truth is the simulator's: where the optics look while each light frame
exposes (watched in-process), against the target, in pixels of the frame.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

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
SCALE_ARCSEC = 206.264806 * 3.76 / 800.0  # the conftest camera on the 800 mm telescope
# (dRA cos Dec, dDec) arcsec: 15 arcmin each side of the pier, in different directions.
ERROR_EAST = (720.0, -540.0)
ERROR_WEST = (-540.0, 720.0)
RA_DEG = 60.0
DEC_DEG = 20.0


def night_config(data_dir: Path, *, centring: bool) -> Config:
    data = daemon_config(data_dir).model_dump(mode="json", exclude_unset=True)
    data["simulator"] |= {
        "speed": SPEED,
        "camera": {"width_px": 320, "height_px": 240, "readout_time_s": 0.5},
        "sky": {"star_density_per_deg2": 40_000.0, "galaxies": False},
        "mount": {
            "slew_rate_deg_s": 5.0,
            "pointing_error_east_arcsec": ERROR_EAST,
            "pointing_error_west_arcsec": ERROR_WEST,
            "drift_arcsec_per_h": (30.0, 0.0),
        },
    }
    data["centring"] = {"enabled": centring, "exposure_s": 10.0}
    return Config.model_validate(data)


def start_at_hour_angle(day: int, ha_deg: float) -> datetime:
    """A time on night `day` of late November when the field is at an hour angle."""
    t = datetime(2026, 11, 24 + day, 22, 0, tzinfo=UTC)
    lst = local_sidereal_time_deg(t, LONGITUDE)
    ahead_deg = (RA_DEG + ha_deg - lst) % 360.0  # sidereal degrees until then
    return t.fromtimestamp(t.timestamp() + ahead_deg * 239.345, tz=UTC)


async def visit(data_dir: Path, start: datetime, *, centring: bool) -> tuple[list, list]:
    """Take five light frames of the field; return each frame's target offset (px) and the
    centring runs logged."""
    config = night_config(data_dir, centring=centring)
    target = Target(name="Monitored field", ra_deg=RA_DEG, dec_deg=DEC_DEG)
    sequence = Sequence(
        name="visit",
        target=target,
        steps=(ExposureStep(image_type="LIGHT", filter="V", exposure_s=60.0, count=5),),
    )
    offsets: list[tuple[float, float]] = []
    async with running_daemon(config, clock=ScaledClock(SPEED, start=start)) as daemon:
        mount = daemon.simulators.observatory.mount  # type: ignore[union-attr]
        running = daemon.running

        def record() -> None:
            p = mount.true_pointing()
            # Where the target falls from the frame's centre (east, north), px.
            cos_dec = math.cos(math.radians(DEC_DEG))
            east = ((RA_DEG - p.ra_deg + 180.0) % 360.0 - 180.0) * cos_dec * 3600.0
            north = (DEC_DEG - p.dec_deg) * 3600.0
            offsets.append((east / SCALE_ARCSEC, north / SCALE_ARCSEC))

        watcher = on_each_light_frame(running, record)
        sid = daemon.enqueue(sequence)
        await wait_for(lambda: daemon.sequence_state(sid) == "done", timeout_s=120)
        watcher.cancel()
        runs = running.log_db.centring_runs()
        side = mount.side_of_pier
    print(f"\n{side.name} side, centring {centring}: offsets (px) {np.round(offsets, 1).tolist()}")
    return offsets, runs


@pytest.mark.parametrize("centring", [True, False])
async def test_visits_on_two_nights_put_the_target_on_the_same_pixel(
    tmp_path: Path, centring: bool
) -> None:
    first, runs1 = await visit(tmp_path / "1", start_at_hour_angle(1, -30.0), centring=centring)
    second, runs2 = await visit(tmp_path / "2", start_at_hour_angle(2, 30.0), centring=centring)
    assert len(first) == len(second) == 5
    a, b = np.array(first), np.array(second)
    apart = np.hypot(*(a[:, None, :] - b[None, :, :]).T).max()
    off = max(np.hypot(*a.T).max(), np.hypot(*b.T).max())
    print(f"largest offset {off:.1f} px, largest frame-to-frame distance {apart:.1f} px")
    if not centring:
        assert not runs1 and not runs2
        assert off > 200  # 15 arcmin: the comparison means something
        return
    for runs in (runs1, runs2):
        assert len(runs) == 1, runs  # one per visit: the frames after it are not re-centred
        assert runs[0]["outcome"] == "centred", runs[0]["reason"]
        assert 1 <= runs[0]["corrections"] <= 3
    # Within 10 arcsec of the centre; within 5 px of each other across the nights.
    assert off * SCALE_ARCSEC <= 10.0
    assert apart <= 5.0


async def test_spiral_dithers_in_pixels_about_the_centred_target(tmp_path: Path) -> None:
    """Five frames dithered 12 px on a spiral: the optics move by the spiral, in pixels."""
    config = night_config(tmp_path, centring=True)
    data = config.model_dump(mode="json", exclude_unset=True)
    data["simulator"]["mount"]["drift_arcsec_per_h"] = (0.0, 0.0)
    config = Config.model_validate(data)
    target = Target(name="Dithered field", ra_deg=RA_DEG, dec_deg=DEC_DEG)
    sequence = Sequence(
        name="dithered",
        target=target,
        steps=(ExposureStep(image_type="LIGHT", filter="V", exposure_s=30.0, count=5),),
        dither_px=12.0,
        dither_pattern="spiral",
        dither_settle_s=5.0,
    )
    looks: list[tuple[float, float]] = []
    start = start_at_hour_angle(1, -30.0)
    async with running_daemon(config, clock=ScaledClock(SPEED, start=start)) as daemon:
        mount = daemon.simulators.observatory.mount  # type: ignore[union-attr]
        running = daemon.running

        def record() -> None:
            p = mount.true_pointing()
            cos_dec = math.cos(math.radians(DEC_DEG))
            # The frame's centre from the target, in pixels (x west, y north).
            x = -((p.ra_deg - RA_DEG + 180.0) % 360.0 - 180.0) * cos_dec * 3600.0
            y = (p.dec_deg - DEC_DEG) * 3600.0
            looks.append((x / SCALE_ARCSEC, y / SCALE_ARCSEC))

        watcher = on_each_light_frame(running, record)
        sid = daemon.enqueue(sequence)
        await wait_for(lambda: daemon.sequence_state(sid) == "done", timeout_s=120)
        watcher.cancel()
        rows = running.log_db.exposures()
        root = Path(config.data.directory)
        headers = [fits.getheader(root / r["file_path"]) for r in rows]
    # The square spiral's first points, times the step: written out, not computed.
    spiral = [(0, 0), (12, 0), (12, 12), (0, 12), (-12, 12)]
    print(f"\nlooked at (px) {np.round(looks, 2).tolist()}")
    assert len(looks) == 5
    assert np.allclose(looks, spiral, atol=0.5)
    assert [(h["DITHX"], h["DITHY"]) for h in headers] == [(float(x), float(y)) for x, y in spiral]
    scale = math.hypot(headers[1]["DITHE"], headers[1]["DITHN"]) / 12.0
    assert scale == pytest.approx(SCALE_ARCSEC, rel=1e-3)
