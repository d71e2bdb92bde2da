"""Configuration: TOML files validated into frozen pydantic models.

`load_config` is the one entry point. Every failure (missing file, TOML syntax, unknown key,
wrong type, unsupported version) becomes a `ConfigError` that names the file, the key path and
what was expected. Relative paths inside a config (the data directory) are relative to the
current working directory, so the packaged default config writes beside the user, not into
the installation.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import sys
import tomllib
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from obsctl.devices import ROLES
from obsctl.errors import ConfigError

__all__ = [
    "MAX_DOCUMENT_VALUES",
    "AlpacaDeviceConfig",
    "AutofocusConfig",
    "CalibrationConfig",
    "CentringConfig",
    "CommandSinkConfig",
    "Config",
    "DataConfig",
    "DeviceConfig",
    "DevicesConfig",
    "DifferenceConfig",
    "DomeConfig",
    "DriftCorrectionConfig",
    "HeaderText",
    "HookConfig",
    "MeridianFlipConfig",
    "MonitoredTargetConfig",
    "MonitoringConfig",
    "NightConfig",
    "NotEmpty",
    "NotificationsConfig",
    "PipelineConfig",
    "SafetyConfig",
    "SequencerConfig",
    "SerialDeviceConfig",
    "SerialSimulatorConfig",
    "ServerConfig",
    "SimulatedAsteroidConfig",
    "SimulatedCameraConfig",
    "SimulatedCloudsConfig",
    "SimulatedColourTermsConfig",
    "SimulatedCoverCalibratorConfig",
    "SimulatedDomeConfig",
    "SimulatedExtinctionConfig",
    "SimulatedFilterWheelConfig",
    "SimulatedFocuserConfig",
    "SimulatedMountConfig",
    "SimulatedSkyColourConfig",
    "SimulatedSkyConfig",
    "SimulatedTransientConfig",
    "SimulatedVariableConfig",
    "SimulatedWeatherConfig",
    "SimulatedZeroPointOffsetsConfig",
    "SimulatorConfig",
    "SimulatorDeviceConfig",
    "SiteConfig",
    "TelescopeConfig",
    "TransparencyConfig",
    "UsablePath",
    "WeatherChange",
    "WeatherConfig",
    "WeatherLimitConfig",
    "WeatherQuantity",
    "WeatherSensor",
    "WebhookSinkConfig",
    "brief_repr",
    "check_document_size",
    "cloud_extinction_mag",
    "default_config_path",
    "format_validation_error",
    "load_config",
    "read_toml",
]

log = logging.getLogger(__name__)

SUPPORTED_VERSIONS = (1,)

#: Largest clock speed of a simulation (simulated seconds per real second).
MAX_SPEED = 100_000.0
#: Most values (keys, list items, numbers, texts) in a configuration or plan document: far
#: more than any real one holds, few enough to validate in well under a second.
MAX_DOCUMENT_VALUES = 100_000
#: Problems a validation message lists; it says how many more there are.
MAX_PROBLEMS_SHOWN = 20

_T = TypeVar("_T")


class _Model(BaseModel):
    # TOML has inf and nan and JSON bodies may carry Infinity: a non-finite number would pass
    # every bound (nan compares false) and is stored as null, so none is accepted anywhere.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text cannot contain a NUL character")
    return value


def _usable_path(value: Path) -> Path:
    if "\x00" in str(value):
        raise ValueError("a path cannot contain a NUL character")
    return value


def _not_empty(value: tuple[_T, ...]) -> tuple[_T, ...]:
    # A validator rather than min_length: pydantic checks min_length against the items that
    # validated, and so adds a false "at least 1 item" problem whenever an item is invalid.
    if not value:
        raise ValueError("expected at least one item, got none")
    return value


#: A name written into FITS headers (of the site, telescope, targets and filters): any Unicode
#: (the database keeps it as given; FITS cards get its ASCII form, `obsctl.store.headers`),
#: of a length a person types.
HeaderText = Annotated[str, Field(max_length=200), AfterValidator(_no_nul)]
#: A file or folder path that the operating system can accept.
UsablePath = Annotated[Path, AfterValidator(_usable_path)]
#: Put on a tuple field (``Annotated[tuple[X, ...], NotEmpty]``) that needs one item or more.
NotEmpty = AfterValidator(_not_empty)


class SiteConfig(_Model):
    """Where the observatory is."""

    name: HeaderText = Field(min_length=1)
    latitude_deg: float = Field(ge=-90, le=90)
    longitude_deg: float = Field(ge=-180, le=180, description="east positive")
    elevation_m: float = Field(default=0.0, ge=-500, le=9000)
    horizon: UsablePath | None = Field(
        default=None,
        description="local horizon file: 'azimuth altitude' lines in degrees, as N.I.N.A. "
        "(.hrz) and Ekos write them (obsctl.night.horizon); targets behind it are not "
        "scheduled and the simulated camera sees no stars there. Relative to the working "
        "directory, like every path of the config; read when a night is planned",
    )
    # Two ranges that cannot overlap, so no rule between the fields is needed.
    min_alt_deg: float | None = Field(
        default=None,
        ge=0,
        le=60,
        description="[deg] the mount's lowest altitude, for every target of every plan",
    )
    max_alt_deg: float | None = Field(
        default=None,
        gt=60,
        le=90,
        description="[deg] the mount's highest altitude (the zenith hole of an alt-az or "
        "fork mount), for every target of every plan",
    )


class TelescopeConfig(_Model):
    """The optical tube, for headers and the approximate WCS."""

    name: HeaderText = "telescope"
    focal_length_mm: float = Field(gt=0, le=100_000)
    aperture_mm: float = Field(gt=0, le=50_000)
    observer: HeaderText = ""


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not (sep and host and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        raise ValueError("expected host:port, for example 192.0.2.10:11111")
    if not all(c.isascii() and (c.isalnum() or c in ".-[]:") for c in host):
        raise ValueError("expected host:port; the host is a name or an IP address")
    return value


class AlpacaDeviceConfig(_Model):
    """A device reached over ASCOM Alpaca (HTTP)."""

    driver: Literal["alpaca"]
    address: Annotated[str, AfterValidator(_host_port)] = Field(
        max_length=300, description="host:port"
    )
    device_number: int = Field(default=0, ge=0, le=2**32 - 1, description="Alpaca: uint32")
    timeout_s: float = Field(default=5.0, gt=0, le=3600, description="deadline of one control call")
    download_timeout_s: float = Field(
        default=120.0, gt=0, le=3600, description="deadline of a download"
    )
    connect_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="deadline of connecting"
    )
    equatorial_system: Literal["driver", "j2000", "topocentric"] = Field(
        default="driver",
        description="mount only: the coordinates it takes; driver: believe its "
        "EquatorialSystem (0, other, is taken as J2000 with a warning)",
    )


class SimulatorDeviceConfig(_Model):
    """A simulated device run inside the obsctl process, without HTTP."""

    driver: Literal["simulator"]


class SerialDeviceConfig(_Model):
    """A device on a serial line (RS-232, USB-serial, or serial over TCP), reached by pyserial."""

    driver: Literal["serial"]
    protocol: Literal["lx200", "qhycfw"] = Field(
        description="lx200: an LX200/OnStep mount; qhycfw: a QHY CFW filter wheel"
    )
    url: str = Field(
        min_length=1,
        max_length=1000,
        description="pyserial URL: /dev/ttyUSB0, socket://host:port, rfc2217://...",
    )
    baudrate: int = Field(default=9600, gt=0, le=10_000_000, description="bits per second")
    timeout_s: float = Field(default=2.0, gt=0, le=3600, description="deadline of one command")
    move_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="deadline of a filter move"
    )
    filter_names: tuple[HeaderText, ...] = Field(
        default=(), max_length=64, description="qhycfw: names by slot"
    )
    focus_offsets: tuple[Annotated[int, Field(ge=-1_000_000, le=1_000_000)], ...] = Field(
        default=(), max_length=64, description="qhycfw: steps by slot"
    )

    @model_validator(mode="after")
    def _filters_match(self) -> SerialDeviceConfig:
        if self.protocol != "qhycfw" and (self.filter_names or self.focus_offsets):
            raise ValueError("filter_names and focus_offsets apply to protocol 'qhycfw' only")
        if self.focus_offsets and len(self.focus_offsets) != len(self.filter_names):
            raise ValueError(
                f"focus_offsets has {len(self.focus_offsets)} entries but filter_names has "
                f"{len(self.filter_names)}; they must match"
            )
        return self


DeviceConfig = Annotated[
    AlpacaDeviceConfig | SimulatorDeviceConfig | SerialDeviceConfig, Field(discriminator="driver")
]

# The device role each serial protocol can serve.
_SERIAL_PROTOCOL_ROLES = {"lx200": "mount", "qhycfw": "filter_wheel"}


class DevicesConfig(_Model):
    """The devices of the observatory; only a camera is required."""

    camera: DeviceConfig
    filter_wheel: DeviceConfig | None = None
    mount: DeviceConfig | None = None
    safety_monitor: DeviceConfig | None = None
    dome: DeviceConfig | None = Field(default=None, description="a dome or a roll-off roof")
    weather: DeviceConfig | None = Field(
        default=None, description="a weather station (ASCOM ObservingConditions)"
    )
    cover_calibrator: DeviceConfig | None = Field(
        default=None, description="a flat panel with a dust cover (ASCOM CoverCalibrator)"
    )
    focuser: DeviceConfig | None = Field(default=None, description="a focuser (ASCOM Focuser)")

    @model_validator(mode="after")
    def _serial_protocol_suits_role(self) -> DevicesConfig:
        for role in ROLES:
            cfg = getattr(self, role)
            if (
                role != "mount"
                and isinstance(cfg, AlpacaDeviceConfig)
                and "equatorial_system" in cfg.model_fields_set
            ):
                raise ValueError(f"devices.{role}: equatorial_system applies to a mount only")
            if isinstance(cfg, SerialDeviceConfig):
                suits = _SERIAL_PROTOCOL_ROLES[cfg.protocol]
                if suits != role:
                    raise ValueError(
                        f"devices.{role}: serial protocol {cfg.protocol!r} drives a "
                        f"{suits.replace('_', ' ')}, not a {role.replace('_', ' ')}"
                    )
        return self


class DataConfig(_Model):
    """Where frames and the database live."""

    directory: UsablePath = Path("data")


#: A DNS name as a Host header carries it: dot-separated labels (underscores occur in local
#: names), lower case.
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def _allowed_host(value: str) -> str:
    """Return a host name or IP address as Host headers are compared: lower case, no brackets.

    A port, a scheme, a path or a wildcard is refused: no Host header could ever equal such an
    entry, so it would silently do nothing.
    """
    name = value.strip().lower().removesuffix(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    if len(name) > 253 or not _HOST_NAME.fullmatch(name):
        raise ValueError(
            "expected a host name or an IP address without port or scheme, "
            "for example obs.example.org or 192.0.2.10"
        )
    return name


def _is_loopback_host(host: str) -> bool:
    """Return whether ``host`` (a name or an IP address) is this machine's loopback."""
    name = host.strip().lower().removesuffix(".").removeprefix("[").removesuffix("]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class ServerConfig(_Model):
    """The daemon's HTTP server (control API and quick-look).

    Bound to loopback by default. Beyond loopback a token is required, and every request
    (reads, the event stream and the frame files included) must carry it.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    token: str | None = Field(
        default=None,
        description="secret for `Authorization: Bearer <token>` (the scheme in any case): "
        "mutating requests always need it, and beyond loopback every request does",
    )
    allowed_hosts: tuple[Annotated[str, AfterValidator(_allowed_host)], ...] = Field(
        default=(),
        max_length=64,
        description="names the Host header may carry besides the bound address (and, on "
        "loopback, localhost): this machine's DNS name, a reverse proxy's public name. "
        "Any other Host is refused, which stops DNS rebinding",
    )

    @property
    def loopback(self) -> bool:
        """Whether the server listens on a loopback address only."""
        return _is_loopback_host(self.host)

    @model_validator(mode="after")
    def _usable_token(self) -> ServerConfig:
        # Checked here rather than on the field: a field's error message quotes its value, and
        # the token is a secret.
        token = self.token
        if token is not None and not token.strip():
            raise ValueError("token: an empty or blank token would let anyone in; set a secret")
        if token is not None and not (token.isascii() and token.isprintable() and " " not in token):
            raise ValueError(
                "token: use printable ASCII without spaces (it travels in an HTTP header)"
            )
        if not self.loopback and token is None:
            raise ValueError(f"a token is required when the server binds to {self.host!r}")
        return self


StageName = Literal["calibrate", "photometry", "classify", "astrometry", "zeropoint", "difference"]
#: Catalogue bands a filter can be calibrated in (`obsctl.store.refcat.BANDS`).
BandName = Literal["U", "B", "V", "R", "I", "L", "u", "g", "r", "i", "z", "G", "BP", "RP"]
FailureAction = Literal["abort", "skip", "mark"]
_DEFAULT_ON_FAILURE: dict[StageName, FailureAction] = {
    "calibrate": "mark",  # no masters: measure the raw frame, flagged
    "photometry": "abort",  # nothing after it makes sense without sources
    "classify": "mark",  # unclassified sources are still measured, flagged
    "astrometry": "mark",  # keep the approximate WCS
    "zeropoint": "mark",
    "difference": "mark",  # the frame is measured; only its difference is missing
}


class PipelineConfig(_Model):
    """Per-frame processing: which stages run, in order, and what a stage failure does."""

    enabled: bool = True
    workers: int = Field(default=2, ge=1, le=64)
    # classify before astrometry and zeropoint: they must not fit cosmic rays and hot pixels.
    stages: tuple[StageName, ...] = Field(
        default=("calibrate", "photometry", "classify", "astrometry", "zeropoint", "difference"),
        max_length=6,
    )
    on_failure: dict[StageName, FailureAction] = Field(
        default_factory=lambda: dict(_DEFAULT_ON_FAILURE),
        description="abort: stop the frame; skip: go on; mark: go on and flag the frame",
    )
    reference_catalog: Literal["file", "synthetic"] = Field(
        default="file",
        description="file: the data directory's reference catalog (obsctl catalog import); "
        "synthetic: the simulators' sky, generated on demand",
    )
    read_noise_e: float = Field(default=3.5, ge=0, le=1000, description="for photometric errors")
    nominal_zero_point: dict[
        Annotated[str, Field(max_length=68)], Annotated[float, Field(ge=0, le=50)]
    ] = Field(
        default_factory=dict,
        max_length=64,
        description="clear-sky zero point per filter (mag, e-/s); transparency is measured "
        "against it, else against the night's best frame in that filter",
    )
    gain_e_per_adu: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="overrides the header's EGAIN/GAIN (for files from tools that omit it); "
        "a frame with neither is measured with 1 e-/ADU and flagged",
    )
    saturation_adu: float = Field(default=60000.0, gt=0, le=2**32)
    aperture_fwhm: tuple[Annotated[float, Field(gt=0, le=50)], ...] = Field(
        default=(1.0, 1.5, 2.0, 3.0),
        min_length=1,
        max_length=16,
        description="circular aperture radii in units of the frame's stellar FWHM",
    )
    main_aperture: int | None = Field(
        default=None,
        ge=0,
        le=15,
        description="index of aperture_fwhm reported as flux and mag; default: the 1.5 FWHM "
        "radius when listed, else the first",
    )
    psf_fit: Literal["all", "blended", "off"] = Field(
        default="blended",
        description="PSF-fitted fluxes (flux_psf) beside the aperture ones: every source "
        "(crowded fields, reprocessing; about 1.8x the photometry stage's time on a 4k frame "
        "of 4000 stars), blended groups only (the default: the live pipeline's budget), none",
    )
    fit_colour_term: Literal["auto"] | bool = Field(
        default="auto",
        description="fit each frame's colour term against the reference colours: auto when "
        "enough stars span enough colour; else the night's fitted term is held",
    )
    colour_terms: dict[
        Annotated[str, Field(max_length=68)], Annotated[float, Field(ge=-5, le=5)]
    ] = Field(
        default_factory=dict,
        max_length=64,
        description="colour term per filter (mag per mag of the reference colour), held when "
        "neither the frame nor the night's fit gives one",
    )
    classifier_model: UsablePath | None = Field(
        default=None,
        description="ONNX source classifier with obsctl's input spec (obsctl.classify.cutouts);"
        " default: the shipped model. Checked when the pipeline starts",
    )

    @property
    def main_aperture_index(self) -> int:
        """The index of the main aperture: `main_aperture`, else 1.5 FWHM, else the first."""
        if self.main_aperture is not None:
            return self.main_aperture
        return self.aperture_fwhm.index(1.5) if 1.5 in self.aperture_fwhm else 0

    @model_validator(mode="after")
    def _main_aperture_listed(self) -> PipelineConfig:
        if self.main_aperture is not None and self.main_aperture >= len(self.aperture_fwhm):
            raise ValueError(
                f"main_aperture {self.main_aperture} is not an index of aperture_fwhm "
                f"({len(self.aperture_fwhm)} radii)"
            )
        return self

    @model_validator(mode="after")
    def _stages_once(self) -> PipelineConfig:
        twice = sorted({s for s in self.stages if self.stages.count(s) > 1})
        if twice:
            raise ValueError(f"stages: {', '.join(twice)} listed more than once")
        return self


class CalibrationConfig(_Model):
    """Calibration masters: how they are built and which ones a frame may use."""

    max_age_days: float = Field(
        default=30, ge=0, le=36_500, description="[d] master's night to frame's"
    )
    temperature_tolerance_c: float = Field(
        default=2.0, ge=0, le=100, description="[C] sensor temperature"
    )
    method: Literal["median", "sigma"] = Field(
        default="sigma", description="median, or sigma-clipped mean around the median"
    )
    sigma: float = Field(
        default=3.0, gt=0, le=100, description="clipping threshold in std deviations"
    )
    tile_rows: int = Field(
        default=256, ge=1, le=100_000, description="rows of every frame in memory at once"
    )
    auto_build: bool = Field(
        default=True,
        description="build masters when a sequence that took calibration frames ends, then "
        "process again the night's light frames that lacked a master",
    )


class SequencerConfig(_Model):
    """How sequences run and how device faults are handled."""

    retries: int = Field(default=2, ge=0, le=20, description="retries before reconnecting")
    backoff_s: float = Field(
        default=2.0, ge=0, le=3600, description="[s] first wait between retries"
    )
    backoff_factor: float = Field(default=2.0, ge=1, le=10)
    reconnect: bool = True
    poll_s: float = Field(default=0.1, gt=0, le=60, description="[real s] device polling interval")
    readout_margin_s: float = Field(
        default=60.0, gt=0, le=3600, description="[s] time allowed after the exposure for readout"
    )
    slew_timeout_s: float = Field(
        default=300.0, gt=0, le=3600, description="[s] slew and settle, park"
    )
    filter_timeout_s: float = Field(default=60.0, gt=0, le=3600, description="[s] filter move")
    focuser_timeout_s: float = Field(default=120.0, gt=0, le=3600, description="[s] a focuser move")
    shutter_timeout_s: float = Field(
        default=300.0, gt=0, le=3600, description="[s] a dome shutter or roof opens or closes"
    )
    cover_timeout_s: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="[s] a telescope cover opens or closes, a flat panel's lamp settles",
    )
    command_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="[real s] one command beyond the driver's own deadline (abort, park, cooler)",
    )
    shutdown: Literal["abort", "finish"] = Field(
        default="abort", description="what to do with a running exposure at shutdown"
    )
    park_at_shutdown: bool = True
    reconnect_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="[s] first wait before connecting again a device that is down; doubles",
    )
    reconnect_max_s: float = Field(
        default=600.0, gt=0, le=86_400, description="[s] longest wait between reconnections"
    )
    recover_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="[s] a camera idle after AbortExposure, a mount stopped after AbortSlew",
    )


#: A weather station's sensors (the fields of `obsctl.devices.WeatherReadings`).
WeatherSensor = Literal[
    "cloud_cover_pct",
    "sky_temperature_c",
    "temperature_c",
    "dew_point_c",
    "humidity_pct",
    "wind_speed_m_s",
    "wind_gust_m_s",
    "rain_rate_mm_h",
    "sky_quality_mag_arcsec2",
]
#: What a weather limit can watch: a sensor, or a value derived from two.
WeatherQuantity = Literal[WeatherSensor, "sky_minus_ambient_c", "dew_margin_c"]


class WeatherLimitConfig(_Model):
    """One weather limit (`obsctl.acquisition.weather.WeatherLimit`).

    It trips at once, and clears once the value is back past it by ``hysteresis`` and has
    stayed there ``wait_min``.
    """

    quantity: WeatherQuantity = Field(
        description="a value of the station (units in the name); sky_minus_ambient_c and "
        "dew_margin_c are derived from its temperatures"
    )
    above: float | None = Field(default=None, ge=-1e6, le=1e6, description="unsafe above this")
    below: float | None = Field(default=None, ge=-1e6, le=1e6, description="unsafe below this")
    hysteresis: float = Field(default=0.0, ge=0, le=1e6, description="in the quantity's unit")
    wait_min: float = Field(
        default=0.0, ge=0, le=10_080, description="[min] clear this long before safe again"
    )

    @model_validator(mode="after")
    def _one_side(self) -> WeatherLimitConfig:
        if (self.above is None) == (self.below is None):
            raise ValueError(f"{self.quantity}: give exactly one of above and below")
        return self


#: Limits when the config gives none: rain at once, humidity in two grades, wind, dew,
#: cloud (a station lacking a sensor leaves its limits unwatched, and the log says so).
DEFAULT_WEATHER_LIMITS = (
    WeatherLimitConfig(quantity="rain_rate_mm_h", above=0.0, wait_min=30),
    WeatherLimitConfig(quantity="humidity_pct", above=85, hysteresis=5, wait_min=30),
    WeatherLimitConfig(quantity="humidity_pct", above=95, hysteresis=5, wait_min=120),
    WeatherLimitConfig(quantity="wind_gust_m_s", above=15, hysteresis=3, wait_min=20),
    WeatherLimitConfig(quantity="wind_speed_m_s", above=10, hysteresis=2, wait_min=20),
    WeatherLimitConfig(quantity="dew_margin_c", below=2, hysteresis=1, wait_min=30),
    WeatherLimitConfig(quantity="cloud_cover_pct", above=70, hysteresis=10, wait_min=15),
)


class WeatherConfig(_Model):
    """How the safety supervisor judges the weather station (``[devices.weather]``)."""

    limits: tuple[WeatherLimitConfig, ...] = Field(
        default=DEFAULT_WEATHER_LIMITS, max_length=100, description="all must hold to be safe"
    )
    feed_deadline_s: float = Field(
        default=120.0,
        gt=0,
        le=86_400,
        description="[s] a station that gives nothing new for this long is unsafe",
    )


class TransparencyConfig(_Model):
    """The pipeline's zero points as a cloud sensor (`obsctl.acquisition.transparency`).

    Transparency is ``10**(-0.4 * (reference - zero_point))`` of each processed light frame,
    the reference being ``[pipeline] nominal_zero_point`` of its filter or else the best zero
    point seen in that filter. Clouds pause light frames with the roof open; a probe frame
    every ``probe_every_s`` tells when they have gone.
    """

    enabled: bool = Field(default=False, description="pause lights under clouds seen in frames")
    pause_below: float = Field(
        default=0.5, gt=0, lt=1, description="median transparency of the last frames below this"
    )
    resume_above: float = Field(
        default=0.7, gt=0, le=1, description="a probe frame at or above this resumes"
    )
    frames: int = Field(default=3, ge=1, le=100, description="frames in the median")
    max_age_s: float = Field(
        default=1800.0, gt=0, le=86_400, description="[s] older frames are not in the median"
    )
    probe_every_s: float = Field(
        default=600.0, gt=0, le=86_400, description="[s] one light frame this often while paused"
    )
    probe_timeout_s: float = Field(
        default=900.0,
        gt=0,
        le=86_400,
        description="[s] a probe whose zero point has not come by then is given up",
    )
    opaque_below_stars: int = Field(
        default=5,
        ge=0,
        le=10_000,
        description="a frame with fewer stars and no zero point counts as opaque",
    )

    @model_validator(mode="after")
    def _hysteresis(self) -> TransparencyConfig:
        if self.resume_above <= self.pause_below:
            raise ValueError(
                f"resume_above ({self.resume_above:g}) must be above pause_below "
                f"({self.pause_below:g})"
            )
        return self


class SafetyConfig(_Model):
    """The safety supervisor, which runs beside the sequencer."""

    enabled: bool = True
    poll_s: float = Field(default=0.2, gt=0, le=60, description="[real s] safety monitor polling")
    read_timeout_s: float = Field(
        default=1.0, gt=0, le=600, description="[s] an unanswered read is unsafe"
    )
    resume_delay_s: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description="[s] how long it must stay safe before resuming",
    )
    park_when_unsafe: bool = True
    close_when_unsafe: bool = Field(
        default=True, description="close the dome or roof when unsafe (``[devices.dome]``)"
    )
    close_after_park: bool = Field(
        default=True,
        description="close only once the mount reports parked (a roll-off roof must not "
        "close on the telescope); false closes at once (a dome)",
    )
    weather: WeatherConfig = WeatherConfig()
    transparency: TransparencyConfig = TransparencyConfig()


class DomeConfig(_Model):
    """A rotating dome's geometry and how obsctl slaves it to the telescope.

    obsctl turns the dome itself (software slaving, as N.I.N.A. and Ekos do): the slit is
    sent to the azimuth where the telescope's optical axis leaves the dome
    (`obsctl.acquisition.dome_geometry`) at the start of every slew, and again while tracking
    whenever the slit is off by more than half the tolerance. A roll-off roof (a dome that
    cannot set its azimuth) is never slaved.
    """

    slave: bool = Field(
        default=True,
        description="the dome follows the telescope while its shutter is open or opening",
    )
    radius_m: float = Field(default=2.5, gt=0, le=100, description="[m] the dome's radius")
    mount_offset_north_m: float = Field(
        default=0.0,
        ge=-50,
        le=50,
        description="[m] the mount's RA/Dec axis intersection from the dome's centre, north +",
    )
    mount_offset_east_m: float = Field(
        default=0.0, ge=-50, le=50, description="[m] the same, east positive"
    )
    mount_offset_up_m: float = Field(
        default=0.0, ge=-50, le=50, description="[m] the same, up positive"
    )
    gem_offset_m: float = Field(
        default=0.0,
        ge=0,
        le=10,
        description="[m] a German mount: from the RA axis to the optical axis along the Dec "
        "axis (its side follows the pier side); 0 for a fork",
    )
    tolerance_deg: float = Field(
        default=4.0,
        gt=0,
        le=90,
        description="[deg] the slit is aligned within this of the required azimuth (about "
        "half the slit's width less the aperture's)",
    )
    settle_s: float = Field(
        default=2.0, ge=0, le=600, description="[s] wait after the dome stops before exposing"
    )
    align_timeout_s: float = Field(
        default=180.0,
        gt=0,
        le=3600,
        description="[s] a light frame waits this long for the slit, then is exposed and "
        "flagged (DOMEOK = F)",
    )
    follow_every_s: float = Field(
        default=10.0, gt=0, le=3600, description="[s] how often tracking is looked at"
    )

    @model_validator(mode="after")
    def _inside(self) -> DomeConfig:
        offset = math.hypot(
            self.mount_offset_north_m, self.mount_offset_east_m, self.mount_offset_up_m
        )
        if offset + self.gem_offset_m >= self.radius_m:
            raise ValueError(
                f"the telescope ({offset:g} m from the centre, {self.gem_offset_m:g} m GEM "
                f"offset) must be inside the dome's radius_m {self.radius_m:g}"
            )
        return self


class FocusTriggersConfig(_Model):
    """When a focus run is due before a light frame; each trigger off when unset or false."""

    start_of_night: bool = Field(
        default=True, description="the night's first light frame is preceded by a run"
    )
    temperature_change_c: float | None = Field(
        default=2.0,
        gt=0,
        le=50,
        description="[degC] a run when the focuser's temperature moved this far since the last",
    )
    hfr_growth: float | None = Field(
        default=0.15,
        gt=0,
        le=10,
        description="a run when the median HFR of the last frames (of the pipeline, in the "
        "filter) exceeds the HFR after the last run by this fraction",
    )
    hfr_frames: int = Field(
        default=3, ge=1, le=100, description="light frames whose median HFR hfr_growth uses"
    )
    interval_min: float | None = Field(
        default=None, gt=0, le=1440, description="[min] a run when this long since the last"
    )


class AutofocusConfig(_Model):
    """Focus runs (`obsctl.acquisition.autofocus`), their triggers and what is done between.

    A run takes `points` frames around the focuser's position, `step_steps` apart, measures
    the stars' half-flux radius, fits a hyperbola and moves to its minimum; a fit that is not
    a V is refused and the focuser goes back where it started. Between runs, filter changes
    apply `filter_offsets` and the temperature model moves the focuser as it cools.
    """

    enabled: bool = Field(default=False, description="focus runs and focus offsets at all")
    exposure_s: float = Field(default=5.0, gt=0, le=600, description="[s] each focus frame")
    points: int = Field(
        default=7, ge=5, le=31, description="frames of a run (odd: the start in the middle)"
    )
    step_steps: int = Field(
        default=50,
        ge=1,
        le=1_000_000,
        description="[focuser steps] between the run's positions: its outer points should be "
        "about two to three times the in-focus HFR",
    )
    max_extra_points: int = Field(
        default=4,
        ge=0,
        le=30,
        description="frames a run may add beyond an end of its positions when the V's "
        "minimum is not inside them",
    )
    overshoot_steps: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="[focuser steps] backlash: every move ends outward, and a move inward "
        "first goes this far past its target; at least the focuser's backlash, 0 for none",
    )
    min_stars: int = Field(default=5, ge=1, le=10_000, description="stars a focus frame needs")
    check: bool = Field(
        default=True,
        description="a frame at the new focus; a run whose check is worse than the start "
        "goes back to the start",
    )
    check_tolerance: float = Field(
        default=0.25,
        gt=0,
        le=5,
        description="the check frame's HFR may exceed the fit's minimum by this fraction",
    )
    filter_offsets: dict[Annotated[str, Field(max_length=200)], int] = Field(
        default_factory=dict,
        max_length=100,
        description="[focuser steps] each filter's focus relative to the others' common "
        "zero (an unlisted filter: 0); a filter change moves by the difference",
    )
    steps_per_c: float | None = Field(
        default=None,
        ge=-100_000,
        le=100_000,
        description="[focuser steps per degC] the temperature model until the night's runs "
        "fit their own (two runs at least 1 degC apart); None: no compensation before that",
    )
    temperature_compensation: bool = Field(
        default=True, description="move with the temperature model between runs"
    )
    min_move_steps: int = Field(
        default=5,
        ge=1,
        le=1_000_000,
        description="[focuser steps] the temperature model moves the focuser only this far "
        "or farther",
    )
    triggers: FocusTriggersConfig = FocusTriggersConfig()


class CentringConfig(_Model):
    """Plate-solve and centre (`obsctl.acquisition.centring`) after a slew to a light target.

    A short frame is solved with the pipeline's astrometry against the local reference
    catalog (offline); the pointing error is corrected (an offset slew, or a sync and a slew)
    until the target is within `tolerance_arcsec` of the frame's centre, at most
    `max_corrections` times. A frame that does not solve within `search_arcmin` is solved
    again about points spiralling out to `blind_search_arcmin`.
    """

    enabled: bool = Field(default=False, description="centre light targets after each slew")
    exposure_s: float = Field(default=5.0, gt=0, le=600, description="[s] each centring frame")
    tolerance_arcsec: float = Field(
        default=10.0, gt=0, le=3600, description="[arcsec] the target this near the centre"
    )
    max_corrections: int = Field(
        default=3, ge=1, le=20, description="corrections (slews) before it gives up"
    )
    method: Literal["offset", "sync"] = Field(
        default="offset",
        description="offset: slew to the target moved by the measured error (the mount's "
        "model untouched); sync: sync the mount to the solution, then slew to the target",
    )
    search_arcmin: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="[arcmin] the pointing error the matcher searches about where the mount "
        "reports",
    )
    blind_search_arcmin: float = Field(
        default=60.0,
        ge=0,
        le=600,
        description="[arcmin] a frame that does not solve is solved again about points "
        "spiralling out to this far, nearest first (0: no blind search)",
    )


class MeridianFlipConfig(_Model):
    """The meridian flip of a German equatorial mount (`obsctl.acquisition.meridian`).

    Between frames, a mount looking east (``PierSide.WEST``) that has tracked its target
    `flip_after_min` past the meridian slews to it again, which flips it; a frame that would
    end past `limit_after_min` (the mount's own tracking limit, or less) waits for the flip
    instead. After the flip the target is centred again (``[centring]``, when on) and, if
    asked, the focus is run again.
    """

    enabled: bool = Field(default=False, description="flip German equatorial mounts")
    flip_after_min: float = Field(
        default=5.0,
        ge=0,
        le=120,
        description="[min of hour angle] the flip is made this long past the meridian",
    )
    limit_after_min: float = Field(
        default=15.0,
        ge=0,
        le=180,
        description="[min of hour angle] no frame may end later than this past the meridian "
        "before the flip: at most the mount's own limit",
    )
    refocus: bool = Field(default=False, description="a focus run after each flip")

    @model_validator(mode="after")
    def _limit_after_flip(self) -> MeridianFlipConfig:
        if self.limit_after_min <= self.flip_after_min:
            raise ValueError(
                f"limit_after_min ({self.limit_after_min:g}) must be later than "
                f"flip_after_min ({self.flip_after_min:g})"
            )
        return self


class DriftCorrectionConfig(_Model):
    """Drift correction from the science frames (`obsctl.acquisition.drift_keeper`).

    Each light frame of a visit is measured against the visit's first (the Donuts method:
    the frames' projections cross-correlated), and a proportional-integral controller
    moves the mount with guide pulses before the next frame; no guide camera. Dithered
    visits are left alone.
    """

    enabled: bool = Field(default=False, description="correct the drift between frames")
    gain_p: float = Field(
        default=0.7, gt=0, lt=2, description="the fraction of the error corrected at once"
    )
    gain_i: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="the fraction of each error added to the learned drift per frame (takes "
        "out a steady drift; overshoots a sudden jump by about as much)",
    )
    deadband_px: float = Field(
        default=0.3, ge=0, le=100, description="[px] errors this small are not corrected"
    )
    max_correction_px: float = Field(
        default=20.0,
        gt=0,
        le=10_000,
        description="[px] a longer correction is refused and the target centred again",
    )


class HookConfig(_Model):
    """A command run at the start or end of each night (no shell), with a deadline."""

    command: Annotated[tuple[Annotated[str, AfterValidator(_no_nul)], ...], NotEmpty] = Field(
        max_length=1000, description="the program and its arguments"
    )
    timeout_s: float = Field(
        default=60.0, gt=0, le=86_400, description="[real s] then it is killed"
    )


class NightConfig(_Model):
    """Scheduled nights (``obsctl night``, ``obsctl run --plan``): the ends of each night."""

    plan: UsablePath | None = Field(
        default=None, description="``obsctl run`` runs this plan night after night"
    )
    start_hooks: tuple[HookConfig, ...] = Field(
        default=(), max_length=100, description="run at dusk, before the cooler and flats"
    )
    end_hooks: tuple[HookConfig, ...] = Field(
        default=(), max_length=100, description="run at dawn, after the park and warm-up"
    )

    cooler_set_point_c: float | None = Field(
        default=None, ge=-60, le=40, description="cool the camera to this at dusk"
    )
    warm_up: bool = Field(default=True, description="at dawn: warm the sensor, cooler off")
    warm_up_c: float = Field(default=10.0, ge=-40, le=40, description="warm-up set point")
    warm_up_timeout_s: float = Field(
        default=1800.0, gt=0, le=86_400, description="[s] then cooler off"
    )
    park_at_dawn: bool = True


class SimulatedCameraConfig(_Model):
    """Sensor and electronics of the simulated camera.

    The default sensor is a monochrome CMOS (no bleeding) with one dead and one hot column,
    each starting part-way up; ``bayer_pattern`` makes it a one-shot colour camera, reported
    over Alpaca as ``SensorType`` RGGB with ``BayerOffsetX/Y``.
    """

    name: HeaderText = "Simulated camera"
    sensor_name: HeaderText = "SIM-CMOS"
    width_px: int = Field(default=1024, ge=16, le=16384)
    height_px: int = Field(default=768, ge=16, le=16384)
    pixel_size_um: float = Field(default=3.76, gt=0, le=100)
    max_bin: int = Field(default=4, ge=1, le=16)
    max_adu: int = Field(default=65535, ge=255, le=65535)
    full_well_e: float = Field(default=51000.0, gt=0, le=1e7)
    electrons_per_adu: float = Field(default=0.8, gt=0, le=1000, description="at gain 0")
    read_noise_e: float = Field(default=3.5, ge=0, le=1000)
    bias_adu: float = Field(default=500.0, ge=0, le=65535, description="bias level at offset 0")
    adu_per_offset: float = Field(default=10.0, ge=0, le=65535)
    dark_current_e_s: float = Field(default=0.002, ge=0, le=1e6, description="at -10 C")
    dark_doubling_c: float = Field(default=6.3, gt=0, le=100)
    hot_pixel_fraction: float = Field(default=2e-4, ge=0, le=0.01)
    cosmic_rate_cm2_s: float = Field(
        default=0.02, ge=0, le=1000, description="hits per cm2 per second"
    )
    readout_time_s: float = Field(default=1.0, ge=0, le=3600)
    exposure_min_s: float = Field(default=1e-5, gt=0, le=3600)
    exposure_max_s: float = Field(default=3600.0, gt=0, le=86_400)
    gain_min: int = Field(default=0, ge=0, le=100_000)
    gain_max: int = Field(default=300, ge=0, le=100_000)
    offset_min: int = Field(default=0, ge=0, le=100_000)
    offset_max: int = Field(default=100, ge=0, le=100_000)
    ambient_c: float = Field(default=15.0, ge=-60, le=60)
    cooler_max_delta_c: float = Field(default=35.0, ge=0, le=100)
    cooler_tau_s: float = Field(default=60.0, gt=0, le=86_400)
    seed: int = Field(default=11, ge=0, le=2**32 - 1)
    bleeds: bool = Field(
        default=False,
        description="saturated charge bleeds along the columns, as on a CCD without "
        "anti-blooming; false (CMOS, as the default sensor): clipped at the full well",
    )
    dead_columns: int = Field(
        default=1, ge=0, le=1000, description="columns keeping 0-50 % of the light"
    )
    hot_columns: int = Field(
        default=1, ge=0, le=1000, description="columns with 5-50 times the dark current"
    )
    partial_column_fraction: float = Field(
        default=1.0, ge=0, le=1, description="chance a bad column starts part-way up"
    )
    bayer_pattern: Literal["RGGB", "BGGR", "GRBG", "GBRG"] | None = Field(
        default=None,
        description="colour filter array at the sensor's first pixel (one-shot colour "
        "camera); none: monochrome",
    )
    bayer_throughput_rgb: tuple[
        Annotated[float, Field(ge=0, le=1)],
        Annotated[float, Field(ge=0, le=1)],
        Annotated[float, Field(ge=0, le=1)],
    ] = Field(
        default=(0.30, 0.40, 0.25),
        description="fraction of the clear-filter light a red, green and blue pixel collects",
    )

    @model_validator(mode="after")
    def _ranges(self) -> SimulatedCameraConfig:
        for low, high in (
            ("exposure_min_s", "exposure_max_s"),
            ("gain_min", "gain_max"),
            ("offset_min", "offset_max"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"{low} ({getattr(self, low):g}) is above {high} ({getattr(self, high):g})"
                )
        if self.dead_columns + self.hot_columns > self.width_px:
            raise ValueError(
                f"dead_columns + hot_columns ({self.dead_columns + self.hot_columns}) exceed "
                f"width_px ({self.width_px})"
            )
        return self


class SimulatedVariableConfig(_Model):
    """A variable star or transient of the simulated sky (see `obsctl.simulators.variables`)."""

    name: str = Field(min_length=1, max_length=68)
    kind: Literal[
        "constant", "sine", "eclipsing", "rrlyrae", "transit", "transient",
        "rrc", "dcep", "dscuti", "contact", "lpv", "irregular", "flare",
    ]  # fmt: skip
    ra_deg: float = Field(ge=0, lt=360)
    dec_deg: float = Field(ge=-90, le=90)
    mag_v: float = Field(ge=-30, le=40, description="quiescent V magnitude; a transient's peak")
    b_v: float = Field(default=0.6, ge=-5, le=10)
    period_d: float = Field(default=1.0, gt=0, le=1e5)
    epoch_mjd: float = Field(
        default=0.0, ge=-1e6, le=1e6, description="phase zero, mid-eclipse or peak (MJD)"
    )
    amplitude_mag: float = Field(default=0.0, ge=0, le=30)
    depth: float = Field(default=0.0, ge=0, lt=1, description="transit depth, flux fraction")
    duration_d: float = Field(default=0.1, gt=0, le=1e5)
    rise_d: float = Field(default=1.0, gt=0, le=1e5)
    fade_d: float = Field(default=5.0, gt=0, le=1e5)


class SimulatedTransientConfig(_Model):
    """A transient on a host of the simulated sky (see `obsctl.simulators.transients`).

    A ``supernova`` sits on a galaxy of the simulated population, ``offset_arcsec`` from its
    nucleus; a ``nova`` (one outburst) or ``flare`` (seeded flares) brightens a catalog star.
    The host is given by its catalog id (``host_id``) or as the one nearest to ``ra_deg``,
    ``dec_deg`` among those brighter than ``host_brighter_than_mag`` (R for a galaxy, V for
    a star) within ``search_radius_arcsec``.
    """

    name: str = Field(min_length=1, max_length=68)
    kind: Literal["supernova", "nova", "flare"]
    host_id: int | None = Field(
        default=None, ge=0, le=2**62, description="the host galaxy's or star's catalog id"
    )
    ra_deg: float | None = Field(default=None, ge=0, lt=360, description="host nearest here")
    dec_deg: float | None = Field(default=None, ge=-90, le=90)
    host_brighter_than_mag: float = Field(
        default=40.0, ge=-30, le=40, description="host brighter than this (galaxy R, star V)"
    )
    search_radius_arcsec: float = Field(
        default=600.0, gt=0, le=36_000, description="look for the host no further than this"
    )
    offset_arcsec: float = Field(
        default=0.0, ge=0, le=3600, description="supernova: from the host's nucleus; 0 nuclear"
    )
    offset_pa_deg: float = Field(
        default=0.0, ge=0, lt=360, description="supernova: direction of the offset, east of north"
    )
    mag_v: float | None = Field(default=None, ge=-30, le=40, description="supernova: V at peak")
    b_v: float = Field(default=0.0, ge=-5, le=10, description="supernova: B-V colour")
    amplitude_mag: float = Field(
        default=0.0, ge=0, le=30, description="nova: brightening at peak; flare: typical peak"
    )
    epoch_mjd: float = Field(
        default=0.0, ge=-1e6, le=1e6, description="peak (MJD); flare: the sequence's origin"
    )
    rise_d: float | None = Field(
        default=None, gt=0, le=1e5, description="none: supernova 6, nova 1, flare 0.002 d"
    )
    fade_d: float | None = Field(
        default=None, gt=0, le=1e5, description="none: supernova 20, nova 10, flare 0.01 d"
    )
    rate_per_d: float = Field(default=0.5, ge=0, le=2, description="flare: flares per day")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="flare: times and sizes")

    @model_validator(mode="after")
    def _placed(self) -> SimulatedTransientConfig:
        if (self.ra_deg is None) != (self.dec_deg is None):
            raise ValueError("give both ra_deg and dec_deg, or neither")
        if (self.host_id is None) == (self.ra_deg is None):
            raise ValueError("give the host as host_id or as ra_deg and dec_deg (one of them)")
        if self.kind == "supernova" and self.mag_v is None:
            raise ValueError("a supernova needs mag_v, its peak V magnitude")
        if self.kind != "supernova":
            if self.mag_v is not None or self.offset_arcsec != 0.0:
                raise ValueError(
                    f"a {self.kind} brightens its star: mag_v and offset_arcsec are for "
                    "supernovae (give amplitude_mag)"
                )
            if self.amplitude_mag <= 0.0:
                raise ValueError(f"a {self.kind} needs amplitude_mag > 0")
        return self


class SimulatedAsteroidConfig(_Model):
    """A moving object of the simulated sky (see `obsctl.simulators.transients.Asteroid`).

    It moves along a great circle at a constant rate and has a constant magnitude; the
    camera integrates the motion over each exposure, so a fast one is trailed.
    """

    name: str = Field(min_length=1, max_length=68)
    ra_deg: float = Field(ge=0, lt=360, description="position at epoch_mjd")
    dec_deg: float = Field(ge=-90, le=90)
    epoch_mjd: float = Field(ge=-1e6, le=1e6, description="time of ra_deg, dec_deg (MJD)")
    rate_arcsec_min: float = Field(ge=0, le=36_000, description="angular rate (arcsec/min)")
    pa_deg: float = Field(ge=0, lt=360, description="direction of motion, east of north")
    mag_v: float = Field(ge=-30, le=40)
    b_v: float = Field(default=0.7, ge=-5, le=10)


class _SimulatedBandValues(_Model):
    """One number per band of the simulated sky (``B``, ``V``, ``R``, ``I``, ``L``).

    Each band is a field with its own default, so a config that sets one band keeps the
    defaults of the others. Filters the simulator does not know render as ``L``.
    """

    B: float
    V: float
    R: float
    I: float  # noqa: E741 -- the filter's name, as TOML keys spell it
    L: float

    def of(self, band: str) -> float:
        """Return the value of a band (case-insensitive); ``L`` for an unknown band."""
        key = band.strip().upper()
        return float(getattr(self, key if key in ("B", "V", "R", "I", "L") else "L"))


class SimulatedExtinctionConfig(_SimulatedBandValues):
    """Atmospheric extinction per band (mag per airmass), of a good dark site."""

    B: float = Field(default=0.25, ge=0, le=5)
    V: float = Field(default=0.15, ge=0, le=5)
    R: float = Field(default=0.10, ge=0, le=5)
    I: float = Field(default=0.07, ge=0, le=5)  # noqa: E741 -- the filter's name
    L: float = Field(default=0.12, ge=0, le=5)


class SimulatedColourTermsConfig(_SimulatedBandValues):
    """Colour term per band (mag per mag of catalog colour).

    The instrumental magnitude in band F is the catalog magnitude plus ``term * colour``, the
    colour being B-V for B and V, V-R for R, R-I for I and V-I for L
    (`obsctl.simulators.atmosphere.COLOUR_INDEX`).
    """

    B: float = Field(default=0.10, ge=-2, le=2)
    V: float = Field(default=0.05, ge=-2, le=2)
    R: float = Field(default=0.04, ge=-2, le=2)
    I: float = Field(default=-0.03, ge=-2, le=2)  # noqa: E741 -- the filter's name
    L: float = Field(default=-0.15, ge=-2, le=2)


class SimulatedZeroPointOffsetsConfig(_SimulatedBandValues):
    """Throughput of each band relative to V (mag added to ``zero_point_mag``)."""

    B: float = Field(default=-0.6, ge=-10, le=10)
    V: float = Field(default=0.0, ge=-10, le=10)
    R: float = Field(default=0.1, ge=-10, le=10)
    I: float = Field(default=-0.4, ge=-10, le=10)  # noqa: E741 -- the filter's name
    L: float = Field(default=0.6, ge=-10, le=10)


class SimulatedSkyColourConfig(_SimulatedBandValues):
    """Sky brightness of each band relative to V (mag/arcsec2 added to the V sky).

    A dark sky is bluer in magnitudes than most stars: about B 22.0, V 21.0, R 20.4, I 19.6.
    """

    B: float = Field(default=1.0, ge=-10, le=10)
    V: float = Field(default=0.0, ge=-10, le=10)
    R: float = Field(default=-0.6, ge=-10, le=10)
    I: float = Field(default=-1.4, ge=-10, le=10)  # noqa: E741 -- the filter's name
    L: float = Field(default=-0.3, ge=-10, le=10)


#: Cloud scenarios: (fraction of time clouded, mean extinction while clouded in mag,
#: correlation time in s). ``custom`` takes the three numbers from the config.
_CLOUD_SCENARIOS: dict[str, tuple[float, float, float]] = {
    "photometric": (0.0, 0.0, 900.0),
    "cirrus": (0.6, 0.15, 1800.0),
    "patchy": (0.35, 1.0, 600.0),
    "overcast": (1.0, 2.5, 1200.0),
}


class CloudSpell(_Model):
    """A spell of grey cloud at given times (UTC), on top of the scenario's clouds."""

    start: datetime
    end: datetime
    extinction_mag: float = Field(default=2.0, gt=0, le=20, description="[mag] grey")

    @model_validator(mode="after")
    def _order(self) -> CloudSpell:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need UTC offsets (write e.g. 2026-11-25T21:00:00Z)")
        if self.start >= self.end:
            raise ValueError(f"the spell starts ({self.start}) after it ends ({self.end})")
        return self


class SimulatedCloudsConfig(_Model):
    """Clouds of the simulated sky: a grey, seeded, smooth transparency series in time.

    ``scenario`` picks a preset (`_CLOUD_SCENARIOS`); ``custom`` uses ``clouded_fraction``,
    ``mean_extinction_mag`` and ``timescale_s`` (`obsctl.simulators.atmosphere`). ``spells``
    add cloud at set times, whatever the scenario (a cloudy spell a test can rely on).
    """

    scenario: Literal["photometric", "cirrus", "patchy", "overcast", "custom"] = Field(
        default="photometric", description="photometric: no clouds"
    )
    clouded_fraction: float = Field(
        default=0.3, ge=0, le=1, description="custom: fraction of the time under cloud"
    )
    mean_extinction_mag: float = Field(
        default=0.5, ge=0, le=20, description="custom: mean grey extinction under cloud (mag)"
    )
    timescale_s: float = Field(
        default=900.0, gt=0, le=86_400, description="custom: correlation time of the clouds (s)"
    )
    seed: int = Field(default=7, ge=0, le=2**32 - 1)
    spells: tuple[CloudSpell, ...] = Field(default=(), max_length=1000)

    def parameters(self) -> tuple[float, float, float]:
        """Return ``(clouded_fraction, mean_extinction_mag, timescale_s)`` of the scenario."""
        if self.scenario == "custom":
            return self.clouded_fraction, self.mean_extinction_mag, self.timescale_s
        return _CLOUD_SCENARIOS[self.scenario]


class SimulatedSkyConfig(_Model):
    """The synthetic sky the simulated camera renders.

    A star of catalog magnitude m in band F gives
    ``t * T * 10**(-0.4 * (m + c_F * colour + k_F * X - ZP_F))`` electrons, with ``ZP_F =
    zero_point_mag + zero_point_offset_mag.F`` above the atmosphere, X the airmass at the
    middle of the exposure, T the cloud transmission; each effect has its switch. Galaxies
    (Sersic profiles from realistic counts, sizes and colours, `obsctl.simulators.artefacts`)
    fill every field and satellites cross it at a low rate, each with its switch too.
    """

    seed: int = Field(default=2024, ge=0, le=2**32 - 1)
    seeing_arcsec: float = Field(default=2.2, gt=0, le=100, description="FWHM at the zenith")
    seeing_airmass_exponent: float = Field(
        default=0.6, ge=0, le=2, description="seeing grows as airmass**exponent; 0: constant"
    )
    seeing_variation_rms: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="the seeing wanders in time by this rms in its natural log (0.2 is "
        "typical); 0: it follows the airmass only",
    )
    seeing_timescale_s: float = Field(
        default=900.0, gt=0, le=86_400, description="correlation time of the seeing's wander"
    )
    moffat_beta: float = Field(default=3.0, gt=1, le=100)
    star_density_per_deg2: float = Field(
        default=2500.0, ge=0, le=1e6, description="down to mag_limit"
    )
    mag_bright: float = Field(default=8.0, ge=-30, le=40)
    mag_limit: float = Field(default=19.5, ge=-30, le=40)
    sky_mag_arcsec2: float = Field(default=20.5, ge=0, le=40, description="V-band sky brightness")
    zero_point_mag: float = Field(
        default=21.0,
        ge=0,
        le=50,
        description="V magnitude giving 1 e-/s at the telescope and sensor, above the "
        "atmosphere (at airmass 0) for a star of colour 0",
    )
    extinction: bool = Field(default=True, description="stars dim by k per airmass")
    extinction_mag_per_airmass: SimulatedExtinctionConfig = SimulatedExtinctionConfig()
    colour_terms: bool = Field(default=True, description="instrumental colour terms per band")
    colour_term: SimulatedColourTermsConfig = SimulatedColourTermsConfig()
    band_zero_points: bool = Field(
        default=True, description="per-band throughput; false: zero_point_mag in every band"
    )
    zero_point_offset_mag: SimulatedZeroPointOffsetsConfig = SimulatedZeroPointOffsetsConfig()
    band_sky: bool = Field(
        default=True, description="per-band sky brightness; false: the V sky in every band"
    )
    sky_offset_mag_arcsec2: SimulatedSkyColourConfig = SimulatedSkyColourConfig()
    clouds: SimulatedCloudsConfig = SimulatedCloudsConfig()
    flat_panel_e_s: float = Field(default=20000.0, gt=0, le=1e7, description="lamp level per pixel")
    variables: tuple[SimulatedVariableConfig, ...] = Field(
        default=(),
        max_length=1000,
        description="variable stars and transients added to the synthetic sky",
    )
    transients: tuple[SimulatedTransientConfig, ...] = Field(
        default=(),
        max_length=1000,
        description="supernovae on galaxies, novae and flares on stars of the synthetic sky",
    )
    asteroids: tuple[SimulatedAsteroidConfig, ...] = Field(
        default=(), max_length=1000, description="moving objects, trailed when fast"
    )
    follow_sun_moon: bool = Field(
        default=False,
        description="sky brightness follows twilight and moonlight at the simulated time "
        "(obsctl.night.ephemeris); false: a constant sky_mag_arcsec2",
    )
    galaxies: bool = Field(
        default=True, description="Sersic galaxies (seeded by seed) in every field"
    )
    galaxy_density_r21_per_deg2: float = Field(
        default=3000.0, ge=0, le=1e6, description="galaxies per deg2 brighter than R = 21"
    )
    galaxy_mag_bright: float = Field(default=12.0, ge=-30, le=27, description="R magnitude")
    galaxy_mag_limit: float = Field(default=21.0, ge=-30, le=27, description="R magnitude")
    satellite_trails: bool = Field(default=True, description="satellites cross the frame")
    satellite_rate_per_hour: float = Field(
        default=1.0,
        ge=0,
        le=3600,
        description="mean trails crossing the frame per hour of exposure (about 2 per deg2 "
        "per hour for the default 0.44 deg2 field)",
    )
    trail_mag_per_arcsec: tuple[
        Annotated[float, Field(ge=-30, le=40)], Annotated[float, Field(ge=-30, le=40)]
    ] = Field(
        default=(13.0, 17.0),
        description="range of trail surface brightness (mag per arcsec of trail, V)",
    )

    @model_validator(mode="after")
    def _magnitudes(self) -> SimulatedSkyConfig:
        if self.mag_bright >= self.mag_limit:
            raise ValueError(
                f"mag_bright ({self.mag_bright:g}) must be below mag_limit ({self.mag_limit:g})"
            )
        if self.galaxy_mag_bright >= self.galaxy_mag_limit:
            raise ValueError(
                f"galaxy_mag_bright ({self.galaxy_mag_bright:g}) must be below "
                f"galaxy_mag_limit ({self.galaxy_mag_limit:g})"
            )
        low, high = self.trail_mag_per_arcsec
        if low > high:
            raise ValueError(f"trail_mag_per_arcsec ({low:g}, {high:g}) must be (low, high)")
        return self


class SimulatedFilterWheelConfig(_Model):
    """The simulated filter wheel."""

    names: Annotated[tuple[HeaderText, ...], NotEmpty] = Field(
        default=("L", "B", "V", "R", "I"), max_length=64
    )
    focus_offsets: tuple[Annotated[int, Field(ge=-1_000_000, le=1_000_000)], ...] = Field(
        default=(0, 35, 20, 10, -15), max_length=64
    )
    move_time_s: float = Field(default=0.5, ge=0, le=3600, description="per slot")

    @model_validator(mode="after")
    def _same_length(self) -> SimulatedFilterWheelConfig:
        if len(self.names) != len(self.focus_offsets):
            raise ValueError(
                f"names has {len(self.names)} entries but focus_offsets has "
                f"{len(self.focus_offsets)}; they must match"
            )
        return self


class SimulatedMountConfig(_Model):
    """The simulated German equatorial mount."""

    slew_rate_deg_s: float = Field(default=4.0, gt=0, le=100)
    settle_s: float = Field(default=1.0, ge=0, le=3600)
    min_alt_deg: float = Field(default=10.0, ge=-90, le=90)
    park_alt_deg: float = Field(default=0.0, ge=-90, le=90)
    park_az_deg: float = Field(default=0.0, ge=0, lt=360)
    field_rotation_deg: float = Field(
        default=0.0, ge=-360, le=360, description="camera angle on the sky"
    )
    equatorial_system: Literal["j2000", "topocentric"] = Field(
        default="j2000",
        description="the RA/Dec the Alpaca mount takes and reports: J2000 or of date (JNow)",
    )
    # The pointing error: where the optics look minus where the mount says it points, as
    # (east, north) = (dRA cos Dec, dDec) on the sky. The reported RA/Dec stay the commanded
    # ones, as a real mount's encoders do; only the rendered sky moves.
    pointing_error_east_arcsec: tuple[
        Annotated[float, Field(ge=-3600, le=3600)], Annotated[float, Field(ge=-3600, le=3600)]
    ] = Field(
        default=(0.0, 0.0),
        description="[arcsec] (dRA cos Dec, dDec), fixed, with the mount on the east side of "
        "the pier (looking west); a real mount's is a few arcminutes",
    )
    pointing_error_west_arcsec: tuple[
        Annotated[float, Field(ge=-3600, le=3600)], Annotated[float, Field(ge=-3600, le=3600)]
    ] = Field(
        default=(0.0, 0.0),
        description="[arcsec] (dRA cos Dec, dDec), fixed, on the west side of the pier",
    )
    drift_arcsec_per_h: tuple[
        Annotated[float, Field(ge=-3600, le=3600)], Annotated[float, Field(ge=-3600, le=3600)]
    ] = Field(
        default=(0.0, 0.0),
        description="[arcsec/h] (dRA cos Dec, dDec) the error grows by per hour since the "
        "last slew or sync (polar misalignment, flexure)",
    )
    periodic_error_arcsec: float = Field(
        default=0.0, ge=0, le=600, description="[arcsec] amplitude of the RA periodic error"
    )
    meridian_limit_deg: float | None = Field(
        default=None,
        ge=0,
        le=90,
        description="[deg] hour angle past the meridian at which the mount, tracking on the "
        "west side of the pier (looking east), stops tracking (the tube would hit the pier); "
        "None: no limit",
    )
    periodic_error_period_s: float = Field(
        default=480.0, ge=1, le=86400, description="[s] the RA worm's period"
    )


class SimulatedDomeConfig(_Model):
    """The simulated enclosure: a roll-off roof (a shutter only) or a rotating dome."""

    kind: Literal["roll_off", "rotating"] = Field(
        default="roll_off",
        description="roll_off: a roof that opens and closes and cannot rotate; rotating: a "
        "dome with a shutter that turns to an azimuth",
    )
    shutter_time_s: float = Field(
        default=20.0, gt=0, le=3600, description="[s] to open or close the shutter or roof fully"
    )
    rotation_rate_deg_s: float = Field(
        default=5.0, gt=0, le=360, description="[deg/s] rotating dome only"
    )
    park_az_deg: float = Field(
        default=0.0, ge=0, lt=360, description="[deg] rotating dome only: the park azimuth"
    )
    # The camera sees the sky only through the slit. The simulated geometry is the real
    # dome's (give it the values of ``[dome]``); the simulator computes it on its own.
    slit_width_deg: float = Field(
        default=15.0,
        gt=0,
        le=180,
        description="[deg] rotating dome only: the slit's width in azimuth; the sky is hidden "
        "when the slit is off the optical axis by more than half of it",
    )
    radius_m: float = Field(default=2.5, gt=0, le=100, description="[m] rotating dome only")
    mount_offset_north_m: float = Field(default=0.0, ge=-50, le=50, description="[m] as [dome]")
    mount_offset_east_m: float = Field(default=0.0, ge=-50, le=50, description="[m] as [dome]")
    mount_offset_up_m: float = Field(default=0.0, ge=-50, le=50, description="[m] as [dome]")
    gem_offset_m: float = Field(default=0.0, ge=0, le=10, description="[m] as [dome]")


class SimulatedCoverCalibratorConfig(_Model):
    """The simulated flat panel on a motorised dust cover (a flip-flat).

    The camera sees it: a closed cover hides the sky, and the lit panel gives
    ``[simulator.sky] flat_panel_e_s * brightness / max_brightness``.
    """

    max_brightness: int = Field(
        default=255, ge=1, le=1_000_000, description="the panel's brightest step"
    )
    cover_time_s: float = Field(
        default=10.0, gt=0, le=3600, description="[s] to open or close the cover fully"
    )
    warmup_s: float = Field(
        default=2.0, ge=0, le=3600, description="[s] the panel is NotReady after switching on"
    )
    has_cover: bool = Field(
        default=True, description="false: a panel alone (CoverState NotPresent)"
    )
    start_open: bool = Field(
        default=True,
        description="the cover starts open (false: closed, hiding the sky until a sequence "
        "opens it for a sky frame)",
    )


class SimulatedFocuserConfig(_Model):
    """The simulated focuser: an absolute stepper with backlash; best focus follows temperature.

    The true best focus is ``best_focus_steps + steps_per_c * (T - reference_temperature_c)``
    at the focuser's temperature ``T``, which starts at ``temperature_c`` and drifts by
    ``temperature_drift_c_per_h``. Reversing the direction of travel takes up
    ``backlash_steps`` before the optics move. The camera's stars are spread over a blur
    circle of radius ``|optics - best focus| * step_size_um / (2 * focal ratio)``.
    """

    max_step: int = Field(default=60_000, ge=10, le=10_000_000, description="[steps]")
    max_increment: int = Field(
        default=60_000, ge=1, le=10_000_000, description="[steps] the longest single move"
    )
    step_size_um: float = Field(default=1.0, gt=0, le=1000, description="[micron] per step")
    speed_steps_s: float = Field(default=2000.0, gt=0, le=1e7, description="[steps/s]")
    start_position: int = Field(default=30_000, ge=0, le=10_000_000, description="[steps]")
    best_focus_steps: float = Field(
        default=30_500.0, ge=0, le=10_000_000, description="[steps] at the reference temperature"
    )
    reference_temperature_c: float = Field(default=10.0, ge=-80, le=70, description="[C]")
    steps_per_c: float = Field(
        default=-60.0,
        ge=-100_000,
        le=100_000,
        description="[steps/C] how the best focus moves with temperature (the tube shrinks "
        "in the cold)",
    )
    temperature_c: float = Field(default=10.0, ge=-80, le=70, description="[C] at the start")
    temperature_drift_c_per_h: float = Field(
        default=0.0, ge=-20, le=20, description="[C/h] from the start of the simulation"
    )
    backlash_steps: int = Field(
        default=0, ge=0, le=100_000, description="[steps] taken up when the direction reverses"
    )
    obstruction: float = Field(
        default=0.35,
        ge=0,
        lt=1,
        description="the central obstruction's diameter over the aperture's: the hole in a "
        "far-defocused star",
    )
    filter_focus_offsets: bool = Field(
        default=False,
        description="each filter's best focus lies its [simulator.filter_wheel] focus_offsets "
        "farther out (steps), as a real filter set's thicknesses differ",
    )

    @model_validator(mode="after")
    def _within_travel(self) -> SimulatedFocuserConfig:
        if self.start_position > self.max_step:
            raise ValueError(f"start_position {self.start_position} > max_step {self.max_step}")
        if self.best_focus_steps > self.max_step:
            raise ValueError(f"best_focus_steps {self.best_focus_steps} > max_step {self.max_step}")
        return self


class WeatherChange(_Model):
    """A change of the simulated weather at a set time: these values from ``at`` on.

    The values left out keep what they were. A cloud cover also dims the camera's sky until
    the next change that gives one (`cloud_extinction_mag`), so that clouds the station sees
    are clouds in the frames.
    """

    at: datetime = Field(description="UTC, with its offset (2026-11-25T22:00:00Z)")
    cloud_cover_pct: float | None = Field(default=None, ge=0, le=100)
    sky_temperature_c: float | None = Field(default=None, ge=-100, le=100)
    temperature_c: float | None = Field(default=None, ge=-80, le=70)
    dew_point_c: float | None = Field(default=None, ge=-80, le=70)
    humidity_pct: float | None = Field(default=None, ge=0, le=100)
    wind_speed_m_s: float | None = Field(default=None, ge=0, le=200)
    wind_gust_m_s: float | None = Field(default=None, ge=0, le=200)
    rain_rate_mm_h: float | None = Field(default=None, ge=0, le=1000)
    sky_quality_mag_arcsec2: float | None = Field(default=None, ge=-30, le=30)

    @model_validator(mode="after")
    def _utc(self) -> WeatherChange:
        if self.at.tzinfo is None:
            raise ValueError("at needs a UTC offset (write e.g. 2026-11-25T22:00:00Z)")
        return self

    def values(self) -> dict[str, float]:
        """Return the values this change sets, by sensor field name."""
        return {k: v for k, v in self.model_dump(exclude={"at"}).items() if v is not None}


def cloud_extinction_mag(cloud_cover_pct: float) -> float:
    """Return the grey extinction (mag) the simulated sky gets from a cloud cover (%).

    A simple model, not a measurement: a covered share ``f`` of the sky transmits 5 % of the
    light, so the frame keeps ``1 - 0.95 f`` of it (0.7 mag at 50 %, 3.3 mag overcast).
    """
    return -2.5 * math.log10(1.0 - 0.95 * cloud_cover_pct / 100.0)


class SimulatedWeatherConfig(_Model):
    """The simulated weather station's initial values; tests and ``/sim/v1`` change them.

    Units are in the names. A sensor listed in ``missing`` is one the station does not have:
    it answers ASCOM NotImplemented, as real stations do for the sensors they lack.
    """

    cloud_cover_pct: float = Field(default=0.0, ge=0, le=100)
    sky_temperature_c: float = Field(default=-30.0, ge=-100, le=100)
    temperature_c: float = Field(default=10.0, ge=-80, le=70)
    dew_point_c: float = Field(default=0.0, ge=-80, le=70)
    humidity_pct: float = Field(default=50.0, ge=0, le=100)
    wind_speed_m_s: float = Field(default=2.0, ge=0, le=200)
    wind_gust_m_s: float = Field(default=4.0, ge=0, le=200)
    rain_rate_mm_h: float = Field(default=0.0, ge=0, le=1000)
    sky_quality_mag_arcsec2: float = Field(default=21.0, ge=-30, le=30)
    update_interval_s: float = Field(
        default=10.0, gt=0, le=3600, description="[s] how often the station refreshes"
    )
    missing: tuple[WeatherSensor, ...] = Field(
        default=(), max_length=9, description="sensors the station does not have"
    )
    scenario: tuple[WeatherChange, ...] = Field(
        default=(), max_length=1000, description="changes at set times, in time order"
    )

    @model_validator(mode="after")
    def _in_order(self) -> SimulatedWeatherConfig:
        times = [change.at for change in self.scenario]
        if times != sorted(times):
            raise ValueError("scenario: the changes must be in time order")
        return self

    def cloud_spells(self) -> tuple[CloudSpell, ...]:
        """Return the scenario's cloud covers as spells of grey extinction on the sky.

        A cover holds from its change to the next change that gives a cover (a day at most
        for the last one).
        """
        covers = [(c.at, c.cloud_cover_pct) for c in self.scenario if c.cloud_cover_pct is not None]
        ends = [at for at, _ in covers[1:]] + [covers[-1][0] + timedelta(days=1)] if covers else []
        return tuple(
            CloudSpell(start=start, end=end, extinction_mag=cloud_extinction_mag(cover))
            for (start, cover), end in zip(covers, ends, strict=True)
            if cover > 0 and end > start
        )


class SerialSimulatorConfig(_Model):
    """Serial simulators of the mount (LX200, OnStep flavour) and filter wheel (QHY CFW).

    They drive the same models as the Alpaca simulators, on pseudo-terminals and/or TCP ports
    for pyserial's ``socket://host:port`` (bound to the simulator's ``host``).
    """

    mount_tcp_port: int | None = Field(default=None, ge=0, le=65535, description="0: any")
    filter_wheel_tcp_port: int | None = Field(default=None, ge=0, le=65535, description="0: any")
    pty: bool = Field(default=True, description="also open pseudo-terminals")


#: Deviations from the Alpaca spec that the simulators can reproduce, one flag each (what
#: each does: `obsctl.simulators.quirks`).
SimulatorQuirk = Literal[
    "status_422",
    "invalid_value_400",
    "missing_device_200",
    "unknown_member_404",
    "action_not_implemented",
    "com_error_numbers",
    "transaction_id_zero",
    "timestamp_utc_offset",
    "equatorial_other",
]


class SimulatorConfig(_Model):
    """Alpaca simulators that stand in for the hardware."""

    start: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="auto: start in-process unless something already serves the port",
    )
    host: str = Field(default="127.0.0.1", min_length=1, max_length=300)
    port: int = Field(default=11111, ge=0, le=65535)
    discovery_port: int | None = Field(default=32227, ge=0, le=65535)
    speed: float = Field(
        default=1.0, gt=0, le=MAX_SPEED, description="simulated seconds per real second"
    )
    camera: SimulatedCameraConfig = SimulatedCameraConfig()
    sky: SimulatedSkyConfig = SimulatedSkyConfig()
    filter_wheel: SimulatedFilterWheelConfig = SimulatedFilterWheelConfig()
    mount: SimulatedMountConfig = SimulatedMountConfig()
    safe: bool = True
    dome: SimulatedDomeConfig | None = Field(
        default=None, description="serve a dome or roll-off roof (dome/0)"
    )
    weather: SimulatedWeatherConfig | None = Field(
        default=None, description="serve a weather station (observingconditions/0)"
    )
    cover_calibrator: SimulatedCoverCalibratorConfig | None = Field(
        default=None, description="serve a flat panel with a dust cover (covercalibrator/0)"
    )
    focuser: SimulatedFocuserConfig | None = Field(
        default=None, description="serve a focuser (focuser/0)"
    )
    serial: SerialSimulatorConfig | None = None
    quirks: tuple[SimulatorQuirk, ...] = Field(
        default=(),
        max_length=20,
        description="deviations from the Alpaca spec that real servers show, to test against",
    )


