"""In-process device Protocol implementations over the simulator models (no HTTP).

`SimulatedCamera`, `SimulatedFilterWheel`, `SimulatedMount`, `SimulatedSafetyMonitor`,
`SimulatedDome`, `SimulatedObservingConditions`, `SimulatedCoverCalibrator` and
`SimulatedFocuser` satisfy `obsctl.devices.Camera`, `FilterWheel`, `Mount`, `SafetyMonitor`,
`Dome`, `ObservingConditions`, `CoverCalibrator` and `Focuser` structurally.
Model `AscomError` numbers become obsctl errors: 0x400 → `DeviceNotImplementedError`,
0x401/0x402 → `InvalidDeviceValueError`, 0x407 → `DeviceNotConnectedError`, 0x408/0x40B →
`DeviceBusyError`, anything else → `DeviceError`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar, Generic, TypeVar, cast

import numpy as np
from numpy.typing import NDArray

from obsctl.devices import (
    CameraImage,
    CameraInfo,
    CameraStatus,
    CoverCalibratorInfo,
    CoverCalibratorStatus,
    DomeInfo,
    DomeStatus,
    ExposureSettings,
    FocuserInfo,
    FocuserStatus,
    GuideDirection,
    ImageMetadata,
    MountStatus,
    WeatherReadings,
    pulse_duration_ms,
)
from obsctl.errors import (
    DeviceBusyError,
    DeviceError,
    DeviceNotConnectedError,
    DeviceNotImplementedError,
    InvalidDeviceValueError,
)
from obsctl.simulators.camera_model import READOUT_MODES, CameraModel
from obsctl.simulators.covercalibrator_model import CoverCalibratorModel
from obsctl.simulators.dome_model import DomeModel
from obsctl.simulators.filterwheel_model import FilterWheelModel
from obsctl.simulators.focuser_model import FocuserModel
from obsctl.simulators.models import (
    INVALID_OPERATION,
    INVALID_VALUE,
    INVALID_WHILE_PARKED,
    NOT_CONNECTED,
    NOT_IMPLEMENTED,
    VALUE_NOT_SET,
    AscomError,
    ConnectableModel,
)
from obsctl.simulators.mount_model import MountModel
from obsctl.simulators.safety_model import SafetyMonitorModel
from obsctl.simulators.weather_model import WeatherModel

__all__ = [
    "SimulatedCamera",
    "SimulatedCoverCalibrator",
    "SimulatedDome",
    "SimulatedFilterWheel",
    "SimulatedFocuser",
    "SimulatedMount",
    "SimulatedObservingConditions",
    "SimulatedSafetyMonitor",
    "translate_ascom_error",
]

log = logging.getLogger(__name__)

_ERRORS: dict[int, type[DeviceError]] = {
    NOT_IMPLEMENTED: DeviceNotImplementedError,
    INVALID_VALUE: InvalidDeviceValueError,
    VALUE_NOT_SET: InvalidDeviceValueError,
    NOT_CONNECTED: DeviceNotConnectedError,
    INVALID_WHILE_PARKED: DeviceBusyError,
    INVALID_OPERATION: DeviceBusyError,
}


def translate_ascom_error(exc: AscomError, device: str) -> DeviceError:
    """Return the obsctl error for a model's ASCOM error.

    Parameters
    ----------
    exc : AscomError
        The model's error.
    device : str
        The device's name, for the error's context.

    Returns
    -------
    DeviceError
        The matching subclass, carrying the ASCOM number.
    """
    cls = _ERRORS.get(exc.number, DeviceError)
    return cls(exc.message, device=device, ascom_error=exc.number)


M = TypeVar("M", bound=ConnectableModel)


class _SimulatedDevice(Generic[M]):
    """Name, connection and error translation shared by the in-process devices.

    Parameters
    ----------
    model : ConnectableModel
        The simulator model the device drives (`CameraModel` for `SimulatedCamera`, ...).
    name : str or None
        Configured device name; None takes the class's `default_name`.
    """

    default_name: ClassVar[str]

    def __init__(self, model: M, *, name: str | None = None) -> None:
        self.model = model
        self._name = self.default_name if name is None else name

    @property
    def name(self) -> str:
        """The device's configured name."""
        return self._name

    @contextmanager
    def _ascom(self) -> Iterator[None]:
        try:
            yield
        except AscomError as exc:
            raise translate_ascom_error(exc, self._name) from exc

    def _require_connected(self) -> None:
        with self._ascom():
            self.model.require_connected()

    async def connect(self) -> None:
        """Connect (immediately)."""
        self.model.connected = True

    async def disconnect(self) -> None:
        """Disconnect; never raises."""
        self.model.connected = False

    async def is_connected(self) -> bool:
        """Return whether the device is connected."""
        return self.model.connected


