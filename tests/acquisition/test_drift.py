"""Drift correction from the science frames (obsctl.acquisition.drift).

Truth from the simulator's inputs: frames are rendered by the camera simulator with the
mount's pointing error set (`SimulatedMountConfig.pointing_error_east_arcsec`), and the
expected shift is that offset divided by the pixel scale the test computes from the pixel
size and the focal length, with the directions of tests/simulators/test_pointing_error.py
(an offset to the east moves the stars to +x, one to the north to -y). The frames are raw
(uint16, with the sensor's column bias, hot pixels, a hot and a dead column, and cosmic rays),
and the reference and the frames differ in seeing.

The controller is driven by a simulated pointing whose drift the test sets; its residual is
the true position of the stars, which the test integrates itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from obsctl.acquisition.drift import (
    DonutsReference,
    DriftController,
    DriftLimitError,
    DriftMeasureError,
    Shift,
    measure_shift,
    star_projections,
)
from obsctl.config import (
    CloudSpell,
    SimulatedCameraConfig,
    SimulatedCloudsConfig,
    SimulatedMountConfig,
    SimulatedSkyConfig,
    SimulatorConfig,
    SiteConfig,
    TelescopeConfig,
)
from obsctl.errors import ObsctlError
from obsctl.simulators.observatory import SimulatedObservatory
from obsctl.simulators.render import RenderResult, render_exposure
from obsctl.simulators.scenes import exposure

FOCAL_MM = 400.0
PIXEL_UM = 5.8
SCALE = 206.264806 * PIXEL_UM / FOCAL_MM  # arcsec per pixel, ~2.99
WIDTH, HEIGHT = 256, 192
DEC = 40.0
EXPOSURE_S = 30.0
REFERENCE_SEEING = 6.0  # arcsec: 2.0 px FWHM
SITE = SiteConfig(name="Test site", latitude_deg=48.0, longitude_deg=11.0, elevation_m=500.0)
START = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)


class SteppedClock:
    """Simulated time that moves only when the test advances it."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> datetime:
        return START + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return self.seconds

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("nothing here waits on the simulated clock")

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


def render(
    offset_arcsec: tuple[float, float] = (0.0, 0.0),
    *,
    seeing_arcsec: float = REFERENCE_SEEING,
    seed: int = 1,
    sky_seed: int = 2024,
    **sky: Any,
) -> RenderResult:
    """A raw frame of the field with the optics off the mount's report by (east, north) ".

    The sensor has hot pixels (a dark current high enough to show them), its one hot and
    one dead column, and a cosmic-ray rate that puts a few hits in each frame. `seed` seeds
    the exposure (noise, cosmic rays), `sky_seed` the star catalog (the field).
    """
    sim = SimulatorConfig(
        camera=SimulatedCameraConfig(
            width_px=WIDTH,
            height_px=HEIGHT,
            pixel_size_um=PIXEL_UM,
            dark_current_e_s=0.5,
            hot_pixel_fraction=1e-3,
            cosmic_rate_cm2_s=6.0,
        ),
        sky=SimulatedSkyConfig(
            seeing_arcsec=seeing_arcsec,
            seeing_airmass_exponent=0.0,
            extinction=False,
            galaxies=False,
            satellite_trails=False,
            seed=sky_seed,
            **sky,
        ),
        mount=SimulatedMountConfig(
            slew_rate_deg_s=100.0,
            settle_s=0.0,
            pointing_error_east_arcsec=offset_arcsec,
            pointing_error_west_arcsec=offset_arcsec,
        ),
    )
    clock = SteppedClock()
    telescope = TelescopeConfig(focal_length_mm=FOCAL_MM, aperture_mm=100.0)
    obs = SimulatedObservatory.from_config(sim, SITE, telescope, clock)
    obs.mount.connected = True
    obs.mount.set_tracking(True)
    # The same field every time: the clock starts at the same moment for every frame.
    obs.mount.slew_to_radec((obs.mount.pointing().lst_deg + 20.0) % 360.0, DEC)
    while obs.mount.slewing:
        clock.advance(0.01)
    camera = obs.camera
    spec = exposure(camera.sensor, exposure_s=EXPOSURE_S, seed=seed)
    return render_exposure(camera.sensor, spec, camera.scene(EXPOSURE_S))


def offset_for(dx_px: float, dy_px: float) -> tuple[float, float]:
    """The (east, north) pointing offset (arcsec) that moves the stars by (dx, dy) pixels."""
    return dx_px * SCALE, -dy_px * SCALE


