"""ASCOM Alpaca HTTP server for the simulated observatory (aiohttp).

Devices: ``camera/0`` (ICameraV4), ``filterwheel/0`` (IFilterWheelV3), ``telescope/0``
(ITelescopeV4), ``safetymonitor/0`` (ISafetyMonitorV3) and, when configured, ``dome/0``
(IDomeV3), ``observingconditions/0`` (IObservingConditionsV2), ``covercalibrator/0``
(ICoverCalibratorV2) and ``focuser/0`` (IFocuserV4) under ``/api/v1/``, plus the management
API, minimal setup pages, and a non-Alpaca control API under ``/sim/v1/``.

Protocol rules followed (Alpaca API v1):

* GET query keys are matched case-insensitively; PUT form keys are case-sensitive. A missing
  (or wrongly cased) required PUT key, or a value that does not parse, is HTTP 400 with a
  plain-text message naming the key.
* An unknown device type, device number or member is HTTP 404 (the spec allows 400 or 404;
  404 tells a client the path, not the content, is wrong). A known member with the wrong
  HTTP method is HTTP 405.
* ``ClientTransactionID`` is echoed (0 when missing or not a uint32);
  ``ServerTransactionID`` increases on every Alpaca reply, server-wide.
* Device errors are HTTP 200 with ``ErrorNumber``/``ErrorMessage``.
* ``imagearray`` answers ImageBytes when the Accept header includes
  ``application/imagebytes``, else JSON; both are built in worker threads and streamed in
  chunks with a Content-Length, so a 61-megapixel download never stalls other devices.

Control API (JSON bodies): ``PUT/DELETE/GET /sim/v1/{type}/{n}/fault`` sets, clears or lists
the device's fault (see `obsctl.simulators.faults`), ``PUT /sim/v1/safetymonitor/0/safe``
``{"safe": bool}``, ``PUT /sim/v1/observingconditions/0/readings`` ``{"rain_rate_mm_h":
2.5, ...}`` (fields of `obsctl.devices.WeatherReadings` but the average period; null removes
the sensor) and ``PUT /sim/v1/observingconditions/0/stalled`` ``{"stalled": bool}``,
``PUT /sim/v1/camera/0/flatpanel`` ``{"on": bool}`` and
``GET /sim/v1/camera/0/truth``: ``{"stars": [{id, ra_deg, dec_deg, mag, x, y, flux_e, ...},
...], "galaxies": [{id, ..., x, y, r_eff_px, ..., flux_e}, ...], "trail": {x0, y0, x1, y1,
flux_e_per_px, ...} or null, "sky": {band, airmass, ..., seeing_arcsec, sky_e_s_px} or null,
"cosmic_count": n, "hot_pixel_count": n, "saturated_px": n, "bad_columns": [{x, y_start,
kind, response, dark_factor}, ...]}`` for the ready image (the columns of
`obsctl.simulators.render.RenderResult`: star and galaxy x, y zero-based in the image, trail
and bad columns in unbinned sensor pixels; empty lists and nulls when there is none).
"""

from __future__ import annotations

import asyncio
import html
import inspect
import itertools
import logging
import math
import struct
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import orjson
from aiohttp import web
from numpy.typing import NDArray

from obsctl.clock import Clock
from obsctl.config import TelescopeConfig
from obsctl.coords import j2000_to_jnow, jnow_to_j2000
from obsctl.simulators.camera_model import READOUT_MODES, CameraModel
from obsctl.simulators.covercalibrator_model import CoverCalibratorModel
from obsctl.simulators.dome_model import DomeModel
from obsctl.simulators.faults import Fault, FaultInjector
from obsctl.simulators.filterwheel_model import FilterWheelModel
from obsctl.simulators.focuser_model import FocuserModel
from obsctl.simulators.models import (
    INVALID_VALUE,
    NOT_IMPLEMENTED,
    VALUE_NOT_SET,
    AscomError,
    ConnectableModel,
)
from obsctl.simulators.mount_model import MountModel
from obsctl.simulators.quirks import Quirks
from obsctl.simulators.safety_model import SafetyMonitorModel
from obsctl.simulators.weather_model import ABSENT_SENSORS, SENSORS, WeatherModel

if TYPE_CHECKING:
    from obsctl.simulators.observatory import SimulatedObservatory

__all__ = ["MANUFACTURER", "SERVER_NAME", "AlpacaServer"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=ConnectableModel)

#: ``ServerName`` in the management description: how obsctl recognises its own simulators.
SERVER_NAME = "obsctl simulators"
#: ``Manufacturer`` in the management description.
MANUFACTURER = "obsctl"

_IMAGEBYTES = "application/imagebytes"
_IMAGEBYTES_HEADER = struct.Struct("<11i")
_ELEMENT_INT32 = 2
_ELEMENT_UINT16 = 8
_CHUNK_BYTES = 2 * 1024 * 1024
_THROTTLE_TICK_S = 0.05
_UINT32_MAX = 2**32 - 1

try:
    _VERSION = metadata.version("obsctl")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    _VERSION = "0.0.0"


