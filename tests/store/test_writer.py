"""The frame writer: a frame that cannot be stored pauses acquisition, is kept and retried."""

from __future__ import annotations

import asyncio
import logging
import math
import urllib.parse
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest
from astropy.io import fits

from obsctl.acquisition.activity import Activity
from obsctl.events import EventBus
from obsctl.store.datadir import DataDir
from obsctl.store.headers import FrameContext
from obsctl.store.raw_store import StoredFrame
from obsctl.store.unstored import UnstoredFrames
from obsctl.store.writer import FrameWriter, recover_orphans, write_raw_frame

from .test_headers import context

NIGHT = "2026-11-25"  # the night of test_headers' START


def frame(seconds: float = 0.0, **changes: object) -> StoredFrame:
    ctx = context()
    ctx = replace(ctx, start_time=ctx.start_time + timedelta(seconds=seconds), frame_number=0)
    if changes:
        meta = replace(ctx.image.metadata, **changes)
        ctx = replace(ctx, image=replace(ctx.image, metadata=meta))
    return StoredFrame(ctx, 1, 0, int(seconds), {"camera": "camera"})


async def wait_for(predicate, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


def writer_in(data: DataDir, activity: Activity) -> FrameWriter:
    return FrameWriter(
        data.raw_store(),
        data.open_log(),
        EventBus(),
        on_pause=lambda reason: setattr(activity, "paused_reason", reason),
        unstored=UnstoredFrames([data.unstored]),
        retry_s=0.02,
        retry_max_s=0.05,
    )


async def test_failure_pauses_records_keeps_and_resumes(tmp_path) -> None:
    data = DataDir(tmp_path / "data")
    activity = Activity()
    writer = writer_in(data, activity)
    blocker = data.raw / NIGHT
    blocker.write_text("a file where the night's folder goes")  # a real OSError on mkdir
    writer.start()
    writer.submit(frame(0))
    writer.submit(frame(60))
    await wait_for(lambda: writer.failure is not None)
    assert activity.paused_reason == writer.failure
    assert "FileExistsError" in activity.paused_reason
    await wait_for(lambda: len(list(data.unstored.glob("*.frame"))) == 2)
    (failure,) = writer.log_db.failures()
    assert (failure["operation"], failure["error_type"], failure["action"]) == (
        "store",
        "FileExistsError",
        "pause",
    )
    assert writer.pending == 2 and writer.log_db.exposures() == []

    blocker.unlink()  # the cause goes away: the next retry stores both, in order
    await asyncio.wait_for(writer.drain(), 5)
    assert activity.paused_reason is None and writer.failure is None
    rows = writer.log_db.exposures()
    assert [r["frame_index"] for r in rows] == [0, 60]
    assert all((data.root / r["file_path"]).exists() for r in rows)
    assert not data.unstored.exists()  # the kept copies went with their frames
    await writer.close()
    writer.log_db.close()


async def test_unexpected_error_is_logged_kept_and_shutdown_completes(tmp_path, caplog) -> None:
    data = DataDir(tmp_path / "data")
    activity = Activity()
    writer = writer_in(data, activity)
    # A camera that reports no temperature as NaN: FITS has no NaN, astropy raises ValueError.
    broken = frame(0, ccd_temperature_c=math.nan)
    writer.start()
    writer.submit(broken)
    await wait_for(lambda: writer.failure is not None)
    assert "ValueError" in activity.paused_reason
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and errors[0].exc_info is not None  # unexpected: with its traceback
    assert writer.log_db.failures()[0]["error_type"] == "ValueError"
    await asyncio.wait_for(writer.close(), 5)  # never hangs on a failing writer
    assert "not stored; kept for the next start" in caplog.text
    (kept,) = UnstoredFrames([data.unstored]).load()
    assert kept[0].context.start_time == broken.context.start_time
    assert np.array_equal(kept[0].context.image.data, broken.context.image.data)
    writer.log_db.close()


async def test_any_unicode_target_is_stored_as_given(tmp_path) -> None:
    data = DataDir(tmp_path / "data")
    writer = writer_in(data, Activity())
    name = "\N{GREEK SMALL LETTER ALPHA} Ori\t\N{BLACK STAR}"
    ctx = replace(frame(0).context, target=name, filter_name="H\N{GREEK SMALL LETTER ALPHA}")
    writer.start()
    writer.submit(StoredFrame(ctx, None, None, None, {"camera": "camera"}))
    await asyncio.wait_for(writer.drain(), 5)
    await writer.close()
    (row,) = writer.log_db.exposures()
    assert (row["target"], row["filter"]) == (name, "H\N{GREEK SMALL LETTER ALPHA}")
    assert writer.log_db.failures() == []
    assert "_LIGHT_alpha-Ori-u2605_Halpha_" in row["file_path"]
    header = fits.getheader(data.root / row["file_path"])
    assert header["OBJECT"] == "alpha Ori \\u2605"  # printable ASCII a reader can map back
    assert urllib.parse.unquote(header["OBJUTF8"]) == name  # and the full name
    writer.log_db.close()


async def test_restored_frames_are_stored_once(tmp_path) -> None:
    data = DataDir(tmp_path / "data")
    unstored = UnstoredFrames([data.unstored])
    store, log_db = data.raw_store(), data.open_log()
    # One frame was stored after its copy was kept (a crash before the copy was removed)...
    done = frame(0)
    write_raw_frame(store, log_db, replace(done, context=replace(done.context, frame_number=1)))
    unstored.keep(done)
    # ... and one was not.
    unstored.keep(frame(60))
    writer = FrameWriter(store, log_db, EventBus(), unstored=unstored)
    writer.restore(unstored.load())
    writer.start()
    await asyncio.wait_for(writer.drain(), 5)
    await writer.close()
    rows = log_db.exposures()
    assert [r["frame_index"] for r in rows] == [0, 60]
    assert len({r["file_path"] for r in rows}) == 2
    assert unstored.load() == []
    log_db.close()


# astropy only warns when it reads the header of a truncated file: recovery must not rely on it.
@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_recover_orphans_logs_complete_frames_and_sets_truncated_ones_aside(tmp_path) -> None:
    data = DataDir(tmp_path / "data")
    store, log_db = data.raw_store(), data.open_log()
    name = "\N{GREEK SMALL LETTER ALPHA} Ori"

    def on_disk(number: int, **changes: object) -> str:
        ctx: FrameContext = replace(context(), frame_number=number, **changes)
        written = write_raw_frame(store, None, StoredFrame(ctx, 3, 0, number, {}))
        return store.relative(written.path)

    logged = on_disk(1)
    write_raw_frame(store, log_db, StoredFrame(replace(context(), frame_number=1), 3, 0, 1, {}))
    orphan = on_disk(2, target=name)
    truncated = on_disk(3)
    raw = (data.root / truncated).read_bytes()
    (data.root / truncated).write_bytes(raw[: len(raw) - 5000])  # the data cut short

    recovered = recover_orphans(store, log_db, data.quarantine)

    assert recovered == [orphan]
    rows = {r["file_path"]: r for r in log_db.exposures()}
    assert set(rows) == {logged, orphan}
    assert rows[orphan]["status"] == "recovered" and rows[orphan]["target"] == name
    assert not (data.root / truncated).exists()
    moved = data.quarantine / NIGHT / (data.root / truncated).name
    assert moved.read_bytes() == raw[: len(raw) - 5000]  # set aside as it was, not deleted
    (failure,) = log_db.failures()
    assert failure["action"] == "quarantine" and truncated in failure["message"]
    assert "declares 80 x 50" in failure["message"]  # NAXIS1 x NAXIS2
    assert fits.getheader(data.root / orphan)["OBJECT"] == "alpha Ori"
    assert recover_orphans(store, log_db, data.quarantine) == []  # nothing left to do
    log_db.close()
