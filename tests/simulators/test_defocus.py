"""The simulated camera's stars follow the focus: a blur circle, a doughnut far from focus.

Truth from the inputs: the blur circle's radius is ``|focus offset| * step size / (2 f-ratio)
/ pixel size`` from the config numbers, and a uniform ring of radii ``a R`` and ``R`` holds
half its light within ``R sqrt((1 + a^2) / 2)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sep

from obsctl.clock import ScaledClock
from obsctl.config import SimulatedCameraConfig, SimulatedFocuserConfig, SimulatorConfig
from obsctl.simulators import scenes
from obsctl.simulators.observatory import SimulatedObservatory
from obsctl.simulators.render import add_stars, render_exposure

from .test_alpaca_server import SITE, TELESCOPE

FWHM_PX = 2.0
SIZE = 320  # pixels a side of the V-curve's frames
OBSTRUCTION = 0.4


def half_flux_radius(image: np.ndarray, x: float, y: float) -> float:
    """Half-flux radius (pixel) by SEP of a noiseless star on a zero background."""
    data = np.ascontiguousarray(image, dtype=np.float64)
    r, _ = sep.flux_radius(data, np.array([x]), np.array([y]), np.array([30.0]), 0.5, subpix=10)
    return float(r[0])


@pytest.mark.parametrize("many", [False, True], ids=["exact-stamps", "phase-table"])
def test_a_defocused_star_is_a_ring_of_the_pupils_radii(many: bool) -> None:
    blur = 8.0
    size = 600 if many else 96
    # 36 stars take the phase-table path; one the exact stamps.
    grid = np.arange(6) * 100.0 + 40.3 if many else np.array([40.3])
    x, y = (g.ravel() for g in np.meshgrid(grid, grid + 0.2 - 0.3))
    image = np.zeros((size, size), dtype=np.float32)
    add_stars(image, x, y, np.full(x.size, 1e5), fwhm_px=FWHM_PX, beta=4.0,
              defocus_px=blur, obstruction=OBSTRUCTION)  # fmt: skip
    assert image.sum() == pytest.approx(1e5 * x.size, rel=0.01)
    star = image[:96, :96]
    cy, cx = np.indices(star.shape)
    r = np.hypot(cx - x[0], cy - y[0])
    assert (star * cx).sum() / star.sum() == pytest.approx(x[0], abs=0.05)
    # The hole: the centre holds far less light than the ring.
    assert star[r < 2.0].mean() < 0.3 * star[(r > 5.0) & (r < 7.0)].mean()
    ring = blur * math.sqrt((1.0 + OBSTRUCTION**2) / 2.0)
    # The seeing (2 px) widens the ring's half-flux radius a little.
    assert ring <= half_flux_radius(star, x[0], y[0]) < ring * 1.06


def test_in_focus_stays_sharp() -> None:
    image = np.zeros((64, 64), dtype=np.float32)
    sharp = np.zeros_like(image)
    args = (np.array([30.2]), np.array([31.7]), np.array([1e4]))
    add_stars(image, *args, fwhm_px=FWHM_PX, beta=4.0, defocus_px=0.2, obstruction=0.4)
    add_stars(sharp, *args, fwhm_px=FWHM_PX, beta=4.0)
    np.testing.assert_array_equal(image, sharp)  # under a quarter pixel: the seeing hides it


def test_the_camera_blurs_by_the_focusers_distance_from_best_focus() -> None:
    """Through the observatory: focuser position, backlash and temperature into the frame."""
    focuser = SimulatedFocuserConfig(
        start_position=30_000, best_focus_steps=30_500.0, reference_temperature_c=10.0,
        temperature_c=12.0, steps_per_c=-50.0, step_size_um=2.0, backlash_steps=30,
        obstruction=OBSTRUCTION,
    )  # fmt: skip
    camera = SimulatedCameraConfig(width_px=64, height_px=48, pixel_size_um=4.0)
    sim = SimulatorConfig(camera=camera, focuser=focuser)
    clock = ScaledClock(1e6)
    obs = SimulatedObservatory.from_config(sim, SITE, TELESCOPE, clock)
    assert obs.focuser is obs.camera.focuser
    obs.focuser.connected = True
    f_ratio = TELESCOPE.focal_length_mm / TELESCOPE.aperture_mm  # f/4
    best = 30_500.0 - 50.0 * (12.0 - 10.0)  # 30400 at 12 C

    def expected_px(optics: float) -> float:
        return abs(optics - best) * 2.0 / (2.0 * f_ratio) / 4.0

    scene = obs.camera.scene()
    assert scene.obstruction == OBSTRUCTION
    assert scene.defocus_px == pytest.approx(expected_px(30_000), abs=0.03)  # 25 px
    obs.focuser.move(30_400)
    while obs.focuser.is_moving:
        pass
    assert obs.camera.scene().defocus_px == pytest.approx(0.0, abs=0.03)
    obs.focuser.move(30_200)  # inward: the optics stop 30 steps of backlash farther out
    while obs.focuser.is_moving:
        pass
    assert obs.camera.scene().defocus_px == pytest.approx(expected_px(30_230), abs=0.03)


def test_hfr_against_focus_offset_is_a_v_curve() -> None:
    """Half-flux radii of rendered stars, by SEP, against the blur circle: a V, least at 0."""
    sensor = scenes.sensor(width_px=SIZE, height_px=SIZE, seed=5)
    offsets = np.array([-12.0, -8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0, 12.0])
    hfr = []
    for offset in offsets:
        scene = scenes.sky(
            ra_deg=120.0, dec_deg=30.0, pixel_scale_arcsec=1.5, seeing_arcsec=3.0,
            catalog_seed=3, density_per_deg2=1500.0, mag_limit=14.0,
            defocus_px=abs(offset), obstruction=OBSTRUCTION,
        )  # fmt: skip
        result = render_exposure(sensor, scenes.exposure(sensor, exposure_s=30.0), scene)
        data = result.image.astype(np.float64)
        data -= sep.Background(data).back()
        # Measured on the truth's bright stars, with no star a tenth as bright within two
        # apertures.
        rmax = 4.0 + 1.5 * abs(offset)
        x, y, flux = result.stars["x"], result.stars["y"], result.stars["flux_e"]
        apart = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
        apart[flux[None, :] < 0.1 * flux[:, None]] = np.inf
        np.fill_diagonal(apart, np.inf)
        keep = (apart.min(axis=1) > 2 * rmax) & (flux > 2e4) & (x > rmax) & (y > rmax)
        keep &= (x < SIZE - rmax) & (y < SIZE - rmax)
        r, _ = sep.flux_radius(data, x[keep], y[keep], np.full(int(keep.sum()), rmax), 0.5,
                               subpix=5)  # fmt: skip
        assert keep.sum() >= 3
        hfr.append(float(np.median(r)))
    hfr_arr = np.array(hfr)
    assert int(np.argmin(hfr_arr)) == 4  # least in focus
    assert np.all(np.diff(hfr_arr[:5]) < 0) and np.all(np.diff(hfr_arr[4:]) > 0)
    # Far from focus the ring's radius dominates: half-flux radius ~ R sqrt((1 + a^2) / 2).
    far = 12.0 * math.sqrt((1.0 + OBSTRUCTION**2) / 2.0)
    assert hfr_arr[0] == pytest.approx(far, rel=0.1)
    assert hfr_arr[-1] == pytest.approx(far, rel=0.1)
