"""Configuration: TOML files validated into frozen pydantic models.

`load_config` is the one entry point. Every failure (missing file, TOML syntax, unknown key,
wrong type, unsupported version) becomes a `ConfigError` that names the file, the key path and
what was expected. Relative paths inside a config (the data directory) are relative to the
current working directory, so the packaged default config writes beside the user, not into
the installation.
"""

from __future__ import annotations

import logging
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from obsctl.errors import ConfigError

__all__ = [
    "AlpacaDeviceConfig",
    "CalibrationConfig",
    "CommandSinkConfig",
    "Config",
    "DataConfig",
    "DeviceConfig",
    "DevicesConfig",
    "MonitoredTargetConfig",
    "MonitoringConfig",
    "NightConfig",
    "PipelineConfig",
    "SafetyConfig",
    "SequencerConfig",
    "SerialDeviceConfig",
    "SerialSimulatorConfig",
    "ServerConfig",
    "SimulatedCameraConfig",
    "SimulatedFilterWheelConfig",
    "SimulatedMountConfig",
    "SimulatedSkyConfig",
    "SimulatedVariableConfig",
    "SimulatorConfig",
    "SimulatorDeviceConfig",
    "SiteConfig",
    "TelescopeConfig",
    "WebhookSinkConfig",
    "default_config_path",
    "format_validation_error",
    "load_config",
    "read_toml",
]

log = logging.getLogger(__name__)

SUPPORTED_VERSIONS = (1,)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SiteConfig(_Model):
    """Where the observatory is."""

    name: str
    latitude_deg: float = Field(ge=-90, le=90)
    longitude_deg: float = Field(ge=-180, le=180, description="east positive")
    elevation_m: float = Field(default=0.0, ge=-500, le=9000)


class TelescopeConfig(_Model):
    """The optical tube, for headers and the approximate WCS."""

    name: str = "telescope"
    focal_length_mm: float = Field(gt=0)
    aperture_mm: float = Field(gt=0)
    observer: str = ""


class AlpacaDeviceConfig(_Model):
    """A device reached over ASCOM Alpaca (HTTP)."""

    driver: Literal["alpaca"]
    address: str = Field(pattern=r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$", description="host:port")
    device_number: int = Field(default=0, ge=0)
    timeout_s: float = Field(default=5.0, gt=0, description="deadline of one control call")
    download_timeout_s: float = Field(default=120.0, gt=0, description="deadline of a download")
    connect_timeout_s: float = Field(default=30.0, gt=0, description="deadline of connecting")


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
        min_length=1, description="pyserial URL: /dev/ttyUSB0, socket://host:port, rfc2217://..."
    )
    baudrate: int = Field(default=9600, gt=0, description="bits per second")
    timeout_s: float = Field(default=2.0, gt=0, description="deadline of one command")
    move_timeout_s: float = Field(default=60.0, gt=0, description="deadline of a filter move")
    filter_names: tuple[str, ...] = Field(default=(), description="qhycfw: names by slot")
    focus_offsets: tuple[int, ...] = Field(default=(), description="qhycfw: steps by slot")

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

    @model_validator(mode="after")
    def _serial_protocol_suits_role(self) -> DevicesConfig:
        for role in ("camera", "filter_wheel", "mount", "safety_monitor"):
            cfg = getattr(self, role)
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

    directory: Path = Path("data")


