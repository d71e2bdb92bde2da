"""A meridian flip during a sequence: no frame lost, the target centred on both sides.

The simulated German equatorial mount keeps its side of the pier while it tracks past the
meridian and stops tracking 15 min (of hour angle) past it on the east-looking side, as a
real one stops before its tube hits the pier; its pointing error differs on each side. The
truth is the simulator's: the side and where the optics look while each light frame
exposes, and the times it stopped at its limit.
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from obsctl.acquisition.meridian import SIDEREAL_MIN_PER_DEG, flip_wait_s, hour_angle_deg
from obsctl.acquisition.sequence import ExposureStep, Sequence, Target
from obsctl.clock import ScaledClock
from obsctl.config import Config, MeridianFlipConfig
from obsctl.devices import PierSide
from obsctl.simulators.mount_model import local_sidereal_time_deg

from ..daemon_helpers import (
    LONGITUDE,
    daemon_config,
    on_each_light_frame,
    running_daemon,
    wait_for,
)

SPEED = 100.0
SCALE_ARCSEC = 206.264806 * 3.76 / 800.0
RA_DEG, DEC_DEG = 60.0, 20.0
SIDEREAL_S_PER_DEG = 239.345


def flip_config(data_dir: Path) -> Config:
    data = daemon_config(data_dir).model_dump(mode="json", exclude_unset=True)
    data["simulator"] |= {
        "speed": SPEED,
        "camera": {"width_px": 320, "height_px": 240, "readout_time_s": 0.5},
        "sky": {"star_density_per_deg2": 40_000.0, "galaxies": False},
        "mount": {
            "slew_rate_deg_s": 5.0,
            "pointing_error_east_arcsec": (300.0, -200.0),
            "pointing_error_west_arcsec": (-250.0, 350.0),
            "meridian_limit_deg": 15.0 / 4.0,  # 15 min of hour angle
        },
    }
    data["centring"] = {"enabled": True, "exposure_s": 10.0}
    data["meridian_flip"] = {"enabled": True, "flip_after_min": 5.0, "limit_after_min": 12.0}
    return Config.model_validate(data)


def start_at_hour_angle(ha_deg: float) -> datetime:
    t = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
    lst = local_sidereal_time_deg(t, LONGITUDE)
    return t + timedelta(seconds=((RA_DEG + ha_deg - lst) % 360.0) * SIDEREAL_S_PER_DEG)


async def test_a_sequence_across_the_meridian_flips_once_and_loses_no_frame(
    tmp_path: Path,
) -> None:
    config = flip_config(tmp_path)
    target = Target(name="Across the meridian", ra_deg=RA_DEG, dec_deg=DEC_DEG)
    # 8 x 4 min from 20 min before the meridian: the 6th frame would end past the limit.
    sequence = Sequence(
        name="across",
        target=target,
        steps=(ExposureStep(image_type="LIGHT", filter="V", exposure_s=240.0, count=8),),
    )
    starts: list[tuple[tuple, PierSide, float]] = []
    clock = ScaledClock(SPEED, start=start_at_hour_angle(-5.0))
    async with running_daemon(config, clock=clock) as daemon:
        obs = daemon.simulators.observatory  # type: ignore[union-attr]
        running = daemon.running

        def record() -> None:
            p = obs.mount.true_pointing()
            cos_dec = math.cos(math.radians(DEC_DEG))
            east = ((RA_DEG - p.ra_deg + 180.0) % 360.0 - 180.0) * cos_dec * 3600
            north = (DEC_DEG - p.dec_deg) * 3600.0
            off_px = math.hypot(east, north) / SCALE_ARCSEC
            key = (running.activity.step_index, running.activity.frame_index)
            starts.append((key, obs.mount.side_of_pier, off_px))

        watcher = on_each_light_frame(running, record)
        sid = daemon.enqueue(sequence)
        await wait_for(lambda: daemon.sequence_state(sid) == "done", timeout_s=120)
        watcher.cancel()
        exposures = running.log_db.exposures()
        centrings = running.log_db.centring_runs()
        limit_stops = list(obs.mount.limit_stops)
        flips = [e for e in running.events.recent if e["kind"] == "meridian_flip"]
    for key, side, off in starts:
        print(key, side.name, f"{off:.1f} px")
    assert len(exposures) == 8
    assert len(flips) == 1 and flips[0]["flipped"] and flips[0]["pier_side"] == "EAST"
    assert 5.0 <= flips[0]["hour_angle_min"] <= 12.0
    assert not limit_stops  # the mount never ran into its limit
    sides = [side for _, side, _ in starts]
    assert sides[0] == PierSide.WEST and sides[-1] == PierSide.EAST
    # One flip: the sides change once, and no frame was started twice (no retake).
    assert sum(a != b for a, b in itertools.pairwise(sides)) == 1
    assert len(starts) == 8
    # Centred before the first frame and again after the flip.
    assert [c["outcome"] for c in centrings] == ["centred", "centred"]
    assert [c["pier_side"] for c in centrings] == ["WEST", "EAST"]
    assert max(off for _, _, off in starts) * SCALE_ARCSEC <= 10.0


@pytest.mark.parametrize(
    ("ha_min", "frame_s", "expected"),
    [
        (-30.0, 600.0, None),  # ends 20 min before the meridian
        (-5.0, 600.0, None),  # ends 5 min past: before the 12 min limit
        (0.0, 900.0, 300.0),  # would end 15 min past: wait until 5 min past, then flip
        (4.0, 600.0, 60.0),
        (5.0, 60.0, 0.0),  # past the flip time: flip now
        (30.0, 60.0, 0.0),
    ],
)
def test_flip_wait(ha_min: float, frame_s: float, expected: float | None) -> None:
    settings = MeridianFlipConfig(enabled=True, flip_after_min=5.0, limit_after_min=12.0)
    wait = flip_wait_s(ha_min / SIDEREAL_MIN_PER_DEG, frame_s, settings)
    assert wait == (None if expected is None else pytest.approx(expected, abs=0.1))


@pytest.mark.parametrize("lat", [28.76, -33.0, 52.0])
def test_hour_angle_from_altaz_agrees_with_astropy(lat: float) -> None:
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, HADec
    from astropy.time import Time

    site = EarthLocation(lat=lat * u.deg, lon=0 * u.deg, height=0 * u.m)
    when = Time("2026-11-25T22:00:00")
    for ha, dec in [(-60.0, 10.0), (-1.0, 40.0), (2.0, -20.0), (75.0, 0.0)]:
        hadec = HADec(ha=ha * u.deg, dec=dec * u.deg, location=site, obstime=when)
        altaz = hadec.transform_to(AltAz(location=site, obstime=when, pressure=0 * u.hPa))
        got = hour_angle_deg(altaz.alt.deg, altaz.az.deg, lat)
        assert got == pytest.approx(ha, abs=1e-6)
