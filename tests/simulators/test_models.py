"""Device models: camera state machine and cooler, filter wheel, mount geometry and motion."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from obsctl.clock import ScaledClock
from obsctl.config import (
    SimulatedCameraConfig,
    SimulatedFilterWheelConfig,
    SimulatedMountConfig,
    SimulatedSkyConfig,
    SimulatorConfig,
    SiteConfig,
    TelescopeConfig,
)
from obsctl.devices import CameraState, PierSide
from obsctl.simulators import AscomError, CameraModel, FilterWheelModel, MountModel
from obsctl.simulators.models import ascom_datetime
from obsctl.simulators.mount_model import altaz_to_hadec, hadec_to_altaz
from obsctl.simulators.observatory import SimulatedObservatory

SITE = SiteConfig(name="Test site", latitude_deg=48.0, longitude_deg=11.0, elevation_m=500.0)
TELESCOPE = TelescopeConfig(focal_length_mm=800.0, aperture_mm=200.0)


def camera(speed: float = 1000.0, **kw: Any) -> CameraModel:
    config = SimulatedCameraConfig(**({"width_px": 128, "height_px": 96} | kw))
    model = CameraModel(
        config, SimulatedSkyConfig(), focal_length_mm=800.0, clock=ScaledClock(speed)
    )
    model.connected = True
    return model


def mount(speed: float = 1000.0, start: datetime | None = None, **kw: Any) -> MountModel:
    model = MountModel(SimulatedMountConfig(**kw), SITE, ScaledClock(speed, start))
    model.connected = True
    return model


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.001)


def ascom_number(excinfo: pytest.ExceptionInfo[AscomError]) -> int:
    return excinfo.value.number


# --- camera ----------------------------------------------------------------------------


async def test_camera_state_sequence() -> None:
    cam = camera(speed=100.0)  # 5 s -> 50 ms exposing, 1 s readout -> 10 ms
    cam.start_exposure(5.0, True)
    seen = [cam.state]
    while not cam.image_ready:
        if cam.state != seen[-1]:
            seen.append(cam.state)
        await asyncio.sleep(0.001)
    seen.append(cam.state)
    assert seen == [CameraState.EXPOSING, CameraState.READING, CameraState.IDLE]
    assert cam.image.shape == (96, 128) and cam.image.dtype == np.uint16
    assert cam.percent_completed == 100.0
    assert cam.last_exposure.duration_s == 5.0
    assert cam.last_truth is not None
    assert len(ascom_datetime(cam.last_exposure.start_time)) == 27


class SteppedClock:
    """Simulated time that moves only when the test advances it: no real time to wait for."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._moved = asyncio.Event()

    def now(self) -> datetime:
        return datetime(2026, 11, 25, 22, 0, tzinfo=UTC) + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return self.seconds

    async def sleep(self, seconds: float) -> None:
        end = self.seconds + max(0.0, seconds)
        while self.seconds < end:
            await self._moved.wait()

    def advance(self, seconds: float) -> None:
        self.seconds += seconds
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()


async def test_camera_percent_completed_grows() -> None:
    clock = SteppedClock()
    cam = CameraModel(
        SimulatedCameraConfig(width_px=128, height_px=96),
        SimulatedSkyConfig(),
        focal_length_mm=800.0,
        clock=clock,
    )
    cam.connected = True
    cam.start_exposure(2.0, True)
    assert cam.percent_completed == 0.0
    clock.advance(0.5)
    assert cam.percent_completed == pytest.approx(25.0)
    clock.advance(1.0)
    assert cam.percent_completed == pytest.approx(75.0)
    assert cam.state == CameraState.EXPOSING
    cam.abort_exposure()


async def test_abort_discards_and_stop_keeps_shorter_image() -> None:
    cam = camera(speed=100.0)
    cam.start_exposure(100.0, True)
    await asyncio.sleep(0.02)
    cam.abort_exposure()
    assert cam.state == CameraState.IDLE and not cam.image_ready
    with pytest.raises(AscomError) as excinfo:
        _ = cam.image
    assert ascom_number(excinfo) == 0x40B

    cam.start_exposure(100.0, True)
    await asyncio.sleep(0.1)  # about 10 simulated seconds
    cam.stop_exposure()
    await wait_until(lambda: cam.image_ready)
    duration = cam.last_exposure.duration_s
    assert 1.0 < duration < 100.0
    assert cam.last_exposure.requested_s == 100.0


