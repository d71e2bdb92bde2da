"""Software slaving: a rotating dome follows the telescope, and frames say whether it did.

`DomeFollower` turns the dome's slit to where the telescope's optical axis leaves the dome
(`obsctl.acquisition.dome_geometry`, with the ``[dome]`` geometry): the sequencer asks it at
the start of every slew, so the dome and the mount move together, and waits on it before
each light frame (`DomeFollower.wait_aligned`); while the mount tracks, `DomeFollower.run`
looks every ``follow_every_s`` and sends the dome again only once the slit is off by more
than half the tolerance, to spare the dome's motor.

It acts only while it may: ``[dome] slave`` is on, the dome can set its azimuth (never a
roll-off roof), the shutter is open or opening, the mount is unparked and the safety
supervisor says safe. Unsafe, the supervisor parks the mount, closes the shutter and parks
the dome without the follower in the way. A dome that can slave itself (ASCOM ``Slaved``)
is slaved by obsctl all the same, the way N.I.N.A. and Ekos do by default: one geometry,
the operator's, and one behaviour for every dome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from obsctl.acquisition.dome_geometry import dome_azimuth_deg, hadec_from_altaz
from obsctl.clock import Clock
from obsctl.config import Config
from obsctl.devices import DeviceSet, DomeStatus, MountStatus, PierSide, ShutterState
from obsctl.errors import DeviceError
from obsctl.operations import Operations
from obsctl.store.headers import SlitRecord

__all__ = ["DomeFollower", "SlitReading"]

log = logging.getLogger(__name__)

#: Shutter states in which the dome follows the telescope.
_FOLLOW_SHUTTER = (ShutterState.OPEN, ShutterState.OPENING)


def _off_deg(a: float, b: float) -> float:
    """Return the angle in degrees, [0, 180], between two azimuths."""
    return abs((a - b + 180.0) % 360.0 - 180.0)


@dataclass(frozen=True, slots=True)
class SlitReading:
    """The dome and the telescope read together.

    Attributes
    ----------
    azimuth_deg : float
        The slit's azimuth (deg).
    required_deg : float
        The azimuth the slit must face for the telescope (deg).
    error_deg : float
        How far the slit is off (deg, 0 to 180).
    slewing : bool
        Whether the dome moves (its rotation or its shutter).
    """

    azimuth_deg: float
    required_deg: float
    error_deg: float
    slewing: bool


class DomeFollower:
    """Slaves a rotating dome to the mount in software.

    Parameters
    ----------
    devices : DeviceSet
        The dome and the mount (without either, the follower does nothing).
    config : Config
        ``[dome]`` (geometry, tolerance, timing) and the site's latitude.
    ops : Operations
        Device commands with their deadlines.
    clock : Clock
        Observatory time (the follower's period and the wait's deadline).
    is_safe : callable
        Whether the safety supervisor says safe now.
    """

    def __init__(
        self,
        devices: DeviceSet,
        config: Config,
        ops: Operations,
        clock: Clock,
        is_safe: Callable[[], bool],
    ) -> None:
        self.devices = devices
        self.config = config.dome
        self.latitude_deg = config.site.latitude_deg
        self.ops = ops
        self.clock = clock
        self.is_safe = is_safe
        self._rotates: bool | None = None
        #: The azimuth last sent to the dome (deg), None when none is on its way.
        self._sent: float | None = None

    # -- geometry -------------------------------------------------------------------------

    def required_deg(self, ha_deg: float, dec_deg: float, pier_side: PierSide) -> float:
        """Return the slit azimuth (deg) for a telescope at this hour angle and declination."""
        c = self.config
        return dome_azimuth_deg(
            ha_deg,
            dec_deg,
            pier_side,
            latitude_deg=self.latitude_deg,
            radius_m=c.radius_m,
            north_m=c.mount_offset_north_m,
            east_m=c.mount_offset_east_m,
            up_m=c.mount_offset_up_m,
            gem_offset_m=c.gem_offset_m,
        )

    def required_for(self, mount: MountStatus) -> float:
        """Return the slit azimuth (deg) for where the mount points now (its alt/az, side)."""
        ha, dec = hadec_from_altaz(mount.alt_deg, mount.az_deg, self.latitude_deg)
        return self.required_deg(ha, dec, mount.pier_side)

    def required_for_target(self, ra_deg: float, dec_deg: float, mount: MountStatus) -> float:
        """Return the slit azimuth (deg) for a target the mount is about to slew to.

        The hour angle comes from the mount's sidereal time (else from its own RA and hour
        angle now); the pier side is the usual one for it (`predicted_pier_side`).
        """
        if mount.sidereal_time_h is not None:
            lst = mount.sidereal_time_h * 15.0
        else:
            ha_now, _ = hadec_from_altaz(mount.alt_deg, mount.az_deg, self.latitude_deg)
            lst = mount.ra_deg + ha_now
        return self.required_deg(lst - ra_deg, dec_deg, PierSide.UNKNOWN)

    # -- state ----------------------------------------------------------------------------

    async def enabled(self) -> bool:
        """Whether there is a dome to slave: ``slave`` on, a mount, a dome that rotates."""
        dome, mount = self.devices.dome, self.devices.mount
        if not self.config.slave or dome is None or mount is None:
            return False
        if self._rotates is None:
            info = await self.ops.command(dome.info(), dome.name, "dome info")
            self._rotates = info.can_set_azimuth
            if info.can_slave and self._rotates:
                log.info("the dome could slave itself; obsctl slaves it with [dome] geometry")
        return self._rotates

    async def _read(self) -> tuple[DomeStatus, MountStatus] | None:
        dome, mount = self.devices.dome, self.devices.mount
        assert dome is not None and mount is not None
        d, m = await asyncio.gather(
            self.ops.command(dome.status(), dome.name, "dome status"),
            self.ops.command(mount.status(), mount.name, "mount status"),
        )
        return (d, m) if d.azimuth_deg is not None else None

    def _may_move(self, dome: DomeStatus, mount: MountStatus) -> bool:
        return dome.shutter in _FOLLOW_SHUTTER and not mount.at_park and self.is_safe()

    async def _send(self, azimuth_deg: float, why: str) -> None:
        dome = self.devices.dome
        assert dome is not None
        azimuth_deg %= 360.0
        if azimuth_deg >= 360.0:  # -1e-17 % 360 is 360.0, outside ASCOM's [0, 360)
            azimuth_deg = 0.0
        await self.ops.command(dome.slew_to_azimuth(azimuth_deg), dome.name, "dome azimuth")
        self._sent = azimuth_deg
        log.debug("dome to %.1f deg (%s)", azimuth_deg, why)

    # -- what callers use -----------------------------------------------------------------

    async def slew_with(self, ra_deg: float, dec_deg: float) -> None:
        """Send the dome toward a target's slit azimuth as the mount starts its slew.

        A failure is logged and left to `wait_aligned`: the dome must not cost the slew.
        """
        try:
            if not await self.enabled():
                return
            read = await self._read()
            if read is None or not self._may_move(*read):
                return
            await self._send(self.required_for_target(ra_deg, dec_deg, read[1]), "slew")
        except DeviceError as exc:
            log.warning("the dome did not take the slew's azimuth: %s", exc)

    async def reading(self, *, follow: bool = False) -> SlitReading | None:
        """Read the slit against the telescope; None without a dome to slave.

        With ``follow``, send the dome again when the slit is off by more than half the
        tolerance and it may move (not while the mount slews, nor to an azimuth it is
        already on its way to).

        Raises
        ------
        DeviceError
            When the dome or the mount does not answer.
        """
        if not await self.enabled():
            return None
        read = await self._read()
        if read is None:
            return None
        dome, mount = read
        assert dome.azimuth_deg is not None
        required = self.required_for(mount)
        error = _off_deg(dome.azimuth_deg, required)
        if follow and self._may_move(dome, mount) and not mount.slewing:
            half = self.config.tolerance_deg / 2.0
            # On its way to an azimuth close enough: let it arrive rather than start again.
            on_its_way = dome.slewing and (
                self._sent is not None and _off_deg(self._sent, required) <= half
            )
            if error > half and not on_its_way:
                await self._send(required, f"off by {error:.1f} deg")
        return SlitReading(dome.azimuth_deg, required, error, dome.slewing)

    async def wait_aligned(self) -> SlitReading | None:
        """Wait until the slit is still and within the tolerance, then ``settle_s`` more.

        Returns the last reading: aligned, or not when ``align_timeout_s`` passed first (the
        frame is exposed anyway and flagged); None without a dome to slave, or when the dome
        or the mount does not answer (logged).
        """
        c = self.config
        deadline = self.clock.monotonic() + c.align_timeout_s
        last: SlitReading | None = None
        try:
            while True:
                last = await self.reading(follow=True)
                if last is None:
                    return None
                if not last.slewing and last.error_deg <= c.tolerance_deg:
                    break
                if not self.is_safe():
                    return last  # the dome is the supervisor's now; the sequencer waits
                if self.clock.monotonic() > deadline:
                    log.warning(
                        "the slit is %.1f deg off the telescope after %g s: exposing anyway",
                        last.error_deg,
                        c.align_timeout_s,
                    )
                    return last
                await asyncio.sleep(self.ops.settings.poll_s)
            if c.settle_s > 0 and self._sent is not None:
                await self.clock.sleep(c.settle_s)
                self._sent = None
                return await self.reading()
        except DeviceError as exc:
            log.warning("could not read the dome's alignment: %s", exc)
            return last
        return last

    async def run(self) -> None:
        """Follow the tracking telescope until cancelled (the daemon's background task)."""
        while True:
            await self.clock.sleep(self.config.follow_every_s)
            try:
                if await self.enabled():
                    await self.reading(follow=True)
            except DeviceError as exc:
                log.debug("dome follower: %s", exc)


def slit_record(
    start: SlitReading | None, end: SlitReading | None, tolerance_deg: float
) -> SlitRecord | None:
    """Return what a frame's header and log row keep of the slit at its start and end."""
    if start is None:
        return None
    error = start.error_deg if end is None else max(start.error_deg, end.error_deg)
    return SlitRecord(
        azimuth_deg=start.azimuth_deg,
        error_deg=error,
        aligned=error <= tolerance_deg,
    )