class MonitoredTargetConfig(_Model):
    """A star whose light curve is kept and watched for alerts."""

    name: str = Field(min_length=1, max_length=68)
    ra_deg: float = Field(ge=0, lt=360)
    dec_deg: float = Field(ge=-90, le=90)
    field: str | None = Field(
        default=None,
        max_length=68,
        description="exposure target (OBJECT) of its frames; default: name",
    )
    period_d: float | None = Field(
        default=None, gt=0, le=1e5, description="known period, for plots"
    )


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return value


class WebhookSinkConfig(_Model):
    """Alerts are POSTed as JSON to a URL."""

    kind: Literal["webhook"]
    url: Annotated[str, AfterValidator(_http_url)] = Field(max_length=2000)
    timeout_s: float = Field(default=5.0, gt=0, le=600)


class CommandSinkConfig(_Model):
    """Alerts run a command (no shell), the alert as JSON on its standard input."""

    kind: Literal["command"]
    command: Annotated[tuple[Annotated[str, AfterValidator(_no_nul)], ...], NotEmpty] = Field(
        max_length=1000
    )
    timeout_s: float = Field(default=10.0, gt=0, le=3600)


AlertSinkConfig = Annotated[WebhookSinkConfig | CommandSinkConfig, Field(discriminator="kind")]


