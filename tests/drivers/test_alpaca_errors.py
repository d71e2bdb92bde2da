"""The one table from HTTP statuses and ASCOM error numbers to obsctl errors.

The expectations follow the Alpaca API reference (HTTP 400 for a request the server cannot
process, 200 with ErrorNumber for a device error, 0x400-0x4FF reserved, 0x500-0xFFF the
driver's own) and alpyca's exception classes; the deviations are those of real servers.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from obsctl.drivers.alpaca._http import ascom_number, raise_for_reply
from obsctl.drivers.alpaca.camera import parse_ascom_time
from obsctl.errors import (
    DeviceBusyError,
    DeviceConnectionError,
    DeviceError,
    DeviceNotConnectedError,
    DeviceNotImplementedError,
    DeviceParkedError,
    DeviceTimeoutError,
    InvalidDeviceValueError,
)


def reply(number: object, message: str = "nope", **extra: object) -> bytes:
    return orjson.dumps(
        {"ClientTransactionID": 0, "ServerTransactionID": 0, "ErrorNumber": number,
         "ErrorMessage": message, **extra}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidDeviceValueError),
        (422, InvalidDeviceValueError),  # frameworks that validate requests
        (401, InvalidDeviceValueError),
        (403, InvalidDeviceValueError),
        (409, InvalidDeviceValueError),
        (404, DeviceNotImplementedError),
        (405, DeviceNotImplementedError),
        (408, DeviceTimeoutError),
        (429, DeviceBusyError),
        (500, DeviceConnectionError),
        (502, DeviceConnectionError),
        (503, DeviceConnectionError),
        (302, DeviceError),
    ],
)
def test_http_status_table(status: int, error: type[DeviceError]) -> None:
    with pytest.raises(DeviceError) as info:
        raise_for_reply(status, b"bad thing", device="cam", member="binx")
    assert type(info.value) is error
    assert f"HTTP {status}" in str(info.value) and "binx" in str(info.value)


def test_a_4xx_is_never_a_lost_connection() -> None:
    for status in (*range(400, 404), *range(406, 408), *range(409, 429), *range(430, 500)):
        with pytest.raises(DeviceError) as info:
            raise_for_reply(status, b"", device="cam", member="binx")
        assert not isinstance(info.value, DeviceConnectionError | DeviceTimeoutError), status
        assert isinstance(info.value, InvalidDeviceValueError), status


@pytest.mark.parametrize(
    ("number", "member", "error"),
    [
        (0x400, "gains", DeviceNotImplementedError),
        (0x401, "binx", InvalidDeviceValueError),
        (0x402, "targetrightascension", InvalidDeviceValueError),
        (0x407, "camerastate", DeviceNotConnectedError),
        (0x408, "slewtocoordinatesasync", DeviceParkedError),
        (0x409, "slewtocoordinatesasync", DeviceBusyError),
        (0x40B, "imagearray", DeviceBusyError),
        (0x40C, "action", DeviceNotImplementedError),
        # ActionNotImplemented from anything but Action: InvalidOperation was meant.
        (0x40C, "imagearray", DeviceBusyError),
        (0x40C, "percentcompleted", DeviceBusyError),
        (0x40E, "startexposure", DeviceBusyError),
        (0x4FF, "startexposure", DeviceError),
        (0x500, "startexposure", DeviceError),
        (0xFFF, "startexposure", DeviceError),
    ],
)
def test_ascom_error_table(number: int, member: str, error: type[DeviceError]) -> None:
    with pytest.raises(DeviceError) as info:
        raise_for_reply(200, reply(number), device="cam", member=member)
    assert type(info.value) is error
    assert info.value.ascom_error == number
    assert f"0x{number:X}" in str(info.value) and "nope" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        (0, 0),
        (None, 0),
        (0x401, 0x401),
        (0x80040401, 0x401),  # COM HResult, unsigned
        (0x80040401 - (1 << 32), 0x401),  # as .NET serialises it: a signed Int32
        (0x8004040B - (1 << 32), 0x40B),
        (0x80040500 - (1 << 32), 0x500),
        ("1025", 0x401),
        ("0x40B", 0x40B),
        ("garbage", 0x4FF),  # an error we cannot read is still an error
        ([1], 0x4FF),
    ],
)
def test_ascom_number_tolerates_com_hresults(raw: object, number: int) -> None:
    assert ascom_number(raw) == number


def test_com_hresult_reply_gets_its_alpaca_type() -> None:
    with pytest.raises(DeviceParkedError) as info:
        raise_for_reply(200, reply(0x80040408 - (1 << 32)), device="mount", member="slewtoaltaz")
    assert info.value.ascom_error == 0x408


def test_zero_transaction_ids_are_accepted() -> None:
    assert raise_for_reply(200, reply(0, "", Value=3), device="cam", member="binx") == 3


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-25T21:30:05.1234567",  # the spec: UTC, no zone
        "2026-11-25T21:30:05.1234567Z",
        "2026-11-25T21:30:05.123456+00:00",
        "2026-11-25T20:30:05.1234567-01:00",  # local time with its offset
        "2026-11-25T23:30:05.1234567+02:00",
        "2026-11-26T03:00:05.1234567+0530",
    ],
)
def test_times_with_a_utc_offset_are_the_same_instant(text: str) -> None:
    assert parse_ascom_time(text) == datetime(2026, 11, 25, 21, 30, 5, 123456, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "yesterday", "2026-11-25", "2026-11-25T21:30"])
def test_unreadable_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an ASCOM time"):
        parse_ascom_time(text)
