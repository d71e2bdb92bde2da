"""Astrometric calibration: matching, WCS fit and the pipeline stage, against known truth.

Truth is the simulator's own WCS (`field_wcs`); the "approximate" WCS handed to the solver is
that WCS moved by several arcminutes, turned by a few degrees and with a slightly wrong scale,
as a mount pointing and a nominal camera angle would give. Accuracy is judged by where the
fitted WCS puts catalog stars (or a grid of sky positions) compared with the truth, in pixels.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.wcs import WCS

from obsctl.frame import Frame
from obsctl.pipeline.astrometry import Astrometry, strip_wcs
from obsctl.processing.astrometry import NoSolution, deproject_tan, match_and_fit, project_tan
from obsctl.simulators import scenes
from obsctl.simulators.render import render_exposure
from obsctl.simulators.sky import field_wcs, import_synthetic, synthetic_catalog
from obsctl.store.refcat import RefCatalog

# Stated tolerance of the issue: fitted positions within 0.1 px of the truth over the frame.
TOL_PX = 0.1

SKY = {"seed": 7, "density_per_deg2": 2500.0, "mag_bright": 8.0, "mag_limit": 19.5}


def moved_wcs(
    truth_centre: tuple[float, float],
    *,
    offset_arcmin: float,
    position_angle_deg: float,
    width: int = 2048,
    height: int = 2048,
    scale: float = 1.0,
    rotation_deg: float = 20.0,
) -> WCS:
    """A TAN WCS centred `offset_arcmin` away from the truth centre.

    The other defaults are the geometry `point_field` renders by default.
    """
    pa = math.radians(position_angle_deg)
    ra, dec = deproject_tan(
        np.array([offset_arcmin / 60 * math.sin(pa)]),
        np.array([offset_arcmin / 60 * math.cos(pa)]),
        *truth_centre,
    )
    return field_wcs(
        float(ra[0]),
        float(dec[0]),
        width_px=width,
        height_px=height,
        pixel_scale_arcsec=scale,
        rotation_deg=rotation_deg,
    )


def radial(xy: np.ndarray, width: int, height: int, corner_px: float) -> np.ndarray:
    """Barrel/pincushion distortion moving the corners by `corner_px` (pixel)."""
    c = np.array([(width - 1) / 2, (height - 1) / 2])
    d = xy - c
    k = corner_px / math.hypot(*c) ** 3
    return c + d * (1 + k * (d**2).sum(axis=1))[:, None]


def point_field(
    *,
    seed: int,
    width: int = 2048,
    height: int = 2048,
    scale: float = 1.0,
    rotation_deg: float = 20.0,
    n_det: int = 1500,
    noise_px: float = 0.05,
    distortion_px: float = 0.0,
):
    """Detections (with noise) and a catalog for a field whose truth is `field_wcs`."""
    rng = np.random.default_rng(seed)
    ra0, dec0 = 210.0, 54.0
    truth = field_wcs(
        ra0,
        dec0,
        width_px=width,
        height_px=height,
        pixel_scale_arcsec=scale,
        rotation_deg=rotation_deg,
    )
    radius = math.hypot(width, height) / 2 * scale / 3600 + 0.25
    cat = synthetic_catalog(
        ra0, dec0, radius, seed=seed, density_per_deg2=6000.0, mag_bright=8.0, mag_limit=19.5
    )
    x, y = truth.wcs_world2pix(cat.ra_deg, cat.dec_deg, 0)
    xy_true = radial(np.column_stack([x, y]), width, height, distortion_px)
    inside = (
        (xy_true[:, 0] > -0.5)
        & (xy_true[:, 0] < width - 0.5)
        & (xy_true[:, 1] > -0.5)
        & (xy_true[:, 1] < height - 0.5)
    )
    # Detection order follows the catalog brightness with 0.2 mag of scatter.
    bright = np.argsort(cat.mag_v[inside] + rng.normal(0, 0.2, inside.sum()))[:n_det]
    det = xy_true[inside][bright] + rng.normal(0, noise_px, (len(bright), 2))
    order = np.argsort(cat.mag_v)
    sky = np.column_stack([cat.ra_deg, cat.dec_deg])[order]
    truth_xy = xy_true[order]
    return det, sky, truth, truth_xy, (ra0, dec0)


def error_vs_truth(result, sky, truth_xy, width, height) -> np.ndarray:
    inside = (
        (truth_xy[:, 0] > 0)
        & (truth_xy[:, 0] < width - 1)
        & (truth_xy[:, 1] > 0)
        & (truth_xy[:, 1] < height - 1)
    )
    fx, fy = result.wcs.world_to_pixel_values(sky[inside, 0], sky[inside, 1])
    return np.hypot(fx - truth_xy[inside, 0], fy - truth_xy[inside, 1])


# ------------------------------------------------------------------------------ projections


def test_tangent_projection_matches_astropy_and_round_trips() -> None:
    wcs = field_wcs(
        359.9, 88.5, width_px=4000, height_px=3000, pixel_scale_arcsec=3.0, rotation_deg=33.0
    )
    rng = np.random.default_rng(1)
    px = rng.uniform(0, 4000, 500)
    py = rng.uniform(0, 3000, 500)
    ra, dec = wcs.wcs_pix2world(px, py, 0)
    xi, eta = project_tan(ra, dec, 359.9, 88.5)
    # Intermediate world coordinates are the CD (here PC * CDELT) product of pixel offsets.
    expected = (np.column_stack([px, py]) - (wcs.wcs.crpix - 1)) @ wcs.pixel_scale_matrix.T
    assert np.allclose(xi, expected[:, 0], atol=1e-10)
    assert np.allclose(eta, expected[:, 1], atol=1e-10)
    ra2, dec2 = deproject_tan(xi, eta, 359.9, 88.5)
    assert np.allclose((ra2 - ra + 180) % 360 - 180, 0, atol=1e-9)
    assert np.allclose(dec2, dec, atol=1e-9)


# --------------------------------------------------------------------------- synthetic points


@pytest.mark.parametrize(
    ("offset_arcmin", "position_angle_deg", "rotation_err_deg", "scale_err"),
    [
        (5.0, 30.0, 2.0, 0.003),
        (5.0, 200.0, -10.0, -0.01),
        (9.5, 120.0, 6.0, 0.02),
        (3.0, 300.0, 179.0, 0.0),
    ],
)
def test_solves_offset_and_rotated_pointing(
    offset_arcmin: float, position_angle_deg: float, rotation_err_deg: float, scale_err: float
) -> None:
    det, sky, _truth, truth_xy, centre = point_field(seed=11)
    approx = moved_wcs(
        centre,
        offset_arcmin=offset_arcmin,
        position_angle_deg=position_angle_deg,
        scale=1.0 * (1 + scale_err),
        rotation_deg=20.0 + rotation_err_deg,
    )
    result = match_and_fit(det, sky, approx, image_shape=(2048, 2048))
    err = error_vs_truth(result, sky, truth_xy, 2048, 2048)
    assert err.max() < TOL_PX
    assert result.n_matched > 0.95 * len(det)
    assert result.rms_px < 0.1  # 0.05 px noise per axis: 2-D rms ~0.07
    assert result.offset_arcmin == pytest.approx(offset_arcmin, abs=0.05)
    assert result.rotation_deg == pytest.approx(-rotation_err_deg, abs=0.3)
    assert result.scale_ratio == pytest.approx(1 / (1 + scale_err), abs=1e-3)
    assert result.sip_degree is None  # no distortion in the data
    assert not result.flipped
    idx_det, idx_ref = result.matches
    # Every kept match is a true pair: the reference star's truth position is the detection's.
    assert np.hypot(*(truth_xy[idx_ref] - det[idx_det]).T).max() < 0.5


def test_radial_distortion_is_fitted_with_sip() -> None:
    det, sky, _truth, truth_xy, centre = point_field(seed=12, distortion_px=5.0, n_det=2000)
    approx = moved_wcs(centre, offset_arcmin=5.0, position_angle_deg=60.0, rotation_deg=25.0)
    plain = match_and_fit(det, sky, approx, image_shape=(2048, 2048), sip_degree=None)
    assert error_vs_truth(plain, sky, truth_xy, 2048, 2048).max() > 1.0  # TAN alone cannot

    result = match_and_fit(det, sky, approx, image_shape=(2048, 2048))
    assert result.sip_degree is not None and result.sip_degree >= 3  # radial is cubic
    assert error_vs_truth(result, sky, truth_xy, 2048, 2048).max() < TOL_PX
    # The written header reproduces it, inverse SIP included.
    header_wcs = WCS(result.wcs.to_header(relax=True))
    fx, fy = header_wcs.all_world2pix(sky[:200, 0], sky[:200, 1], 0)
    gx, gy = result.wcs.world_to_pixel_values(sky[:200, 0], sky[:200, 1])
    assert np.hypot(fx - gx, fy - gy).max() < 1e-6
    # The inverse polynomials (AP, BP) undo the forward ones to well under the tolerance.
    gx, gy = np.meshgrid(np.linspace(0, 2047, 12), np.linspace(0, 2047, 12))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    back = header_wcs.sip_foc2pix(header_wcs.sip_pix2foc(grid, 0), 0)
    assert np.hypot(*(back - grid).T).max() < 0.01


def test_mirrored_image_is_solved_and_reported() -> None:
    det, sky, _truth, truth_xy, centre = point_field(seed=13, n_det=800)
    approx = moved_wcs(centre, offset_arcmin=4.0, position_angle_deg=10.0, rotation_deg=27.0)
    mirrored = WCS(naxis=2)
    mirrored.wcs.ctype = list(approx.wcs.ctype)
    mirrored.wcs.crval = approx.wcs.crval
    mirrored.wcs.crpix = approx.wcs.crpix
    mirrored.wcs.cd = approx.pixel_scale_matrix @ np.diag([1.0, -1.0])
    mirrored.wcs.set()
    result = match_and_fit(det, sky, mirrored, image_shape=(2048, 2048))
    assert result.flipped
    assert error_vs_truth(result, sky, truth_xy, 2048, 2048).max() < TOL_PX


def test_small_sparse_field_near_the_pole() -> None:
    # 1024 x 768 at 1.2"/px is 20' x 15'; a 10' pointing error moves it by half its width.
    truth = field_wcs(
        45.0, 89.8, width_px=1024, height_px=768, pixel_scale_arcsec=1.2, rotation_deg=-70.0
    )
    cat = synthetic_catalog(45.0, 89.8, 0.6, **SKY)
    x, y = truth.wcs_world2pix(cat.ra_deg, cat.dec_deg, 0)
    inside = (x > -0.5) & (x < 1023.5) & (y > -0.5) & (y < 767.5) & (cat.mag_v < 17.5)
    rng = np.random.default_rng(5)
    det = np.column_stack([x, y])[inside][np.argsort(cat.mag_v[inside])]
    det = det + rng.normal(0, 0.03, det.shape)
    approx = moved_wcs(
        (45.0, 89.8),
        offset_arcmin=10.0,
        position_angle_deg=250.0,
        width=1024,
        height=768,
        scale=1.2,
        rotation_deg=-64.0,
    )
    order = np.argsort(cat.mag_v)
    sky = np.column_stack([cat.ra_deg, cat.dec_deg])[order]
    result = match_and_fit(det, sky, approx, image_shape=(768, 1024))
    gx, gy = np.meshgrid(np.linspace(0, 1023, 9), np.linspace(0, 767, 7))
    ra, dec = truth.wcs_pix2world(gx.ravel(), gy.ravel(), 0)
    fx, fy = result.wcs.world_to_pixel_values(ra, dec)
    assert len(det) < 60
    assert np.hypot(fx - gx.ravel(), fy - gy.ravel()).max() < TOL_PX


def test_random_points_have_no_solution() -> None:
    _det, sky, _truth, _truth_xy, centre = point_field(seed=14, n_det=400)
    approx = moved_wcs(centre, offset_arcmin=5.0, position_angle_deg=0.0)
    rng = np.random.default_rng(14)
    for _ in range(5):
        noise = rng.uniform(0, 2048, (400, 2))
        with pytest.raises(NoSolution):
            match_and_fit(noise, sky, approx, image_shape=(2048, 2048))


def test_too_few_stars_and_offset_beyond_the_search() -> None:
    det, sky, _truth, _truth_xy, centre = point_field(seed=15, n_det=400)
    approx = moved_wcs(centre, offset_arcmin=5.0, position_angle_deg=0.0)
    with pytest.raises(NoSolution, match="too few stars"):
        match_and_fit(det[:5], sky, approx, image_shape=(2048, 2048))
    far = moved_wcs(centre, offset_arcmin=25.0, position_angle_deg=0.0)
    with pytest.raises(NoSolution):
        match_and_fit(det, sky, far, image_shape=(2048, 2048), max_offset_arcmin=5.0)


def test_bad_arguments_are_programming_errors() -> None:
    det, sky, truth, _truth_xy, _centre = point_field(seed=16, n_det=50, width=512, height=512)
    with pytest.raises(ValueError, match="shape"):
        match_and_fit(det[:, 0], sky, truth)
    with pytest.raises(ValueError, match="sip_degree"):
        match_and_fit(det, sky, truth, sip_degree=1)


# ----------------------------------------------------------------------------- rendered frames

WIDTH, HEIGHT, SCALE = 1024, 1024, 1.0
CENTRE = (83.8, -5.4)
ROTATION = 12.0


def render(seed: int = 5):
    sensor = scenes.sensor(
        width_px=WIDTH, height_px=HEIGHT, full_well_e=51000.0, read_noise_e=3.5,
        adu_per_offset=10.0, dark_current_e_s=0.002, dark_doubling_c=6.3,
        hot_pixel_fraction=2e-4, cosmic_rate_cm2_s=0.02, seed=3,
    )  # fmt: skip
    scene = scenes.sky(
        ra_deg=CENTRE[0], dec_deg=CENTRE[1], rotation_deg=ROTATION, pixel_scale_arcsec=SCALE,
        seeing_arcsec=2.5, zero_point_mag=22.5, catalog_seed=SKY["seed"],
        density_per_deg2=SKY["density_per_deg2"], mag_bright=SKY["mag_bright"],
        mag_limit=SKY["mag_limit"],
    )  # fmt: skip
    exposure = scenes.exposure(sensor, electrons_per_adu=0.8, offset=0, seed=seed)
    return render_exposure(sensor, exposure, scene)


def detect(image: np.ndarray) -> np.ndarray:
    data = np.ascontiguousarray(image, dtype=np.float32)
    bkg = sep.Background(data)
    objects = sep.extract(data - bkg, 3.0, err=bkg.globalrms, minarea=5)
    sources = np.empty(
        len(objects), dtype=[("x", "f8"), ("y", "f8"), ("flux", "f8"), ("flags", "i4")]
    )
    sources["x"] = objects["x"]
    sources["y"] = objects["y"]
    sources["flux"] = objects["flux"]
    sources["flags"] = objects["flag"]
    return sources


def approx_header(*, offset_arcmin: float = 5.0, rotation_err_deg: float = -6.0) -> fits.Header:
    """A raw-style header: approximate TAN WCS as a CD matrix, plus unrelated keywords."""
    wcs = moved_wcs(
        CENTRE,
        offset_arcmin=offset_arcmin,
        position_angle_deg=135.0,
        width=WIDTH,
        height=HEIGHT,
        scale=SCALE * 1.01,
        rotation_deg=ROTATION + rotation_err_deg,
    )
    h = fits.Header()
    h["DATE-OBS"] = "2026-03-01T21:00:00.000"
    h["MJD-OBS"] = 61100.875
    h["EXPTIME"] = 60.0
    h["FILTER"] = "V"
    h["RA"] = CENTRE[0]
    h["DEC"] = CENTRE[1]
    h["WCSAXES"] = 2
    h["CTYPE1"] = "RA---TAN"
    h["CTYPE2"] = "DEC--TAN"
    h["CUNIT1"] = "deg"
    h["CUNIT2"] = "deg"
    h["CRVAL1"] = float(wcs.wcs.crval[0])
    h["CRVAL2"] = float(wcs.wcs.crval[1])
    h["CRPIX1"] = (WIDTH + 1) / 2
    h["CRPIX2"] = (HEIGHT + 1) / 2
    for (i, j), value in np.ndenumerate(wcs.pixel_scale_matrix):
        h[f"CD{i + 1}_{j + 1}"] = float(value)
    return h


@pytest.fixture(scope="module")
def rendered():
    result = render()
    return result, detect(result.image)


@pytest.fixture
def refcat(tmp_path: Path):
    with RefCatalog(tmp_path / "catalog.sqlite") as catalog:
        import_synthetic(catalog, *CENTRE, 0.8, **SKY)
        yield catalog


def test_rendered_frame_solves_to_the_truth(rendered) -> None:
    truth_render, sources = rendered
    order = np.argsort(-sources["flux"])
    xy = np.column_stack([sources["x"], sources["y"]])[order]
    cat = synthetic_catalog(*CENTRE, 0.8, **SKY)
    by_mag = np.argsort(cat.mag_v)
    sky = np.column_stack([cat.ra_deg, cat.dec_deg])[by_mag]
    approx = WCS(approx_header())
    result = match_and_fit(xy, sky, approx, image_shape=(HEIGHT, WIDTH))
    stars = truth_render.stars
    fx, fy = result.wcs.world_to_pixel_values(stars["ra_deg"], stars["dec_deg"])
    err = np.hypot(fx - stars["x"], fy - stars["y"])
    assert err.max() < TOL_PX
    assert result.n_matched >= 50
    assert result.rms_px < 0.3  # SEP centroids of faint stars scatter more than the fit
    assert result.offset_arcmin == pytest.approx(5.0, abs=0.1)


def test_stage_writes_wcs_positions_and_reference_magnitudes(rendered, refcat) -> None:
    truth_render, sources = rendered
    frame = Frame(
        data=truth_render.image.astype(np.float32),
        header=approx_header(),
        exposure_id=7,
        sources=sources,
    )
    out = Astrometry(refcat).process(frame)

    assert out.flags == ()
    assert out.provenance == ("astrometry",)
    assert frame.header["CRVAL1"] == approx_header()["CRVAL1"]  # input untouched
    assert out.metrics["wcs_matched"] >= 50
    assert out.metrics["wcs_rms_px"] < 0.3
    assert out.metrics["wcs_rms_arcsec"] == pytest.approx(
        out.metrics["wcs_rms_px"] * SCALE, rel=0.02
    )
    assert out.header["WCSNMAT"] == out.metrics["wcs_matched"]
    assert "PC1_1" not in out.header and "CDELT1" not in out.header
    assert out.header["DATE-OBS"] == frame.header["DATE-OBS"]

    wcs = WCS(out.header)
    assert not WCS(strip_wcs(out.header)).has_celestial
    stars = truth_render.stars
    fx, fy = wcs.world_to_pixel_values(stars["ra_deg"], stars["dec_deg"])
    assert np.hypot(fx - stars["x"], fy - stars["y"]).max() < TOL_PX

    src = out.sources
    assert set(sources.dtype.names) < set(src.dtype.names)
    assert np.isfinite(src["ra_deg"]).all() and np.isfinite(src["dec_deg"]).all()
    matched = src["ref_id"] >= 0
    assert matched.sum() == out.metrics["wcs_matched"]
    assert np.isnan(src["ref_mag"][~matched]).all()
    # Matched detections carry the V magnitude and B-V of the star rendered at that spot.
    near = np.hypot(
        src["x"][matched, None] - stars["x"][None], src["y"][matched, None] - stars["y"][None]
    )
    nearest = stars[np.argmin(near, axis=1)]
    assert np.allclose(src["ref_mag"][matched], nearest["mag"], atol=1e-5)
    cat = synthetic_catalog(*CENTRE, 0.8, **SKY)
    b_v = dict(zip(cat.id.tolist(), (cat.mag_b - cat.mag_v).tolist(), strict=True))
    expected_colour = np.array([b_v[i] for i in nearest["id"].tolist()])
    assert np.allclose(src["ref_colour"][matched], expected_colour, atol=1e-5)
    assert np.isnan(src["ref_mag_err"]).all()  # the synthetic catalog has no errors


def test_stage_flags_an_unsolvable_frame_and_keeps_the_approximate_wcs(refcat) -> None:
    rng = np.random.default_rng(3)
    sources = np.empty(300, dtype=[("x", "f8"), ("y", "f8"), ("flux", "f8"), ("flags", "i4")])
    sources["x"] = rng.uniform(0, WIDTH, 300)
    sources["y"] = rng.uniform(0, HEIGHT, 300)
    sources["flux"] = rng.uniform(100, 1e5, 300)
    sources["flags"] = 0
    header = approx_header()
    frame = Frame(data=np.zeros((HEIGHT, WIDTH), np.float32), header=header, sources=sources)
    out = Astrometry(refcat).process(frame)
    assert len(out.flags) == 1 and out.flags[0].startswith("astrometry failed: ")
    assert out.header == header
    assert out.metrics["wcs_matched"] == 0.0
    ra, dec = WCS(header).all_pix2world(sources["x"], sources["y"], 0)
    assert np.allclose(out.sources["ra_deg"], ra) and np.allclose(out.sources["dec_deg"], dec)
    assert np.isnan(out.sources["ref_mag"]).all()


def test_stage_with_an_empty_catalog_says_how_to_fill_it(rendered, tmp_path: Path) -> None:
    truth_render, sources = rendered
    frame = Frame(data=truth_render.image, header=approx_header(), sources=sources)
    with RefCatalog(tmp_path / "empty.sqlite") as empty:
        out = Astrometry(empty).process(frame)
    assert out.flags[0].startswith("astrometry failed: no reference stars around the field")
    assert "obsctl catalog import" in out.flags[0]


def test_stage_without_sources_or_wcs_is_flagged(refcat) -> None:
    frame = Frame(data=np.zeros((8, 8), np.float32), header=approx_header())
    out = Astrometry(refcat).process(frame)
    assert out.flags == ("astrometry failed: no detected sources (photometry must run first)",)
    sources = np.zeros(3, dtype=[("x", "f8"), ("y", "f8"), ("flux", "f8")])
    out = Astrometry(refcat).process(Frame(data=frame.data, header=fits.Header(), sources=sources))
    assert out.flags == ("astrometry failed: the header has no approximate WCS",)
    assert np.isnan(out.sources["ra_deg"]).all()


def test_stage_with_a_cone_function_and_a_luminance_filter(rendered) -> None:
    truth_render, sources = rendered
    calls = []

    def cone(ra: float, dec: float, radius: float) -> np.ndarray:
        calls.append((ra, dec, radius))
        cat = synthetic_catalog(ra, dec, radius, **SKY)
        out = np.empty(
            len(cat), dtype=[("ra_deg", "f8"), ("dec_deg", "f8"), ("mag_v", "f8"), ("mag_r", "f8")]
        )
        out["ra_deg"], out["dec_deg"] = cat.ra_deg, cat.dec_deg
        out["mag_v"], out["mag_r"] = cat.mag_v, cat.mag_r
        return out  # unsorted: the stage ranks by brightness itself

    header = approx_header(offset_arcmin=8.0, rotation_err_deg=9.0)
    header["FILTER"] = "Lum"
    frame = Frame(data=truth_render.image.astype(np.float32), header=header, sources=sources)
    out = Astrometry(cone, max_offset_arcmin=10.0).process(frame)
    assert out.flags == ()
    assert len(calls) == 1
    # The circle holds the frame wherever a 10' pointing error could put it.
    assert calls[0][2] > math.hypot(WIDTH, HEIGHT) / 2 * SCALE / 3600 + 10 / 60
    matched = out.sources["ref_id"] == -1  # no ids in this store
    assert matched.all()
    has_mag = np.isfinite(out.sources["ref_mag"])
    assert has_mag.sum() == out.metrics["wcs_matched"]
    stars = truth_render.stars
    near = np.argmin(
        np.hypot(
            out.sources["x"][has_mag, None] - stars["x"][None],
            out.sources["y"][has_mag, None] - stars["y"][None],
        ),
        axis=1,
    )
    cat = synthetic_catalog(*CENTRE, 0.8, **SKY)
    lum = dict(zip(cat.id.tolist(), cat.mag("L").tolist(), strict=True))
    expected = np.array([lum[i] for i in stars["id"][near].tolist()])
    assert np.allclose(out.sources["ref_mag"][has_mag], expected, atol=1e-9)
    assert np.isnan(out.sources["ref_colour"]).all()  # no B in this store