class MonitoringConfig(_Model):
    """Light curves of monitored targets, variability and alerts (obsctl.timeseries)."""

    enabled: bool = True
    auto: bool = Field(
        default=False, description="monitor every light-frame target, star at the field centre"
    )
    targets: tuple[MonitoredTargetConfig, ...] = Field(default=(), max_length=10_000)
    match_radius_arcsec: float = Field(default=2.0, gt=0, le=3600)
    brighten_fade_mag: float = Field(default=0.3, gt=0, le=10, description="alert threshold")
    alert_sigma: float = Field(default=5.0, gt=0, le=1000)
    dip_depth_mag: float = Field(
        default=0.005, gt=0, le=10, description="smallest transit-like dip"
    )
    dip_min_points: int = Field(default=3, ge=2, le=100_000)
    dip_sigma: float = Field(default=4.0, gt=0, le=1000)
    new_source_radius_arcsec: float = Field(default=60.0, gt=0, le=36_000)
    new_source_snr: float = Field(default=7.0, gt=0, le=1e6)
    new_source_margin_mag: float = Field(
        default=0.2, ge=0, le=10, description="new sources must beat the 50 % limit by this"
    )
    min_reference_frames: int = Field(default=3, ge=1, le=100_000)
    bad_grades: tuple[Annotated[str, Field(max_length=8)], ...] = Field(
        default=("D",), max_length=26, description="frame quality grades whose points are flagged"
    )
    max_comparisons: int = Field(default=30, ge=2, le=10_000)
    periodogram_min_points: int = Field(default=20, ge=5, le=1_000_000)
    min_period_d: float = Field(
        default=0.02,
        gt=0,
        le=1e5,
        description="[d] shortest period searched: delta Scuti stars pulsate in 0.02-0.25 d, "
        "and the variable classifier was trained with 0.02",
    )
    classify: bool = Field(
        default=True, description="classify the monitored targets' light curves (variable kind)"
    )
    classify_min_points: int = Field(
        default=50,
        ge=5,
        le=1_000_000,
        description="good points before a first classification (below ~50 the classes are "
        "unreliable: see the model card's F1 by points)",
    )
    class_alert_probability: float = Field(
        default=0.8, gt=0, le=1, description="a class found or changed at this probability alerts"
    )
    class_alert_frames: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="...when it held for this many classifications (frames) in a row",
    )
    sinks: tuple[AlertSinkConfig, ...] = Field(default=(), max_length=100)


