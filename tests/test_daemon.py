"""The daemon runs sequences on simulators over real Alpaca HTTP and never loses a frame."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from astropy.io import fits

from obsctl.acquisition.sequence import ExposureStep, Sequence
from obsctl.daemon import Daemon
from obsctl.errors import StorageError
from obsctl.simulators.faults import Fault
from obsctl.store.datadir import DataDir
from obsctl.store.exposure_log import ExposureLog
from obsctl.store.headers import object_name
from obsctl.store.unstored import temporary_folder

from .daemon_helpers import (
    daemon_config,
    overhead_target,
    running_daemon,
    standard_sequence,
    wait_for,
)
from .mounts import fill, read_only_bind, tmpfs

HEADER_KEYS = (
    "SIMPLE",
    "BITPIX",
    "NAXIS",
    "NAXIS1",
    "NAXIS2",
    "DATE-OBS",
    "MJD-OBS",
    "MJD-MID",
    "JD",
    "EXPTIME",
    "EXPOSURE",
    "IMAGETYP",
    "OBJECT",
    "OBJCTRA",
    "OBJCTDEC",
    "RA",
    "DEC",
    "RADESYS",
    "EQUINOX",
    "ALT",
    "AZ",
    "AIRMASS",
    "FILTER",
    "XBINNING",
    "YBINNING",
    "XPIXSZ",
    "YPIXSZ",
    "GAIN",
    "OFFSET",
    "EGAIN",
    "CCD-TEMP",
    "READOUTM",
    "INSTRUME",
    "TELESCOP",
    "SITENAME",
    "SITELAT",
    "SITELONG",
    "SITEELEV",
    "FOCALLEN",
    "PIERSIDE",
    "FRAMENUM",
    "DAY-OBS",
    "CTYPE1",
    "CTYPE2",
    "CRVAL1",
    "CRVAL2",
    "CRPIX1",
    "CRPIX2",
    "CD1_1",
    "CD2_2",
)


def logged(
    data_dir: Path, read: Callable[[ExposureLog], list[dict]] = ExposureLog.exposures
) -> list[dict]:
    """Rows of a data directory's exposure log: its exposures, or what ``read`` returns."""
    db = ExposureLog(DataDir(data_dir).log_path)
    try:
        return read(db)
    finally:
        db.close()


def failures(data_dir: Path) -> list[dict]:
    return logged(data_dir, ExposureLog.failures)


async def test_sequence_runs_end_to_end(tmp_path) -> None:
    data = tmp_path / "data"
    sequence = standard_sequence()
    await Daemon(daemon_config(data)).run(
        [sequence], until_idle=True, install_signal_handlers=False
    )
    rows = logged(data)
    assert [r["image_type"] for r in rows] == ["LIGHT"] * 4 + ["DARK"] * 2 + ["BIAS"] * 2
    assert [r["filter"] for r in rows[:4]] == ["V", "V", "R", "R"]
    files = sorted((data / "raw").glob("*/*.fits"))
    assert len(files) == 8
    assert {r["file_path"] for r in rows} == {str(f.relative_to(data)) for f in files}
    assert not list((data / "raw").glob("*/.*.tmp"))
    light = fits.getheader(data / rows[0]["file_path"])
    for key in HEADER_KEYS:
        assert key in light, key
    assert light["IMAGETYP"] == "LIGHT" and light["OBJECT"] == sequence.target.name
    assert light["FILTER"] == "V" and light["EXPTIME"] == pytest.approx(1.0)
    assert light["RA"] == pytest.approx(sequence.target.ra_deg, abs=1e-3)  # read from the mount
    assert light["CCD-TEMP"] == pytest.approx(rows[0]["ccd_temp_c"])
    assert rows[0]["airmass"] == pytest.approx(light["AIRMASS"], abs=1e-4)
    dark = fits.getheader(data / rows[4]["file_path"])
    assert dark["IMAGETYP"] == "DARK" and "CTYPE1" not in dark
    assert [r["frame_index"] for r in rows] == [0, 1, 0, 1, 0, 1, 0, 1]
    assert fits.getdata(data / rows[0]["file_path"]).shape == (96, 128)


