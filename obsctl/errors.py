"""The obsctl error tree.

Every error obsctl raises on purpose derives from `ObsctlError`::

    ObsctlError
    ├── ConfigError
    ├── DeviceError
    │   ├── DeviceTimeoutError
    │   ├── DeviceConnectionError
    │   ├── DeviceNotConnectedError
    │   ├── DeviceBusyError
    │   │   └── DeviceParkedError
    │   ├── InvalidDeviceValueError
    │   │   └── FilterNotFoundError
    │   ├── DeviceNotImplementedError
    │   ├── DeviceStateError
    │   └── ImageDownloadError
    ├── PipelineError
    │   ├── StageError
    │   └── ReferenceImageError
    ├── ScheduleError
    ├── StorageError
    └── CatalogError
        ├── CatalogUnreachableError
        └── CatalogOverflowError

Built-in ``ValueError``/``TypeError`` are reserved for programming errors at API boundaries.
"""

from __future__ import annotations

__all__ = [
    "CatalogError",
    "CatalogOverflowError",
    "CatalogUnreachableError",
    "ConfigError",
    "DeviceBusyError",
    "DeviceConnectionError",
    "DeviceError",
    "DeviceNotConnectedError",
    "DeviceNotImplementedError",
    "DeviceParkedError",
    "DeviceStateError",
    "DeviceTimeoutError",
    "FilterNotFoundError",
    "ImageDownloadError",
    "InvalidDeviceValueError",
    "ObsctlError",
    "PipelineError",
    "ReferenceImageError",
    "ScheduleError",
    "StageError",
    "StorageError",
]


class ObsctlError(Exception):
    """Root of every error obsctl raises deliberately."""


class ConfigError(ObsctlError):
    """A configuration or plan file is missing, unreadable or invalid.

    Raised at start, before any hardware moves. The caller should print the message (it names
    the file, the key path and what was expected) and exit.

    Parameters
    ----------
    message : str
        What is wrong, naming the file and key path.
    path : str or None
        The file that failed.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class DeviceError(ObsctlError):
    """A device call failed.

    The sequencer's policy decides what to do: retry, reconnect, skip or park.

    Parameters
    ----------
    message : str
        What failed.
    device : str
        The device's configured name (for example ``"camera"``).
    ascom_error : int or None
        The ASCOM error number, when the device reported one.
    """

    def __init__(self, message: str, *, device: str, ascom_error: int | None = None) -> None:
        super().__init__(f"{device}: {message}")
        self.device = device
        self.ascom_error = ascom_error


class DeviceTimeoutError(DeviceError):
    """A device did not answer within its deadline (a hang, a silent line, a stuck download).

    Retry with back-off, then reconnect.
    """


class DeviceConnectionError(DeviceError):
    """The transport to the device failed: refused, reset, dropped, or a server error (HTTP 5xx).

    Reconnect, then retry.
    """


class DeviceNotConnectedError(DeviceError):
    """The device reports that it is not connected (ASCOM 0x407). Call ``connect()`` again.

    Also raised by ``connect()`` when the server has no such device at all (its mandatory
    ``Connected`` answers 0x400 or HTTP 404): the device may yet appear, so keep trying.
    """


class DeviceBusyError(DeviceError):
    """The device refused an operation in its present state.

    ASCOM 0x40B InvalidOperation (also 0x40C from any member but ``Action``: servers send it
    where 0x40B is meant), 0x409 slaved, 0x40E cancelled, 0x408 parked (`DeviceParkedError`),
    HTTP 429.

    Wait for the running operation to end or change state, then retry.
    """


class DeviceParkedError(DeviceBusyError):
    """The mount refused an operation because it is parked (ASCOM 0x408).

    Unlike another busy state, waiting does not end it: unpark first when the operation is
    wanted (a slew), or leave the mount parked (safety) and skip what needs it.
    """


class InvalidDeviceValueError(DeviceError):
    """The device rejected a value or a request as out of range or malformed.

    ASCOM 0x401 and 0x402, and any HTTP 4xx status (400, 422, ...) but 404/405/408/429.

    Retrying the same call will fail again: fix the request.
    """


class FilterNotFoundError(InvalidDeviceValueError):
    """The filter wheel holds no filter of the name asked for.

    Retrying or reconnecting cannot help: skip what needs the filter, and fix the plan or the
    sequence.
    """


class DeviceNotImplementedError(DeviceError):
    """The device does not implement this member (ASCOM 0x400). Do without the feature."""


class DeviceStateError(DeviceError):
    """A device is in a state a failure left behind, and recovering it did not help.

    A camera in state Error, an exposure still running after an abort, a mount still slewing
    after AbortSlew: `obsctl.operations.Operations` tries to recover each (abort, wait,
    reconnect) before the next use and raises this when the device stays in that state.
    Also the type of the failure row that records a recovery. Treat it as a device failure:
    retry later, reconnect.
    """


class ImageDownloadError(DeviceError):
    """Image data arrived corrupted, truncated or undecodable. Take the frame again."""


class PipelineError(ObsctlError):
    """A pipeline run failed as a whole (queue or worker pool broken, Dask scheduler unreachable).

    Say it and stop: the frames not done stay queued (or pending in their reprocessing run).
    """


class StageError(PipelineError):
    """One pipeline stage failed on one frame.

    Parameters
    ----------
    message : str
        What failed.
    stage : str
        The stage name.
    frame_id : int or None
        The frame's database id, when known.
    """

    def __init__(self, message: str, *, stage: str, frame_id: int | None = None) -> None:
        # A file reduced from outside the exposure log has no frame id: its name is what the
        # caller reports, so the message does not say "frame None".
        where = f"stage {stage}" if frame_id is None else f"stage {stage}, frame {frame_id}"
        super().__init__(f"{where}: {message}")
        self.stage = stage
        self.frame_id = frame_id
        self.reason = message


class ReferenceImageError(PipelineError):
    """A field's reference image cannot be built or read.

    Too few good frames, or a frame or the reference file unreadable. The field goes without
    difference imaging until one is built.
    """


class ScheduleError(ObsctlError):
    """A plan cannot be scheduled (no observable target, invalid constraint combination)."""


class StorageError(ObsctlError):
    """The raw store or the exposure log cannot be opened or written.

    Nothing can be stored safely: stop acquiring and alert the operator.
    """


class CatalogError(ObsctlError):
    """A reference-catalogue service gave no usable answer.

    An HTTP error, a TAP error document or an unreadable VOTable.
    Nothing is stored for that field; the frames that need it stay flagged and are processed
    again once a later fetch succeeds. Print the message (one line naming the provider).

    Parameters
    ----------
    message : str
        What failed.
    provider : str
        The catalogue provider (``"gaia"``, ``"apass"``, ``"atlas"``).
    """

    def __init__(self, message: str, *, provider: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class CatalogUnreachableError(CatalogError):
    """The service did not answer in time or could not be reached (no network).

    Stop fetching for now: the next fields would wait for the same timeout.
    """


class CatalogOverflowError(CatalogError):
    """The answer was truncated at the row limit (TAP ``QUERY_STATUS`` ``OVERFLOW``).

    Split the cone into smaller ones, or lower the magnitude limit.
    """
