from pathlib import Path

import pytest

from obsctl.config import Config, default_config_path, load_config
from obsctl.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

MINIMAL = """
version = 1
[site]
name = "Test"
latitude_deg = 45.0
longitude_deg = 7.0
[telescope]
focal_length_mm = 500
aperture_mm = 100
[devices.camera]
driver = "alpaca"
address = "127.0.0.1:11111"
"""


def write(tmp_path: Path, text: str, name: str = "obsctl.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    assert isinstance(load_config(path), Config)


@pytest.mark.parametrize(
    "path", sorted((REPO / "configs" / "plans").glob("*.toml")), ids=lambda p: p.name
)
def test_every_shipped_plan_loads(path: Path) -> None:
    from obsctl.night.plan import Plan, load_plan

    assert isinstance(load_plan(path), Plan)


def test_default_is_the_simulated_observatory() -> None:
    config = load_config()
    assert default_config_path().name == "simulated.toml"
    assert config.simulator is not None
    assert config.devices.camera.driver == "alpaca"


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.server.host == "127.0.0.1"
    assert config.devices.mount is None
    assert config.devices.camera.driver == "alpaca"
    with pytest.raises(Exception, match="frozen"):
        config.site.name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (
            lambda t: t.replace('name = "Test"', 'name = "Test"\nlatitud_deg = 3'),
            r"site\.latitud_deg: unknown key",
        ),
        (
            lambda t: t.replace("latitude_deg = 45.0", "latitude_deg = 145.0"),
            r"site\.latitude_deg: Input should be less than or equal to 90 \(got 145\.0\)",
        ),
        (
            lambda t: t.replace("focal_length_mm = 500", 'focal_length_mm = "long"'),
            r"telescope\.focal_length_mm: Input should be a valid number",
        ),
        (
            lambda t: t.replace("aperture_mm = 100\n", ""),
            r"telescope\.aperture_mm: required key is missing",
        ),
        (
            lambda t: t.replace('driver = "alpaca"', 'driver = "ascom"'),
            r"devices\.camera: .*'alpaca', 'simulator'",
        ),
        (
            lambda t: t.replace('"127.0.0.1:11111"', '"localhost"'),
            r"devices\.camera\.address: expected host:port, for example 192\.0\.2\.10:11111",
        ),
        (
            lambda t: t.replace(
                'driver = "alpaca"\naddress = "127.0.0.1:11111"', 'driver = "simulator"'
            ),
            r"use driver 'simulator' but there is no \[simulator\] section",
        ),
        (
            lambda t: t + '[server]\nhost = "0.0.0.0"\n',
            r"server: a token is required when the server binds to '0\.0\.0\.0'",
        ),
        (
            lambda t: t + '[simulator.filter_wheel]\nnames = ["L", "R"]\nfocus_offsets = [0]\n',
            r"simulator\.filter_wheel: names has 2 entries but focus_offsets has 1",
        ),
        (
            lambda t: t.replace("version = 1", "version = 7"),
            r"version: expected one of \[1\], got 7",
        ),
        (
            lambda t: t.replace("version = 1\n", ""),
            r"version: expected one of \[1\], got None",
        ),
    ],
)
def test_bad_config_names_file_key_and_expectation(tmp_path, edit, pattern) -> None:
    path = write(tmp_path, edit(MINIMAL))
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)


