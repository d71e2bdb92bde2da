"""The README commands: devices and expose, alone and against a running `obsctl simulate`."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

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
    assert "no filter 'Ha'; the wheel holds L, B, V, R, I" in capsys.readouterr().err
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
