"""Simulated German equatorial mount at the configured site.

Coordinates: the mount takes J2000 right ascension and declination and treats them as
coordinates of date. There is no precession, nutation, aberration or refraction: the
simulator only has to be self-consistent (a star rendered at RA/Dec lands where the mount
points), and a client comparing with a full astrometric model sees the neglected precession
(about 0.35 deg by 2025) as a pointing offset. Sidereal time is Greenwich *mean* sidereal
time (Meeus, eq. 12.4) plus the east longitude, with UTC standing in for UT1 (<1 s, i.e.
<0.004 deg); no network or IERS data is needed.

All positions are computed lazily from the injected clock: a slew is a start pose, a target
and a time window, and every read interpolates along the mechanical axes (hour angle and
declination) at the current simulated time.

Pointing error: the sky the optics see (`MountModel.true_pointing`) is the reported
position (`MountModel.pointing`, what the Alpaca RightAscension/Declination give) moved by
`MountModel.pointing_error_arcsec`: a fixed offset per pier side, a drift since the last slew
and the RA worm's periodic error (`obsctl.simulators.pointing_error`, configured in
``[simulator.mount]``). The reported position stays what the mount was told, as a real
mount's encoders do; a sync re-zeros the fixed offset of the side it is on.

Pulse guiding (`MountModel.pulse_guide`) is the relative move: it shifts the reported and
the true position together by the guide rate times the pulse's length, over the pulse, and
leaves the drift running (a slew or a sync restarts it). The guide rate is ASCOM's default,
0.5 x sidereal, on both axes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime

from obsctl.clock import Clock
from obsctl.config import SimulatedMountConfig, SiteConfig
from obsctl.devices import DEFAULT_GUIDE_RATE_ARCSEC_S, GuideDirection, PierSide
from obsctl.simulators import pointing_error
from obsctl.simulators.models import (
    INVALID_OPERATION,
    INVALID_VALUE,
    INVALID_WHILE_PARKED,
    VALUE_NOT_SET,
    AscomError,
    ConnectableModel,
)

__all__ = [
    "GUIDE_RATE_ARCSEC_S",
    "MountModel",
    "MountPointing",
    "altaz_to_hadec",
    "hadec_to_altaz",
    "local_sidereal_time_deg",
]

log = logging.getLogger(__name__)

# Sidereal degrees per SI second of UT (Meeus, eq. 12.4 coefficient / 86400).
_SIDEREAL_DEG_PER_S = 360.98564736629 / 86400.0
_JD_UNIX_EPOCH = 2440587.5
#: The simulated guide rate of both axes, arcsec per second of time (ASCOM's default).
GUIDE_RATE_ARCSEC_S = DEFAULT_GUIDE_RATE_ARCSEC_S
_JD_J2000 = 2451545.0


def _wrap360(angle_deg: float) -> float:
    return angle_deg % 360.0


def _wrap180(angle_deg: float) -> float:
    return (angle_deg + 180.0) % 360.0 - 180.0


def local_sidereal_time_deg(when: datetime, longitude_deg: float) -> float:
    """Return the local mean sidereal time.

    Parameters
    ----------
    when : datetime.datetime
        Timezone-aware UTC time (used as UT1).
    longitude_deg : float
        Site longitude in degrees, east positive.

    Returns
    -------
    float
        Local mean sidereal time in degrees, in [0, 360).
    """
    jd = when.timestamp() / 86400.0 + _JD_UNIX_EPOCH
    d = jd - _JD_J2000
    t = d / 36525.0
    gmst = 280.46061837 + 360.98564736629 * d + 0.000387933 * t * t - t**3 / 38710000.0
    return _wrap360(gmst + longitude_deg)


def hadec_to_altaz(ha_deg: float, dec_deg: float, latitude_deg: float) -> tuple[float, float]:
    """Convert hour angle and declination to altitude and azimuth.

    Parameters
    ----------
    ha_deg, dec_deg : float
        Hour angle (west positive) and declination in degrees.
    latitude_deg : float
        Site latitude in degrees.

    Returns
    -------
    tuple of float
        ``(alt_deg, az_deg)`` with azimuth north = 0, east = 90, in [0, 360).
    """
    ha, dec, lat = math.radians(ha_deg), math.radians(dec_deg), math.radians(latitude_deg)
    sin_alt = math.sin(dec) * math.sin(lat) + math.cos(dec) * math.cos(lat) * math.cos(ha)
    alt = math.asin(max(-1.0, min(1.0, sin_alt)))
    az = math.atan2(
        -math.cos(dec) * math.sin(ha),
        math.sin(dec) * math.cos(lat) - math.cos(dec) * math.sin(lat) * math.cos(ha),
    )
    return math.degrees(alt), _wrap360(math.degrees(az))


def altaz_to_hadec(alt_deg: float, az_deg: float, latitude_deg: float) -> tuple[float, float]:
    """Convert altitude and azimuth to hour angle and declination.

    Parameters
    ----------
    alt_deg, az_deg : float
        Altitude and azimuth (north = 0, east = 90) in degrees.
    latitude_deg : float
        Site latitude in degrees.

    Returns
    -------
    tuple of float
        ``(ha_deg, dec_deg)``, hour angle west positive in [-180, 180).
    """
    # The transform is its own inverse with (alt, az) and (dec, ha) swapped.
    dec_deg, ha_deg = hadec_to_altaz(az_deg, alt_deg, latitude_deg)
    return _wrap180(ha_deg), dec_deg


@dataclass(frozen=True, slots=True)
class MountPointing:
    """Where the mount points at one instant.

    Attributes
    ----------
    ra_deg, dec_deg : float
        Right ascension in [0, 360) and declination, degrees.
    ha_deg : float
        Hour angle in [-180, 180), degrees, west positive.
    alt_deg, az_deg : float
        Altitude and azimuth (north = 0, east = 90), degrees.
    lst_deg : float
        Local sidereal time, degrees.
    """

    ra_deg: float
    dec_deg: float
    ha_deg: float
    alt_deg: float
    az_deg: float
    lst_deg: float


@dataclass(frozen=True, slots=True)
class _Slew:
    start_ha_deg: float
    start_dec_deg: float
    target_dec_deg: float
    target_ra_deg: float | None  # an equatorial target: its hour angle grows with time
    target_ha_deg: float | None  # a horizontal target: fixed hour angle
    t_start: float
    t_arrive: float
    t_end: float  # arrival plus settling
    park: bool

    def target_ha(self, lst_deg: float) -> float:
        if self.target_ha_deg is not None:
            return self.target_ha_deg
        assert self.target_ra_deg is not None
        return _wrap180(lst_deg - self.target_ra_deg)


@dataclass(frozen=True, slots=True)
class _Pulse:
    """A guide pulse on one axis: ``rate_deg_s`` (signed) from ``t_start`` to ``t_end``."""

    rate_deg_s: float
    t_start: float
    t_end: float

    def offset_deg(self, mono: float) -> float:
        """Return how far the pulse has moved its axis by monotonic time ``mono``."""
        return self.rate_deg_s * (min(mono, self.t_end) - self.t_start)


class MountModel(ConnectableModel):
    """A German equatorial mount with ASCOM ``ITelescopeV4`` semantics.

    It starts unparked, not tracking, pointing at the park position, so a client can slew
    after connecting without unparking first.

    Parameters
    ----------
    config : SimulatedMountConfig
        Slew rate, settle time, altitude limit, park position, field rotation.
    site : SiteConfig
        Latitude, longitude (east positive) and elevation.
    clock : Clock
        Source of simulated time.
    """

    def __init__(self, config: SimulatedMountConfig, site: SiteConfig, clock: Clock) -> None:
        super().__init__()
        self.config = config
        self.site = site
        self.clock = clock
        self._tracking = False
        self._at_park = False
        ha, dec = altaz_to_hadec(config.park_alt_deg, config.park_az_deg, site.latitude_deg)
        self._hold_ha_deg = ha  # authoritative while not tracking
        self._hold_dec_deg = dec
        self._hold_ra_deg = _wrap360(self._lst_now()[1] - ha)  # authoritative while tracking
        self._slew: _Slew | None = None
        self._target_ra_deg: float | None = None
        self._target_dec_deg: float | None = None
        #: The side of the pier: the one the last slew went to (a German equatorial mount
        #: keeps its side while it tracks past the meridian, until a slew flips it), and the
        #: one whose fixed pointing error applies.
        self._side = PierSide.WEST if ha < 0 else PierSide.EAST
        #: What syncs have added to each side's configured fixed error, (east, north) arcsec.
        self._sync_correction_arcsec = {PierSide.EAST: (0.0, 0.0), PierSide.WEST: (0.0, 0.0)}
        #: Monotonic simulated time the drift counts from: the end of the last slew or the
        #: last sync.
        self._drift_epoch_s = clock.monotonic()
        #: Guide pulses in progress, by axis ("ra", "dec"); folded into the held position
        #: when they end (`_fold_pulses`), dropped where they are by anything that moves
        #: the mount otherwise (`_drop_pulses`).
        self._pulses: dict[str, _Pulse] = {}
        #: A driver that lost track of a slew: Slewing stays True (the mount holds its
        #: position) until AbortSlew; a new slew or a park does not clear it.
        self.slewing_stuck = False
        #: Monotonic simulated times at which tracking stopped at the meridian limit.
        self.limit_stops: list[float] = []

    # --- time and state ----------------------------------------------------------------

    def _lst_now(self) -> tuple[float, float]:
        """Return (monotonic simulated seconds, local sidereal time in degrees) for now."""
        mono = self.clock.monotonic()
        return mono, local_sidereal_time_deg(self.clock.now(), self.site.longitude_deg)

    def _settle(self, mono: float, lst: float) -> None:
        """Finish a slew whose end time has passed."""
        slew = self._slew
        if slew is None or mono < slew.t_end:
            return
        lst_end = _wrap360(lst + (slew.t_end - mono) * _SIDEREAL_DEG_PER_S)
        ha = slew.target_ha(lst_end)
        self._hold_dec_deg = slew.target_dec_deg
        self._hold_ha_deg = ha
        self._hold_ra_deg = _wrap360(lst_end - ha)
        self._slew = None
        if slew.park:
            self._at_park = True
            log.info("simulated mount parked")

    def _hadec(self, mono: float, lst: float) -> tuple[float, float]:
        self._settle(mono, lst)
        slew = self._slew
        if slew is not None:
            span = slew.t_arrive - slew.t_start
            f = 1.0 if span <= 0 else min(1.0, max(0.0, (mono - slew.t_start) / span))
            ha = slew.start_ha_deg + f * _wrap180(slew.target_ha(lst) - slew.start_ha_deg)
            dec = slew.start_dec_deg + f * (slew.target_dec_deg - slew.start_dec_deg)
            return _wrap180(ha), dec
        if self._tracking:
            self._fold_pulses(mono)
            ra_pulse, dec_pulse = self._pulse_offsets_deg(mono)
            ha = _wrap180(lst - self._hold_ra_deg - ra_pulse)
            dec = _clamp_dec(self._hold_dec_deg + dec_pulse)
            limit = self.config.meridian_limit_deg
            if limit is not None and self._side == PierSide.WEST and ha > limit:
                # Looking east past the meridian, the tube nears the pier: the mount stops
                # tracking at its limit (when it got there), as a real one does.
                self._tracking = False
                self._hold_ha_deg = limit
                self._hold_dec_deg = dec
                self._pulses.clear()
                self.limit_stops.append(mono - (ha - limit) / _SIDEREAL_DEG_PER_S)
                log.warning("simulated mount: tracking stopped at the meridian limit")
                return limit, dec
            return ha, dec
        return self._hold_ha_deg, self._hold_dec_deg

    def _pulse_offsets_deg(self, mono: float) -> tuple[float, float]:
        """Return (RA, Dec) in degrees the pulses in progress have moved the mount by."""
        ra = self._pulses["ra"].offset_deg(mono) if "ra" in self._pulses else 0.0
        dec = self._pulses["dec"].offset_deg(mono) if "dec" in self._pulses else 0.0
        return ra, dec

    def _fold_pulses(self, mono: float) -> None:
        """Move the held position by the pulses that have ended, and forget them."""
        for axis in [a for a, p in self._pulses.items() if mono >= p.t_end]:
            pulse = self._pulses.pop(axis)
            self._move_held(axis, pulse.offset_deg(pulse.t_end))

    def _move_held(self, axis: str, moved_deg: float) -> None:
        """Add a pulse's move to the held RA (``axis`` "ra") or Dec (while tracking)."""
        if axis == "ra":
            self._hold_ra_deg = _wrap360(self._hold_ra_deg + moved_deg)
        else:
            self._hold_dec_deg = _clamp_dec(self._hold_dec_deg + moved_deg)

    def _drop_pulses(self) -> None:
        """Stop the pulses in progress where they are (call after taking the position)."""
        self._pulses.clear()

    def _hold_current(self) -> None:
        """Freeze the present position as the settled position (ends any slew)."""
        mono, lst = self._lst_now()
        ha, dec = self._hadec(mono, lst)
        self._slew = None
        self._drop_pulses()  # their progress so far is in (ha, dec)
        self._hold_ha_deg, self._hold_dec_deg = ha, dec
        self._hold_ra_deg = _wrap360(lst - ha)
        # A slew stopped short: the drift counts from the stop, not from the planned end.
        self._drift_epoch_s = min(self._drift_epoch_s, mono)

    # --- properties --------------------------------------------------------------------

    def pointing(self) -> MountPointing:
        """Return the reported pointing, all coordinates read at one instant.

        This is where the mount says it points (the Alpaca RightAscension and Declination);
        the optics see `true_pointing`.
        """
        return self._pointing_at(*self._lst_now())

    def _pointing_at(self, mono: float, lst: float) -> MountPointing:
        ha, dec = self._hadec(mono, lst)
        alt, az = hadec_to_altaz(ha, dec, self.site.latitude_deg)
        return MountPointing(
            ra_deg=_wrap360(lst - ha), dec_deg=dec, ha_deg=ha, alt_deg=alt, az_deg=az, lst_deg=lst
        )

    def _configured_fixed_arcsec(self) -> tuple[float, float]:
        """Return the configured fixed error (east, north) of the present error side."""
        if self._side == PierSide.EAST:
            return self.config.pointing_error_east_arcsec
        return self.config.pointing_error_west_arcsec

    def _error_at(self, mono: float) -> tuple[float, float]:
        """Return the pointing error (east, north) in arcsec at monotonic time ``mono``."""
        cfg = self.config
        configured = self._configured_fixed_arcsec()
        synced = self._sync_correction_arcsec[self._side]
        return pointing_error.pointing_error_arcsec(
            fixed_arcsec=(configured[0] + synced[0], configured[1] + synced[1]),
            drift_rate_arcsec_per_h=cfg.drift_arcsec_per_h,
            since_slew_s=mono - self._drift_epoch_s,
            periodic_amplitude_arcsec=cfg.periodic_error_arcsec,
            periodic_period_s=cfg.periodic_error_period_s,
            t_s=mono,
        )

    def pointing_error_arcsec(self, after_s: float = 0.0) -> tuple[float, float]:
        """Return the pointing error: where the optics look minus the reported position.

        The truth for tests of centring and guiding; no ASCOM client can read it.

        Parameters
        ----------
        after_s : float, optional
            Seconds from now at which to evaluate the error (the middle of an exposure),
            assuming no slew or sync in between.

        Returns
        -------
        tuple of float
            ``(east, north)`` = ``(dRA cos Dec, dDec)`` in arcsec, as gnomonic offsets in
            the tangent plane at the reported position. ``(0, 0)`` with the default config.
        """
        return self._error_at(self.clock.monotonic() + after_s)

    def true_pointing(self, after_s: float = 0.0) -> MountPointing:
        """Return where the optics look: the reported pointing moved by the pointing error.

        Parameters
        ----------
        after_s : float, optional
            Seconds from now at which the error is evaluated (drift and periodic error go
            on); the reported position is read now (a tracking mount's RA/Dec stay put).

        Returns
        -------
        MountPointing
            The true RA/Dec, with hour angle, altitude and azimuth from them and the
            sidereal time of now. The reported pointing itself when the error is 0.
        """
        mono, lst = self._lst_now()
        reported = self._pointing_at(mono, lst)
        east, north = self._error_at(mono + after_s)
        if east == 0.0 and north == 0.0:
            return reported
        ra, dec = pointing_error.offset_radec_deg(reported.ra_deg, reported.dec_deg, east, north)
        ha = _wrap180(lst - ra)
        alt, az = hadec_to_altaz(ha, dec, self.site.latitude_deg)
        return MountPointing(ra_deg=ra, dec_deg=dec, ha_deg=ha, alt_deg=alt, az_deg=az, lst_deg=lst)

    @property
    def sidereal_time_h(self) -> float:
        """Local mean sidereal time in hours."""
        return self._lst_now()[1] / 15.0

    @property
    def slewing(self) -> bool:
        """Whether the mount moves or settles after a slew (including a park).

        Always True while `slewing_stuck` is set.
        """
        self._settle(*self._lst_now())
        return self._slew is not None or self.slewing_stuck

    @property
    def tracking(self) -> bool:
        """Whether sidereal tracking is on."""
        return self._tracking

    @property
    def is_pulse_guiding(self) -> bool:
        """Whether a guide pulse is in progress (on either axis)."""
        mono = self.clock.monotonic()
        return any(mono < p.t_end for p in self._pulses.values())

    @property
    def guide_rate_ra_arcsec_s(self) -> float:
        """The RA axis's guide rate in arcsec of RA per second of time (0.5 x sidereal)."""
        return GUIDE_RATE_ARCSEC_S

    @property
    def guide_rate_dec_arcsec_s(self) -> float:
        """The Dec axis's guide rate in arcsec per second of time (0.5 x sidereal)."""
        return GUIDE_RATE_ARCSEC_S

    @property
    def at_park(self) -> bool:
        """Whether the mount is parked (set when a park slew ends)."""
        self._settle(*self._lst_now())
        return self._at_park

    @property
    def side_of_pier(self) -> PierSide:
        """The side of the pier the last slew chose: west for a target east of the meridian.

        It stays while the mount tracks past the meridian (up to ``meridian_limit_deg``),
        until a slew flips it.
        """
        return self._side

    def destination_side_of_pier(self, ra_deg: float, dec_deg: float) -> PierSide:
        """Pier side the mount would take for a target, by the same hour-angle rule.

        Parameters
        ----------
        ra_deg, dec_deg : float
            Target in degrees.

        Returns
        -------
        PierSide
            West for a target east of the meridian, east otherwise.

        Raises
        ------
        AscomError
            0x401 when the coordinates are out of range.
        """
        _check_radec(ra_deg, dec_deg)
        _, lst = self._lst_now()
        return PierSide.WEST if _wrap180(lst - ra_deg) < 0 else PierSide.EAST

    @property
    def target_ra_deg(self) -> float:
        """Target right ascension in degrees; AscomError 0x402 when never set."""
        if self._target_ra_deg is None:
            raise AscomError(VALUE_NOT_SET, "TargetRightAscension has not been set")
        return self._target_ra_deg

    @property
    def target_dec_deg(self) -> float:
        """Target declination in degrees; AscomError 0x402 when never set."""
        if self._target_dec_deg is None:
            raise AscomError(VALUE_NOT_SET, "TargetDeclination has not been set")
        return self._target_dec_deg

    def set_target_ra_deg(self, ra_deg: float) -> None:
        """Set the target right ascension in degrees, [0, 360).

        Raises
        ------
        AscomError
            0x401 when out of range.
        """
        _check_radec(ra_deg, 0.0)
        self._target_ra_deg = ra_deg

    def set_target_dec_deg(self, dec_deg: float) -> None:
        """Set the target declination in degrees, [-90, 90].

        Raises
        ------
        AscomError
            0x401 when out of range.
        """
        _check_radec(0.0, dec_deg)
        self._target_dec_deg = dec_deg

    @property
    def utc_now(self) -> datetime:
        """The simulated UTC time."""
        return self.clock.now()

    # --- commands ----------------------------------------------------------------------

    def set_tracking(self, on: bool) -> None:
        """Switch sidereal tracking on or off.

        Raises
        ------
        AscomError
            0x407 when not connected.
        """
        self.require_connected()
        if on == self._tracking:
            return
        if self._slew is None:
            self._hold_current()
        # During a slew only the flag changes; `_settle` keeps RA or HA from then on.
        self._tracking = on

    def _check_can_slew(self) -> None:
        self.require_connected()
        if self.at_park:
            raise AscomError(INVALID_WHILE_PARKED, "the mount is parked; unpark it first")

    def _start_slew(
        self,
        *,
        target_dec_deg: float,
        target_ra_deg: float | None = None,
        target_ha_deg: float | None = None,
        park: bool = False,
    ) -> None:
        mono, lst = self._lst_now()
        ha, dec = self._hadec(mono, lst)
        self._drop_pulses()  # the slew starts from where they have moved the mount
        if target_ha_deg is not None:
            target_ha = target_ha_deg
        else:
            assert target_ra_deg is not None
            target_ha = _wrap180(lst - target_ra_deg)
        # Both axes move at the same rate at once, so the longer axis sets the time.
        distance = max(abs(_wrap180(target_ha - ha)), abs(target_dec_deg - dec))
        side = PierSide.WEST if target_ha < 0 else PierSide.EAST
        if side != self._side:
            # A flip turns the RA axis half a turn, whatever the hour angles say.
            distance = max(distance, 180.0)
        move_s = distance / self.config.slew_rate_deg_s
        self._side = side
        self._drift_epoch_s = mono + move_s + self.config.settle_s
        self._slew = _Slew(
            start_ha_deg=ha,
            start_dec_deg=dec,
            target_dec_deg=target_dec_deg,
            target_ra_deg=target_ra_deg,
            target_ha_deg=target_ha_deg,
            t_start=mono,
            t_arrive=mono + move_s,
            t_end=mono + move_s + self.config.settle_s,
            park=park,
        )
        log.debug("simulated mount slewing %.2f deg in %.2f s", distance, move_s)

    def _check_altitude(self, alt_deg: float) -> None:
        if alt_deg < self.config.min_alt_deg:
            raise AscomError(
                INVALID_VALUE,
                f"target altitude {alt_deg:.1f} deg is below the limit "
                f"{self.config.min_alt_deg} deg",
            )

    def slew_to_radec(self, ra_deg: float, dec_deg: float) -> None:
        """Start a slew to equatorial coordinates (also sets the target).

        The tracking state is left as it is: with tracking off the mount arrives at the
        coordinates and then drifts with the sky.

        Parameters
        ----------
        ra_deg, dec_deg : float
            Target right ascension in [0, 360) and declination in degrees.

        Raises
        ------
        AscomError
            0x408 when parked, 0x401 when out of range or below ``min_alt_deg``,
            0x407 when not connected.
        """
        self._check_can_slew()
        _check_radec(ra_deg, dec_deg)
        _, lst = self._lst_now()
        alt, _ = hadec_to_altaz(_wrap180(lst - ra_deg), dec_deg, self.site.latitude_deg)
        self._check_altitude(alt)
        self._target_ra_deg, self._target_dec_deg = ra_deg, dec_deg
        self._start_slew(target_dec_deg=dec_deg, target_ra_deg=ra_deg)

    def slew_to_target(self) -> None:
        """Start a slew to the target coordinates.

        Raises
        ------
        AscomError
            0x402 when no target is set, otherwise as `slew_to_radec`.
        """
        self.slew_to_radec(self.target_ra_deg, self.target_dec_deg)

    def slew_to_altaz(self, alt_deg: float, az_deg: float) -> None:
        """Start a slew to a horizontal position.

        Parameters
        ----------
        alt_deg, az_deg : float
            Target altitude and azimuth (north = 0, east = 90) in degrees.

        Raises
        ------
        AscomError
            0x408 when parked, 0x40B while tracking (ASCOM requires tracking off),
            0x401 when out of range or below ``min_alt_deg``, 0x407 when not connected.
        """
        self._check_can_slew()
        if self._tracking:
            raise AscomError(INVALID_OPERATION, "SlewToAltAz requires tracking to be off")
        if not 0.0 <= az_deg < 360.0 or alt_deg > 90.0:
            raise AscomError(INVALID_VALUE, f"alt {alt_deg:g} / az {az_deg:g} out of range")
        self._check_altitude(alt_deg)
        ha, dec = altaz_to_hadec(alt_deg, az_deg, self.site.latitude_deg)
        self._start_slew(target_dec_deg=dec, target_ha_deg=ha)

    def abort_slew(self) -> None:
        """Stop any slew (including a park) where the mount is; clears `slewing_stuck`.

        Raises
        ------
        AscomError
            0x408 when parked, 0x407 when not connected.
        """
        self._check_can_slew()
        if self.slewing_stuck:
            self.slewing_stuck = False
            log.info("simulated mount: stuck Slewing cleared by AbortSlew")
        if self.slewing:
            self._hold_current()
            log.info("simulated mount slew aborted")

    def sync_to_radec(self, ra_deg: float, dec_deg: float) -> None:
        """Declare that the mount points at the given coordinates.

        The reported position becomes the given one and the pointing model is re-zeroed
        there: the fixed error of the pier side the last slew went to is corrected (until
        the next sync on that side; the other side keeps its own error) and the drift
        starts again from 0, so the reported and the true position agree now. Given the true
        position (a plate solution), the optics stay on the same sky. Given anything else,
        the simulated optics move there with the reported position, as they always have in
        this simulator (tests place the mount with a sync); a real mount would keep its
        optics and carry the wrong sync into its model instead.

        Parameters
        ----------
        ra_deg, dec_deg : float
            Coordinates in degrees.

        Raises
        ------
        AscomError
            0x408 when parked, 0x40B while slewing, 0x401 when out of range,
            0x407 when not connected.
        """
        self._check_can_slew()
        _check_radec(ra_deg, dec_deg)
        if self.slewing:
            raise AscomError(INVALID_OPERATION, "cannot sync while slewing")
        mono, lst = self._lst_now()
        self._target_ra_deg, self._target_dec_deg = ra_deg, dec_deg
        # The worm's periodic error cannot be taken out (it turns on), so what the sync
        # absorbs is its present value: later it shows as the change since the sync.
        configured = self._configured_fixed_arcsec()
        periodic = pointing_error.periodic_error_arcsec(
            mono, self.config.periodic_error_arcsec, self.config.periodic_error_period_s
        )
        self._sync_correction_arcsec[self._side] = (
            -configured[0] - periodic,
            -configured[1],
        )
        self._drift_epoch_s = mono
        self._drop_pulses()
        self._hold_ra_deg = ra_deg
        self._hold_ha_deg = _wrap180(lst - ra_deg)
        self._hold_dec_deg = dec_deg

    def pulse_guide(self, direction: int, duration_ms: int) -> None:
        """Start a guide pulse: move one axis at the guide rate for ``duration_ms``.

        The reported position moves by the guide rate times the duration, linearly over
        the pulse (`is_pulse_guiding` is true until it ends); the true position moves with
        it, and the pointing error's drift keeps counting from the last slew or sync (a
        pulse is a relative move, the way drift corrections keep the tracking). East adds
        to RA and north to Dec, as ASCOM ``GuideDirections`` defines them (alpyca's
        ``alpaca.telescope.GuideDirections``: "East (+ right ascension/azimuth)", "North
        (+ declination/altitude)"), on either side of the pier. An RA pulse changes the RA
        coordinate by the rate times the duration (the RA axis turns at the guide rate), so
        on the sky it moves by that times cos(Dec). A pulse on an axis that is already
        guiding stops the running one where it is and starts afresh, as OnStep does; the
        two axes guide at once.

        Parameters
        ----------
        direction : int
            ASCOM ``GuideDirections``: 0 north, 1 south, 2 east, 3 west.
        duration_ms : int
            Length of the pulse in milliseconds, >= 0.

        Raises
        ------
        AscomError
            0x408 when parked; 0x40B while slewing or not tracking (some real mounts guide
            without tracking; this one refuses, as guiding a mount that does not track
            corrects nothing); 0x401 for an unknown direction or a negative duration;
            0x407 when not connected.
        """
        self._check_can_slew()
        if direction not in tuple(GuideDirection):
            raise AscomError(INVALID_VALUE, f"guide direction {direction} is not 0 to 3")
        if duration_ms < 0:
            raise AscomError(INVALID_VALUE, f"pulse duration {duration_ms} ms is negative")
        if self.slewing:
            raise AscomError(INVALID_OPERATION, "cannot pulse guide while slewing")
        if not self._tracking:
            raise AscomError(INVALID_OPERATION, "cannot pulse guide while not tracking")
        mono, lst = self._lst_now()
        self._hadec(mono, lst)  # fold the pulses that have ended
        guide = GuideDirection(direction)
        axis = "ra" if guide in (GuideDirection.EAST, GuideDirection.WEST) else "dec"
        running = self._pulses.pop(axis, None)
        if running is not None:  # stopped where it is, kept in the held position
            self._move_held(axis, running.offset_deg(mono))
        rate_arcsec_s = (
            self.guide_rate_ra_arcsec_s if axis == "ra" else self.guide_rate_dec_arcsec_s
        )
        sign = 1.0 if guide in (GuideDirection.NORTH, GuideDirection.EAST) else -1.0
        self._pulses[axis] = _Pulse(
            rate_deg_s=sign * rate_arcsec_s / 3600.0,
            t_start=mono,
            t_end=mono + duration_ms / 1000.0,
        )
        log.debug("simulated mount pulse guiding %s for %d ms", guide.name, duration_ms)

    def park(self) -> None:
        """Switch tracking off and start the slew to the park position.

        `at_park` becomes True when the slew ends. Parking when parked does nothing.

        Raises
        ------
        AscomError
            0x407 when not connected.
        """
        self.require_connected()
        if self.at_park:
            return
        self.set_tracking(False)
        ha, dec = altaz_to_hadec(
            self.config.park_alt_deg, self.config.park_az_deg, self.site.latitude_deg
        )
        # The park position may lie below min_alt_deg (a horizontal tube): no limit check.
        self._start_slew(target_dec_deg=dec, target_ha_deg=ha, park=True)
        log.info("simulated mount parking")

    def unpark(self) -> None:
        """Leave the park state; a park slew in progress stops where it is.

        Raises
        ------
        AscomError
            0x407 when not connected.
        """
        self.require_connected()
        self._settle(*self._lst_now())
        slew = self._slew
        if slew is not None and slew.park:
            self._hold_current()
        self._at_park = False


def _clamp_dec(dec_deg: float) -> float:
    # A Dec pulse across the pole would need the RA axis turned half a turn; the simulated
    # mount stops at the pole instead.
    return max(-90.0, min(90.0, dec_deg))


def _check_radec(ra_deg: float, dec_deg: float) -> None:
    if not 0.0 <= ra_deg < 360.0:
        raise AscomError(INVALID_VALUE, f"right ascension {ra_deg / 15:g} h not in [0, 24)")
    if not -90.0 <= dec_deg <= 90.0:
        raise AscomError(INVALID_VALUE, f"declination {dec_deg:g} not in [-90, 90]")
