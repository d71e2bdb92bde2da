"""Device protocols and the value types they exchange.

One small async `typing.Protocol` per device role. Implementations (Alpaca, serial, in-process
simulators) do not inherit from these classes; the contract tests in ``tests/contract/`` and
mypy prove that they conform. Units are in the names: ``exposure_s``, ``ra_deg``,
``temperature_c``. Every method may raise a `obsctl.errors.DeviceError` subclass; the ones
listed in a docstring are those a caller is expected to handle.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from obsctl.errors import InvalidDeviceValueError

__all__ = [
    "DEFAULT_GUIDE_RATE_ARCSEC_S",
    "ROLES",
    "CalibratorState",
    "Camera",
    "CameraImage",
    "CameraInfo",
    "CameraState",
    "CameraStatus",
    "CoverCalibrator",
    "CoverCalibratorInfo",
    "CoverCalibratorStatus",
    "CoverState",
    "Device",
    "DeviceSet",
    "Dome",
    "DomeInfo",
    "DomeStatus",
    "ExposureSettings",
    "FilterWheel",
    "Focuser",
    "FocuserInfo",
    "FocuserStatus",
    "GuideDirection",
    "ImageMetadata",
    "Mount",
    "MountStatus",
    "ObservingConditions",
    "PierSide",
    "SafetyMonitor",
    "ShutterState",
    "WeatherReadings",
    "pulse_duration_ms",
]

#: The device roles of a `DeviceSet` (and the keys of a config's ``[devices]``), in order.
ROLES: tuple[str, ...] = (
    "camera",
    "filter_wheel",
    "mount",
    "safety_monitor",
    "dome",
    "weather",
    "cover_calibrator",
    "focuser",
)


class CameraState(enum.IntEnum):
    """Camera states, numbered as ASCOM ``CameraStates``."""

    IDLE = 0
    WAITING = 1
    EXPOSING = 2
    READING = 3
    DOWNLOAD = 4
    ERROR = 5


class PierSide(enum.IntEnum):
    """Side of the pier, numbered as ASCOM ``PierSide``."""

    EAST = 0
    WEST = 1
    UNKNOWN = -1


class GuideDirection(enum.IntEnum):
    """Direction of a guide pulse, numbered as ASCOM ``GuideDirections``.

    ASCOM defines north as +Dec, south as -Dec, east as +RA and west as -RA (alpyca's
    ``alpaca.telescope.GuideDirections``: "East (+ right ascension/azimuth)"). Some German
    equatorial mounts reverse north and south on one side of the pier; ASCOM asks clients to
    be prepared for either.
    """

    NORTH = 0
    SOUTH = 1
    EAST = 2
    WEST = 3


#: ASCOM's default guide rate, 0.5 x sidereal, in arcsec per second of time: what a mount
#: that cannot tell its guide rate is assumed to guide at (sidereal = 15.0411 arcsec/s).
DEFAULT_GUIDE_RATE_ARCSEC_S = 0.5 * 360.98564736629 * 3600.0 / 86400.0

# ASCOM's PulseGuide takes the duration as a 32-bit integer of milliseconds.
_MAX_PULSE_MS = 2**31 - 1


def pulse_duration_ms(duration_s: float, *, device: str) -> int:
    """Return a guide pulse's length in the whole milliseconds ASCOM and LX200 take.

    Parameters
    ----------
    duration_s : float
        Length of the pulse in seconds.
    device : str
        Device name for the error.

    Returns
    -------
    int
        The length rounded to milliseconds.

    Raises
    ------
    InvalidDeviceValueError
        When the length is negative, not finite, or longer than ASCOM's 32-bit milliseconds.
    """
    if not math.isfinite(duration_s) or duration_s < 0:
        raise InvalidDeviceValueError(
            f"guide pulse of {duration_s!r} s: the duration must be finite and >= 0",
            device=device,
        )
    duration_ms = round(duration_s * 1000.0)
    if duration_ms > _MAX_PULSE_MS:
        raise InvalidDeviceValueError(
            f"guide pulse of {duration_s:g} s is longer than ASCOM's {_MAX_PULSE_MS} ms",
            device=device,
        )
    return duration_ms


class ShutterState(enum.IntEnum):
    """State of a dome shutter or roll-off roof, numbered as ASCOM ``ShutterState``."""

    OPEN = 0
    CLOSED = 1
    OPENING = 2
    CLOSING = 3
    ERROR = 4


class CoverState(enum.IntEnum):
    """State of a telescope cover, numbered as ASCOM ``CoverStatus``."""

    NOT_PRESENT = 0
    CLOSED = 1
    MOVING = 2
    OPEN = 3
    UNKNOWN = 4
    ERROR = 5


class CalibratorState(enum.IntEnum):
    """State of a flat-field light source, numbered as ASCOM ``CalibratorStatus``."""

    NOT_PRESENT = 0
    OFF = 1
    NOT_READY = 2
    READY = 3
    UNKNOWN = 4
    ERROR = 5


@dataclass(frozen=True, slots=True)
class CameraInfo:
    """Fixed properties of a camera, read once after connecting.

    Attributes
    ----------
    sensor_name : str
        Sensor model (for example ``"IMX455"``).
    width_px, height_px : int
        Unbinned sensor size in pixels.
    pixel_size_x_um, pixel_size_y_um : float
        Unbinned pixel pitch in micrometres.
    max_bin_x, max_bin_y : int
        Largest binning factors.
    max_adu : int
        Largest pixel value the camera produces.
    full_well_e : float
        Full-well capacity in electrons.
    exposure_min_s, exposure_max_s : float
        Shortest and longest exposure in seconds.
    gain_min, gain_max : int or None
        Gain setting range, None when the camera has no settable gain.
    offset_min, offset_max : int or None
        Offset setting range, None when the camera has no settable offset.
    readout_modes : tuple of str
        Readout mode names, indexed by the mode number.
    can_abort, can_stop : bool
        Whether an exposure can be aborted (discarded) or stopped early (kept).
    can_set_temperature : bool
        Whether the camera has a regulated cooler.
    """

    sensor_name: str
    width_px: int
    height_px: int
    pixel_size_x_um: float
    pixel_size_y_um: float
    max_bin_x: int
    max_bin_y: int
    max_adu: int
    full_well_e: float
    exposure_min_s: float
    exposure_max_s: float
    gain_min: int | None
    gain_max: int | None
    offset_min: int | None
    offset_max: int | None
    readout_modes: tuple[str, ...]
    can_abort: bool
    can_stop: bool
    can_set_temperature: bool


@dataclass(frozen=True, slots=True)
class ExposureSettings:
    """Readout geometry and electronics settings applied before an exposure.

    Attributes
    ----------
    bin_x, bin_y : int
        Binning factors.
    subframe : tuple of int or None
        ``(start_x, start_y, num_x, num_y)`` in binned pixels; None for the full frame.
    gain : int or None
        Gain setting; None leaves the camera's present value.
    offset : int or None
        Offset setting; None leaves the camera's present value.
    readout_mode : int or None
        Readout mode index; None leaves the camera's present value.
    """

    bin_x: int = 1
    bin_y: int = 1
    subframe: tuple[int, int, int, int] | None = None
    gain: int | None = None
    offset: int | None = None
    readout_mode: int | None = None


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """A camera's changing state, read together.

    Attributes
    ----------
    state : CameraState
        What the camera is doing.
    percent_completed : float
        Progress of the running exposure or readout, 0 to 100.
    image_ready : bool
        Whether an image is ready to download.
    ccd_temperature_c : float or None
        Sensor temperature in degrees Celsius, None when unknown.
    set_temperature_c : float or None
        Cooler set point in degrees Celsius, None without a cooler.
    cooler_on : bool
        Whether the cooler runs.
    cooler_power_pct : float or None
        Cooler power in percent, None when unknown.
    """

    state: CameraState
    percent_completed: float
    image_ready: bool
    ccd_temperature_c: float | None
    set_temperature_c: float | None
    cooler_on: bool
    cooler_power_pct: float | None


@dataclass(frozen=True, slots=True)
class ImageMetadata:
    """What a FITS header needs to know about one downloaded image, read from the camera.

    Attributes
    ----------
    exposure_s : float
        Actual duration of the exposure in seconds.
    start_time : datetime or None
        UTC start of the exposure (timezone-aware), None when the camera does not report it.
    light : bool
        True for a light frame (shutter open), False for a dark or bias.
    bin_x, bin_y : int
        Binning factors.
    start_x, start_y : int
        Subframe origin in binned pixels.
    gain, offset : int or None
        Gain and offset settings, None when the camera has none.
    electrons_per_adu : float
        Conversion gain in electrons per ADU.
    ccd_temperature_c : float or None
        Sensor temperature at download, degrees Celsius.
    set_temperature_c : float or None
        Cooler set point, degrees Celsius.
    cooler_on : bool
        Whether the cooler ran.
    pixel_size_x_um, pixel_size_y_um : float
        Unbinned pixel pitch in micrometres.
    readout_mode : str
        Readout mode name.
    sensor_name : str
        Sensor model.
    camera_name : str
        The device's own name.
    bayer_pattern : str or None
        Colour filter array of a one-shot-colour sensor, named for the colours of the 2 x 2
        cell at the full sensor's first unbinned pixel (``"RGGB"``, ``"BGGR"``, ``"GRBG"``,
        ``"GBRG"``, read in row order as FITS ``BAYERPAT``); None for a monochrome sensor.
        A subframe starting on an odd column or row sees the pattern shifted by one.
    """

    exposure_s: float
    start_time: datetime | None
    light: bool
    bin_x: int
    bin_y: int
    start_x: int
    start_y: int
    gain: int | None
    offset: int | None
    electrons_per_adu: float
    ccd_temperature_c: float | None
    set_temperature_c: float | None
    cooler_on: bool
    pixel_size_x_um: float
    pixel_size_y_um: float
    readout_mode: str
    sensor_name: str
    camera_name: str
    bayer_pattern: str | None = None


@dataclass(frozen=True, slots=True)
class CameraImage:
    """A downloaded image and its metadata.

    Attributes
    ----------
    data : numpy.ndarray
        Pixel values in ADU, shape ``(height, width)`` (row = y), native byte order,
        C-contiguous; ``uint16`` for cameras of up to 16 bits, otherwise ``int32``.
    metadata : ImageMetadata
        Camera state at download.
    """

    data: NDArray[np.uint16] | NDArray[np.int32]
    metadata: ImageMetadata


@dataclass(frozen=True, slots=True)
class MountStatus:
    """A mount's position and motion, read together.

    Attributes
    ----------
    ra_deg, dec_deg : float
        Pointing in ICRS/J2000 degrees.
    alt_deg, az_deg : float
        Topocentric altitude and azimuth (north = 0, east = 90) in degrees.
    slewing : bool
        Whether the mount is moving to a target.
    tracking : bool
        Whether sidereal tracking is on.
    at_park : bool
        Whether the mount is parked.
    pier_side : PierSide
        Side of the pier the tube is on.
    sidereal_time_h : float or None
        Local apparent sidereal time in hours, None when unknown.
    """

    ra_deg: float
    dec_deg: float
    alt_deg: float
    az_deg: float
    slewing: bool
    tracking: bool
    at_park: bool
    pier_side: PierSide
    sidereal_time_h: float | None


@dataclass(frozen=True, slots=True)
class DomeInfo:
    """Fixed abilities of a dome or roll-off roof, read once after connecting.

    A roll-off roof has a shutter (the roof) and nothing else: it cannot rotate, so it has no
    azimuth, and it cannot be slaved to the telescope.

    Attributes
    ----------
    can_set_azimuth : bool
        Whether the dome rotates to an azimuth (False for a roll-off roof).
    can_set_shutter : bool
        Whether the shutter or roof can be opened and closed.
    can_park : bool
        Whether the dome has a park position.
    can_slave : bool
        Whether the dome can follow the telescope by itself (hardware slaving).
    """

    can_set_azimuth: bool
    can_set_shutter: bool
    can_park: bool
    can_slave: bool


@dataclass(frozen=True, slots=True)
class DomeStatus:
    """A dome's shutter, rotation and park state, read together.

    Attributes
    ----------
    shutter : ShutterState or None
        The shutter or roof (`ShutterState.ERROR` when stopped part-way or the dome cannot
        tell); None when the dome does not report it.
    azimuth_deg : float or None
        Azimuth of the slit (north = 0, east = 90) in degrees, None for a dome that does not
        rotate (a roll-off roof).
    slewing : bool
        Whether any part of the dome moves: rotation or the shutter (ASCOM ``Slewing``).
    at_park : bool
        Whether the dome is at its park position.
    slaved : bool
        Whether the dome follows the telescope by itself.
    """

    shutter: ShutterState | None
    azimuth_deg: float | None
    slewing: bool
    at_park: bool
    slaved: bool


@dataclass(frozen=True, slots=True)
class WeatherReadings:
    """One reading of every sensor of a weather station; None for a sensor it does not have.

    ASCOM lets an observing-conditions device implement any subset of its sensors, so every
    value may be None.

    Attributes
    ----------
    cloud_cover_pct : float or None
        Sky covered by cloud, 0 to 100 percent.
    sky_temperature_c : float or None
        Sky temperature (an infrared sensor) in degrees Celsius.
    temperature_c : float or None
        Ambient air temperature in degrees Celsius.
    dew_point_c : float or None
        Dew point in degrees Celsius.
    humidity_pct : float or None
        Relative humidity, 0 to 100 percent.
    wind_speed_m_s : float or None
        Wind speed in metres per second.
    wind_gust_m_s : float or None
        Peak wind speed over the last 2 minutes in metres per second.
    rain_rate_mm_h : float or None
        Rain rate in millimetres per hour (0 when dry).
    sky_quality_mag_arcsec2 : float or None
        Sky brightness in magnitudes per square arcsecond (larger is darker).
    average_period_h : float or None
        Period over which the values are averaged, in hours (0: instantaneous values).
    """

    cloud_cover_pct: float | None = None
    sky_temperature_c: float | None = None
    temperature_c: float | None = None
    dew_point_c: float | None = None
    humidity_pct: float | None = None
    wind_speed_m_s: float | None = None
    wind_gust_m_s: float | None = None
    rain_rate_mm_h: float | None = None
    sky_quality_mag_arcsec2: float | None = None
    average_period_h: float | None = None


@dataclass(frozen=True, slots=True)
class CoverCalibratorInfo:
    """Fixed abilities of a flat panel and dust cover, read once after connecting.

    ASCOM ``ICoverCalibrator`` covers a panel with a motorised cover (a flip-flat), a cover
    alone, and a panel alone (a light box or a screen).

    Attributes
    ----------
    max_brightness : int
        The panel's brightest setting in its own steps (``Brightness`` runs from 0 to this);
        0 when there is no calibrator.
    has_cover : bool
        Whether there is a cover that opens and closes.
    has_calibrator : bool
        Whether there is a light source for flat fields.
    """

    max_brightness: int
    has_cover: bool
    has_calibrator: bool


@dataclass(frozen=True, slots=True)
class CoverCalibratorStatus:
    """The cover's and the panel's state, read together.

    Attributes
    ----------
    cover : CoverState
        The cover (`CoverState.NOT_PRESENT` without one; `CoverState.UNKNOWN` when halted
        part-way).
    calibrator : CalibratorState
        The light source (`CalibratorState.NOT_READY` while it warms up or changes).
    brightness : int
        The panel's set brightness in its steps, 0 to ``max_brightness`` (0 when off or
        absent).
    cover_moving : bool
        Whether the cover moves (ASCOM ``CoverMoving``).
    calibrator_changing : bool
        Whether the light source is not yet settled after being switched (ASCOM
        ``CalibratorChanging``).
    """

    cover: CoverState
    calibrator: CalibratorState
    brightness: int
    cover_moving: bool
    calibrator_changing: bool


@dataclass(frozen=True, slots=True)
class FocuserInfo:
    """Fixed abilities of a focuser, read once after connecting.

    Attributes
    ----------
    absolute : bool
        Whether it moves to positions (ASCOM ``Absolute``); a relative focuser only moves by
        steps and has no position.
    max_step : int
        The highest position, in steps (positions run from 0); for a relative focuser the
        longest travel.
    max_increment : int
        The most steps one move may take.
    step_size_um : float or None
        The travel of one step (micron); None when the driver does not know it.
    temp_comp_available : bool
        Whether the focuser compensates for temperature by itself.
    """

    absolute: bool
    max_step: int
    max_increment: int
    step_size_um: float | None
    temp_comp_available: bool


@dataclass(frozen=True, slots=True)
class FocuserStatus:
    """The focuser's position, motion and temperature, read together.

    Attributes
    ----------
    position : int or None
        The position in steps; None for a relative focuser.
    moving : bool
        Whether it moves (ASCOM ``IsMoving``).
    temperature_c : float or None
        The focuser's temperature probe (Celsius); None without one.
    temp_comp : bool
        Whether its own temperature compensation is on.
    """

    position: int | None
    moving: bool
    temperature_c: float | None
    temp_comp: bool


class Device(Protocol):
    """What every device has: a name and a connection."""

    @property
    def name(self) -> str:
        """The device's configured name, used in errors and logs."""
        ...

    async def connect(self) -> None:
        """Connect to the device; returns when it is connected.

        Raises
        ------
        DeviceTimeoutError, DeviceConnectionError
            When the device cannot be reached.
        """
        ...

    async def disconnect(self) -> None:
        """Disconnect from the device. Never raises for an unreachable device."""
        ...

    async def is_connected(self) -> bool:
        """Return whether the device reports itself connected."""
        ...


