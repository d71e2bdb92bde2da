"""The frame writer: every downloaded frame to a FITS file and an exposure row, in order.

The sequencer hands each downloaded frame to the `FrameWriter`, which writes it (FITS,
atomically, under `obsctl.store.raw_store`) and logs it in the background, so the camera
starts the next exposure at once instead of waiting for the disk. At start, `recover_orphans`
logs the frames a crash left on disk between the file and its row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from astropy.io import fits

from obsctl.clock import night_of
from obsctl.errors import StorageError
from obsctl.events import EventBus
from obsctl.store.exposure_log import ExposureLog, ExposureRecord
from obsctl.store.headers import FrameContext, airmass, raw_header
from obsctl.store.raw_store import RawStore

__all__ = ["FrameWriter", "StoredFrame", "WrittenFrame", "recover_orphans", "write_raw_frame"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredFrame:
    """A frame waiting to be written, with where it belongs in its sequence."""

    context: FrameContext
    sequence_id: int | None
    step_index: int | None
    frame_index: int | None
    devices: dict[str, str | None]


class FrameWriter:
    """Writes frames to the raw store and the exposure log, in order, in the background.

    Parameters
    ----------
    store : RawStore
        Where FITS files go.
    log_db : ExposureLog
        Where exposure rows go.
    events : EventBus
        Publishes a ``frame`` event for each stored frame.
    on_stored : callable or None
        Awaited with ``(exposure_id, path)`` after each frame is stored (the pipeline's
        entry point).
    """

    def __init__(
        self,
        store: RawStore,
        log_db: ExposureLog,
        events: EventBus,
        on_stored: Callable[[int, str], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.log_db = log_db
        self.events = events
        self.on_stored = on_stored
        self._queue: asyncio.Queue[StoredFrame] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.error: StorageError | None = None

    @property
    def pending(self) -> int:
        """Frames downloaded but not yet stored."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the background writer task."""
        self._task = asyncio.create_task(self._run(), name="frame-writer")

    def submit(self, frame: StoredFrame) -> None:
        """Queue a frame; raises the storage error that stopped the writer, if any."""
        if self.error is not None:
            raise self.error
        self._queue.put_nowait(frame)

    async def drain(self) -> None:
        """Wait until every queued frame is stored."""
        await self._queue.join()
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        """Store what is queued, then stop."""
        if self._task is None:
            return
        try:
            await self._queue.join()
        finally:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            frame = await self._queue.get()
            try:
                if self.error is None:
                    await self.store_frame(frame)
            except StorageError as exc:
                # Keep the loop alive so that drain() returns; submit() now raises.
                self.error = exc
                log.critical("cannot store frames: %s", exc)
            finally:
                self._queue.task_done()

    async def store_frame(self, frame: StoredFrame) -> int:
        """Give a frame its number in the night, write its FITS file, then its exposure row.

        Returns
        -------
        int
            The exposure id.

        Raises
        ------
        StorageError
            When the file or the row cannot be written.
        """
        ctx = frame.context
        night = night_of(ctx.start_time, ctx.site.longitude_deg)
        numbered = replace(
            frame, context=replace(ctx, frame_number=self.store.next_frame_number(night))
        )
        try:
            written = await asyncio.to_thread(write_raw_frame, self.store, self.log_db, numbered)
        except OSError as exc:
            raise StorageError(f"cannot store a frame of {night}: {exc}") from exc
        record, exposure_id = written.record, written.exposure_id
        assert exposure_id is not None
        log.info("stored %s (exposure %d)", record.file_path, exposure_id)
        fields = ("file_path", "image_type", "target", "filter", "exposure_s")
        self.events.publish(
            "frame", exposure_id=exposure_id, **{k: getattr(record, k) for k in fields}
        )
        if self.on_stored is not None:
            await self.on_stored(exposure_id, record.file_path)
        return exposure_id


@dataclass(frozen=True, slots=True)
class WrittenFrame:
    """A raw frame on disk, and in the exposure log when one was given."""

    path: Path
    header: fits.Header
    record: ExposureRecord
    exposure_id: int | None


