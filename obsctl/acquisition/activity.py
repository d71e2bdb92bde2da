"""What the observatory is doing right now, shared by the sequencer, supervisor and API."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

__all__ = ["Activity"]


@dataclass
class Activity:
    """The sequencer's current step, read by the safety supervisor and the control API.

    Attributes
    ----------
    state : str
        ``idle``, ``slewing``, ``filter``, ``exposing``, ``downloading``, ``waiting_safe``,
        ``waiting_clear`` (light frames wait for clouds seen in the frames to pass),
        ``focusing`` (a focus run before a light frame), ``centring`` (solving and correcting
        the pointing after a slew), ``waiting_flip`` (a frame waits for the meridian flip),
        ``flipping`` (the meridian flip's slew),
        ``storing`` (a sequence's last frames to the disk), ``paused`` (see
        ``paused_reason``), ``waiting_device`` (every step left needs a device that is
        down; see ``paused_reason``).
    sequence_id, sequence_name : int or None, str or None
        The running sequence.
    step_index, frame_index : int or None
        Position within it (0-based).
    image_type : str or None
        Type of the frame being taken.
    sky : bool
        Whether that frame takes the sky's light (a light, a sky flat; not a dark, a bias
        or a flat of the flat panel): the safety supervisor aborts only those.
    exposure_s : float or None
        Duration of the running exposure.
    exposure_start : datetime or None
        UTC start of the running exposure.
    safety_abort : bool
        Set by the supervisor when it aborted the running exposure; the sequencer retakes
        the frame once it is safe again.
    paused_reason : str or None
        Why acquisition is paused or waiting: frames cannot be stored (set by the frame
        writer; the sequencer takes no new frame until it is None again), or the steps left
        need a device that is down (set by the sequencer, ``"waiting for a device: mount
        down: ..."``). None while neither.
    """

    state: str = "idle"
    sequence_id: int | None = None
    sequence_name: str | None = None
    step_index: int | None = None
    frame_index: int | None = None
    image_type: str | None = None
    sky: bool = False
    exposure_s: float | None = None
    exposure_start: datetime | None = None
    safety_abort: bool = False
    paused_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly copy."""
        out = asdict(self)
        if self.exposure_start is not None:
            out["exposure_start"] = self.exposure_start.isoformat()
        return out