@runtime_checkable
class Camera(Device, Protocol):
    """An imaging camera."""

    async def info(self) -> CameraInfo:
        """Return the camera's fixed properties."""
        ...

    async def configure(self, settings: ExposureSettings) -> None:
        """Apply binning, subframe, gain, offset and readout mode for the next exposure.

        Raises
        ------
        InvalidDeviceValueError
            When a setting is out of the camera's range.
        """
        ...

    async def start_exposure(self, exposure_s: float, *, light: bool = True) -> None:
        """Start an exposure and return at once.

        Parameters
        ----------
        exposure_s : float
            Duration in seconds (0 or the camera's minimum for a bias).
        light : bool
            True opens the shutter (light or flat frame), False keeps it closed (dark, bias).

        Raises
        ------
        DeviceBusyError
            When an exposure is already running.
        InvalidDeviceValueError
            When the duration is out of range.
        """
        ...

    async def status(self) -> CameraStatus:
        """Return the camera state, progress, readiness and temperatures."""
        ...

    async def abort_exposure(self) -> None:
        """Abort the running exposure and discard it."""
        ...

    async def stop_exposure(self) -> None:
        """End the running exposure early and keep the image for download."""
        ...

    async def download(self) -> CameraImage:
        """Download the ready image.

        Raises
        ------
        DeviceBusyError
            When no image is ready.
        DeviceTimeoutError
            When the download does not finish within its deadline.
        ImageDownloadError
            When the image data is corrupted or truncated.
        """
        ...

    async def set_cooler(self, *, on: bool, set_point_c: float | None = None) -> None:
        """Switch the cooler and optionally change its set point in degrees Celsius.

        Raises
        ------
        DeviceNotImplementedError
            When the camera has no regulated cooler.
        """
        ...