class NotificationsConfig(_Model):
    """Operational notices sent to webhook and command sinks (`obsctl.notify`).

    Unsafe and safe again, a device down and back, a night's start and its end with a
    summary, a failed hook, a refused plan edit.
    """

    sinks: tuple[AlertSinkConfig, ...] = Field(default=(), max_length=100)
    settle_s: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description="[s] a condition back to normal is told once it held this long: "
        "a device or the weather flapping within it is one notice",
    )


class CatalogsConfig(_Model):
    """Reference catalogues fetched over TAP (`obsctl.catalogs`) into the local catalogue."""

    provider: Literal["none", "gaia", "apass", "atlas"] = Field(
        default="none",
        description="prefetched by `obsctl night` when the pipeline reads the catalogue file; "
        "none: only `obsctl catalog fetch --provider` and imports fill it",
    )
    margin_deg: float = Field(
        default=0.1, ge=0, le=5, description="[deg] added to the field's half-diagonal"
    )
    mag_limit: float = Field(default=17.0, ge=0, le=25, description="[mag] faintest star kept")
    bright_limit: float | None = Field(
        default=None, ge=-2, le=25, description="[mag] brightest star kept"
    )
    timeout_s: float = Field(default=60.0, gt=0, le=3600, description="[s] per request")
    max_rows: int = Field(
        default=50_000, ge=10, le=10_000_000, description="MAXREC; a fuller cone is split"
    )
    gaia_url: Annotated[str, Field(min_length=8, max_length=300, pattern=r"^https?://")] = (
        "https://gea.esac.esa.int/tap-server/tap"
    )
    vizier_url: Annotated[str, Field(min_length=8, max_length=300, pattern=r"^https?://")] = (
        "https://tapvizier.cds.unistra.fr/TAPVizieR/tap"
    )
    bands: dict[Annotated[str, Field(min_length=1, max_length=68)], BandName] = Field(
        default_factory=dict,
        max_length=64,
        description="filter name -> catalogue band (U B V R I u g r i z G BP RP L), "
        "over the built-in names",
    )
    width_px: int | None = Field(default=None, ge=16, le=100_000, description="sensor width")
    height_px: int | None = Field(default=None, ge=16, le=100_000, description="sensor height")
    pixel_size_um: float | None = Field(default=None, gt=0, le=100)


