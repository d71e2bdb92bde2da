"""What the Alpaca mount driver sends for a guide pulse, and how it reads guide rates.

The server is a real Alpaca HTTP server on 127.0.0.1 answering what each test scripts. The
pulse against the simulator (moves, park, IsPulseGuiding) is in the contract suite.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from obsctl.devices import GuideDirection
from obsctl.drivers.alpaca import AlpacaMount
from obsctl.errors import (
    DeviceBusyError,
    DeviceNotImplementedError,
    DeviceParkedError,
    InvalidDeviceValueError,
)

from .scripted_server import ScriptedServer, serving

J2000_MOUNT = {"connected": True, "connecting": False, "equatorialsystem": 2}
#: ASCOM's default guide rate, 0.5 x sidereal, in arcsec per second.
DEFAULT_RATE = 0.5 * 360.98564736629 / 86400.0 * 3600.0


@contextlib.asynccontextmanager
async def driver(server: ScriptedServer) -> AsyncIterator[AlpacaMount]:
    async with serving(server, "telescope") as client:
        mount = AlpacaMount("mount", client, 0, timeout_s=2.0, connect_timeout_s=2.0)
        await mount.connect()
        yield mount


def pulses(server: ScriptedServer) -> list[tuple[str, str]]:
    return [
        (form["Direction"], form["Duration"])
        for member, form in server.puts
        if member == "pulseguide"
    ]


async def test_pulse_sends_the_ascom_direction_and_whole_milliseconds() -> None:
    server = ScriptedServer()
    server.answers = dict(J2000_MOUNT)
    async with driver(server) as mount:
        await mount.pulse_guide(GuideDirection.EAST, 2.0)
        await mount.pulse_guide(GuideDirection.NORTH, 0.1234)
        await mount.pulse_guide(GuideDirection.WEST, 0.0)
        await mount.pulse_guide(GuideDirection.SOUTH, 1.5)
        assert pulses(server) == [("2", "2000"), ("0", "123"), ("3", "0"), ("1", "1500")]


async def test_bad_durations_are_refused_before_sending() -> None:
    server = ScriptedServer()
    server.answers = dict(J2000_MOUNT)
    async with driver(server) as mount:
        for duration_s in (-0.5, float("nan"), float("inf"), 3.0e6):
            with pytest.raises(InvalidDeviceValueError):
                await mount.pulse_guide(GuideDirection.EAST, duration_s)
        assert pulses(server) == []


@pytest.mark.parametrize(
    ("number", "error"),
    [
        (0x400, DeviceNotImplementedError),  # CanPulseGuide false
        (0x408, DeviceParkedError),
        (0x40B, DeviceBusyError),
        (0x401, InvalidDeviceValueError),
    ],
)
async def test_refusals_become_typed_errors(number: int, error: type[Exception]) -> None:
    server = ScriptedServer()
    server.answers = J2000_MOUNT | {"canpulseguide": number != 0x400}
    server.errors["pulseguide"] = number
    async with driver(server) as mount:
        with pytest.raises(error):
            await mount.pulse_guide(GuideDirection.NORTH, 1.0)


async def test_guide_rates_are_converted_from_degrees_per_second() -> None:
    server = ScriptedServer()
    server.answers = J2000_MOUNT | {
        "guideraterightascension": 0.004178,  # 1.0 x sidereal
        "guideratedeclination": "0.002089",  # as text: 0.5 x sidereal
    }
    async with driver(server) as mount:
        ra, dec = await mount.guide_rates()
        assert ra == pytest.approx(0.004178 * 3600.0)
        assert dec == pytest.approx(0.002089 * 3600.0)


@pytest.mark.parametrize("answer", [None, "n/a", "NaN", True, 0.0, -0.002])
async def test_an_unusable_guide_rate_is_the_ascom_default(answer: object) -> None:
    server = ScriptedServer()
    server.answers = J2000_MOUNT | {"guideraterightascension": answer}
    server.errors["guideratedeclination"] = 0x400  # not implemented
    async with driver(server) as mount:
        assert await mount.guide_rates() == pytest.approx((DEFAULT_RATE, DEFAULT_RATE))


@pytest.mark.parametrize(
    ("answer", "guiding"), [(True, True), (False, False), ("True", True), ("false", False)]
)
async def test_is_pulse_guiding_reads_leniently(answer: object, guiding: bool) -> None:
    server = ScriptedServer()
    server.answers = J2000_MOUNT | {"ispulseguiding": answer}
    async with driver(server) as mount:
        assert await mount.is_pulse_guiding() is guiding


async def test_is_pulse_guiding_not_implemented_is_false() -> None:
    server = ScriptedServer()
    server.answers = dict(J2000_MOUNT)
    server.errors["ispulseguiding"] = 0x400
    async with driver(server) as mount:
        assert await mount.is_pulse_guiding() is False