@runtime_checkable
class FilterWheel(Device, Protocol):
    """A filter wheel."""

    async def names(self) -> list[str]:
        """Return the filter names, indexed by slot (0-based)."""
        ...

    async def focus_offsets(self) -> list[int]:
        """Return the focuser offsets in focuser steps, indexed by slot."""
        ...

    async def position(self) -> int | None:
        """Return the current slot (0-based), or None while the wheel moves."""
        ...

    async def move(self, position: int) -> None:
        """Start moving to a slot and return at once; poll `position` for arrival.

        Raises
        ------
        InvalidDeviceValueError
            When the slot does not exist.
        """
        ...


@runtime_checkable
class Mount(Device, Protocol):
    """A telescope mount."""

    async def status(self) -> MountStatus:
        """Return position, motion and park state."""
        ...

    async def slew_to_radec(self, ra_deg: float, dec_deg: float) -> None:
        """Start a slew to ICRS/J2000 coordinates in degrees and return at once.

        Raises
        ------
        DeviceBusyError
            When the mount is parked.
        InvalidDeviceValueError
            When the target is out of range or below the mount's limits.
        """
        ...

    async def slew_to_altaz(self, alt_deg: float, az_deg: float) -> None:
        """Start a slew to topocentric altitude and azimuth in degrees and return at once.

        Raises
        ------
        DeviceBusyError
            When the mount is parked.
        InvalidDeviceValueError
            When the target is out of the mount's limits.
        """
        ...

    async def sync_to_radec(self, ra_deg: float, dec_deg: float) -> None:
        """Declare that the mount points at ICRS/J2000 coordinates in degrees.

        The mount does not move: the position it reports becomes the given one, and its
        pointing model takes up the difference (a plate solution corrects it this way).

        Raises
        ------
        DeviceNotImplementedError
            When the mount cannot sync (ASCOM ``CanSync`` false).
        DeviceBusyError
            When the mount is parked (`DeviceParkedError` where the driver can tell) or
            slewing.
        InvalidDeviceValueError
            When the coordinates are out of range.
        """
        ...

    async def pulse_guide(self, direction: GuideDirection, duration_s: float) -> None:
        """Start a guide pulse at the mount's guide rate and return at once.

        A relative move for drift corrections: unlike a slew (or a goto to the corrected
        position), it leaves tracking as it is. The move is the guide rate (`guide_rates`)
        times the duration along the RA or the Dec axis; an RA pulse changes the RA
        coordinate by that much, so the star moves by it times cos(Dec) on the sky.
        `is_pulse_guiding` is true until the pulse ends.

        Parameters
        ----------
        direction : GuideDirection
            North (+Dec), south (-Dec), east (+RA) or west (-RA), as ASCOM.
        duration_s : float
            Length of the pulse in seconds (>= 0; sent in whole milliseconds).

        Raises
        ------
        DeviceNotImplementedError
            When the mount cannot pulse guide (ASCOM ``CanPulseGuide`` false).
        DeviceBusyError
            When the mount is parked (`DeviceParkedError` where the driver can tell),
            slewing, or (where the mount refuses it) not tracking.
        InvalidDeviceValueError
            When the duration is negative or not finite.
        """
        ...

    async def guide_rates(self) -> tuple[float, float]:
        """Return the RA and Dec guide rates in arcsec per second of time.

        The RA rate is that of the RA axis (arcsec of RA coordinate per second). A mount
        that cannot tell is assumed to guide at ASCOM's default, 0.5 x sidereal
        (`DEFAULT_GUIDE_RATE_ARCSEC_S`).
        """
        ...

    async def is_pulse_guiding(self) -> bool:
        """Return whether a guide pulse is in progress."""
        ...

    async def abort_slew(self) -> None:
        """Stop any slew at once."""
        ...

    async def set_tracking(self, on: bool) -> None:
        """Switch sidereal tracking on or off."""
        ...

    async def park(self) -> None:
        """Start moving to the park position and return at once; `status` tells arrival."""
        ...

    async def unpark(self) -> None:
        """Leave the park state so that the mount accepts slews."""
        ...


