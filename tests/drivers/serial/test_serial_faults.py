"""Every serial-line fault on the mount becomes the right typed error in time, then recovers."""

from __future__ import annotations

import time
from collections.abc import Awaitable

import pytest

from obsctl.errors import DeviceConnectionError, DeviceError, DeviceTimeoutError
from obsctl.simulators.serial_server import SerialFault

from .conftest import TIMEOUT_S

# A deadline is kept when the error arrives before it plus this much scheduling slack.
SLACK_S = 0.5

FAULTS = [
    (SerialFault(kind="silence"), DeviceTimeoutError),
    (SerialFault(kind="slow", seconds=5.0), DeviceTimeoutError),
    (SerialFault(kind="garbage"), DeviceError),
    (SerialFault(kind="drop"), DeviceConnectionError),
]


def fault_id(value: object) -> str:
    return getattr(value, "kind", None) or getattr(value, "__name__", "")


async def raises_within(
    error: type[BaseException], call: Awaitable[object], deadline_s: float
) -> BaseException:
    start = time.monotonic()
    with pytest.raises(error) as info:
        await call
    assert time.monotonic() - start < deadline_s + SLACK_S
    return info.value


@pytest.mark.parametrize(("fault", "error"), FAULTS, ids=fault_id)
async def test_mount_faults(mount, mount_sim, fault, error):
    before = await mount.status()
    mount_sim.faults.set(fault)
    err = await raises_within(error, mount.status(), TIMEOUT_S)
    assert err.device == "mount"
    if error is DeviceError:
        assert type(err) is DeviceError and "garbled reply" in str(err)
    mount_sim.faults.clear()
    after = await mount.status()  # resynchronised: every reply in its place again
    assert after.dec_deg == pytest.approx(before.dec_deg, abs=1e-3)
    assert after.sidereal_time_h is not None


async def test_drop_keeps_failing_until_cleared(mount, mount_sim, link):
    mount_sim.faults.set(SerialFault(kind="drop"))
    await raises_within(DeviceConnectionError, mount.status(), TIMEOUT_S)
    # The pty is gone (open fails); over TCP the reconnect succeeds but the line drops again.
    await raises_within(DeviceConnectionError, mount.status(), TIMEOUT_S)
    if link == "pty":
        assert mount_sim.pty_name is None
    mount_sim.faults.clear()
    assert (await mount.status()).sidereal_time_h is not None
    if link == "pty":
        assert mount_sim.pty_name is not None  # a fresh pty under the same link


async def test_a_counted_fault_clears_itself(mount, mount_sim):
    mount_sim.faults.set(SerialFault(kind="garbage", count=1))
    with pytest.raises(DeviceError, match="garbled"):
        await mount.status()
    assert mount_sim.faults.fault is None
    await mount.status()


async def test_a_dropped_line_comes_back_by_itself_after_one_drop(mount, mount_sim):
    mount_sim.faults.set(SerialFault(kind="drop", count=1))
    await raises_within(DeviceConnectionError, mount.status(), TIMEOUT_S)
    await mount.status()  # reopened on the next call


async def test_a_short_delay_is_tolerated(mount, mount_sim):
    mount_sim.faults.set(SerialFault(kind="slow", seconds=0.02))
    status = await mount.status()
    assert not status.slewing
