"""The real/bogus classifier: the shipped model on held-out simulated fields, its inputs.

Truth is the simulator's: the candidates come from fields simulated end to end through the
pipeline's stages (`obsctl.classify.training.realbogus.field_candidates`), labelled by the
positions of the transients and asteroids the renderer drew, with field seeds that neither
training, validation nor the card's held-out set used.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from obsctl.classify.model import SHIPPED_MODEL, ModelInputError
from obsctl.classify.realbogus import (
    CUTOUT_PX,
    REALBOGUS_CARD,
    REALBOGUS_MODEL,
    RealBogusClassifier,
    border_noise,
    load_card,
    model_inputs,
)
from obsctl.classify.training import realbogus as training
from obsctl.classify.training.realbogus import (
    TEST_FIELDS,
    TRAIN_FIELDS,
    VALIDATION_FIELDS,
    CandidateSet,
    concatenate,
    field_candidates,
    roc_auc,
    threshold_at_completeness,
)
from obsctl.pipeline import difference

# Fields no set of the card used.
QUICK_FIELDS = range(30_000, 30_003)


@pytest.fixture(scope="module")
def quick() -> dict[int, CandidateSet]:
    for used in (TRAIN_FIELDS, VALIDATION_FIELDS, TEST_FIELDS):
        assert not set(QUICK_FIELDS) & set(used)
    return {seed: field_candidates(seed) for seed in QUICK_FIELDS}


def test_fields_hold_reals_across_the_score_range_and_bogus(quick) -> None:
    data = concatenate(list(quick.values()))
    counts = data.counts()
    assert counts["frames"] >= 12
    assert counts["real"] >= 60 and counts["bogus"] >= 60
    for kind in ("supernova", "hostless", "nova", "asteroid"):
        assert counts[f"real_{kind}"] > 0
    real_scores = data.candidates["score"][data.labels == 1]
    # From the detection limit up.
    assert real_scores.min() < 7 and real_scores.max() > 50
    assert (data.candidates["score"][data.labels == 1] > 0).all()
    assert data.cutouts.shape == (len(data), 3, CUTOUT_PX, CUTOUT_PX)


def test_shipped_model_separates_held_out_candidates(quick) -> None:
    data = concatenate(list(quick.values()))
    classifier = RealBogusClassifier()
    probability = classifier.score(data.cutouts, data.candidates, data.fwhm_px)
    assert probability.shape == (len(data),) and probability.dtype == np.float32
    assert ((probability >= 0) & (probability <= 1)).all()
    assert roc_auc(probability.astype(np.float64), data.labels) >= 0.99
    # The shipped threshold keeps most reals (its 95 % is the validation set's).
    above = probability >= classifier.threshold
    assert above[data.labels == 1].mean() >= 0.85
    # Batching does not change a candidate's score.
    one = classifier.score(data.cutouts[:1], data.candidates[:1], data.fwhm_px[:1])
    assert one[0] == pytest.approx(probability[0], abs=1e-6)


def test_card_matches_the_shipped_model() -> None:
    import hashlib

    card = load_card()
    assert card["sha256"] == hashlib.sha256(REALBOGUS_MODEL.read_bytes()).hexdigest()
    classifier = RealBogusClassifier()
    assert classifier.threshold == pytest.approx(card["threshold"]["value"])
    metrics = card["metrics_test"]
    assert metrics["auc"] >= 0.99
    assert card["training"]["test_field_seeds"] == [TEST_FIELDS.start, TEST_FIELDS.stop]


def test_the_generator_is_reproducible(quick) -> None:
    seed = QUICK_FIELDS[0]
    again = field_candidates(seed)
    first = quick[seed]
    assert len(again) == len(first) > 0
    np.testing.assert_array_equal(again.cutouts, first.cutouts)
    for name in ("x", "y", "score", "flux", "snr"):
        np.testing.assert_array_equal(again.candidates[name], first.candidates[name])
    np.testing.assert_array_equal(again.labels, first.labels)


def test_the_cutouts_are_the_difference_stages() -> None:
    assert CUTOUT_PX == difference.CUTOUT_PX


def test_inputs_are_scaled_by_the_border_noise() -> None:
    rng = np.random.default_rng(4)
    sigma = 7.0
    cutouts = rng.normal(0.0, sigma, (50, 3, CUTOUT_PX, CUTOUT_PX)).astype(np.float32)
    cutouts[:, :, 10, 10] += 30 * sigma  # a bright centre does not change the border noise
    assert np.median(border_noise(cutouts[:, 2])) == pytest.approx(sigma, rel=0.05)
    cutouts[0, :, :, :5] = np.nan  # off the frame's left edge
    planes, features = model_inputs(cutouts, np.full(50, -8.0), np.full(50, np.nan), 3.0)
    assert planes.shape == (50, 4, CUTOUT_PX, CUTOUT_PX) and features.shape == (50, 4)
    assert np.isfinite(planes).all() and np.isfinite(features).all()
    assert (planes[0, :3, :, :5] == 0).all() and (planes[0, 3, :, :5] == 0).all()
    assert (planes[0, 3, :, 5:] == 1).all()
    assert np.median(planes[:, 2, 10, 10]) == pytest.approx(np.arcsinh(10.0), abs=0.3)
    np.testing.assert_allclose(features[0], [-1.0, np.log10(8.0), 0.0, 0.75], rtol=1e-6)


def test_bad_input_is_refused() -> None:
    classifier = RealBogusClassifier()
    rows = np.zeros(2, difference.CANDIDATE_DTYPE)
    good = np.zeros((2, 3, CUTOUT_PX, CUTOUT_PX), np.float32)
    with pytest.raises(ValueError, match="expected"):
        classifier.score(np.zeros((2, 3, 11, 11), np.float32), rows, 3.0)
    with pytest.raises(ValueError, match="2 cutouts but 1"):
        classifier.score(good, rows[:1], 3.0)
    with pytest.raises(ValueError, match="fwhm_px"):
        classifier.score(good, rows, 0.0)
    with pytest.raises(ValueError, match="'score'"):
        classifier.score(good, np.zeros(2, [("x", float)]), 3.0)
    assert classifier.score(good[:0], rows[:0], 3.0).shape == (0,)


def test_a_model_with_other_inputs_fails_at_start(tmp_path) -> None:
    # The source classifier takes [N, 3, 11, 11] cutouts and gives five probabilities.
    with pytest.raises(ModelInputError, match=r"shape|inputs"):
        RealBogusClassifier(SHIPPED_MODEL)
    with pytest.raises(ModelInputError, match="not found"):
        RealBogusClassifier(tmp_path / "missing.onnx")


def test_a_tiny_training_run_is_reproducible_and_writes_a_card(quick, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("sklearn")
    # The fields already simulated stand in for the three sets (the generator's own
    # reproducibility is tested above); one epoch is enough for the format.
    monkeypatch.setattr(training, "generate", lambda seeds, workers=1: quick[seeds[0]])
    kwargs = {"train_fields": [30_000], "validation_fields": [30_001], "test_fields": [30_002]}
    card = training.train_realbogus(tmp_path / "a", seed=3, epochs=1, **kwargs)
    again = training.train_realbogus(tmp_path / "b", seed=3, epochs=1, **kwargs)
    assert card["sha256"] == again["sha256"]
    written = json.loads((tmp_path / "a" / REALBOGUS_CARD.name).read_text())
    assert written["sha256"] == card["sha256"]
    model = tmp_path / "a" / REALBOGUS_MODEL.name
    assert RealBogusClassifier(model).threshold == pytest.approx(card["threshold"]["value"])
    for key in ("auc", "roc", "bogus_per_frame", "completeness", "threshold_95_on_this_set"):
        assert key in card["metrics_test"] and key in card["baseline_test"]
    assert card["training"]["train"]["frames"] == quick[30_000].n_frames
    assert card["timing_one_thread"]["batch_ms"] > 0


def test_auc_and_threshold_definitions() -> None:
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert roc_auc(np.full(4, 0.5), labels) == 0.5
    assert roc_auc(np.array([0.1, 0.3, 0.2, 0.9]), labels) == 0.75
    # The highest threshold with at least half of the reals at or above it.
    real = np.array([1, 1, 1, 1])
    assert threshold_at_completeness(np.array([0.1, 0.5, 0.9, 0.7]), real, 0.5) == 0.7
    assert threshold_at_completeness(np.array([0.1, 0.5, 0.9, 0.7]), real, 1.0) == 0.1


def test_the_shipped_files_are_package_data() -> None:
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert "shipped/realbogus.onnx" in text and "shipped/realbogus_card.json" in text