@runtime_checkable
class SafetyMonitor(Device, Protocol):
    """A safety monitor (roof, weather, or any combined safe/unsafe signal)."""

    async def is_safe(self) -> bool:
        """Return whether it is safe to observe."""
        ...


@runtime_checkable
class Dome(Device, Protocol):
    """A dome or a roll-off roof.

    Moving commands return at once; `status` tells arrival, as the mount's `Mount.park` does.
    """

    async def info(self) -> DomeInfo:
        """Return the dome's fixed abilities."""
        ...

    async def status(self) -> DomeStatus:
        """Return shutter, azimuth, motion, park and slaving state."""
        ...

    async def open_shutter(self) -> None:
        """Start opening the shutter or roof and return at once.

        Raises
        ------
        DeviceNotImplementedError
            When the shutter cannot be operated.
        """
        ...

    async def close_shutter(self) -> None:
        """Start closing the shutter or roof and return at once.

        Raises
        ------
        DeviceNotImplementedError
            When the shutter cannot be operated.
        """
        ...

    async def slew_to_azimuth(self, az_deg: float) -> None:
        """Start rotating the slit to an azimuth in degrees (north = 0, east = 90).

        Raises
        ------
        DeviceNotImplementedError
            When the dome does not rotate (a roll-off roof).
        InvalidDeviceValueError
            When the azimuth is not finite.
        DeviceBusyError
            When the dome is slaved to the telescope.
        """
        ...

    async def abort_slew(self) -> None:
        """Stop every motion at once: rotation and shutter (a moving shutter is then ERROR)."""
        ...

    async def park(self) -> None:
        """Start moving to the park position and return at once; `status` tells arrival.

        Raises
        ------
        DeviceNotImplementedError
            When the dome has no park position.
        """
        ...

    async def set_slaved(self, on: bool) -> None:
        """Switch the dome's own slaving to the telescope on or off.

        Raises
        ------
        DeviceNotImplementedError
            When the dome cannot slave itself and ``on`` is True.
        """
        ...


