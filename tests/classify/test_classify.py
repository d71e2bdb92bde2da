"""The source classifier: input spec, shipped model and card, held-out quality, frame grade."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest

from obsctl.classify.cutouts import (
    CUTOUT_SIZE,
    INPUT_SPEC_VERSION,
    N_CHANNELS,
    N_FEATURES,
    detection_mask,
    hot_pixel_map,
    model_inputs,
)
from obsctl.classify.labels import CLASSES
from obsctl.classify.model import (
    MODEL_CARD,
    SHIPPED_MODEL,
    ModelInputError,
    SourceClassifier,
    load_model_card,
)
from obsctl.classify.quality import quality_grade, quality_score
from obsctl.classify.training.dataset import NOISE, TEST_SEEDS, generate, labelled_samples
from obsctl.classify.training.evaluate import quality_report
from obsctl.classify.training.train import QUICK_TEST_FRAMES
from obsctl.config import default_config_path, parse_config, read_toml
from obsctl.errors import ConfigError
from obsctl.pipeline.stages import check_stages
from obsctl.processing.photometry import FLAG_SATURATED, catalog_dtype, measure_sources
from obsctl.simulators.labelled import render_labelled_frame

DATA = Path(__file__).resolve().parent.parent / "data"
# A valid ONNX graph (Identity on an "image" input) built with onnx.helper: the wrong spec.
WRONG_INPUTS = DATA / "classifier_wrong_inputs.onnx"


def catalog(x, y, *, background=10.0, snr=50.0, flags=0):
    out = np.zeros(len(x), dtype=catalog_dtype(1))
    out["x"], out["y"] = x, y
    out["background"], out["snr"], out["flags"] = background, snr, flags
    return out


# ----------------------------------------------------------------------------- input spec


def test_cutouts_are_centred_on_the_peak_and_normalised() -> None:
    image = np.full((64, 64), 10.0, dtype=np.float32)
    image[30, 20] = 110.0  # a one-pixel spike, 100 ADU above the background
    image[31, 20] = 60.0
    sources = catalog([20.4, 50.0], [30.6, 10.0], flags=[FLAG_SATURATED, 0])
    hot = np.zeros((64, 64), dtype=bool)
    hot[30, 20] = True
    cutouts, features, cy, cx = model_inputs(image, sources, rms_adu=5.0, fwhm_px=2.0, hot_map=hot)
    assert cutouts.shape == (2, N_CHANNELS, CUTOUT_SIZE, CUTOUT_SIZE)
    assert cutouts.dtype == np.float32 and features.shape == (2, N_FEATURES)
    assert (cy[0], cx[0]) == (30, 20)  # moved from the rounded (31, 20) to the brightest pixel
    c = CUTOUT_SIZE // 2
    assert cutouts[0, 0, c, c] == pytest.approx(1.0)
    assert cutouts[0, 0, c + 1, c] == pytest.approx(0.5)
    assert cutouts[0, 0, 0, 0] == pytest.approx(0.0)
    # The 3x3 block mean of the wide view holds the spike and its neighbour.
    assert cutouts[0, 1, c, c] == pytest.approx((1.0 + 0.5) / 9, rel=1e-5)
    assert cutouts[0, 2, c, c] == 1.0 and cutouts[0, 2].sum() == 1.0
    assert features[0, 0] == pytest.approx(math.log10(100.0 / 5.0), rel=1e-5)
    assert features[0, 1] == pytest.approx(0.5)
    assert features[0, 2] == 1.0 and features[1, 2] == 0.0
    assert features[0, 3] == pytest.approx(math.log10(50.0) / 2, rel=1e-5)
    # Flat sky: the scale falls back to the rms, the cutout is zero.
    assert np.all(cutouts[1, :2] == 0.0) and features[1, 0] == 0.0


def test_cutouts_at_the_edge_and_bad_input() -> None:
    image = np.random.default_rng(1).normal(100.0, 3.0, (40, 30)).astype(np.float32)
    cutouts, _, _, _ = model_inputs(
        image, catalog([0.0, 29.0], [0.0, 39.0], background=100.0), rms_adu=3.0, fwhm_px=2.5
    )
    assert np.all(np.isfinite(cutouts)) and np.all(np.abs(cutouts[:, :2]) <= 3.0)
    assert np.all(cutouts[:, 2] == 0.0)  # no hot-pixel map
    with pytest.raises(ValueError, match="lacks columns"):
        model_inputs(image, np.zeros(1, dtype=[("x", "f8"), ("y", "f8")]), rms_adu=3, fwhm_px=2)
    with pytest.raises(ValueError, match="must be positive"):
        model_inputs(image, catalog([1.0], [1.0]), rms_adu=0.0, fwhm_px=2.0)
    with pytest.raises(ValueError, match="hot-pixel map shape"):
        model_inputs(
            image, catalog([1.0], [1.0]), rms_adu=1, fwhm_px=2, hot_map=np.zeros((3, 3), bool)
        )


def test_hot_pixel_map_from_a_master_dark() -> None:
    rng = np.random.default_rng(2)
    dark = rng.normal(20.0, 2.0, (100, 100)).astype(np.float32)
    hot = rng.choice(10_000, 30, replace=False)
    dark.flat[hot] += rng.uniform(50.0, 500.0, 30).astype(np.float32)
    found = hot_pixel_map(dark)
    assert set(np.flatnonzero(found)) == set(hot)


def test_detection_mask_covers_a_track_and_nothing_else() -> None:
    image = np.full((50, 50), 5.0, dtype=np.float32)
    image[20, 10:16] = 200.0  # a six-pixel track
    image[40, 40] = 300.0  # not a masked detection
    mask = detection_mask(image, np.array([20]), np.array([12]), np.array([5.0]), rms_adu=2.0)
    assert mask[20, 10:16].all() and mask[19, 9:17].all() and mask[21, 9:17].all()
    assert mask.sum() == 3 * 8 and not mask[40, 40]


# ---------------------------------------------------------------------------- the model


def test_card_matches_the_shipped_model() -> None:
    card = load_model_card()
    blob = SHIPPED_MODEL.read_bytes()
    assert card["sha256"] == hashlib.sha256(blob).hexdigest()
    assert card["size_bytes"] == len(blob) < 300 * 1024
    assert card["file"] == SHIPPED_MODEL.name and MODEL_CARD.parent == SHIPPED_MODEL.parent
    assert tuple(card["classes"]) == CLASSES
    spec = card["input_spec"]
    assert spec["version"] == INPUT_SPEC_VERSION
    assert spec["inputs"]["cutouts"] == ["batch", N_CHANNELS, CUTOUT_SIZE, CUTOUT_SIZE]
    assert spec["inputs"]["features"] == ["batch", N_FEATURES]
    classifier = SourceClassifier()
    assert classifier.version == card["version"]


def test_probabilities_are_normalised_and_batching_does_not_matter() -> None:
    rng = np.random.default_rng(3)
    cutouts = rng.normal(0.0, 0.3, (64, N_CHANNELS, CUTOUT_SIZE, CUTOUT_SIZE)).astype(np.float32)
    features = rng.uniform(0.0, 1.0, (64, N_FEATURES)).astype(np.float32)
    classifier = SourceClassifier()
    p = classifier.predict(cutouts, features)
    assert p.shape == (64, len(CLASSES)) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    p_one = np.concatenate(
        [classifier.predict(cutouts[i : i + 1], features[i : i + 1]) for i in range(64)]
    )
    assert np.allclose(p, p_one, atol=1e-5)
    assert classifier.predict(cutouts[:0], features[:0]).shape == (0, len(CLASSES))


def test_a_model_with_other_inputs_fails_at_start(tmp_path) -> None:
    with pytest.raises(ModelInputError, match=r"model inputs are \['image'\]"):
        SourceClassifier(WRONG_INPUTS)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ModelInputError, match="not a loadable ONNX model"):
        SourceClassifier(garbage)
    with pytest.raises(ModelInputError, match="not found"):
        SourceClassifier(tmp_path / "missing.onnx")
    config = read_toml(default_config_path())
    config.setdefault("pipeline", {})["classifier_model"] = str(WRONG_INPUTS)
    wrong = parse_config(config, path=tmp_path / "obsctl.toml")  # config does no I/O
    with pytest.raises(ConfigError, match=r"pipeline.classifier_model: .*model inputs are"):
        check_stages(wrong)  # the pipeline checks its model when it starts
    config["pipeline"]["classifier_model"] = str(SHIPPED_MODEL)
    shipped = parse_config(config, path=tmp_path / "obsctl.toml")
    check_stages(shipped)
    assert shipped.pipeline.classifier_model


def test_held_out_quality_meets_the_goals_and_the_card() -> None:
    """Re-run the card's held-out evaluation on its first frames, uncleaned.

    Every detection counts (blends, stars on galaxies, bleeds and spikes, hits on a colour
    frame's green plane), not just the clean ones; noise peaks are reported apart.
    """
    test = generate(TEST_SEEDS[:QUICK_TEST_FRAMES], clean=False)
    assert np.count_nonzero(test.labels == NOISE) < 0.02 * len(test)
    probabilities = SourceClassifier().predict(test.cutouts, test.features)
    report = quality_report(probabilities, test.labels, test.snr, test.galaxy_re_fwhm)
    # The goals.
    assert report["macro_f1_snr_gt_20"] >= 0.97, report["per_class_snr_gt_20"]
    assert report["cosmic_ray_recall_snr_gt_10"] >= 0.95
    assert report["star_to_cosmic_ray_snr_gt_10"] < 0.005
    per_class = report["per_class_snr_gt_20"]
    assert all(per_class[name]["support"] >= 10 for name in CLASSES)  # every class is tested
    # And the card says what the shipped file does on these frames (the recipe is reproducible).
    card = load_model_card()["metrics_test_quick"]
    assert card["frame_seeds"] == [TEST_SEEDS[0], TEST_SEEDS[QUICK_TEST_FRAMES]]
    assert report["n"] == card["n"]
    for key in ("macro_f1_snr_gt_20", "cosmic_ray_recall_snr_gt_10", "accuracy"):
        assert report[key] == pytest.approx(card[key], abs=2e-3)


def test_the_held_out_set_keeps_what_training_leaves_out() -> None:
    """Uncleaned: every detection of a frame is a sample; cleaned: only unambiguous ones."""
    seed = TEST_SEEDS[0]
    uncleaned = labelled_samples(seed, clean=False)
    cleaned = labelled_samples(seed)
    frame = render_labelled_frame(seed)
    catalog, _ = measure_sources(
        frame.image,
        gain_e_per_adu=1.0,
        read_noise_e=frame.read_noise_e,
        saturation_adu=frame.saturation_e,
    )
    assert len(uncleaned) == len(catalog) >= len(cleaned)
    assert np.all(cleaned.labels >= 0)
    assert set(np.unique(uncleaned.labels).tolist()) <= {NOISE, *range(len(CLASSES))}


def test_noise_peaks_are_reported_apart() -> None:
    truth = np.array([0, 0, 1, NOISE, NOISE])
    probabilities = np.eye(len(CLASSES), dtype=np.float32)[[0, 0, 1, 4, 0]]
    report = quality_report(probabilities, truth, np.full(5, 30.0), np.full(5, np.nan, np.float32))
    assert report["n"] == 3 and report["accuracy"] == 1.0
    assert report["noise_peaks"]["n"] == 2 and report["noise_peaks"]["n_snr_gt_20"] == 2
    assert report["noise_peaks"]["called"] == {
        "star": 1, "galaxy": 0, "cosmic_ray": 0, "hot_pixel": 0, "artifact": 1,
    }  # fmt: skip
    assert np.sum(report["confusion_snr_gt_20"]) == 3


# ----------------------------------------------------------------------------- the grade


def test_quality_score_and_grade() -> None:
    best = quality_score(
        fwhm_px=2.0, best_fwhm_px=2.0, star_count=300, best_star_count=300,
        transparency=1.0, artifact_fraction=0.0,
    )  # fmt: skip
    assert best == pytest.approx(1.0) and quality_grade(best) == "A"
    cloudy = quality_score(
        fwhm_px=3.0, best_fwhm_px=2.0, star_count=100, best_star_count=300,
        transparency=0.4, artifact_fraction=0.05,
    )  # fmt: skip
    expected = (2 / 3 * 1 / 3 * 0.4 * 0.9) ** 0.25
    assert cloudy == pytest.approx(expected) and quality_grade(cloudy) == "C"
    unknown = quality_score(
        fwhm_px=math.nan, best_fwhm_px=math.nan, star_count=math.nan, best_star_count=math.nan,
        transparency=0.81, artifact_fraction=math.nan,
    )  # fmt: skip
    assert unknown == pytest.approx(0.81) and quality_grade(unknown) == "B"
    assert quality_grade(math.nan) is None


def test_wide_psf_frames_are_binned_into_the_trained_range() -> None:
    from obsctl.classify.cutouts import trained_scale

    rng = np.random.default_rng(4)
    image = rng.normal(100.0, 4.0, (64, 90)).astype(np.float32)
    sources = np.zeros(2, dtype=[("x", float), ("y", float)])
    sources["x"], sources["y"] = (0.5, 31.0), (0.5, 40.0)
    same = trained_scale(image, sources, rms_adu=4.0, fwhm_px=4.5)
    assert same[0] is image or np.shares_memory(same[0], image)
    assert same[4] == 1 and same[3] == 4.5
    binned, moved, rms, fwhm, factor = trained_scale(image, sources, rms_adu=4.0, fwhm_px=9.0)
    assert factor == 3 and fwhm == 3.0 and rms == pytest.approx(4.0 / 3)
    assert binned.shape == (21, 30)
    # Pixels 0..2 bin to 0, whose centre is original pixel 1.
    np.testing.assert_allclose(moved["x"], [(0.5 - 1) / 3, (31.0 - 1) / 3])
    assert float(binned[0, 0]) == pytest.approx(float(image[:3, :3].mean()), rel=1e-6)
    # Block means of independent pixels: the noise falls by the factor.
    assert float(binned.std()) == pytest.approx(4.0 / 3, rel=0.15)
