"""The README commands: devices and expose, alone and against a running `obsctl simulate`."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from astropy.io import fits

from obsctl.cli import main

from .daemon_helpers import free_port, write_config

CONFIG = """
[simulator]
start = "auto"
port = {port}
discovery_port = {discovery}
speed = 100.0
[simulator.camera]
width_px = 160
height_px = 120
"""


# Served, with the camera, by the embedded simulators.
ROLES = ("filter_wheel", "mount", "safety_monitor")


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def write_cli_config(tmp_path: Path) -> Path:
    port = free_port()
    body = CONFIG.format(port=port, discovery=free_port())
    return write_config(tmp_path, body, camera=f"127.0.0.1:{port}", also=ROLES)


def expose(config: Path, *args: str) -> int:
    """Run ``obsctl --config <config> expose <args>``; return the exit code."""
    return main(["--config", str(config), "expose", *args])


def test_devices_and_expose_embedded(tmp_path, capsys) -> None:
    config = write_cli_config(tmp_path)
    assert main(["--config", str(config), "devices"]) == 0
    out = capsys.readouterr().out
    for role in ("camera", "filter_wheel", "mount", "safety_monitor"):
        assert role in out
    assert "SIM-CMOS 160x120" in out and "SAFE" in out
    frame = tmp_path / "frame.fits"
    assert expose(config, "--exptime", "2", "--filter", "R", "--out", str(frame)) == 0
    with fits.open(frame) as hdul:
        assert hdul[0].data.shape == (120, 160)
        h = hdul[0].header
    assert h["FILTER"] == "R" and h["EXPTIME"] == 2.0 and h["IMAGETYP"] == "LIGHT"
    assert "DATE-OBS" in h and "CCD-TEMP" in h and "RA" in h


def test_expose_dark_bias_and_binning(tmp_path) -> None:
    config = write_cli_config(tmp_path)
    for kind in ("dark", "bias"):
        out = tmp_path / f"{kind}.fits"
        assert (
            expose(config, "--exptime", "1", "--type", kind, "--bin", "2", "--out", str(out)) == 0
        )
        h = fits.getheader(out)
        assert h["IMAGETYP"] == kind.upper() and h["XBINNING"] == 2
        assert (h["NAXIS1"], h["NAXIS2"]) == (80, 60)


def test_unknown_filter_is_a_clear_error(tmp_path, capsys) -> None:
    config = write_cli_config(tmp_path)
    code = expose(config, "--exptime", "1", "--filter", "Ha", "--out", str(tmp_path / "x.fits"))
    assert code == 1
    err = capsys.readouterr().err
    # The message alone, not the class name: "obsctl: FilterNotFoundError: ..." says nothing more.
    assert err == "obsctl: filter_wheel: no filter 'Ha'; the wheel holds L, B, V, R, I\n"
    assert not (tmp_path / "x.fits").exists()


def test_bad_config_exits_2_with_the_key(tmp_path, capsys) -> None:
    body = CONFIG.format(port=1, discovery=2)
    bad = write_config(tmp_path, body, also=ROLES, filename="bad.toml")
    bad.write_text(bad.read_text().replace("aperture_mm = 200", ""))
    assert main(["--config", str(bad), "devices"]) == 2
    assert "telescope.aperture_mm: required key is missing" in capsys.readouterr().err


def test_against_a_running_obsctl_simulate(tmp_path) -> None:
    config = write_cli_config(tmp_path)
    server = subprocess.Popen(
        [sys.executable, "-m", "obsctl.cli", "--config", str(config), "simulate"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = int(config.read_text().split("port = ")[1].split()[0])
        deadline = time.monotonic() + 30
        while not listening(port):
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.05)
        for args in (["devices"], ["expose", "--exptime", "1", "--out", "a.fits"]):
            done = subprocess.run(
                [sys.executable, "-m", "obsctl.cli", "--config", str(config), "-v", *args],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            assert "is served already; using it" in done.stderr
        assert fits.getdata(tmp_path / "a.fits").shape == (120, 160)
    finally:
        server.terminate()
        server.wait(timeout=30)


# An observatory simulated inside the obsctl process: no ports, quick to start.
IN_PROCESS = """
version = 1
[site]
name = "Test"
latitude_deg = 28.76
longitude_deg = -17.88
[telescope]
focal_length_mm = 800
aperture_mm = 200
[devices.camera]
driver = "simulator"
[devices.filter_wheel]
driver = "simulator"
[data]
directory = "{data}"
[pipeline]
enabled = false
[server]
port = {port}
[simulator]
start = "never"
speed = 100.0
[simulator.camera]
width_px = 64
height_px = 48
"""


def write_in_process_config(tmp_path: Path) -> Path:
    path = tmp_path / "in-process.toml"
    path.write_text(IN_PROCESS.format(data=tmp_path / "data", port=free_port()))
    return path


def test_run_fails_when_a_sequence_it_was_given_did_not_end_done(tmp_path, capsys) -> None:
    config = write_in_process_config(tmp_path)
    mixed = tmp_path / "mixed.toml"
    mixed.write_text(
        'name = "mixed"\n'
        '[[steps]]\nimage_type = "DARK"\nexposure_s = 5000\n'  # beyond the camera's 3600 s
        '[[steps]]\nimage_type = "BIAS"\n'
        '[[steps]]\nimage_type = "FLAT"\nfilter = "Ha"\nexposure_s = 1\n'  # not in the wheel
    )
    fine = tmp_path / "fine.toml"
    fine.write_text('name = "fine"\n[[steps]]\nimage_type = "BIAS"\n')
    args = ["--config", str(config), "run", "--until-idle"]
    assert main([*args, "--sequence", str(fine)]) == 0
    capsys.readouterr()
    assert main([*args, "--sequence", str(mixed), "--sequence", str(fine)]) == 1
    out, err = capsys.readouterr()
    assert "2 frame(s) stored this run" in out
    (line,) = err.splitlines()
    assert line.startswith("obsctl: sequence 'mixed' (#2) ended incomplete: step 0 skipped: ")
    assert "exposure 5000 s is outside the camera's range 1e-05 to 3600 s" in line
    assert "; step 2 skipped: filter_wheel: no filter 'Ha'" in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["expose", "--exptime", "inf", "--out", "x.fits"], "--exptime: expected a number above 0"),
        (["expose", "--exptime", "nan", "--out", "x.fits"], "--exptime: expected a number above 0"),
        (["expose", "--exptime", "1e308", "--out", "x.fits"], "at most 86400 s, got 1e+308"),
        (["expose", "--exptime", "0", "--out", "x.fits"], "--exptime: expected a number above 0"),
        (["expose", "--exptime", "1", "--bin", "0", "--out", "x.fits"], "--bin: expected a"),
        (["expose", "--exptime", "1", "--out", "."], "--out: . is a folder"),
        (["log", "--limit", "-5"], "--limit: expected a number from 0 to 1,000,000,000"),
        (["log", "--limit", "9" * 30], "--limit: expected a number from 0"),
        (["log", "--night", "\u2606"], "--night: night '\u2606': expected a date as YYYY-MM-DD"),
        (["alerts", "--limit", "-1"], "--limit: expected a number from 0"),
        (["calib", "build", "--night", ""], "--night: night '': expected a date"),
        (["reduce", "--workers", "0", "x.fits"], "--workers: expected a number from 1 to 64"),
        (["night", "--plan", "p.toml", "--speed", "0"], "--speed: expected a number above 0"),
        (["night", "--plan", "p.toml", "--speed", "inf"], "--speed: expected a number above 0"),
        (["night", "--plan", "p.toml", "--date", "9999-12-31"], "--date: expected a night in"),
        (["plan", "check", "p.toml", "--night", "0001-01-01"], "--night: expected a night in"),
        (["model", "train", "--seed", "-1"], "--seed: expected a number from 0 to 4,294,967,295"),
        (
            ["catalog", "import-synthetic", "--ra", "nan", "--dec", "0", "--radius", "1"],
            "--ra: expected a number from 0 to 360 deg, got nan",
        ),
        (
            ["catalog", "import-synthetic", "--ra", "0", "--dec", "0", "--radius", "180"],
            "--radius: 180 deg holds about 1.03e+08 synthetic stars, more than 5,000,000",
        ),
    ],
)
def test_hostile_arguments_are_clear_errors(tmp_path, monkeypatch, capsys, argv, message) -> None:
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, f'[data]\ndirectory = "{tmp_path / "data"}"\n')
    assert main(["--config", str(config), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("obsctl: ") and message in err, err
    assert "Traceback" not in err