async def test_a_target_of_any_unicode_is_stored_as_given(tmp_path) -> None:
    """The log keeps the name as given; FITS gets an ASCII form and the name it encodes."""
    data = tmp_path / "data"
    name = "\u03b1 Ori \u2605\tcomp\u00e4rison"  # Greek, a star sign, a tab, an umlaut
    target = overhead_target(name)
    light = ExposureStep(image_type="LIGHT", filter="V", exposure_s=1.0, count=1)
    sequence = Sequence(name=f"{name} tonight", target=target, steps=(light,))
    await Daemon(daemon_config(data)).run(
        [sequence], until_idle=True, install_signal_handlers=False
    )
    (row,) = logged(data)
    assert row["target"] == name
    header = fits.getheader(data / row["file_path"])
    assert header["OBJECT"].startswith("alpha Ori") and header["OBJECT"].isascii()
    assert object_name(header) == name
    assert Path(row["file_path"]).name.isascii()


async def test_restart_resumes_without_repeating(tmp_path) -> None:
    data = tmp_path / "data"
    config = daemon_config(data)
    async with running_daemon(config, sequences=[standard_sequence(lights=3)]):
        await wait_for(lambda: len(list((data / "raw").glob("*/*.fits"))) >= 3)
    first = len(logged(data))
    assert 3 <= first < 10
    await Daemon(config).run(until_idle=True, install_signal_handlers=False)
    rows = logged(data)
    assert len(rows) == 10
    steps = [(r["step_index"], r["frame_index"]) for r in rows]
    assert len(set(steps)) == 10  # no frame taken twice


FAULTS = [
    (
        "camera",
        Fault(kind="hang", members=frozenset({"imagearray"}), count=1),
        "DeviceTimeoutError",
    ),
    # aiohttp resends an idempotent request once when a reused connection drops, so a
    # dropped line is only seen by the driver the second time.
    (
        "camera",
        Fault(kind="drop", members=frozenset({"imagearray"}), count=2),
        "DeviceConnectionError",
    ),
    ("camera", Fault(kind="http500", count=1), "DeviceConnectionError"),
    (
        "camera",
        Fault(
            kind="ascom_error",
            error_number=0x500,
            message="driver fault",
            members=frozenset({"startexposure"}),
            count=2,
        ),
        "DeviceError",
    ),
    ("camera", Fault(kind="corrupt_image", count=1), "ImageDownloadError"),
    ("camera", Fault(kind="truncate_image", count=1), "ImageDownloadError"),
    (
        "camera",
        Fault(kind="delay", seconds=2.0, members=frozenset({"camerastate"}), count=1),
        "DeviceTimeoutError",
    ),
    ("filterwheel", Fault(kind="http500", count=2), "DeviceConnectionError"),
    (
        "telescope",
        Fault(kind="drop", members=frozenset({"slewtocoordinatesasync"}), count=2),
        "DeviceConnectionError",
    ),
]


@pytest.mark.parametrize(
    ("device", "fault", "error"), FAULTS, ids=[f"{d}-{f.kind}" for d, f, _ in FAULTS]
)
async def test_transient_fault_is_retried_and_logged(tmp_path, device, fault, error) -> None:
    data = tmp_path / "data"
    async with running_daemon(daemon_config(data)) as daemon:
        daemon.simulators.faults(device, 0).set(fault)
        sid = daemon.enqueue(standard_sequence(lights=1))
        await wait_for(lambda: daemon.state.log_db.sequence(sid)["state"] == "done")
    rows = logged(data)
    assert len(rows) == 6  # every frame taken despite the fault
    assert all((data / r["file_path"]).exists() for r in rows)
    recorded = failures(data)
    assert recorded, "the failure was not logged"
    assert recorded[0]["error_type"] == error
    assert recorded[0]["action"] == "retry"


async def test_image_never_ready_is_retaken(tmp_path) -> None:
    data = tmp_path / "data"
    config = daemon_config(
        data, sequencer={"poll_s": 0.005, "backoff_s": 1.0, "readout_margin_s": 5.0}
    )
    async with running_daemon(config) as daemon:
        faults = daemon.simulators.faults("camera", 0)
        faults.set(Fault(kind="image_never_ready"))
        sid = daemon.enqueue(standard_sequence(lights=1))
        await wait_for(lambda: len(daemon.state.log_db.failures()) >= 1)
        faults.clear()
        await wait_for(lambda: daemon.state.log_db.sequence(sid)["state"] == "done")
    assert len(logged(data)) == 6
    assert failures(data)[0]["error_type"] == "DeviceTimeoutError"


