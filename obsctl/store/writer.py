"""The frame writer: every downloaded frame to a FITS file and an exposure row, in order.

The sequencer hands each downloaded frame to the `FrameWriter`, which writes it (FITS,
atomically, under `obsctl.store.raw_store`) and logs it in the background, so the camera
starts the next exposure at once instead of waiting for the disk.

Nothing is lost, and nothing fails silently: when a frame cannot be stored, whatever the
reason (a full disk, a damaged database, a bug), the writer logs it, records it in the
failures table, pauses acquisition with the reason (`Activity.paused_reason`), keeps every
frame it holds in the fallback store (`obsctl.store.unstored`) and tries again until it
succeeds; then acquisition resumes. Closing never waits on a failing disk.

At start, `recover_orphans` logs the frames a crash left on disk between the file and its row
(a truncated one is set aside instead), and the frames the fallback store kept go back to the
writer (`FrameWriter.restore`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from astropy.io import fits

from obsctl.clock import night_of
from obsctl.errors import ObsctlError
from obsctl.events import EventBus
from obsctl.store.exposure_log import ExposureLog, ExposureRecord, FailureRecord
from obsctl.store.fitsfile import incomplete_fits
from obsctl.store.headers import airmass, date_obs, object_name, raw_header
from obsctl.store.raw_store import RawStore, StoredFrame
from obsctl.store.unstored import UnstoredFrames

__all__ = ["FrameWriter", "WrittenFrame", "recover_orphans", "write_raw_frame"]

log = logging.getLogger(__name__)


@dataclass
class _Held:
    """A frame the writer holds until it is stored."""

    frame: StoredFrame
    #: Its copy in the fallback store, made when storing it failed.
    kept: Path | None = None
    #: Kept by an earlier run: it may have been stored (or recovered) before that run ended.
    restored: bool = False


class FrameWriter:
    """Writes frames to the raw store and the exposure log, in order, in the background.

    Parameters
    ----------
    store : RawStore
        Where FITS files go.
    log_db : ExposureLog
        Where exposure rows go.
    events : EventBus
        Publishes a ``frame`` event for each stored frame and ``failure`` when storing fails.
    on_stored : callable or None
        Awaited with ``(exposure_id, path)`` after each frame is stored (the pipeline's
        entry point); its errors are logged, the frame stays stored.
    on_pause : callable or None
        Called with the reason frames cannot be stored when storing starts failing, and with
        None once they can again (the daemon shows it as ``Activity.paused_reason``); the
        sequencer waits meanwhile.
    unstored : UnstoredFrames or None
        Where frames are kept while they cannot be stored; None keeps them in memory only.
    retry_s : float
        Real seconds before the first retry of a failed frame; each further failure doubles
        it, up to ``retry_max_s``.
    retry_max_s : float
        Longest wait between retries (real seconds).
    """

    def __init__(
        self,
        store: RawStore,
        log_db: ExposureLog,
        events: EventBus,
        on_stored: Callable[[int, str], Awaitable[None]] | None = None,
        *,
        on_pause: Callable[[str | None], None] | None = None,
        unstored: UnstoredFrames | None = None,
        retry_s: float = 1.0,
        retry_max_s: float = 30.0,
    ) -> None:
        self.store = store
        self.log_db = log_db
        self.events = events
        self.on_stored = on_stored
        self.on_pause = on_pause
        self.unstored = unstored
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        #: Why frames cannot be stored now; None while they can.
        self.failure: str | None = None
        self._held: deque[_Held] = deque()
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._storing = asyncio.Event()
        self._storing.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # Failures the database could not take when they happened (it may be the failure).
        self._unrecorded: list[FailureRecord] = []

    @property
    def pending(self) -> int:
        """Frames downloaded but not yet stored."""
        return len(self._held)

    def start(self) -> None:
        """Start the background writer task."""
        self._task = asyncio.create_task(self._run(), name="frame-writer")

    def submit(self, frame: StoredFrame) -> None:
        """Queue a frame for storing."""
        self._hold(_Held(frame))

    def restore(self, kept: Iterable[tuple[StoredFrame, Path]]) -> None:
        """Queue the frames an earlier run kept in the fallback store (at start).

        A frame that run stored after all (or that `recover_orphans` logged from its file)
        is not stored twice: its copy is just removed.
        """
        for frame, path in kept:
            # Numbered again: this run may have given its old number to another frame.
            renumbered = replace(frame, context=replace(frame.context, frame_number=0))
            self._hold(_Held(renumbered, kept=path, restored=True))

    def _hold(self, held: _Held) -> None:
        self._held.append(held)
        self._empty.clear()
        self._wake.set()

    async def drain(self) -> None:
        """Wait until every queued frame is stored (through failures and their retries)."""
        await self._empty.wait()

    async def storing(self) -> None:
        """Wait until frames can be stored (at once unless storing is failing)."""
        await self._storing.wait()

    async def close(self) -> None:
        """Store what is queued, then stop; while storing fails, keep the frames and stop.

        Frames still held are in the fallback store (or, when even that fails, named in a
        critical log line); the next start stores them.
        """
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.shield(self._task)
        finally:
            self._task = None
            await self._keep_held()
            lost = [h for h in self._held if h.kept is None]
            if lost:
                log.critical(
                    "%d frame(s) could neither be stored nor kept and are lost: %s",
                    len(lost),
                    ", ".join(_describe(h.frame) for h in lost),
                )
            elif self._held:
                log.error(
                    "%d frame(s) not stored; kept for the next start: %s",
                    len(self._held),
                    ", ".join(str(h.kept) for h in self._held),
                )

    # -- the task ---------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.retry_s
        while True:
            while not self._held:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
            try:
                stored = await self._store_first()
            except Exception:  # a bug in the bookkeeping below must not end the writer
                log.exception("the frame writer failed; its frames stay held")
                stored = False
            if stored:
                delay = self.retry_s
                continue
            if self._closing:
                return  # the frames stay held (and kept): close() says which
            self._wake.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()  # a close cuts the wait short
            except TimeoutError:
                pass
            delay = min(2.0 * delay, self.retry_max_s)

    async def _store_first(self) -> bool:
        """Store the oldest held frame; return False when storing it failed (handled)."""
        held = self._held[0]
        try:
            if held.restored and await asyncio.to_thread(self._logged_already, held.frame):
                log.info("%s was stored before; its kept copy goes", _describe(held.frame))
                written = None
            else:
                ctx = held.frame.context
                if ctx.frame_number <= 0:  # numbered once: a retry writes the same file again
                    night = night_of(ctx.start_time, ctx.site.longitude_deg)
                    number = self.store.next_frame_number(night)
                    held.frame = replace(held.frame, context=replace(ctx, frame_number=number))
                written = await asyncio.to_thread(
                    write_raw_frame, self.store, self.log_db, held.frame
                )
        except Exception as exc:  # whatever it is, a failure to say, record and retry
            await self._failed(held, exc)
            return False
        self._held.popleft()
        if held.kept is not None and self.unstored is not None:
            await asyncio.to_thread(self.unstored.discard, held.kept)
        if self.failure is not None or self._unrecorded:
            await self._recovered()
        if not self._held:
            self._empty.set()
        if written is not None:
            await self._announce(written)
        return True

    def _logged_already(self, frame: StoredFrame) -> bool:
        ctx = frame.context
        return self.log_db.has_exposure(date_obs(ctx.start_time), ctx.image_type)

    async def _announce(self, written: WrittenFrame) -> None:
        record, exposure_id = written.record, written.exposure_id
        assert exposure_id is not None
        log.info("stored %s (exposure %d)", record.file_path, exposure_id)
        fields = ("file_path", "image_type", "target", "filter", "exposure_s")
        self.events.publish(
            "frame", exposure_id=exposure_id, **{k: getattr(record, k) for k in fields}
        )
        if self.on_stored is not None:
            try:
                await self.on_stored(exposure_id, record.file_path)
            except Exception:  # the frame is stored; what follows must not undo that
                log.exception("after storing exposure %d", exposure_id)

    async def _failed(self, held: _Held, exc: Exception) -> None:
        """Say why storing failed (once per reason), pause acquisition, keep the frames."""
        reason = f"cannot store frames: {type(exc).__name__}: {exc}"
        if reason != self.failure:
            expected = isinstance(exc, OSError | ObsctlError)
            log.error(
                "%s (%s); acquisition paused, retrying",
                reason,
                _describe(held.frame),
                exc_info=None if expected else exc,
            )
            ctx = held.frame.context
            self._unrecorded.append(
                FailureRecord(
                    operation="store",
                    error_type=type(exc).__name__,
                    message=str(exc),
                    action="pause",
                    night=night_of(ctx.start_time, ctx.site.longitude_deg),
                    sequence_id=held.frame.sequence_id,
                    step_index=held.frame.step_index,
                )
            )
            self.events.publish("failure", **asdict(self._unrecorded[-1]))
            await asyncio.to_thread(self._record_failures)
        self.failure = reason
        self._storing.clear()
        self._set_paused(reason)
        await self._keep_held()

    async def _recovered(self) -> None:
        if self.failure is not None:
            log.warning("frames are stored again; acquisition resumes")
        self.failure = None
        self._storing.set()
        self._set_paused(None)
        await asyncio.to_thread(self._record_failures)

    def _record_failures(self) -> None:
        """Write the failures not yet in the database; keep them when it fails too."""
        while self._unrecorded:
            try:
                self.log_db.add_failure(self._unrecorded[0])
            except Exception as exc:  # the database may be what fails: try again later
                log.warning("cannot record the storage failure yet: %s", exc)
                return
            self._unrecorded.pop(0)

    def _set_paused(self, reason: str | None) -> None:
        if self.on_pause is not None:
            self.on_pause(reason)

    async def _keep_held(self) -> None:
        """Keep every held frame not kept yet in the fallback store (no-op without one)."""
        if self.unstored is None:
            return
        for held in list(self._held):
            if held.kept is not None:
                continue
            try:
                held.kept = await asyncio.to_thread(self.unstored.keep, held.frame)
            except Exception as exc:  # tried again at the next failure, and at close
                what = _describe(held.frame)
                log.error("cannot keep %s anywhere; it is in memory only: %s", what, exc)
                continue
            log.warning("kept %s in %s until it can be stored", _describe(held.frame), held.kept)


def _describe(frame: StoredFrame) -> str:
    """Name a frame in a log line: its type, target and start."""
    ctx = frame.context
    what = ctx.image_type if ctx.target is None else f"{ctx.image_type} of {ctx.target}"
    return f"{what} started {date_obs(ctx.start_time)}"


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
        dome_az_deg=None if ctx.slit is None else ctx.slit.azimuth_deg,
        dome_err_deg=None if ctx.slit is None else ctx.slit.error_deg,
        dome_ok=None if ctx.slit is None else ctx.slit.aligned,
    )
    exposure_id = None if log_db is None else log_db.add_exposure(record)
    return WrittenFrame(path, header, record, exposure_id)


def recover_orphans(store: RawStore, log_db: ExposureLog, quarantine: Path) -> list[str]:
    """Log frames that are on disk but not in the database (a crash between the two).

    A frame is logged from its header only when its file holds all the data the header
    declares. A truncated or damaged one is moved to ``quarantine/<night>/``, with an error
    in the log and a failure row: it is no exposure, and a tool reading ``raw/`` must not
    take it for one. A frame whose header lacks what the log needs is left where it is.

    Parameters
    ----------
    store : RawStore
        The raw frames.
    log_db : ExposureLog
        The exposure log.
    quarantine : pathlib.Path
        Where damaged frames go (`obsctl.store.datadir.DataDir.quarantine`).

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
            problem = incomplete_fits(path)
            if problem is not None:
                _quarantine(path, rel, problem, quarantine, log_db)
                continue
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
                target=object_name(h),
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
                dome_az_deg=h.get("DOMEAZ"),
                dome_err_deg=h.get("DOMEERR"),
                dome_ok=h.get("DOMEOK"),
            )
        except (OSError, KeyError, ValueError) as exc:
            log.error("cannot recover %s (%s); left out of the log", rel, exc)
            continue
        log_db.add_exposure(record)
        recovered.append(rel)
        log.warning("recovered %s into the exposure log", rel)
    return recovered


def _quarantine(path: Path, rel: str, problem: str, folder: Path, log_db: ExposureLog) -> None:
    """Move a damaged raw frame out of the raw store; log it and record a failure."""
    night = path.parent.name
    target = folder / night / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    path.replace(target)
    log.error("%s is damaged (%s); moved to %s, not logged as an exposure", rel, problem, target)
    log_db.add_failure(
        FailureRecord(
            operation="recover",
            error_type="IncompleteFrame",
            message=f"{rel}: {problem}; moved to {target}",
            action="quarantine",
            night=night,
        )
    )