class DifferenceConfig(_Model):
    """Difference imaging of monitored fields against their reference images.

    A field's reference (per filter and camera) is combined from its best frames
    (`obsctl.pipeline.reference`); ``obsctl reference build FIELD`` builds one on demand.
    """

    auto_reference: bool = Field(
        default=True,
        description="build a monitored field's first reference once it has "
        "min_reference_frames good frames",
    )
    reference_frames: int = Field(
        default=8, ge=1, le=1000, description="at most this many of the best frames combine"
    )
    min_reference_frames: int = Field(
        default=4, ge=1, le=1000, description="fewest frames a reference is combined from"
    )
    reference_grades: tuple[Annotated[str, Field(min_length=1, max_length=8)], ...] = Field(
        default=("A", "B"), min_length=1, max_length=26, description="frame quality grades used"
    )
    clip_sigma: float = Field(
        default=4.0, gt=0, le=100, description="rejection, in sigma of each value's noise"
    )
    threshold_sigma: float = Field(
        default=5.0, gt=0, le=1000, description="candidates: score peaks beyond this (sigma)"
    )
    max_candidates: int = Field(
        default=200, ge=1, le=100_000, description="at most this many per frame, the strongest"
    )
    real_bogus_model: str | None = Field(
        default=None,
        max_length=4096,
        description="the real/bogus classifier (ONNX, obsctl model train --model realbogus); "
        "default: the shipped one",
    )
    real_bogus_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="candidates scored below this are bogus; default: the model's own "
        "(95 % of real candidates above it)",
    )
    transient_detections: int = Field(
        default=2,
        ge=1,
        le=100,
        description="a transient is alerted once seen on this many differences at one place",
    )
    match_radius_arcsec: float = Field(
        default=1.5, gt=0, le=60, description="detections this close are one transient"
    )
    link_window_h: float = Field(
        default=12.0, gt=0, le=240, description="moving objects are linked over this span"
    )
    min_rate_arcsec_min: float = Field(
        default=1.0,
        gt=0,
        le=1000,
        description="slowest moving object linked (arcsec/min); a transient is alerted once "
        "seen still for 2 * match_radius_arcsec / min_rate_arcsec_min (3 min)",
    )
    max_rate_arcsec_min: float = Field(
        default=90.0, gt=0, le=10_000, description="fastest moving object linked (arcsec/min)"
    )
    mpc_code: str = Field(
        default="XXX",
        pattern=r"^[0-9A-Z]{3}$",
        description="the observatory's Minor Planet Center code (XXX: none assigned yet)",
    )

    @model_validator(mode="after")
    def _enough_frames(self) -> DifferenceConfig:
        if self.min_rate_arcsec_min >= self.max_rate_arcsec_min:
            raise ValueError("min_rate_arcsec_min must be below max_rate_arcsec_min")
        if self.min_reference_frames > self.reference_frames:
            raise ValueError(
                f"min_reference_frames ({self.min_reference_frames}) must not exceed "
                f"reference_frames ({self.reference_frames})"
            )
        return self