class ServerConfig(_Model):
    """The daemon's HTTP server (control API and quick-look)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    token: str | None = Field(default=None, description="bearer token for mutating calls")

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> ServerConfig:
        if self.host not in ("127.0.0.1", "localhost", "::1") and not self.token:
            raise ValueError(f"a token is required when the server binds to {self.host!r}")
        return self


StageName = Literal["calibrate", "photometry", "classify", "astrometry", "zeropoint"]
FailureAction = Literal["abort", "skip", "mark"]
_DEFAULT_ON_FAILURE: dict[StageName, FailureAction] = {
    "calibrate": "mark",  # no masters: measure the raw frame, flagged
    "photometry": "abort",  # nothing after it makes sense without sources
    "classify": "mark",  # unclassified sources are still measured, flagged
    "astrometry": "mark",  # keep the approximate WCS
    "zeropoint": "mark",
}


class PipelineConfig(_Model):
    """Per-frame processing: which stages run, in order, and what a stage failure does."""

    enabled: bool = True
    workers: int = Field(default=2, ge=1, le=64)
    # classify before astrometry and zeropoint: they must not fit cosmic rays and hot pixels.
    stages: tuple[StageName, ...] = (
        "calibrate",
        "photometry",
        "classify",
        "astrometry",
        "zeropoint",
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
    read_noise_e: float = Field(default=3.5, ge=0, description="for photometric errors")
    nominal_zero_point: dict[str, float] = Field(
        default_factory=dict,
        description="clear-sky zero point per filter (mag, e-/s); transparency is measured "
        "against it, else against the night's best frame in that filter",
    )
    gain_e_per_adu: float | None = Field(
        default=None,
        gt=0,
        description="overrides the header's EGAIN (for files from tools that omit it)",
    )
    saturation_adu: float = Field(default=60000.0, gt=0)
    classifier_model: Path | None = Field(
        default=None,
        description="ONNX source classifier with obsctl's input spec (obsctl.classify.cutouts);"
        " default: the shipped model. Checked when the pipeline starts",
    )


class CalibrationConfig(_Model):
    """Calibration masters: how they are built and which ones a frame may use."""

    max_age_days: float = Field(default=30, ge=0, description="[d] master's night to frame's")
    temperature_tolerance_c: float = Field(default=2.0, ge=0, description="[C] sensor temperature")
    method: Literal["median", "sigma"] = Field(
        default="sigma", description="median, or sigma-clipped mean around the median"
    )
    sigma: float = Field(default=3.0, gt=0, description="clipping threshold in std deviations")
    tile_rows: int = Field(default=256, ge=1, description="rows of every frame in memory at once")
    auto_build: bool = Field(
        default=True,
        description="build masters when a sequence that took calibration frames ends, then "
        "process again the night's light frames that lacked a master",
    )


class SequencerConfig(_Model):
    """How sequences run and how device faults are handled."""

    retries: int = Field(default=2, ge=0, le=20, description="retries before reconnecting")
    backoff_s: float = Field(default=2.0, ge=0, description="first wait between retries")
    backoff_factor: float = Field(default=2.0, ge=1)
    reconnect: bool = True
    poll_s: float = Field(default=0.1, gt=0, description="[real s] device polling interval")
    readout_margin_s: float = Field(
        default=60.0, gt=0, description="time allowed after the exposure for readout"
    )
    slew_timeout_s: float = Field(default=300.0, gt=0, description="[s] slew and settle, park")
    filter_timeout_s: float = Field(default=60.0, gt=0, description="[s] filter move")
    command_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="[real s] one command beyond the driver's own deadline (abort, park, cooler)",
    )
    shutdown: Literal["abort", "finish"] = Field(
        default="abort", description="what to do with a running exposure at shutdown"
    )
    park_at_shutdown: bool = True


class SafetyConfig(_Model):
    """The safety supervisor, which runs beside the sequencer."""

    enabled: bool = True
    poll_s: float = Field(default=0.2, gt=0, description="[real s] safety monitor polling")
    read_timeout_s: float = Field(default=1.0, gt=0, description="an unanswered read is unsafe")
    resume_delay_s: float = Field(
        default=300.0, ge=0, description="how long it must stay safe before resuming"
    )
    park_when_unsafe: bool = True


class NightConfig(_Model):
    """Scheduled nights (``obsctl night``): what happens at the ends of the night."""

    cooler_set_point_c: float | None = Field(
        default=None, ge=-60, le=40, description="cool the camera to this at dusk"
    )
    warm_up: bool = Field(default=True, description="at dawn: warm the sensor, cooler off")
    warm_up_c: float = Field(default=10.0, ge=-40, le=40, description="warm-up set point")
    warm_up_timeout_s: float = Field(default=1800.0, gt=0, description="[s] then cooler off")
    park_at_dawn: bool = True


class SimulatedCameraConfig(_Model):
    """Sensor and electronics of the simulated camera."""

    name: str = "Simulated camera"
    sensor_name: str = "SIM-CMOS"
    width_px: int = Field(default=1024, ge=16, le=16384)
    height_px: int = Field(default=768, ge=16, le=16384)
    pixel_size_um: float = Field(default=3.76, gt=0)
    max_bin: int = Field(default=4, ge=1, le=16)
    max_adu: int = Field(default=65535, ge=255, le=65535)
    full_well_e: float = Field(default=51000.0, gt=0)
    electrons_per_adu: float = Field(default=0.8, gt=0, description="at gain 0")
    read_noise_e: float = Field(default=3.5, ge=0)
    bias_adu: float = Field(default=500.0, ge=0, description="bias level at offset 0")
    adu_per_offset: float = Field(default=10.0, ge=0)
    dark_current_e_s: float = Field(default=0.002, ge=0, description="at -10 C")
    dark_doubling_c: float = Field(default=6.3, gt=0)
    hot_pixel_fraction: float = Field(default=2e-4, ge=0, le=0.01)
    cosmic_rate_cm2_s: float = Field(default=0.02, ge=0, description="hits per cm2 per second")
    readout_time_s: float = Field(default=1.0, ge=0)
    exposure_min_s: float = Field(default=1e-5, gt=0)
    exposure_max_s: float = Field(default=3600.0, gt=0)
    gain_min: int = 0
    gain_max: int = 300
    offset_min: int = 0
    offset_max: int = 100
    ambient_c: float = 15.0
    cooler_max_delta_c: float = Field(default=35.0, ge=0)
    cooler_tau_s: float = Field(default=60.0, gt=0)
    seed: int = 11


class SimulatedVariableConfig(_Model):
    """A variable star or transient of the simulated sky (see `obsctl.simulators.variables`)."""

    name: str = Field(min_length=1)
    kind: Literal["constant", "sine", "eclipsing", "rrlyrae", "transit", "transient"]
    ra_deg: float = Field(ge=0, lt=360)
    dec_deg: float = Field(ge=-90, le=90)
    mag_v: float = Field(description="quiescent V magnitude; a transient's peak")
    b_v: float = 0.6
    period_d: float = Field(default=1.0, gt=0)
    epoch_mjd: float = Field(default=0.0, description="phase zero, mid-eclipse or peak (MJD)")
    amplitude_mag: float = Field(default=0.0, ge=0)
    depth: float = Field(default=0.0, ge=0, lt=1, description="transit depth, flux fraction")
    duration_d: float = Field(default=0.1, gt=0)
    rise_d: float = Field(default=1.0, gt=0)
    fade_d: float = Field(default=5.0, gt=0)


class SimulatedSkyConfig(_Model):
    """The synthetic sky the simulated camera renders."""

    seed: int = 2024
    seeing_arcsec: float = Field(default=2.2, gt=0)
    moffat_beta: float = Field(default=3.0, gt=1)
    star_density_per_deg2: float = Field(default=2500.0, ge=0, description="down to mag_limit")
    mag_bright: float = 8.0
    mag_limit: float = 19.5
    sky_mag_arcsec2: float = Field(default=20.5, description="V-band sky brightness")
    zero_point_mag: float = Field(
        default=21.0, description="V magnitude giving 1 e-/s at the telescope and sensor"
    )
    flat_panel_e_s: float = Field(default=20000.0, gt=0, description="lamp level per pixel")
    variables: tuple[SimulatedVariableConfig, ...] = Field(
        default=(), description="variable stars and transients added to the synthetic sky"
    )
    follow_sun_moon: bool = Field(
        default=False,
        description="sky brightness follows twilight and moonlight at the simulated time "
        "(obsctl.night.ephemeris); false: a constant sky_mag_arcsec2",
    )


class SimulatedFilterWheelConfig(_Model):
    """The simulated filter wheel."""

    names: tuple[str, ...] = ("L", "B", "V", "R", "I")
    focus_offsets: tuple[int, ...] = (0, 35, 20, 10, -15)
    move_time_s: float = Field(default=0.5, ge=0, description="per slot")

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

    slew_rate_deg_s: float = Field(default=4.0, gt=0)
    settle_s: float = Field(default=1.0, ge=0)
    min_alt_deg: float = Field(default=10.0, ge=-90, le=90)
    park_alt_deg: float = 0.0
    park_az_deg: float = 0.0
    field_rotation_deg: float = Field(default=0.0, description="camera angle on the sky")


class SerialSimulatorConfig(_Model):
    """Serial simulators of the mount (LX200, OnStep flavour) and filter wheel (QHY CFW).

    They drive the same models as the Alpaca simulators, on pseudo-terminals and/or TCP ports
    for pyserial's ``socket://host:port`` (bound to the simulator's ``host``).
    """

    mount_tcp_port: int | None = Field(default=None, ge=0, le=65535, description="0: any")
    filter_wheel_tcp_port: int | None = Field(default=None, ge=0, le=65535, description="0: any")
    pty: bool = Field(default=True, description="also open pseudo-terminals")


class SimulatorConfig(_Model):
    """Alpaca simulators that stand in for the hardware."""

    start: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="auto: start in-process unless something already serves the port",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=11111, ge=0, le=65535)
    discovery_port: int | None = Field(default=32227, ge=0, le=65535)
    speed: float = Field(default=1.0, gt=0, description="simulated seconds per real second")
    camera: SimulatedCameraConfig = SimulatedCameraConfig()
    sky: SimulatedSkyConfig = SimulatedSkyConfig()
    filter_wheel: SimulatedFilterWheelConfig = SimulatedFilterWheelConfig()
    mount: SimulatedMountConfig = SimulatedMountConfig()
    safe: bool = True
    serial: SerialSimulatorConfig | None = None


class MonitoredTargetConfig(_Model):
    """A star whose light curve is kept and watched for alerts."""

    name: str = Field(min_length=1)
    ra_deg: float = Field(ge=0, lt=360)
    dec_deg: float = Field(ge=-90, le=90)
    field: str | None = Field(
        default=None, description="exposure target (OBJECT) of its frames; default: name"
    )
    period_d: float | None = Field(default=None, gt=0, description="known period, for plots")


class WebhookSinkConfig(_Model):
    """Alerts are POSTed as JSON to a URL."""

    kind: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    timeout_s: float = Field(default=5.0, gt=0)


class CommandSinkConfig(_Model):
    """Alerts run a command (no shell), the alert as JSON on its standard input."""

    kind: Literal["command"]
    command: tuple[str, ...] = Field(min_length=1)
    timeout_s: float = Field(default=10.0, gt=0)


AlertSinkConfig = Annotated[WebhookSinkConfig | CommandSinkConfig, Field(discriminator="kind")]


class MonitoringConfig(_Model):
    """Light curves of monitored targets, variability and alerts (obsctl.timeseries)."""

    enabled: bool = True
    auto: bool = Field(
        default=False, description="monitor every light-frame target, star at the field centre"
    )
    targets: tuple[MonitoredTargetConfig, ...] = ()
    match_radius_arcsec: float = Field(default=2.0, gt=0)
    brighten_fade_mag: float = Field(default=0.3, gt=0, description="alert threshold")
    alert_sigma: float = Field(default=5.0, gt=0)
    dip_depth_mag: float = Field(default=0.005, gt=0, description="smallest transit-like dip")
    dip_min_points: int = Field(default=3, ge=2)
    dip_sigma: float = Field(default=4.0, gt=0)
    new_source_radius_arcsec: float = Field(default=60.0, gt=0)
    new_source_snr: float = Field(default=7.0, gt=0)
    new_source_margin_mag: float = Field(
        default=0.2, ge=0, description="new sources must beat the 50 % limit by this"
    )
    min_reference_frames: int = Field(default=3, ge=1)
    bad_grades: tuple[str, ...] = Field(
        default=("D",), description="frame quality grades whose points are flagged"
    )
    max_comparisons: int = Field(default=30, ge=2)
    periodogram_min_points: int = Field(default=20, ge=5)
    min_period_d: float = Field(default=0.05, gt=0)
    sinks: tuple[AlertSinkConfig, ...] = ()


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
    night: NightConfig = NightConfig()
    simulator: SimulatorConfig | None = None
    monitoring: MonitoringConfig = MonitoringConfig()

    @model_validator(mode="after")
    def _simulator_present_when_used(self) -> Config:
        roles = ("camera", "filter_wheel", "mount", "safety_monitor")
        used = [r for r in roles if isinstance(getattr(self.devices, r), SimulatorDeviceConfig)]
        if used and self.simulator is None:
            raise ValueError(
                f"devices {', '.join(used)} use driver 'simulator' but there is no "
                "[simulator] section"
            )
        return self


def default_config_path() -> Path:
    """Return the path of the embedded default, ``configs/simulated.toml``."""
    return Path(str(resources.files("obsctl.configs").joinpath("simulated.toml")))


def _format_location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for index, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("alpaca", "simulator") and parts:
            continue  # discriminated-union tag, not a key in the file
        elif item == "serial" and index == 2 and loc[0] == "devices":
            continue  # the serial device tag, unlike the [simulator.serial] table
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "(top level)"


def format_validation_error(
    path: Path, exc: ValidationError, *, what: str = "configuration"
) -> str:
    """Return one line per problem: the file, the key path, and what was expected."""
    lines = [f"{path}: invalid {what} ({exc.error_count()} problem(s))"]
    for err in exc.errors():
        where = _format_location(tuple(err["loc"]))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here; check the spelling)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        got = "" if err["type"] == "missing" else f" (got {err['input']!r})"
        lines.append(f"  {where}: {msg}{got}")
    return "\n".join(lines)


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
    if version not in SUPPORTED_VERSIONS:
        raise ConfigError(
            f"{path}: version: expected one of {list(SUPPORTED_VERSIONS)}, got {version!r}",
            path=str(path),
        )
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc), path=str(path)) from exc


def read_toml(file: Path) -> dict[str, Any]:
    """Read a TOML file.

    Raises
    ------
    ConfigError
        When the file cannot be read, is not UTF-8, or is not valid TOML (with line and column).
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
