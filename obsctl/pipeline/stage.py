"""The `Stage` protocol: a name and one pure-ish ``process(frame) -> frame`` method."""

from __future__ import annotations

from typing import Literal, Protocol

from obsctl.frame import Frame

__all__ = ["FailurePolicy", "Stage"]

#: What the runner does when a stage raises: stop the frame (``abort``), go on without this
#: stage's result (``skip``), or go on and flag the frame (``mark``). Set in config.
FailurePolicy = Literal["abort", "skip", "mark"]


class Stage(Protocol):
    """One processing step.

    A stage never mutates its input: it returns a new frame (``Frame.with_stage``). It raises
    `obsctl.errors.StageError` (with its name and the frame's id) when it cannot do its work.
    """

    @property
    def name(self) -> str:
        """Short stage name, used in provenance, errors and config."""
        ...

    def process(self, frame: Frame) -> Frame:
        """Return the processed frame."""
        ...
