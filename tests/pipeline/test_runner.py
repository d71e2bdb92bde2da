"""The per-frame pipeline inside the daemon and in `obsctl reduce`, on simulated frames."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from obsctl.acquisition.sequence import ExposureStep
from obsctl.cli import main
from obsctl.daemon import Daemon
from obsctl.frame import Frame
from obsctl.pipeline.worker import output_paths, process_file, run_stages
from obsctl.store.datadir import DataDir

from ..daemon_helpers import (
    daemon_config,
    running_daemon,
    standard_sequence,
    wait_for,
    write_config,
)

PIPELINE = {"enabled": True, "workers": 1, "reference_catalog": "synthetic"}
# A 512 px frame of a rich field: a few hundred stars for astrometry and the zero point.
SIMULATOR = {
    "camera": {"width_px": 512, "height_px": 512, "readout_time_s": 0.5},
    "sky": {"star_density_per_deg2": 20000.0},
}


def config_with_pipeline(data: Path, **pipeline: object):
    return daemon_config(data, pipeline={**PIPELINE, **pipeline}, simulator=SIMULATOR)


def rows(data: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(DataDir(data).log_path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def test_every_light_frame_is_processed(tmp_path) -> None:
    data = tmp_path / "data"
    await Daemon(config_with_pipeline(data)).run(
        [standard_sequence(lights=1, exposure_s=30.0)],
        until_idle=True,
        install_signal_handlers=False,
    )
    states = rows(
        data,
        "SELECT e.image_type, p.state, p.calibrated_path, p.catalog_path "
        "FROM exposures e LEFT JOIN processing p ON p.exposure_id = e.id",
    )
    lights = [s for s in states if s[0] == "LIGHT"]
    assert len(lights) == 2 and all(s[1] == "done" for s in lights)
    assert all(s[1] is None for s in states if s[0] != "LIGHT")  # calibration frames wait
    for _, _, calibrated, catalog in lights:
        assert (data / calibrated).exists() and (data / catalog).exists()
        assert calibrated.startswith("reduced/")
    metrics = rows(
        data, "SELECT fwhm_arcsec, star_count, zero_point, wcs_rms_arcsec, flags FROM frame_metrics"
    )
    assert len(metrics) == 2
    for fwhm, stars, zp, wcs_rms, flags in metrics:
        assert 1.7 < fwhm < 2.8  # the simulator's seeing is 2.2"
        assert stars > 50
        assert zp is not None and wcs_rms is not None and wcs_rms < 0.3
        assert "no master bias" in flags  # no calibration masters were built
    n_measured = rows(data, "SELECT COUNT(*), COUNT(ra_deg), COUNT(mag) FROM measurements")[0]
    assert n_measured[0] > 100 and n_measured[1] == n_measured[0] and n_measured[2] > 50
    # The calibration stars are stored for the night's fit, which ran after each frame.
    used = rows(
        data,
        "SELECT COUNT(*), COUNT(inst_mag), COUNT(ref_mag), COUNT(ref_colour) FROM measurements "
        "WHERE zp_used = 1",
    )[0]
    assert used[0] > 20 and used[1] == used[2] == used[0]
    fitted = rows(data, "SELECT filter, mode, n_frames, colour_term FROM night_fits")
    assert sorted(f[0] for f in fitted) == ["R", "V"]  # one frame each: differential
    assert all(f[1] == "differential" and f[2] == 1 for f in fitted)
    assert rows(data, "SELECT COUNT(*) FROM night_fit_frames")[0][0] == 2
    catalog = Table.read(data / lights[0][3])
    assert {"x", "y", "ra_deg", "dec_deg", "flux", "mag"} <= set(catalog.colnames)
    async with (
        running_daemon(config_with_pipeline(data, enabled=False)) as daemon,
        aiohttp.ClientSession() as http,
        http.get(f"{daemon.api_url}/api/metrics") as reply,
    ):
        trend = await reply.json()
    assert len(trend) == 2 and all(0.9 < t["transparency"] <= 1.0 for t in trend)
    assert {t["filter"] for t in trend} == {"V", "R"}
    header = fits.getheader(data / lights[0][2])
    assert "PHOTZP" in header and header["CTYPE1"].startswith("RA---TAN")
    assert fits.getdata(data / lights[0][2]).dtype == np.dtype(">f4")
    # Classification: every measurement has a class; counts and a grade per frame; a mask.
    n, n_class, n_p = rows(
        data, "SELECT COUNT(*), COUNT(source_class), COUNT(p_star) FROM measurements"
    )[0]
    assert n == n_class == n_p
    graded = rows(
        data,
        "SELECT n_star, n_cosmic_ray, star_count, quality_score, quality_grade FROM frame_metrics",
    )
    for n_star, n_cosmic, stars, score, grade in graded:
        # star_count leaves out the few stars SEP also flags as too sharp.
        assert n_star >= stars > 50 and n_star - stars <= 0.05 * n_star and n_cosmic is not None
        assert 0.0 < score <= 1.0 and grade in {"A", "B", "C", "D"}
    with fits.open(data / lights[0][2]) as hdul:
        assert hdul["CRMASK"].data.shape == hdul[0].data.shape
    assert "classify" in header["PIPEPROV"]


async def test_masters_are_built_after_calibration_frames_and_lights_redone(tmp_path) -> None:
    data = tmp_path / "data"
    light = standard_sequence(lights=1, exposure_s=30.0)
    sequence = light.model_copy(
        update={
            "steps": (
                light.steps[0],
                ExposureStep(image_type="DARK", exposure_s=30.0, count=3),
                ExposureStep(image_type="BIAS", count=3),
            )
        }
    )
    await Daemon(config_with_pipeline(data)).run(
        [sequence], until_idle=True, install_signal_handlers=False
    )
    assert sorted(rows(data, "SELECT kind, n_frames FROM masters")) == [("bias", 3), ("dark", 3)]
    # The light frame came before the darks: it was processed again once they were combined.
    ((calibrated, flags),) = rows(
        data,
        "SELECT p.calibrated_path, m.flags FROM processing p "
        "JOIN frame_metrics m ON m.exposure_id = p.exposure_id",
    )
    assert "no master bias" not in flags and "no master dark" not in flags
    assert "no master flat" in flags  # no flats were taken
    header = fits.getheader(data / calibrated)
    assert header["CALSTAT"] == "BD" and header["MBIAS"] and header["MDARK"]


async def test_a_killed_worker_costs_no_frame(tmp_path) -> None:
    # The OOM killer takes a worker: the frames it held are retried on a new pool.
    data = tmp_path / "data"
    async with running_daemon(config_with_pipeline(data)) as daemon:
        daemon.enqueue(standard_sequence(lights=2, exposure_s=30.0))
        await wait_for(lambda: bool(rows(data, "SELECT 1 FROM processing WHERE state = 'running'")))
        assert daemon.pipeline is not None and daemon.pipeline._pool is not None
        for pid in list(daemon.pipeline._pool._processes):  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)
        await wait_for(
            lambda: (
                rows(data, "SELECT state, COUNT(*) FROM processing GROUP BY state") == [("done", 4)]
            ),
            timeout_s=90,
        )


async def test_restart_processes_what_was_left(tmp_path) -> None:
    data = tmp_path / "data"
    config = config_with_pipeline(data, enabled=False)
    await Daemon(config).run(
        [standard_sequence(lights=1)], until_idle=True, install_signal_handlers=False
    )
    assert rows(data, "SELECT COUNT(*) FROM processing")[0][0] == 0
    # One frame was being processed when the daemon died.
    con = sqlite3.connect(DataDir(data).log_path)
    con.execute(
        "INSERT INTO processing (exposure_id, state, updated_utc) VALUES (1, 'running', 'x')"
    )
    con.commit()
    con.close()
    await Daemon(config_with_pipeline(data)).run(until_idle=True, install_signal_handlers=False)
    assert rows(data, "SELECT state, attempts FROM processing ORDER BY exposure_id") == [
        ("done", 1),
        ("done", 1),
    ]


class Boom:
    name = "boom"

    def process(self, frame: Frame) -> Frame:
        raise RuntimeError("stage bug")


class Mark:
    def __init__(self, name: str) -> None:
        self.name = name

    def process(self, frame: Frame) -> Frame:
        return frame.with_stage(self.name)


@pytest.mark.parametrize(
    ("policy", "failed", "provenance", "flags"),
    [
        ("abort", "boom", ("a",), ()),
        ("skip", None, ("a", "b"), ()),
        ("mark", None, ("a", "b"), ("boom failed: RuntimeError: stage bug",)),
    ],
)
def test_failure_policies(policy, failed, provenance, flags) -> None:
    frame = Frame(data=np.zeros((4, 4), np.float32), header=fits.Header())
    out, stage, reason, seconds = run_stages(
        frame, [(Mark("a"), "abort"), (Boom(), policy), (Mark("b"), "abort")]
    )
    assert stage == failed
    assert out.provenance == provenance and out.flags == flags
    assert (reason is None) == (failed is None)
    assert set(seconds) <= {"a", "boom", "b"}


class LongFailure:
    name = "verbose"

    def process(self, frame: Frame) -> Frame:
        raise RuntimeError("a reason far too long to share one header card with a comment " * 2)


def test_long_flags_are_written_without_a_warning(tmp_path) -> None:
    # filterwarnings = error: astropy's "Card is too long" truncation warning would fail this.
    raw = tmp_path / "frame.fits"
    fits.writeto(raw, np.zeros((8, 8), np.float32))
    result = process_file(
        str(raw), stages=[(LongFailure(), "mark"), (Mark("b"), "abort")], data_dir=tmp_path
    )
    assert result.calibrated_path is not None
    header = fits.getheader(result.calibrated_path)
    assert header["PIPEFLG1"].startswith("verbose failed: RuntimeError: a reason far too long")
    assert header["PIPEPROV"] == "b"


def test_output_paths(tmp_path) -> None:
    raw = tmp_path / "raw" / "2026-11-25" / "2026-11-25_0001_LIGHT_M51_V_30s.fits"
    cal, cat = output_paths(raw, tmp_path)
    assert cal == tmp_path / "reduced" / "2026-11-25" / "2026-11-25_0001_LIGHT_M51_V_30s_cal.fits"
    assert cat.name.endswith("_cat.fits")
    elsewhere = tmp_path / "other" / "img.fit"
    assert output_paths(elsewhere, tmp_path)[0] == tmp_path / "other" / "img_cal.fits"


def test_reduce_files_from_elsewhere(tmp_path, capsys) -> None:
    from obsctl.simulators import scenes
    from obsctl.simulators.render import render_exposure

    sensor = scenes.sensor(
        full_well_e=51000, read_noise_e=3.5, adu_per_offset=10, dark_current_e_s=0.002,
        dark_doubling_c=6.3,
    )  # fmt: skip
    spec = scenes.exposure(sensor, exposure_s=60, electrons_per_adu=0.8, offset=0, seed=5)
    scene = scenes.sky(
        pixel_scale_arcsec=0.97, seeing_arcsec=2.2, zero_point_mag=21.0,
        catalog_seed=2024, density_per_deg2=20000.0, mag_bright=8.0, mag_limit=19.5,
    )  # fmt: skip
    image = render_exposure(sensor, spec, scene).image
    foreign = tmp_path / "other_tool.fits"
    cards = [("EXPTIME", 60.0), ("EGAIN", 0.8), ("INSTRUME", "x")]
    fits.PrimaryHDU(image, header=fits.Header(cards)).writeto(foreign)
    no_gain = tmp_path / "no_gain.fits"
    fits.PrimaryHDU(image, header=fits.Header(cards[:1])).writeto(no_gain)
    broken = tmp_path / "broken.fits"
    broken.write_bytes(b"SIMPLE  =  T" + b" " * 100)
    body = f"[data]\ndirectory='{tmp_path / 'data'}'\n[pipeline]\nworkers=1\n"
    config = write_config(tmp_path, body, camera="127.0.0.1:9", latitude_deg=0, longitude_deg=0)
    code = main(["--config", str(config), "reduce", str(foreign), str(broken), str(no_gain)])
    captured = capsys.readouterr()
    err = captured.err
    assert code == 1  # one file could not be reduced; the other two were
    assert "broken.fits: FAILED in load" in err
    assert "no_gain.fits: FAILED" not in err and "1 e-/ADU assumed; errors approximate" in err
    assert "2 of 3 frame(s) reduced; 1 failed" in captured.out
    assert "stage photometry" not in err  # the file's name says which frame, not "frame None"
    assert "other_tool.fits:" in err and "sources" in err
    assert (tmp_path / "other_tool_cal.fits").exists()
    assert len(Table.read(tmp_path / "other_tool_cat.fits")) > 20


@pytest.mark.parametrize(
    ("naxis", "kept", "what"),
    [
        # Terabytes: astropy's own read fails with a bare "[Errno 22] Invalid argument".
        ((10_000_000, 10_000_000), None, "declares 10000000 x 10000000 at BITPIX 16"),
        ((64, 64), 4000, "declares 64 x 64 at BITPIX 16 (8192 bytes of data) but only 4000"),
    ],
    ids=["absurd-naxis", "truncated"],
)
def test_a_file_missing_its_data_is_named_with_what_is_wrong(tmp_path, naxis, kept, what) -> None:
    path = tmp_path / "frame.fits"
    fits.PrimaryHDU(np.zeros((64, 64), np.uint16)).writeto(path)
    raw = bytearray(path.read_bytes())
    for axis, size in enumerate(naxis, start=1):
        key = f"NAXIS{axis}  = ".encode()
        at = raw.index(key)
        raw[at : at + 30] = key + f"{size:>20d}".encode()
    header_end = 2880
    path.write_bytes(bytes(raw[: header_end + kept] if kept is not None else raw))
    result = process_file(str(path), stages=[(Mark("b"), "abort")], data_dir=tmp_path)
    assert result.failed_stage == "load"
    assert str(path) in result.reason and what in result.reason, result.reason
    assert "truncated or its header damaged" in result.reason


def test_refit_night_stores_extinction_and_colour_terms_per_filter(tmp_path) -> None:
    from obsctl.pipeline.nightfit import refit_night
    from obsctl.store.exposure_log import ExposureLog

    from ..processing.test_extinction import TRUTH
    from ..store.test_exposure_log import log_night

    log_db = ExposureLog(tmp_path / "obsctl.sqlite")
    try:
        ids = log_night(log_db, "2026-11-25", frames=30, stars=60)
        log_night(log_db, "2026-11-26", filters=("V",), clouds=0.6, cloudy_fraction=0.5, seed=9)
        fits = refit_night(log_db, "2026-11-25")
        assert sorted(fits) == ["B", "R", "V"]
        stored = {r["filter"]: r for r in log_db.night_fits("2026-11-25")}
        frames = log_db.night_fit_frames("2026-11-25")
        for filt, truth in TRUTH.items():
            row = stored[filt]
            assert row["mode"] == "all-sky" and row["photometric"] == 1, row["reason"]
            assert row["k"] == pytest.approx(truth["k"], abs=0.01)
            assert row["colour_term"] == pytest.approx(-truth["c"], abs=0.01)
            assert row["n_frames"] == 30 and row["airmass_min"] == pytest.approx(1.0)
            mine = [f for f in frames if f["filter"] == filt]
            assert [f["exposure_id"] for f in mine] == ids[filt]
            # Zero points fall with airmass, along the stored line.
            airmass = np.array([f["airmass"] for f in mine])
            zp = np.array([f["zero_point"] for f in mine])
            assert np.corrcoef(airmass, zp)[0, 1] < -0.99
            assert np.allclose(zp, row["zp0"] - row["k"] * airmass, atol=0.015)
        # ... and differ by filter.
        assert stored["V"]["zp0"] - stored["B"]["zp0"] > 0.3
        refit_night(log_db, "2026-11-25")  # again: replaced, not added to
        assert len(log_db.night_fit_frames("2026-11-25")) == 90
        # The cloudy night: differential, no extinction, the colour term still right.
        refit_night(log_db, "2026-11-26")
        (cloudy,) = log_db.night_fits("2026-11-26")
        assert cloudy["photometric"] == 0 and cloudy["mode"] == "differential"
        assert cloudy["k"] is None and "not photometric" in cloudy["reason"]
        assert cloudy["colour_term"] == pytest.approx(-TRUTH["V"]["c"], abs=0.01)
        assert log_db.night_colour_term("2026-11-27", "V") == (cloudy["colour_term"], "2026-11-26")
        assert refit_night(log_db, "2026-11-27") == {}  # no frames yet
    finally:
        log_db.close()
