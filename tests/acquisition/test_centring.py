"""Plate-solve and centre over Alpaca HTTP: the target lands on the frame's centre.

The truth is the simulator's configuration: its mount looks a configured offset (a fixed
error per pier side) away from where it reports, and the camera renders the sky where the
optics look. After a centring run, the optics' true position (the reported one moved by the
configured error, computed here with astropy, not with the code under test) must lie within
the tolerance of the target.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from obsctl.acquisition.centring import (
    Centring,
    PlateSolver,
    corrected_command,
    separation_arcsec,
)
from obsctl.acquisition.sequence import Target
from obsctl.clock import ScaledClock
from obsctl.config import Config
from obsctl.devices import DeviceSet
from obsctl.drivers.alpaca import AlpacaCamera, AlpacaClient, AlpacaMount
from obsctl.embedded import reference_catalog
from obsctl.operations import Operations
from obsctl.simulators.mount_model import local_sidereal_time_deg
from obsctl.simulators.observatory import running_simulators

from ..daemon_helpers import LONGITUDE, daemon_config

START = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
SPEED = 100.0
# 15 arcmin each side of the pier, in different directions: (dRA cos Dec, dDec) arcsec.
ERROR_EAST = (720.0, -540.0)
ERROR_WEST = (-540.0, 720.0)


def centring_config(tmp_path: Path, **centring: Any) -> Config:
    config = daemon_config(
        tmp_path,
        centring={"enabled": True, "exposure_s": 10.0, **centring},
    )
    data = config.model_dump(mode="json", exclude_unset=True)
    data["simulator"] |= {
        "speed": SPEED,
        "camera": {"width_px": 320, "height_px": 240, "readout_time_s": 0.1},
        "sky": {"star_density_per_deg2": 40_000.0, "galaxies": False},
        "mount": {
            "slew_rate_deg_s": 5.0,
            "pointing_error_east_arcsec": ERROR_EAST,
            "pointing_error_west_arcsec": ERROR_WEST,
        },
    }
    return Config.model_validate(data)


@asynccontextmanager
async def served(config: Config) -> AsyncIterator[tuple[Centring, Any, Operations]]:
    assert config.simulator is not None
    clock = ScaledClock(SPEED, start=START)
    async with running_simulators(
        config.simulator, config.site, config.telescope, clock=clock, port=0
    ) as sims:
        client = AlpacaClient(f"127.0.0.1:{sims.port}")
        devs = DeviceSet(
            camera=AlpacaCamera("camera", client, timeout_s=5.0),
            mount=AlpacaMount("mount", client, timeout_s=5.0, clock=clock),
        )
        for device in devs.all():
            await device.connect()
        try:
            ops = Operations(config.sequencer, clock)
            reference = reference_catalog(config)
            assert reference is not None
            c = config.centring
            solver = PlateSolver(reference, c.search_arcmin, c.blind_search_arcmin)
            assert devs.mount is not None
            centring = Centring(devs.camera, devs.mount, ops, clock, config, solver)
            yield centring, sims.server.observatory, ops
        finally:
            await client.close()


def target_at_hour_angle(ha_deg: float, dec_deg: float = 20.0) -> Target:
    lst = local_sidereal_time_deg(START, LONGITUDE)
    return Target(name="Field", ra_deg=(lst - ha_deg) % 360.0, dec_deg=dec_deg)


def true_offset_arcsec(obs: Any, target: Target, error: tuple[float, float]) -> float:
    """Where the optics look (reported + configured error, by astropy) from the target."""
    p = obs.mount.pointing()
    reported = SkyCoord(p.ra_deg * u.deg, p.dec_deg * u.deg)
    east, north = error
    looking = reported.spherical_offsets_by(east * u.arcsec, north * u.arcsec)
    wanted = SkyCoord(target.ra_deg * u.deg, target.dec_deg * u.deg)
    return float(looking.separation(wanted).arcsec)


@pytest.mark.parametrize(
    ("ha_deg", "error"),
    [(-30.0, ERROR_WEST), (30.0, ERROR_EAST)],
    ids=["east-of-meridian", "west-of-meridian"],
)
@pytest.mark.parametrize("method", ["offset", "sync"])
async def test_centres_from_a_fifteen_arcmin_error_in_three_corrections(
    tmp_path: Path, ha_deg: float, error: tuple[float, float], method: str
) -> None:
    config = centring_config(tmp_path, method=method)
    target = target_at_hour_angle(ha_deg)
    async with served(config) as (centring, obs, ops):
        await ops.slew(centring.mount, target.ra_deg, target.dec_deg)
        before = true_offset_arcsec(obs, target, error)
        run = await centring.run(target, "V")
        # The sync re-zeros the simulated error of that side; the offset leaves it.
        after_error = error if method == "offset" else (0.0, 0.0)
        after = true_offset_arcsec(obs, target, after_error)
    print(f"\n{method}: {before:.0f} arcsec off -> {after:.1f} after {run.corrections}")
    assert 15 * 60 - 30 <= before <= 15 * 60 + 30
    assert run.outcome == "centred", run.reason
    assert 1 <= run.corrections <= 3
    assert after <= 10.0
    first = run.frames[0]
    assert first.solution is not None and first.error_arcsec is not None
    # The first frame's solution saw the error the simulator was given, to a few arcsec.
    assert first.error_arcsec == pytest.approx(before, abs=5.0)
    assert first.solution.offset_arcmin > 0.0  # 15' is beyond the usual search: blind
    row = run.row("2026-11-25")
    assert row["outcome"] == "centred" and row["corrections"] == run.corrections


async def test_a_field_without_stars_is_unsolved_and_says_why(tmp_path: Path) -> None:
    config = centring_config(tmp_path)
    data = config.model_dump(mode="json", exclude_unset=True)
    data["simulator"]["sky"]["star_density_per_deg2"] = 0.0
    config = Config.model_validate(data)
    target = target_at_hour_angle(-30.0)
    async with served(config) as (centring, _, ops):
        await ops.slew(centring.mount, target.ra_deg, target.dec_deg)
        run = await centring.run(target, "V")
    assert run.outcome == "unsolved"
    assert run.reason is not None and "no solution" in run.reason
    assert run.corrections == 0 and run.error_arcsec is None


@pytest.mark.parametrize(
    ("dec", "corrections", "within_arcsec"),
    [(0.0, 2, 0.05), (60.0, 2, 0.05), (-45.0, 2, 0.05), (89.5, 4, 1.0)],
)
def test_the_offset_correction_moves_the_command_by_the_error_on_the_sky(
    dec: float, corrections: int, within_arcsec: float
) -> None:
    # A mount that looks a fixed offset away from its command, in the frame of the command:
    # near the pole a correction turns that frame (RA changes fast), so it takes more.
    east, north = 500.0, -300.0

    def looks_at(ra: float, dec: float) -> tuple[float, float]:
        at = SkyCoord(ra * u.deg, dec * u.deg)
        c = at.spherical_offsets_by(east * u.arcsec, north * u.arcsec)
        return float(c.ra.deg), float(c.dec.deg)

    target = (123.0, dec)
    command = target
    for _ in range(corrections):
        command = corrected_command(command, looks_at(*command), target)
    seen = looks_at(*command)
    assert separation_arcsec(*seen, *target) < within_arcsec


def test_separation_agrees_with_astropy() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        ra1, ra2 = rng.uniform(0, 360, 2)
        dec1, dec2 = np.degrees(np.arcsin(rng.uniform(-1, 1, 2)))
        truth = SkyCoord(ra1 * u.deg, dec1 * u.deg).separation(SkyCoord(ra2 * u.deg, dec2 * u.deg))
        assert separation_arcsec(ra1, dec1, ra2, dec2) == pytest.approx(
            truth.arcsec, abs=1e-6 * max(1.0, truth.arcsec), rel=1e-9
        )
    assert math.isclose(separation_arcsec(10, 20, 10, 20), 0.0, abs_tol=1e-9)
