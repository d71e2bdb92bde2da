"""A monitored field over two nights: its reference is built, then transients appear.

The daemon runs the simulators on a simulated clock. On the first night a field is taken
(dithered); once four good frames exist its reference image is built on its own. Ten sidereal
days later, on the same field, a supernova has appeared on a galaxy, a star has a nova-like
outburst, another flares, and an asteroid crosses the field. Truth is the simulator's:
positions and light curves from the configured transients, the asteroid's track.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.time import Time

from obsctl.acquisition.sequence import ExposureStep, Sequence, Target
from obsctl.clock import ScaledClock
from obsctl.config import Config
from obsctl.daemon import Daemon
from obsctl.simulators.mount_model import local_sidereal_time_deg
from obsctl.simulators.transients import (
    asteroids_from_config,
    nearest_galaxy,
    nearest_star,
    transients_from_config,
)
from obsctl.simulators.variables import VariableStar
from obsctl.store.exposure_log import ExposureLog
from obsctl.timeseries.matching import separation_arcsec

from ..daemon_helpers import LONGITUDE, daemon_config

SPEED = 20.0
SIDEREAL_DAY_D = 0.99726957
SKY = {"seed": 2024, "star_density_per_deg2": 10_000.0, "galaxy_density_r21_per_deg2": 10_000.0}
FLARE = {"amplitude_mag": 2.0, "rate_per_d": 2.0, "seed": 7, "rise_d": 0.002, "fade_d": 0.01}
SN_MAG = 16.5
ASTEROID_RATE, ASTEROID_PA = 4.0, 60.0
REFERENCE_FRAMES, NEW_FRAMES, EXPOSURE_S = 6, 12, 20.0


def _mjd(when: datetime) -> float:
    return float(Time(when).mjd)


def _flare_start() -> datetime:
    """A minute before the seeded flares first brighten their star by a magnitude."""
    star = VariableStar(name="f", kind="flare", ra_deg=0.0, dec_deg=0.0, mag_v=14.0,
                        epoch_mjd=0.0, **FLARE)  # fmt: skip
    base = datetime(2026, 12, 10, tzinfo=UTC)
    times = _mjd(base) + np.arange(0.0, 2.0, 20.0 / 86400.0)
    bright = np.flatnonzero(star.delta_mag(times) < -1.0)
    assert bright.size, "no flare in two days: change FLARE's seed"
    return base + timedelta(days=float(times[bright[0]] - _mjd(base)) - 1.0 / 1440.0)


def _offset(ra: float, dec: float, east: float, north: float) -> tuple[float, float]:
    return ra + east / 3600.0 / math.cos(math.radians(dec)), dec + north / 3600.0


GALAXIES = {"seed": 2024, "density_r21_per_deg2": 10_000.0, "mag_bright": 12.0, "mag_limit": 21.0}


def _host(second_night: datetime) -> np.void:
    """A galaxy of R < 17.5 near the meridian then, the supernova's host."""
    lst = local_sidereal_time_deg(second_night, LONGITUDE)
    return nearest_galaxy(
        (lst + 5.0) % 360.0, 30.0, brighter_than_mag=17.5, max_distance_arcsec=3600, **GALAXIES
    )


def _sky(field: Target, host: np.void, second_night: datetime) -> dict[str, Any]:
    """The simulated sky's transients and asteroid, around the field."""
    ra, dec = field.ra_deg, field.dec_deg
    stars = {"seed": 2024, "density_per_deg2": 10_000.0, "mag_bright": 8.0, "mag_limit": 19.5}
    nova_star = nearest_star(*_offset(ra, dec, 13, -100), brighter_than_mag=16.5, **stars)
    flare_star = nearest_star(*_offset(ra, dec, -90, 110), brighter_than_mag=16.5, **stars)
    t1 = _mjd(second_night)
    rock_ra, rock_dec = _offset(ra, dec, -150, -100)
    return {
        **SKY,
        "transients": [
            {
                "name": "SN",
                "kind": "supernova",
                "host_id": int(host["id"]),
                "offset_arcsec": 1.0,
                "offset_pa_deg": 120.0,
                "mag_v": SN_MAG,
                "epoch_mjd": t1 + 0.003,
                "rise_d": 2.0,
                "fade_d": 30.0,
            },
            {
                "name": "nova",
                "kind": "nova",
                "host_id": int(nova_star.id[0]),
                "amplitude_mag": 2.5,
                "epoch_mjd": t1 + 0.003,
                "rise_d": 0.003,
                "fade_d": 1.0,
            },
            {
                "name": "flare",
                "kind": "flare",
                "host_id": int(flare_star.id[0]),
                "epoch_mjd": 0.0,
                **FLARE,
            },
        ],
        "asteroids": [
            {
                "name": "rock",
                "ra_deg": rock_ra,
                "dec_deg": rock_dec,
                "epoch_mjd": t1,
                "rate_arcsec_min": ASTEROID_RATE,
                "pa_deg": ASTEROID_PA,
                "mag_v": 15.5,
            },
        ],
    }