@pytest.fixture(scope="module")
def reference() -> RenderResult:
    return render(seed=1)


@pytest.fixture(scope="module")
def donuts(reference: RenderResult) -> DonutsReference:
    return DonutsReference(reference.image)


# --- the measured shift ----------------------------------------------------------------


def test_the_frames_carry_what_the_measurement_must_ignore(reference: RenderResult) -> None:
    """The defects are there: otherwise the tests below would prove nothing about them."""
    image = reference.image
    assert image.dtype == np.uint16
    assert reference.cosmic_count >= 1
    assert len(reference.hot_pixels) >= 30
    assert {str(k) for k in reference.bad_columns["kind"]} == {"hot", "dead"}
    assert len(reference.stars) >= 50


@pytest.mark.parametrize(
    ("dx_px", "dy_px", "seeing_arcsec", "seed"),
    [
        (0.3, 0.0, 8.5, 11),
        (0.0, -0.3, 4.5, 12),
        (-0.45, 0.35, 8.5, 13),
        (0.7, 1.6, 4.5, 14),
        (-2.5, 4.1, 8.5, 15),
        (5.25, -3.5, 4.5, 16),
        (7.3, -11.2, 8.5, 17),
        (-13.6, 9.5, 4.5, 18),
        (-19.6, 15.0, 8.5, 19),
        (20.0, -20.0, 4.5, 20),
    ],
)
def test_the_shift_is_the_pointing_offset_over_the_pixel_scale(
    donuts: DonutsReference, dx_px: float, dy_px: float, seeing_arcsec: float, seed: int
) -> None:
    frame = render(offset_for(dx_px, dy_px), seeing_arcsec=seeing_arcsec, seed=seed)
    assert frame.cosmic_count >= 1
    shift = donuts.shift(frame.image)
    assert (shift.dx_px, shift.dy_px) == pytest.approx((dx_px, dy_px), abs=0.1)
    assert shift.quality >= 0.6
    assert shift.stars >= 8


@pytest.mark.parametrize("seeing_arcsec", [REFERENCE_SEEING, 8.5])
def test_the_shift_holds_when_the_brightest_star_leaves_the_frame(
    reference: RenderResult, donuts: DonutsReference, seeing_arcsec: float
) -> None:
    """The star that dominates both projections is gone: the peaks the rest make count."""
    dx_px, dy_px = -35.0, -25.0
    brightest = reference.stars[np.argmax(reference.stars["flux_e"])]
    assert brightest["flux_e"] > 1.8 * np.sort(reference.stars["flux_e"])[-2]
    assert brightest["x"] + dx_px < -10.0  # well off the frame's left edge
    shift = donuts.shift(
        render(offset_for(dx_px, dy_px), seeing_arcsec=seeing_arcsec, seed=27).image
    )
    assert (shift.dx_px, shift.dy_px) == pytest.approx((dx_px, dy_px), abs=0.1)
    assert shift.signal_ratio < 0.8  # its light is missing


def test_the_sign_follows_the_stars_not_the_mount(donuts: DonutsReference) -> None:
    """East moves the stars to +x and north to -y (the pointing-error test's directions)."""
    east = donuts.shift(render((30.0, 0.0), seed=21).image)
    north = donuts.shift(render((0.0, 30.0), seed=22).image)
    assert east.dx_px == pytest.approx(30.0 / SCALE, abs=0.1)
    assert north.dy_px == pytest.approx(-30.0 / SCALE, abs=0.1)


def test_a_frame_against_itself_and_a_new_exposure_of_the_same_pointing(
    reference: RenderResult, donuts: DonutsReference
) -> None:
    same = donuts.shift(reference.image)
    assert (same.dx_px, same.dy_px, same.quality) == pytest.approx((0.0, 0.0, 1.0), abs=1e-9)
    assert same.signal_ratio == pytest.approx(1.0)
    again = donuts.shift(render(seed=23).image)
    assert (again.dx_px, again.dy_px) == pytest.approx((0.0, 0.0), abs=0.05)


def test_dtype_and_byte_order_do_not_matter(reference: RenderResult) -> None:
    frame = render(offset_for(3.3, -1.7), seed=24).image
    raw = measure_shift(reference.image, frame)
    as_float = measure_shift(reference.image.astype(np.float32), frame.astype(np.float64))
    swapped = measure_shift(reference.image.astype(">u2"), frame.astype(">u2"))
    assert (as_float.dx_px, as_float.dy_px) == pytest.approx((raw.dx_px, raw.dy_px), abs=1e-6)
    assert swapped == raw


