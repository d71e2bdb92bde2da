"""Serial device and serial simulator sections of the config: what is accepted and refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from obsctl.config import SerialDeviceConfig, load_config
from obsctl.errors import ConfigError

from ...daemon_helpers import write_config


def write(tmp_path: Path, text: str) -> Path:
    return write_config(tmp_path, text, camera="127.0.0.1:11111", filename="obs.toml")


def test_serial_devices_and_simulators_load(tmp_path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
[devices.mount]
driver = "serial"
protocol = "lx200"
url = "/dev/ttyUSB0"
[devices.filter_wheel]
driver = "serial"
protocol = "qhycfw"
url = "rfc2217://10.0.0.5:4000"
baudrate = 19200
filter_names = ["L", "R"]
focus_offsets = [0, 12]
[simulator.serial]
mount_tcp_port = 0
""",
        )
    )
    mount = config.devices.mount
    assert isinstance(mount, SerialDeviceConfig)
    assert (mount.baudrate, mount.timeout_s, mount.move_timeout_s) == (9600, 2.0, 60.0)
    wheel = config.devices.filter_wheel
    assert isinstance(wheel, SerialDeviceConfig) and wheel.filter_names == ("L", "R")
    assert config.simulator is not None and config.simulator.serial is not None
    assert config.simulator.serial.pty and config.simulator.serial.filter_wheel_tcp_port is None


@pytest.mark.parametrize(
    ("section", "pattern"),
    [
        (
            '[devices.filter_wheel]\ndriver = "serial"\nprotocol = "lx200"\nurl = "/dev/ttyS0"',
            r"protocol 'lx200' drives a mount, not a filter wheel",
        ),
        (
            '[devices.mount]\ndriver = "serial"\nprotocol = "qhycfw"\nurl = "/dev/ttyS0"',
            r"protocol 'qhycfw' drives a filter wheel, not a mount",
        ),
        (
            '[devices.mount]\ndriver = "serial"\nprotocol = "nexstar"\nurl = "/dev/ttyS0"',
            r"devices\.mount\.protocol: Input should be 'lx200' or 'qhycfw'",
        ),
        (
            '[devices.mount]\ndriver = "serial"\nprotocol = "lx200"',
            r"devices\.mount\.url: required key is missing",
        ),
        (
            '[devices.mount]\ndriver = "serial"\nprotocol = "lx200"\nurl = "x"\nbaud = 9600',
            r"devices\.mount\.baud: unknown key",
        ),
        (
            '[devices.filter_wheel]\ndriver = "serial"\nprotocol = "qhycfw"\nurl = "x"\n'
            'filter_names = ["L"]\nfocus_offsets = [1, 2]',
            r"focus_offsets has 2 entries but filter_names has 1",
        ),
        (
            '[devices.mount]\ndriver = "serial"\nprotocol = "lx200"\nurl = "x"\n'
            'filter_names = ["L"]',
            r"apply to protocol 'qhycfw' only",
        ),
        (
            "[simulator.serial]\nmount_tcp_port = 70000",
            r"simulator\.serial\.mount_tcp_port: Input should be less than or equal to 65535",
        ),
    ],
)
def test_bad_serial_sections_name_the_key(tmp_path, section: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config(write(tmp_path, section))