class SimulatedCamera(_SimulatedDevice[CameraModel]):
    """The simulated camera as an `obsctl.devices.Camera`.

    It drives a `CameraModel`; its name is ``camera`` unless one is given.
    """

    default_name = "camera"

    async def info(self) -> CameraInfo:
        """Return the camera's fixed properties.

        Raises
        ------
        DeviceNotConnectedError
            When not connected.
        """
        self._require_connected()
        c = self.model.config
        return CameraInfo(
            sensor_name=c.sensor_name,
            width_px=c.width_px,
            height_px=c.height_px,
            pixel_size_x_um=c.pixel_size_um,
            pixel_size_y_um=c.pixel_size_um,
            max_bin_x=c.max_bin,
            max_bin_y=c.max_bin,
            max_adu=c.max_adu,
            full_well_e=c.full_well_e,
            exposure_min_s=c.exposure_min_s,
            exposure_max_s=c.exposure_max_s,
            gain_min=c.gain_min,
            gain_max=c.gain_max,
            offset_min=c.offset_min,
            offset_max=c.offset_max,
            readout_modes=READOUT_MODES,
            can_abort=True,
            can_stop=True,
            can_set_temperature=True,
        )

    async def configure(self, settings: ExposureSettings) -> None:
        """Apply binning, subframe (None: full frame), gain, offset and readout mode.

        All settings apply or none do.

        Raises
        ------
        InvalidDeviceValueError
            When a setting is out of range or the subframe does not fit.
        DeviceNotConnectedError
            When not connected.
        """
        m = self.model
        saved = (m.bin_x, m.bin_y, m.start_x, m.start_y, m.num_x, m.num_y)
        saved_electronics = (m.gain, m.offset, m.readout_mode)
        with self._ascom():
            m.require_connected()
            try:
                m.set_bin_x(settings.bin_x)
                m.set_bin_y(settings.bin_y)
                if settings.subframe is None:
                    m.start_x, m.start_y = 0, 0
                    m.num_x = m.config.width_px // settings.bin_x
                    m.num_y = m.config.height_px // settings.bin_y
                else:
                    m.start_x, m.start_y, m.num_x, m.num_y = settings.subframe
                m.check_geometry()
                if settings.gain is not None:
                    m.set_gain(settings.gain)
                if settings.offset is not None:
                    m.set_offset(settings.offset)
                if settings.readout_mode is not None:
                    m.set_readout_mode(settings.readout_mode)
            except AscomError:
                m.bin_x, m.bin_y, m.start_x, m.start_y, m.num_x, m.num_y = saved
                m.set_gain(saved_electronics[0])
                m.set_offset(saved_electronics[1])
                m.set_readout_mode(saved_electronics[2])
                raise

    async def start_exposure(self, exposure_s: float, *, light: bool = True) -> None:
        """Start an exposure; 0 s takes the shortest one (a bias).

        Raises the errors `obsctl.devices.Camera.start_exposure` lists, and
        `DeviceNotConnectedError` when not connected.
        """
        if exposure_s == 0:
            exposure_s = self.model.config.exposure_min_s
        with self._ascom():
            self.model.start_exposure(exposure_s, light)

    async def status(self) -> CameraStatus:
        """Return state, progress, readiness and temperatures.

        Raises
        ------
        DeviceNotConnectedError
            When not connected.
        """
        m = self.model
        self._require_connected()
        return CameraStatus(
            state=m.state,
            percent_completed=m.percent_completed,
            image_ready=m.image_ready,
            ccd_temperature_c=m.ccd_temperature_c,
            set_temperature_c=m.set_point_c,
            cooler_on=m.cooler_on,
            cooler_power_pct=m.cooler_power_pct,
        )

    async def abort_exposure(self) -> None:
        """Abort and discard the running exposure."""
        with self._ascom():
            self.model.abort_exposure()

    async def stop_exposure(self) -> None:
        """End the running exposure early and keep it."""
        with self._ascom():
            self.model.stop_exposure()

    async def download(self) -> CameraImage:
        """Return the ready image (a read-only array shared with the model, not a copy).

        Raises
        ------
        DeviceBusyError
            When no image is ready.
        DeviceNotConnectedError
            When not connected.
        """
        m = self.model
        with self._ascom():
            m.require_connected()
            image = m.image
            record = m.last_exposure
        metadata = ImageMetadata(
            exposure_s=record.duration_s,
            start_time=record.start_time,
            light=record.light,
            bin_x=record.bin_x,
            bin_y=record.bin_y,
            start_x=record.start_x,
            start_y=record.start_y,
            gain=record.gain,
            offset=record.offset,
            electrons_per_adu=record.electrons_per_adu,
            ccd_temperature_c=m.ccd_temperature_c,
            set_temperature_c=m.set_point_c,
            cooler_on=m.cooler_on,
            pixel_size_x_um=m.config.pixel_size_um,
            pixel_size_y_um=m.config.pixel_size_um,
            readout_mode=record.readout_mode,
            sensor_name=m.config.sensor_name,
            camera_name=self.name,
            bayer_pattern=m.config.bayer_pattern,
        )
        data = cast(NDArray[np.uint16] | NDArray[np.int32], image)
        return CameraImage(data=data, metadata=metadata)

    async def set_cooler(self, *, on: bool, set_point_c: float | None = None) -> None:
        """Switch the cooler, optionally changing the set point in degrees Celsius.

        Raises
        ------
        InvalidDeviceValueError
            When the set point is out of range.
        DeviceNotConnectedError
            When not connected.
        """
        with self._ascom():
            self.model.require_connected()
            if set_point_c is not None:
                self.model.set_set_point_c(set_point_c)
            self.model.set_cooler_on(on)


