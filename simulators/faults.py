"""Run-time fault injection for the simulated Alpaca devices.

A `FaultInjector` belongs to one device (type and number) and holds at most one `Fault`;
`set` replaces it, `clear` removes it. The Alpaca server asks the injector on every API
request to that device (`FaultInjector.take`) and applies what it gets:

``delay``
    wait ``seconds`` of real time, then answer normally.
``hang``
    do not answer until the fault is cleared or replaced, then answer normally.
``drop``
    close the TCP connection without a response.
``http500``
    answer HTTP 500 with ``message`` as plain text.
``ascom_error``
    answer HTTP 200 with ``ErrorNumber = error_number`` and ``ErrorMessage = message``.
``corrupt_image``
    (``imagearray`` only) ImageBytes: a complete body whose header claims a width one pixel
    larger than the data (``Dimension1 = NumX + 1``), so ``Dimension1 * Dimension2 *
    element size`` no longer matches the body length. JSON: a body cut in the middle (with a
    Content-Length that matches what is sent), so it does not parse.
``truncate_image``
    (``imagearray`` only) send the headers with the full Content-Length and about half the
    body, then close the connection.
``image_never_ready``
    the camera stays in Reading with ImageReady false until the fault is cleared; it acts on
    the camera model, not on requests, and ignores ``members`` and ``count``.
``throttle_image``
    (``imagearray`` only) stream the image body at ``rate_mb_s`` megabytes (10^6 bytes) per
    second.

``members`` restricts a fault to some members (lower-case names, None = all members;
image faults only ever match ``imagearray``), ``count`` to the next N matching requests
(None = until cleared).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar, get_args

__all__ = [
    "IMAGE_FAULT_KINDS",
    "IMAGE_MEMBERS",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "FaultSlot",
    "check_fault",
]

log = logging.getLogger(__name__)

FaultKind = Literal[
    "delay",
    "hang",
    "drop",
    "http500",
    "ascom_error",
    "corrupt_image",
    "truncate_image",
    "image_never_ready",
    "throttle_image",
]
_KINDS: frozenset[str] = frozenset(get_args(FaultKind))
IMAGE_FAULT_KINDS: frozenset[str] = frozenset({"corrupt_image", "truncate_image", "throttle_image"})
IMAGE_MEMBERS: frozenset[str] = frozenset({"imagearray"})
_UNSPECIFIED_DRIVER_ERROR = 0x500


def check_fault(kind: str, kinds: frozenset[str], *, seconds: float, count: int | None) -> None:
    """Check the fields every kind of injected fault has.

    Parameters
    ----------
    kind : str
        The fault's kind, one of ``kinds``.
    kinds : frozenset of str
        The kinds the simulator knows.
    seconds : float
        A delay in real seconds, >= 0.
    count : int or None
        How often the fault applies, >= 1, or None until cleared.

    Raises
    ------
    ValueError
        For an unknown kind or an out-of-range number.
    """
    if kind not in kinds:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(kinds)}")
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    if count is not None and count < 1:
        raise ValueError(f"count must be >= 1 or None, got {count}")


@dataclass(frozen=True)
class Fault:
    """One injected fault.

    Parameters
    ----------
    kind : str
        One of ``delay``, ``hang``, ``drop``, ``http500``, ``ascom_error``, ``corrupt_image``,
        ``truncate_image``, ``image_never_ready``, ``throttle_image`` (see the module docs).
    seconds : float
        Delay in real seconds (``delay``).
    error_number : int
        ASCOM error number (``ascom_error``); default 0x500, an unspecified driver error.
    message : str
        Error text (``ascom_error``, ``http500``).
    rate_mb_s : float
        Transfer rate in 10^6 bytes per second (``throttle_image``).
    members : frozenset of str or None
        Lower-case member names the fault applies to; None for every member.
    count : int or None
        Number of matching requests the fault applies to; None until cleared.

    Raises
    ------
    ValueError
        For an unknown kind or an out-of-range number.
    """

    kind: FaultKind
    seconds: float = 0.0
    error_number: int = _UNSPECIFIED_DRIVER_ERROR
    message: str = "simulated fault"
    rate_mb_s: float = 1.0
    members: frozenset[str] | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        check_fault(self.kind, _KINDS, seconds=self.seconds, count=self.count)
        if self.rate_mb_s <= 0:
            raise ValueError(f"rate_mb_s must be > 0, got {self.rate_mb_s}")
        if self.members is not None:
            # Normalised here so that callers may pass any iterable in any case.
            object.__setattr__(self, "members", frozenset(m.lower() for m in self.members))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Fault:
        """Build a fault from a JSON object of its fields.

        Parameters
        ----------
        data : mapping
            ``kind`` and any of the other field names; ``members`` as a list of strings.

        Returns
        -------
        Fault
            The validated fault.

        Raises
        ------
        ValueError
            For unknown keys, wrong types or out-of-range values.
        """
        known = {"kind", "seconds", "error_number", "message", "rate_mb_s", "members", "count"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault field(s) {sorted(unknown)}")
        if "kind" not in data:
            raise ValueError("fault field 'kind' is required")
        members = data.get("members")
        if members is not None and (
            not isinstance(members, list | tuple) or not all(isinstance(m, str) for m in members)
        ):
            raise ValueError("members must be a list of member names or null")
        count = data.get("count")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
            raise ValueError("count must be an integer or null")
        return cls(
            kind=data["kind"],
            seconds=_number(data, "seconds", 0.0),
            error_number=int(_number(data, "error_number", _UNSPECIFIED_DRIVER_ERROR)),
            message=str(data.get("message", "simulated fault")),
            rate_mb_s=_number(data, "rate_mb_s", 1.0),
            members=frozenset(members) if members is not None else None,
            count=count,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the fault as a JSON-ready mapping (members as a sorted list)."""
        return {
            "kind": self.kind,
            "seconds": self.seconds,
            "error_number": self.error_number,
            "message": self.message,
            "rate_mb_s": self.rate_mb_s,
            "members": sorted(self.members) if self.members is not None else None,
            "count": self.count,
        }

    def matches(self, member: str) -> bool:
        """Whether the fault applies to a request for ``member`` (lower-case)."""
        if self.kind == "image_never_ready":
            return False
        if self.kind in IMAGE_FAULT_KINDS and member not in IMAGE_MEMBERS:
            return False
        return self.members is None or member in self.members


