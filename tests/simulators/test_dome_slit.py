"""The simulated camera sees the sky through the dome's shutter and slit only."""

from __future__ import annotations

import math

import pytest

from obsctl.config import SimulatedDomeConfig, SimulatedMountConfig, SiteConfig
from obsctl.devices import PierSide
from obsctl.simulators import DomeModel
from obsctl.simulators.dome_model import slit_azimuth_deg
from obsctl.simulators.mount_model import MountModel

from .test_enclosure_models import HandClock

LAT = 45.0


def test_slit_azimuth_of_hand_worked_cases() -> None:
    centred = SimulatedDomeConfig(kind="rotating", radius_m=2.0)
    # No offsets: the slit faces the telescope. East on the equator is H = -90, az 90.
    assert slit_azimuth_deg(
        centred, ha_deg=-90.0, dec_deg=0.0, pier_side=PierSide.WEST, latitude_deg=LAT
    ) == pytest.approx(90.0)
    # Zenith, 0.5 m GEM offset: the tube east of the pier looks out of the east, flipped west.
    gem = SimulatedDomeConfig(kind="rotating", radius_m=2.0, gem_offset_m=0.5)
    kwargs = {"ha_deg": 0.0, "dec_deg": LAT, "latitude_deg": LAT}
    assert slit_azimuth_deg(gem, pier_side=PierSide.EAST, **kwargs) == pytest.approx(90.0)
    assert slit_azimuth_deg(gem, pier_side=PierSide.WEST, **kwargs) == pytest.approx(270.0)
    # Looking east at the horizon from 1 m up the meridian (tube on the west side): a 2 m
    # sphere is left at E sqrt(3), N -sqrt(0.5): 90 + atan(sqrt(0.5) / sqrt(3)).
    far = SimulatedDomeConfig(kind="rotating", radius_m=2.0, gem_offset_m=1.0)
    az = slit_azimuth_deg(far, ha_deg=-90.0, dec_deg=0.0, pier_side=PierSide.WEST, latitude_deg=LAT)
    assert az == pytest.approx(90.0 + math.degrees(math.atan(math.sqrt(0.5 / 3.0))))


def _observatory(kind: str = "rotating") -> tuple[HandClock, DomeModel, MountModel]:
    clock = HandClock()
    site = SiteConfig(name="t", latitude_deg=LAT, longitude_deg=0.0)
    config = SimulatedDomeConfig(
        kind=kind,  # type: ignore[arg-type]
        shutter_time_s=10.0,
        rotation_rate_deg_s=10.0,
        slit_width_deg=10.0,
    )
    dome = DomeModel(config, clock)
    mount = MountModel(SimulatedMountConfig(park_alt_deg=40.0, park_az_deg=180.0), site, clock)
    dome.connected = mount.connected = True
    return clock, dome, mount


def test_closed_shutter_and_a_slit_off_the_telescope_hide_the_sky() -> None:
    clock, dome, mount = _observatory()
    assert mount.pointing().az_deg == pytest.approx(180.0)
    assert dome.sky_transmission(mount) == 0.0  # closed
    dome.open_shutter()
    clock.t += 10.0
    assert dome.sky_transmission(mount) == 0.0  # open, but the slit is parked at north
    dome.slew_to_azimuth(180.0 + 4.9)  # within the slit's half-width of 5 deg
    clock.t += 30.0
    assert dome.sky_transmission(mount) == 1.0
    dome.close_shutter()
    clock.t += 5.0
    assert dome.sky_transmission(mount) == pytest.approx(0.5)  # half closed
    dome.open_shutter()
    clock.t += 5.0
    dome.slew_to_azimuth(180.0 + 5.2)
    clock.t += 1.0
    assert dome.sky_transmission(mount) == 0.0
    assert dome.sky_transmission(None) == 1.0  # no mount: the shutter only


def test_a_roll_off_roof_open_shows_the_whole_sky() -> None:
    clock, roof, mount = _observatory("roll_off")
    assert roof.sky_transmission(mount) == 0.0
    roof.open_shutter()
    clock.t += 10.0
    assert roof.sky_transmission(mount) == 1.0