class Config(_Model):
    """A whole observatory."""

    version: int
    site: SiteConfig
    telescope: TelescopeConfig
    devices: DevicesConfig
    data: DataConfig = DataConfig()
    server: ServerConfig = ServerConfig()
    pipeline: PipelineConfig = PipelineConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    sequencer: SequencerConfig = SequencerConfig()
    safety: SafetyConfig = SafetyConfig()
    dome: DomeConfig = DomeConfig()
    autofocus: AutofocusConfig = AutofocusConfig()
    centring: CentringConfig = CentringConfig()
    meridian_flip: MeridianFlipConfig = MeridianFlipConfig()
    drift_correction: DriftCorrectionConfig = DriftCorrectionConfig()
    night: NightConfig = NightConfig()
    simulator: SimulatorConfig | None = None
    monitoring: MonitoringConfig = MonitoringConfig()
    difference: DifferenceConfig = DifferenceConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    catalogs: CatalogsConfig = CatalogsConfig()

    @model_validator(mode="after")
    def _simulator_present_when_used(self) -> Config:
        used = [r for r in ROLES if isinstance(getattr(self.devices, r), SimulatorDeviceConfig)]
        if used and self.simulator is None:
            raise ValueError(
                f"devices {', '.join(used)} use driver 'simulator' but there is no "
                "[simulator] section"
            )
        # The simulators serve a dome, a weather station, a flat panel and a focuser only when their
        # section says what to simulate.
        for role in ("dome", "weather", "cover_calibrator", "focuser"):
            if role in used and getattr(self.simulator, role) is None:
                raise ValueError(
                    f"devices.{role} uses driver 'simulator' but there is no "
                    f"[simulator.{role}] section"
                )
        return self