def _number(data: Mapping[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    return float(value)


class _CountedFault(Protocol):
    """What `FaultSlot` needs of a fault: its kind, for logs, and how often it applies."""

    @property
    def kind(self) -> str: ...

    @property
    def count(self) -> int | None: ...


F = TypeVar("F", bound=_CountedFault)


class FaultSlot(Generic[F]):
    """Holds at most one fault of a simulated device and counts its uses.

    Parameters
    ----------
    label : str
        What the slot belongs to, for logs (``camera/0``, ``serial mount``).
    on_change : callable or None
        Called with the new fault (or None) after every `set`, `clear` and used-up count.
    """

    def __init__(self, label: str, on_change: Callable[[F | None], None] | None = None) -> None:
        self.label = label
        self._on_change = on_change
        self._fault: F | None = None
        self._remaining: int | None = None
        self._released = asyncio.Event()

    @property
    def fault(self) -> F | None:
        """The active fault, or None."""
        return self._fault

    @property
    def remaining(self) -> int | None:
        """How many more uses the active fault has (None: unlimited)."""
        return self._remaining

    def set(self, fault: F) -> None:
        """Install a fault, replacing any previous one and releasing what waits on it.

        Parameters
        ----------
        fault : Fault or SerialFault
            The fault to apply from the next use on.
        """
        self._release()
        self._fault = fault
        self._remaining = fault.count
        log.info("fault on %s: %s", self.label, fault)
        self._changed(fault)

    def clear(self) -> None:
        """Remove the fault and release what waits on it."""
        self._release()
        if self._fault is not None:
            log.info("fault on %s cleared: %s", self.label, self._fault.kind)
        self._fault = None
        self._remaining = None
        self._changed(None)

    def _changed(self, fault: F | None) -> None:
        if self._on_change is not None:
            self._on_change(fault)

    def _release(self) -> None:
        self._released.set()
        self._released = asyncio.Event()

    def _use(self) -> F | None:
        """Return the active fault for one use, counting it against its ``count``."""
        fault = self._fault
        if fault is None:
            return None
        if self._remaining is not None:
            self._remaining -= 1
            if self._remaining <= 0:
                # Used up; what waits on it (a hung request) still waits for `clear` or `set`.
                self._fault = None
                self._remaining = None
                log.info("fault on %s used up: %s", self.label, fault.kind)
                self._changed(None)
        return fault

    async def wait_released(self, timeout_s: float | None = None) -> None:
        """Wait until the fault is cleared or replaced, or at most ``timeout_s`` real seconds.

        Parameters
        ----------
        timeout_s : float or None
            Longest wait (s); None waits for the release alone (``hang``).
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._released.wait()


class FaultInjector(FaultSlot[Fault]):
    """The fault slot of one simulated Alpaca device.

    Parameters
    ----------
    device_type : str
        Lower-case Alpaca device type (``camera``, ``filterwheel``, ...).
    number : int
        Device number.
    on_change : callable or None
        Called with the new fault (or None) after every `set`, `clear` and used-up count; the
        camera uses it to stall its readout for ``image_never_ready``.
    """

    def __init__(
        self,
        device_type: str,
        number: int,
        on_change: Callable[[Fault | None], None] | None = None,
    ) -> None:
        super().__init__(f"{device_type}/{number}", on_change)
        self.device_type = device_type
        self.number = number

    def take(self, member: str) -> Fault | None:
        """Return the fault to apply to one request, counting it against ``count``.

        Parameters
        ----------
        member : str
            Lower-case member name of the request.

        Returns
        -------
        Fault or None
            The fault, or None when none applies.
        """
        fault = self._fault
        if fault is None or not fault.matches(member):
            return None
        return self._use()
