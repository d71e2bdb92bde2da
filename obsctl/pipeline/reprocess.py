"""Reprocess archived frames on a Dask distributed cluster (``obsctl reprocess``).

The live pipeline's worker side, unchanged, on Dask: each task is one frame through
`obsctl.pipeline.worker.process_file` with the stages of `obsctl.pipeline.stages.build_stages`.
A `WorkerPlugin` builds the stages once on every worker (masters cached, the ONNX model
loaded, the reference catalog opened), not once per task; a worker that joins later builds its
own. Frames are read by path from storage every worker sees (the data directory on a shared
file system).

Results come back to this process, the one writer of the exposure log, as they complete
(`distributed.as_completed`), and are written in batches (one transaction per batch) with
`obsctl.pipeline.runner.store_result`, as the live pipeline writes them, failures included.
The run and each frame's outcome are recorded (`obsctl.pipeline.runs`): a run stopped (a
kill, Ctrl-C, ``--limit``) is taken up again by the same command, and only its frames still
pending are done. A kill loses at most the results of the batch not yet written, which are
redone.

Only as many tasks as keep every worker busy are handed to the scheduler at a time, so that a
run of a million frames costs the scheduler no more memory than a run of a hundred.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from obsctl.errors import ConfigError, PipelineError
from obsctl.pipeline.checkpoint import STAGE_PRODUCTS, frame_before
from obsctl.pipeline.queue import ProcessingQueue
from obsctl.pipeline.runner import store_result
from obsctl.pipeline.runs import ReprocessRuns
from obsctl.pipeline.worker import FrameResult, StageList, process_file
from obsctl.store.datadir import DataDir
from obsctl.store.exposure_log import ExposureLog

__all__ = [
    "ResultWriter",
    "Selection",
    "Summary",
    "check_cluster",
    "check_from_stage",
    "dask_client",
    "reprocess",
]

log = logging.getLogger(__name__)

#: Name under which the stage-building plugin is registered on the workers.
PLUGIN_NAME = "obsctl-stages"
#: Seconds to reach a remote scheduler before giving up (a wrong address must not hang).
CONNECT_TIMEOUT_S = 10.0
#: Processing states a selection may ask for; ``none`` is a frame never queued.
STATES = ("done", "failed", "queued", "running", "none")


@dataclass(frozen=True)
class Selection:
    """Which logged frames to reprocess; every given criterion must match.

    Attributes
    ----------
    first_night, last_night : str or None
        Nights (``YYYY-MM-DD``) from and to, both included.
    target : str or None
        Target name, case-insensitive.
    filter_name : str or None
        Filter name, case-insensitive.
    image_type : str
        ``LIGHT`` (the pipeline's frames) unless told.
    state : str or None
        Processing state: ``done``, ``failed``, ``queued``, ``running`` or ``none`` (never
        queued).
    """

    first_night: str | None = None
    last_night: str | None = None
    target: str | None = None
    filter_name: str | None = None
    image_type: str = "LIGHT"
    state: str | None = None


@dataclass
class Summary:
    """What a call of `reprocess` did.

    Attributes
    ----------
    run_id : int
        The run (`obsctl.pipeline.runs`).
    resumed : bool
        Whether an unfinished run was taken up.
    n_frames : int
        Frames of the run.
    finished_before : int
        Frames an earlier call of the run had finished (not redone).
    done, failed : int
        Frames this call processed, and how many of them failed.
    remaining : int
        Frames of the run still pending (a ``limit``, an interruption).
    wall_s : float
        Seconds from the first task handed over to the last result written.
    nights_refitted : list of str
        Nights whose extinction and colour fit was redone.
    """

    run_id: int
    resumed: bool
    n_frames: int
    finished_before: int
    done: int = 0
    failed: int = 0
    remaining: int = 0
    wall_s: float = 0.0
    nights_refitted: list[str] = field(default_factory=list)


def check_from_stage(from_stage: str | None, stage_names: Sequence[str]) -> None:
    """Check that a reprocessing can begin at ``from_stage`` of the configured stages.

    Raises
    ------
    ConfigError
        Naming ``--from-stage``, the configured stages and the ones it can begin at.
    """
    if from_stage is None:
        return
    first = [n for n in stage_names if n in STAGE_PRODUCTS or n == stage_names[0]]
    if from_stage not in stage_names or from_stage not in first:
        raise ConfigError(
            f"--from-stage: expected one of {', '.join(first)} (the configured stages are "
            f"{', '.join(stage_names)}; calibration and photometry are redone together "
            f"from the raw frame), got {from_stage!r}"
        )


def check_cluster(cluster: str) -> None:
    """Check a ``--cluster`` value: ``local`` or a scheduler address (``tcp://host:8786``).

    Raises
    ------
    ConfigError
        Naming ``--cluster`` and what was expected.
    """
    if cluster == "local":
        return
    scheme, _, where = cluster.partition("://")
    if not scheme or not where or not scheme.isalnum():
        raise ConfigError(
            f"--cluster: expected 'local' or a scheduler address such as tcp://host:8786, "
            f"got {cluster!r}"
        )


@contextlib.contextmanager
def dask_client(
    cluster: str,
    *,
    workers: int = 2,
    dashboard: bool = True,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> Iterator[Any]:
    """Open a Dask client: on a `LocalCluster` of processes, or on a remote scheduler.

    Parameters
    ----------
    cluster : str
        ``local`` for a `distributed.LocalCluster` on 127.0.0.1, else the scheduler's
        address (``tcp://host:8786``).
    workers : int
        Worker processes of the local cluster, one thread each (SEP holds the GIL).
    dashboard : bool
        Serve the local cluster's dashboard (on a free port; ``client.dashboard_link``).
    connect_timeout_s : float
        Seconds to reach a remote scheduler before giving up (s).

    Yields
    ------
    distributed.Client
        The client; the local cluster is closed with it.

    Raises
    ------
    ConfigError
        When ``cluster`` is neither ``local`` nor an address.
    PipelineError
        When the scheduler cannot be reached within ``connect_timeout_s``.
    """
    from distributed import Client, LocalCluster

    # Dask's start and stop messages (INFO) only when obsctl logs at INFO (-v).
    level = max(logging.getLogger().getEffectiveLevel(), logging.WARNING)
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("distributed")]:
        logging.getLogger(name).setLevel(level)
    if cluster == "local":
        # One BLAS thread per worker, as in `worker_pool`: the workers already fill the cores.
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, "1")
        # A free port either way: the scheduler's HTTP server runs even without the
        # dashboard, and a fixed port may be taken.
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=":0",
                scheduler_kwargs={"dashboard": dashboard},
                silence_logs=level,
            ) as local,
            Client(local) as client,
        ):
            yield client
        return
    check_cluster(cluster)
    try:
        client = Client(cluster, timeout=connect_timeout_s)
    except (OSError, TimeoutError, ValueError) as exc:
        raise PipelineError(
            f"cannot reach the Dask scheduler at {cluster} within {connect_timeout_s:g} s: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    with client:
        yield client


class _Stages:
    """A Dask worker plugin: the stages, built once on each worker.

    Built in `setup` (when the plugin is registered, and on every worker that joins later),
    from a picklable factory, as `obsctl.pipeline.worker.init_worker` builds them in a
    process pool's worker. Subclasses `distributed.WorkerPlugin` at run time (`_plugin`), so
    that importing this module does not import Dask.
    """

    name = PLUGIN_NAME

    def __init__(self, factory: Callable[[], StageList], data_dir: DataDir) -> None:
        self.factory = factory
        self.data_dir = data_dir
        self.stages: StageList | None = None

    def setup(self, worker: Any) -> None:
        """Build the stages on this worker."""
        self.stages = self.factory()

    def teardown(self, worker: Any) -> None:
        """Close what the stages hold open (database handles, model sessions)."""
        for stage, _ in self.stages or []:
            close = getattr(stage, "close", None)
            if callable(close):
                close()
        self.stages = None


def _plugin(factory: Callable[[], StageList], data_dir: DataDir) -> Any:
    from distributed import WorkerPlugin

    cls = type("StagesPlugin", (_Stages, WorkerPlugin), {"__module__": __name__})
    return cls(factory, data_dir)


def _process_on_worker(
    path: str, exposure_id: int, from_stage: str | None, stage_names: tuple[str, ...]
) -> FrameResult:
    """Process one frame with this worker's stages (a Dask task)."""
    from distributed import get_worker

    plugin = get_worker().plugins[PLUGIN_NAME]
    stages = plugin.stages
    if stages is None:  # the plugin's setup failed and was logged by the worker
        return FrameResult(path, exposure_id, failed_stage="worker", reason="no stages built")
    start = None
    if from_stage is not None and from_stage != stage_names[0]:
        stages = stages[stage_names.index(from_stage) :]
        start = functools.partial(
            frame_before, from_stage, stage_names, path, exposure_id, plugin.data_dir
        )
    return process_file(path, exposure_id, stages=stages, data_dir=plugin.data_dir, start=start)


def reprocess(
    log_db: ExposureLog,
    data_dir: DataDir | Path,
    stage_factory: Callable[[], StageList],
    stage_names: Sequence[str],
    selection: Selection,
    *,
    cluster: Callable[[], AbstractContextManager[Any]],
    from_stage: str | None = None,
    new: bool = False,
    limit: int | None = None,
    batch_size: int = 50,
    batch_s: float = 2.0,
    refit_nights: bool = True,
    on_client: Callable[[Any], None] | None = None,
    progress: Callable[[Summary, FrameResult | None], None] | None = None,
    stop: threading.Event | None = None,
) -> Summary:
    """Reprocess the selected frames on a Dask cluster and store their results.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log; this process is its one writer for the run.
    data_dir : DataDir or pathlib.Path
        The data directory, as the workers see it.
    stage_factory : callable
        Picklable callable building ``[(stage, policy), ...]``, called once per worker.
    stage_names : sequence of str
        The configured stages, in order (the names ``stage_factory`` builds).
    selection : Selection
        Which frames.
    cluster : callable
        Returns a context manager that yields a `distributed.Client` (`dask_client`);
        entered only when there are frames to do.
    from_stage : str or None
        Run this stage and the ones after it, from the frame as it stood before it
        (`obsctl.pipeline.checkpoint`); None (or the first stage) runs them all from the raw
        frame, calibrating with the masters the live pipeline would pick today.
    new : bool
        Start a new run even when the same selection has one unfinished.
    limit : int or None
        Process at most this many frames now; the rest stay pending for the next call.
    batch_size : int
        Results written per transaction.
    batch_s : float
        Longest time (s) a result waits for later ones before its batch is written.
    refit_nights : bool
        Fit the nights of the reprocessed light frames again (extinction, colour terms) at
        the end, as the live pipeline does after each frame.
    on_client : callable or None
        Called with the client once it is connected (to say where its dashboard is).
    progress : callable or None
        Called with the summary so far and the result just stored (None once, when the
        workers have their stages and the first tasks go out).
    stop : threading.Event or None
        Set from another thread to stop: the results in hand are written, the frames not
        done stay pending (Ctrl-C on the command line).

    Returns
    -------
    Summary
        What was done; ``n_frames`` 0 when nothing matches (and no run is recorded).

    Raises
    ------
    ConfigError
        When ``from_stage`` cannot be begun at, or ``selection.state`` is unknown.
    PipelineError
        When the cluster cannot be reached (`dask_client`).
    StorageError
        When the exposure log cannot be written.
    """
    names = tuple(stage_names)
    check_from_stage(from_stage, names)
    if from_stage == names[0]:
        from_stage = None
    if selection.state is not None and selection.state not in STATES:
        raise ConfigError(f"--state: expected one of {', '.join(STATES)}, got {selection.state!r}")
    if from_stage is not None and selection.state not in (None, "done"):
        raise ConfigError(
            f"--from-stage {from_stage} needs frames processed to the end before "
            f"(--state done), got --state {selection.state}"
        )
    runs = ReprocessRuns(log_db)
    # Beginning at a later stage needs the earlier stages' outputs: processed frames only.
    state = "done" if from_stage is not None else selection.state
    key = {**asdict(selection), "state": state, "from_stage": from_stage, "stages": names}
    # An unfinished run keeps the frames it chose; the selection is read for a new run only.
    unfinished = None if new else runs.unfinished(runs.key_of(key))
    chosen = (
        runs.select(
            first_night=selection.first_night,
            last_night=selection.last_night,
            target=selection.target,
            filter_name=selection.filter_name,
            image_type=selection.image_type,
            state=state,
        )
        if unfinished is None
        else []
    )
    if unfinished is None and not chosen:
        return Summary(0, False, 0, 0)  # nothing matches: no run is recorded
    run = runs.start(key, chosen, from_stage=from_stage, new=new)
    pending = runs.pending(run.id)
    summary = Summary(run.id, run.resumed, run.n_frames, run.n_frames - len(pending))
    summary.remaining = len(pending)
    todo = pending if limit is None else pending[:limit]
    if todo:
        with cluster() as client:
            if on_client is not None:
                on_client(client)
            client.register_plugin(_plugin(stage_factory, DataDir(data_dir)), name=PLUGIN_NAME)
            if progress is not None:
                progress(summary, None)
            _run_tasks(
                client,
                ResultWriter(log_db, runs, run.id, DataDir(data_dir), summary, progress),
                todo,
                from_stage,
                names,
                batch_size=batch_size,
                batch_s=batch_s,
                stop=stop,
            )
    elif progress is not None:
        progress(summary, None)
    if summary.remaining == 0:
        runs.finish(run.id)
    if refit_nights and summary.done:
        from obsctl.pipeline.nightfit import refit_night

        for night in runs.nights(todo):
            refit_night(log_db, night)
            summary.nights_refitted.append(night)
    return summary


class ResultWriter:
    """The one writer: stores results in batches, one transaction each, and counts them.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log.
    runs : ReprocessRuns
        The runs' tables (each frame's outcome in its run).
    run_id : int
        The run.
    data_dir : DataDir
        Output paths are logged relative to it.
    summary : Summary
        Counted up as results are written.
    progress : callable or None
        Called with the summary and each result written.
    """

    def __init__(
        self,
        log_db: ExposureLog,
        runs: ReprocessRuns,
        run_id: int,
        data_dir: DataDir,
        summary: Summary,
        progress: Callable[[Summary, FrameResult | None], None] | None,
    ) -> None:
        self.log_db = log_db
        self.queue = ProcessingQueue(log_db)
        self.runs = runs
        self.run_id = run_id
        self.data_dir = data_dir
        self.summary = summary
        self.progress = progress
        self.batch: list[FrameResult] = []
        #: When the oldest result of the batch arrived (`time.perf_counter`), inf if none.
        self.oldest = math.inf

    def add(self, result: FrameResult) -> None:
        """Hold a result for the next batch."""
        self.batch.append(result)
        self.oldest = min(self.oldest, time.perf_counter())

    def flush(self) -> None:
        """Write the batch in one transaction (a failure rolls all of it back)."""
        if not self.batch:
            return
        with self.log_db.batch():
            for result in self.batch:
                assert result.exposure_id is not None
                store_result(self.log_db, self.queue, result, self.data_dir)
                self.runs.finish_frame(
                    self.run_id,
                    result.exposure_id,
                    failed_stage=result.failed_stage,
                    reason=result.reason,
                    seconds=sum(result.seconds.values()),
                )
        done, self.batch, self.oldest = self.batch, [], math.inf
        for result in done:
            self.summary.done += 1
            self.summary.failed += result.failed_stage is not None
            self.summary.remaining -= 1
            if result.failed_stage is not None:
                log.warning(
                    "exposure %s: %s failed: %s",
                    result.exposure_id,
                    result.failed_stage,
                    result.reason,
                )
            if self.progress is not None:
                self.progress(self.summary, result)


def _run_tasks(
    client: Any,
    writer: ResultWriter,
    todo: Sequence[int],
    from_stage: str | None,
    names: tuple[str, ...],
    *,
    batch_size: int,
    batch_s: float,
    stop: threading.Event | None,
) -> None:
    """Hand the frames to the cluster, a window at a time, and write results as they come."""
    from distributed import as_completed

    files = writer.runs.files(todo)
    # Enough tasks in flight to keep every worker thread busy while results are written.
    window = max(8, 4 * sum(client.nthreads().values()))
    waiting = iter(todo)

    def submit(eid: int) -> Any:
        path = str(writer.data_dir.path(files[eid])) if eid in files else ""
        return client.submit(
            _process_on_worker,
            path,
            eid,
            from_stage,
            names,
            key=f"reprocess-{writer.run_id}-{eid}",
            pure=False,
        )

    start = time.perf_counter()
    futures = as_completed([submit(eid) for _, eid in zip(range(window), waiting, strict=False)])
    try:
        for future in futures:
            try:
                result = future.result()
            except Exception as exc:  # the task itself died (a worker lost): fail the frame
                eid = int(str(future.key).rsplit("-", 1)[1])
                result = FrameResult(
                    str(writer.data_dir.path(files.get(eid, ""))),
                    eid,
                    failed_stage="worker",
                    reason=f"{type(exc).__name__}: {exc}",
                )
            future.release()
            writer.add(result)
            stopping = stop is not None and stop.is_set()
            following = None if stopping else next(waiting, None)
            if following is not None:
                futures.add(submit(following))
            if len(writer.batch) >= batch_size or time.perf_counter() - writer.oldest >= batch_s:
                writer.flush()
            if stopping:
                break
        writer.flush()
    finally:
        # Whatever stopped the loop (Ctrl-C, a lost scheduler), the results in hand are
        # written; a failure of the writer itself leaves them pending, redone next time.
        try:
            writer.flush()
        except Exception:
            log.exception(
                "%d result(s) could not be written; they are redone next time", len(writer.batch)
            )
        futures.clear()
        writer.summary.wall_s = time.perf_counter() - start