@runtime_checkable
class ObservingConditions(Device, Protocol):
    """A weather station (ASCOM ``IObservingConditions``)."""

    async def readings(self) -> WeatherReadings:
        """Return every sensor's value; None for a sensor the station does not have."""
        ...

    async def time_since_last_update_s(self, sensor: str = "") -> float | None:
        """Return the age of the latest reading in seconds.

        Parameters
        ----------
        sensor : str
            ASCOM sensor name (``"CloudCover"``, ``"RainRate"``, ...); empty for the most
            recent update of any sensor.

        Returns
        -------
        float or None
            Seconds since the update; None when the station does not report it.

        Raises
        ------
        InvalidDeviceValueError
            When the sensor name is unknown.
        """
        ...


@runtime_checkable
class CoverCalibrator(Device, Protocol):
    """A flat-field panel with a dust cover, either of which may be absent.

    Moving commands return at once; `status` tells arrival: the cover is `CoverState.OPEN`
    or `CoverState.CLOSED`, the panel `CalibratorState.READY` or `CalibratorState.OFF`.
    """

    async def info(self) -> CoverCalibratorInfo:
        """Return the device's fixed abilities."""
        ...

    async def status(self) -> CoverCalibratorStatus:
        """Return the cover and panel state and the panel's brightness."""
        ...

    async def open_cover(self) -> None:
        """Start opening the cover and return at once.

        Raises
        ------
        DeviceNotImplementedError
            When there is no cover.
        """
        ...

    async def close_cover(self) -> None:
        """Start closing the cover and return at once.

        Raises
        ------
        DeviceNotImplementedError
            When there is no cover.
        """
        ...

    async def halt_cover(self) -> None:
        """Stop the cover where it is (part-way it is then `CoverState.UNKNOWN`).

        Raises
        ------
        DeviceNotImplementedError
            When there is no cover, or its motion cannot be interrupted.
        """
        ...

    async def calibrator_on(self, brightness: int) -> None:
        """Switch the panel on at a brightness and return at once; `status` tells ready.

        Parameters
        ----------
        brightness : int
            In the panel's steps, 0 to `CoverCalibratorInfo.max_brightness`.

        Raises
        ------
        InvalidDeviceValueError
            When the brightness is outside 0 to ``max_brightness``.
        DeviceNotImplementedError
            When there is no light source.
        """
        ...

    async def calibrator_off(self) -> None:
        """Switch the panel off and return at once.

        Raises
        ------
        DeviceNotImplementedError
            When there is no light source.
        """
        ...