async def test_permanent_fault_skips_the_step_not_the_night(tmp_path) -> None:
    data = tmp_path / "data"
    async with running_daemon(daemon_config(data)) as daemon:
        # The filter wheel refuses every move: both filter steps are skipped.
        daemon.simulators.faults("filterwheel", 0).set(
            Fault(
                kind="ascom_error",
                error_number=0x500,
                message="wheel jammed",
                members=frozenset({"position"}),
            )
        )
        sid = daemon.enqueue(standard_sequence(lights=1))
        await wait_for(lambda: daemon.state.log_db.sequence(sid)["state"] == "incomplete")
    rows = logged(data)
    assert [r["image_type"] for r in rows] == ["DARK", "DARK", "BIAS", "BIAS"]
    actions = [f["action"] for f in failures(data)]
    assert actions.count("skip") == 2 and "reconnect" in actions
    assert all("wheel jammed" in f["message"] for f in failures(data))


async def test_unsafe_aborts_parks_pauses_and_resumes(tmp_path) -> None:
    data = tmp_path / "data"
    config = daemon_config(data)
    async with running_daemon(config) as daemon:
        obs = daemon.simulators.observatory
        sequence = standard_sequence(lights=3, exposure_s=30.0)
        sid = daemon.enqueue(sequence)
        state = daemon.state
        await wait_for(lambda: len(state.log_db.exposures()) >= 1)
        await wait_for(lambda: state.activity.state == "exposing")
        unsafe_at = time.monotonic()
        obs.safety_monitor.set_safe(False)
        await wait_for(lambda: obs.mount.at_park, timeout_s=10)
        latency = state.supervisor.last_park_sent - unsafe_at
        frames_when_unsafe = len(state.log_db.exposures())
        assert not obs.mount.tracking
        assert not state.supervisor.is_safe
        await daemon.clock.sleep(50.0)  # a window in which nothing new may be exposed
        assert len(state.log_db.exposures()) == frames_when_unsafe
        obs.safety_monitor.set_safe(True)
        await wait_for(lambda: state.log_db.sequence(sid)["state"] == "done")
    rows = logged(data)
    assert len(rows) == 10
    assert len({(r["step_index"], r["frame_index"]) for r in rows}) == 10
    print(f"\nunsafe -> park command: {1e3 * latency:.1f} ms")
    # Typically a few ms. The bound is the sum of the deadlines the supervisor keeps on its
    # own thread, so neither a loaded machine nor the daemon's loop (which serves these
    # simulators) can pass it: a reading begun before the flip returns "safe" within
    # read_timeout_s; the next begins within poll_s and says "unsafe" or, unanswered within
    # read_timeout_s, counts as unsafe; stop-tracking returns within the mount's timeout_s,
    # then the park is sent. Only a deadline not kept, a defect, takes longer.
    safety = config.safety
    bound = 2 * safety.read_timeout_s + safety.poll_s + config.devices.mount.timeout_s
    assert latency < bound, f"{latency:.3f} s, bound {bound:.2f} s"


async def test_a_refused_park_is_sent_again_while_unsafe(tmp_path) -> None:
    """Found by bench/soak.py: one refused park command left the mount out all spell."""
    data = tmp_path / "data"
    async with running_daemon(daemon_config(data)) as daemon:
        obs = daemon.simulators.observatory
        state = daemon.state
        sid = daemon.enqueue(standard_sequence(lights=1))
        await wait_for(lambda: state.log_db.sequence(sid)["state"] == "done")
        assert not obs.mount.at_park
        refusal = Fault(kind="http500", members=frozenset({"park"}), count=1)
        daemon.simulators.faults("telescope", 0).set(refusal)
        obs.safety_monitor.set_safe(False)
        await wait_for(lambda: obs.mount.at_park, timeout_s=10)
        assert not state.supervisor.is_safe