async def test_invalid_duration_binning_and_subframe() -> None:
    cam = camera()
    for duration in (0.0, -1.0, 4000.0):
        with pytest.raises(AscomError) as excinfo:
            cam.start_exposure(duration, True)
        assert ascom_number(excinfo) == 0x401
    with pytest.raises(AscomError) as excinfo:
        cam.set_bin_x(5)
    assert ascom_number(excinfo) == 0x401
    cam.set_bin_x(2)
    cam.num_x = 128  # fits unbinned, not at bin 2: caught at StartExposure as ASCOM says
    with pytest.raises(AscomError) as excinfo:
        cam.start_exposure(1.0, True)
    assert ascom_number(excinfo) == 0x401
    assert cam.state == CameraState.IDLE


async def test_busy_and_not_connected() -> None:
    cam = camera(speed=10.0)
    cam.start_exposure(10.0, True)
    with pytest.raises(AscomError) as excinfo:
        cam.start_exposure(1.0, True)
    assert ascom_number(excinfo) == 0x40B
    cam.abort_exposure()
    cam.connected = False
    with pytest.raises(AscomError) as excinfo:
        cam.start_exposure(1.0, True)
    assert ascom_number(excinfo) == 0x407


async def test_dark_frame_has_no_stars_and_binning_shapes() -> None:
    cam = camera()
    cam.set_bin_x(2)
    cam.set_bin_y(2)
    cam.start_x, cam.start_y, cam.num_x, cam.num_y = 4, 2, 32, 24
    cam.start_exposure(1.0, False)
    await wait_until(lambda: cam.image_ready)
    assert cam.image.shape == (24, 32)
    assert cam.last_truth is not None and len(cam.last_truth.stars) == 0
    assert not cam.image.flags.writeable


async def test_cooler_relaxes_to_set_point() -> None:
    cam = camera(speed=20000.0, cooler_tau_s=60.0, ambient_c=15.0, cooler_max_delta_c=35.0)
    assert cam.ccd_temperature_c == pytest.approx(15.0)
    assert cam.cooler_power_pct == 0.0
    cam.set_set_point_c(-10.0)
    cam.set_cooler_on(True)
    t_start = cam.ccd_temperature_c
    await asyncio.sleep(0.05)  # ~1000 simulated s = 17 tau
    assert cam.ccd_temperature_c == pytest.approx(-10.0, abs=0.01)
    assert t_start > cam.ccd_temperature_c
    assert cam.cooler_power_pct == pytest.approx(100.0 * 25.0 / 35.0, abs=0.1)
    cam.set_set_point_c(-40.0)  # beyond the cooler's reach: ambient - 35 = -20
    await asyncio.sleep(0.05)
    assert cam.ccd_temperature_c == pytest.approx(-20.0, abs=0.01)
    cam.set_cooler_on(False)
    await asyncio.sleep(0.05)
    assert cam.ccd_temperature_c == pytest.approx(15.0, abs=0.01)
    with pytest.raises(AscomError):
        cam.set_set_point_c(-300.0)


def test_gain_changes_electrons_per_adu() -> None:
    cam = camera()
    assert cam.electrons_per_adu == pytest.approx(0.8)
    cam.set_gain(200)
    assert cam.electrons_per_adu == pytest.approx(0.08)
    with pytest.raises(AscomError) as excinfo:
        cam.set_gain(301)
    assert ascom_number(excinfo) == 0x401
    cam.set_readout_mode(1)
    assert cam.readout_time_s == pytest.approx(1.0 / 3.0)


async def test_scene_follows_mount_and_filter() -> None:
    sim = SimulatorConfig(camera=SimulatedCameraConfig(width_px=128, height_px=96))
    obs = SimulatedObservatory.from_config(sim, SITE, TELESCOPE, ScaledClock(1000.0))
    obs.filter_wheel.connected = obs.mount.connected = True
    obs.filter_wheel.move(3)
    scene = obs.camera.scene()
    assert scene.band == "R"
    assert scene.pixel_scale_arcsec == pytest.approx(206.265 * 3.76 / 800.0)
    assert scene.ra_deg == pytest.approx(obs.mount.pointing().ra_deg, abs=0.01)
    assert scene.flat_panel_e_s is None
    obs.camera.flat_panel_on = True
    assert obs.camera.scene().flat_panel_e_s == sim.sky.flat_panel_e_s
    await obs.close()


# --- filter wheel ----------------------------------------------------------------------