def default_config_path() -> Path:
    """Return the path of the embedded default, ``configs/simulated.toml``."""
    return Path(str(resources.files("obsctl.configs").joinpath("simulated.toml")))


def offset_ports(config: Config, offset: int, *, option: str = "--port-offset") -> Config:
    """Return ``config`` with its own ports moved by ``offset``, all together.

    Moved: the control API (``[server] port``), the simulators' HTTP, discovery and serial
    TCP ports, and every device address that points at those simulators (an Alpaca
    ``host:port``, a serial ``socket://host:port``), so that a second obsctl runs beside the
    first with one number. A port of 0 (any free one) stays 0; other devices stay where they
    are.

    Parameters
    ----------
    config : Config
        The loaded configuration.
    offset : int
        Added to every port (may be negative).
    option : str
        The option's name, for the error.

    Returns
    -------
    Config
        The moved configuration.

    Raises
    ------
    ConfigError
        When a moved port leaves 1-65535.
    """
    if offset == 0:
        return config
    if not -65535 <= offset <= 65535:
        raise ConfigError(
            f"{option}: expected an offset from -65535 to 65535, got {brief_repr(offset)}"
        )

    def moved(port: int, what: str) -> int:
        if port == 0:
            return 0
        new = port + offset
        if not 1 <= new <= 65535:
            raise ConfigError(f"{option} {offset}: moves {what} {port} to {new}, outside 1-65535")
        return new

    server = config.server.model_copy(update={"port": moved(config.server.port, "[server] port")})
    sim = config.simulator
    if sim is None:
        return config.model_copy(update={"server": server})
    # Addresses (host:port as written) of the simulators, old -> new.
    addresses = {f"{sim.host}:{sim.port}": f"{sim.host}:{moved(sim.port, '[simulator] port')}"}
    sim_update: dict[str, Any] = {"port": moved(sim.port, "[simulator] port")}
    if sim.discovery_port is not None:
        sim_update["discovery_port"] = moved(sim.discovery_port, "[simulator] discovery_port")
    if sim.serial is not None:
        serial_update: dict[str, Any] = {}
        for key in ("mount_tcp_port", "filter_wheel_tcp_port"):
            port = getattr(sim.serial, key)
            if port is not None:
                serial_update[key] = moved(port, f"[simulator.serial] {key}")
                addresses[f"socket://{sim.host}:{port}"] = (
                    f"socket://{sim.host}:{serial_update[key]}"
                )
        sim_update["serial"] = sim.serial.model_copy(update=serial_update)
    devices_update: dict[str, Any] = {}
    for role in ROLES:
        device = getattr(config.devices, role)
        if isinstance(device, AlpacaDeviceConfig) and device.address in addresses:
            devices_update[role] = device.model_copy(update={"address": addresses[device.address]})
        elif isinstance(device, SerialDeviceConfig) and device.url in addresses:
            devices_update[role] = device.model_copy(update={"url": addresses[device.url]})
    return config.model_copy(
        update={
            "server": server,
            "simulator": sim.model_copy(update=sim_update),
            "devices": config.devices.model_copy(update=devices_update),
        }
    )