def test_toml_syntax_error_gives_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("[site]", "[site"))
    with pytest.raises(ConfigError, match=r"TOML syntax error: .*line 3"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read: No such file"):
        load_config(tmp_path / "nope.toml")


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    text = MINIMAL.replace("latitude_deg = 45.0", "latitude_deg = 99").replace(
        "aperture_mm = 100", "aperture_mm = -1"
    )
    with pytest.raises(ConfigError, match=r"2 problem\(s\)") as info:
        load_config(write(tmp_path, text))
    assert "site.latitude_deg" in str(info.value)
    assert "telescope.aperture_mm" in str(info.value)


SIMULATOR = "[simulator]\n"


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda t: t.replace("latitude_deg = 45.0", "latitude_deg = nan"), r"site\.latitude_deg"),
        (lambda t: t.replace("aperture_mm = 100", "aperture_mm = inf"), r"telescope\.aperture_mm"),
        (lambda t: t + "[sequencer]\npoll_s = inf\n", r"sequencer\.poll_s"),
        (lambda t: t + "[sequencer]\nbackoff_s = -inf\n", r"sequencer\.backoff_s"),
        (
            lambda t: t + "[pipeline.nominal_zero_point]\nV = nan\n",
            r"pipeline\.nominal_zero_point\.V",
        ),
        (lambda t: t + "[night]\ncooler_set_point_c = nan\n", r"night\.cooler_set_point_c"),
        (lambda t: t + SIMULATOR + "speed = inf\n", r"simulator\.speed"),
        (lambda t: t + SIMULATOR + "[simulator.mount]\npark_az_deg = nan\n", r"park_az_deg"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_key(tmp_path, edit, where) -> None:
    with pytest.raises(ConfigError, match=where + r": expected a finite number \(not inf or nan\)"):
        load_config(write(tmp_path, edit(MINIMAL)))


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (
            lambda t: t.replace('"127.0.0.1:11111"', '"127.0.0.1:11111"\ntimeout_s = 1e12'),
            r"devices\.camera\.timeout_s: Input should be less than or equal to 3600",
        ),
        (
            lambda t: t.replace('"127.0.0.1:11111"', '"127.0.0.1:99999"'),
            r"devices\.camera\.address: expected host:port",
        ),
        (
            lambda t: t + "[sequencer]\nretries = 100000000000000000000000000000\n",
            r"sequencer\.retries: Input should be less than or equal to 20",
        ),
        (
            lambda t: (
                t + SIMULATOR + "[simulator.camera]\nexposure_min_s = 10\nexposure_max_s = 1\n"
            ),
            r"simulator\.camera: exposure_min_s \(10\) is above exposure_max_s \(1\)",
        ),
        (
            lambda t: t + SIMULATOR + "[simulator.sky]\nseed = -1\n",
            r"simulator\.sky\.seed: Input should be greater than or equal to 0",
        ),
        (
            lambda t: t + SIMULATOR + "[simulator.sky]\nstar_density_per_deg2 = 1e300\n",
            r"simulator\.sky\.star_density_per_deg2: Input should be less than or equal to",
        ),
        (
            lambda t: t.replace('name = "Test"', 'name = "Pic du Midi \\u0000"'),
            r"site\.name: text cannot contain a NUL character",
        ),
        (
            lambda t: t.replace('name = "Test"', 'name = ""'),
            r"site\.name: must not be empty \(got ''\)",
        ),
        (
            lambda t: t + '[data]\ndirectory = "a\\u0000b"\n',
            r"data\.directory: a path cannot contain a NUL character",
        ),
        (
            lambda t: t.replace("version = 1", "version = true"),
            r"version: expected one of \[1\], got True",
        ),
        (
            lambda t: t + '[[monitoring.sinks]]\nkind = "command"\ncommand = []\n',
            r"monitoring\.sinks\[0\]\.command: expected at least one item, got none",
        ),
        (
            lambda t: t + '[[monitoring.sinks]]\nkind = "webhook"\nurl = "ftp://x"\n',
            r"monitoring\.sinks\[0\]\.url: expected an http:// or https:// URL",
        ),
        (
            lambda t: t + '[[monitoring.sinks]]\nkind = "mail"\n',
            r"monitoring\.sinks\[0\]: key 'kind' must be one of 'webhook', 'command' "
            r"\(got 'mail'\)",
        ),
        (
            lambda t: t + "[site.extra]\nx = 1\n",
            r"site\.extra: unknown key",
        ),
        (
            lambda t: t + '[pipeline]\nstages = ["photometry", "photometry"]\n',
            r"pipeline: stages: photometry listed more than once",
        ),
    ],
)
def test_bounds_and_messages_in_the_users_terms(tmp_path, edit, pattern) -> None:
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(write(tmp_path, edit(MINIMAL)))
    for internal in ("Tuple", "after validation", "Value error", "instance of", "dictionary"):
        assert internal not in str(info.value)


def test_toml_nested_too_deeply_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, "a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match=r"obsctl\.toml: TOML nested too deeply"):
        load_config(path)


def test_one_role_list_for_config_devices_and_registry() -> None:
    from dataclasses import fields

    from obsctl.config import DevicesConfig
    from obsctl.devices import ROLES, DeviceSet
    from obsctl.drivers import registry

    assert tuple(DevicesConfig.model_fields) == ROLES
    assert tuple(f.name for f in fields(DeviceSet)) == ROLES
    assert registry.ROLES is ROLES