class SimulatedFilterWheel(_SimulatedDevice[FilterWheelModel]):
    """The simulated filter wheel as an `obsctl.devices.FilterWheel`.

    It drives a `FilterWheelModel`; its name is ``filter_wheel`` unless one is given.
    """

    default_name = "filter_wheel"

    async def names(self) -> list[str]:
        """Return the filter names, indexed by slot."""
        self._require_connected()
        return self.model.names

    async def focus_offsets(self) -> list[int]:
        """Return the focus offsets in focuser steps, indexed by slot."""
        self._require_connected()
        return self.model.focus_offsets

    async def position(self) -> int | None:
        """Return the current slot, or None while moving."""
        self._require_connected()
        position = self.model.position
        return None if position < 0 else position

    async def move(self, position: int) -> None:
        """Start moving to a slot.

        Raises
        ------
        InvalidDeviceValueError
            When the slot does not exist.
        """
        with self._ascom():
            self.model.move(position)


class SimulatedMount(_SimulatedDevice[MountModel]):
    """The simulated mount as an `obsctl.devices.Mount`.

    It drives a `MountModel`; its name is ``mount`` unless one is given.
    """

    default_name = "mount"

    async def status(self) -> MountStatus:
        """Return position (degrees), motion and park state."""
        m = self.model
        self._require_connected()
        p = m.pointing()
        return MountStatus(
            ra_deg=p.ra_deg,
            dec_deg=p.dec_deg,
            alt_deg=p.alt_deg,
            az_deg=p.az_deg,
            slewing=m.slewing,
            tracking=m.tracking,
            at_park=m.at_park,
            pier_side=m.side_of_pier,
            sidereal_time_h=p.lst_deg / 15.0,
        )

    async def slew_to_radec(self, ra_deg: float, dec_deg: float) -> None:
        """Start a slew to J2000 coordinates in degrees.

        Raises the errors `obsctl.devices.Mount.slew_to_radec` lists.
        """
        with self._ascom():
            self.model.slew_to_radec(ra_deg % 360.0, dec_deg)

    async def slew_to_altaz(self, alt_deg: float, az_deg: float) -> None:
        """Switch tracking off (ASCOM requires it) and start a slew to alt/az in degrees.

        Raises the errors `obsctl.devices.Mount.slew_to_altaz` lists.
        """
        with self._ascom():
            was_tracking = self.model.tracking
            self.model.set_tracking(False)
            try:
                self.model.slew_to_altaz(alt_deg, az_deg % 360.0)
            except AscomError:
                if was_tracking:  # a refused slew leaves the mount as it was
                    self.model.set_tracking(True)
                raise

    async def sync_to_radec(self, ra_deg: float, dec_deg: float) -> None:
        """Declare that the mount points at J2000 coordinates in degrees.

        Raises the errors `obsctl.devices.Mount.sync_to_radec` lists.
        """
        with self._ascom():
            self.model.sync_to_radec(ra_deg % 360.0, dec_deg)

    async def pulse_guide(self, direction: GuideDirection, duration_s: float) -> None:
        """Start a guide pulse of ``duration_s`` seconds (whole milliseconds).

        Raises the errors `obsctl.devices.Mount.pulse_guide` lists; also `DeviceBusyError`
        while not tracking (the simulated mount refuses to guide then).
        """
        duration_ms = pulse_duration_ms(duration_s, device=self.name)
        with self._ascom():
            self.model.pulse_guide(int(direction), duration_ms)

    async def guide_rates(self) -> tuple[float, float]:
        """Return the RA and Dec guide rates in arcsec per second of time."""
        self._require_connected()
        return self.model.guide_rate_ra_arcsec_s, self.model.guide_rate_dec_arcsec_s

    async def is_pulse_guiding(self) -> bool:
        """Return whether a guide pulse is in progress."""
        self._require_connected()
        return self.model.is_pulse_guiding

    async def abort_slew(self) -> None:
        """Stop any slew."""
        with self._ascom():
            self.model.abort_slew()

    async def set_tracking(self, on: bool) -> None:
        """Switch sidereal tracking."""
        with self._ascom():
            self.model.set_tracking(on)

    async def park(self) -> None:
        """Start moving to the park position."""
        with self._ascom():
            self.model.park()

    async def unpark(self) -> None:
        """Leave the park state."""
        with self._ascom():
            self.model.unpark()


