"""The simulated atmosphere: airmass, extinction, colour terms, seeing, clouds and their config.

Expected values are written out here from the formulas and the configured numbers, never
taken from the functions under test.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from obsctl.config import (
    CloudSpell,
    SimulatedCameraConfig,
    SimulatedCloudsConfig,
    SimulatedMountConfig,
    SimulatedSkyConfig,
    SiteConfig,
    parse_config,
)
from obsctl.errors import ConfigError
from obsctl.simulators import CameraModel, MountModel
from obsctl.simulators.atmosphere import (
    COLOUR_INDEX,
    airmass,
    cloud_extinction_mag,
    cloud_transmission,
    colour_index,
    exposure_transmission,
    extinction_mag,
    seeing_fwhm_arcsec,
    spell_transmission,
)
from obsctl.simulators.camera_model import sky_scene
from obsctl.simulators.sky import StarCatalog

SITE = SiteConfig(name="Test site", latitude_deg=28.76, longitude_deg=-17.88, elevation_m=2326)
START = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)


def pickering(alt_deg: float) -> float:
    return 1.0 / math.sin(math.radians(alt_deg + 244.0 / (165.0 + 47.0 * alt_deg**1.1)))


class FrozenClock:
    """Simulated time that stands still: the scene is built at one known instant."""

    def monotonic(self) -> float:
        return 0.0

    def now(self) -> datetime:
        return START

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("not used")


# --- pure functions -------------------------------------------------------------------


def test_airmass_is_pickering_and_finite_at_the_horizon():
    assert airmass(90.0) == pytest.approx(1.0, abs=1e-3)
    for alt in (60.0, 30.0, 10.0):
        assert airmass(alt) == pytest.approx(pickering(alt), rel=1e-9)
    assert airmass(30.0) == pytest.approx(2.0, abs=0.01)
    # No ground in the simulator: at and below the horizon, the horizon's air mass.
    assert 30.0 < airmass(0.0) < 40.0
    assert airmass(-20.0) == airmass(0.0)


def test_extinction_and_seeing_grow_with_airmass():
    assert extinction_mag(0.15, 2.0) == pytest.approx(0.30)
    assert extinction_mag(0.15, 0.0) == 0.0
    assert seeing_fwhm_arcsec(2.0, 1.0) == pytest.approx(2.0)
    assert seeing_fwhm_arcsec(2.0, 2.0) == pytest.approx(2.0 * 2.0**0.6)
    assert seeing_fwhm_arcsec(2.0, 3.0, exponent=0.0) == pytest.approx(2.0)
    with pytest.raises(ValueError, match=">= 0"):
        extinction_mag(-0.1, 1.0)
    with pytest.raises(ValueError, match="airmass > 0"):
        seeing_fwhm_arcsec(2.0, 0.0)


def test_colour_index_per_band():
    one = np.array([1.0])
    cat = StarCatalog(
        id=np.array([7]), ra_deg=one, dec_deg=one,
        mag_b=np.array([13.0]), mag_v=np.array([12.2]), mag_r=np.array([11.75]),
        mag_i=np.array([11.35]),
    )  # fmt: skip
    expected = {"B": 0.8, "V": 0.8, "R": 0.45, "I": 0.40, "L": 0.85}
    assert set(COLOUR_INDEX) == set(expected)
    for band, colour in expected.items():
        assert colour_index(cat, band.lower())[0] == pytest.approx(colour)
    with pytest.raises(ValueError, match="unknown band"):
        colour_index(cat, "Ha")


CLOUDS = {"clouded_fraction": 0.35, "mean_extinction_mag": 1.0, "timescale_s": 600.0, "seed": 3}


def test_clouds_are_seeded_and_follow_their_fraction_and_depth():
    # 40 nights of 10 h, one sample a minute: about 2400 correlation times.
    t = 61000.0 + np.concatenate([d + np.arange(600) / 1440.0 for d in range(40)])
    a = cloud_extinction_mag(t, **CLOUDS)
    assert a.shape == t.shape and np.all(a >= 0.0)
    np.testing.assert_array_equal(a[:600], cloud_extinction_mag(t[:600], **CLOUDS))
    assert not np.array_equal(a[:600], cloud_extinction_mag(t[:600], **(CLOUDS | {"seed": 4})))
    clouded = a > 0
    assert np.mean(clouded) == pytest.approx(0.35, abs=0.05)
    assert np.mean(a[clouded]) == pytest.approx(1.0, rel=0.12)
    np.testing.assert_allclose(cloud_transmission(t[:600], **CLOUDS), 10 ** (-0.4 * a[:600]))
    # Smooth: a minute apart the sky barely changes; an hour apart it is unrelated.
    x = a - a.mean()
    lag1 = np.corrcoef(x[:-1], x[1:])[0, 1]
    lag60 = np.corrcoef(x[:-60], x[60:])[0, 1]
    assert lag1 > 0.95
    assert abs(lag60) < 0.1


def test_photometric_and_overcast_extremes():
    t = 61000.0 + np.arange(1440) / 1440.0
    clear = cloud_extinction_mag(t, **(CLOUDS | {"clouded_fraction": 0.0}))
    assert np.all(clear == 0.0)
    overcast = cloud_extinction_mag(t, **(CLOUDS | {"clouded_fraction": 1.0}))
    assert np.all(overcast > 0.0)
    assert np.mean(overcast) == pytest.approx(1.0, rel=0.15)
    with pytest.raises(ValueError, match="clouded_fraction"):
        cloud_extinction_mag(t, **(CLOUDS | {"clouded_fraction": 1.5}))


def test_exposure_transmission_averages_the_series():
    mid = 61000.3
    f = dict(CLOUDS)
    point = float(cloud_transmission(np.array([mid]), **f)[0])
    assert exposure_transmission(mid, 0.0, **f) == pytest.approx(point)
    # A long exposure collects the mean of the transmission over its span.
    span = mid + (np.arange(3601) - 1800.0) / 86400.0
    assert exposure_transmission(mid, 3600.0, **f) == pytest.approx(
        float(cloud_transmission(span, **f).mean()), abs=0.01
    )
    assert exposure_transmission(mid, 600.0, **(f | {"clouded_fraction": 0.0})) == 1.0


# --- configuration and the scene the camera builds ------------------------------------


def test_defaults_are_a_good_site_and_bands_override_one_at_a_time():
    sky = SimulatedSkyConfig()
    assert sky.extinction and sky.colour_terms and sky.band_zero_points and sky.band_sky
    k = sky.extinction_mag_per_airmass
    assert (k.B, k.V, k.R, k.I, k.L) == (0.25, 0.15, 0.10, 0.07, 0.12)
    zp = {b: sky.zero_point_mag + sky.zero_point_offset_mag.of(b) for b in "BVRIL"}
    assert zp == pytest.approx({"B": 20.4, "V": 21.0, "R": 21.1, "I": 20.6, "L": 21.6})
    dark = {b: sky.sky_mag_arcsec2 + sky.sky_offset_mag_arcsec2.of(b) for b in "BVRI"}
    assert dark == pytest.approx({"B": 21.5, "V": 20.5, "R": 19.9, "I": 19.1})
    assert sky.seeing_airmass_exponent == 0.6
    assert sky.clouds.scenario == "photometric" and sky.clouds.parameters()[0] == 0.0
    # An unknown filter renders as luminance.
    assert sky.colour_term.of("Ha") == sky.colour_term.L
    # Setting one band keeps the others' defaults.
    one = SimulatedSkyConfig.model_validate({"extinction_mag_per_airmass": {"B": 0.4}})
    assert one.extinction_mag_per_airmass.B == 0.4
    assert one.extinction_mag_per_airmass.V == 0.15


def test_cloud_scenarios_and_custom_clouds():
    assert SimulatedCloudsConfig(scenario="cirrus").parameters()[0] > 0.0
    patchy = SimulatedCloudsConfig(scenario="patchy").parameters()
    assert 0.0 < patchy[0] < 1.0 and patchy[1] >= 0.5
    assert SimulatedCloudsConfig(scenario="overcast").parameters()[0] == 1.0
    custom = SimulatedCloudsConfig(
        scenario="custom", clouded_fraction=0.2, mean_extinction_mag=0.3, timescale_s=100.0
    )
    assert custom.parameters() == (0.2, 0.3, 100.0)


def test_bad_atmosphere_config_names_the_field(tmp_path):
    data = {
        "version": 1,
        "site": {"name": "x", "latitude_deg": 0.0, "longitude_deg": 0.0},
        "telescope": {"focal_length_mm": 800, "aperture_mm": 200},
        "simulator": {"sky": {"extinction_mag_per_airmass": {"V": -0.1}}},
    }
    with pytest.raises(ConfigError, match=r"simulator\.sky\.extinction_mag_per_airmass\.V"):
        parse_config(data, path=tmp_path / "x.toml")
    data["simulator"] = {"sky": {"clouds": {"scenario": "stormy"}}}
    with pytest.raises(ConfigError, match=r"simulator\.sky\.clouds\.scenario"):
        parse_config(data, path=tmp_path / "x.toml")


def scene_of(sky: SimulatedSkyConfig, band: str, **kw: float):
    return sky_scene(
        sky, ra_deg=150.0, dec_deg=20.0, rotation_deg=0.0, pixel_scale_arcsec=1.0, band=band, **kw
    )


def test_scene_takes_the_band_values_and_switches():
    sky = SimulatedSkyConfig()
    b = scene_of(sky, "B", airmass=1.8, transmission=0.7)
    assert b.zero_point_mag == pytest.approx(20.4)
    assert b.extinction_mag_per_airmass == 0.25
    assert b.colour_term == 0.10
    assert b.airmass == 1.8 and b.transmission == 0.7
    assert b.seeing_arcsec == sky.seeing_arcsec and b.seeing_airmass_exponent == 0.6
    # The B sky (mag/arcsec2 one brighter number than V) on a 1"x1" pixel, with the B zero point.
    assert b.sky_e_s_px == pytest.approx(10 ** (-0.4 * (21.5 - 20.4)))
    # Every switch off: the old constant model in every band.
    off = SimulatedSkyConfig(
        extinction=False, colour_terms=False, band_zero_points=False, band_sky=False,
        seeing_airmass_exponent=0.0,
    )  # fmt: skip
    for band in "BVRIL":
        flat = scene_of(off, band, airmass=2.0)
        assert flat.zero_point_mag == 21.0
        assert flat.extinction_mag_per_airmass == 0.0 and flat.colour_term == 0.0
        assert flat.sky_e_s_px == pytest.approx(10 ** (-0.4 * (20.5 - 21.0)))
        assert flat.seeing_airmass_exponent == 0.0


def test_camera_scene_airmass_is_at_mid_exposure_of_the_tracked_field():
    clock = FrozenClock()
    mount = MountModel(SimulatedMountConfig(), SITE, clock)
    mount.connected = True
    lst = mount.pointing().lst_deg
    ha_start, dec = -30.0, 10.0
    mount.sync_to_radec((lst - ha_start) % 360.0, dec)
    mount.set_tracking(True)
    sky = SimulatedSkyConfig(clouds=SimulatedCloudsConfig(scenario="patchy", seed=5))
    camera = CameraModel(
        SimulatedCameraConfig(width_px=64, height_px=64),
        sky,
        focal_length_mm=800.0,
        clock=clock,
        mount=mount,
    )
    duration_s = 3600.0
    scene = camera.scene(duration_s)
    # The field moves on by half an hour of hour angle (15.04 deg/h) by mid-exposure.
    ha_mid = math.radians(ha_start + 0.5 * duration_s * 360.0 / 86164.0905)
    lat, d = math.radians(SITE.latitude_deg), math.radians(dec)
    alt_mid = math.degrees(
        math.asin(math.sin(d) * math.sin(lat) + math.cos(d) * math.cos(lat) * math.cos(ha_mid))
    )
    assert scene.airmass == pytest.approx(pickering(alt_mid), rel=1e-6)
    assert scene.airmass < pickering(mount.pointing().alt_deg)  # rising toward the meridian
    # No filter wheel: luminance, at its zero point.
    assert scene.band == "L" and scene.zero_point_mag == pytest.approx(21.6)
    # The clouds are the configured series, averaged over the exposure.
    mjd_epoch = datetime(1858, 11, 17, tzinfo=UTC)
    mid_mjd = (START - mjd_epoch) / timedelta(days=1) + 0.5 * duration_s / 86400.0
    fraction, mean_mag, timescale_s = sky.clouds.parameters()
    expected = exposure_transmission(
        mid_mjd, duration_s, clouded_fraction=fraction, mean_extinction_mag=mean_mag,
        timescale_s=timescale_s, seed=5,
    )  # fmt: skip
    assert scene.transmission == pytest.approx(expected, rel=1e-6)
    assert scene.transmission < 1.0 or fraction < 1.0


def test_cloud_spells_dim_the_share_of_the_exposure_they_cover() -> None:
    assert spell_transmission(0.0, 100.0, []) == 1.0
    # Half the exposure under 2.5 mag (a tenth of the light): 0.5 + 0.5 * 0.1.
    assert spell_transmission(0.0, 100.0, [(50.0, 200.0, 2.5)]) == pytest.approx(0.55)
    assert spell_transmission(0.0, 100.0, [(100.0, 200.0, 2.5)]) == 1.0  # after it
    # Overlapping spells multiply: 1 mag everywhere, 2 mag over the second half.
    both = spell_transmission(0.0, 100.0, [(0.0, 100.0, 1.0), (50.0, 100.0, 1.0)])
    assert both == pytest.approx(0.5 * 10**-0.4 + 0.5 * 10**-0.8)
    assert spell_transmission(5.0, 0.0, [(0.0, 10.0, 2.5)]) == pytest.approx(0.1)


def test_cloud_spells_are_validated() -> None:
    with pytest.raises(ValidationError, match="UTC offsets"):
        CloudSpell.model_validate({"start": "2026-12-11T18:00:00", "end": "2026-12-11T19:00:00Z"})
    with pytest.raises(ValidationError, match="after it ends"):
        CloudSpell.model_validate({"start": "2026-12-11T19:00:00Z", "end": "2026-12-11T18:00:00Z"})
