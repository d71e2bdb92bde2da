"""A simulated night through the whole chain: extinction, colour terms and clouds recovered.

Frames are rendered by the camera simulator with its default sky model (extinction per
filter, colour terms, per-filter zero points, seeing growing with airmass) at airmasses from
1.05 to 2.4, a few of them under clouds; each goes through the pipeline's own stages
(SEP photometry, astrometry against the synthetic catalog, zero point), is stored in a real
SQLite exposure log, and the night is fitted (`obsctl.pipeline.nightfit.refit_night`).
Truth is the simulator's configuration and catalog: the extinction and colour coefficients of
`SimulatedSkyConfig` and the stars' catalog magnitudes, never a figure the pipeline made.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from obsctl.config import SimulatedSkyConfig
from obsctl.frame import Frame
from obsctl.pipeline.astrometry import Astrometry
from obsctl.pipeline.nightfit import refit_night
from obsctl.pipeline.photometry import SepPhotometry
from obsctl.pipeline.queue import ProcessingQueue
from obsctl.pipeline.runner import store_result
from obsctl.pipeline.worker import FrameResult
from obsctl.pipeline.zeropoint import ZeroPoint
from obsctl.simulators import scenes
from obsctl.simulators.camera_model import sky_scene
from obsctl.simulators.render import column_bias, flat_response, render_exposure
from obsctl.simulators.sky import field_wcs
from obsctl.store.exposure_log import ExposureLog, ExposureRecord

SIZE = 512
SCALE = 1.0  # arcsec/px: the 2.2" zenith seeing is sampled by 2.2 px
GAIN = 1.2
EXPOSURE_S = 60.0
RA0, DEC0 = 40.0, 15.0
NIGHT = "2026-11-25"
SKY = SimulatedSkyConfig(seed=31, star_density_per_deg2=50000.0, mag_bright=9.0, mag_limit=18.5)
SENSOR = scenes.sensor(width_px=SIZE, height_px=SIZE, read_noise_e=4.0, seed=9)
# Each band's colour term is against its own colour index: B-V for B and V, V-R for R.
BANDS = ("V", "B", "R")
AIRMASSES = (1.05, 1.15, 1.3, 1.45, 1.6, 1.75, 1.9, 2.05, 2.2, 2.4)
# Frames under cloud (index -> grey transmission): the all-sky fit must clip them. Two of
# ten is as many as a night may lose and still count as photometric (`fit_extinction`).
CLOUDS = {2: 0.80, 5: 0.88}


def _truth_colour_term(band: str) -> float:
    """The pipeline's colour term for a band: minus the simulator's (see extinction.py)."""
    return -getattr(SKY.colour_term, band)


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> dict[str, object]:
    folder: Path = tmp_path_factory.mktemp("night")
    db = ExposureLog(folder / "obsctl.sqlite")
    queue = ProcessingQueue(db)
    stages = [
        SepPhotometry(read_noise_e=4.0, saturation_adu=50000.0, gain_e_per_adu=GAIN),
        Astrometry(lambda ra, dec, radius: _cone(ra, dec, radius)),
        ZeroPoint(gain_e_per_adu=GAIN, measure_limiting_mag=False),
    ]
    flat = flat_response(SENSOR, x0=0, y0=0, width=SIZE, height=SIZE)
    level = SENSOR.bias_adu + 10 * SENSOR.adu_per_offset + column_bias(SENSOR)[None, :SIZE]
    calibrated: dict[str, list[np.ndarray]] = {band: [] for band in BANDS}
    seed = 0
    for band in BANDS:
        for i, airmass in enumerate(AIRMASSES):
            seed += 1
            scene = sky_scene(
                SKY, ra_deg=RA0, dec_deg=DEC0, rotation_deg=0.0, pixel_scale_arcsec=SCALE,
                band=band, airmass=airmass, transmission=CLOUDS.get(i, 1.0),
            )  # fmt: skip
            spec = scenes.exposure(
                SENSOR, exposure_s=EXPOSURE_S, electrons_per_adu=GAIN, offset=10, seed=seed
            )
            raw = render_exposure(SENSOR, spec, scene).image
            data = np.ascontiguousarray((raw.astype(np.float32) - level) / flat)
            header = fits.Header(
                field_wcs(
                    RA0 + 3 / 3600, DEC0 - 2 / 3600, width_px=SIZE, height_px=SIZE,
                    pixel_scale_arcsec=SCALE,
                ).to_header()
            )  # fmt: skip
            header.update({"EXPTIME": EXPOSURE_S, "FILTER": band, "DAY-OBS": NIGHT})
            frame = Frame(data=data, header=header)
            for stage in stages:
                frame = stage.process(frame)
            eid = db.add_exposure(
                ExposureRecord(
                    night=NIGHT, file_path=f"raw/{seed:03d}.fits", image_type="LIGHT",
                    exposure_s=EXPOSURE_S, date_obs=f"frame {seed}", mjd_start=61000.0 + seed,
                    mjd_mid=61000.0 + seed, bin_x=1, bin_y=1, target="FIELD", filter=band,
                    ra_deg=RA0, dec_deg=DEC0, airmass=airmass,
                )
            )  # fmt: skip
            queue.enqueue(eid)
            store_result(
                db,
                queue,
                FrameResult(
                    path="", exposure_id=eid, metrics=dict(frame.metrics),
                    sources=frame.sources, flags=frame.flags,
                ),
            )  # fmt: skip
            assert frame.sources is not None
            calibrated[band].append(frame.sources)
    fits_by_filter = refit_night(db, NIGHT)
    yield {"db": db, "fits": fits_by_filter, "catalogs": calibrated}
    db.close()


def _cone(ra: float, dec: float, radius: float) -> np.ndarray:
    from obsctl.simulators.sky import SyntheticCone

    return SyntheticCone(SKY)(ra, dec, radius)


@pytest.mark.parametrize("band", BANDS)
def test_extinction_and_colour_term_recovered(night, band: str) -> None:
    fit = night["fits"][band]
    k_true = getattr(SKY.extinction_mag_per_airmass, band)
    print(
        f"{band}: k {fit.k:.4f} +- {fit.k_err:.4f} (true {k_true}), colour term "
        f"{fit.colour_term:+.4f} +- {fit.colour_term_err:.4f} (true {_truth_colour_term(band):+})"
    )
    assert fit.mode == "all-sky" and fit.photometric
    assert abs(fit.k - k_true) < 0.01
    assert abs(fit.colour_term - _truth_colour_term(band)) < 0.01
    # The clouded frames fell off the all-sky line, by about their cloud's extinction.
    frames = fit.frames
    for i, transmission in CLOUDS.items():
        assert not frames.used[i]
        assert frames.residual[i] == pytest.approx(2.5 * math.log10(transmission), abs=0.02)
    stored = {row["filter"]: row for row in night["db"].night_fits(NIGHT)}
    assert stored[band]["k"] == pytest.approx(fit.k) and stored[band]["mode"] == "all-sky"


def test_zero_points_fall_with_airmass_and_differ_by_filter(night) -> None:
    rows = night["db"].query(
        "SELECT e.filter, e.airmass, m.zero_point FROM frame_metrics m "
        "JOIN exposures e ON e.id = m.exposure_id ORDER BY e.filter, e.airmass"
    )
    for band in BANDS:
        clear = [
            (r["airmass"], r["zero_point"])
            for i, r in enumerate(r for r in rows if r["filter"] == band)
            if i not in CLOUDS
        ]
        airmass, zp = np.array(clear).T
        slope = np.polyfit(airmass, zp, 1)[0]
        assert slope == pytest.approx(-getattr(SKY.extinction_mag_per_airmass, band), abs=0.02)
    v = np.mean([r["zero_point"] for r in rows if r["filter"] == "V"])
    b = np.mean([r["zero_point"] for r in rows if r["filter"] == "B"])
    assert v - b > 0.4  # B's throughput is lower and its extinction higher


def test_calibrated_magnitudes_of_bright_stars_match_the_catalog(night) -> None:
    """S/N > 100 stars on every frame, clouded ones included: no bias beyond 0.01 mag.

    At S/N 100 a star's own noise is 0.011 mag, so the goal "within 0.01 mag of truth" is
    read as the calibration's bias (the median over the night's stars) and the scatter is
    checked against the stars' own errors.
    """
    for band in BANDS:
        offsets, errors = [], []
        for catalog in night["catalogs"][band]:
            bright = (catalog["snr"] > 100) & np.isfinite(catalog["ref_mag"])
            bright &= catalog["flags"] == 0
            # The reference magnitude is the simulator's catalog magnitude of the matched star.
            offsets.append(np.asarray(catalog["mag"][bright] - catalog["ref_mag"][bright]))
            errors.append(np.asarray(catalog["mag_err"][bright]))
        every, err = np.concatenate(offsets), np.concatenate(errors)
        assert every.size > 50
        median = float(np.median(every))
        spread = 1.4826 * float(np.median(np.abs(every - median) / err))
        print(f"{band}: {every.size} stars, median {median:+.4f} mag, "
              f"robust sd of (mag - truth) / mag_err {spread:.2f}")  # fmt: skip
        assert abs(median) < 0.01
        assert spread < 1.5