async def test_filter_wheel_moves_with_time() -> None:
    wheel = FilterWheelModel(SimulatedFilterWheelConfig(move_time_s=1.0), ScaledClock(100.0))
    wheel.connected = True
    assert wheel.position == 0
    wheel.move(2)  # 2 slots: 20 ms
    assert wheel.position == -1
    await wait_until(lambda: wheel.position == 2)
    wheel.move(0)
    wheel.move(4)  # from 0 the short way round is one slot
    await wait_until(lambda: wheel.position == 4, timeout_s=1.0)
    with pytest.raises(AscomError) as excinfo:
        wheel.move(5)
    assert ascom_number(excinfo) == 0x401
    assert wheel.focus_offsets == [0, 35, 20, 10, -15]


# --- mount -----------------------------------------------------------------------------


def test_altaz_round_trip() -> None:
    for ha, dec in ((-30.0, 20.0), (45.0, -10.0), (170.0, 80.0)):
        alt, az = hadec_to_altaz(ha, dec, 48.0)
        ha2, dec2 = altaz_to_hadec(alt, az, 48.0)
        assert (ha2, dec2) == pytest.approx((ha, dec), abs=1e-9)
    # Meridian, south of zenith: azimuth 180.
    assert hadec_to_altaz(0.0, 0.0, 48.0) == pytest.approx((42.0, 180.0))


async def test_slew_reaches_target() -> None:
    m = mount(speed=1000.0)
    m.set_tracking(True)
    ra = (m.pointing().lst_deg - 20.0) % 360.0
    m.slew_to_radec(ra, 30.0)
    assert m.slewing
    await wait_until(lambda: not m.slewing)
    p = m.pointing()
    assert p.ra_deg == pytest.approx(ra, abs=1e-6)
    assert p.dec_deg == pytest.approx(30.0)
    assert m.side_of_pier == PierSide.EAST  # HA = +20 deg
    assert m.destination_side_of_pier((p.lst_deg + 20.0) % 360.0, 30.0) == PierSide.WEST


async def test_tracking_off_keeps_hour_angle() -> None:
    m = mount(speed=3600.0)  # one simulated hour per real second
    m.set_tracking(True)
    ra = m.pointing().lst_deg % 360.0
    m.slew_to_radec(ra, 40.0)
    await wait_until(lambda: not m.slewing)
    m.set_tracking(False)
    before = m.pointing()
    await asyncio.sleep(0.1)  # about 6 simulated minutes = 1.5 deg of sky rotation
    after = m.pointing()
    assert after.ha_deg == pytest.approx(before.ha_deg)
    assert (after.ra_deg - before.ra_deg) % 360.0 > 0.5
    m.set_tracking(True)
    held = m.pointing().ra_deg
    await asyncio.sleep(0.1)
    assert m.pointing().ra_deg == pytest.approx(held, abs=1e-6)


async def test_altaz_matches_astropy() -> None:
    from astropy import units as u
    from astropy.coordinates import TETE, AltAz, EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    start = datetime(2024, 3, 1, 22, 0, tzinfo=UTC)
    m = mount(speed=1000.0, start=start)
    m.set_tracking(True)
    ra = (m.pointing().lst_deg + 35.0) % 360.0
    m.slew_to_radec(ra, 25.0)
    await wait_until(lambda: not m.slewing)
    p = m.pointing()
    when = m.clock.now()

    location = EarthLocation(lat=SITE.latitude_deg * u.deg, lon=SITE.longitude_deg * u.deg)
    with (
        iers.conf.set_temp("auto_download", False),
        iers.conf.set_temp("auto_max_age", None),
        iers.conf.set_temp("iers_degraded_accuracy", "warn"),
        warnings.catch_warnings(),
    ):
        # Offline IERS data may be stale: astropy warns and degrades by milliarcseconds.
        warnings.simplefilter("ignore")
        t = Time(when)
        # The mount treats J2000 as of date, so compare in the true-equator frame of date.
        coord = SkyCoord(p.ra_deg * u.deg, p.dec_deg * u.deg, frame=TETE(obstime=t))
        altaz = coord.transform_to(AltAz(obstime=t, location=location))
    assert p.alt_deg == pytest.approx(altaz.alt.deg, abs=0.1)
    assert p.az_deg == pytest.approx(altaz.az.deg, abs=0.1)


async def test_slew_to_altaz_requires_tracking_off() -> None:
    m = mount()
    m.slew_to_altaz(45.0, 120.0)
    await wait_until(lambda: not m.slewing)
    p = m.pointing()
    assert (p.alt_deg, p.az_deg) == pytest.approx((45.0, 120.0), abs=1e-6)
    m.set_tracking(True)
    with pytest.raises(AscomError) as excinfo:
        m.slew_to_altaz(45.0, 120.0)
    assert ascom_number(excinfo) == 0x40B


