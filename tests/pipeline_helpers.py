"""Process a data directory's logged light frames as the live pipeline does (tests)."""

from __future__ import annotations

from collections.abc import Collection

from obsctl.config import Config
from obsctl.embedded import reference_catalog
from obsctl.pipeline.queue import ProcessingQueue
from obsctl.pipeline.runner import store_result
from obsctl.pipeline.stages import build_stages
from obsctl.pipeline.worker import process_file
from obsctl.store.datadir import DataDir


def process_logged_frames(config: Config, only: Collection[int] | None = None) -> None:
    """Process every logged light frame as the live pipeline's worker and writer do.

    The stages read the simulators' synthetic sky as their reference catalog; results are
    stored frame after frame (so each frame is graded against the ones before it). ``only``
    limits it to those exposure ids.
    """
    data_dir = DataDir(config.data.directory)
    stages = build_stages(config, data_dir, reference_catalog(config))
    log_db = data_dir.open_log(existing=True)
    queue = ProcessingQueue(log_db)
    try:
        for row in log_db.exposures(image_type="LIGHT"):
            if only is not None and row["id"] not in only:
                continue
            queue.enqueue(row["id"])
            result = process_file(
                str(data_dir.path(row["file_path"])), row["id"], stages=stages, data_dir=data_dir
            )
            store_result(log_db, queue, result, data_dir)
    finally:
        log_db.close()