def _config(data: Path, field: Target, host: np.void, second_night: datetime) -> Config:
    return daemon_config(
        data,
        pipeline={"enabled": True, "workers": 1, "reference_catalog": "synthetic"},
        monitoring={
            "targets": [
                {
                    "name": "FIELD",
                    "field": field.name,
                    "ra_deg": field.ra_deg,
                    "dec_deg": field.dec_deg,
                }
            ]
        },
        simulator={
            "speed": SPEED,
            "camera": {"width_px": 400, "height_px": 400, "readout_time_s": 1.0},
            "sky": _sky(field, host, second_night),
        },
    )


def _visit(field: Target, frames: int) -> Sequence:
    return Sequence(
        name=f"{field.name} visit",
        target=field,
        steps=(ExposureStep(image_type="LIGHT", filter="V", exposure_s=EXPOSURE_S, count=frames),),
        dither_px=6.0,
    )


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Path]:
    second = _flare_start()
    first = second - timedelta(days=10 * SIDEREAL_DAY_D)
    # The field has the host 60" east and 40" north of its centre.
    host = _host(second)
    ra, dec = _offset(float(host["ra_deg"]), float(host["dec_deg"]), -60.0, -40.0)
    field = Target(name="Transient field", ra_deg=ra % 360.0, dec_deg=dec)
    data = tmp_path_factory.mktemp("transients") / "data"
    config = _config(data, field, host, second)
    import asyncio

    for start, frames in ((first, REFERENCE_FRAMES), (second, NEW_FRAMES)):
        daemon = Daemon(config, clock=ScaledClock(SPEED, start=start))
        asyncio.run(
            daemon.run([_visit(field, frames)], until_idle=True, install_signal_handlers=False)
        )
    return config, data


def _rows(data: Path, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    db = ExposureLog(data / "obsctl.sqlite")
    try:
        return db.query(sql, args)
    finally:
        db.close()


def test_reference_built_on_the_first_night_on_its_own(two_nights) -> None:
    _, data = two_nights
    (ref,) = _rows(data, "SELECT * FROM reference_images")
    assert ref["trigger"] == "auto" and ref["n_frames"] >= 4
    differences = _rows(data, "SELECT * FROM difference_frames")
    assert len(differences) >= NEW_FRAMES  # every frame of the second night, and the first's last


def test_each_transient_is_alerted_and_the_asteroid_as_a_moving_object(two_nights) -> None:
    config, data = two_nights
    assert config.simulator is not None
    truth = {t.name: t for t in transients_from_config(config.simulator.sky)}
    (rock,) = asteroids_from_config(config.simulator.sky.asteroids)
    alerts = _rows(data, "SELECT * FROM alerts WHERE kind IN ('transient', 'moving_object')")
    frames = _rows(data, "SELECT COUNT(*) AS n FROM exposures WHERE image_type = 'LIGHT'")[0]["n"]
    found: dict[str, dict[str, Any]] = {}
    bogus = []
    for alert in (a for a in alerts if a["kind"] == "transient"):
        near = [
            name for name, t in truth.items()
            if separation_arcsec(alert["ra_deg"], alert["dec_deg"], t.ra_deg, t.dec_deg) < 1.5
        ]  # fmt: skip
        if near:
            found[near[0]] = alert
        else:
            bogus.append(alert)
    assert set(found) == {"SN", "nova", "flare"}, alerts
    sn = truth["SN"]
    assert found["SN"]["mag"] == pytest.approx(float(sn.mag("V", found["SN"]["mjd"])), abs=0.2)
    # At most one bogus alert per ten frames.
    assert len(bogus) <= frames / 10, bogus
    # The asteroid: one moving object at its rate and direction, never a transient.
    (moving,) = (a for a in alerts if a["kind"] == "moving_object")
    objects = _rows(data, "SELECT * FROM moving_objects")
    assert len(objects) == 1
    assert objects[0]["rate_arcsec_min"] == pytest.approx(ASTEROID_RATE, rel=0.05)
    assert objects[0]["pa_deg"] == pytest.approx(ASTEROID_PA, abs=3.0)
    # Where the track puts it at its epoch, and where the alert (from its first three
    # detections) put it at its own.
    for where in (objects[0], moving):
        epoch = where["epoch_mjd"] if "epoch_mjd" in where else where["mjd"]
        ra, dec = (float(c) for c in rock.position(epoch))
        assert separation_arcsec(where["ra_deg"], where["dec_deg"], ra, dec) < 1.0
