"""The slit's azimuth for an off-centre German mount, against cases worked by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obsctl.acquisition.dome_geometry import dome_azimuth_deg, hadec_from_altaz
from obsctl.devices import PierSide

LAT = 45.0


def _wrapped(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


@pytest.mark.parametrize(
    ("alt", "az"), [(30.0, 0.0), (10.0, 90.0), (45.0, 135.0), (60.0, 200.0), (5.0, 300.0)]
)
@pytest.mark.parametrize("side", [PierSide.EAST, PierSide.WEST])
def test_telescope_at_the_centre_sees_its_own_azimuth(
    alt: float, az: float, side: PierSide
) -> None:
    ha, dec = hadec_from_altaz(alt, az, LAT)
    dome = dome_azimuth_deg(ha, dec, side, latitude_deg=LAT, radius_m=2.5)
    assert _wrapped(dome, az) < 1e-9


def test_hour_angle_and_declination_of_known_directions() -> None:
    # East on the horizon is H = -90 on the equator; the meridian's zenith is dec = latitude.
    assert hadec_from_altaz(0.0, 90.0, LAT) == pytest.approx((-90.0, 0.0), abs=1e-9)
    assert hadec_from_altaz(90.0, 0.0, LAT) == pytest.approx((0.0, LAT), abs=1e-9)
    assert hadec_from_altaz(0.0, 0.0, LAT) == pytest.approx((-180.0, 90.0 - LAT), abs=1e-9)


def test_mount_east_of_centre_looking_at_the_north_horizon() -> None:
    # From (N 0, E 1) north along the horizon, a 3 m sphere is met at N = sqrt(9 - 1).
    ha, dec = hadec_from_altaz(0.0, 0.0, LAT)
    dome = dome_azimuth_deg(ha, dec, PierSide.EAST, latitude_deg=LAT, radius_m=3.0, east_m=1.0)
    assert dome == pytest.approx(math.degrees(math.atan2(1.0, math.sqrt(8.0))), abs=1e-9)
    assert dome == pytest.approx(19.4712, abs=1e-4)


def test_mount_north_of_centre_at_the_zenith_faces_north() -> None:
    # Straight up from (N 1): the ray leaves at (1, 0, sqrt 3), azimuth 0.
    dome = dome_azimuth_deg(0.0, LAT, PierSide.EAST, latitude_deg=LAT, radius_m=2.0, north_m=1.0)
    assert _wrapped(dome, 0.0) < 1e-9


def test_zenith_with_a_gem_offset_faces_the_tube_and_a_flip_mirrors_it() -> None:
    # At the zenith the Dec axis is horizontal east-west: the tube on the east side of the
    # pier is 0.5 m east of the RA axis and looks up, so the slit faces east; flipped, west.
    east = dome_azimuth_deg(
        0.0, LAT, PierSide.EAST, latitude_deg=LAT, radius_m=2.0, gem_offset_m=0.5
    )
    west = dome_azimuth_deg(
        0.0, LAT, PierSide.WEST, latitude_deg=LAT, radius_m=2.0, gem_offset_m=0.5
    )
    assert east == pytest.approx(90.0, abs=1e-9)
    assert west == pytest.approx(270.0, abs=1e-9)


def test_gem_offset_looking_east_at_the_horizon() -> None:
    # Pointing east on the equator (H = -90), tube on the west side of the pier, counterweight
    # down: the Dec axis points up the meridian toward the equator (N -sin 45, U cos 45), so
    # the tube sits 1 m from the pivot that way. The ray east leaves a 2 m sphere at
    # E = sqrt(4 - 1), N = -0.7071: azimuth 90 + atan(0.7071 / 1.7321) = 112.21 deg.
    dome = dome_azimuth_deg(
        -90.0, 0.0, PierSide.WEST, latitude_deg=LAT, radius_m=2.0, gem_offset_m=1.0
    )
    assert dome == pytest.approx(90.0 + math.degrees(math.atan(math.sqrt(0.5) / math.sqrt(3.0))))
    assert dome == pytest.approx(112.2076, abs=1e-4)


def test_pier_flip_mirrors_the_offset_about_the_meridian() -> None:
    # On the meridian a flip puts the tube on the other side: azimuths mirror about 180.
    kwargs = {"latitude_deg": LAT, "radius_m": 2.5, "gem_offset_m": 0.4}
    east = dome_azimuth_deg(0.0, 10.0, PierSide.EAST, **kwargs)  # type: ignore[arg-type]
    west = dome_azimuth_deg(0.0, 10.0, PierSide.WEST, **kwargs)  # type: ignore[arg-type]
    assert east < 180.0 < west
    assert east + west == pytest.approx(360.0)


def test_southern_hemisphere_zenith_keeps_the_sides() -> None:
    # The sides of the pier are east and west in both hemispheres.
    east = dome_azimuth_deg(
        0.0, -30.0, PierSide.EAST, latitude_deg=-30.0, radius_m=2.0, gem_offset_m=0.5
    )
    assert east == pytest.approx(90.0, abs=1e-9)


def test_a_telescope_outside_the_dome_is_refused() -> None:
    with pytest.raises(ValueError, match="outside the dome"):
        dome_azimuth_deg(0.0, 0.0, PierSide.EAST, latitude_deg=LAT, radius_m=1.0, north_m=2.0)
    with pytest.raises(ValueError, match="positive"):
        dome_azimuth_deg(0.0, 0.0, PierSide.EAST, latitude_deg=LAT, radius_m=0.0)


_offset = st.floats(-0.4, 0.4)


@settings(max_examples=300, deadline=None)
@given(
    alt=st.floats(5.0, 70.0),
    az=st.floats(0.0, 360.0, exclude_max=True),
    lat=st.floats(-70.0, 70.0),
    side=st.sampled_from([PierSide.EAST, PierSide.WEST]),
    north=_offset,
    east=_offset,
    up=_offset,
    gem=st.floats(0.0, 0.4),
)
def test_in_range_and_continuous(
    alt: float,
    az: float,
    lat: float,
    side: PierSide,
    north: float,
    east: float,
    up: float,
    gem: float,
) -> None:
    # Offsets of at most a fifth of the radius, telescope below 70 deg: the ray leaves the
    # dome well away from its top, where the azimuth is undefined.
    kwargs = {"latitude_deg": lat, "radius_m": 3.0, "north_m": north, "east_m": east}
    kwargs |= {"up_m": up, "gem_offset_m": gem}
    ha, dec = hadec_from_altaz(alt, az, lat)
    here = dome_azimuth_deg(ha, dec, side, **kwargs)  # type: ignore[arg-type]
    assert 0.0 <= here < 360.0
    # A telescope moved by 0.01 deg moves the slit by a small multiple of that.
    for dh, dd in ((0.01, 0.0), (0.0, 0.01)):
        there = dome_azimuth_deg(ha + dh, dec + dd, side, **kwargs)  # type: ignore[arg-type]
        assert _wrapped(here, there) < 0.5
    # The offsets move the slit off the telescope's azimuth by a bounded angle.
    assert _wrapped(here, az) < 60.0