class SimulatedSafetyMonitor(_SimulatedDevice[SafetyMonitorModel]):
    """The simulated safety monitor as an `obsctl.devices.SafetyMonitor`.

    It drives a `SafetyMonitorModel`; its name is ``safety_monitor`` unless one is given.
    """

    default_name = "safety_monitor"

    async def is_safe(self) -> bool:
        """Return whether it is safe (False while disconnected)."""
        return self.model.is_safe


class SimulatedDome(_SimulatedDevice[DomeModel]):
    """The simulated roll-off roof or dome as an `obsctl.devices.Dome`.

    It drives a `DomeModel`; its name is ``dome`` unless one is given.
    """

    default_name = "dome"

    async def info(self) -> DomeInfo:
        """Return the dome's abilities (a roll-off roof neither rotates nor parks)."""
        self._require_connected()
        rotates = self.model.rotates
        return DomeInfo(
            can_set_azimuth=rotates, can_set_shutter=True, can_park=rotates, can_slave=False
        )

    async def status(self) -> DomeStatus:
        """Return shutter, azimuth (None for a roll-off roof), motion and park state."""
        m = self.model
        self._require_connected()
        return DomeStatus(
            shutter=m.shutter_state,
            azimuth_deg=m.azimuth_deg if m.rotates else None,
            slewing=m.slewing,
            at_park=m.at_park,
            slaved=False,
        )

    async def open_shutter(self) -> None:
        """Start opening the shutter or roof."""
        with self._ascom():
            self.model.open_shutter()

    async def close_shutter(self) -> None:
        """Start closing the shutter or roof."""
        with self._ascom():
            self.model.close_shutter()

    async def slew_to_azimuth(self, az_deg: float) -> None:
        """Start turning to an azimuth in degrees (any finite value; it is wrapped).

        Raises the errors `obsctl.devices.Dome.slew_to_azimuth` lists.
        """
        if not math.isfinite(az_deg):
            raise InvalidDeviceValueError(f"azimuth {az_deg!r} is not finite", device=self.name)
        with self._ascom():
            self.model.slew_to_azimuth(az_deg % 360.0)

    async def abort_slew(self) -> None:
        """Stop every motion."""
        with self._ascom():
            self.model.abort_slew()

    async def park(self) -> None:
        """Start turning to the park azimuth.

        Raises
        ------
        DeviceNotImplementedError
            For a roll-off roof.
        """
        with self._ascom():
            self.model.park()

    async def set_slaved(self, on: bool) -> None:
        """Switch slaving; the simulated dome cannot slave itself.

        Raises
        ------
        DeviceNotImplementedError
            When ``on`` is True.
        """
        self._require_connected()
        if on:
            raise DeviceNotImplementedError(
                "the simulated dome cannot slave itself to the telescope",
                device=self.name,
                ascom_error=NOT_IMPLEMENTED,
            )


