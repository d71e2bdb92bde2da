"""The serial drivers against a scripted transport: exact bytes out, every reply shape in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from obsctl.config import SiteConfig
from obsctl.coords import j2000_to_jnow
from obsctl.devices import FilterWheel, GuideDirection, Mount, PierSide
from obsctl.drivers.serial import SerialFilterWheel, SerialLX200Mount
from obsctl.drivers.serial.lx200 import format_dec, format_ra
from obsctl.errors import (
    DeviceBusyError,
    DeviceError,
    DeviceNotConnectedError,
    DeviceNotImplementedError,
    DeviceParkedError,
    DeviceTimeoutError,
    InvalidDeviceValueError,
)

from ._scripted import ScriptedTransport

NOW = datetime(2025, 3, 7, 21, 4, 9, tzinfo=UTC)
SITE = SiteConfig(name="Test", latitude_deg=28.76, longitude_deg=-17.88)


class FixedClock:
    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        return None


def onstep_connect(t: ScriptedTransport) -> ScriptedTransport:
    return t.expect(b":GVP#", b"On-Step#").expect(b":GR#", b"12:34:56#")


def meade_connect(t: ScriptedTransport, *, gw: bytes | None = b"GT1#") -> ScriptedTransport:
    t.expect(b":GVP#", b"LX200GPS#")
    t.expect(b":GR#", b"12:34.5#").expect(b":U#", None).expect(b":GR#", b"12:34:56#")
    return t.expect(b":GW#", gw)


def mount(t: ScriptedTransport, **kwargs) -> SerialLX200Mount:
    return SerialLX200Mount("mount", t, timeout_s=0.5, clock=FixedClock(), **kwargs)


def target_commands(ra_deg: float, dec_deg: float, precision: str = "highest") -> list[bytes]:
    ra_now, dec_now = j2000_to_jnow(ra_deg, dec_deg, NOW)
    return [
        f":Sr{format_ra(ra_now / 15, precision)}#".encode(),  # type: ignore[arg-type]
        f":Sd{format_dec(dec_now)}#".encode(),
    ]


def test_drivers_satisfy_the_protocols() -> None:
    m: Mount = mount(ScriptedTransport())
    w: FilterWheel = SerialFilterWheel("wheel", ScriptedTransport())
    assert isinstance(m, Mount) and isinstance(w, FilterWheel)


# --- LX200: generic Meade ---------------------------------------------------------------


async def test_meade_connect_sets_precision_site_and_time() -> None:
    t = meade_connect(ScriptedTransport())
    t.expect(b":St+28*46#", b"1").expect(b":Sg017*53#", b"1")
    t.expect(b":SG+00.0#", b"1").expect(b":SL21:04:09#", b"1")
    t.expect(b":SC03/07/25#", b"1Updating Planetary Data#" + b" " * 30 + b"#")
    m = mount(t, site=SITE)
    await m.connect()
    assert m.flavor == "meade" and m.product == "LX200GPS"
    assert t.done() and t.reopened == 1
    t.expect(b":GVP#", b"LX200GPS#")
    assert await m.is_connected()
    t.expect(b":GVP#", None)
    assert not await m.is_connected()  # silent: not connected, and no exception


async def test_meade_status_reads_every_format() -> None:
    t = meade_connect(ScriptedTransport())
    m = mount(t)
    await m.connect()
    t.expect(b":GR#", b"05:06:07#").expect(b":GD#", b"+45\xdf30:15#")
    t.expect(b":GA#", b"+60\xdf00'00#").expect(b":GZ#", b"090\xdf30'00#")
    t.expect(b":D#", b"\x7f#").expect(b":GW#", b"GN1#").expect(b":GS#", b"10:00:00#")
    status = await m.status()
    assert status.alt_deg == pytest.approx(60.0)
    assert status.az_deg == pytest.approx(90.5)
    assert status.slewing and not status.tracking and not status.at_park
    assert status.pier_side == PierSide.UNKNOWN
    assert status.sidereal_time_h == pytest.approx(10.0)
    # RA/Dec came as JNow and are reported in J2000: precession moves them a little.
    assert abs(status.ra_deg - (5 + 6 / 60 + 7 / 3600) * 15) < 0.5
    assert abs(status.dec_deg - (45 + 30 / 60 + 15 / 3600)) < 0.5


async def test_meade_without_alignment_status_reports_tracking() -> None:
    t = meade_connect(ScriptedTransport(), gw=None)
    m = mount(t)
    await m.connect()  # :GW# unanswered: remembered, and the line resynchronises
    t.expect(b":GVP#", b"LX200GPS#")  # the resync
    t.expect(b":GR#", b"05:06:07#").expect(b":GD#", b"+45*30#")
    t.expect(b":GA#", b"+60*00#").expect(b":GZ#", b"090*30#")
    t.expect(b":D#", b"#").expect(b":GS#", b"10:00:00#")
    status = await m.status()
    assert status.tracking and not status.slewing
    assert t.done()


async def test_meade_slew_refusal_carries_the_message_and_keeps_the_line() -> None:
    t = meade_connect(ScriptedTransport())
    m = mount(t)
    await m.connect()
    for command in target_commands(100.0, -80.0, "high"):
        t.expect(command, b"1")
    t.expect(b":MS#", b"1Object Below Horizon#")
    with pytest.raises(InvalidDeviceValueError, match="Object Below Horizon"):
        await m.slew_to_radec(100.0, -80.0)
    t.expect(b":Q#", None)
    await m.abort_slew()
    assert t.resets == 1  # only the one at connect: a refusal is a clean reply


async def test_meade_park_is_one_way() -> None:
    t = meade_connect(ScriptedTransport())
    m = mount(t)
    await m.connect()
    await m.unpark()  # not parked: nothing to do, nothing sent
    t.expect(b":hP#", None)
    await m.park()
    with pytest.raises(DeviceBusyError, match="parked"):
        await m.slew_to_altaz(45.0, 90.0)
    # :CM# answers the same text whether or not a Meade synced: the driver refuses first.
    with pytest.raises(DeviceBusyError, match="parked"):
        await m.sync_to_radec(10.0, 20.0)
    # :Mg has no reply at all: the driver refuses a parked Meade before sending.
    with pytest.raises(DeviceParkedError, match="parked"):
        await m.pulse_guide(GuideDirection.EAST, 1.0)
    with pytest.raises(DeviceNotImplementedError, match="power cycle"):
        await m.unpark()
    with pytest.raises(DeviceNotImplementedError, match="tracking"):
        await m.set_tracking(True)
    t.expect(b":GR#", b"05:06:07#").expect(b":GD#", b"+45*30:15#")
    t.expect(b":GA#", b"+00*00'00#").expect(b":GZ#", b"000*00'00#")
    t.expect(b":D#", b"#").expect(b":GW#", b"GN1#").expect(b":GS#", b"10:00:00#")
    assert (await m.status()).at_park


async def test_meade_altaz_slew_and_fault() -> None:
    t = meade_connect(ScriptedTransport())
    m = mount(t)
    await m.connect()
    t.expect(b":Sa+45*00'00#", b"1").expect(b":Sz120*00'00#", b"1").expect(b":MA#", b"0")
    await m.slew_to_altaz(45.0, 120.0)
    t.expect(b":Sa+05*00'00#", b"1").expect(b":Sz120*00'00#", b"1").expect(b":MA#", b"1")
    with pytest.raises(InvalidDeviceValueError, match=":MA#"):
        await m.slew_to_altaz(5.0, 120.0)


async def test_meade_sync_accepts_any_text() -> None:
    t = meade_connect(ScriptedTransport())
    m = mount(t)
    await m.connect()
    for command in target_commands(10.0, 20.0, "high"):
        t.expect(command, b"1")
    t.expect(b":CM#", b" M31 EX GAL MAG 3.5 SZ178.0'#")
    await m.sync_to_radec(10.0, 20.0)
    assert t.done()


async def test_meade_stuck_in_low_precision_is_an_error() -> None:
    t = ScriptedTransport().expect(b":GVP#", b"Autostar#")
    for _ in range(2):
        t.expect(b":GR#", b"12:34.5#").expect(b":U#", None)
    with pytest.raises(DeviceError, match="low precision"):
        await mount(t).connect()


# --- LX200: OnStep ------------------------------------------------------------------------


async def test_onstep_connect_and_status() -> None:
    t = onstep_connect(ScriptedTransport())
    t.expect(b":St+28*46#", b"1").expect(b":Sg+017*53#", b"1")
    t.expect(b":SG+00#", b"1").expect(b":SL21:04:09#", b"1").expect(b":SC03/07/25#", b"1")
    m = mount(t, site=SITE)
    await m.connect()
    assert m.flavor == "onstep"
    t.expect(b":GRa#", b"05:06:07.1234#").expect(b":GDe#", b"-12*34:56.789#")
    t.expect(b":GA#", b"+60*00'00#").expect(b":GZ#", b"270*00'00#")
    t.expect(b":GU#", b"NpEW0#").expect(b":Gm#", b"W#").expect(b":GS#", b"01:02:03#")
    status = await m.status()
    assert status.tracking and not status.slewing and not status.at_park
    assert status.pier_side == PierSide.WEST
    assert status.az_deg == pytest.approx(270.0)


async def test_onstep_slew_falls_back_to_whole_seconds() -> None:
    t = onstep_connect(ScriptedTransport())
    m = mount(t)
    await m.connect()
    fine, dec = target_commands(200.0, 10.0, "highest")
    coarse, _ = target_commands(200.0, 10.0, "high")
    t.expect(fine, b"0").expect(coarse, b"1").expect(dec, b"1").expect(b":MS#", b"0")
    await m.slew_to_radec(200.0, 10.0)
    t.expect(coarse, b"1").expect(dec, b"1").expect(b":MS#", b"4")
    with pytest.raises(DeviceBusyError, match="parked"):
        await m.slew_to_radec(200.0, 10.0)
    assert t.done()


@pytest.mark.parametrize(
    ("digit", "error"),
    [(b"1", InvalidDeviceValueError), (b"6", InvalidDeviceValueError), (b"8", DeviceBusyError)],
)
async def test_onstep_goto_digits(digit: bytes, error: type[DeviceError]) -> None:
    t = onstep_connect(ScriptedTransport())
    m = mount(t)
    await m.connect()
    t.expect(b":Sa+02*00:00#", b"1").expect(b":Sz180*00:00#", b"1").expect(b":MA#", digit)
    with pytest.raises(error):
        await m.slew_to_altaz(2.0, 180.0)


async def test_onstep_park_unpark_tracking_sync() -> None:
    t = onstep_connect(ScriptedTransport())
    m = mount(t)
    await m.connect()
    t.expect(b":hP#", b"1")
    await m.park()
    t.expect(b":hP#", b"0")
    with pytest.raises(DeviceError, match="park failed"):
        await m.park()
    t.expect(b":hR#", b"0").expect(b":GU#", b"nNpEW0#")  # not parked: nothing to undo
    await m.unpark()
    t.expect(b":hR#", b"0").expect(b":GU#", b"nNPEo0#")
    with pytest.raises(DeviceBusyError):
        await m.unpark()
    t.expect(b":Te#", b"1").expect(b":Td#", b"0")
    await m.set_tracking(True)
    with pytest.raises(DeviceBusyError):
        await m.set_tracking(False)
    fine, dec = target_commands(50.0, 20.0)
    t.expect(fine, b"1").expect(dec, b"1").expect(b":CM#", b"N/A#")
    await m.sync_to_radec(50.0, 20.0)
    t.expect(fine, b"1").expect(dec, b"1").expect(b":CM#", b"E5#")
    with pytest.raises(DeviceBusyError, match="goto in progress"):
        await m.sync_to_radec(50.0, 20.0)
    assert t.done()


async def test_garbage_then_resync_past_stale_replies() -> None:
    t = onstep_connect(ScriptedTransport())
    m = mount(t)
    await m.connect()
    t.expect(b":GRa#", b"\x9c\xe1\x85#")
    with pytest.raises(DeviceError, match="garbled reply to :GRa#"):
        await m.status()
    # The late answers of earlier commands arrive before the product name.
    t.expect(b":GVP#", b"1" + b"05:06:07#\xfe\xfe" + b"On-Step#")
    t.expect(b":Q#", None)
    await m.abort_slew()
    assert t.resets == 2 and t.done()


async def test_silence_is_a_timeout_and_a_failed_resync_keeps_trying() -> None:
    t = onstep_connect(ScriptedTransport())
    m = mount(t)
    await m.connect()
    t.expect(b":GRa#", None)
    with pytest.raises(DeviceTimeoutError):
        await m.status()
    t.expect(b":GVP#", b"\xee\xee\xee#")  # still noise: a garbled line, not silence
    with pytest.raises(DeviceError, match="resynchronising"):
        await m.abort_slew()
    t.expect(b":GVP#", b"On-Step#").expect(b":Q#", None)
    await m.abort_slew()
    assert t.done()


async def test_calls_before_connect_and_out_of_range_values() -> None:
    t = ScriptedTransport()
    m = mount(t)
    with pytest.raises(DeviceNotConnectedError):
        await m.status()
    onstep_connect(t)
    await m.connect()
    with pytest.raises(InvalidDeviceValueError):
        await m.slew_to_radec(10.0, 95.0)
    with pytest.raises(InvalidDeviceValueError):
        await m.slew_to_altaz(91.0, 10.0)
    assert t.done()  # refused before anything was sent
    await m.disconnect()
    assert t.closed and not await m.is_connected()


# --- QHY CFW ------------------------------------------------------------------------------


def cfw_connect(t: ScriptedTransport, slots: bytes = b"5", at: bytes = b"0") -> ScriptedTransport:
    return t.expect(b"VRS", b"20230415").expect(b"MXP", slots).expect(b"NOW", at)


def wheel(t: ScriptedTransport, **kwargs) -> SerialFilterWheel:
    kwargs.setdefault("names", ("L", "B", "V", "R", "I"))
    return SerialFilterWheel("wheel", t, timeout_s=0.5, **kwargs)


async def test_cfw_connect_move_and_echo() -> None:
    t = cfw_connect(ScriptedTransport())
    w = wheel(t, focus_offsets=(0, 1, 2, 3, 4))
    await w.connect()
    assert w.version == "20230415"
    assert await w.names() == ["L", "B", "V", "R", "I"]
    assert await w.focus_offsets() == [0, 1, 2, 3, 4]
    t.expect(b"NOW", b"0")
    assert await w.position() == 0
    t.expect(b"3", None)
    await w.move(3)
    assert await w.position() is None  # nothing sent while the wheel turns
    with pytest.raises(DeviceBusyError, match="still moving"):
        await w.move(1)
    t.feed(b"3")
    assert await w.position() == 3
    assert t.done()


async def test_cfw_default_names_and_offsets() -> None:
    t = cfw_connect(ScriptedTransport(), slots=b"7", at=b"6")
    w = SerialFilterWheel("wheel", t, timeout_s=0.5)
    with pytest.raises(DeviceNotConnectedError):
        await w.names()
    await w.connect()
    assert await w.names() == [f"Filter {i}" for i in range(1, 8)]
    assert await w.focus_offsets() == [0] * 7


@pytest.mark.parametrize("slot", [-1, 5, 10])
async def test_cfw_bad_slot_sends_nothing(slot: int) -> None:
    t = cfw_connect(ScriptedTransport())
    w = wheel(t)
    await w.connect()
    with pytest.raises(InvalidDeviceValueError):
        await w.move(slot)
    assert t.done()


@pytest.mark.parametrize(
    ("replies", "match"),
    [
        ((b"2023\xff415", b"5", b"0"), "garbled reply to VRS"),
        ((b"20230415", b"x", b"0"), "garbled reply to MXP"),
        ((b"20230415", b"F", b"0"), "16 slots"),
        ((b"20230415", b"7", b"0"), "7 slots but 5 filter names"),
        ((b"20230415", b"5", b"9"), "garbled reply to NOW"),
    ],
)
async def test_cfw_connect_refuses_bad_replies(replies: tuple[bytes, ...], match: str) -> None:
    t = ScriptedTransport()
    for command, reply in zip((b"VRS", b"MXP", b"NOW"), replies, strict=True):
        t.expect(command, reply)
    with pytest.raises(DeviceError, match=match):
        await wheel(t).connect()


async def test_cfw_wrong_or_garbled_echo_then_resync() -> None:
    t = cfw_connect(ScriptedTransport())
    w = wheel(t)
    await w.connect()
    t.expect(b"2", None)
    await w.move(2)
    t.feed(b"\xa5")
    with pytest.raises(DeviceError, match="garbled reply to move to 2"):
        await w.position()
    t.expect(b"VRS", b"\x81\x82" + b"20230415").expect(b"NOW", b"2")
    assert await w.position() == 2
    t.expect(b"4", None)
    await w.move(4)
    t.feed(b"1")
    with pytest.raises(DeviceError, match="slot 1 after a move to 4"):
        await w.position()


async def test_cfw_move_timeout() -> None:
    t = cfw_connect(ScriptedTransport())
    w = wheel(t, move_timeout_s=0.0)
    await w.connect()
    t.expect(b"1", None)
    await w.move(1)
    with pytest.raises(DeviceTimeoutError, match="not finished"):
        await w.position()
    t.expect(b"VRS", b"20230415").expect(b"NOW", b"1")
    assert await w.position() == 1
    assert t.done()


def test_cfw_offsets_must_match_names() -> None:
    with pytest.raises(ValueError, match="must match"):
        SerialFilterWheel("wheel", ScriptedTransport(), names=("L",), focus_offsets=(1, 2))


async def test_meade_pulse_guide_bytes_and_its_own_count_of_the_pulse() -> None:
    t = meade_connect(ScriptedTransport())
    m = mount(t)
    await m.connect()
    t.expect(b":D#", b"#").expect(b":Mge0250#", None)
    await m.pulse_guide(GuideDirection.EAST, 0.25)
    # FixedClock stands still: the 250 ms pulse has not ended by the Meade's count.
    assert await m.is_pulse_guiding()
    t.expect(b":D#", b"\x7f#")
    with pytest.raises(DeviceBusyError, match="slewing"):
        await m.pulse_guide(GuideDirection.NORTH, 0.25)
    with pytest.raises(InvalidDeviceValueError, match="9999"):
        await m.pulse_guide(GuideDirection.NORTH, 10.0)  # four digits at most


async def test_onstep_pulse_guide_asks_its_state_first() -> None:
    t = onstep_connect(ScriptedTransport())
    m = mount(t)
    await m.connect()
    t.expect(b":GU#", b"NpEW0#").expect(b":Mgs1200#", None)
    await m.pulse_guide(GuideDirection.SOUTH, 1.2)
    t.expect(b":GU#", b"NpGgEW0#")  # OnStepX: 'G' pulse guide, 'g' any guiding
    assert await m.is_pulse_guiding()
    t.expect(b":GU#", b"nNPEo0#")
    with pytest.raises(DeviceParkedError):
        await m.pulse_guide(GuideDirection.WEST, 1.0)
    t.expect(b":GU#", b"pEW0#")  # no 'N': a goto in progress
    with pytest.raises(DeviceBusyError, match="slewing"):
        await m.pulse_guide(GuideDirection.WEST, 1.0)
    with pytest.raises(InvalidDeviceValueError, match="16399"):
        await m.pulse_guide(GuideDirection.WEST, 16.4)
    assert await m.guide_rates() == pytest.approx((7.5205, 7.5205), abs=1e-4)
