"""When a German equatorial mount must flip: the hour angle against the config's limits.

A German equatorial mount that followed a target from the east (``PierSide.WEST`` in ASCOM's
terms: the tube west of the pier, looking east) tracks past the meridian until its tube
would hit the pier. Before that it must slew to the same target again, which puts the tube on
the other side (a "meridian flip"). `flip_wait_s` decides, before each light frame, from
the hour angle the mount itself reports (its altitude and azimuth, so the mount's own
coordinates of date, whatever its RA/Dec system) and the frame's length:

- past ``flip_after_min``: flip now;
- before it, but the frame would end past ``limit_after_min``: wait until
  ``flip_after_min``, then flip (the frame is taken after the flip, never cut);
- otherwise: take the frame.
"""

from __future__ import annotations

import math

from obsctl.config import MeridianFlipConfig

__all__ = ["SIDEREAL_MIN_PER_DEG", "flip_wait_s", "hour_angle_deg"]

#: Minutes of time an hour angle grows by per degree (one sidereal day = 360 deg).
SIDEREAL_MIN_PER_DEG = 1436.0681 / 360.0


def hour_angle_deg(alt_deg: float, az_deg: float, latitude_deg: float) -> float:
    """Return the hour angle (deg, west positive, in (-180, 180]) of an altitude and azimuth.

    Parameters
    ----------
    alt_deg, az_deg : float
        Topocentric altitude and azimuth (north 0, east 90), degrees.
    latitude_deg : float
        The site's latitude (deg).
    """
    alt, az, lat = math.radians(alt_deg), math.radians(az_deg), math.radians(latitude_deg)
    y = -math.sin(az) * math.cos(alt)
    x = math.cos(lat) * math.sin(alt) - math.sin(lat) * math.cos(alt) * math.cos(az)
    return math.degrees(math.atan2(y, x))


def flip_wait_s(hour_angle: float, frame_s: float, settings: MeridianFlipConfig) -> float | None:
    """Return how long to wait before flipping (s); None when the frame needs no flip.

    For a mount looking east of the pier's side (``PierSide.WEST``); a mount already on the
    other side never flips.

    Parameters
    ----------
    hour_angle : float
        The mount's hour angle now (deg, west positive).
    frame_s : float
        How long the frame to come takes, exposure and readout (s).
    settings : MeridianFlipConfig
        ``flip_after_min`` and ``limit_after_min``.

    Returns
    -------
    float or None
        0 to flip now, the seconds until ``flip_after_min`` to wait and then flip, or None.
    """
    minutes = hour_angle * SIDEREAL_MIN_PER_DEG
    if minutes >= settings.flip_after_min:
        return 0.0
    if minutes + frame_s / 60.0 > settings.limit_after_min:
        return (settings.flip_after_min - minutes) * 60.0
    return None
