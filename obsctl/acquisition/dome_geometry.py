"""Where a dome's slit must face for a telescope on an off-centre German equatorial mount.

A pure numeric function, as N.I.N.A. (``DomeSynchronization``), Ekos (INDI's dome base
class) and ASCOM's dome control compute it: the telescope's optical axis is a ray that
starts beside the mount's axes and points at the target; the slit must face the point where
that ray leaves the dome, taken as a sphere about the dome's centre.

Frame: x north, y east, z up, in metres, origin at the centre of the dome's sphere. The
mount's axes intersect at ``(north_m, east_m, up_m)``. The optical axis is ``gem_offset_m``
from that intersection along the declination axis, which is perpendicular to the polar
axis: for a target at hour angle H the declination axis points at the celestial equator's
point of hour angle H + 90 deg (west of the hour circle) when the tube is on the west side
of the pier (ASCOM ``pierWest``, "looking east", the usual side for H < 0), and at H - 90
deg when it is on the east side. Defined through H, it stays defined at the pole.
"""

from __future__ import annotations

import math

from obsctl.devices import PierSide

__all__ = ["dome_azimuth_deg", "hadec_from_altaz", "predicted_pier_side"]


def _equator_point(ha_rad: float, lat_rad: float) -> tuple[float, float, float]:
    """Return the unit vector (north, east, up) of the equator's point at hour angle ``ha``."""
    return (
        -math.sin(lat_rad) * math.cos(ha_rad),
        -math.sin(ha_rad),
        math.cos(lat_rad) * math.cos(ha_rad),
    )


def _direction(ha_rad: float, dec_rad: float, lat_rad: float) -> tuple[float, float, float]:
    """Return the unit vector (north, east, up) toward hour angle ``ha``, declination ``dec``."""
    sin_d, cos_d = math.sin(dec_rad), math.cos(dec_rad)
    sin_l, cos_l = math.sin(lat_rad), math.cos(lat_rad)
    cos_h = math.cos(ha_rad)
    return (
        cos_l * sin_d - sin_l * cos_d * cos_h,
        -cos_d * math.sin(ha_rad),
        sin_l * sin_d + cos_l * cos_d * cos_h,
    )


def predicted_pier_side(ha_deg: float) -> PierSide:
    """Return the pier side a German mount takes for a target: west while H < 0, else east.

    The usual rule (the tube on the side away from the target's half of the sky); a mount
    that tracks past the meridian before its flip reports its real side, which wins.
    """
    return PierSide.WEST if (ha_deg + 180.0) % 360.0 - 180.0 < 0.0 else PierSide.EAST


def hadec_from_altaz(alt_deg: float, az_deg: float, latitude_deg: float) -> tuple[float, float]:
    """Return (hour angle, declination) in degrees of a topocentric altitude and azimuth.

    Azimuth from north through east; the hour angle is west positive, in [-180, 180).
    """
    alt, az, lat = math.radians(alt_deg), math.radians(az_deg), math.radians(latitude_deg)
    north = math.cos(alt) * math.cos(az)
    east = math.cos(alt) * math.sin(az)
    up = math.sin(alt)
    # Rotate about the east axis by the colatitude: the polar axis becomes the z axis.
    sin_l, cos_l = math.sin(lat), math.cos(lat)
    z = cos_l * north + sin_l * up  # toward the north celestial pole
    x = -sin_l * north + cos_l * up  # toward the equator's point on the meridian
    dec = math.degrees(math.asin(max(-1.0, min(1.0, z))))
    ha = math.degrees(math.atan2(-east, x))
    return (ha + 180.0) % 360.0 - 180.0, dec


def dome_azimuth_deg(
    ha_deg: float,
    dec_deg: float,
    pier_side: PierSide,
    *,
    latitude_deg: float,
    radius_m: float,
    north_m: float = 0.0,
    east_m: float = 0.0,
    up_m: float = 0.0,
    gem_offset_m: float = 0.0,
) -> float:
    """Return the azimuth (deg, [0, 360), north = 0, east = 90) the slit must face.

    Parameters
    ----------
    ha_deg, dec_deg : float
        The telescope's hour angle (west positive) and declination in degrees.
    pier_side : PierSide
        The side of the pier the tube is on; `PierSide.UNKNOWN` takes the usual side for the
        hour angle (`predicted_pier_side`).
    latitude_deg : float
        Site latitude in degrees, north positive.
    radius_m : float
        The dome's radius in metres.
    north_m, east_m, up_m : float
        Where the mount's RA and Dec axes intersect, from the dome's centre, in metres
        (north, east and up positive).
    gem_offset_m : float
        Distance in metres from the RA axis to the optical axis along the Dec axis (0 for a
        fork or an alt-az mount on the dome's centre line).

    Returns
    -------
    float
        The dome azimuth in degrees. Where the optical axis leaves the dome straight overhead
        every azimuth is as good, and the telescope's own azimuth is returned.

    Raises
    ------
    ValueError
        When the radius is not positive or the optical axis starts outside the dome.
    """
    if not radius_m > 0.0:
        raise ValueError(f"dome radius must be positive, got {radius_m!r}")
    if pier_side == PierSide.UNKNOWN:
        pier_side = predicted_pier_side(ha_deg)
    ha, dec, lat = math.radians(ha_deg), math.radians(dec_deg), math.radians(latitude_deg)
    quarter = math.pi / 2.0 if pier_side == PierSide.WEST else -math.pi / 2.0
    axis = _equator_point(ha + quarter, lat)
    origin = (
        north_m + gem_offset_m * axis[0],
        east_m + gem_offset_m * axis[1],
        up_m + gem_offset_m * axis[2],
    )
    s = _direction(ha, dec, lat)
    # |origin + t s| = R with |s| = 1: t^2 + 2 b t + c = 0, the root ahead of the telescope.
    b = sum(o * d for o, d in zip(origin, s, strict=True))
    c = sum(o * o for o in origin) - radius_m * radius_m
    if c > 0.0:
        raise ValueError(
            f"the telescope ({math.sqrt(c + radius_m * radius_m):.3g} m from the centre) "
            f"is outside the dome of radius {radius_m:g} m"
        )
    t = -b + math.sqrt(b * b - c)
    north, east = origin[0] + t * s[0], origin[1] + t * s[1]
    if math.hypot(north, east) < 1e-9 * radius_m:
        north, east = s[0], s[1]
    azimuth = math.degrees(math.atan2(east, north)) % 360.0
    return 0.0 if azimuth >= 360.0 else azimuth  # -1e-17 % 360 rounds to 360.0