@runtime_checkable
class Focuser(Device, Protocol):
    """A focuser, absolute (moves to positions) or relative (moves by steps).

    Moves return at once; `status` tells arrival (``moving`` false). A move while one is
    under way goes to the new target from where the focuser is.
    """

    async def info(self) -> FocuserInfo:
        """Return the focuser's fixed abilities."""
        ...

    async def status(self) -> FocuserStatus:
        """Return the position, motion, temperature and compensation state."""
        ...

    async def move_to(self, position: int) -> None:
        """Start a move to a position (steps) and return at once.

        Raises
        ------
        InvalidDeviceValueError
            When the position is outside 0 to ``max_step``, or farther than
            ``max_increment`` steps from where the focuser is.
        DeviceNotImplementedError
            For a relative focuser.
        """
        ...

    async def move_by(self, steps: int) -> None:
        """Start a move by a number of steps (positive outward) and return at once.

        Raises
        ------
        InvalidDeviceValueError
            When the move is longer than ``max_increment`` steps, or (absolute focuser)
            would end outside 0 to ``max_step``.
        """
        ...

    async def halt(self) -> None:
        """Stop the focuser where it is.

        Raises
        ------
        DeviceNotImplementedError
            When its motion cannot be interrupted.
        """
        ...

    async def set_temp_comp(self, on: bool) -> None:
        """Switch the focuser's own temperature compensation on or off.

        Raises
        ------
        DeviceNotImplementedError
            When switching it on and the focuser has none.
        """
        ...


@dataclass(slots=True)
class DeviceSet:
    """The devices of one observatory, as built from a config.

    Attributes
    ----------
    camera : Camera
        The imaging camera.
    filter_wheel, mount, safety_monitor, dome, weather, cover_calibrator, focuser : device or None
        Optional devices.
    """

    camera: Camera
    filter_wheel: FilterWheel | None = None
    mount: Mount | None = None
    safety_monitor: SafetyMonitor | None = None
    dome: Dome | None = None
    weather: ObservingConditions | None = None
    cover_calibrator: CoverCalibrator | None = None
    focuser: Focuser | None = None

    def all(self) -> list[Device]:
        """Return the configured devices in the order of `ROLES`."""
        found: list[Device | None] = [getattr(self, role) for role in ROLES]
        return [d for d in found if d is not None]
