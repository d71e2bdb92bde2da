"""What exists while the daemon runs, read by the control API and the night runner."""

from __future__ import annotations

from dataclasses import dataclass

from obsctl.acquisition.activity import Activity
from obsctl.acquisition.health import HealthBoard
from obsctl.acquisition.safety import SafetySupervisor
from obsctl.acquisition.transparency import TransparencyWatch
from obsctl.devices import DeviceSet
from obsctl.events import EventBus
from obsctl.store.exposure_log import ExposureLog
from obsctl.store.writer import FrameWriter

__all__ = ["RunningState"]


@dataclass
class RunningState:
    """The running daemon's devices, database, activity and services.

    Attributes
    ----------
    devices : DeviceSet
        The connected devices.
    log_db : ExposureLog
        The exposure log.
    activity : Activity
        What the sequencer is doing.
    events : EventBus
        The events streamed to clients.
    supervisor : SafetySupervisor
        The safety supervisor.
    writer : FrameWriter
        The frame writer (frames waiting for the disk).
    health : HealthBoard or None
        Each device's health (connected, last error, since when), shown by ``/api/status``;
        None where nothing tracks it.
    transparency : TransparencyWatch or None
        The frames' zero points as a cloud sensor (``[safety.transparency]``), when on.
    """

    devices: DeviceSet
    log_db: ExposureLog
    activity: Activity
    events: EventBus
    supervisor: SafetySupervisor
    writer: FrameWriter
    health: HealthBoard | None = None
    transparency: TransparencyWatch | None = None

    def unsafe_reason(self) -> str | None:
        """Return why it is unsafe to observe now, None when it is safe."""
        supervisor = self.supervisor
        return None if supervisor.is_safe else f"unsafe: {supervisor.reason}"