async def test_flats_reach_the_target_level(tmp_path) -> None:
    data = tmp_path / "data"
    async with running_daemon(daemon_config(data)) as daemon:
        daemon.simulators.observatory.camera.flat_panel_on = True
        flat = functools.partial(ExposureStep, image_type="FLAT", flat_tolerance=0.1)
        flats = Sequence(
            name="flats",
            steps=(
                flat(filter="V", exposure_s=0.05, count=2, flat_target_adu=30000),
                flat(filter="B", exposure_s=20.0, count=1, flat_target_adu=20000),
            ),
        )
        sid = daemon.enqueue(flats)
        await wait_for(lambda: daemon.state.log_db.sequence(sid)["state"] == "done")
    rows = logged(data)
    assert [(r["image_type"], r["filter"]) for r in rows] == [
        ("FLAT", "V"),
        ("FLAT", "V"),
        ("FLAT", "B"),
    ]
    for row, target in zip(rows, (30000, 30000, 20000), strict=True):
        level = float(np.median(fits.getdata(data / row["file_path"])))
        assert abs(level / target - 1) < 0.1, (level, target)
        assert row["target"] is None
    assert rows[0]["exposure_s"] > 0.05  # scaled up from the first guess
    assert rows[2]["exposure_s"] < 20.0  # scaled down


async def test_dither_moves_between_frames(tmp_path) -> None:
    data = tmp_path / "data"
    base = standard_sequence(lights=3)
    sequence = Sequence(name="dither", target=base.target, steps=base.steps[:1], dither_arcsec=60.0)
    await Daemon(daemon_config(data)).run(
        [sequence], until_idle=True, install_signal_handlers=False
    )
    rows = logged(data)
    t = sequence.target
    offsets = [
        3600
        * np.hypot(
            (r["ra_deg"] - t.ra_deg) * np.cos(np.radians(t.dec_deg)), r["dec_deg"] - t.dec_deg
        )
        for r in rows
    ]
    assert len(rows) == 3
    assert all(o <= 60.5 for o in offsets)
    assert len({round(o, 3) for o in offsets[1:]}) == 2  # each later frame moved


async def test_stop_aborts_the_exposure_and_frees_the_camera(tmp_path) -> None:
    data = tmp_path / "data"
    async with running_daemon(daemon_config(data)) as daemon:
        long_dark = Sequence(
            name="long dark", steps=(ExposureStep(image_type="DARK", exposure_s=600.0),)
        )
        first = daemon.enqueue(long_dark)
        await wait_for(lambda: daemon.state.activity.state == "exposing")
        assert await daemon.stop_sequence(first)
        assert not await daemon.stop_sequence(first)  # already stopped
        biases = Sequence(name="biases", steps=(ExposureStep(image_type="BIAS", count=2),))
        second = daemon.enqueue(biases)
        await wait_for(lambda: daemon.state.log_db.sequence(second)["state"] == "done")
        assert daemon.state.log_db.sequence(first)["state"] == "stopped"
        assert daemon.state.log_db.failures() == []  # the camera was free for the biases
    assert [r["image_type"] for r in logged(data)] == ["BIAS", "BIAS"]


async def test_a_second_daemon_on_the_same_data_is_refused(tmp_path) -> None:
    data = tmp_path / "data"
    async with running_daemon(daemon_config(data)):
        (data / "raw" / "night").mkdir(parents=True)
        partial = data / "raw" / "night" / ".frame.fits.x.tmp"
        partial.write_bytes(b"a write in progress")
        with pytest.raises(StorageError, match="another obsctl daemon is running on"):
            await Daemon(daemon_config(data)).run(install_signal_handlers=False)
        assert partial.exists()  # the refused daemon touched nothing


async def test_frames_are_readable_by_others(tmp_path) -> None:
    data = tmp_path / "data"
    await Daemon(daemon_config(data)).run(
        [Sequence(name="b", steps=(ExposureStep(image_type="BIAS"),))],
        until_idle=True,
        install_signal_handlers=False,
    )
    (frame,) = (data / "raw").glob("*/*.fits")
    umask = os.umask(0)
    os.umask(umask)
    assert frame.stat().st_mode & 0o777 == 0o666 & ~umask  # as any new file, not mkstemp's 0600


@contextlib.contextmanager
def unstored_copies(data: Path) -> Iterator[Path]:
    """The fallback folder outside a data directory (on the full disk, its own fails)."""
    folder = temporary_folder(data)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def status(daemon: Daemon) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"{daemon.api_url}/api/status") as r:
        return await r.json()


