"""A rotating dome slaved to a German mount, over Alpaca HTTP against the simulators.

The simulated camera sees the sky only through the slit (the simulator works out where the
optical axis leaves the dome on its own, `obsctl.simulators.dome_model.slit_azimuth_deg`), so
a frame has stars only if the dome followed. The truth is the simulator's: its geometry fed
with the mount's position in each header (converted by the simulator's own transform), the
stars detected in the stored frames, and the frames of a dome too slow to follow.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from obsctl.acquisition.sequence import ExposureStep, Sequence, Target
from obsctl.config import Config, SimulatedDomeConfig
from obsctl.daemon import Daemon
from obsctl.devices import PierSide, ShutterState
from obsctl.processing.photometry import detect_sources
from obsctl.simulators.dome_model import slit_azimuth_deg
from obsctl.simulators.mount_model import altaz_to_hadec, local_sidereal_time_deg
from obsctl.store.exposure_log import ExposureLog

from ..daemon_helpers import LONGITUDE, daemon_config, running_daemon, wait_for

LATITUDE = 28.76
TOLERANCE_DEG = 4.0
#: A dome of 2.2 m, the mount 0.4 m south-east of its centre and 0.3 m up, 0.45 m GEM offset:
#: the slit is off the telescope's own azimuth by up to some 20 deg.
GEOMETRY = {
    "radius_m": 2.2,
    "mount_offset_north_m": -0.3,
    "mount_offset_east_m": 0.25,
    "mount_offset_up_m": 0.3,
    "gem_offset_m": 0.45,
}


def dome_config(tmp_path: Path, *, rotation_deg_s: float = 10.0, **dome: Any) -> Config:
    base = daemon_config(tmp_path / "data", sequencer={"poll_s": 0.005})
    data = base.model_dump(mode="json", exclude_unset=True)
    address = data["devices"]["camera"]["address"]
    data["devices"]["dome"] = {"driver": "alpaca", "address": address, "timeout_s": 1.0}
    data["dome"] = {
        **GEOMETRY,
        "tolerance_deg": TOLERANCE_DEG,
        "settle_s": 1.0,
        "follow_every_s": 5.0,
        **dome,
    }
    data["simulator"] |= {
        # A crowded field: a frame of 128 x 96 px (2 x 1.5 arcmin) has some 300 stars.
        "sky": {"star_density_per_deg2": 300_000},
        "dome": {
            "kind": "rotating",
            "shutter_time_s": 10.0,
            "rotation_rate_deg_s": rotation_deg_s,
            "slit_width_deg": 12.0,
            **GEOMETRY,
        },
    }
    return Config.model_validate(data)


def targets_across_the_sky() -> list[Target]:
    """East, west, south and high in the north-west, by hour angle now."""
    lst = local_sidereal_time_deg(datetime.now(UTC), LONGITUDE)
    places = [
        ("East", -50.0, 10.0),
        ("West", 45.0, 20.0),
        ("South", -15.0, -15.0),
        ("North", 20.0, 60.0),
    ]
    return [Target(name=n, ra_deg=(lst - ha) % 360.0, dec_deg=dec) for n, ha, dec in places]


def one_light(target: Target, exposure_s: float = 30.0) -> Sequence:
    step = ExposureStep(image_type="LIGHT", filter="V", exposure_s=exposure_s, count=1)
    return Sequence(name=target.name, target=target, steps=(step,))


def stars_in(path: Path) -> int:
    data = fits.getdata(path).astype(np.float32)
    return len(detect_sources(data, detect_sigma=5.0, minarea=5, back_size=32).objects)


def lights(data_dir: Path) -> list[dict[str, Any]]:
    db = ExposureLog(data_dir / "obsctl.sqlite")
    try:
        return [r for r in db.exposures() if r["image_type"] == "LIGHT"]
    finally:
        db.close()


def simulator_slit_deg(header: fits.Header, sim: SimulatedDomeConfig) -> float:
    ha, dec = altaz_to_hadec(header["ALT"], header["AZ"], LATITUDE)
    return slit_azimuth_deg(
        sim, ha_deg=ha, dec_deg=dec, pier_side=PierSide[header["PIERSIDE"]], latitude_deg=LATITUDE
    )


def off_deg(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


async def test_the_slit_follows_targets_across_the_sky(tmp_path: Path) -> None:
    config = dome_config(tmp_path)
    assert config.simulator is not None and config.simulator.dome is not None
    await Daemon(config).run(
        [one_light(t) for t in targets_across_the_sky()],
        until_idle=True,
        install_signal_handlers=False,
    )
    rows = lights(tmp_path / "data")
    assert [r["target"] for r in rows] == ["East", "West", "South", "North"]
    azimuths = []
    for row in rows:
        header = fits.getheader(tmp_path / "data" / row["file_path"])
        wanted = simulator_slit_deg(header, config.simulator.dome)
        assert off_deg(header["DOMEAZ"], wanted) <= TOLERANCE_DEG, row["target"]
        assert header["DOMEOK"] is True and header["DOMEERR"] <= TOLERANCE_DEG
        assert row["dome_ok"] == 1 and row["dome_err_deg"] == pytest.approx(
            header["DOMEERR"], abs=1e-3
        )
        assert stars_in(tmp_path / "data" / row["file_path"]) >= 10, row["target"]
        azimuths.append(header["DOMEAZ"])
        # The offsets matter here: a slit at the telescope's own azimuth would hide the sky.
        assert off_deg(header["AZ"], wanted) > 12.0 / 2.0, row["target"]
    # Targets all round: the dome turned to each (not one azimuth that happens to fit).
    assert min(off_deg(a, b) for i, a in enumerate(azimuths) for b in azimuths[i + 1 :]) > 20


async def test_a_dome_too_slow_gives_flagged_frames_without_stars(tmp_path: Path) -> None:
    # 0.05 deg/s: half a turn takes an hour, the wait's deadline is 30 s.
    config = dome_config(tmp_path, rotation_deg_s=0.05, align_timeout_s=30.0)
    south = targets_across_the_sky()[2]
    await Daemon(config).run([one_light(south)], until_idle=True, install_signal_handlers=False)
    (row,) = lights(tmp_path / "data")
    header = fits.getheader(tmp_path / "data" / row["file_path"])
    assert header["DOMEOK"] is False and header["DOMEERR"] > TOLERANCE_DEG
    assert row["dome_ok"] == 0 and row["dome_err_deg"] > TOLERANCE_DEG
    assert stars_in(tmp_path / "data" / row["file_path"]) == 0
    # The dome started from its park at north: still far from the south.
    assert off_deg(header["DOMEAZ"], 0.0) < 10.0 and not math.isnan(header["DOMEERR"])


async def test_a_roll_off_roof_is_never_slaved(tmp_path: Path) -> None:
    config = dome_config(tmp_path)
    data = config.model_dump(mode="json", exclude_unset=True)
    data["simulator"]["dome"] = {"kind": "roll_off", "shutter_time_s": 10.0}
    config = Config.model_validate(data)
    await Daemon(config).run(
        [one_light(targets_across_the_sky()[0])], until_idle=True, install_signal_handlers=False
    )
    (row,) = lights(tmp_path / "data")
    header = fits.getheader(tmp_path / "data" / row["file_path"])
    assert "DOMEAZ" not in header and row["dome_ok"] is None
    assert stars_in(tmp_path / "data" / row["file_path"]) >= 5


def through_the_zenith() -> Target:
    """A target 4 deg east of the meridian that tracks past it 4 deg from the zenith."""
    lst = local_sidereal_time_deg(datetime.now(UTC), LONGITUDE)
    return Target(name="Zenith", ra_deg=(lst + 4.0) % 360.0, dec_deg=LATITUDE + 4.0)


async def long_exposure(tmp_path: Path, follow_every_s: float) -> fits.Header:
    config = dome_config(tmp_path, follow_every_s=follow_every_s)
    data = config.model_dump(mode="json", exclude_unset=True)
    data["simulator"]["speed"] = 1000.0
    config = Config.model_validate(data)
    sequence = one_light(through_the_zenith(), exposure_s=1800.0)
    await Daemon(config).run([sequence], until_idle=True, install_signal_handlers=False)
    (row,) = lights(tmp_path / "data")
    return fits.getheader(tmp_path / "data" / row["file_path"])


async def test_the_dome_follows_a_tracking_telescope(tmp_path: Path) -> None:
    # Half an hour across the meridian near the zenith: the slit must turn by far more than
    # the tolerance, and the follower turns it while the camera exposes.
    header = await long_exposure(tmp_path, follow_every_s=30.0)
    assert header["DOMEOK"] is True and header["DOMEERR"] <= TOLERANCE_DEG


async def test_without_the_follower_a_long_frame_is_flagged(tmp_path: Path) -> None:
    # The same frame with the follower looking once an hour: the slit is left behind.
    header = await long_exposure(tmp_path, follow_every_s=3600.0)
    assert header["DOMEOK"] is False and header["DOMEERR"] > TOLERANCE_DEG


async def test_unsafe_the_follower_stops_and_the_dome_parks_after_the_shutter(
    tmp_path: Path,
) -> None:
    config = dome_config(tmp_path, follow_every_s=5.0)
    data = config.model_dump(mode="json", exclude_unset=True)
    data["safety"]["resume_delay_s"] = 3600.0
    config = Config.model_validate(data)
    async with running_daemon(config) as daemon:
        obs = daemon.simulators.observatory  # type: ignore[union-attr]
        dome, mount, monitor = obs.dome, obs.mount, obs.safety_monitor
        activity = daemon.running.activity
        turns: list[tuple[float, bool]] = []  # each azimuth command, and whether it was safe
        slew_to_azimuth = dome.slew_to_azimuth

        def recorded(az_deg: float) -> None:
            turns.append((az_deg, monitor.is_safe))
            slew_to_azimuth(az_deg)

        dome.slew_to_azimuth = recorded
        step = ExposureStep(image_type="LIGHT", filter="V", exposure_s=3000.0, count=1)
        daemon.enqueue(Sequence(name="long", target=through_the_zenith(), steps=(step,)))
        await wait_for(lambda: activity.state == "exposing")
        # The follower turns the dome while the camera exposes (the slew's turn came first).
        await wait_for(lambda: len(turns) >= 2)
        assert dome.shutter_state == ShutterState.OPEN and not dome.at_park

        monitor.set_safe(False)
        await wait_for(lambda: mount.at_park)
        await wait_for(lambda: dome.shutter_state == ShutterState.CLOSED)
        await wait_for(lambda: dome.at_park)  # parked once closed, with the mount
        assert dome.azimuth_deg == pytest.approx(config.simulator.dome.park_az_deg)  # type: ignore[union-attr]
        # Nothing turned the dome after the monitor said unsafe: the park was not fought.
        assert all(safe for _, safe in turns)
        left = len(turns)
        await asyncio.sleep(0.3)  # 30 s of observatory time: six of the follower's looks
        assert len(turns) == left and dome.at_park