# Keys whose value selects one model of a discriminated union (a device's driver, an alert
# sink's kind); pydantic puts that value in the error location, where it is no key.
_TAG_KEYS = ("driver", "kind")
#: A key written as it is in a key path; any other (a dot, a space, a newline) is quoted.
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]{1,60}")


def brief_repr(value: object) -> str:
    """Return ``repr(value)``, shortened when long: a message shows what was given, not all of it.

    The repr escapes newlines and control characters, so the text stays on one line.
    """
    if isinstance(value, str) and len(value) > 50:
        return f"{value[:40]!r}..., {len(value)} characters"
    if isinstance(value, int) and value.bit_length() > 160:
        # repr() itself refuses an integer of more than 4300 digits.
        return f"an integer of about {round(value.bit_length() * math.log10(2))} digits"
    if isinstance(value, list | tuple | dict):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    text = repr(value)
    return text if len(text) <= 50 else f"{text[:40]}..., {len(text)} characters"


def _key(name: str) -> str:
    """Return a key of a key path: bare when TOML would write it bare, else quoted."""
    return name if _BARE_KEY.fullmatch(name) else brief_repr(name)


def _format_location(loc: tuple[int | str, ...], data: object) -> str:
    """Return ``devices.camera.address`` or ``targets[1].steps[0]`` for an error location.

    The location is followed through ``data`` (the validated document) to tell a union's tag
    from a key of the same name (``kind = "command"`` beside ``command = [...]``).
    """
    parts: list[str] = []
    node: object = data
    tag_seen = False
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            inside = isinstance(node, list | tuple) and -len(node) <= item < len(node)
            node = node[item] if inside else None  # type: ignore[index]
            tag_seen = False
        elif item == "[key]":
            continue  # the key itself failed; it ends the path already
        elif (
            not tag_seen
            and isinstance(node, Mapping)
            and any(node.get(key) == item for key in _TAG_KEYS)
        ):
            tag_seen = True  # a union's tag, not a key in the file
        else:
            parts.append(("." if parts else "") + _key(item))
            node = node.get(item) if isinstance(node, Mapping) else None
            tag_seen = False
    return "".join(parts) or "(top level)"


def _expected(err: ErrorDetails) -> str:
    """Say what was expected, in the terms of the file or request, not pydantic's."""
    kind = err["type"]
    ctx = err.get("ctx", {})
    if kind == "extra_forbidden":
        return "unknown key (not allowed here; check the spelling)"
    if kind == "missing":
        if err["loc"] and isinstance(err["loc"][-1], int):
            return "item missing (the list is too short)"
        return "required key is missing"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    if kind == "finite_number":
        return "expected a finite number (not inf or nan)"
    if kind in ("too_short", "string_too_short"):
        if isinstance(err["input"], str):
            n = ctx["min_length"]
            return "must not be empty" if n == 1 else f"expected at least {n} characters"
        return f"expected at least {ctx['min_length']} item(s), got {ctx['actual_length']}"
    if kind in ("too_long", "string_too_long"):
        if isinstance(err["input"], str):
            return f"expected at most {ctx['max_length']} characters"
        return f"expected at most {ctx['max_length']} item(s), got {ctx['actual_length']}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "expected a table of keys (a TOML table or a JSON object)"
    if kind in ("tuple_type", "list_type"):
        return "expected a list (a TOML or JSON array)"
    if kind == "path_type":
        return "expected a path (text)"
    if kind == "int_parsing_size":
        return "expected an integer of a sensible size"
    if kind == "union_tag_invalid":
        return f"key {ctx['discriminator']} must be one of {ctx['expected_tags']}"
    if kind == "union_tag_not_found":
        return f"required key {ctx['discriminator']} is missing"
    return err["msg"]


def _shown(err: ErrorDetails) -> str:
    """Return `` (got ...)`` for a scalar input, shortened; nothing for tables and lists."""
    kind = err["type"]
    if kind in ("missing", "union_tag_not_found"):
        return ""
    value = err["ctx"]["tag"] if kind == "union_tag_invalid" else err["input"]
    if not isinstance(value, str | int | float | bool | date | datetime | time):
        return ""  # the table or list itself: its location says enough
    return f" (got {brief_repr(value)})"


def format_validation_error(
    path: Path, exc: ValidationError, data: object, *, what: str = "configuration"
) -> str:
    """Return one line per problem: the file, the key path, and what was expected.

    Parameters
    ----------
    path : pathlib.Path
        The file (or request) validated, named first.
    exc : pydantic.ValidationError
        The failure.
    data : object
        The document validated (to tell union tags from keys in the key paths).
    what : str
        What the document is (``"configuration"``, ``"sequence"``, ``"plan"``).
    """
    count = exc.error_count()
    lines = [f"{path}: invalid {what} ({count} problem(s))"]
    # The first problems only: a list of ten thousand wrong items is one mistake, and its
    # message must fit on a screen (and in a request's reply).
    for err in exc.errors()[:MAX_PROBLEMS_SHOWN]:
        where = _format_location(tuple(err["loc"]), data)
        lines.append(f"  {where}: {_expected(err)}{_shown(err)}")
    if count > MAX_PROBLEMS_SHOWN:
        lines.append(f"  ... and {count - MAX_PROBLEMS_SHOWN} more problem(s)")
    return "\n".join(lines)


def check_document_size(data: object, *, limit: int, source: str | Path, what: str) -> None:
    """Refuse a document of more than ``limit`` values before validating it.

    Validation costs microseconds per value and holds the GIL throughout, so a megabyte of
    JSON that is a list of half a million wrong items would stall the daemon for seconds.
    Keys, list items and scalars count one each; the count stops at the limit.

    Raises
    ------
    ConfigError
        When the document holds more than ``limit`` values.
    """
    seen = 0
    todo = [data]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            seen += len(node)
            todo.extend(node.values())
        elif isinstance(node, list | tuple):
            seen += len(node)
            todo.extend(node)
        if seen > limit:
            raise ConfigError(
                f"{source}: the {what} holds more than {limit:,} values (keys, items, numbers "
                "and texts); no real one is that large",
                path=str(source),
            )


def parse_config(data: dict[str, Any], *, path: Path) -> Config:
    """Validate an already-parsed TOML mapping.

    Parameters
    ----------
    data : dict
        The parsed TOML document.
    path : pathlib.Path
        The file it came from, for error messages.

    Returns
    -------
    Config
        The validated configuration.

    Raises
    ------
    ConfigError
        When the version is unsupported or any key is invalid.
    """
    version = data.get("version")
    # `type(...) is int`: TOML's true equals 1 and would pass as version 1.
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise ConfigError(
            f"{path}: version: expected one of {list(SUPPORTED_VERSIONS)}, "
            f"got {brief_repr(version)}",
            path=str(path),
        )
    check_document_size(data, limit=MAX_DOCUMENT_VALUES, source=path, what="configuration")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, data), path=str(path)) from exc


def read_toml(file: Path) -> dict[str, Any]:
    """Read a TOML file.

    Raises
    ------
    ConfigError
        When the file cannot be read, is not UTF-8, or is not valid TOML (with line and column),
        nested too deeply to parse, or holds an integer too long to read.
    """
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}", path=str(file)) from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text: {exc}", path=str(file)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: TOML syntax error: {exc}", path=str(file)) from exc
    except RecursionError as exc:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(f"{file}: TOML nested too deeply", path=str(file)) from exc
    except ValueError as exc:  # int() refusing an integer of thousands of digits
        raise ConfigError(
            f"{file}: a number is too long to read (at most {sys.get_int_max_str_digits()} digits)",
            path=str(file),
        ) from exc


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a configuration file.

    Parameters
    ----------
    path : str, pathlib.Path or None
        The TOML file; None loads the embedded default ``configs/simulated.toml``.

    Returns
    -------
    Config
        The validated, frozen configuration.

    Raises
    ------
    ConfigError
        Naming the file, the key path and what was expected.
    """
    file = Path(path) if path is not None else default_config_path()
    config = parse_config(read_toml(file), path=file)
    log.debug("loaded config %s", file)
    return config
