"""Zero-point fit, calibrated magnitudes and the ZeroPoint stage.

The fit is checked on synthetic magnitude lists with known answers, then end to end on a
simulated frame whose stars' true magnitudes serve as the reference catalog.

Truth zero point of a simulated frame: the simulator gives a star of magnitude m a total of
``flux_e = 10**(-0.4 (m - zp_sim)) * t`` electrons (``SkyScene.zero_point_mag``: 1 e-/s),
and the main aperture holds a fraction ``f`` of it (the PSF wings fall outside). With
``m = ZP - 2.5 log10(flux_ap * gain / t)`` and ``flux_ap * gain = f * flux_e``, the aperture
zero point is ``ZP = zp_sim + 2.5 log10(f)``; ``f`` is measured on the simulator's own
noise-free stamp (`encircled_fraction`).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits
from numpy.lib import recfunctions as rfn

from obsctl.errors import StageError
from obsctl.frame import Frame
from obsctl.pipeline.photometry import SepPhotometry
from obsctl.pipeline.zeropoint import ZeroPoint
from obsctl.processing.zeropoint import (
    calibrated_magnitudes,
    fit_zero_point,
    instrumental_magnitudes,
)

from .test_photometry import (
    EXPOSURE_S,
    GAIN,
    READ_NOISE_E,
    SATURATION_ADU,
    SCENE,
    encircled_fraction,
    isolated,
    match,
    render,
)


def synthetic(
    n: int, *, zp: float = 21.3, seed: int = 0, extra: float = 0.0
) -> tuple[np.ndarray, ...]:
    """Instrumental magnitudes, errors and reference magnitudes with known zero point."""
    rng = np.random.default_rng(seed)
    ref = rng.uniform(11.0, 17.0, n)
    err = 0.003 * 10 ** (0.2 * (ref - 11.0))  # errors grow with magnitude, 0.003-0.06
    inst = ref - zp + rng.normal(0.0, 1.0, n) * np.hypot(err, extra)
    return inst, err, ref


def test_weighted_zero_point_with_outliers_rejected():
    inst, err, ref = synthetic(300)
    outliers = np.arange(0, 300, 10)  # 10 %: variables, blends, mismatches
    inst[outliers] += np.random.default_rng(1).choice([-1, 1], outliers.size) * 0.3
    result = fit_zero_point(inst, err, ref)
    assert result.zero_point == pytest.approx(21.3, abs=4 * result.error)
    assert result.error < 0.001
    assert not result.mask[outliers].any()
    assert result.n_used >= 265
    assert result.intrinsic_scatter < 0.002
    assert result.colour_term == 0.0


def test_zero_point_error_matches_its_scatter_over_many_frames():
    pulls = []
    for seed in range(200):
        inst, err, ref = synthetic(40, seed=seed)
        result = fit_zero_point(inst, err, ref)
        pulls.append((result.zero_point - 21.3) / result.error)
    assert abs(np.mean(pulls)) < 0.25
    assert 0.85 < np.std(pulls) < 1.2


def test_unexplained_scatter_is_taken_up_and_inflates_the_error():
    inst, err, ref = synthetic(400, extra=0.03, seed=4)
    result = fit_zero_point(inst, err, ref)
    assert result.intrinsic_scatter == pytest.approx(0.03, abs=0.006)
    assert result.zero_point == pytest.approx(21.3, abs=0.01)
    # About 0.03 / sqrt(400), not the far smaller formal error of the bright stars.
    assert 0.0012 < result.error < 0.0025
    assert result.rms == pytest.approx(np.hypot(0.03, np.median(err)), rel=0.35)


def test_colour_term():
    inst, err, ref = synthetic(300, seed=2)
    colour = np.random.default_rng(3).uniform(0.2, 1.6, 300)
    inst = inst - 0.08 * colour  # the instrument sees redder stars fainter by 0.08 mag per mag
    result = fit_zero_point(inst, err, ref, colour=colour, fit_colour_term=True)
    assert result.colour_term == pytest.approx(0.08, abs=4 * result.colour_term_err)
    assert result.zero_point == pytest.approx(21.3, abs=4 * result.error)
    mag, _ = calibrated_magnitudes(
        10 ** (-0.4 * inst) * EXPOSURE_S,
        np.zeros(300),
        EXPOSURE_S,
        result.zero_point,
        colour=colour,
        colour_term=result.colour_term,
    )
    pull = (mag - ref) / err
    assert abs(np.polyfit(colour, pull, 1)[0]) < 0.3  # no colour trend left
    assert 0.85 < np.std(pull) < 1.15


def test_missing_reference_magnitudes_and_bad_input():
    inst, err, ref = synthetic(50)
    ref[::2] = np.nan  # unmatched
    result = fit_zero_point(inst, err, ref)
    assert result.n_used <= 25 and not result.mask[::2].any()
    with pytest.raises(ValueError, match="at least 3"):
        fit_zero_point(inst[:4], err[:4], np.array([np.nan, 12.0, np.nan, 13.0]))
    with pytest.raises(ValueError, match="lengths differ"):
        fit_zero_point(inst, err[:10], ref)
    with pytest.raises(ValueError, match="colour"):
        fit_zero_point(inst, err, ref, fit_colour_term=True)


def test_instrumental_and_calibrated_magnitudes():
    flux = np.array([1000.0, 100.0, 0.0, -5.0])
    err = np.array([10.0, 10.0, 10.0, 10.0])
    mag, mag_err = instrumental_magnitudes(flux, err, 10.0, gain_e_per_adu=2.0)
    # 1000 ADU * 2 e-/ADU / 10 s = 200 e-/s.
    assert mag[0] == pytest.approx(-2.5 * math.log10(200.0))
    assert mag[1] - mag[0] == pytest.approx(2.5)
    assert mag_err[0] == pytest.approx(2.5 / math.log(10) * 0.01)
    assert np.isnan(mag[2:]).all() and np.isnan(mag_err[2:]).all()
    cal, cal_err = calibrated_magnitudes(flux, err, 10.0, 21.0, 0.02, gain_e_per_adu=2.0)
    assert cal[0] == pytest.approx(21.0 - 2.5 * math.log10(200.0))
    assert cal_err[0] == pytest.approx(math.hypot(mag_err[0], 0.02))
    with pytest.raises(ValueError, match="positive"):
        instrumental_magnitudes(flux, err, 0.0)


# ------------------------------------------------------------------ on a simulated frame


def header() -> fits.Header:
    h = fits.Header()
    h["EGAIN"] = GAIN
    h["EXPTIME"] = EXPOSURE_S
    h["PIXSCALE"] = SCENE.pixel_scale_arcsec
    return h


def with_reference(frame: Frame, truth: np.ndarray) -> Frame:
    """What the astrometry stage does: matched catalog magnitudes (NaN where unmatched)."""
    sources = frame.sources
    assert sources is not None
    ref = np.full(len(sources), np.nan)
    src, tru = match(sources, truth, radius=1.0)
    ref[src] = truth["mag"][tru]
    table = rfn.append_fields(sources, "ref_mag", ref, usemask=False)
    return frame.with_stage("astrometry", sources=table)


@pytest.fixture(scope="module")
def calibrated():
    data, truth = render(SCENE)
    photometry = SepPhotometry(read_noise_e=READ_NOISE_E, saturation_adu=SATURATION_ADU)
    frame = with_reference(photometry.process(Frame(data=data, header=header())), truth)
    zero_point = ZeroPoint(nominal_zero_point=21.5, measure_limiting_mag=False)
    return zero_point.process(frame), truth


def test_zero_point_matches_the_simulator_truth(calibrated):
    frame, _ = calibrated
    fraction = encircled_fraction(frame.aperture_radius_px)
    truth_zp = SCENE.zero_point_mag + 2.5 * math.log10(fraction)
    assert frame.metrics["zero_point"] == pytest.approx(truth_zp, abs=0.02)  # measured ~0.004
    assert frame.metrics["zero_point_err"] < 0.005
    assert frame.metrics["zero_point_stars"] >= 50
    # A clear simulated sky: transparency is the aperture loss alone.
    assert frame.metrics["transparency"] == pytest.approx(fraction, rel=0.02)
    assert frame.header["PHOTZP"] == pytest.approx(frame.metrics["zero_point"], abs=1e-4)


def test_calibrated_magnitudes_match_truth_within_their_errors(calibrated):
    frame, truth = calibrated
    sources = frame.sources
    src, tru = match(sources, truth, radius=1.0)
    good = (sources["flags"][src] == 0) & isolated(truth)[tru]
    rows, stars = sources[src[good]], truth[tru[good]]
    residual = rows["mag"] - stars["mag"]

    bright = rows["snr"] > 100
    assert bright.sum() >= 40
    assert abs(np.median(residual[bright])) < 0.005
    assert np.sqrt(np.mean(residual[bright] ** 2)) < 0.01  # S/N > 100: errors below 0.011
    assert np.all(np.abs(residual[bright]) < 0.01 + 3 * rows["mag_err"][bright])

    measured = rows["snr"] > 10
    pull = residual[measured] / rows["mag_err"][measured]
    assert measured.sum() > 100
    assert 0.8 < np.std(pull) < 1.25
    assert np.all(np.isnan(sources["mag"][sources["flux"] <= 0]))


def test_stage_marks_the_stars_it_used(calibrated):
    frame, _ = calibrated
    sources = frame.sources
    used = sources["zp_used"]
    assert used.sum() == frame.metrics["zero_point_stars"]
    assert np.all(np.isfinite(sources["ref_mag"][used]))
    assert np.all(sources["flags"][used] == 0)
    assert frame.provenance == ("photometry", "astrometry", "zeropoint")


def test_stage_measures_the_limiting_magnitude(calibrated):
    frame, _ = calibrated
    again = ZeroPoint().process(frame)  # re-running replaces the mag columns
    names = again.sources.dtype.names
    assert names.count("mag") == 1
    # This field's catalog stops at V = 16, so only the depth's plausibility is checked
    # here; its accuracy against truth is in test_metrics.
    assert 17.0 < again.metrics["limiting_mag"] < 19.5


def test_stage_errors(calibrated):
    frame, _ = calibrated
    stage = ZeroPoint()
    with pytest.raises(StageError, match="astrometry"):
        stage.process(
            Frame(
                data=frame.data,
                header=header(),
                sources=rfn.drop_fields(frame.sources, ["ref_mag"], usemask=False),
                exposure_id=3,
            )
        )
    with pytest.raises(StageError, match="photometry"):
        stage.process(Frame(data=frame.data, header=header()))
    no_refs = frame.sources.copy()
    no_refs["ref_mag"] = np.nan
    with pytest.raises(StageError, match="usable reference stars"):
        stage.process(Frame(data=frame.data, header=header(), sources=no_refs))
    dark = header()
    dark["EXPTIME"] = 0.0
    with pytest.raises(StageError, match="EXPTIME"):
        stage.process(Frame(data=frame.data, header=dark, sources=frame.sources))


# ------------------------------------------------------------------ colour terms

COLOUR_TERM = -0.07  # the reference system: m_ref = m_instrument_system + COLOUR_TERM * colour


def with_colours(frame: Frame, low: float, high: float, seed: int = 5) -> Frame:
    """Give each star a catalog colour and move its reference magnitude by the colour term."""
    sources = frame.sources
    colour = np.random.default_rng(seed).uniform(low, high, len(sources))
    table = rfn.drop_fields(sources, ["mag", "mag_err", "zp_used"], usemask=False)
    table["ref_mag"] = sources["ref_mag"] + COLOUR_TERM * colour
    table = rfn.append_fields(table, "ref_colour", colour, usemask=False)
    night_header = header()
    night_header["FILTER"], night_header["DAY-OBS"] = "V", "2026-11-25"
    return Frame(data=frame.data, header=night_header, sources=table, exposure_id=7)


def bright_residuals(frame: Frame) -> np.ndarray:
    sources = frame.sources
    bright = sources["zp_used"] & (sources["snr"] > 100)
    assert bright.sum() >= 30
    return sources["mag"][bright] - sources["ref_mag"][bright]


def test_stage_fits_the_colour_term_when_the_colours_allow(calibrated):
    frame = ZeroPoint(measure_limiting_mag=False).process(with_colours(calibrated[0], -0.2, 1.6))
    assert frame.metrics["colour_term_fitted"] == 1.0
    assert frame.metrics["colour_term"] == pytest.approx(COLOUR_TERM, abs=0.01)
    assert 0 < frame.metrics["colour_term_err"] < 0.01
    assert not any("colour term" in f for f in frame.flags)
    # Calibrated magnitudes in the reference system: S/N > 100 stars within 0.01 mag.
    assert np.sqrt(np.mean(bright_residuals(frame) ** 2)) < 0.01
    # The instrumental magnitudes are kept for the night's fit.
    sources = frame.sources
    offset = sources["mag"] - sources["inst_mag"] - frame.metrics["zero_point"]
    typical = np.median(sources["ref_colour"][sources["zp_used"]])
    expected = frame.metrics["colour_term"] * (sources["ref_colour"] - typical)
    finite = np.isfinite(offset)
    assert finite.sum() > 100 and np.allclose(offset[finite], expected[finite], atol=1e-9)


def test_stage_holds_the_nights_colour_term_when_the_frame_cannot_fit_one(
    calibrated, tmp_path
) -> None:
    from obsctl.store.exposure_log import ExposureLog

    narrow = with_colours(calibrated[0], 0.60, 0.75)  # 0.15 mag of colour: too little
    log_db = ExposureLog(tmp_path / "obsctl.sqlite")
    night_fit = {"filter": "V", "mode": "all-sky", "photometric": 1, "colour_term": COLOUR_TERM}
    night_fit |= {"colour_fitted": 1, "n_frames": 30, "n_frames_used": 30, "n_stars": 900}
    log_db.put_night_fit("2026-11-24", [night_fit], [])
    log_db.close()
    stage = ZeroPoint(measure_limiting_mag=False, night_fits_db=tmp_path / "obsctl.sqlite")
    frame = stage.process(narrow)
    assert frame.metrics["colour_term_fitted"] == 0.0
    assert frame.metrics["colour_term"] == COLOUR_TERM and math.isnan(
        frame.metrics["colour_term_err"]
    )
    (flag,) = [f for f in frame.flags if "colour term" in f]
    assert "fit of the night 2026-11-24" in flag and "spanning 0.1" in flag
    assert np.sqrt(np.mean(bright_residuals(frame) ** 2)) < 0.01
    # No night fit: the configured term of the filter, else 0.
    configured = ZeroPoint(measure_limiting_mag=False, colour_terms={"V": 0.02}).process(narrow)
    assert configured.metrics["colour_term"] == 0.02
    assert any("(configured)" in f for f in configured.flags)
    none = ZeroPoint(measure_limiting_mag=False).process(narrow)
    assert none.metrics["colour_term"] == 0.0 and any("none known" in f for f in none.flags)
    # Never fitted on request; required on request.
    wide = with_colours(calibrated[0], -0.2, 1.6)
    held = ZeroPoint(measure_limiting_mag=False, fit_colour_term=False, colour_terms={"V": 0.01})
    assert held.process(wide).metrics["colour_term"] == 0.01
    with pytest.raises(StageError, match=r"spanning 0\.1"):
        ZeroPoint(measure_limiting_mag=False, fit_colour_term=True).process(narrow)