class SimulatedObservingConditions(_SimulatedDevice[WeatherModel]):
    """The simulated weather station as an `obsctl.devices.ObservingConditions`.

    It drives a `WeatherModel`; its name is ``weather`` unless one is given.
    """

    default_name = "weather"

    async def readings(self) -> WeatherReadings:
        """Return every sensor's value; None for a sensor the station lacks."""
        self._require_connected()
        return WeatherReadings(**self.model.readings(), average_period_h=0.0)

    async def time_since_last_update_s(self, sensor: str = "") -> float | None:
        """Return the age of the latest reading in seconds; None for a missing sensor.

        Raises
        ------
        InvalidDeviceValueError
            When the sensor name is unknown.
        """
        self._require_connected()
        try:
            with self._ascom():
                return self.model.time_since_update_s(sensor)
        except DeviceNotImplementedError:
            return None


class SimulatedCoverCalibrator(_SimulatedDevice[CoverCalibratorModel]):
    """The simulated flat panel and dust cover as an `obsctl.devices.CoverCalibrator`.

    It drives a `CoverCalibratorModel`; its name is ``cover_calibrator`` unless one is given.
    """

    default_name = "cover_calibrator"

    async def info(self) -> CoverCalibratorInfo:
        """Return the brightest step and whether there is a cover (the panel is always there)."""
        self._require_connected()
        config = self.model.config
        return CoverCalibratorInfo(
            max_brightness=config.max_brightness, has_cover=config.has_cover, has_calibrator=True
        )

    async def status(self) -> CoverCalibratorStatus:
        """Return the cover and panel state and the brightness."""
        m = self.model
        self._require_connected()
        return CoverCalibratorStatus(
            cover=m.cover_state,
            calibrator=m.calibrator_state,
            brightness=m.brightness,
            cover_moving=m.cover_moving,
            calibrator_changing=m.calibrator_changing,
        )

    async def open_cover(self) -> None:
        """Start opening the cover."""
        with self._ascom():
            self.model.open_cover()

    async def close_cover(self) -> None:
        """Start closing the cover."""
        with self._ascom():
            self.model.close_cover()

    async def halt_cover(self) -> None:
        """Stop the cover where it is."""
        with self._ascom():
            self.model.halt_cover()

    async def calibrator_on(self, brightness: int) -> None:
        """Switch the panel on at a brightness (0 to ``max_brightness`` steps).

        Raises the errors `obsctl.devices.CoverCalibrator.calibrator_on` lists.
        """
        with self._ascom():
            self.model.calibrator_on(int(brightness))

    async def calibrator_off(self) -> None:
        """Switch the panel off."""
        with self._ascom():
            self.model.calibrator_off()


def _require_int(value: object, name: str) -> None:
    """Refuse a non-integer step count, as the Alpaca driver does (a float is no step)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")


class SimulatedFocuser(_SimulatedDevice[FocuserModel]):
    """The simulated focuser as an `obsctl.devices.Focuser` (absolute, with a temperature probe).

    It drives a `FocuserModel`; its name is ``focuser`` unless one is given.
    """

    default_name = "focuser"

    async def info(self) -> FocuserInfo:
        """Return the travel (steps), the longest move, the step size and no compensation."""
        self._require_connected()
        m = self.model
        return FocuserInfo(
            absolute=True,
            max_step=m.config.max_step,
            max_increment=m.config.max_increment,
            step_size_um=m.config.step_size_um,
            temp_comp_available=m.temp_comp_available,
        )

    async def status(self) -> FocuserStatus:
        """Return the position (steps), motion, temperature (Celsius) and compensation."""
        m = self.model
        self._require_connected()
        return FocuserStatus(
            position=m.position,
            moving=m.is_moving,
            temperature_c=m.temperature_c,
            temp_comp=m.temp_comp,
        )

    async def move_to(self, position: int) -> None:
        """Start a move to a position in steps.

        Raises the errors `obsctl.devices.Focuser.move_to` lists.
        """
        _require_int(position, "position")
        with self._ascom():
            self.model.move(position)

    async def move_by(self, steps: int) -> None:
        """Start a move by ``steps`` (positive outward) from where the focuser is.

        Raises the errors `obsctl.devices.Focuser.move_by` lists.
        """
        _require_int(steps, "steps")
        with self._ascom():
            # An absolute focuser moves by steps as a move to a position (as ASCOM clients
            # do); the model range-checks the target and the increment.
            self.model.require_connected()
            self.model.move(self.model.position + steps)

    async def halt(self) -> None:
        """Stop the focuser where it is."""
        with self._ascom():
            self.model.halt()

    async def set_temp_comp(self, on: bool) -> None:
        """Switch temperature compensation; the simulated focuser has none.

        Raises
        ------
        DeviceNotImplementedError
            When ``on`` is True.
        """
        with self._ascom():
            self.model.set_temp_comp(on)
