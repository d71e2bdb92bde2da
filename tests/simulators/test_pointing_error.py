"""The simulated mount's pointing error: the optics look off the reported position.

Truth from the inputs: the configured offsets (arcsec) divided by the pixel scale the test
computes from the pixel size and focal length, and the drift rate and periodic error
amplitude and period as configured. Shifts are measured in rendered frames: stars found by
SEP against the synthetic catalog's stars projected with a TAN WCS the test builds at the
mount's reported position. The test never reads the error from the code under test to
build its expectation.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pytest
import sep
from alpaca.telescope import Telescope
from astropy.wcs import WCS

from obsctl.clock import ScaledClock
from obsctl.config import (
    SimulatedCameraConfig,
    SimulatedMountConfig,
    SimulatedSkyConfig,
    SimulatorConfig,
    SiteConfig,
    TelescopeConfig,
)
from obsctl.devices import PierSide
from obsctl.simulators import running_simulators
from obsctl.simulators.mount_model import MountModel
from obsctl.simulators.observatory import SimulatedObservatory
from obsctl.simulators.pointing_error import offset_radec_deg
from obsctl.simulators.render import render_exposure
from obsctl.simulators.scenes import exposure

from ..stepped_clock import SteppedClock

FOCAL_MM = 400.0
PIXEL_UM = 5.8
SCALE = 206264.806 * PIXEL_UM * 1e-3 / FOCAL_MM  # arcsec per pixel, ~2.99
SIZE = 320  # pixels a side: a 16 arcmin field
EAST = (300.0, -120.0)  # (dRA cos Dec, dDec) arcsec, mount east of the pier
WEST = (-150.0, 200.0)
DEC = 40.0
SITE = SiteConfig(name="Test site", latitude_deg=48.0, longitude_deg=11.0, elevation_m=500.0)


def observatory(**mount: Any) -> tuple[SimulatedObservatory, SteppedClock]:
    """A tracking, connected mount and a small camera on a clock the test advances."""
    sim = SimulatorConfig(
        camera=SimulatedCameraConfig(width_px=SIZE, height_px=SIZE, pixel_size_um=PIXEL_UM),
        # Two-pixel stars for clean centroids; no airmass effects, galaxies or trails.
        sky=SimulatedSkyConfig(
            seeing_arcsec=6.0,
            seeing_airmass_exponent=0.0,
            extinction=False,
            galaxies=False,
            satellite_trails=False,
        ),
        mount=SimulatedMountConfig(slew_rate_deg_s=100.0, settle_s=0.0, **mount),
    )
    clock = SteppedClock()
    telescope = TelescopeConfig(focal_length_mm=FOCAL_MM, aperture_mm=100.0)
    obs = SimulatedObservatory.from_config(sim, SITE, telescope, clock)
    obs.mount.connected = True
    obs.mount.set_tracking(True)
    return obs, clock


def slew_to_hour_angle(mount: MountModel, clock: SteppedClock, ha_deg: float) -> float:
    """Slew to DEC at an hour angle (west positive) and wait the slew out; return the RA.

    The clock steps 10 ms at a time, so the slew ends (and the drift starts) less than
    10 ms before the clock's time on return.
    """
    ra = (mount.pointing().lst_deg - ha_deg) % 360.0
    mount.slew_to_radec(ra, DEC)
    while mount.slewing:  # 100 deg/s: 2 s at most
        clock.advance(0.01)
    return ra


def reported_wcs(ra_deg: float, dec_deg: float) -> WCS:
    """The frame's TAN WCS if the optics looked where the mount reports (north up, east left)."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra_deg, dec_deg]
    wcs.wcs.crpix = [(SIZE + 1) / 2.0, (SIZE + 1) / 2.0]
    wcs.wcs.cdelt = [-SCALE / 3600.0, SCALE / 3600.0]
    wcs.wcs.set()
    return wcs