def test_masked_pixels_count_as_sky(reference: RenderResult) -> None:
    frame = render(offset_for(-2.2, 1.4), seed=25).image.astype(np.float32)
    masked = np.random.default_rng(5).random(frame.shape) < 0.01
    frame[masked] = np.nan
    shift = measure_shift(reference.image, frame)
    assert (shift.dx_px, shift.dy_px) == pytest.approx((-2.2, 1.4), abs=0.1)


def test_projections_hold_the_starlight_only(reference: RenderResult) -> None:
    """Sky, noise and the column bias of a raw frame do not reach the projections."""
    x, y = star_projections(reference.image)
    assert x.shape == (WIDTH,) and y.shape == (HEIGHT,)
    assert x.sum() == pytest.approx(y.sum(), rel=1e-6)
    # Most columns hold no star: their sums are (near) zero, not 192 rows of ~1000 ADU of sky.
    assert np.median(x) < 1.0
    # The brightest star is where the simulator put it (the projection's peak).
    brightest = reference.stars[np.argmax(reference.stars["flux_e"])]
    assert abs(int(np.argmax(x)) - brightest["x"]) <= 1
    assert abs(int(np.argmax(y)) - brightest["y"]) <= 1


# --- frames that must not give a shift -------------------------------------------------


def test_a_frame_without_stars_is_an_error(donuts: DonutsReference) -> None:
    empty = render(seed=31, star_density_per_deg2=0.0)
    with pytest.raises(DriftMeasureError, match="no stars"):
        donuts.shift(empty.image)


def test_a_reference_without_stars_is_an_error() -> None:
    with pytest.raises(DriftMeasureError):
        DonutsReference(render(seed=32, star_density_per_deg2=0.0).image)


def clouds(extinction_mag: float) -> SimulatedCloudsConfig:
    spell = CloudSpell(
        start=START - timedelta(hours=1), end=START + timedelta(hours=1),
        extinction_mag=extinction_mag,
    )  # fmt: skip
    return SimulatedCloudsConfig(spells=(spell,))


def test_an_overcast_frame_is_an_error(donuts: DonutsReference) -> None:
    frame = render(offset_for(4.0, 2.0), seed=33, clouds=clouds(8.0))
    with pytest.raises(DriftMeasureError):
        donuts.shift(frame.image)


@pytest.mark.parametrize("extinction_mag", [2.0, 3.0, 4.0, 5.0, 6.0])
@pytest.mark.parametrize(("dx_px", "dy_px"), [(0.0, 0.0), (6.5, -3.2), (-15.0, 11.0)])
def test_under_cloud_an_error_or_the_right_shift(
    donuts: DonutsReference, extinction_mag: float, dx_px: float, dy_px: float
) -> None:
    """Never a confident wrong shift: either refused, or right; and cloud shows in the ratio."""
    frame = render(offset_for(dx_px, dy_px), seed=34, clouds=clouds(extinction_mag))
    try:
        shift = donuts.shift(frame.image)
    except DriftMeasureError:
        return
    assert (shift.dx_px, shift.dy_px) == pytest.approx((dx_px, dy_px), abs=0.1)
    assert shift.signal_ratio < 10 ** (-0.4 * extinction_mag) * 2.0


@pytest.mark.parametrize("seed", range(6))
def test_another_field_is_an_error(donuts: DonutsReference, seed: int) -> None:
    """The mount is elsewhere (10 to 30 arcmin off): no shift, however the peaks fall."""
    far = (600.0 + 200.0 * seed, -900.0 + 350.0 * seed)
    with pytest.raises(DriftMeasureError, match="stars"):
        donuts.shift(render(far, seed=40 + seed).image)


@pytest.mark.parametrize("catalog_seed", [7, 8, 9])
def test_a_different_sky_is_an_error(donuts: DonutsReference, catalog_seed: int) -> None:
    """Another star field at the same place: its projections correlate somewhere too."""
    frame = render(offset_for(2.0, 1.0), seed=45, sky_seed=catalog_seed)
    with pytest.raises(DriftMeasureError):
        donuts.shift(frame.image)


def test_a_shift_beyond_the_search_is_an_error_not_a_smaller_shift(
    reference: RenderResult,
) -> None:
    frame = render(offset_for(12.0, -3.0), seed=46).image
    narrow = DonutsReference(reference.image, max_shift_px=6.0)
    with pytest.raises(DriftMeasureError):
        narrow.shift(frame)
    wide = DonutsReference(reference.image, max_shift_px=15.0).shift(frame)
    assert (wide.dx_px, wide.dy_px) == pytest.approx((12.0, -3.0), abs=0.1)


