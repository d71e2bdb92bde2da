"""The per-frame pipeline: stages over a `obsctl.frame.Frame`, off the acquisition path.

- `stage`: the Stage protocol and failure policies; `stages`: the configured stage list;
- one module per stage, in order: `calibrate`, `photometry`, `classify`, `astrometry`,
  `zeropoint` (their numeric work is in `obsctl.processing`);
- `queue`: the persistent processing queue and the results in the exposure log;
- `worker`: one frame through the stages in a worker process; `runner`: the event-loop side;
- `reprocess`: archived frames again on a Dask cluster, with `runs` (the runs and each frame's
  outcome) and `checkpoint` (a processed frame as it stood before a stage).
"""

from obsctl.pipeline.stage import FailurePolicy, Stage

__all__ = ["FailurePolicy", "Stage"]
