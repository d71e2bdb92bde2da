"""Simulated camera: ASCOM ``ICameraV4`` state machine over the sky renderer.

Time comes from the injected clock: an exposure lasts its duration in simulated time, the
readout ``readout_time_s`` (a third of it in the Fast mode), while the frame renders in a
worker thread so the event loop stays free. The cooler temperature is computed lazily from
the clock as an exponential relaxation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from obsctl.clock import Clock
from obsctl.config import SimulatedCameraConfig, SimulatedSkyConfig
from obsctl.coords import julian_date
from obsctl.devices import CameraState
from obsctl.night.horizon import site_horizon
from obsctl.simulators.atmosphere import (
    airmass,
    exposure_transmission,
    seeing_wander,
    spell_transmission,
)
from obsctl.simulators.covercalibrator_model import CoverCalibratorModel
from obsctl.simulators.dome_model import DomeModel
from obsctl.simulators.filterwheel_model import FilterWheelModel
from obsctl.simulators.focuser_model import FocuserModel
from obsctl.simulators.models import (
    INVALID_OPERATION,
    INVALID_VALUE,
    VALUE_NOT_SET,
    AscomError,
    ConnectableModel,
)
from obsctl.simulators.mount_model import MountModel, hadec_to_altaz
from obsctl.simulators.render import (
    ExposureSpec,
    RenderResult,
    SensorModel,
    SkyScene,
    render_exposure,
)
from obsctl.simulators.sky import BANDS, pixel_scale_arcsec
from obsctl.simulators.transients import (
    Asteroid,
    Transient,
    asteroids_from_config,
    transients_from_config,
)
from obsctl.simulators.variables import VariableStar, variables_from_config

__all__ = ["READOUT_MODES", "CameraModel", "ExposureRecord", "sensor_model", "sky_scene"]

log = logging.getLogger(__name__)

READOUT_MODES: tuple[str, ...] = ("Normal", "Fast")
_FAST = 1
# Pointing used when the observatory has no mount.
_DEFAULT_RA_DEG = 180.0
_DEFAULT_DEC_DEG = 30.0
_SET_POINT_RANGE_C = (-100.0, 50.0)
_SIDEREAL_DEG_PER_S = 360.0 / 86164.0905  # hour-angle rate of a tracked field


@dataclass(frozen=True, slots=True)
class ExposureRecord:
    """Settings and timing of the last exposure, for ``LastExposure*`` and image metadata.

    Attributes
    ----------
    duration_s : float
        Actual exposure time in seconds (shorter than requested after a stop).
    requested_s : float
        Requested exposure time in seconds.
    start_time : datetime.datetime
        UTC start of the exposure.
    light : bool
        Whether the shutter was open.
    bin_x, bin_y, start_x, start_y, num_x, num_y : int
        Readout geometry in binned pixels.
    gain, offset : int
        Electronics settings.
    electrons_per_adu : float
        Conversion gain in electrons per ADU.
    readout_mode : str
        Readout mode name.
    band : str
        Filter band the scene was rendered in.
    """

    duration_s: float
    requested_s: float
    start_time: datetime
    light: bool
    bin_x: int
    bin_y: int
    start_x: int
    start_y: int
    num_x: int
    num_y: int
    gain: int
    offset: int
    electrons_per_adu: float
    readout_mode: str
    band: str


def sensor_model(config: SimulatedCameraConfig) -> SensorModel:
    """Return the renderer's sensor for a simulated camera's configuration.

    Parameters
    ----------
    config : SimulatedCameraConfig
        The camera's sensor and electronics.

    Returns
    -------
    SensorModel
        The sensor the camera renders with.
    """
    return SensorModel(
        width_px=config.width_px,
        height_px=config.height_px,
        pixel_size_um=config.pixel_size_um,
        full_well_e=config.full_well_e,
        read_noise_e=config.read_noise_e,
        bias_adu=config.bias_adu,
        adu_per_offset=config.adu_per_offset,
        dark_current_e_s=config.dark_current_e_s,
        dark_doubling_c=config.dark_doubling_c,
        hot_pixel_fraction=config.hot_pixel_fraction,
        cosmic_rate_cm2_s=config.cosmic_rate_cm2_s,
        max_adu=config.max_adu,
        seed=config.seed,
        bleeds=config.bleeds,
        dead_columns=config.dead_columns,
        hot_columns=config.hot_columns,
        partial_column_fraction=config.partial_column_fraction,
        bayer_pattern=config.bayer_pattern,
        bayer_throughput_rgb=config.bayer_throughput_rgb,
    )


def sky_scene(
    sky: SimulatedSkyConfig,
    *,
    ra_deg: float,
    dec_deg: float,
    rotation_deg: float,
    pixel_scale_arcsec: float,
    band: str,
    sky_mag_arcsec2: float | None = None,
    flat_panel: bool = False,
    variables: tuple[VariableStar, ...] = (),
    time_mjd: float | None = None,
    airmass: float = 1.0,
    transmission: float = 1.0,
    transients: tuple[Transient, ...] = (),
    asteroids: tuple[Asteroid, ...] = (),
) -> SkyScene:
    """Return the scene a simulated camera sees of the configured sky.

    The band's zero point, extinction, colour term and sky colour come from `sky`, each
    only when its switch is on (``band_zero_points``, ``extinction``, ``colour_terms``,
    ``band_sky``), as do the galaxies and satellite trails (``galaxies``,
    ``satellite_trails``); the seeing grows with ``sky.seeing_airmass_exponent`` and, when
    ``sky.seeing_variation_rms`` is set, wanders in time (`obsctl.simulators.atmosphere.
    seeing_wander` at `time_mjd`).

    Parameters
    ----------
    sky : SimulatedSkyConfig
        Seeing, star counts, sky brightness, zero points, extinction, colour terms and
        flat panel.
    ra_deg, dec_deg : float
        Pointing (deg, ICRS).
    rotation_deg : float
        Field rotation on the sensor (deg).
    pixel_scale_arcsec : float
        Unbinned pixel scale (arcsec per pixel).
    band : str
        Filter band of the catalog magnitudes.
    sky_mag_arcsec2 : float or None
        V-band sky brightness (mag per square arcsec), as seen from the ground; None takes
        the configured constant. Other bands add ``sky.sky_offset_mag_arcsec2``.
    flat_panel : bool
        Whether the flat panel lights the telescope instead of the sky.
    variables : tuple of VariableStar
        Variable stars added to the catalog.
    time_mjd : float or None
        Middle of the exposure (MJD, UTC), where the variables are evaluated.
    airmass : float
        Airmass of the pointing at the middle of the exposure (dimensionless); 1 is the
        zenith.
    transmission : float
        Grey cloud transmission over the exposure, in [0, 1].
    transients : tuple of Transient
        Supernovae and stellar outbursts, hosts resolved
        (`obsctl.simulators.transients.transients_from_config` of `sky`).
    asteroids : tuple of Asteroid
        Moving objects (`obsctl.simulators.transients.asteroids_from_config` of
        ``sky.asteroids``).

    Returns
    -------
    SkyScene
        The scene to render.
    """
    if sky_mag_arcsec2 is None:
        sky_mag_arcsec2 = sky.sky_mag_arcsec2
    zero_point = sky.zero_point_mag
    if sky.band_zero_points:
        zero_point += sky.zero_point_offset_mag.of(band)
    if sky.band_sky:
        # The twilight and moonlight model gives V; a band keeps the dark sky's colour.
        sky_mag_arcsec2 += sky.sky_offset_mag_arcsec2.of(band)
    # The sky's electrons per second per pixel: its surface brightness over one pixel's area.
    # It is measured from the ground, so the extinction does not dim it again.
    area_arcsec2 = pixel_scale_arcsec * pixel_scale_arcsec
    seeing = sky.seeing_arcsec
    if sky.seeing_variation_rms > 0.0 and time_mjd is not None:
        seeing *= float(
            seeing_wander(
                time_mjd, rms=sky.seeing_variation_rms, timescale_s=sky.seeing_timescale_s,
                seed=sky.seed,
            )
        )  # fmt: skip
    return SkyScene(
        ra_deg=ra_deg,
        dec_deg=dec_deg,
        rotation_deg=rotation_deg,
        pixel_scale_arcsec=pixel_scale_arcsec,
        seeing_arcsec=seeing,
        moffat_beta=sky.moffat_beta,
        sky_e_s_px=10.0 ** (-0.4 * (sky_mag_arcsec2 - zero_point)) * area_arcsec2,
        zero_point_mag=zero_point,
        band=band,
        catalog_seed=sky.seed,
        density_per_deg2=sky.star_density_per_deg2,
        mag_bright=sky.mag_bright,
        mag_limit=sky.mag_limit,
        flat_panel_e_s=sky.flat_panel_e_s if flat_panel else None,
        variables=variables,
        time_mjd=time_mjd,
        airmass=airmass,
        extinction_mag_per_airmass=(
            sky.extinction_mag_per_airmass.of(band) if sky.extinction else 0.0
        ),
        colour_term=sky.colour_term.of(band) if sky.colour_terms else 0.0,
        seeing_airmass_exponent=sky.seeing_airmass_exponent,
        transmission=transmission,
        galaxy_density_r21_per_deg2=sky.galaxy_density_r21_per_deg2 if sky.galaxies else 0.0,
        galaxy_mag_bright=sky.galaxy_mag_bright,
        galaxy_mag_limit=sky.galaxy_mag_limit,
        satellite_rate_per_hour=sky.satellite_rate_per_hour if sky.satellite_trails else 0.0,
        trail_mag_per_arcsec_range=sky.trail_mag_per_arcsec,
        transients=transients,
        asteroids=asteroids,
    )


def _in_range(what: str, value: int, low: int, high: int) -> int:
    """Return ``value``; AscomError 0x401 when it is outside ``low..high``."""
    if not low <= value <= high:
        raise AscomError(INVALID_VALUE, f"{what} {value} not in {low}..{high}")
    return value


class CameraModel(ConnectableModel):
    """A cooled camera (monochrome, or one-shot colour with a Bayer pattern) rendering a sky.

    Parameters
    ----------
    config : SimulatedCameraConfig
        Sensor, electronics, timing and cooler.
    sky : SimulatedSkyConfig
        The synthetic sky: seeing, star counts, sky brightness, zero point, flat panel.
    focal_length_mm : float
        Telescope focal length in millimetres (sets the pixel scale).
    clock : Clock
        Source of simulated time.
    mount : MountModel or None
        Gives the pointing (where the optics look: the reported position moved by the
        pointing error at mid-exposure) and the field rotation at exposure start.
    filter_wheel : FilterWheelModel or None
        Gives the band (the current filter name); "L" without a wheel.
    """

    def __init__(
        self,
        config: SimulatedCameraConfig,
        sky: SimulatedSkyConfig,
        *,
        focal_length_mm: float,
        clock: Clock,
        mount: MountModel | None = None,
        filter_wheel: FilterWheelModel | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.sky = sky
        self._variables = variables_from_config(sky.variables)
        # Hosts are looked up once: they are fixed objects of the seeded sky.
        self._transients = transients_from_config(sky)
        self._asteroids = asteroids_from_config(sky.asteroids)
        self.focal_length_mm = focal_length_mm
        self.clock = clock
        #: Sky brightness (mag/arcsec2) at ``(time, ra_deg, dec_deg)``; None keeps the
        #: configured constant ``sky_mag_arcsec2`` (see `SimulatedObservatory.from_config`).
        self.sky_brightness: Callable[[datetime, float, float], float] | None = None
        self.mount = mount
        self.filter_wheel = filter_wheel
        #: The enclosure, whose shutter and slit hide the sky (`DomeModel.sky_transmission`).
        self.dome: DomeModel | None = None
        self.sensor = sensor_model(config)
        self.bin_x = 1
        self.bin_y = 1
        self.start_x = 0
        self.start_y = 0
        self.num_x = config.width_px
        self.num_y = config.height_px
        self._gain = config.gain_min
        self._offset = config.offset_min
        self._readout_mode = 0
        self.flat_panel_on = False
        #: The flat panel and dust cover in front of the telescope (`CoverCalibratorModel.view`).
        self.cover_calibrator: CoverCalibratorModel | None = None
        #: The focuser, whose distance from the best focus blurs the stars (`_defocus_px`).
        self.focuser: FocuserModel | None = None
        #: The telescope's focal ratio (focal length over aperture), for the blur circle.
        self.focal_ratio: float | None = None
        # Cooler: temperature relaxes from (_temp0_c at _temp_t0) toward the current goal.
        self._cooler_on = False
        self._set_point_c = config.ambient_c
        self._temp0_c = config.ambient_c
        self._temp_t0 = clock.monotonic()
        # Exposure state.
        self._state = CameraState.IDLE
        self._phase_start = 0.0
        self._phase_s = 0.0
        self._image: NDArray[np.integer[Any]] | None = None
        self._truth: RenderResult | None = None
        self._record: ExposureRecord | None = None
        self._sequence = 0
        self._generation = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._readout_gate = asyncio.Event()
        self._readout_gate.set()
        # States real drivers leave behind (issue 15), set by `fail_next_exposure` and
        # `abort_ignored`: see "states drivers leave behind" below.
        self._fail_next = False
        self._error_cleared_by: Literal["abort", "reconnect"] = "abort"
        #: When True, AbortExposure is acknowledged but the exposure goes on to its end (and
        #: its readout), as some servers do; the state says Exposing, then Reading, then Idle.
        self.abort_ignored = False

    # --- electronics -------------------------------------------------------------------

    @property
    def gain(self) -> int:
        """Gain setting (``gain_min`` .. ``gain_max``)."""
        return self._gain

    def set_gain(self, gain: int) -> None:
        """Set the gain; AscomError 0x401 when out of range."""
        self._gain = _in_range("gain", gain, self.config.gain_min, self.config.gain_max)

    @property
    def offset(self) -> int:
        """Offset setting (``offset_min`` .. ``offset_max``)."""
        return self._offset

    def set_offset(self, offset: int) -> None:
        """Set the offset; AscomError 0x401 when out of range."""
        self._offset = _in_range("offset", offset, self.config.offset_min, self.config.offset_max)

    @property
    def readout_mode(self) -> int:
        """Readout mode index into `READOUT_MODES`."""
        return self._readout_mode

    def set_readout_mode(self, mode: int) -> None:
        """Set the readout mode; AscomError 0x401 when not an index of `READOUT_MODES`."""
        self._readout_mode = _in_range("readout mode", mode, 0, len(READOUT_MODES) - 1)

    def set_bin_x(self, value: int) -> None:
        """Set the horizontal binning; AscomError 0x401 outside 1..max_bin."""
        self.bin_x = self._check_bin(value)

    def set_bin_y(self, value: int) -> None:
        """Set the vertical binning; AscomError 0x401 outside 1..max_bin."""
        self.bin_y = self._check_bin(value)

    def _check_bin(self, value: int) -> int:
        return _in_range("binning", value, 1, self.config.max_bin)

    @property
    def electrons_per_adu(self) -> float:
        """Conversion gain in electrons per ADU: the base value falls 10x per 200 gain."""
        return float(self.config.electrons_per_adu * 10.0 ** (-self._gain / 200.0))

    def check_geometry(self) -> None:
        """Validate binning and subframe as ASCOM does at ``StartExposure``.

        Raises
        ------
        AscomError
            0x401 when the subframe does not fit the binned sensor.
        """
        self._check_bin(self.bin_x)
        self._check_bin(self.bin_y)
        width = self.config.width_px // self.bin_x
        height = self.config.height_px // self.bin_y
        for axis, start, num, size in (
            ("X", self.start_x, self.num_x, width),
            ("Y", self.start_y, self.num_y, height),
        ):
            if start < 0 or num < 1 or start + num > size:
                raise AscomError(
                    INVALID_VALUE,
                    f"Start{axis}={start}, Num{axis}={num} do not fit the binned size {size}",
                )

    # --- cooler ------------------------------------------------------------------------

    def _cooler_goal_c(self) -> float:
        if not self._cooler_on:
            return self.config.ambient_c
        return max(self._set_point_c, self.config.ambient_c - self.config.cooler_max_delta_c)

    @property
    def ccd_temperature_c(self) -> float:
        """Sensor temperature in degrees Celsius at the current simulated time."""
        elapsed = max(0.0, self.clock.monotonic() - self._temp_t0)
        goal = self._cooler_goal_c()
        return goal + (self._temp0_c - goal) * math.exp(-elapsed / self.config.cooler_tau_s)

    def _restart_relaxation(self) -> None:
        self._temp0_c = self.ccd_temperature_c
        self._temp_t0 = self.clock.monotonic()

    @property
    def cooler_on(self) -> bool:
        """Whether the cooler runs."""
        return self._cooler_on

    def set_cooler_on(self, on: bool) -> None:
        """Switch the cooler on or off."""
        self._restart_relaxation()
        self._cooler_on = on

    @property
    def set_point_c(self) -> float:
        """Cooler set point in degrees Celsius."""
        return self._set_point_c

    def set_set_point_c(self, value: float) -> None:
        """Set the cooler set point; AscomError 0x401 outside -100..50 C."""
        lo, hi = _SET_POINT_RANGE_C
        if not lo <= value <= hi:
            raise AscomError(INVALID_VALUE, f"set point {value} C not in {lo}..{hi} C")
        self._restart_relaxation()
        self._set_point_c = value

    @property
    def cooler_power_pct(self) -> float:
        """Cooler power in percent, proportional to the cooling below ambient."""
        if not self._cooler_on or self.config.cooler_max_delta_c <= 0:
            return 0.0
        delta = self.config.ambient_c - self.ccd_temperature_c
        return min(100.0, max(0.0, 100.0 * delta / self.config.cooler_max_delta_c))

    # --- state -------------------------------------------------------------------------

    @property
    def state(self) -> CameraState:
        """ASCOM camera state."""
        return self._state

    @property
    def image_ready(self) -> bool:
        """Whether an image waits for download."""
        return self._image is not None

    @property
    def percent_completed(self) -> float:
        """Progress of the current phase (exposure, then readout) in percent.

        When idle: 100 with an image ready, else 0.
        """
        if self._state in (CameraState.EXPOSING, CameraState.READING):
            if self._phase_s <= 0:
                return 100.0
            done = (self.clock.monotonic() - self._phase_start) / self._phase_s
            return min(100.0, max(0.0, 100.0 * done))
        return 100.0 if self._image is not None else 0.0

    @property
    def image(self) -> NDArray[np.integer[Any]]:
        """The last image, shape ``(num_y, num_x)``, read-only.

        Raises
        ------
        AscomError
            0x40B when no image is ready.
        """
        if self._image is None:
            raise AscomError(INVALID_OPERATION, "no image is ready")
        return self._image

    @property
    def last_image(self) -> NDArray[np.integer[Any]] | None:
        """The ready image (read-only, shape ``(num_y, num_x)``), or None."""
        return self._image

    @property
    def last_truth(self) -> RenderResult | None:
        """The render result (truth stars, cosmics, hot pixels) of the ready image."""
        return self._truth

    @property
    def last_exposure(self) -> ExposureRecord:
        """Record of the last exposure; AscomError 0x402 before the first one."""
        if self._record is None:
            raise AscomError(VALUE_NOT_SET, "no exposure has been taken yet")
        return self._record

    @property
    def readout_time_s(self) -> float:
        """Readout time in simulated seconds for the current mode."""
        t = self.config.readout_time_s
        return t / 3.0 if self._readout_mode == _FAST else t

    def hold_readout(self, hold: bool) -> None:
        """Keep (or stop keeping) the camera in Reading with no image: a stuck readout.

        Parameters
        ----------
        hold : bool
            True stalls every readout until called again with False.
        """
        if hold:
            self._readout_gate.clear()
        else:
            self._readout_gate.set()

    # --- states drivers leave behind ---------------------------------------------------

    @property
    def connected(self) -> bool:
        """The ASCOM ``Connected`` flag.

        Disconnecting clears an Error state that `fail_next_exposure` made to be cleared by a
        reconnection: such a driver reinitialises the camera when the client connects again.
        """
        return self._connected

    @connected.setter
    def connected(self, value: bool) -> None:
        error = getattr(self, "_state", None) == CameraState.ERROR
        if not value and error and self._error_cleared_by == "reconnect":
            self._enter(CameraState.IDLE, 0.0)
            log.info("simulated camera reset from its Error state by a disconnection")
        self._connected = value

    def fail_next_exposure(self, *, cleared_by: Literal["abort", "reconnect"] = "abort") -> None:
        """Make the next exposure fail at its readout and leave the camera in state Error.

        Parameters
        ----------
        cleared_by : {"abort", "reconnect"}
            ``"abort"``: only AbortExposure clears the Error state (StartExposure is refused
            until then, a reconnection does not help). ``"reconnect"``: the Error state
            survives AbortExposure, and only a disconnection (a reconnection by the client)
            clears it, as some drivers behave.
        """
        self._fail_next = True
        self._error_cleared_by = cleared_by

    # --- scene -------------------------------------------------------------------------

    def _band(self) -> str:
        if self.filter_wheel is None:
            return "L"
        name = self.filter_wheel.current_filter
        # Filters the renderer does not know (Ha, OIII, ...) render as luminance.
        return name.upper() if name.upper() in BANDS else "L"

    def scene(self, duration_s: float = 0.0) -> SkyScene:
        """Build the sky scene for the current pointing, filter and flat-panel state.

        Variable stars, the airmass and the clouds are evaluated for an exposure of
        `duration_s` seconds starting now: the airmass at its middle (a tracking mount's
        field moves on in hour angle, a stopped one keeps its altitude), the clouds averaged
        over it. Without a mount the camera looks at the zenith (airmass 1). When the site
        has a local horizon (``[site] horizon``) and the middle of the exposure points below
        it, the skyline hides the field: the frame has the sky's glow but no stars, galaxies
        or satellite trails.
        """
        x = 1.0
        behind_horizon = False
        if self.mount is not None:
            # Where the optics look, not where the mount reports: its pointing error (with
            # drift and periodic error at mid-exposure) shifts the stars in the frame.
            pointing = self.mount.true_pointing(after_s=0.5 * duration_s)
            ra, dec = pointing.ra_deg, pointing.dec_deg
            rotation = self.mount.config.field_rotation_deg
            alt, az = pointing.alt_deg, pointing.az_deg
            if self.mount.tracking:
                ha_mid = pointing.ha_deg + 0.5 * duration_s * _SIDEREAL_DEG_PER_S
                alt, az = hadec_to_altaz(ha_mid, dec, self.mount.site.latitude_deg)
            x = airmass(alt)
            horizon = site_horizon(self.mount.site)
            behind_horizon = horizon is not None and not bool(horizon.above(alt, az))
        else:
            ra, dec, rotation = _DEFAULT_RA_DEG, _DEFAULT_DEC_DEG, 0.0
        sky_mag = self.sky.sky_mag_arcsec2
        if self.sky_brightness is not None:
            sky_mag = self.sky_brightness(self.clock.now(), ra, dec)
        mid_mjd = julian_date(self.clock.now()) - 2400000.5 + 0.5 * duration_s / 86400.0
        fraction, mean_mag, timescale_s = self.sky.clouds.parameters()
        transmission = exposure_transmission(
            mid_mjd,
            duration_s,
            clouded_fraction=fraction,
            mean_extinction_mag=mean_mag,
            timescale_s=timescale_s,
            seed=self.sky.clouds.seed,
        )
        if self.sky.clouds.spells:
            start = self.clock.now()
            spells = [
                (
                    (c.start - start).total_seconds(),
                    (c.end - start).total_seconds(),
                    c.extinction_mag,
                )
                for c in self.sky.clouds.spells
            ]
            transmission *= spell_transmission(0.0, duration_s, spells)
        if self.dome is not None:  # at the exposure's start: a closed shutter, the slit off
            transmission *= self.dome.sky_transmission(self.mount)
        scene = sky_scene(
            self.sky,
            ra_deg=ra,
            dec_deg=dec,
            rotation_deg=rotation,
            pixel_scale_arcsec=pixel_scale_arcsec(self.config.pixel_size_um, self.focal_length_mm),
            band=self._band(),
            sky_mag_arcsec2=sky_mag,
            flat_panel=self.flat_panel_on,
            variables=self._variables,
            time_mjd=mid_mjd,
            airmass=x,
            transmission=transmission,
            transients=self._transients,
            asteroids=self._asteroids,
        )
        if behind_horizon:
            scene = replace(
                scene,
                density_per_deg2=0.0,
                variables=(),
                transients=(),
                asteroids=(),
                galaxy_density_r21_per_deg2=0.0,
                satellite_rate_per_hour=0.0,
            )
        if self.cover_calibrator is not None:  # at the exposure's start, as the pointing
            scene = self.cover_calibrator.view(scene, self.sky.flat_panel_e_s)
        if self.focuser is not None and self.focal_ratio is not None:
            scene = replace(
                scene,
                defocus_px=self._defocus_px(self.focuser, self.focal_ratio),
                obstruction=self.focuser.config.obstruction,
            )
        return scene

    def _defocus_px(self, focuser: FocuserModel, focal_ratio: float) -> float:
        """Return the blur circle's radius (unbinned pixel) at the focuser's focus offset.

        A focus offset ``dz`` spreads a star over the aperture's image, a disc of diameter
        ``dz / focal_ratio``; the focuser moves the focal plane one step size per step (and
        the filter's thickness by its focus offset, when so configured). In
        steps of 0.05 pixel, so that a slowly drifting focus does not rebuild the stamps of
        every frame.
        """
        defocus = focuser.defocus_steps
        wheel = self.filter_wheel
        if focuser.config.filter_focus_offsets and wheel is not None:
            # The filter in (or coming into) the beam focuses its offset farther out.
            defocus -= wheel.focus_offsets[wheel.target]
        dz_um = abs(defocus) * focuser.config.step_size_um
        radius_px = dz_um / (2.0 * focal_ratio) / self.config.pixel_size_um
        return round(radius_px / 0.05) * 0.05

    # --- exposure ----------------------------------------------------------------------

    def start_exposure(self, duration_s: float, light: bool) -> None:
        """Start an exposure; must be called from the event loop.

        Parameters
        ----------
        duration_s : float
            Exposure time in seconds, within ``exposure_min_s`` .. ``exposure_max_s``.
        light : bool
            True opens the shutter, False renders a dark (no sky).

        Raises
        ------
        AscomError
            0x407 when not connected, 0x40B when not idle, 0x401 for an invalid duration
            or subframe.
        """
        self.require_connected()
        if self._state != CameraState.IDLE:
            raise AscomError(INVALID_OPERATION, f"camera is busy ({self._state.name})")
        lo, hi = self.config.exposure_min_s, self.config.exposure_max_s
        if not lo <= duration_s <= hi:
            raise AscomError(INVALID_VALUE, f"duration {duration_s} s not in {lo}..{hi} s")
        self.check_geometry()
        scene = self.scene(duration_s) if light else None
        self._sequence += 1
        self._generation += 1
        self._image = None
        self._truth = None
        self._record = ExposureRecord(
            duration_s=duration_s,
            requested_s=duration_s,
            start_time=self.clock.now(),
            light=light,
            bin_x=self.bin_x,
            bin_y=self.bin_y,
            start_x=self.start_x,
            start_y=self.start_y,
            num_x=self.num_x,
            num_y=self.num_y,
            gain=self._gain,
            offset=self._offset,
            electrons_per_adu=self.electrons_per_adu,
            readout_mode=READOUT_MODES[self._readout_mode],
            band=scene.band if scene is not None else "dark",
        )
        self._stop = asyncio.Event()
        self._enter(CameraState.EXPOSING, duration_s)
        self._task = asyncio.get_running_loop().create_task(
            self._run(self._generation, self._record, scene, self._stop),
            name=f"simulated exposure {self._sequence}",
        )
        log.debug("simulated exposure %d started: %.3f s", self._sequence, duration_s)

    def _enter(self, state: CameraState, phase_s: float) -> None:
        self._state = state
        self._phase_start = self.clock.monotonic()
        self._phase_s = phase_s

    async def _expose(self, duration_s: float, stop: asyncio.Event) -> float:
        """Wait out the exposure or a stop request; return the actual duration."""
        start = self.clock.monotonic()
        timer = asyncio.ensure_future(self.clock.sleep(duration_s))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({timer, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (timer, stopper):
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
        if stop.is_set():
            return min(duration_s, max(self.config.exposure_min_s, self.clock.monotonic() - start))
        return duration_s

    async def _run(
        self,
        generation: int,
        record: ExposureRecord,
        scene: SkyScene | None,
        stop: asyncio.Event,
    ) -> None:
        fast = record.readout_mode == READOUT_MODES[_FAST]
        readout_s = self.config.readout_time_s / 3.0 if fast else self.config.readout_time_s
        spec = ExposureSpec(
            exposure_s=record.requested_s,
            light=record.light,
            bin_x=record.bin_x,
            bin_y=record.bin_y,
            start_x=record.start_x,
            start_y=record.start_y,
            num_x=record.num_x,
            num_y=record.num_y,
            electrons_per_adu=record.electrons_per_adu,
            offset=record.offset,
            ccd_temperature_c=self.ccd_temperature_c,
            read_noise_e=self.config.read_noise_e * (1.5 if fast else 1.0),
            seed=self.config.seed + self._sequence,
        )
        # Drawn while the shutter is open, as a sensor integrates: the image is ready one
        # readout after the exposure ends however long the drawing takes in real time (as
        # long as it is shorter than the exposure). At a fast clock a frame drawn only at
        # the end would add its drawing time, times the speed, to every frame. An exposure
        # stopped early is drawn again for its actual length.
        render = asyncio.ensure_future(asyncio.to_thread(render_exposure, self.sensor, spec, scene))
        try:
            actual_s = await self._expose(record.requested_s, stop)
            if self._fail_next:
                self._fail_next = False
                if generation == self._generation:
                    self._enter(CameraState.ERROR, 0.0)
                log.info("simulated exposure %d failed (injected): state Error", self._sequence)
                return
            if actual_s != spec.exposure_s:
                render.cancel()  # the thread finishes on its own; its image is dropped
                spec = replace(spec, exposure_s=actual_s)
                render = asyncio.ensure_future(
                    asyncio.to_thread(render_exposure, self.sensor, spec, scene)
                )
            self._record = replace(record, duration_s=actual_s)
            self._enter(CameraState.READING, readout_s)
            await self.clock.sleep(readout_s)
            result = await render
            await self._readout_gate.wait()
            if generation != self._generation:
                return
            image = result.image
            image.setflags(write=False)  # shared with downloads until the next exposure
            self._image = image
            self._truth = result
            self._enter(CameraState.IDLE, 0.0)
            log.debug("simulated exposure %d ready", self._sequence)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("simulated exposure %d failed", self._sequence)
            if generation == self._generation:
                self._enter(CameraState.ERROR, 0.0)
        finally:
            render.cancel()  # on abort or failure: drop the result

    def abort_exposure(self) -> None:
        """Abort the running exposure or readout and discard it; back to Idle.

        Aborting when idle does nothing. An Error state is cleared, unless
        `fail_next_exposure` said otherwise; with `abort_ignored` set, an exposure or readout
        goes on as if no abort had come.

        Raises
        ------
        AscomError
            0x407 when not connected.
        """
        self.require_connected()
        if self._state == CameraState.IDLE:
            return
        if self._state == CameraState.ERROR and self._error_cleared_by != "abort":
            log.info("simulated camera stays in Error after AbortExposure")
            return
        if self.abort_ignored and self._state in (CameraState.EXPOSING, CameraState.READING):
            log.info("simulated camera ignores AbortExposure: it goes on %s", self._state.name)
            return
        self._generation += 1
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._image = None
        self._truth = None
        self._enter(CameraState.IDLE, 0.0)
        log.debug("simulated exposure %d aborted", self._sequence)

    def stop_exposure(self) -> None:
        """End the exposure early and keep it (readout follows); no effect otherwise.

        Raises
        ------
        AscomError
            0x407 when not connected.
        """
        self.require_connected()
        if self._state == CameraState.EXPOSING:
            self._stop.set()

    async def close(self) -> None:
        """Cancel a running exposure task (at server shutdown)."""
        task, self._task = self._task, None
        self._generation += 1
        self._readout_gate.set()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
