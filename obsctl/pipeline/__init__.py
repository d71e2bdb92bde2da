"""The per-frame pipeline: stages over a `obsctl.frame.Frame`, run off the acquisition path."""

from obsctl.pipeline.stage import FailurePolicy, Stage

__all__ = ["FailurePolicy", "Stage"]