def test_frames_of_another_shape_are_an_error(donuts: DonutsReference) -> None:
    frame = render(seed=47).image
    with pytest.raises(DriftMeasureError, match="256x192"):
        donuts.shift(frame[:, :-8])


def test_the_errors_are_obsctl_errors() -> None:
    assert issubclass(DriftMeasureError, ObsctlError)
    assert issubclass(DriftLimitError, ObsctlError)


@pytest.mark.parametrize("bad", [np.zeros((4, 64)), np.zeros((64,)), np.zeros((16, 16), complex)])
def test_arrays_that_are_not_images_are_programming_errors(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        star_projections(bad)


# --- the controller --------------------------------------------------------------------


def run_loop(
    controller: DriftController,
    drift: list[tuple[float, float]],
    *,
    noise_px: float = 0.0,
    delay: int = 0,
    tell_applied: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """The stars' true positions (px, against the reference) frame by frame.

    ``drift[k]`` is what the pointing moves between frame k - 1 and frame k. Each frame's
    measured shift is its true position plus Gaussian noise; the correction returned for
    frame k is in effect from frame ``k + 1 + delay`` on (``delay`` > 0: the next frame was
    already exposing when it came). With `tell_applied` the controller is told, for each
    frame, the corrections in effect during it.
    """
    rng = np.random.default_rng(seed)
    position = np.zeros(2)  # the pointing's own drift, uncorrected
    corrections: list[np.ndarray] = []
    positions = []
    for k, step in enumerate(drift):
        position = position + np.asarray(step)
        in_effect = sum(corrections[: max(0, k - delay)], start=np.zeros(2))
        true = position + in_effect
        positions.append(true)
        measured = true + rng.normal(0.0, noise_px, 2)
        applied = tuple(in_effect) if tell_applied else None
        c = controller.update(tuple(measured), applied_px=applied)
        corrections.append(np.array([c.dx_px, c.dy_px]))
    return np.array(positions)


def test_a_steady_drift_is_taken_out_with_integral_gain() -> None:
    controller = DriftController(gain_i=0.3)
    residual = run_loop(controller, [(2.0, -1.0)] * 60, noise_px=0.1)
    lengths = np.hypot(residual[:, 0], residual[:, 1])
    assert lengths[6:].max() < 1.0
    assert np.sqrt(np.mean(lengths[20:] ** 2)) < 0.4
    summary = controller.summary()
    # The corrections sum to the drift taken out: a 61st frame, 61 frames of drift on, would
    # sit near the reference too.
    assert summary.corrected_x_px + 61 * 2.0 == pytest.approx(0.0, abs=1.0)
    assert summary.corrected_y_px - 61 * 1.0 == pytest.approx(0.0, abs=1.0)


def test_without_integral_gain_a_steady_drift_lags_by_rate_over_gain() -> None:
    """The documented lag: r / gain_p per frame of drift r, and no worse."""
    residual = run_loop(DriftController(), [(2.0, 0.0)] * 30)
    assert residual[10:, 0] == pytest.approx(2.0 / 0.7, abs=0.01)
    assert residual[:, 1] == pytest.approx(0.0)


@pytest.mark.parametrize(("delay", "gain_p"), [(0, 1.0), (1, 1.0), (1, 1.4), (2, 0.7)])
def test_no_growing_oscillation_when_corrections_arrive_late(delay: int, gain_p: float) -> None:
    """Told what was in effect, the loop settles even when corrections land frames late."""
    controller = DriftController(gain_p=gain_p, deadband_px=0.0)
    drift = [(6.0, -4.0)] + [(0.0, 0.0)] * 29  # a jump, then nothing
    residual = run_loop(controller, drift, delay=delay)
    lengths = np.hypot(residual[:, 0], residual[:, 1])
    assert lengths[8:].max() < 0.05
    assert lengths.max() == pytest.approx(np.hypot(6.0, -4.0))  # never beyond the jump


def test_late_corrections_counted_twice_oscillate() -> None:
    """The same loop, not told the corrections were late: the check above would fail."""
    controller = DriftController(gain_p=1.0, deadband_px=0.0)
    drift = [(6.0, -4.0)] + [(0.0, 0.0)] * 29
    residual = run_loop(controller, drift, delay=1, tell_applied=False)
    lengths = np.hypot(residual[:, 0], residual[:, 1])
    assert lengths[8:].max() > 3.0


def test_a_step_settles_without_overshoot() -> None:
    controller = DriftController()
    drift = [(0.0, 0.0)] * 5 + [(5.0, -3.0)] + [(0.0, 0.0)] * 24
    residual = run_loop(controller, drift, noise_px=0.05, seed=3)
    direction = np.array([5.0, -3.0]) / np.hypot(5.0, -3.0)
    along = residual @ direction
    assert along[5] == pytest.approx(np.hypot(5.0, -3.0), abs=1e-9)
    assert along[5:].min() > -0.3  # no overshoot past the deadband
    assert np.abs(along[9:]).max() < 0.4


def test_integral_gain_overshoots_a_step_by_a_bounded_amount() -> None:
    """The trade-off the docstring states: with gain_i 0.3, a jump overshoots by < 35 %."""
    drift = [(5.0, 0.0)] + [(0.0, 0.0)] * 29
    residual = run_loop(DriftController(gain_i=0.3), drift)[:, 0]
    assert residual.min() < -0.5
    assert residual.min() > -0.35 * 5.0
    assert np.abs(residual[12:]).max() < 0.3


def test_the_deadband_leaves_seeing_noise_alone() -> None:
    controller = DriftController()
    rng = np.random.default_rng(4)
    for _ in range(50):
        correction = controller.update(tuple(rng.normal(0.0, 0.08, 2)))
        assert correction.is_zero
    assert controller.summary().corrections == 0
    moved = controller.update((0.5, 0.0))
    assert (moved.dx_px, moved.dy_px) == pytest.approx((-0.35, 0.0))


def test_a_correction_beyond_the_limit_is_refused_and_changes_nothing() -> None:
    controller = DriftController(max_correction_px=10.0)
    controller.update((2.0, 0.0))
    before = controller.issued_px
    with pytest.raises(DriftLimitError) as caught:
        controller.update((20.0, 5.0))
    assert caught.value.shift_px == (20.0, 5.0)
    assert caught.value.correction_px == pytest.approx((-14.0, -3.5))
    assert controller.issued_px == before
    after = controller.update((1.0, 0.0))
    assert after.dx_px == pytest.approx(-0.7)
    summary = controller.summary()
    assert (summary.frames, summary.corrections, summary.refused) == (3, 2, 1)


def test_the_summary_is_the_visits_residual_drift() -> None:
    controller = DriftController()
    shifts = [(0.1, -0.2), (0.6, 0.8), (-0.3, 0.4), (0.0, 0.0)]
    for s in shifts:
        controller.update(Shift(s[0], s[1], quality=1.0, stars=10, signal_ratio=1.0))
    summary = controller.summary()
    lengths = [np.hypot(*s) for s in shifts]
    assert summary.frames == 4
    assert summary.max_px == pytest.approx(1.0)
    assert summary.rms_px == pytest.approx(np.sqrt(np.mean(np.square(lengths))))
    assert summary.rms_x_px == pytest.approx(np.sqrt(np.mean([s[0] ** 2 for s in shifts])))
    assert controller.shifts == tuple(shifts)
    assert DriftController().summary().frames == 0


def test_bad_gains_are_programming_errors() -> None:
    for kwargs in ({"gain_p": 0.0}, {"gain_p": 2.0}, {"gain_i": -0.1}, {"deadband_px": -1.0}):
        with pytest.raises(ValueError):
            DriftController(**kwargs)
    with pytest.raises(ValueError):
        DriftController().update((float("nan"), 0.0))


# --- measurement and controller together, on rendered frames ------------------------------


def test_a_drifting_visit_is_held_on_the_reference(reference: RenderResult) -> None:
    """Each frame rendered where the drift and the corrections so far put it, measured, and
    corrected; the pointing drifts 2 px per frame in x and -1 in y."""
    donuts = DonutsReference(reference.image)
    controller = DriftController(gain_i=0.3)
    drift = np.zeros(2)
    corrected = np.zeros(2)
    truth = []
    for k in range(12):
        drift += (2.0, -1.0)
        true = drift + corrected
        truth.append(true.copy())
        shift = donuts.shift(render(offset_for(*true), seed=100 + k).image)
        assert (shift.dx_px, shift.dy_px) == pytest.approx(tuple(true), abs=0.1)
        c = controller.update(shift)
        corrected += (c.dx_px, c.dy_px)
    lengths = np.hypot(*np.array(truth).T)
    assert lengths[6:].max() < 1.0
    summary = controller.summary()
    assert summary.max_px == pytest.approx(lengths.max(), abs=0.15)