class _BadRequest(Exception):
    """A malformed request: HTTP 400 with the message as plain text.

    Parameters
    ----------
    message : str
        What is wrong.
    key : str or None
        The parameter at fault, for the ``status_422`` quirk's JSON detail.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# --- request parameters ----------------------------------------------------------------


class _Params:
    """Request parameters: case-insensitive keys for GET, case-sensitive for PUT."""

    def __init__(self, values: Mapping[str, str], *, case_sensitive: bool) -> None:
        self._case_sensitive = case_sensitive
        self._values: dict[str, str] = {}
        for key, value in values.items():
            self._values.setdefault(key if case_sensitive else key.lower(), value)

    def get(self, key: str) -> str | None:
        return self._values.get(key if self._case_sensitive else key.lower())

    def text(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            how = " (PUT parameter names are case-sensitive)" if self._case_sensitive else ""
            raise _BadRequest(f"missing parameter {key}{how}", key)
        return value

    def integer(self, key: str) -> int:
        text = self.text(key)
        try:
            return int(text.strip())
        except ValueError:
            raise _BadRequest(f"parameter {key}={text!r} is not an integer", key) from None

    def number(self, key: str) -> float:
        text = self.text(key)
        try:
            value = float(text.strip())
        except ValueError:
            raise _BadRequest(f"parameter {key}={text!r} is not a number", key) from None
        if not math.isfinite(value):
            raise _BadRequest(f"parameter {key}={text!r} is not a finite number", key)
        return value

    def boolean(self, key: str) -> bool:
        text = self.text(key).strip().lower()
        if text == "true":
            return True
        if text == "false":
            return False
        raise _BadRequest(f"parameter {key}={text!r} is not True or False", key)

    def transaction_id(self) -> int:
        text = self.get("ClientTransactionID")
        try:
            value = int(text) if text is not None else 0
        except ValueError:
            return 0
        return value if 0 <= value <= _UINT32_MAX else 0


# --- member tables ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Member(Generic[M]):
    get: Callable[[M, _Params], object] | None = None
    put: Callable[[M, _Params], object] | None = None
    needs_connection: bool = True


def _not_implemented(name: str) -> Callable[[Any, _Params], object]:
    def fail(_model: Any, _params: _Params) -> object:
        raise AscomError(NOT_IMPLEMENTED, f"{name} is not implemented by this simulator")

    return fail


def _ni_property(name: str, *, writable: bool = False) -> _Member[Any]:
    fail = _not_implemented(name)
    return _Member(get=fail, put=fail if writable else None)


def _ni_method(name: str) -> _Member[Any]:
    return _Member(put=_not_implemented(name))


def _const(value: object) -> _Member[Any]:
    return _Member(get=lambda _m, _p: value)


# ASCOM SensorType: 0 monochrome, 2 RGGB, with BayerOffsetX/Y giving the column and row of
# the pattern's red pixel: each of the four 2 x 2 orders is RGGB at some offset.
_SENSOR_MONOCHROME = 0
_SENSOR_RGGB = 2
_BAYER_OFFSETS: dict[str, tuple[int, int]] = {
    "RGGB": (0, 0),
    "GRBG": (1, 0),
    "GBRG": (0, 1),
    "BGGR": (1, 1),
}


def _sensor_type(camera: CameraModel) -> int:
    return _SENSOR_MONOCHROME if camera.config.bayer_pattern is None else _SENSOR_RGGB


def _bayer_offset(camera: CameraModel, name: str) -> tuple[int, int]:
    """``(BayerOffsetX, BayerOffsetY)``; not implemented for a monochrome sensor (ASCOM)."""
    pattern = camera.config.bayer_pattern
    if pattern is None:
        raise AscomError(NOT_IMPLEMENTED, f"{name} is not implemented by a monochrome camera")
    return _BAYER_OFFSETS[pattern]


def _camera_members(telescope: TelescopeConfig, quirks: Quirks) -> dict[str, _Member[CameraModel]]:
    def start_exposure(c: CameraModel, p: _Params) -> None:
        duration = p.number("Duration")
        light = p.boolean("Light")
        c.start_exposure(duration, light)

    def set_attr(attr: str, key: str) -> Callable[[CameraModel, _Params], None]:
        return lambda c, p: setattr(c, attr, p.integer(key))

    m: dict[str, _Member[CameraModel]] = {
        "bayeroffsetx": _Member(get=lambda c, p: _bayer_offset(c, "BayerOffsetX")[0]),
        "bayeroffsety": _Member(get=lambda c, p: _bayer_offset(c, "BayerOffsetY")[1]),
        "binx": _Member(get=lambda c, p: c.bin_x, put=lambda c, p: c.set_bin_x(p.integer("BinX"))),
        "biny": _Member(get=lambda c, p: c.bin_y, put=lambda c, p: c.set_bin_y(p.integer("BinY"))),
        "camerastate": _Member(get=lambda c, p: int(c.state)),
        "cameraxsize": _Member(get=lambda c, p: c.config.width_px),
        "cameraysize": _Member(get=lambda c, p: c.config.height_px),
        "canabortexposure": _const(True),
        "canasymmetricbin": _const(True),
        "canfastreadout": _const(False),
        "cangetcoolerpower": _const(True),
        "canpulseguide": _const(False),
        "cansetccdtemperature": _const(True),
        "canstopexposure": _const(True),
        "ccdtemperature": _Member(get=lambda c, p: c.ccd_temperature_c),
        "cooleron": _Member(
            get=lambda c, p: c.cooler_on, put=lambda c, p: c.set_cooler_on(p.boolean("CoolerOn"))
        ),
        "coolerpower": _Member(get=lambda c, p: c.cooler_power_pct),
        "electronsperadu": _Member(get=lambda c, p: c.electrons_per_adu),
        "exposuremax": _Member(get=lambda c, p: c.config.exposure_max_s),
        "exposuremin": _Member(get=lambda c, p: c.config.exposure_min_s),
        "exposureresolution": _const(1e-6),
        "fastreadout": _ni_property("FastReadout", writable=True),
        "fullwellcapacity": _Member(get=lambda c, p: c.config.full_well_e),
        "gain": _Member(get=lambda c, p: c.gain, put=lambda c, p: c.set_gain(p.integer("Gain"))),
        "gainmax": _Member(get=lambda c, p: c.config.gain_max),
        "gainmin": _Member(get=lambda c, p: c.config.gain_min),
        "gains": _ni_property("Gains"),
        "hasshutter": _const(True),
        "heatsinktemperature": _Member(get=lambda c, p: c.config.ambient_c),
        "imagearray": _Member(get=lambda c, p: c.image),  # served by `_image_reply`
        "imagearrayvariant": _ni_property("ImageArrayVariant"),
        "imageready": _Member(get=lambda c, p: c.image_ready),
        "ispulseguiding": _ni_property("IsPulseGuiding"),
        "lastexposureduration": _Member(get=lambda c, p: c.last_exposure.duration_s),
        "lastexposurestarttime": _Member(
            get=lambda c, p: quirks.timestamp(c.last_exposure.start_time)
        ),
        "maxadu": _Member(get=lambda c, p: c.config.max_adu),
        "maxbinx": _Member(get=lambda c, p: c.config.max_bin),
        "maxbiny": _Member(get=lambda c, p: c.config.max_bin),
        "numx": _Member(get=lambda c, p: c.num_x, put=set_attr("num_x", "NumX")),
        "numy": _Member(get=lambda c, p: c.num_y, put=set_attr("num_y", "NumY")),
        "offset": _Member(
            get=lambda c, p: c.offset, put=lambda c, p: c.set_offset(p.integer("Offset"))
        ),
        "offsetmax": _Member(get=lambda c, p: c.config.offset_max),
        "offsetmin": _Member(get=lambda c, p: c.config.offset_min),
        "offsets": _ni_property("Offsets"),
        "percentcompleted": _Member(get=lambda c, p: round(c.percent_completed)),
        "pixelsizex": _Member(get=lambda c, p: c.config.pixel_size_um),
        "pixelsizey": _Member(get=lambda c, p: c.config.pixel_size_um),
        "readoutmode": _Member(
            get=lambda c, p: c.readout_mode,
            put=lambda c, p: c.set_readout_mode(p.integer("ReadoutMode")),
        ),
        "readoutmodes": _const(list(READOUT_MODES)),
        "sensorname": _Member(get=lambda c, p: c.config.sensor_name),
        "sensortype": _Member(get=lambda c, p: _sensor_type(c)),
        "setccdtemperature": _Member(
            get=lambda c, p: c.set_point_c,
            put=lambda c, p: c.set_set_point_c(p.number("SetCCDTemperature")),
        ),
        "startx": _Member(get=lambda c, p: c.start_x, put=set_attr("start_x", "StartX")),
        "starty": _Member(get=lambda c, p: c.start_y, put=set_attr("start_y", "StartY")),
        "subexposureduration": _ni_property("SubExposureDuration", writable=True),
        "abortexposure": _Member(put=lambda c, p: c.abort_exposure()),
        "pulseguide": _ni_method("PulseGuide"),
        "startexposure": _Member(put=start_exposure),
        "stopexposure": _Member(put=lambda c, p: c.stop_exposure()),
    }
    return m


def _records(table: NDArray[np.void]) -> list[dict[str, object]]:
    """Return a structured array as JSON-ready rows of plain Python values."""
    names = table.dtype.names or ()
    return [{name: row[name].item() for name in names} for row in table]


def _filterwheel_members() -> dict[str, _Member[FilterWheelModel]]:
    return {
        "focusoffsets": _Member(get=lambda w, p: w.focus_offsets),
        "names": _Member(get=lambda w, p: w.names),
        "position": _Member(
            get=lambda w, p: w.position, put=lambda w, p: w.move(p.integer("Position"))
        ),
    }


def _safety_members() -> dict[str, _Member[SafetyMonitorModel]]:
    # ASCOM: IsSafe answers False (not an error) while disconnected.
    return {"issafe": _Member(get=lambda s, p: s.is_safe, needs_connection=False)}


def _dome_members() -> dict[str, _Member[DomeModel]]:
    def set_slaved(_d: DomeModel, p: _Params) -> None:
        # CanSlave is False: ASCOM lets Slaved be set False, and True is NotImplemented.
        if p.boolean("Slaved"):
            raise AscomError(NOT_IMPLEMENTED, "this dome cannot slave itself to the telescope")

    return {
        "altitude": _ni_property("Altitude"),
        "athome": _const(False),
        "atpark": _Member(get=lambda d, p: d.at_park),
        "azimuth": _Member(get=lambda d, p: d.azimuth_deg),
        "canfindhome": _const(False),
        "canpark": _Member(get=lambda d, p: d.rotates),
        "cansetaltitude": _const(False),
        "cansetazimuth": _Member(get=lambda d, p: d.rotates),
        "cansetpark": _const(False),
        "cansetshutter": _const(True),
        "canslave": _const(False),
        "cansyncazimuth": _const(False),
        "shutterstatus": _Member(get=lambda d, p: int(d.shutter_state)),
        "slaved": _Member(get=lambda d, p: False, put=set_slaved),
        "slewing": _Member(get=lambda d, p: d.slewing),
        "abortslew": _Member(put=lambda d, p: d.abort_slew()),
        "closeshutter": _Member(put=lambda d, p: d.close_shutter()),
        "findhome": _ni_method("FindHome"),
        "openshutter": _Member(put=lambda d, p: d.open_shutter()),
        "park": _Member(put=lambda d, p: d.park()),
        "setpark": _ni_method("SetPark"),
        "slewtoaltitude": _ni_method("SlewToAltitude"),
        "slewtoazimuth": _Member(put=lambda d, p: d.slew_to_azimuth(p.number("Azimuth"))),
        "synctoazimuth": _ni_method("SyncToAzimuth"),
    }


def _cover_calibrator_members() -> dict[str, _Member[CoverCalibratorModel]]:
    return {
        "brightness": _Member(get=lambda c, p: c.brightness),
        "calibratorchanging": _Member(get=lambda c, p: c.calibrator_changing),
        "calibratorstate": _Member(get=lambda c, p: int(c.calibrator_state)),
        "covermoving": _Member(get=lambda c, p: c.cover_moving),
        "coverstate": _Member(get=lambda c, p: int(c.cover_state)),
        "maxbrightness": _Member(get=lambda c, p: c.config.max_brightness),
        "calibratoroff": _Member(put=lambda c, p: c.calibrator_off()),
        "calibratoron": _Member(put=lambda c, p: c.calibrator_on(p.integer("Brightness"))),
        "closecover": _Member(put=lambda c, p: c.close_cover()),
        "haltcover": _Member(put=lambda c, p: c.halt_cover()),
        "opencover": _Member(put=lambda c, p: c.open_cover()),
    }


def _focuser_members() -> dict[str, _Member[FocuserModel]]:
    return {
        "absolute": _const(True),
        "ismoving": _Member(get=lambda f, p: f.is_moving),
        "maxincrement": _Member(get=lambda f, p: f.config.max_increment),
        "maxstep": _Member(get=lambda f, p: f.config.max_step),
        "position": _Member(get=lambda f, p: f.position),
        "stepsize": _Member(get=lambda f, p: f.config.step_size_um),
        "tempcomp": _Member(
            get=lambda f, p: f.temp_comp, put=lambda f, p: f.set_temp_comp(p.boolean("TempComp"))
        ),
        "tempcompavailable": _Member(get=lambda f, p: f.temp_comp_available),
        "temperature": _Member(get=lambda f, p: f.temperature_c),
        "halt": _Member(put=lambda f, p: f.halt()),
        "move": _Member(put=lambda f, p: f.move(p.integer("Position"))),
    }


def _weather_members() -> dict[str, _Member[WeatherModel]]:
    def set_average_period(_w: WeatherModel, p: _Params) -> None:
        # The values are instantaneous; ASCOM requires 0 to be accepted and allows refusing
        # any other period.
        period = p.number("AveragePeriod")
        if period != 0.0:
            raise AscomError(INVALID_VALUE, f"AveragePeriod {period:g} h: only 0 is supported")

    def sensor(field: str) -> _Member[WeatherModel]:
        return _Member(get=lambda w, p: w.value(field))

    members: dict[str, _Member[WeatherModel]] = {
        name.lower(): sensor(field) for name, field in SENSORS.items()
    }
    members.update({name.lower(): _ni_property(name) for name in ABSENT_SENSORS})
    members.update(
        {
            "averageperiod": _Member(get=lambda w, p: 0.0, put=set_average_period),
            "refresh": _ni_method("Refresh"),
            "sensordescription": _Member(
                get=lambda w, p: w.sensor_description(p.text("SensorName"))
            ),
            "timesincelastupdate": _Member(
                get=lambda w, p: w.time_since_update_s(p.text("SensorName"))
            ),
        }
    )
    return members


def _axis(p: _Params) -> int:
    axis = p.integer("Axis")
    if axis not in (0, 1, 2):
        raise AscomError(INVALID_VALUE, f"Axis {axis} is not 0, 1 or 2")
    return axis


async def _wait_slew(mount: MountModel) -> None:
    while mount.slewing:
        await asyncio.sleep(0.01)


def _telescope_members(
    telescope: TelescopeConfig, quirks: Quirks, *, topocentric: bool = False
) -> dict[str, _Member[MountModel]]:
    """Return the ITelescopeV4 members; ``topocentric``: RA/Dec on the wire are of date.

    The model works in J2000; a topocentric mount converts at this boundary, as a real one
    converts for its motors.
    """
    aperture_m = telescope.aperture_mm / 1000.0
    system = 0 if "equatorial_other" in quirks else (1 if topocentric else 2)
    # The target of a topocentric mount, as sent (JNow RA hours, Dec degrees).
    wire_target: dict[str, float] = {}

    def to_wire(m: MountModel, ra_deg: float, dec_deg: float) -> tuple[float, float]:
        return j2000_to_jnow(ra_deg, dec_deg, m.utc_now) if topocentric else (ra_deg, dec_deg)

    def from_wire(m: MountModel, ra_h: float, dec_deg: float) -> tuple[float, float]:
        """J2000 degrees of wire coordinates, range-checked as sent (not after converting)."""
        if not topocentric:
            return ra_h * 15.0, dec_deg
        if not (0.0 <= ra_h < 24.0 and -90.0 <= dec_deg <= 90.0):
            raise AscomError(INVALID_VALUE, f"RA {ra_h} h / Dec {dec_deg} deg out of range")
        return jnow_to_j2000(ra_h * 15.0, dec_deg, m.utc_now)

    def wire_pointing(m: MountModel) -> tuple[float, float]:
        pointing = m.pointing()
        ra_deg, dec_deg = to_wire(m, pointing.ra_deg, pointing.dec_deg)
        return ra_deg / 15.0, dec_deg

    def radec_params(m: MountModel, p: _Params) -> tuple[float, float]:
        return from_wire(m, p.number("RightAscension"), p.number("Declination"))

    def target_of(m: MountModel) -> tuple[float, float]:
        if "ra" not in wire_target or "dec" not in wire_target:
            raise AscomError(VALUE_NOT_SET, "the target has not been set")
        return from_wire(m, wire_target["ra"], wire_target["dec"])

    def get_target(key: str, model_value: Callable[[MountModel], float]) -> Any:
        def get(m: MountModel, _p: _Params) -> float:
            if not topocentric:
                return model_value(m)
            if key not in wire_target:
                raise AscomError(VALUE_NOT_SET, f"the target {key} has not been set")
            return wire_target[key]

        return get

    def set_target_ra(m: MountModel, p: _Params) -> None:
        ra_h = p.number("TargetRightAscension")
        if not topocentric:
            m.set_target_ra_deg(ra_h * 15.0)
        elif not 0.0 <= ra_h < 24.0:
            raise AscomError(INVALID_VALUE, f"TargetRightAscension {ra_h} out of range")
        else:
            wire_target["ra"] = ra_h

    def set_target_dec(m: MountModel, p: _Params) -> None:
        dec = p.number("TargetDeclination")
        if not topocentric:
            m.set_target_dec_deg(dec)
        elif not -90.0 <= dec <= 90.0:
            raise AscomError(INVALID_VALUE, f"TargetDeclination {dec} out of range")
        else:
            wire_target["dec"] = dec

    def slew_target(m: MountModel) -> None:
        if topocentric:
            m.slew_to_radec(*target_of(m))
        else:
            m.slew_to_target()

    def set_tracking_rate(_m: MountModel, p: _Params) -> None:
        if p.integer("TrackingRate") != 0:
            raise AscomError(INVALID_VALUE, "only sidereal tracking (0) is supported")

    def slew_radec(m: MountModel, p: _Params) -> None:
        m.slew_to_radec(*radec_params(m, p))

    def slew_altaz(m: MountModel, p: _Params) -> None:
        m.slew_to_altaz(p.number("Altitude"), p.number("Azimuth"))

    async def slew_radec_sync(m: MountModel, p: _Params) -> None:
        slew_radec(m, p)
        await _wait_slew(m)

    async def slew_altaz_sync(m: MountModel, p: _Params) -> None:
        slew_altaz(m, p)
        await _wait_slew(m)

    async def slew_target_sync(m: MountModel, _p: _Params) -> None:
        slew_target(m)
        await _wait_slew(m)

    def destination(m: MountModel, p: _Params) -> int:
        return int(m.destination_side_of_pier(*radec_params(m, p)))

    def axis_rates(_m: MountModel, p: _Params) -> list[object]:
        _axis(p)
        return []  # MoveAxis is not simulated: no rates

    def can_move_axis(_m: MountModel, p: _Params) -> bool:
        _axis(p)
        return False

    def sync_target(m: MountModel, _p: _Params) -> None:
        if topocentric:
            m.sync_to_radec(*target_of(m))
        else:
            m.sync_to_radec(m.target_ra_deg, m.target_dec_deg)

    return {
        "alignmentmode": _const(2),  # algGermanPolar
        "altitude": _Member(get=lambda m, p: m.pointing().alt_deg),
        "aperturearea": _const(math.pi * (aperture_m / 2.0) ** 2),
        "aperturediameter": _const(aperture_m),
        "athome": _const(False),
        "atpark": _Member(get=lambda m, p: m.at_park),
        "axisrates": _Member(get=axis_rates),
        "azimuth": _Member(get=lambda m, p: m.pointing().az_deg),
        "canfindhome": _const(False),
        "canmoveaxis": _Member(get=can_move_axis),
        "canpark": _const(True),
        "canpulseguide": _const(True),
        "cansetdeclinationrate": _const(False),
        "cansetguiderates": _const(False),
        "cansetpark": _const(False),
        "cansetpierside": _const(False),
        "cansetrightascensionrate": _const(False),
        "cansettracking": _const(True),
        "canslew": _const(True),
        "canslewaltaz": _const(True),
        "canslewaltazasync": _const(True),
        "canslewasync": _const(True),
        "cansync": _const(True),
        "cansyncaltaz": _const(False),
        "canunpark": _const(True),
        "declination": _Member(get=lambda m, p: wire_pointing(m)[1]),
        "declinationrate": _Member(
            get=lambda m, p: 0.0, put=_not_implemented("DeclinationRate write")
        ),
        "destinationsideofpier": _Member(get=destination),
        "doesrefraction": _Member(
            get=lambda m, p: False, put=_not_implemented("DoesRefraction write")
        ),
        "equatorialsystem": _const(system),  # equTopocentric 1, equJ2000 2
        "focallength": _const(telescope.focal_length_mm / 1000.0),
        # ASCOM gives guide rates in degrees per second; CanSetGuideRates is false.
        "guideratedeclination": _Member(
            get=lambda m, p: m.guide_rate_dec_arcsec_s / 3600.0,
            put=_not_implemented("GuideRateDeclination write"),
        ),
        "guideraterightascension": _Member(
            get=lambda m, p: m.guide_rate_ra_arcsec_s / 3600.0,
            put=_not_implemented("GuideRateRightAscension write"),
        ),
        "ispulseguiding": _Member(get=lambda m, p: m.is_pulse_guiding),
        "rightascension": _Member(get=lambda m, p: wire_pointing(m)[0]),
        "rightascensionrate": _Member(
            get=lambda m, p: 0.0, put=_not_implemented("RightAscensionRate write")
        ),
        "sideofpier": _Member(
            get=lambda m, p: int(m.side_of_pier), put=_not_implemented("SideOfPier write")
        ),
        "siderealtime": _Member(get=lambda m, p: m.sidereal_time_h),
        "siteelevation": _Member(
            get=lambda m, p: m.site.elevation_m, put=_not_implemented("SiteElevation write")
        ),
        "sitelatitude": _Member(
            get=lambda m, p: m.site.latitude_deg, put=_not_implemented("SiteLatitude write")
        ),
        "sitelongitude": _Member(
            get=lambda m, p: m.site.longitude_deg, put=_not_implemented("SiteLongitude write")
        ),
        "slewing": _Member(get=lambda m, p: m.slewing),
        "slewsettletime": _Member(
            get=lambda m, p: round(m.config.settle_s), put=_not_implemented("SlewSettleTime write")
        ),
        "targetdeclination": _Member(
            get=get_target("dec", lambda m: m.target_dec_deg), put=set_target_dec
        ),
        "targetrightascension": _Member(
            get=get_target("ra", lambda m: m.target_ra_deg / 15.0), put=set_target_ra
        ),
        "tracking": _Member(
            get=lambda m, p: m.tracking, put=lambda m, p: m.set_tracking(p.boolean("Tracking"))
        ),
        "trackingrate": _Member(get=lambda m, p: 0, put=set_tracking_rate),  # driveSidereal
        "trackingrates": _const([0]),
        "utcdate": _Member(
            get=lambda m, p: quirks.timestamp(m.utc_now, zone_suffix="Z"),
            put=_not_implemented("UTCDate write"),
        ),
        "abortslew": _Member(put=lambda m, p: m.abort_slew()),
        "findhome": _ni_method("FindHome"),
        "moveaxis": _ni_method("MoveAxis"),
        "park": _Member(put=lambda m, p: m.park()),
        "pulseguide": _Member(
            put=lambda m, p: m.pulse_guide(p.integer("Direction"), p.integer("Duration"))
        ),
        "setpark": _ni_method("SetPark"),
        "slewtoaltaz": _Member(put=slew_altaz_sync),
        "slewtoaltazasync": _Member(put=slew_altaz),
        "slewtocoordinates": _Member(put=slew_radec_sync),
        "slewtocoordinatesasync": _Member(put=slew_radec),
        "slewtotarget": _Member(put=slew_target_sync),
        "slewtotargetasync": _Member(put=lambda m, p: slew_target(m)),
        "synctoaltaz": _ni_method("SyncToAltAz"),
        "synctocoordinates": _Member(put=lambda m, p: m.sync_to_radec(*radec_params(m, p))),
        "synctotarget": _Member(put=sync_target),
        "unpark": _Member(put=lambda m, p: m.unpark()),
    }


# --- devices ---------------------------------------------------------------------------


@dataclass
class _Device(Generic[M]):
    device_type: str  # lower-case, as in the URL
    ascom_type: str  # as in the management API
    number: int
    name: str
    interface_version: int
    model: M
    members: Mapping[str, _Member[M]]
    state_names: Sequence[tuple[str, str]]  # (DeviceState name, member)
    unique_id: str
    faults: FaultInjector
    clock: Clock
    description: str = field(default="")


@dataclass(frozen=True)
class _Interface:
    """What an ASCOM interface fixes for every device that implements it."""

    device_type: str  # lower-case, as in the URL
    ascom_type: str  # as in the management API
    version: int
    state_names: Sequence[tuple[str, str]]  # DeviceState: (ASCOM name, member it reads)


_CAMERA = _Interface(
    "camera",
    "Camera",
    version=4,
    state_names=(
        ("CameraState", "camerastate"),
        ("CCDTemperature", "ccdtemperature"),
        ("CoolerPower", "coolerpower"),
        ("HeatSinkTemperature", "heatsinktemperature"),
        ("ImageReady", "imageready"),
        ("PercentCompleted", "percentcompleted"),
    ),
)
_FILTER_WHEEL = _Interface(
    "filterwheel", "FilterWheel", version=3, state_names=(("Position", "position"),)
)
_TELESCOPE = _Interface(
    "telescope",
    "Telescope",
    version=4,
    state_names=(
        ("Altitude", "altitude"),
        ("AtHome", "athome"),
        ("AtPark", "atpark"),
        ("Azimuth", "azimuth"),
        ("Declination", "declination"),
        ("IsPulseGuiding", "ispulseguiding"),
        ("RightAscension", "rightascension"),
        ("SideOfPier", "sideofpier"),
        ("SiderealTime", "siderealtime"),
        ("Slewing", "slewing"),
        ("Tracking", "tracking"),
        ("UTCDate", "utcdate"),
    ),
)
_SAFETY_MONITOR = _Interface(
    "safetymonitor", "SafetyMonitor", version=3, state_names=(("IsSafe", "issafe"),)
)
_DOME = _Interface(
    "dome",
    "Dome",
    version=3,
    state_names=(
        ("Altitude", "altitude"),
        ("AtHome", "athome"),
        ("AtPark", "atpark"),
        ("Azimuth", "azimuth"),
        ("ShutterStatus", "shutterstatus"),
        ("Slewing", "slewing"),
    ),
)
_OBSERVING_CONDITIONS = _Interface(
    "observingconditions",
    "ObservingConditions",
    version=2,
    state_names=tuple(
        (name, name.lower())
        for name in sorted((*SENSORS, *ABSENT_SENSORS))  # ASCOM lists them alphabetically
    ),
)

_COVER_CALIBRATOR = _Interface(
    "covercalibrator",
    "CoverCalibrator",
    version=2,
    state_names=(
        ("Brightness", "brightness"),
        ("CalibratorChanging", "calibratorchanging"),
        ("CalibratorState", "calibratorstate"),
        ("CoverMoving", "covermoving"),
        ("CoverState", "coverstate"),
    ),
)
_FOCUSER = _Interface(
    "focuser",
    "Focuser",
    version=4,
    state_names=(
        ("IsMoving", "ismoving"),
        ("Position", "position"),
        ("Temperature", "temperature"),
    ),
)


_COMMON_UNCONNECTED = frozenset(
    {
        "connected",
        "connect",
        "disconnect",
        "connecting",
        "description",
        "driverinfo",
        "driverversion",
        "interfaceversion",
        "name",
        "supportedactions",
    }
)


#: Members ASCOM Platform 7 added to every interface, and to CoverCalibrator (V2); the
#: ``unknown_member_404`` quirk plays a server that predates them.
_PLATFORM7_MEMBERS = frozenset(
    {"connect", "disconnect", "connecting", "devicestate", "calibratorchanging", "covermoving"}
)


def _common_members(device: _Device[Any], quirks: Quirks) -> dict[str, _Member[Any]]:
    def set_connected(model: ConnectableModel, p: _Params) -> None:
        model.connected = p.boolean("Connected")
        log.info("%s %s", device.name, "connected" if model.connected else "disconnected")

    def connect(model: ConnectableModel, _p: _Params) -> None:
        model.connected = True

    def disconnect(model: ConnectableModel, _p: _Params) -> None:
        model.connected = False

    def device_state(_model: ConnectableModel, p: _Params) -> list[dict[str, object]]:
        values: list[dict[str, object]] = []
        for state_name, member in device.state_names:
            getter = device.members[member].get
            assert getter is not None
            try:
                values.append({"Name": state_name, "Value": getter(device.model, p)})
            except AscomError:
                continue  # ASCOM: omit what cannot be read
        values.append({"Name": "TimeStamp", "Value": quirks.timestamp(device.clock.now())})
        return values

    unconnected = {
        "connected": _Member(get=lambda m, p: m.connected, put=set_connected),
        "connect": _Member(put=connect),
        "disconnect": _Member(put=disconnect),
        "connecting": _const(False),
        "description": _const(device.description),
        "driverinfo": _const(f"obsctl simulated {device.ascom_type}, obsctl {_VERSION}"),
        "driverversion": _const(_VERSION),
        "interfaceversion": _const(device.interface_version),
        "name": _const(device.name),
        "supportedactions": _const([]),
    }
    members: dict[str, _Member[Any]] = {
        k: _Member(get=v.get, put=v.put, needs_connection=False) for k, v in unconnected.items()
    }
    members["devicestate"] = _Member(get=device_state)
    for method in ("action", "commandblind", "commandbool", "commandstring"):
        members[method] = _ni_method(method)
    return members


# --- image encoding --------------------------------------------------------------------


def _element_codes(image: NDArray[Any], max_adu: int) -> tuple[int, np.dtype[Any]]:
    """Return (TransmissionElementType, pixel dtype on the wire)."""
    if max_adu <= 65535 and image.dtype == np.uint16:
        return _ELEMENT_UINT16, np.dtype("<u2")
    return _ELEMENT_INT32, np.dtype("<i4")


def _imagebytes_header(
    *,
    error: int,
    client_id: int,
    server_id: int,
    image_type: int,
    transmission_type: int,
    dim1: int,
    dim2: int,
) -> bytes:
    rank = 2 if dim1 else 0
    return _IMAGEBYTES_HEADER.pack(
        1, error, client_id, server_id, 44, image_type, transmission_type, rank, dim1, dim2, 0
    )


def _column_blocks(image: NDArray[Any], dtype: Any) -> Iterator[tuple[int, int]]:
    """Column ranges of about `_CHUNK_BYTES` in the x-major stream."""
    num_y, num_x = image.shape
    columns = max(1, _CHUNK_BYTES // max(1, num_y * np.dtype(dtype).itemsize))
    for x0 in range(0, num_x, columns):
        yield x0, min(num_x, x0 + columns)


def _xmajor_bytes(image: NDArray[Any], dtype: Any, x0: int, x1: int) -> bytes:
    """Pixels of columns x0..x1 as ImageBytes wants them: index [x][y], y fastest."""
    return np.ascontiguousarray(image[:, x0:x1].T, dtype=dtype).tobytes()


def _encode_json_image(image: NDArray[Any], head: dict[str, object]) -> list[bytes]:
    """Encode a JSON ImageArray reply in x-major blocks (no full transposed copy)."""
    parts = [orjson.dumps(head)[:-1] + b',"Value":[']
    blocks = list(_column_blocks(image, np.int32))
    for i, (x0, x1) in enumerate(blocks):
        block = orjson.dumps(
            np.ascontiguousarray(image[:, x0:x1].T), option=orjson.OPT_SERIALIZE_NUMPY
        )
        parts.append(block[1:-1])
        if i < len(blocks) - 1:
            parts.append(b",")
    parts.append(b"]}")
    return parts


# --- the server ------------------------------------------------------------------------


class AlpacaServer:
    """The Alpaca HTTP server of one simulated observatory.

    Parameters
    ----------
    observatory : SimulatedObservatory
        The models the devices expose.
    host : str
        Address to bind (127.0.0.1 keeps it local).
    port : int
        TCP port; 0 picks a free one (see `port` after `start`).
    server_name : str
        ``ServerName`` in the management description.
    quirks : Quirks or None
        Deviations from the spec to show; None takes them from the observatory's
        ``[simulator] quirks``.
    topocentric : bool or None
        Whether the mount takes RA/Dec of date; None takes it from the observatory's
        ``[simulator.mount] equatorial_system``.
    """

    def __init__(
        self,
        observatory: SimulatedObservatory,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        server_name: str = SERVER_NAME,
        quirks: Quirks | None = None,
        topocentric: bool | None = None,
    ) -> None:
        self.observatory = observatory
        self.host = host
        self._requested_port = port
        self.server_name = server_name
        self.quirks = (
            quirks
            if quirks is not None
            else Quirks.from_config(observatory.config, observatory.site)
        )
        self.topocentric = (
            topocentric
            if topocentric is not None
            else observatory.config.mount.equatorial_system == "topocentric"
        )
        if self.quirks.flags:
            log.info("alpaca simulators with quirks: %s", ", ".join(sorted(self.quirks.flags)))
        self._transaction = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._devices: dict[tuple[str, int], _Device[Any]] = {}
        self._common: dict[tuple[str, int], dict[str, _Member[Any]]] = {}
        self._build_devices()
        self.app = self._build_app()

    # --- setup ---

    def _unique_id(self, device_type: str, number: int) -> str:
        key = f"obsctl-simulator/{self.observatory.site.name}/{device_type}/{number}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, key))

    def _register(
        self,
        interface: _Interface,
        model: M,
        members: Mapping[str, _Member[M]],
        *,
        name: str,
        description: str | None = None,
        on_fault_change: Callable[[Fault | None], None] | None = None,
    ) -> None:
        """Serve ``model`` as device 0 of its interface; the description defaults to the name."""
        number = 0
        device = _Device(
            device_type=interface.device_type,
            ascom_type=interface.ascom_type,
            number=number,
            name=name,
            interface_version=interface.version,
            model=model,
            members=members,
            state_names=interface.state_names,
            unique_id=self._unique_id(interface.device_type, number),
            faults=FaultInjector(interface.device_type, number, on_fault_change),
            clock=self.observatory.clock,
            description=name if description is None else description,
        )
        key = (device.device_type, device.number)
        self._devices[key] = device
        self._common[key] = _common_members(device, self.quirks)

    def _build_devices(self) -> None:
        obs = self.observatory
        camera = obs.camera

        def camera_fault_changed(fault: Fault | None) -> None:
            camera.hold_readout(fault is not None and fault.kind == "image_never_ready")

        self._register(
            _CAMERA,
            camera,
            _camera_members(obs.telescope, self.quirks),
            name=obs.config.camera.name,
            description=f"Simulated {obs.config.camera.sensor_name} camera",
            on_fault_change=camera_fault_changed,
        )
        self._register(
            _FILTER_WHEEL, obs.filter_wheel, _filterwheel_members(), name="Simulated filter wheel"
        )
        self._register(
            _TELESCOPE,
            obs.mount,
            _telescope_members(
                obs.telescope,
                self.quirks,
                topocentric=self.topocentric,
            ),
            name="Simulated mount",
            description="Simulated German equatorial mount",
        )
        self._register(
            _SAFETY_MONITOR, obs.safety_monitor, _safety_members(), name="Simulated safety monitor"
        )
        if obs.dome is not None:
            kind = "roll-off roof" if obs.dome.config.kind == "roll_off" else "rotating dome"
            self._register(_DOME, obs.dome, _dome_members(), name=f"Simulated {kind}")
        if obs.weather is not None:
            self._register(
                _OBSERVING_CONDITIONS,
                obs.weather,
                _weather_members(),
                name="Simulated weather station",
            )
        if obs.cover_calibrator is not None:
            covered = "with dust cover" if obs.cover_calibrator.config.has_cover else "alone"
            self._register(
                _COVER_CALIBRATOR,
                obs.cover_calibrator,
                _cover_calibrator_members(),
                name="Simulated flat panel",
                description=f"Simulated flat panel {covered}",
            )
        if obs.focuser is not None:
            self._register(
                _FOCUSER,
                obs.focuser,
                _focuser_members(),
                name="Simulated focuser",
                description="Simulated absolute stepper focuser",
            )

    def _build_app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/management/apiversions", self._api_versions)
        r.add_get("/management/v1/description", self._description)
        r.add_get("/management/v1/configureddevices", self._configured_devices)
        r.add_get("/setup", self._setup_page)
        r.add_get("/setup/v1/{device_type}/{device_number}/setup", self._device_setup_page)
        r.add_route("*", "/api/v1/{device_type}/{device_number}/{member}", self._api)
        r.add_get("/sim/v1/{device_type}/{device_number}/fault", self._get_fault)
        r.add_put("/sim/v1/{device_type}/{device_number}/fault", self._put_fault)
        r.add_delete("/sim/v1/{device_type}/{device_number}/fault", self._delete_fault)
        r.add_put("/sim/v1/safetymonitor/0/safe", self._put_safe)
        r.add_put("/sim/v1/observingconditions/0/readings", self._put_weather)
        r.add_put("/sim/v1/observingconditions/0/stalled", self._put_weather_stalled)
        r.add_put("/sim/v1/camera/0/flatpanel", self._put_flat_panel)
        r.add_get("/sim/v1/camera/0/truth", self._get_truth)
        return app

    # --- lifecycle ---

    @property
    def port(self) -> int:
        """The bound TCP port (valid after `start`)."""
        if self._port is None:
            raise RuntimeError("the Alpaca server is not running")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, for example ``http://127.0.0.1:11111``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving.

        Raises
        ------
        OSError
            When the address cannot be bound.
        """
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        log.info("alpaca simulators serving on %s", self.url)

    async def stop(self, *, close_models: bool = True) -> None:
        """Release hung requests, stop serving and stop the models' background work.

        ``close_models=False`` leaves the models running, for a server that shares them
        with another.
        """
        for device in self._devices.values():
            device.faults.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if close_models:
            await self.observatory.close()

    def faults(self, device_type: str, number: int = 0) -> FaultInjector:
        """Return the fault injector of one device.

        Parameters
        ----------
        device_type : str
            ``camera``, ``filterwheel``, ``telescope``, ``safetymonitor``, ``dome``,
            ``observingconditions``, ``covercalibrator`` or ``focuser`` (any case).
        number : int
            Device number.

        Raises
        ------
        KeyError
            When there is no such device.
        """
        return self._devices[(device_type.lower(), number)].faults

    # --- replies ---

    def _reply(
        self,
        client_id: int,
        *,
        value: object = None,
        has_value: bool = False,
        error: int = 0,
        message: str = "",
    ) -> web.Response:
        body: dict[str, object] = {}
        if has_value:
            body["Value"] = value
        client_id, server_id = self.quirks.transaction_ids(client_id, next(self._transaction))
        body["ClientTransactionID"] = client_id
        body["ServerTransactionID"] = server_id
        body["ErrorNumber"] = self.quirks.error_number(error) if error else 0
        body["ErrorMessage"] = message
        return web.Response(
            body=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
            content_type="application/json",
        )

    def _imagebytes_error(self, client_id: int, error: int, message: str) -> web.Response:
        client_id, server_id = self.quirks.transaction_ids(client_id, next(self._transaction))
        header = _imagebytes_header(
            error=self.quirks.error_number(error),
            client_id=client_id,
            server_id=server_id,
            image_type=0,
            transmission_type=0,
            dim1=0,
            dim2=0,
        )
        return web.Response(body=header + message.encode("utf-8"), content_type=_IMAGEBYTES)

    def _bad_request(self, request: web.Request, exc: _BadRequest) -> web.Response:
        if "status_422" not in self.quirks:
            return web.Response(status=400, text=str(exc))
        # As a framework that validates requests answers (FastAPI and the like).
        where = "query" if request.method == "GET" else "body"
        detail = [{"loc": [where, exc.key or ""], "msg": str(exc), "type": "value_error"}]
        return web.Response(
            status=422, body=orjson.dumps({"detail": detail}), content_type="application/json"
        )

    def _error(
        self, request: web.Request, member: str, client_id: int, error: int, message: str
    ) -> web.Response:
        if member == "imagearray" and _IMAGEBYTES in request.headers.get("Accept", "").lower():
            return self._imagebytes_error(client_id, error, message)
        return self._reply(client_id, error=error, message=message)

    # --- management and setup ---

    async def _api_versions(self, request: web.Request) -> web.Response:
        params = _Params(request.query, case_sensitive=False)
        return self._reply(params.transaction_id(), value=[1], has_value=True)

    async def _description(self, request: web.Request) -> web.Response:
        params = _Params(request.query, case_sensitive=False)
        value = {
            "ServerName": self.server_name,
            "Manufacturer": MANUFACTURER,
            "ManufacturerVersion": _VERSION,
            "Location": self.observatory.site.name,
        }
        return self._reply(params.transaction_id(), value=value, has_value=True)

    async def _configured_devices(self, request: web.Request) -> web.Response:
        params = _Params(request.query, case_sensitive=False)
        value = [
            {
                "DeviceName": d.name,
                "DeviceType": d.ascom_type,
                "DeviceNumber": d.number,
                "UniqueID": d.unique_id,
            }
            for d in self._devices.values()
        ]
        return self._reply(params.transaction_id(), value=value, has_value=True)

    async def _setup_page(self, request: web.Request) -> web.Response:
        items = "".join(
            f'<li><a href="/setup/v1/{d.device_type}/{d.number}/setup">'
            f"{html.escape(d.name)}</a> ({d.ascom_type} {d.number})</li>"
            for d in self._devices.values()
        )
        page = (
            f"<!doctype html><title>{html.escape(self.server_name)}</title>"
            f"<h1>{html.escape(self.server_name)}</h1><ul>{items}</ul>"
            "<p>The simulators are configured in the obsctl configuration file.</p>"
        )
        return web.Response(text=page, content_type="text/html")

    async def _device_setup_page(self, request: web.Request) -> web.Response:
        device = self._lookup(request)
        page = (
            f"<!doctype html><title>{html.escape(device.name)}</title>"
            f"<h1>{html.escape(device.name)}</h1><p>{html.escape(device.description)}</p>"
            "<p>Settings come from the obsctl configuration file; nothing to set here.</p>"
        )
        return web.Response(text=page, content_type="text/html")

    def _lookup(self, request: web.Request) -> _Device[Any]:
        device_type = request.match_info["device_type"].lower()
        try:
            number = int(request.match_info["device_number"])
        except ValueError:
            raise web.HTTPNotFound(text="device number must be an integer") from None
        device = self._devices.get((device_type, number))
        if device is None:
            raise web.HTTPNotFound(text=f"no device {device_type}/{number} on this server")
        return device

    # --- the device API ---

    async def _api(self, request: web.Request) -> web.StreamResponse:
        try:
            device = self._lookup(request)
        except web.HTTPNotFound as exc:
            if "missing_device_200" not in self.quirks:
                raise
            client_id = _Params(request.query, case_sensitive=False).transaction_id()
            return self._reply(client_id, error=NOT_IMPLEMENTED, message=exc.text or "")
        member_name = request.match_info["member"].lower()
        key = (device.device_type, device.number)
        member = self._common[key].get(member_name) or device.members.get(member_name)
        if member is None or (
            "unknown_member_404" in self.quirks and member_name in _PLATFORM7_MEMBERS
        ):
            raise web.HTTPNotFound(text=f"{device.device_type} has no member {member_name!r}")
        if request.method == "GET":
            params = _Params(request.query, case_sensitive=False)
            action = member.get
        elif request.method == "PUT":
            form = await request.post()
            params = _Params(
                {k: v for k, v in form.items() if isinstance(v, str)}, case_sensitive=True
            )
            action = member.put
        else:
            action = None
        if action is None:
            allowed = [m for m, f in (("GET", member.get), ("PUT", member.put)) if f is not None]
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        client_id = params.transaction_id()

        fault = device.faults.take(member_name)
        if fault is not None:
            early = await self._apply_fault(request, device, member_name, client_id, fault)
            if early is not None:
                return early
        try:
            if member.needs_connection:
                device.model.require_connected()
            if member_name == "imagearray" and request.method == "GET":
                return await self._image_reply(request, device.model, client_id, fault)
            result = action(device.model, params)
            if inspect.isawaitable(result):
                result = await result
        except _BadRequest as exc:
            return self._bad_request(request, exc)
        except AscomError as exc:
            log.debug("%s.%s: ASCOM error 0x%X %s", key, member_name, exc.number, exc.message)
            if exc.number == NOT_IMPLEMENTED and "unknown_member_404" in self.quirks:
                return web.Response(status=404, text=exc.message)
            if exc.number == INVALID_VALUE and "invalid_value_400" in self.quirks:
                return web.Response(status=400, text=exc.message)
            return self._error(request, member_name, client_id, exc.number, exc.message)
        if request.method == "GET":
            return self._reply(client_id, value=result, has_value=True)
        return self._reply(client_id)

    async def _apply_fault(
        self,
        request: web.Request,
        device: _Device[Any],
        member: str,
        client_id: int,
        fault: Fault,
    ) -> web.StreamResponse | None:
        """Apply a request-level fault; return a reply to send instead, or None to go on."""
        if fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        elif fault.kind == "hang":
            await device.faults.wait_released()
        elif fault.kind == "drop":
            if request.transport is not None:
                request.transport.close()
            # aiohttp cannot write this to the closed transport and drops it quietly.
            return web.Response(status=204)
        elif fault.kind == "http500":
            return web.Response(status=500, text=fault.message)
        elif fault.kind == "ascom_error":
            return self._error(request, member, client_id, fault.error_number, fault.message)
        return None

    async def _image_reply(
        self,
        request: web.Request,
        camera: CameraModel,
        client_id: int,
        fault: Fault | None,
    ) -> web.StreamResponse:
        image = camera.image  # AscomError 0x40B when none is ready
        client_id, server_id = self.quirks.transaction_ids(client_id, next(self._transaction))
        if _IMAGEBYTES in request.headers.get("Accept", "").lower():
            transmission, dtype = _element_codes(image, camera.config.max_adu)
            num_y, num_x = image.shape
            corrupt = fault is not None and fault.kind == "corrupt_image"
            header = _imagebytes_header(
                error=0,
                client_id=client_id,
                server_id=server_id,
                image_type=_ELEMENT_INT32,
                transmission_type=transmission,
                dim1=num_x + 1 if corrupt else num_x,
                dim2=num_y,
            )
            total = len(header) + image.size * np.dtype(dtype).itemsize

            async def imagebytes_parts() -> AsyncIterator[bytes]:
                yield header
                for x0, x1 in _column_blocks(image, dtype):
                    yield await asyncio.to_thread(_xmajor_bytes, image, dtype, x0, x1)

            return await self._stream(request, imagebytes_parts(), total, _IMAGEBYTES, fault)

        head = {
            "Type": 2,
            "Rank": 2,
            "ClientTransactionID": client_id,
            "ServerTransactionID": server_id,
            "ErrorNumber": 0,
            "ErrorMessage": "",
        }
        parts = await asyncio.to_thread(_encode_json_image, image, head)
        total = sum(len(p) for p in parts)
        if fault is not None and fault.kind == "corrupt_image":
            total //= 2  # the body stops mid-array: a complete HTTP reply, broken JSON

        async def json_parts() -> AsyncIterator[bytes]:
            for part in parts:
                yield part

        return await self._stream(request, json_parts(), total, "application/json", fault)

    async def _stream(
        self,
        request: web.Request,
        parts: AsyncIterator[bytes],
        total: int,
        content_type: str,
        fault: Fault | None,
    ) -> web.StreamResponse:
        """Stream ``total`` bytes of ``parts``, applying an image fault."""
        truncate = fault is not None and fault.kind == "truncate_image"
        rate = fault.rate_mb_s * 1e6 if fault is not None and fault.kind == "throttle_image" else 0
        limit = total // 2 if truncate else total
        piece = max(1024, int(rate * _THROTTLE_TICK_S)) if rate else _CHUNK_BYTES
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.content_length = total
        await response.prepare(request)
        sent = 0
        try:
            async for part in parts:
                view = memoryview(part)
                for i in range(0, len(view), piece):
                    chunk = view[i : min(i + piece, i + limit - sent)]
                    if not chunk:
                        break
                    await response.write(chunk)
                    sent += len(chunk)
                    if rate:
                        await asyncio.sleep(len(chunk) / rate)
                if sent >= limit:
                    break
        except ConnectionError:
            # The client gave up (its deadline, or a cancelled download): nothing to answer.
            log.debug("client left during an image download after %d bytes", sent)
            return response
        if truncate and request.transport is not None:
            # Close after the partial body: the client sees a short read, not an HTTP error.
            request.transport.close()
        return response

    # --- simulator control ---

    def _control_device(self, request: web.Request) -> _Device[Any]:
        return self._lookup(request)

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return data

    @staticmethod
    def _fault_list(injector: FaultInjector) -> web.Response:
        fault = injector.fault
        faults = [] if fault is None else [fault.to_dict() | {"remaining": injector.remaining}]
        return web.json_response(faults, dumps=lambda v: orjson.dumps(v).decode())

    async def _get_fault(self, request: web.Request) -> web.Response:
        return self._fault_list(self._control_device(request).faults)

    async def _put_fault(self, request: web.Request) -> web.Response:
        device = self._control_device(request)
        data = await self._json_body(request)
        try:
            fault = Fault.from_mapping(data)
        except (ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        device.faults.set(fault)
        return self._fault_list(device.faults)

    async def _delete_fault(self, request: web.Request) -> web.Response:
        device = self._control_device(request)
        device.faults.clear()
        return self._fault_list(device.faults)

    async def _put_safe(self, request: web.Request) -> web.Response:
        data = await self._json_body(request)
        safe = data.get("safe")
        if not isinstance(safe, bool):
            raise web.HTTPBadRequest(text='expected {"safe": true|false}')
        self.observatory.safety_monitor.set_safe(safe)
        return web.json_response({"safe": safe})

    def _weather(self) -> WeatherModel:
        weather = self.observatory.weather
        if weather is None:
            raise web.HTTPNotFound(text="no weather station is simulated ([simulator.weather])")
        return weather

    async def _put_weather(self, request: web.Request) -> web.Response:
        weather = self._weather()
        data = await self._json_body(request)
        for key, value in data.items():
            # bool is an int to Python, but true is no reading.
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if value is not None and not number:
                raise web.HTTPBadRequest(text=f"{key}: expected a number or null")
        try:
            weather.set_values(**data)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.json_response(weather.readings())

    async def _put_weather_stalled(self, request: web.Request) -> web.Response:
        weather = self._weather()
        data = await self._json_body(request)
        stalled = data.get("stalled")
        if not isinstance(stalled, bool):
            raise web.HTTPBadRequest(text='expected {"stalled": true|false}')
        weather.set_stalled(stalled)
        return web.json_response({"stalled": stalled})

    async def _put_flat_panel(self, request: web.Request) -> web.Response:
        data = await self._json_body(request)
        on = data.get("on")
        if not isinstance(on, bool):
            raise web.HTTPBadRequest(text='expected {"on": true|false}')
        self.observatory.camera.flat_panel_on = on
        return web.json_response({"on": on})

    async def _get_truth(self, request: web.Request) -> web.Response:
        truth = self.observatory.camera.last_truth
        body: dict[str, object] = {
            "stars": [],
            "galaxies": [],
            "trail": None,
            "sky": None,
            "cosmic_count": None,
            "hot_pixel_count": None,
            "saturated_px": None,
            "bad_columns": [],
        }
        if truth is not None:
            body = {
                "stars": _records(truth.stars),
                "galaxies": _records(truth.galaxies),
                "trail": None if truth.trail is None else asdict(truth.trail),
                "sky": None if truth.sky is None else asdict(truth.sky),
                "cosmic_count": truth.cosmic_count,
                "hot_pixel_count": len(truth.hot_pixels),
                "saturated_px": truth.saturated_px,
                "bad_columns": _records(truth.bad_columns),
            }
        return web.json_response(body, dumps=lambda v: orjson.dumps(v).decode())