async def test_full_disk_pauses_acquisition_keeps_frames_and_resumes(tmp_path) -> None:
    data = tmp_path / "data"
    with tmpfs(data, size="8m"), unstored_copies(data) as kept:
        async with running_daemon(daemon_config(data)) as daemon:
            state = daemon.state
            sid = daemon.enqueue(standard_sequence(lights=2, exposure_s=30.0))
            await wait_for(lambda: len(state.log_db.exposures()) == 1)
            filler = fill(data)  # the second frame of the night finds the disk full
            await wait_for(lambda: state.activity.paused_reason is not None)
            reason = state.activity.paused_reason
            assert "OSError" in reason and "space" in reason, reason
            await wait_for(lambda: state.activity.state == "paused")
            api = await status(daemon)
            assert api["activity"]["paused_reason"] == reason
            # The frame that failed, and the one being exposed then (taken, then held).
            held = state.writer.pending
            assert api["queue"]["frames_to_store"] == held and held in (1, 2)
            await wait_for(lambda: len(list(kept.glob("*.frame"))) == held)
            await asyncio.sleep(0.5)  # 50 s of simulated time: no new frame is taken
            assert state.writer.pending == held and len(state.log_db.exposures()) == 1
            assert state.log_db.sequence(sid)["state"] == "running"

            filler.unlink()  # space again: the frame is stored, acquisition resumes
            await wait_for(lambda: state.log_db.sequence(sid)["state"] == "done")
            assert state.activity.paused_reason is None
            store_failures = [f for f in state.log_db.failures() if f["operation"] == "store"]
            rows = state.log_db.exposures()
        assert not list(kept.glob("*.frame"))
    assert len(store_failures) == 1 and "space" in store_failures[0]["message"]
    assert store_failures[0]["sequence_id"] == sid
    assert len({(r["step_index"], r["frame_index"]) for r in rows}) == len(rows) == 8


async def test_read_only_data_directory_is_refused_with_its_reason(tmp_path) -> None:
    with (
        tmpfs(tmp_path / "data", read_only=True) as data,
        pytest.raises(StorageError, match=r"cannot create the lock .*must be writable"),
    ):
        await Daemon(daemon_config(data)).run(install_signal_handlers=False)


async def test_shutdown_parks_a_mount_found_disconnected(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="obsctl.daemon")
    data = tmp_path / "data"
    async with running_daemon(daemon_config(data)) as daemon:
        sid = daemon.enqueue(standard_sequence(lights=1))
        await wait_for(lambda: daemon.state.log_db.sequence(sid)["state"] == "done")
        mount = daemon.simulators.observatory.mount
        assert not mount.at_park
        # What an interrupted reconnection, or another client of the shared Alpaca
        # device, leaves: the mount not connected when the shutdown parks it.
        await daemon.state.devices.mount.disconnect()
    assert mount.at_park  # parked while the embedded simulators still served it
    assert "could not park at shutdown" not in caplog.text
    assert "mount parked" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_frame_that_cannot_be_stored_keeps_its_sequence_running(tmp_path) -> None:
    data = tmp_path / "data"
    one = Sequence(name="one bias", steps=(ExposureStep(image_type="BIAS", count=1),))
    async with running_daemon(daemon_config(data)) as daemon:
        state = daemon.state
        with read_only_bind(data / "raw"):  # frames cannot be written; the database can
            sid = daemon.enqueue(one)
            await wait_for(lambda: state.activity.paused_reason is not None)
            assert "Read-only file system" in state.activity.paused_reason
            (failure,) = state.log_db.failures()
            assert (failure["operation"], failure["sequence_id"]) == ("store", sid)
            await asyncio.sleep(0.3)
            # Not "done" with no frame: it waits for its frame, held (and kept) meanwhile.
            assert state.log_db.sequence(sid)["state"] == "running"
            assert state.writer.pending == 1 and state.activity.state == "storing"
            assert len(list((data / "unstored").glob("*.frame"))) == 1
        await wait_for(lambda: state.log_db.sequence(sid)["state"] == "done")
        assert state.activity.paused_reason is None
    (row,) = logged(data)
    assert row["image_type"] == "BIAS" and (data / row["file_path"]).exists()
    assert not (data / "unstored").exists()
