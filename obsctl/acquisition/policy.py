"""What to do when a device call fails: retry with back-off, reconnect, then give up.

A value the device refuses (`InvalidDeviceValueError`: out of range, malformed, a filter the
wheel lacks) is given up at once: the same call would fail again, and so it would after a
reconnection. Every attempt that fails is reported (with the action that follows) so that
the exposure log records each failure and its reason; the night goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from obsctl.clock import Clock
from obsctl.devices import Device
from obsctl.errors import DeviceError, DeviceNotImplementedError, InvalidDeviceValueError

__all__ = ["FailureReporter", "FaultPolicy", "with_policy"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# (operation, error, action taken next: "retry", "reconnect" or "skip")
FailureReporter = Callable[[str, DeviceError, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class FaultPolicy:
    """How hard to try before a step is skipped.

    Attributes
    ----------
    retries : int
        Retries after the first failure, before reconnecting.
    backoff_s : float
        Wait before the first retry in (simulated) seconds; multiplied by ``backoff_factor``
        for each further retry.
    backoff_factor : float
        Growth of the wait between retries.
    reconnect : bool
        Whether to reconnect the device and try once more before giving up.
    """

    retries: int = 2
    backoff_s: float = 2.0
    backoff_factor: float = 2.0
    reconnect: bool = True


async def with_policy(
    operation: str,
    device: Device,
    call: Callable[[], Awaitable[T]],
    *,
    policy: FaultPolicy,
    clock: Clock,
    report: FailureReporter,
    give_up: Callable[[DeviceError], Awaitable[str]] | None = None,
) -> T:
    """Run ``call`` under the fault policy.

    Parameters
    ----------
    operation : str
        What is being done (``"expose"``, ``"slew"``...), for the failure record.
    device : Device
        The device to reconnect when retries are exhausted.
    call : callable
        Makes one attempt; a fresh awaitable per call.
    policy : FaultPolicy
        Retries, back-off and reconnection.
    clock : Clock
        Used for the back-off waits.
    report : callable
        Awaited with each failure and the action that follows it.
    give_up : callable or None
        Awaited with the last failure once retries and the reconnection are spent; returns
        the action recorded for it (the sequencer answers ``"wait for reconnection"`` for a
        device that no longer answers, and marks it down). None records ``"skip"``.

    Returns
    -------
    object
        What ``call`` returned on the first successful attempt.

    Raises
    ------
    InvalidDeviceValueError, DeviceNotImplementedError
        At once, when the device refuses a value or has no such member: neither a retry nor
        a reconnection helps.
    DeviceError
        The last failure, once retries and the reconnection are spent.
    """
    delay = policy.backoff_s
    last: DeviceError | None = None
    for attempt in range(policy.retries + 1):
        try:
            return await call()
        except (InvalidDeviceValueError, DeviceNotImplementedError) as exc:
            log.warning("%s failed (%s); skip", operation, exc)
            await report(operation, exc, "skip")
            raise
        except DeviceError as exc:
            last = exc
            if attempt < policy.retries:
                action = "retry"
            elif policy.reconnect:
                action = "reconnect"
            else:
                action = await _final_action(exc, give_up)
            log.warning("%s failed (%s); %s", operation, exc, action)
            await report(operation, exc, action)
            if attempt < policy.retries:
                await clock.sleep(delay)
                delay *= policy.backoff_factor
    assert last is not None
    if not policy.reconnect:
        raise last
    try:
        await device.disconnect()
        await device.connect()
        return await call()
    except DeviceError as exc:
        action = await _final_action(exc, give_up)
        log.warning("%s failed after reconnecting (%s); %s", operation, exc, action)
        await report(operation, exc, action)
        raise


async def _final_action(
    exc: DeviceError, give_up: Callable[[DeviceError], Awaitable[str]] | None
) -> str:
    """Return the action recorded when the policy gives up: ``give_up``'s answer, else skip."""
    return "skip" if give_up is None else await give_up(exc)
