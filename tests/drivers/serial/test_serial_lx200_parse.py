"""Every LX200 reply format the driver reads, every command format it writes, and garbage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from obsctl.devices import PierSide
from obsctl.drivers.serial import lx200
from obsctl.errors import DeviceBusyError, DeviceError, InvalidDeviceValueError

# --- right ascension ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hours", "precision"),
    [
        ("00:00.0", 0.0, "low"),
        ("12:34.5", 12 + 34.5 / 60, "low"),
        ("23:59.9", 23 + 59.9 / 60, "low"),
        ("12:34:56", 12 + 34 / 60 + 56 / 3600, "high"),
        ("00:00:00", 0.0, "high"),
        ("23:59:59", 23 + 59 / 60 + 59 / 3600, "high"),
        ("12:34:56.78", 12 + 34 / 60 + 56.78 / 3600, "highest"),  # OnStep :GRa#
        ("05:06:07.1234", 5 + 6 / 60 + 7.1234 / 3600, "highest"),  # OnStepX
    ],
)
def test_parse_ra_every_precision(text: str, hours: float, precision: str) -> None:
    assert lx200.parse_ra(text) == pytest.approx(hours, abs=1e-12)
    assert lx200.ra_precision(text) == precision


@pytest.mark.parametrize(
    "text",
    [
        "",
        "12:34",
        "12:34:5",
        "1:34:56",
        "24:00:00",
        "12:60:00",
        "12:34:60",
        "12:34.56",  # two tenths digits
        "12-34-56",
        "+12:34:56",
        "12:34:56#",
        "\x8f\xa3\xc1",
        "12:34:56.",
        "ab:cd:ef",
    ],
)
def test_parse_ra_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="right ascension"):
        lx200.parse_ra(text)


@pytest.mark.parametrize(
    ("hours", "precision", "text"),
    [
        (12 + 34 / 60 + 56 / 3600, "high", "12:34:56"),
        (12 + 34.5 / 60, "low", "12:34.5"),
        (23.99999, "high", "00:00:00"),  # rounds up and wraps, never 24:00:00
        (23.999999, "low", "00:00.0"),
        (-1.0, "high", "23:00:00"),
        (12 + 34 / 60 + 56.78906 / 3600, "highest", "12:34:56.7891"),
        (59.9999 / 3600, "high", "00:01:00"),  # 59.9999 s carries into the minute
    ],
)
def test_format_ra_rounds_and_carries(hours: float, precision: str, text: str) -> None:
    assert lx200.format_ra(hours, precision) == text  # type: ignore[arg-type]


@pytest.mark.parametrize("precision", ["low", "high", "highest"])
def test_format_ra_round_trips(precision: str) -> None:
    resolution_h = {"low": 0.1 / 60, "high": 1 / 3600, "highest": 1e-4 / 3600}[precision]
    for hours in (0.0, 3.14159, 12.5, 23.9, 7.000001):
        text = lx200.format_ra(hours, precision)  # type: ignore[arg-type]
        assert lx200.parse_ra(text) == pytest.approx(hours % 24, abs=resolution_h / 2 + 1e-12)


# --- declination, altitude, azimuth -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "degrees"),
    [
        ("+45*30", 45.5),  # low precision
        ("-45*30", -45.5),
        ("+45*30:15", 45 + 30 / 60 + 15 / 3600),  # LX200 high precision
        ("+45*30'15", 45 + 30 / 60 + 15 / 3600),  # Autostar high precision
        ("+45\xdf30'15", 45 + 30 / 60 + 15 / 3600),  # 0xDF, the Meade degree sign
        ("+45\xdf30", 45.5),
        ("+45\xb030:15", 45 + 30 / 60 + 15 / 3600),  # a degree sign
        ("+45:30:15", 45 + 30 / 60 + 15 / 3600),  # colons throughout
        ("45*30:15", 45 + 30 / 60 + 15 / 3600),  # a clone that drops '+'
        ("-00*00:30", -30 / 3600),  # the sign matters below one degree
        ("-00*30", -0.5),
        ("+89*59:59", 89 + 59 / 60 + 59 / 3600),
        ("+90*00:00", 90.0),
        ("-90*00", -90.0),
        ("+12*34:56.789", 12 + 34 / 60 + 56.789 / 3600),  # OnStep :GDe#
    ],
)
def test_parse_dec_every_format(text: str, degrees: float) -> None:
    assert lx200.parse_dec(text) == pytest.approx(degrees, abs=1e-12)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "+45",
        "+45*3",
        "+45*30:1",
        "+45*60",
        "+45*30:60",
        "+90*00:01",
        "-91*00",
        "+123*00:00",  # three degree digits: an azimuth, not a declination
        "+45;30:15",
        '+45*30"15',
        "++45*30",
        "\xfe\xa1\x93\xc4\x88",
        "12:34:56",  # a right ascension read as a declination
        "N/A",
    ],
)
def test_parse_dec_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        lx200.parse_dec(text)


@pytest.mark.parametrize(
    ("text", "degrees"),
    [
        ("+45*30'15", 45 + 30 / 60 + 15 / 3600),
        ("-05\xdf10", -(5 + 10 / 60)),
        ("+00*00'00", 0.0),
    ],
)
def test_parse_altitude(text: str, degrees: float) -> None:
    assert lx200.parse_altitude(text) == pytest.approx(degrees)


@pytest.mark.parametrize(
    ("text", "degrees"),
    [
        ("123*45'06", 123 + 45 / 60 + 6 / 3600),
        ("000*00'00", 0.0),
        ("359\xdf59", 359 + 59 / 60),
        ("090*30:00", 90.5),
        ("360*00'00", 0.0),  # a rounding mount: north is 0
    ],
)
def test_parse_azimuth(text: str, degrees: float) -> None:
    assert lx200.parse_azimuth(text) == pytest.approx(degrees)


@pytest.mark.parametrize("text", ["+123*45'06", "12*34'56", "361*00'00", "1234*00", "abc*de'fg"])
def test_parse_azimuth_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        lx200.parse_azimuth(text)


@pytest.mark.parametrize(
    ("degrees", "precision", "sep", "text"),
    [
        (45.5, "low", ":", "+45*30"),
        (-45.5, "high", ":", "-45*30:00"),
        (45 + 30 / 60 + 15 / 3600, "high", "'", "+45*30'15"),
        (-0.1 / 3600, "high", ":", "+00*00:00"),  # rounds to zero: no "-00"
        (-0.6 / 3600, "high", ":", "-00*00:01"),
        (89.99999, "high", ":", "+90*00:00"),
        (12.99999, "low", ":", "+13*00"),  # carries into the degrees
    ],
)
def test_format_dec(degrees: float, precision: str, sep: str, text: str) -> None:
    assert lx200.format_dec(degrees, precision, sec_sep=sep) == text  # type: ignore[arg-type]


def test_format_dec_and_altitude_refuse_out_of_range() -> None:
    with pytest.raises(ValueError, match="declination"):
        lx200.format_dec(90.5)
    with pytest.raises(ValueError, match="altitude"):
        lx200.format_altitude(-91.0)


@pytest.mark.parametrize(
    ("degrees", "text"),
    [(120.0, "120*00:00"), (-1.0, "359*00:00"), (359.99999, "000*00:00"), (5.5, "005*30:00")],
)
def test_format_azimuth_wraps(degrees: float, text: str) -> None:
    assert lx200.format_azimuth(degrees) == text


def test_format_altitude() -> None:
    assert lx200.format_altitude(45.0) == "+45*00:00"
    assert lx200.format_altitude(-2.5, sec_sep="'") == "-02*30'00"


# --- site and time ------------------------------------------------------------------------


def test_latitude_and_longitude_use_lx200_conventions() -> None:
    assert lx200.format_latitude(28.76) == "+28*46"
    assert lx200.format_latitude(-33.5) == "-33*30"
    # LX200 counts longitude west positive: 17.88 W is +017*53 (OnStep), 017*53 (Meade).
    assert lx200.format_longitude(-17.88, signed=True) == "+017*53"
    assert lx200.format_longitude(-17.88, signed=False) == "017*53"
    # 10 E is -010*00 for OnStep and 350*00 for Meade (0..360 west).
    assert lx200.format_longitude(10.0, signed=True) == "-010*00"
    assert lx200.format_longitude(10.0, signed=False) == "350*00"
    assert lx200.format_longitude(0.0, signed=False) == "000*00"


def test_utc_offset_time_and_date() -> None:
    assert lx200.format_utc_offset(0.0, "onstep") == "+00"
    assert lx200.format_utc_offset(-5.5, "onstep") == "-05:30"
    assert lx200.format_utc_offset(0.0, "meade") == "+00.0"
    assert lx200.format_utc_offset(8.0, "meade") == "+08.0"
    when = datetime(2025, 3, 7, 21, 4, 9, tzinfo=UTC)
    assert lx200.format_time(when) == "21:04:09"
    assert lx200.format_date(when) == "03/07/25"


# --- state replies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tracking", "slewing", "parked"),
    [
        ("NpET0", True, False, False),  # tracking, no goto, not parked, GEM, east
        ("nNpEW0", False, False, False),
        ("npEW0", False, True, False),  # a goto: no 'N'
        ("nNPEo0", False, False, True),  # parked, pier side none
        ("nIEW0", False, True, False),  # parking in progress counts as slewing
        ("nNpHRSGfrstwuza/E0", False, False, False),  # every optional flag
        ("NpK0", True, False, False),  # a fork mount
    ],
)
def test_parse_onstep_status(text: str, tracking: bool, slewing: bool, parked: bool) -> None:
    status = lx200.parse_onstep_status(text)
    assert (status.tracking, status.slewing, status.parked) == (tracking, slewing, parked)


def test_onstep_park_failed() -> None:
    assert lx200.parse_onstep_status("nNFE0").park_failed


@pytest.mark.parametrize("text", ["", "nNE0", "nNpPE0", "nNpE0\xff", "12:34:56", "XYZ"])
def test_parse_onstep_status_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="OnStep status"):
        lx200.parse_onstep_status(text)


def test_pier_side_distance_bars_alignment_and_sync() -> None:
    assert lx200.parse_pier_side("E") == PierSide.EAST
    assert lx200.parse_pier_side("W") == PierSide.WEST
    assert lx200.parse_pier_side("N") == PierSide.UNKNOWN
    assert lx200.parse_pier_side("?") == PierSide.UNKNOWN
    assert lx200.parse_distance_bars("") is False
    assert lx200.parse_distance_bars("\x7f") is True
    assert lx200.parse_distance_bars("\xff\xff") is True
    assert lx200.parse_distance_bars("|") is True
    assert lx200.parse_alignment_tracking("GT1") is True
    assert lx200.parse_alignment_tracking("AN0") is False
    assert lx200.parse_onstep_sync("N/A") is None
    assert lx200.parse_onstep_sync("E4") == "4"
    for bad, parser in [
        ("X", lx200.parse_pier_side),
        ("EW", lx200.parse_pier_side),
        ("abc", lx200.parse_distance_bars),
        ("GX1", lx200.parse_alignment_tracking),
        ("GT", lx200.parse_alignment_tracking),
        ("E0", lx200.parse_onstep_sync),
        ("OK", lx200.parse_onstep_sync),
    ]:
        with pytest.raises(ValueError):
            parser(bad)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("1", InvalidDeviceValueError),
        ("2", InvalidDeviceValueError),
        ("3", DeviceError),
        ("4", DeviceBusyError),
        ("5", DeviceBusyError),
        ("6", InvalidDeviceValueError),
        ("7", DeviceError),
        ("8", DeviceBusyError),
        ("9", DeviceError),
    ],
)
def test_goto_error_codes(code: str, error: type[DeviceError]) -> None:
    err = lx200.goto_error(code, device="mount", command=":MS#", message="Object Below Horizon")
    assert type(err) is error
    assert err.device == "mount"
    assert ":MS#" in str(err) and "Object Below Horizon" in str(err)