async def test_limits_and_ranges() -> None:
    m = mount(min_alt_deg=10.0)
    with pytest.raises(AscomError) as excinfo:
        m.slew_to_altaz(5.0, 90.0)
    assert ascom_number(excinfo) == 0x401
    lst = m.pointing().lst_deg
    with pytest.raises(AscomError) as excinfo:
        m.slew_to_radec((lst + 180.0) % 360.0, -60.0)  # below the horizon
    assert ascom_number(excinfo) == 0x401
    for ra, dec in ((360.0, 0.0), (0.0, 91.0)):
        with pytest.raises(AscomError) as excinfo:
            m.slew_to_radec(ra, dec)
        assert ascom_number(excinfo) == 0x401
    with pytest.raises(AscomError) as excinfo:
        _ = m.target_ra_deg
    assert ascom_number(excinfo) == 0x402


async def test_park_unpark() -> None:
    m = mount(park_alt_deg=0.0, park_az_deg=0.0)
    m.set_tracking(True)
    m.park()
    assert not m.tracking
    assert m.slewing and not m.at_park
    await wait_until(lambda: m.at_park)
    p = m.pointing()
    assert p.alt_deg == pytest.approx(0.0, abs=1e-6)
    assert p.az_deg == pytest.approx(0.0, abs=1e-6) or p.az_deg == pytest.approx(360.0)
    lst = p.lst_deg
    with pytest.raises(AscomError) as excinfo:
        m.slew_to_radec(lst, 40.0)
    assert ascom_number(excinfo) == 0x408
    with pytest.raises(AscomError) as excinfo:
        m.abort_slew()
    assert ascom_number(excinfo) == 0x408
    m.unpark()
    assert not m.at_park
    m.slew_to_radec(lst, 40.0)
    await wait_until(lambda: not m.slewing)


async def test_abort_slew_and_sync() -> None:
    m = mount(speed=10.0, slew_rate_deg_s=1.0)
    m.slew_to_altaz(80.0, 180.0)
    await asyncio.sleep(0.05)
    m.abort_slew()
    assert not m.slewing
    stopped = m.pointing()
    assert abs(stopped.alt_deg - 80.0) > 10.0
    await asyncio.sleep(0.05)
    assert m.pointing().alt_deg == pytest.approx(stopped.alt_deg)
    m.set_tracking(True)
    m.sync_to_radec(100.0, 20.0)
    p = m.pointing()
    assert (p.ra_deg, p.dec_deg) == pytest.approx((100.0, 20.0), abs=1e-6)


# --- states real drivers leave behind (issue 15) -------------------------------------


@pytest.mark.parametrize("cleared_by", ["abort", "reconnect"])
async def test_camera_left_in_error_after_a_failed_exposure(cleared_by) -> None:
    cam = camera()
    cam.fail_next_exposure(cleared_by=cleared_by)
    cam.start_exposure(1.0, light=False)
    await wait_until(lambda: cam.state == CameraState.ERROR)
    assert not cam.image_ready
    with pytest.raises(AscomError) as busy:
        cam.start_exposure(1.0, light=False)
    assert ascom_number(busy) == 0x40B
    cam.abort_exposure()
    if cleared_by == "reconnect":
        assert cam.state == CameraState.ERROR  # the abort does not help such a driver
        cam.connected = False
        cam.connected = True
    assert cam.state == CameraState.IDLE
    cam.start_exposure(1.0, light=False)  # only the one exposure failed
    await wait_until(lambda: cam.image_ready)


async def test_camera_error_cleared_by_abort_survives_a_reconnection() -> None:
    cam = camera()
    cam.fail_next_exposure(cleared_by="abort")
    cam.start_exposure(1.0, light=False)
    await wait_until(lambda: cam.state == CameraState.ERROR)
    cam.connected = False
    cam.connected = True
    assert cam.state == CameraState.ERROR


async def test_camera_that_ignores_abort_keeps_exposing() -> None:
    cam = camera(speed=100.0)
    cam.abort_ignored = True
    cam.start_exposure(2.0, light=False)
    cam.abort_exposure()
    assert cam.state == CameraState.EXPOSING
    await wait_until(lambda: cam.image_ready)  # it ran to its end, readout included
    assert cam.state == CameraState.IDLE
    await cam.close()


async def test_mount_left_slewing_until_abort_slew() -> None:
    m = mount()
    m.slewing_stuck = True
    assert m.slewing
    m.slew_to_altaz(60.0, 180.0)
    await asyncio.sleep(0.05)  # long enough for the slew to end at this speed
    assert m.slewing  # a new slew does not clear it
    m.abort_slew()
    assert not m.slewing
    assert not m.slewing_stuck
