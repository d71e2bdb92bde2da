"""Simulated enclosure: a roll-off roof or a rotating dome whose motions take simulated time.

Positions are computed lazily from the injected clock, as the filter wheel's are: a motion is
a start, a target and a time window, and every read interpolates at the current simulated
time. The shutter (or roof) has an opening fraction from 0 (closed) to 1 (open); stopped
anywhere between by `DomeModel.abort_slew` it reports `ShutterState.ERROR`, the ASCOM state
for "neither open nor closed", and a later open or close goes on from where it stopped.

A rotating dome also hides the sky from the telescope unless its slit faces the telescope's
optical axis (`DomeModel.sky_transmission`). Where the axis leaves the dome is worked out here
from the mount's mechanics (`slit_azimuth_deg`: rotation matrices and a root of the ray's
quadratic), on purpose apart from obsctl's own `obsctl.acquisition.dome_geometry`: a test
comparing the two then catches a wrong formula in either.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

from obsctl.clock import Clock
from obsctl.config import SimulatedDomeConfig
from obsctl.devices import PierSide, ShutterState
from obsctl.simulators.models import (
    INVALID_VALUE,
    NOT_IMPLEMENTED,
    AscomError,
    ConnectableModel,
    Motion,
)

if TYPE_CHECKING:
    from obsctl.simulators.mount_model import MountModel

__all__ = ["DomeModel", "slit_azimuth_deg"]

log = logging.getLogger(__name__)


def _shortest(from_deg: float, to_deg: float) -> float:
    """Return the signed rotation in degrees, in [-180, 180), from one azimuth to another."""
    return (to_deg - from_deg + 180.0) % 360.0 - 180.0


def _rotation_z(angle_rad: float) -> np.ndarray:
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def slit_azimuth_deg(
    config: SimulatedDomeConfig,
    *,
    ha_deg: float,
    dec_deg: float,
    pier_side: PierSide,
    latitude_deg: float,
) -> float:
    """Return the azimuth (deg, north = 0, east = 90) where the optical axis leaves the dome.

    The mount is built as a German mount is: in the mount's frame (z along the polar axis
    toward the north celestial pole, x toward the equator on the meridian, y toward the west
    point) the tube lies along the Dec axis, ``gem_offset_m`` from the RA axis, on the east
    of the pier (-y) at hour angle 0 for `PierSide.EAST` and on the west for the other side;
    the mount turns it about z by the hour angle. One matrix takes the mount's frame to the
    horizon's (north, east, up), and the ray from the tube meets the sphere at the positive
    root of its quadratic.
    """
    lat = math.radians(latitude_deg)
    # Columns: the mount's x, y and z axes in (north, east, up).
    to_local = np.array(
        [
            [-math.sin(lat), 0.0, math.cos(lat)],
            [0.0, -1.0, 0.0],
            [math.cos(lat), 0.0, math.sin(lat)],
        ]
    )
    turn = to_local @ _rotation_z(math.radians(ha_deg))
    dec = math.radians(dec_deg)
    look = turn @ np.array([math.cos(dec), 0.0, math.sin(dec)])
    side = -1.0 if pier_side != PierSide.WEST else 1.0
    tube = turn @ np.array([0.0, side * config.gem_offset_m, 0.0])
    start = tube + np.array(
        [config.mount_offset_north_m, config.mount_offset_east_m, config.mount_offset_up_m]
    )
    # |start + t look|^2 = R^2: t^2 + 2 (start . look) t + |start|^2 - R^2 = 0.
    roots = np.roots([1.0, 2.0 * float(start @ look), float(start @ start) - config.radius_m**2])
    t = max(float(r.real) for r in roots)
    exit_point = start + t * look
    return math.degrees(math.atan2(exit_point[1], exit_point[0])) % 360.0


class DomeModel(ConnectableModel):
    """An enclosure with ASCOM ``IDomeV3`` semantics.

    A roll-off roof (``kind = "roll_off"``) has only the shutter: it has no azimuth and no
    park position, and answers NotImplemented (0x400) for them. A rotating dome turns the
    short way round at ``rotation_rate_deg_s``; it starts parked at ``park_az_deg``. Both
    start with the shutter closed. Neither can slave itself to the telescope.

    Parameters
    ----------
    config : SimulatedDomeConfig
        Kind, shutter time, rotation rate and park azimuth.
    clock : Clock
        Source of simulated time.
    """

    def __init__(self, config: SimulatedDomeConfig, clock: Clock) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        now = clock.monotonic()
        self._shutter = Motion(0.0, 0.0, now, now)
        self._azimuth = Motion(config.park_az_deg, config.park_az_deg, now, now)
        self._park_pending = False
        self._at_park = self.rotates

    # --- abilities ---------------------------------------------------------------------

    @property
    def rotates(self) -> bool:
        """Whether the dome turns to an azimuth (CanSetAzimuth, CanPark); False for a roof."""
        return self.config.kind == "rotating"

    def _require_rotation(self, member: str) -> None:
        if not self.rotates:
            raise AscomError(NOT_IMPLEMENTED, f"{member}: a roll-off roof does not rotate")

    # --- shutter -----------------------------------------------------------------------

    @property
    def shutter_fraction(self) -> float:
        """How far the shutter or roof is open, 0 (closed) to 1 (open)."""
        return self._shutter.at(self.clock.monotonic())

    @property
    def shutter_moving(self) -> bool:
        """Whether the shutter or roof is moving."""
        return self.clock.monotonic() < self._shutter.t_end

    @property
    def shutter_state(self) -> ShutterState:
        """The shutter's ASCOM state; ERROR when stopped part-way."""
        if self.shutter_moving:
            return ShutterState.OPENING if self._shutter.target > 0.5 else ShutterState.CLOSING
        fraction = self.shutter_fraction
        if fraction >= 1.0:
            return ShutterState.OPEN
        if fraction <= 0.0:
            return ShutterState.CLOSED
        return ShutterState.ERROR

    def _move_shutter(self, target: float) -> None:
        self.require_connected()
        now = self.clock.monotonic()
        fraction = self._shutter.at(now)
        if self._shutter.target == target and (now < self._shutter.t_end or fraction == target):
            return  # already there or on the way: ASCOM allows the repeated command
        # From where it is: a roof stopped half-way takes half the time to finish.
        duration = abs(target - fraction) * self.config.shutter_time_s
        self._shutter = Motion(fraction, target, now, now + duration)
        log.info("simulated dome shutter %s", "opening" if target else "closing")

    def open_shutter(self) -> None:
        """Start opening the shutter or roof.

        Raises
        ------
        AscomError
            0x407 when not connected.
        """
        self._move_shutter(1.0)

    def close_shutter(self) -> None:
        """Start closing the shutter or roof.

        Raises
        ------
        AscomError
            0x407 when not connected.
        """
        self._move_shutter(0.0)

    # --- the sky through the slit ------------------------------------------------------

    def sky_transmission(self, mount: MountModel | None) -> float:
        """Return the fraction of the sky's light that reaches the telescope now, 0 to 1.

        The shutter's opening fraction; for a rotating dome, 0 too when the slit's centre is
        off the mount's optical axis by more than half ``slit_width_deg`` in azimuth.
        """
        fraction = self.shutter_fraction
        if not self.rotates or fraction <= 0.0 or mount is None:
            return fraction
        pointing = mount.pointing()
        wanted = slit_azimuth_deg(
            self.config,
            ha_deg=pointing.ha_deg,
            dec_deg=pointing.dec_deg,
            pier_side=mount.side_of_pier,
            latitude_deg=mount.site.latitude_deg,
        )
        off = abs(_shortest(self.azimuth_deg, wanted))
        return fraction if off <= self.config.slit_width_deg / 2.0 else 0.0

    # --- rotation ----------------------------------------------------------------------

    def _settle(self) -> None:
        if self._park_pending and self.clock.monotonic() >= self._azimuth.t_end:
            self._park_pending = False
            self._at_park = True
            log.info("simulated dome parked")

    @property
    def azimuth_deg(self) -> float:
        """Azimuth of the slit in degrees, [0, 360).

        Raises
        ------
        AscomError
            0x400 for a roll-off roof.
        """
        self._require_rotation("Azimuth")
        return self._azimuth.at(self.clock.monotonic()) % 360.0

    @property
    def rotating(self) -> bool:
        """Whether the dome turns."""
        return self.clock.monotonic() < self._azimuth.t_end

    @property
    def slewing(self) -> bool:
        """Whether any part moves, rotation or shutter (ASCOM ``Slewing``)."""
        return self.rotating or self.shutter_moving

    @property
    def at_park(self) -> bool:
        """Whether the dome is at its park position (always False for a roll-off roof)."""
        self._settle()
        return self._at_park

    def _rotate_to(self, az_deg: float) -> None:
        now = self.clock.monotonic()
        here = self._azimuth.at(now) % 360.0
        turn = _shortest(here, az_deg)
        duration = abs(turn) / self.config.rotation_rate_deg_s
        self._azimuth = Motion(here, here + turn, now, now + duration)

    def slew_to_azimuth(self, az_deg: float) -> None:
        """Start turning the slit to an azimuth; leaves the park position.

        Parameters
        ----------
        az_deg : float
            Target azimuth in degrees, [0, 360).

        Raises
        ------
        AscomError
            0x400 for a roll-off roof, 0x401 when out of range, 0x407 when not connected.
        """
        self.require_connected()
        self._require_rotation("SlewToAzimuth")
        if not 0.0 <= az_deg < 360.0:
            raise AscomError(INVALID_VALUE, f"azimuth {az_deg:g} not in [0, 360)")
        self._park_pending = False
        self._at_park = False
        self._rotate_to(az_deg)
        log.debug("simulated dome turning to %.1f deg", az_deg)

    def park(self) -> None:
        """Start turning to the park azimuth; `at_park` becomes True on arrival.

        Raises
        ------
        AscomError
            0x400 for a roll-off roof, 0x407 when not connected.
        """
        self.require_connected()
        self._require_rotation("Park")
        if self.at_park:
            return
        self._rotate_to(self.config.park_az_deg)
        self._park_pending = True
        log.info("simulated dome parking")

    def abort_slew(self) -> None:
        """Stop every motion where it is: rotation, park and shutter.

        Raises
        ------
        AscomError
            0x407 when not connected.
        """
        self.require_connected()
        now = self.clock.monotonic()
        if self.slewing:
            log.info("simulated dome motion aborted")
        fraction = self._shutter.at(now)
        self._shutter = Motion(fraction, fraction, now, now)
        here = self._azimuth.at(now) % 360.0
        self._azimuth = Motion(here, here, now, now)
        self._park_pending = False