def test_default_serves_a_roll_off_roof_and_a_weather_station() -> None:
    sim = load_config().simulator
    assert sim is not None and sim.dome is not None and sim.weather is not None
    assert sim.dome.kind == "roll_off" and sim.dome.shutter_time_s == 20.0
    assert sim.weather.missing == ()


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (
            lambda t: t + SIMULATOR + '[devices.dome]\ndriver = "simulator"\n',
            r"devices\.dome uses driver 'simulator' but there is no \[simulator\.dome\] section",
        ),
        (
            lambda t: t + '[devices.weather]\ndriver = "simulator"\n',
            r"devices weather use driver 'simulator' but there is no \[simulator\] section",
        ),
        (
            lambda t: t + '[devices.dome]\ndriver = "serial"\nprotocol = "lx200"\nurl = "x"\n',
            r"devices\.dome: serial protocol 'lx200' drives a mount, not a dome",
        ),
        (
            lambda t: (
                t
                + '[devices.dome]\ndriver = "alpaca"\naddress = "127.0.0.1:1"\n'
                + 'equatorial_system = "j2000"\n'
            ),
            r"devices\.dome: equatorial_system applies to a mount only",
        ),
        (
            lambda t: t + SIMULATOR + '[simulator.dome]\nkind = "clamshell"\n',
            r"simulator\.dome\.kind: Input should be 'roll_off' or 'rotating'",
        ),
        (
            lambda t: t + SIMULATOR + "[simulator.dome]\nshutter_time_s = 0\n",
            r"simulator\.dome\.shutter_time_s: Input should be greater than 0",
        ),
        (
            lambda t: t + SIMULATOR + "[simulator.weather]\nhumidity_pct = 101\n",
            r"simulator\.weather\.humidity_pct: Input should be less than or equal to 100",
        ),
        (
            lambda t: t + SIMULATOR + '[simulator.weather]\nmissing = ["pressure_hpa"]\n',
            r"simulator\.weather\.missing\[0\]: Input should be 'cloud_cover_pct'",
        ),
    ],
)
def test_dome_and_weather_config_errors(tmp_path, edit, pattern) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config(write(tmp_path, edit(MINIMAL)))


def test_default_serves_a_flat_panel_on_a_closed_cover() -> None:
    config = load_config()
    sim = config.simulator
    assert sim is not None and sim.cover_calibrator is not None
    panel = sim.cover_calibrator
    assert (panel.max_brightness, panel.cover_time_s, panel.warmup_s) == (255, 10.0, 2.0)
    # Closed, as a night starts: the sequencer opens it for the first sky frame.
    assert panel.has_cover and not panel.start_open
    assert config.devices.cover_calibrator is not None


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (
            lambda t: t + SIMULATOR + '[devices.cover_calibrator]\ndriver = "simulator"\n',
            r"devices\.cover_calibrator uses driver 'simulator' but there is no "
            r"\[simulator\.cover_calibrator\] section",
        ),
        (
            lambda t: (
                t + '[devices.cover_calibrator]\ndriver = "serial"\nprotocol = "qhycfw"\n'
                'url = "x"\n'
            ),
            r"devices\.cover_calibrator: serial protocol 'qhycfw' drives a filter wheel, not a "
            r"cover calibrator",
        ),
        (
            lambda t: t + SIMULATOR + "[simulator.cover_calibrator]\nmax_brightness = 0\n",
            r"simulator\.cover_calibrator\.max_brightness: Input should be greater than or "
            r"equal to 1",
        ),
        (
            lambda t: t + SIMULATOR + "[simulator.cover_calibrator]\ncover_time_s = 0\n",
            r"simulator\.cover_calibrator\.cover_time_s: Input should be greater than 0",
        ),
        (
            lambda t: t + SIMULATOR + "[simulator.cover_calibrator]\nwarmup_s = -1\n",
            r"simulator\.cover_calibrator\.warmup_s: Input should be greater than or equal to 0",
        ),
        (
            lambda t: t + SIMULATOR + "[simulator.cover_calibrator]\nbrightness = 3\n",
            r"simulator\.cover_calibrator\.brightness: unknown key",
        ),
    ],
)
def test_cover_calibrator_config_errors(tmp_path, edit, pattern) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config(write(tmp_path, edit(MINIMAL)))


def test_a_simulated_panel_with_its_section_loads(tmp_path) -> None:
    text = (
        MINIMAL
        + SIMULATOR
        + '[devices.cover_calibrator]\ndriver = "simulator"\n'
        + "[simulator.cover_calibrator]\nhas_cover = false\nwarmup_s = 0\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.simulator is not None and config.simulator.cover_calibrator is not None
    assert not config.simulator.cover_calibrator.has_cover
    assert config.simulator.cover_calibrator.warmup_s == 0.0