def measured_shift_px(obs: SimulatedObservatory, exposure_s: float = 10.0) -> tuple[float, float]:
    """Render a frame now; return where its stars are minus where the reported pointing puts them.

    The stars are found by SEP; the offset is the peak of all detection-minus-catalog
    differences (no prior on its size), refined by the median of the matches near it.
    """
    camera = obs.camera
    reported = obs.mount.pointing()
    result = render_exposure(
        camera.sensor, exposure(camera.sensor, exposure_s=exposure_s), camera.scene(exposure_s)
    )
    data = np.ascontiguousarray(result.image, dtype=np.float64)
    data -= sep.Background(data).back()
    found = sep.extract(data, 10.0, minarea=4)
    found = found[found["flux"] > 2e3]
    bright = result.stars[result.stars["flux_e"] > 2e3]
    x_cat, y_cat = reported_wcs(reported.ra_deg, reported.dec_deg).wcs_world2pix(
        bright["ra_deg"], bright["dec_deg"], 0
    )
    dx = (found["x"][:, None] - x_cat[None, :]).ravel()
    dy = (found["y"][:, None] - y_cat[None, :]).ravel()
    counts, xe, ye = np.histogram2d(dx, dy, bins=2 * SIZE // 2, range=[[-SIZE, SIZE]] * 2)
    i, j = np.unravel_index(np.argmax(counts), counts.shape)
    px, py = (xe[i] + xe[i + 1]) / 2.0, (ye[j] + ye[j + 1]) / 2.0
    near = np.hypot(dx - px, dy - py) < 2.0
    assert near.sum() >= 8, near.sum()
    return float(np.median(dx[near])), float(np.median(dy[near]))


def expected_shift_px(east_arcsec: float, north_arcsec: float) -> tuple[float, float]:
    """The optics look east by E: the reported point lies west of centre, at +x (east is -x)."""
    return east_arcsec / SCALE, -north_arcsec / SCALE


def solved_centre(obs: SimulatedObservatory, shift: tuple[float, float]) -> tuple[float, float]:
    """A plate solution: the sky at the frame's centre, from the reported WCS and the shift."""
    reported = obs.mount.pointing()
    centre = (SIZE - 1) / 2.0
    ra, dec = reported_wcs(reported.ra_deg, reported.dec_deg).wcs_pix2world(
        centre - shift[0], centre - shift[1], 0
    )
    return float(ra) % 360.0, float(dec)


# --- the fixed error per pier side ---------------------------------------------------


@pytest.mark.parametrize(
    ("ha_deg", "side", "offset"),
    [(-20.0, PierSide.WEST, WEST), (20.0, PierSide.EAST, EAST)],
    ids=["east-of-meridian", "west-of-meridian"],
)
def test_frames_are_shifted_by_the_pier_sides_error(
    ha_deg: float, side: PierSide, offset: tuple[float, float]
) -> None:
    obs, clock = observatory(pointing_error_east_arcsec=EAST, pointing_error_west_arcsec=WEST)
    ra = slew_to_hour_angle(obs.mount, clock, ha_deg)
    assert obs.mount.side_of_pier == side
    # The mount reports what it was told, as a real one's encoders do.
    reported = obs.mount.pointing()
    assert (reported.ra_deg, reported.dec_deg) == pytest.approx((ra, DEC), abs=1e-9)
    assert measured_shift_px(obs) == pytest.approx(expected_shift_px(*offset), abs=0.15)


def test_no_error_configured_leaves_frames_where_the_mount_reports() -> None:
    obs, clock = observatory()
    slew_to_hour_angle(obs.mount, clock, -20.0)
    assert obs.mount.pointing_error_arcsec() == (0.0, 0.0)
    assert obs.mount.true_pointing() == obs.mount.pointing()
    assert measured_shift_px(obs) == pytest.approx((0.0, 0.0), abs=0.15)


def test_the_in_process_truth_is_the_configured_error() -> None:
    obs, clock = observatory(pointing_error_east_arcsec=EAST, pointing_error_west_arcsec=WEST)
    slew_to_hour_angle(obs.mount, clock, 20.0)
    assert obs.mount.pointing_error_arcsec() == pytest.approx(EAST)
    reported, true = obs.mount.pointing(), obs.mount.true_pointing()
    # Small-angle check of the true position (second-order terms are under 0.2 arcsec).
    cos_dec = math.cos(math.radians(DEC))
    assert (true.ra_deg - reported.ra_deg) * 3600.0 * cos_dec == pytest.approx(EAST[0], abs=0.5)
    assert (true.dec_deg - reported.dec_deg) * 3600.0 == pytest.approx(EAST[1], abs=0.5)


# --- sync ----------------------------------------------------------------------------


def test_sync_re_zeros_the_side_and_the_other_side_keeps_its_error() -> None:
    obs, clock = observatory(pointing_error_east_arcsec=EAST, pointing_error_west_arcsec=WEST)
    mount = obs.mount
    ra = slew_to_hour_angle(mount, clock, -20.0)  # west side
    shift = measured_shift_px(obs)
    assert shift == pytest.approx(expected_shift_px(*WEST), abs=0.15)
    solved = solved_centre(obs, shift)
    mount.sync_to_radec(*solved)
    after = mount.pointing()
    assert (after.ra_deg, after.dec_deg) == pytest.approx(solved, abs=1e-9)
    # The optics still see the same sky: a new frame, read against the new reported
    # position, is centred; the solution was within a fraction of a pixel of the truth.
    assert measured_shift_px(obs) == pytest.approx((0.0, 0.0), abs=0.3)

    mount.slew_to_radec(ra, DEC)  # back to the target, same side: only drift (none here)
    clock.advance(5.0)
    assert mount.side_of_pier == PierSide.WEST
    assert measured_shift_px(obs) == pytest.approx((0.0, 0.0), abs=0.5)  # 1.5 arcsec

    slew_to_hour_angle(mount, clock, 20.0)  # the other side: its error is untouched
    assert measured_shift_px(obs) == pytest.approx(expected_shift_px(*EAST), abs=0.15)
    slew_to_hour_angle(mount, clock, -25.0)  # and the synced side stays synced
    assert measured_shift_px(obs) == pytest.approx((0.0, 0.0), abs=0.5)


def test_sync_without_error_still_places_the_mount() -> None:
    """As before the error model: a sync moves the reported (and seen) position."""
    obs, _ = observatory()
    obs.mount.sync_to_radec(100.0, 20.0)
    p = obs.mount.pointing()
    assert (p.ra_deg, p.dec_deg) == pytest.approx((100.0, 20.0), abs=1e-9)
    assert obs.mount.true_pointing() == p


# --- drift and periodic error --------------------------------------------------------


def test_drift_grows_linearly_with_time_since_the_slew() -> None:
    rate = (36.0, -18.0)  # arcsec per hour
    obs, clock = observatory(pointing_error_east_arcsec=EAST, drift_arcsec_per_h=rate)
    mount = obs.mount
    ra = slew_to_hour_angle(mount, clock, 30.0)  # east side
    settled = clock.seconds
    for hours in (0.5, 1.0, 2.0):
        clock.seconds = settled + hours * 3600.0
        expected = (EAST[0] + rate[0] * hours, EAST[1] + rate[1] * hours)
        # The slew ended within 10 ms before `settled`: 1e-4 arcsec of drift.
        assert mount.pointing_error_arcsec() == pytest.approx(expected, abs=1e-3)
        p = mount.pointing()  # tracking: the report does not drift
        assert (p.ra_deg, p.dec_deg) == pytest.approx((ra, DEC), abs=1e-9)
    # In a frame, at mid-exposure: a 20-minute exposure starting 1 h after the slew.
    clock.seconds = settled + 3600.0
    drift_h = (3600.0 + 600.0) / 3600.0
    expected = expected_shift_px(EAST[0] + rate[0] * drift_h, EAST[1] + rate[1] * drift_h)
    assert measured_shift_px(obs, exposure_s=1200.0) == pytest.approx(expected, abs=0.15)
    # A new slew starts the drift again.
    slew_to_hour_angle(mount, clock, 30.0)
    assert mount.pointing_error_arcsec() == pytest.approx(EAST, abs=1e-3)


def test_periodic_error_has_the_configured_amplitude_and_period() -> None:
    amplitude, period = 7.5, 480.0
    obs, clock = observatory(
        pointing_error_east_arcsec=EAST,
        periodic_error_arcsec=amplitude,
        periodic_error_period_s=period,
    )
    mount = obs.mount
    slew_to_hour_angle(mount, clock, 30.0)
    t = clock.seconds + np.arange(0.0, 2.0 * period, period / 48.0)
    east = []
    for when in t:
        clock.seconds = float(when)
        e, n = mount.pointing_error_arcsec()
        assert n == pytest.approx(EAST[1], abs=1e-9)  # in RA only
        east.append(e - EAST[0])
    pe = np.array(east)
    # Least squares on sin and cos at the configured period: the fit is exact and its
    # amplitude the configured one, so both the period and the amplitude are right.
    design = np.column_stack([np.sin(2 * np.pi * t / period), np.cos(2 * np.pi * t / period)])
    coef, *_ = np.linalg.lstsq(design, pe, rcond=None)
    assert np.abs(design @ coef - pe).max() < 1e-6
    assert math.hypot(*coef) == pytest.approx(amplitude, rel=1e-6)
    assert pe.max() - pe.min() == pytest.approx(2 * amplitude, rel=0.01)


# --- over Alpaca HTTP ----------------------------------------------------------------


def alpyca_slew_and_sync(
    address: str, ra_h: float, dec: float, true_ra_h: float, true_dec: float
) -> dict[str, float]:
    """Slew, read the report, sync to the true position, read again (alpyca is blocking)."""
    scope = Telescope(address, 0)
    scope.Connected = True
    try:
        scope.Tracking = True
        scope.SlewToCoordinatesAsync(ra_h, dec)
        while scope.Slewing:
            pass
        out = {"ra_h": scope.RightAscension, "dec": scope.Declination}
        scope.SyncToCoordinates(true_ra_h, true_dec)
        out |= {"synced_ra_h": scope.RightAscension, "synced_dec": scope.Declination}
        scope.SlewToCoordinatesAsync(ra_h, dec)
        while scope.Slewing:
            pass
        out |= {"again_ra_h": scope.RightAscension, "again_dec": scope.Declination}
        return out
    finally:
        scope.Connected = False


async def test_sync_over_alpaca_http() -> None:
    sim = SimulatorConfig(
        port=0,
        discovery_port=None,
        camera=SimulatedCameraConfig(width_px=128, height_px=96),
        mount=SimulatedMountConfig(
            slew_rate_deg_s=50.0,
            settle_s=0.0,
            pointing_error_east_arcsec=EAST,
            pointing_error_west_arcsec=WEST,
        ),
    )
    clock = ScaledClock(10.0)
    telescope = TelescopeConfig(focal_length_mm=FOCAL_MM, aperture_mm=100.0)
    async with running_simulators(sim, SITE, telescope, clock=clock, port=0) as sims:
        mount = sims.server.observatory.mount
        ra = (mount.pointing().lst_deg + 20.0) % 360.0  # HA -20 deg: the west side
        # The truth from the configuration: small-angle, good to 0.2 arcsec at 300 arcsec.
        true_ra = ra + WEST[0] / 3600.0 / math.cos(math.radians(DEC))
        true_dec = DEC + WEST[1] / 3600.0
        async with asyncio.timeout(30):
            out = await asyncio.to_thread(
                alpyca_slew_and_sync, f"127.0.0.1:{sims.port}", ra / 15.0, DEC,
                true_ra / 15.0, true_dec,
            )  # fmt: skip
        error_after = mount.pointing_error_arcsec()
        side = mount.side_of_pier
    assert (out["ra_h"], out["dec"]) == pytest.approx((ra / 15.0, DEC), abs=1e-6)
    assert (out["synced_ra_h"], out["synced_dec"]) == pytest.approx(
        (true_ra / 15.0, true_dec), abs=1e-6
    )
    assert (out["again_ra_h"], out["again_dec"]) == pytest.approx((ra / 15.0, DEC), abs=1e-6)
    assert side == PierSide.WEST
    assert error_after == pytest.approx((0.0, 0.0), abs=0.5)


# --- the pure arithmetic ---------------------------------------------------------------


@pytest.mark.parametrize("dec", [0.0, 40.0, -75.0, 89.999])
def test_an_offset_moves_by_its_length_even_at_the_pole(dec: float) -> None:
    east, north = 300.0, -400.0  # 500 arcsec long
    ra2, dec2 = offset_radec_deg(10.0, dec, east, north)
    # Great-circle distance (haversine), arcsec; gnomonic stretches by <0.001 % at 500".
    a, b, d_ra = math.radians(dec), math.radians(dec2), math.radians(ra2 - 10.0)
    h = math.sin((b - a) / 2) ** 2 + math.cos(a) * math.cos(b) * math.sin(d_ra / 2) ** 2
    distance = math.degrees(2 * math.asin(math.sqrt(h))) * 3600.0
    assert distance == pytest.approx(500.0, rel=1e-5)
    assert dec2 < dec  # north is negative
