"""Reference images: a field's best frames combined on one grid (`obsctl.pipeline.reference`).

A small simulated field (`obsctl.simulators.archive`) is taken dithered, some frames at twice
the exposure, and processed by the live pipeline's code; the reference built from it is
checked against the simulator's own inputs (its catalog positions) and the frames' pixels.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import sep
from astropy.io import fits

from obsctl.cli import main
from obsctl.config import DifferenceConfig
from obsctl.embedded import reference_catalog
from obsctl.errors import ReferenceImageError
from obsctl.pipeline.reference import build_if_due, build_reference, read_reference
from obsctl.processing.reference_stack import flux_scale, stack_reference
from obsctl.simulators.archive import FIELD_DEC_DEG, FIELD_RA_DEG, take_night, write_config
from obsctl.store.datadir import DataDir
from obsctl.store.references import current_reference, references
from obsctl.timeseries.matching import match_positions

from ..pipeline_helpers import process_logged_frames

FIELD = "Archive field"
# Dithers (east, north; arcsec) of the 30 s and of the 60 s frames.
DITHERS_30 = [(0.0, 0.0), (7.3, -4.1), (-5.2, 6.6), (3.1, 9.4)]
DITHERS_60 = [(-8.4, -3.3), (10.2, 2.5)]


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory):
    """Six processed frames of one field: four of 30 s and two of 60 s, dithered."""
    root = tmp_path_factory.mktemp("reference")
    config = write_config(root / "obsctl.toml", root / "data")
    take_night(config, len(DITHERS_30), offsets_arcsec=DITHERS_30, seed=11)
    take_night(config, len(DITHERS_60), night=1, exposure_s=60.0, offsets_arcsec=DITHERS_60,
               seed=31)  # fmt: skip
    process_logged_frames(config)
    return config


def _open(config):
    data_dir = DataDir(config.data.directory)
    return data_dir, data_dir.open_log(existing=True)


def test_reference_of_a_dithered_field_is_deeper_aligned_and_on_one_flux_scale(field) -> None:
    data_dir, log_db = _open(field)
    try:
        row = build_reference(data_dir, log_db, FIELD, "V")
        assert current_reference(log_db, FIELD, "V", row["camera"])["id"] == row["id"]
        grid_path = data_dir.path(
            log_db.query(
                "SELECT calibrated_path FROM processing WHERE exposure_id = ?",
                (row["grid_exposure_id"],),
            )[0]["calibrated_path"]
        )
        frame_limits = [
            r["limiting_mag"]
            for r in log_db.query("SELECT limiting_mag FROM frame_metrics")
            if r["limiting_mag"] is not None
        ]
    finally:
        log_db.close()
    assert row["n_frames"] == 6
    ref = read_reference(data_dir.path(row["path"]))
    assert ref.header["NCOMBINE"] == 6
    assert sorted(ref.header[f"REFEXP{i}"] for i in range(1, 7)) == sorted(row["exposure_ids"])

    # Aligned: the reference's sources sit on the simulator's catalog positions.
    truth = reference_catalog(field)(FIELD_RA_DEG, FIELD_DEC_DEG, 0.1)
    bright = ref.catalog[ref.catalog["flux"] > 50 * np.nanmedian(ref.noise)]
    index = match_positions(bright["ra_deg"], bright["dec_deg"], truth["ra_deg"],
                            truth["dec_deg"], radius_arcsec=2.0)  # fmt: skip
    assert (index >= 0).sum() >= 20
    matched = index >= 0
    cos_dec = math.cos(math.radians(FIELD_DEC_DEG))
    d_east = (bright["ra_deg"][matched] - truth["ra_deg"][index[matched]]) * cos_dec * 3600
    d_north = (bright["dec_deg"][matched] - truth["dec_deg"][index[matched]]) * 3600
    assert np.median(np.hypot(d_east, d_north)) < 0.25  # arcsec; ~1 arcsec pixels

    # One flux scale: the grid frame's. Truth is the grid frame's own pixels, measured here
    # with the same apertures at the simulator's star positions. The 60 s frames, unscaled,
    # would make the reference's stars 1.33 times brighter.
    with fits.open(grid_path) as hdul:
        grid = np.ascontiguousarray(hdul[0].data, dtype=np.float32)
    grid = grid - sep.Background(grid).back()
    x, y = ref.wcs.all_world2pix(truth["ra_deg"], truth["dec_deg"], 0)
    inside = (x > 15) & (x < grid.shape[1] - 16) & (y > 15) & (y < grid.shape[0] - 16)
    x, y = x[inside], y[inside]
    radius = 3.0 * ref.header["FWHM"]
    f_grid, _, _ = sep.sum_circle(grid, x, y, radius)
    f_ref, _, _ = sep.sum_circle(np.nan_to_num(ref.image), x, y, radius)
    strong = f_grid > 3000
    assert strong.sum() >= 10
    assert np.median(f_ref[strong] / f_grid[strong]) == pytest.approx(1.0, abs=0.02)

    # Deeper, as the exposures add up: four 30 s frames, and two 60 s frames scaled by 1/2
    # (sky variance 2x, times 1/4) weigh as four more: the sky noise of one 30 s frame over
    # sqrt(8). Bicubic resampling of the variances adds a few per cent.
    sky_rms = sep.Background(grid + 0.0).globalrms
    assert np.nanmedian(ref.noise) == pytest.approx(sky_rms / math.sqrt(8), rel=0.12)
    assert row["limiting_mag"] > max(frame_limits)
    # Its noise image is the noise it has: on blank sky the image over its noise has unit
    # scatter (objects and their surroundings masked).
    objects = np.zeros(ref.image.shape, dtype=np.int32)
    data = np.ascontiguousarray(np.nan_to_num(ref.image), dtype=np.float32)
    err = np.ascontiguousarray(np.nan_to_num(ref.noise, nan=np.inf), dtype=np.float32)
    _, objects = sep.extract(data, 2.0, err=err, segmentation_map=True, minarea=3)
    from scipy.ndimage import binary_dilation

    blank = ~binary_dilation(objects > 0, iterations=4) & (ref.coverage == 6)
    ratio = (ref.image / ref.noise)[blank]
    assert blank.sum() > 10_000
    # Resampling correlates neighbouring pixels, which lowers the per-pixel scatter below
    # what the propagated variance says (bilinear interpolation: about 0.8 for half-pixel
    # shifts). The noise image is what a single pixel could at most be off by.
    assert 0.6 < np.std(ratio) < 1.1


def test_a_new_reference_replaces_the_current_and_keeps_the_old(field) -> None:
    data_dir, log_db = _open(field)
    try:
        first = build_reference(data_dir, log_db, FIELD, "V", trigger="auto")
        second = build_reference(
            data_dir, log_db, FIELD, "V", settings=DifferenceConfig(reference_frames=4)
        )
        rows = {r["id"]: r for r in references(log_db, FIELD)}
    finally:
        log_db.close()
    assert rows[first["id"]]["current"] == 0 and rows[first["id"]]["trigger"] == "auto"
    assert rows[second["id"]]["current"] == 1 and rows[second["id"]]["n_frames"] == 4
    assert Path(data_dir.path(first["path"])).exists()


def test_too_few_good_frames_is_a_clear_error(field) -> None:
    data_dir, log_db = _open(field)
    try:
        with pytest.raises(ReferenceImageError, match=r"6 frame\(s\).*10 needed"):
            build_reference(
                data_dir, log_db, FIELD, "V",
                settings=DifferenceConfig(reference_frames=12, min_reference_frames=10),
            )  # fmt: skip
        with pytest.raises(ReferenceImageError, match="0 frame"):
            build_reference(data_dir, log_db, "Ünknown 🌌 field", "V")
    finally:
        log_db.close()


def test_cli_builds_and_lists(field, capsys) -> None:
    config_file = Path(field.data.directory).parent / "obsctl.toml"
    for _ in range(2):
        assert main(["-c", str(config_file), "reference", "build", FIELD]) == 0
        assert "Archive field  V    6 frames" in capsys.readouterr().out
    assert main(["-c", str(config_file), "reference", "list", FIELD]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert "(replaced)" in listed[-2] and "(replaced)" not in listed[-1]
    assert main(["-c", str(config_file), "reference", "build", "nothing here"]) == 1
    assert "no light frames of field 'nothing here'" in capsys.readouterr().err


def test_stack_rejects_an_outlier_against_its_own_noise() -> None:
    rng = np.random.default_rng(5)
    sigma = np.array([1.0, 2.0, 1.0, 1.5, 1.0])
    truth = 10.0
    images = [truth + s * rng.standard_normal((64, 64)) for s in sigma]
    images[2][10, 10] += 500.0  # a cosmic ray in one frame
    images[3][20:22, :] = np.nan  # rows a frame does not cover
    variances = [np.full((64, 64), s * s) for s in sigma]
    result = stack_reference(images, variances, sky_variances=sigma**2, block_rows=16)
    assert result.image[10, 10] == pytest.approx(truth, abs=5 * float(result.noise[10, 10]))
    assert result.count[10, 10] == 4 and result.count[20, 5] == 4 and result.count[0, 0] == 5
    # Inverse-variance weights per frame: the noise of the mean of all five.
    expected = 1.0 / math.sqrt(np.sum(1.0 / sigma**2))
    assert result.noise[0, 0] == pytest.approx(expected, rel=1e-6)
    pull = (result.image - truth) / result.noise
    assert np.std(pull) == pytest.approx(1.0, abs=0.06)
    assert abs(np.mean(pull)) < 0.05
    assert 0 < result.rejected_fraction < 0.01


def test_flux_scale_is_the_median_ratio_of_stars_in_both() -> None:
    flux = np.array([100.0, 200.0, 300.0, 400.0, 500.0, 600.0, np.nan, -5.0])
    reference = 2.0 * flux
    reference[0] = 10_000.0  # a variable star must not move it
    assert flux_scale(flux, reference) == pytest.approx(2.0)
    assert flux_scale(flux[:4], reference[:4]) is None


def test_the_first_reference_of_a_monitored_field_is_built_when_due(field, tmp_path) -> None:
    import shutil

    # A copy of the field with no reference yet.
    shutil.copytree(field.data.directory, tmp_path / "data")
    data_dir = DataDir(tmp_path / "data")
    log_db = data_dir.open_log(existing=True)
    try:
        log_db.execute("DELETE FROM reference_images")
        last = max(r["id"] for r in log_db.exposures(image_type="LIGHT"))
        tried: dict = {}
        many = DifferenceConfig(reference_frames=12, min_reference_frames=10)
        args = {"fields": frozenset({FIELD}), "tried": tried}
        assert build_if_due(data_dir, log_db, last, settings=many, **args) is None
        assert not tried  # too few frames is not a failure: nothing was tried
        other = {"fields": frozenset({"another field"}), "tried": tried}
        assert build_if_due(data_dir, log_db, last, settings=DifferenceConfig(), **other) is None
        row = build_if_due(data_dir, log_db, last, settings=DifferenceConfig(), **args)
        assert row is not None and row["trigger"] == "auto" and row["n_frames"] == 6
        # Once there is one, it is not built again.
        assert build_if_due(data_dir, log_db, last, settings=DifferenceConfig(), **args) is None
        assert len(references(log_db)) == 1
    finally:
        log_db.close()
