"""Dithering: where each frame of a visit looks, in pixels from the visit's centred position.

Dithers move the stars over different pixels from frame to frame, so that hot pixels, bad
columns and the flat's residuals average out when the frames are stacked. Two patterns, as
PHD2 and N.I.N.A. offer:

- ``random``: uniform over a disc of the amplitude's radius;
- ``spiral``: the points of a square spiral (0, 0), (1, 0), (1, 1), (0, 1), (-1, 1), ...
  scaled so that its first ring lies at the amplitude, then wider rings in turn: every frame
  on its own pixels, none far out while a few frames are taken.

The offsets are in the camera's pixels (x right, y up); `pixels_to_sky` turns them into an
offset on the sky for the mount, with the camera's position angle.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np

from obsctl.processing.astrometry import deproject_tan

__all__ = [
    "Dither",
    "DitherPattern",
    "dither_offset_px",
    "offset_radec_deg",
    "pixels_to_sky",
    "spiral_point",
]

DitherPattern = Literal["random", "spiral"]


@dataclass(frozen=True)
class Dither:
    """A frame's dither from the visit's (centred) position.

    Attributes
    ----------
    pixels : tuple of float or None
        ``(x, y)`` in the camera's pixels; None for a dither asked for on the sky.
    sky_arcsec : tuple of float
        ``(east, north)`` on the sky (arcsec).
    """

    pixels: tuple[float, float] | None
    sky_arcsec: tuple[float, float]


def offset_radec_deg(
    ra_deg: float, dec_deg: float, east_arcsec: float, north_arcsec: float
) -> tuple[float, float]:
    """Return the position a tangent-plane offset (arcsec) away from one (deg)."""
    ra, dec = deproject_tan(
        np.array([east_arcsec / 3600.0]), np.array([north_arcsec / 3600.0]), ra_deg, dec_deg
    )
    return float(ra[0]), float(dec[0])


def spiral_point(n: int) -> tuple[int, int]:
    """Return the n-th point (0-based) of the square spiral about (0, 0).

    (0, 0), (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (2, -1),
    ...: each ring of the square k from the centre holds 8 k points.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    x = y = 0
    dx, dy = 1, 0
    run, taken, turns = 1, 0, 0
    for _ in range(n):
        x, y = x + dx, y + dy
        taken += 1
        if taken == run:
            taken = 0
            dx, dy = -dy, dx  # a quarter turn counterclockwise
            turns += 1
            if turns % 2 == 0:
                run += 1
    return x, y


def dither_offset_px(
    pattern: DitherPattern, n: int, amplitude_px: float, rng: random.Random
) -> tuple[float, float]:
    """Return the n-th dither's offset (x, y) in pixels.

    Parameters
    ----------
    pattern : {"random", "spiral"}
        See the module.
    n : int
        The dither's number in the visit (0: the visit's first frame, not dithered).
    amplitude_px : float
        The random disc's radius, or the spiral's step (pixel).
    rng : random.Random
        The visit's generator (``random`` only), so a visit's dithers can be replayed.
    """
    if n == 0 or amplitude_px == 0:
        return 0.0, 0.0
    if pattern == "spiral":
        i, j = spiral_point(n)
        return i * amplitude_px, j * amplitude_px
    r = amplitude_px * math.sqrt(rng.random())
    theta = rng.uniform(0.0, 2.0 * math.pi)
    return r * math.cos(theta), r * math.sin(theta)


def pixels_to_sky(
    dx_px: float, dy_px: float, scale_arcsec: float, position_angle_deg: float = 0.0
) -> tuple[float, float]:
    """Return the sky offset (east, north) in arcsec of a shift of the frame by (dx, dy) px.

    The frame's centre moves by (dx, dy): with north up and east left (position angle 0, as
    the raw header's approximate WCS has it) +x is west and +y is north; a position angle
    (east of north) turns the pair.

    Parameters
    ----------
    dx_px, dy_px : float
        The shift (pixel).
    scale_arcsec : float
        The pixel scale (arcsec per pixel).
    position_angle_deg : float, optional
        The camera's position angle (deg, east of north).
    """
    pa = math.radians(position_angle_deg)
    west, north = dx_px * scale_arcsec, dy_px * scale_arcsec
    east = -west
    # Rotating the camera by the position angle turns the frame's axes on the sky.
    return (
        east * math.cos(pa) + north * math.sin(pa),
        -east * math.sin(pa) + north * math.cos(pa),
    )
