"""Supernovae on galaxies, stellar outbursts and asteroids of the simulated sky.

The truth of every check is the scene's input: the peak magnitude and the light-curve
parameters, the host's catalog position and the offset, the asteroid's rate and direction.
Frames are rendered twice with the same seeds, with and without the object, so that the
difference holds the object's light and little noise.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import ValidationError

from obsctl.clock import ScaledClock
from obsctl.config import (
    SimulatedAsteroidConfig,
    SimulatedCameraConfig,
    SimulatedSkyConfig,
    SimulatedTransientConfig,
)
from obsctl.simulators import CameraModel, scenes
from obsctl.simulators.artefacts import galaxies
from obsctl.simulators.camera_model import sky_scene
from obsctl.simulators.render import (
    ExposureSpec,
    RenderResult,
    SensorModel,
    SkyScene,
    flat_response,
    render_exposure,
)
from obsctl.simulators.sky import synthetic_catalog
from obsctl.simulators.transients import (
    Asteroid,
    asteroids_from_config,
    galaxy_by_id,
    nearest_galaxy,
    outburst_on_star,
    supernova_on_galaxy,
    transients_from_config,
)

SIZE = 128
ZP = 22.0
EXPOSURE_S = 60.0
MJD = 60300.0
GALAXIES = {"seed": 1, "density_r21_per_deg2": 3000.0, "mag_bright": 12.0, "mag_limit": 21.0}
LN10_2_5 = 2.5 / math.log(10.0)  # magnitudes per e-fold of flux


def _sensor() -> SensorModel:
    # A deep well and a 31-bit ADC: nothing saturates, so the difference is all light.
    return scenes.sensor(
        width_px=SIZE, height_px=SIZE, full_well_e=1e7, max_adu=2**31 - 1, read_noise_e=2.0
    )


def _spec(sensor: SensorModel, **overrides: float) -> ExposureSpec:
    return scenes.exposure(sensor, exposure_s=EXPOSURE_S, seed=3, **overrides)  # type: ignore[arg-type]


def _scene(**overrides: object) -> SkyScene:
    fields: dict[str, object] = {
        "density_per_deg2": 0.0, "sky_e_s_px": 0.5, "zero_point_mag": ZP, "time_mjd": MJD,
    }  # fmt: skip
    return scenes.sky(**(fields | overrides))


def _light(
    sensor: SensorModel, with_it: RenderResult, without: RenderResult
) -> NDArray[np.float64]:
    """Electrons the object added, flat-field removed (the flat is the sensor's input)."""
    diff = with_it.image.astype(np.float64) - without.image.astype(np.float64)
    return diff / flat_response(sensor, x0=0, y0=0, width=SIZE, height=SIZE)


def _moments(image: NDArray[np.float64], x0: float, y0: float, radius: float) -> tuple[float, ...]:
    """Sum, centroid and second moments inside a circle."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    inside = np.hypot(xx - x0, yy - y0) <= radius
    w = np.where(inside, image, 0.0)
    total = w.sum()
    cx, cy = (w * xx).sum() / total, (w * yy).sum() / total
    vxx = (w * (xx - cx) ** 2).sum() / total
    vyy = (w * (yy - cy) ** 2).sum() / total
    vxy = (w * (xx - cx) * (yy - cy)).sum() / total
    return total, cx, cy, vxx, vyy, vxy


def _bright_host() -> np.void:
    return nearest_galaxy(150.0, 20.0, brighter_than_mag=19.0, **GALAXIES)  # type: ignore[arg-type]


def test_supernova_adds_its_light_curve_at_the_host_plus_offset() -> None:
    sensor = _sensor()
    host = _bright_host()
    peak, rise_d, fade_d, offset, pa = 14.0, 5.0, 20.0, 6.0, 30.0
    sn = supernova_on_galaxy(
        "sn1", host, peak_mag_v=peak, peak_mjd=MJD - 10.0, offset_arcsec=offset,
        offset_pa_deg=pa, rise_d=rise_d, fade_d=fade_d,
    )  # fmt: skip
    # Pointed 7" away from the host in each axis, so nothing sits on a pixel centre.
    base = _scene(
        ra_deg=float(host["ra_deg"]) + 7.3 / 3600.0,
        dec_deg=float(host["dec_deg"]) - 5.1 / 3600.0,
        galaxy_density_r21_per_deg2=GALAXIES["density_r21_per_deg2"],
    )
    without = render_exposure(sensor, _spec(sensor), base)
    with_sn = render_exposure(sensor, _spec(sensor), replace(base, transients=(sn,)))

    # Ten days after the peak the exponential fade has dimmed it by 10 / fade_d e-folds.
    expected_mag = peak + LN10_2_5 * 10.0 / fade_d
    expected_e = 10.0 ** (-0.4 * (expected_mag - ZP)) * EXPOSURE_S
    (row,) = with_sn.transients
    assert row["mag"] == pytest.approx(expected_mag)
    assert row["flux_e"] == pytest.approx(expected_e)
    assert row["host_kind"] == "galaxy" and row["host_id"] == host["id"]
    assert row["offset_arcsec"] == offset and row["offset_pa_deg"] == pa
    (host_px,) = with_sn.galaxies[with_sn.galaxies["id"] == host["id"]]
    # North is +y and east -x at rotation 0, 1 arcsec per pixel.
    x_sn = host_px["x"] - offset * math.sin(math.radians(pa))
    y_sn = host_px["y"] + offset * math.cos(math.radians(pa))
    # The galaxy layer is drawn for the pointing rounded to 1e-6 deg (cached between frames).
    assert (row["x"], row["y"]) == pytest.approx((x_sn, y_sn), abs=0.005)
    assert (row["host_x"], row["host_y"]) == pytest.approx((host_px["x"], host_px["y"]), abs=0.005)
    assert sn.mag("V", MJD - 10.0) == pytest.approx(peak)  # the truth at any time

    total, cx, cy, *_ = _moments(_light(sensor, with_sn, without), x_sn, y_sn, 12.0)
    assert total == pytest.approx(expected_e, rel=0.02)
    assert (cx, cy) == pytest.approx((x_sn, y_sn), abs=0.05)
    assert without.transients.size == 0


def test_supernova_before_it_appears_adds_nothing_but_keeps_its_truth_row() -> None:
    sensor = _sensor()
    sn = supernova_on_galaxy("early", _bright_host(), peak_mag_v=14.0, peak_mjd=MJD + 100.0)
    base = _scene(ra_deg=sn.ra_deg, dec_deg=sn.dec_deg)
    without = render_exposure(sensor, _spec(sensor), base)
    with_sn = render_exposure(sensor, _spec(sensor), replace(base, transients=(sn,)))
    (row,) = with_sn.transients
    assert math.isinf(row["mag"]) and row["flux_e"] == 0.0
    assert np.array_equal(with_sn.image, without.image)


def test_nova_and_flare_brighten_their_catalog_star() -> None:
    sensor = _sensor()
    stars = synthetic_catalog(150.0, 20.0, 0.01, seed=1, density_per_deg2=2000.0,
                              mag_bright=12.0, mag_limit=13.0)  # fmt: skip
    star = stars.take(np.array([0]))
    amplitude = 1.5
    nova = outburst_on_star("n", "nova", star, amplitude_mag=amplitude, epoch_mjd=MJD)
    assert nova.host_id == star.id[0] and (nova.ra_deg, nova.dec_deg) == (
        star.ra_deg[0], star.dec_deg[0],
    )  # fmt: skip
    # At its peak the star is brighter by the amplitude; the added light is the rest.
    assert nova.total_mag("V", MJD) == pytest.approx(star.mag_v[0] - amplitude)
    added_v = star.mag_v[0] - 2.5 * math.log10(10 ** (0.4 * amplitude) - 1.0)
    assert nova.mag("V", MJD) == pytest.approx(added_v)

    base = _scene(ra_deg=float(star.ra_deg[0]), dec_deg=float(star.dec_deg[0]))
    without = render_exposure(sensor, _spec(sensor), base)
    with_nova = render_exposure(sensor, _spec(sensor), replace(base, transients=(nova,)))
    (row,) = with_nova.transients
    total, *_ = _moments(_light(sensor, with_nova, without), row["x"], row["y"], 12.0)
    assert total == pytest.approx(10.0 ** (-0.4 * (added_v - ZP)) * EXPOSURE_S, rel=0.02)
    assert row["total_mag"] == pytest.approx(star.mag_v[0] - amplitude)

    flare = outburst_on_star(
        "f", "flare", star, amplitude_mag=2.0, epoch_mjd=0.0, rate_per_d=2.0, seed=4
    )
    times = MJD + np.linspace(0.0, 5.0, 2001)
    total = flare.total_mag("V", times)
    assert total.max() == pytest.approx(star.mag_v[0])  # quiescent between flares
    assert total.min() < star.mag_v[0] - 0.5  # and some flares in five days
    # The star's light and the light the flares add make up the total at every time.
    added = 10.0 ** (-0.4 * flare.mag("V", times))
    assert 10.0 ** (-0.4 * total) == pytest.approx(10.0 ** (-0.4 * star.mag_v[0]) + added)


def _asteroid_frame(
    sensor: SensorModel, asteroid: Asteroid | None, mjd: float, scene: SkyScene
) -> RenderResult:
    asteroids = () if asteroid is None else (asteroid,)
    return render_exposure(sensor, _spec(sensor), replace(scene, time_mjd=mjd, asteroids=asteroids))


def test_asteroid_moves_by_its_rate_in_its_direction() -> None:
    sensor = _sensor()
    scene = _scene()
    rate, pa, minutes = 0.5, 45.0, 60.0
    # Starts 15" south-west of the centre, crossing towards the north-east.
    ra0 = 150.0 + 15.3 / 3600.0 / math.cos(math.radians(20.0))
    rock = Asteroid("rock", ra0, 20.0 - 14.8 / 3600.0, MJD, rate, pa, mag_v=14.0)
    centre = (SIZE - 1) / 2.0
    x_epoch, y_epoch = centre - 15.3, centre - 14.8  # 1 arcsec per pixel, east to -x
    step = rate * minutes
    dx, dy = -step * math.sin(math.radians(pa)), step * math.cos(math.radians(pa))
    expected_e = 10.0 ** (-0.4 * (14.0 - ZP)) * EXPOSURE_S

    centroids = []
    for k, mjd in enumerate((MJD, MJD + minutes / 1440.0)):
        frame = _asteroid_frame(sensor, rock, mjd, scene)
        blank = _asteroid_frame(sensor, None, mjd, scene)
        x_exp, y_exp = x_epoch + k * dx, y_epoch + k * dy
        (row,) = frame.asteroids
        assert (row["x_mid"], row["y_mid"]) == pytest.approx((x_exp, y_exp), abs=0.01)
        assert row["flux_e"] == pytest.approx(expected_e) and row["mag"] == 14.0
        assert not row["trailed"] and row["length_px"] == pytest.approx(0.5, rel=0.01)
        total, cx, cy, *_ = _moments(_light(sensor, frame, blank), x_exp, y_exp, 12.0)
        assert total == pytest.approx(expected_e, rel=0.02)
        centroids.append((cx, cy))
    (x1, y1), (x2, y2) = centroids
    assert (x2 - x1, y2 - y1) == pytest.approx((dx, dy), abs=0.05)


def test_fast_asteroid_is_a_trail_along_its_direction() -> None:
    sensor = _sensor()
    scene = _scene()
    rate, pa = 30.0, 60.0  # 30 pixels in the 60 s exposure
    centre = (SIZE - 1) / 2.0
    fast = Asteroid("fast", 150.0, 20.0, MJD, rate, pa, mag_v=13.0)
    frame = _asteroid_frame(sensor, fast, MJD, scene)
    blank = _asteroid_frame(sensor, None, MJD, scene)
    (row,) = frame.asteroids
    length = rate * EXPOSURE_S / 60.0
    ux, uy = -math.sin(math.radians(pa)), math.cos(math.radians(pa))
    assert row["trailed"] and row["length_px"] == pytest.approx(length, rel=1e-3)
    assert (row["x_start"], row["y_start"]) == pytest.approx(
        (centre - ux * length / 2, centre - uy * length / 2), abs=0.02
    )
    assert (row["x_end"], row["y_end"]) == pytest.approx(
        (centre + ux * length / 2, centre + uy * length / 2), abs=0.02
    )

    total, cx, cy, vxx, vyy, vxy = _moments(_light(sensor, frame, blank), centre, centre, 45.0)
    assert total == pytest.approx(10.0 ** (-0.4 * (13.0 - ZP)) * EXPOSURE_S, rel=0.02)
    assert (cx, cy) == pytest.approx((centre, centre), abs=0.1)
    # A segment of length L blurred by a round PSF: its long axis lies along the motion and
    # the variance along it exceeds the variance across by L**2 / 12.
    spread = math.hypot(vxx - vyy, 2.0 * vxy)
    angle = 0.5 * math.degrees(math.atan2(2.0 * vxy, vxx - vyy)) % 180.0
    assert angle == pytest.approx(math.degrees(math.atan2(uy, ux)) % 180.0, abs=1.0)
    assert math.sqrt(12.0 * spread) == pytest.approx(length, rel=0.03)


def test_config_places_transients_and_asteroids_through_sky_scene() -> None:
    assert SimulatedSkyConfig().transients == () and SimulatedSkyConfig().asteroids == ()
    some = galaxies(150.0, 20.0, 0.05, **GALAXIES)  # type: ignore[arg-type]
    chosen = some[some["mag_r"] < 20.0][0]
    sky = SimulatedSkyConfig(
        seed=GALAXIES["seed"],  # type: ignore[arg-type]
        star_density_per_deg2=3000.0,
        mag_bright=10.0,
        mag_limit=16.0,
        transients=(
            SimulatedTransientConfig(
                name="by-id", kind="supernova", host_id=int(chosen["id"]), mag_v=15.0,
                epoch_mjd=MJD, offset_arcsec=3.0, offset_pa_deg=90.0,
            ),
            SimulatedTransientConfig(
                name="nearest", kind="supernova", ra_deg=150.0, dec_deg=20.0,
                host_brighter_than_mag=19.0, mag_v=15.0, epoch_mjd=MJD,
            ),
            SimulatedTransientConfig(
                name="flare", kind="flare", ra_deg=150.0, dec_deg=20.0, amplitude_mag=1.0
            ),
        ),
        asteroids=(
            SimulatedAsteroidConfig(
                name="a", ra_deg=150.0, dec_deg=20.0, epoch_mjd=MJD, rate_arcsec_min=1.0,
                pa_deg=0.0, mag_v=16.0,
            ),
        ),
    )  # fmt: skip
    by_id, nearest, flare = transients_from_config(sky)
    assert by_id.host_id == chosen["id"]
    assert (by_id.host_ra_deg, by_id.host_dec_deg) == (chosen["ra_deg"], chosen["dec_deg"])
    # Due east by 3": the RA grows by 3" / cos(dec), the declination stays (to 1e-4").
    cos_dec = math.cos(math.radians(chosen["dec_deg"]))
    assert (by_id.ra_deg - chosen["ra_deg"]) * 3600.0 * cos_dec == pytest.approx(3.0, rel=1e-4)
    assert by_id.dec_deg == pytest.approx(chosen["dec_deg"], abs=1e-7)
    # The nearest galaxy brighter than R = 19, from the population itself.
    wide = galaxies(150.0, 20.0, 0.5, **GALAXIES)  # type: ignore[arg-type]
    wide = wide[wide["mag_r"] < 19.0]
    distance = np.hypot(
        (wide["ra_deg"] - 150.0) * math.cos(math.radians(20.0)), wide["dec_deg"] - 20.0
    )
    assert nearest.host_id == wide["id"][np.argmin(distance)] == _bright_host()["id"]
    assert galaxy_by_id(nearest.host_id, **GALAXIES)["id"] == nearest.host_id  # type: ignore[arg-type]
    stars = synthetic_catalog(150.0, 20.0, 0.2, seed=1, density_per_deg2=3000.0,
                              mag_bright=10.0, mag_limit=16.0)  # fmt: skip
    closest = np.argmin(np.hypot((stars.ra_deg - 150.0) * math.cos(math.radians(20.0)),
                                 stars.dec_deg - 20.0))  # fmt: skip
    assert flare.host_kind == "star" and flare.host_id == stars.id[closest]

    (rock,) = asteroids_from_config(sky.asteroids)
    scene = sky_scene(
        sky, ra_deg=150.0, dec_deg=20.0, rotation_deg=0.0, pixel_scale_arcsec=1.0, band="V",
        time_mjd=MJD, transients=(by_id, nearest, flare), asteroids=(rock,),
    )  # fmt: skip
    assert scene.transients == (by_id, nearest, flare) and scene.asteroids == (rock,)
    sensor = _sensor()
    result = render_exposure(sensor, _spec(sensor), replace(scene, galaxy_density_r21_per_deg2=0.0))
    assert result.asteroids["name"].tolist() == ["a"]
    assert result.asteroids["y_end"][0] - result.asteroids["y_start"][0] == pytest.approx(
        1.0, abs=1e-3
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "supernova", "mag_v": 15.0}, "host_id or as ra_deg"),
        ({"kind": "supernova", "mag_v": 15.0, "host_id": 1, "ra_deg": 1.0, "dec_deg": 1.0},
         "one of them"),
        ({"kind": "supernova", "mag_v": 15.0, "ra_deg": 1.0}, "both ra_deg and dec_deg"),
        ({"kind": "supernova", "host_id": 1}, "needs mag_v"),
        ({"kind": "nova", "host_id": 1, "amplitude_mag": 2.0, "offset_arcsec": 1.0},
         "brightens its star"),
        ({"kind": "flare", "host_id": 1}, "amplitude_mag > 0"),
        ({"kind": "supernova", "host_id": 1, "mag_v": float("nan")}, "finite"),
        ({"kind": "comet", "host_id": 1}, "kind"),
        ({"kind": "supernova", "host_id": 1, "mag_v": 15.0, "colour": 1.0}, "Extra inputs"),
    ],
)  # fmt: skip
def test_transient_config_is_validated(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SimulatedTransientConfig(name="t", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rate_arcsec_min": -1.0}, "greater than or equal"),
        ({"pa_deg": float("inf")}, "finite"),
        ({"dec_deg": 91.0}, "less than or equal"),
        ({"speed": 1.0}, "Extra inputs"),
    ],
)
def test_asteroid_config_is_validated(fields: dict[str, object], message: str) -> None:
    good: dict[str, object] = {
        "name": "a", "ra_deg": 1.0, "dec_deg": 2.0, "epoch_mjd": MJD, "rate_arcsec_min": 1.0,
        "pa_deg": 10.0, "mag_v": 18.0,
    }  # fmt: skip
    SimulatedAsteroidConfig(**good)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=message):
        SimulatedAsteroidConfig(**(good | fields))  # type: ignore[arg-type]


def test_hosts_that_do_not_exist_are_refused() -> None:
    with pytest.raises(ValueError, match="no galaxy with id"):
        galaxy_by_id(5, **GALAXIES)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no simulated galaxy brighter"):
        nearest_galaxy(150.0, 20.0, brighter_than_mag=5.0, max_distance_arcsec=60.0, **GALAXIES)  # type: ignore[arg-type]


def test_seeing_wanders_in_time_when_asked() -> None:
    still = SimulatedSkyConfig()
    wandering = SimulatedSkyConfig(seeing_variation_rms=0.2, seeing_timescale_s=600.0)
    times = MJD + np.arange(2000) * 3600.0 / 86400.0  # hourly for 83 days: independent draws
    seeing = np.array(
        [
            sky_scene(
                wandering, ra_deg=150.0, dec_deg=20.0, rotation_deg=0.0,
                pixel_scale_arcsec=1.0, band="V", time_mjd=float(t),
            ).seeing_arcsec
            for t in times
        ]
    )  # fmt: skip
    log_ratio = np.log(seeing / wandering.seeing_arcsec)
    assert np.std(log_ratio) == pytest.approx(0.2, rel=0.1)
    assert abs(np.median(log_ratio)) < 0.03
    # Ten seconds apart the seeing has hardly moved; without the switch it never does.
    near = [
        sky_scene(
            wandering, ra_deg=150.0, dec_deg=20.0, rotation_deg=0.0, pixel_scale_arcsec=1.0,
            band="V", time_mjd=MJD + dt / 86400.0,
        ).seeing_arcsec
        for dt in (0.0, 10.0)
    ]  # fmt: skip
    assert near[1] == pytest.approx(near[0], rel=0.01)
    fixed = sky_scene(
        still, ra_deg=150.0, dec_deg=20.0, rotation_deg=0.0, pixel_scale_arcsec=1.0, band="V",
        time_mjd=MJD,
    )  # fmt: skip
    assert fixed.seeing_arcsec == still.seeing_arcsec


def test_camera_model_puts_the_config_transients_in_its_scenes() -> None:
    # No mount: the camera looks at RA 180, Dec 30 (the camera model's default).
    sky = SimulatedSkyConfig(
        transients=(
            SimulatedTransientConfig(
                name="sn", kind="supernova", ra_deg=180.0, dec_deg=30.0, mag_v=12.0,
                host_brighter_than_mag=20.0, epoch_mjd=61000.0,
            ),
        ),
        asteroids=(
            SimulatedAsteroidConfig(
                name="a", ra_deg=180.0, dec_deg=30.0, epoch_mjd=61000.0, rate_arcsec_min=0.1,
                pa_deg=0.0, mag_v=15.0,
            ),
        ),
    )  # fmt: skip
    model = CameraModel(
        SimulatedCameraConfig(width_px=64, height_px=64), sky, focal_length_mm=800.0,
        clock=ScaledClock(1000.0),
    )  # fmt: skip
    scene = model.scene(30.0)
    assert scene.transients == transients_from_config(sky)
    assert scene.asteroids == asteroids_from_config(sky.asteroids)
    (sn,) = scene.transients
    assert sn.host_kind == "galaxy" and sn.name == "sn"