def write_raw_frame(
    store: RawStore, log_db: ExposureLog | None, frame: StoredFrame
) -> WrittenFrame:
    """Write a frame's FITS file (durably, atomically), then its exposure row.

    Synchronous; the frame's number within its night is its context's ``frame_number``.

    Parameters
    ----------
    store : RawStore
        Where the FITS file goes.
    log_db : ExposureLog or None
        Where the exposure row goes; None writes the file only.
    frame : StoredFrame
        The frame, its sequence position and the devices that took it.

    Raises
    ------
    OSError
        When the file cannot be written.
    """
    ctx = frame.context
    m = ctx.image.metadata
    header = raw_header(ctx)
    night = str(header["DAY-OBS"])
    if frame.sequence_id is not None:
        header["SEQ-ID"] = (frame.sequence_id, "obsctl sequence id")
        header["SEQ-STEP"] = (frame.step_index, "step within the sequence (0-based)")
        header["SEQ-FRAM"] = (frame.frame_index, "frame within the step (0-based)")
    path = store.path_for(
        night=night,
        frame_number=ctx.frame_number,
        image_type=ctx.image_type,
        target=ctx.target,
        filter_name=ctx.filter_name,
        exposure_s=m.exposure_s,
    )
    store.write(path, ctx.image.data, header)
    mount = ctx.mount
    record = ExposureRecord(
        night=night,
        file_path=store.relative(path),
        image_type=ctx.image_type,
        exposure_s=m.exposure_s,
        date_obs=str(header["DATE-OBS"]),
        mjd_start=float(header["MJD-OBS"]),
        mjd_mid=float(header["MJD-MID"]),
        bin_x=m.bin_x,
        bin_y=m.bin_y,
        target=ctx.target,
        filter=ctx.filter_name,
        ra_deg=None if mount is None else mount.ra_deg,
        dec_deg=None if mount is None else mount.dec_deg,
        alt_deg=None if mount is None else mount.alt_deg,
        az_deg=None if mount is None else mount.az_deg,
        airmass=None if mount is None else airmass(mount.alt_deg),
        gain=m.gain,
        offset=m.offset,
        ccd_temp_c=m.ccd_temperature_c,
        camera=frame.devices.get("camera"),
        mount=frame.devices.get("mount"),
        filter_wheel=frame.devices.get("filter_wheel"),
        sequence_id=frame.sequence_id,
        step_index=frame.step_index,
        frame_index=frame.frame_index,
    )
    exposure_id = None if log_db is None else log_db.add_exposure(record)
    return WrittenFrame(path, header, record, exposure_id)


def recover_orphans(store: RawStore, log_db: ExposureLog) -> list[str]:
    """Log frames that are on disk but not in the database (a crash between the two).

    Returns
    -------
    list of str
        The recovered files, relative to the data directory.
    """
    recovered = []
    for path in store.frames():
        rel = store.relative(path)
        if log_db.has_file(rel):
            continue
        try:
            h = fits.getheader(path)
            record = ExposureRecord(
                night=str(h["DAY-OBS"]),
                file_path=rel,
                image_type=str(h["IMAGETYP"]),
                exposure_s=float(h["EXPTIME"]),
                date_obs=str(h["DATE-OBS"]),
                mjd_start=float(h["MJD-OBS"]),
                mjd_mid=float(h["MJD-MID"]),
                bin_x=int(h.get("XBINNING", 1)),
                bin_y=int(h.get("YBINNING", 1)),
                status="recovered",
                target=h.get("OBJECT"),
                filter=h.get("FILTER"),
                ra_deg=h.get("RA"),
                dec_deg=h.get("DEC"),
                alt_deg=h.get("ALT"),
                az_deg=h.get("AZ"),
                airmass=h.get("AIRMASS"),
                gain=h.get("GAIN"),
                offset=h.get("OFFSET"),
                ccd_temp_c=h.get("CCD-TEMP"),
                camera=h.get("CAMERA"),
                sequence_id=h.get("SEQ-ID"),
                step_index=h.get("SEQ-STEP"),
                frame_index=h.get("SEQ-FRAM"),
            )
        except (OSError, KeyError, ValueError) as exc:
            log.error("cannot recover %s (%s); left out of the log", rel, exc)
            continue
        log_db.add_exposure(record)
        recovered.append(rel)
        log.warning("recovered %s into the exposure log", rel)
    return recovered
