"""The shipped variable-star classifier on a fresh simulated population.

Truth is the population's labels (`obsctl.simulators.population`); the model is the shipped
one, never trained here.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from obsctl.classify.training.variables import curves_features, macro_f1
from obsctl.simulators.population import population
from obsctl.timeseries.classifier import (
    ANOMALY_MODEL,
    VARIABLE_CARD,
    VARIABLE_MODEL,
    VariableClassifier,
    VariableModelError,
)
from obsctl.timeseries.features import (
    FEATURE_NAMES,
    MISSING,
    N_FEATURES,
    light_curve_features,
    search_light_curve_period,
)

# A fresh population (the card's figures come from seeds 1 and 501) of curves with >= 50
# points, as the card's headline figure.
SEED = 4242
PER_CLASS = 8


@pytest.fixture(scope="module")
def classifier() -> VariableClassifier:
    return VariableClassifier()


@pytest.fixture(scope="module")
def held_out():
    curves = population(PER_CLASS * 11, seed=SEED, min_points=50)
    return curves, curves_features(curves, workers=2)


def test_shipped_model_reaches_its_card_figure(classifier, held_out) -> None:
    curves, x = held_out
    labels, proba, anomaly = classifier.classify(x)
    index = {c: i for i, c in enumerate(classifier.classes)}
    truth = np.array([index[c.label] for c in curves])
    predicted = np.array([index[str(label)] for label in labels])
    f1, _, _ = macro_f1(truth, predicted, len(classifier.classes))
    card_f1 = classifier.card["metrics"]["macro_f1_min50"]
    assert f1 >= card_f1 - 0.08, f"macro-F1 {f1:.3f}, card {card_f1:.3f}"
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    # Normal curves are mostly under the anomaly threshold (its 99th percentile of training).
    assert np.mean(anomaly > classifier.anomaly_threshold) < 0.1


def test_odd_curves_score_as_more_unusual(classifier, held_out) -> None:
    _, x = held_out
    _, _, normal = classifier.classify(x)
    rng = np.random.default_rng(1)
    t = np.sort(60_000.0 + rng.uniform(0.0, 30.0, 200))
    err = np.full(t.size, 0.01)
    sawtooth = 12.0 + 3.0 * np.mod(t / 0.01, 1.0) + err * rng.standard_normal(t.size)
    step = 12.0 + np.where(t > 60_015.0, 2.5, 0.0) + err * rng.standard_normal(t.size)
    odd = np.stack(
        [light_curve_features(t, m, err, search_light_curve_period(t, m, err))
         for m in (sawtooth, step)]
    )  # fmt: skip
    _, _, score = classifier.classify(odd)
    assert np.all(score > np.median(normal)), (score, np.median(normal))


def test_batch_of_1000_rows_has_the_right_shapes(classifier, held_out) -> None:
    _, x = held_out
    rows = np.resize(x, (1000, N_FEATURES))
    labels, proba, anomaly = classifier.classify(rows)
    assert labels.shape == (1000,) and anomaly.shape == (1000,)
    assert proba.shape == (1000, len(classifier.classes)) and proba.dtype == np.float32
    assert set(labels.tolist()) <= set(classifier.classes)
    empty = classifier.classify(np.zeros((0, N_FEATURES), dtype=np.float32))
    assert empty[1].shape == (0, len(classifier.classes))
    with pytest.raises(ValueError, match="features must be"):
        classifier.classify(np.zeros((3, N_FEATURES + 1)))


def test_features_are_fixed_length_and_nan_safe() -> None:
    assert len(FEATURE_NAMES) == N_FEATURES
    x = light_curve_features([1.0, 2.0, np.nan], [10.0, 10.1, 10.2], [0.01, 0.01, 0.01], None)
    assert x.shape == (N_FEATURES,) and np.all(x == MISSING)
    t = np.linspace(0.0, 10.0, 100)
    m = 12.0 + 0.3 * np.sin(2 * np.pi * t / 0.7)
    m[5] = np.nan
    x = light_curve_features(t, m, np.full(100, 0.01), None)
    assert np.all(np.isfinite(x)) and x[FEATURE_NAMES.index("log10_period_d")] == MISSING


def test_wrong_model_files_raise_a_typed_error(tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(VariableModelError, match="not a loadable ONNX model"):
        VariableClassifier(bad)
    with pytest.raises(VariableModelError, match="not found"):
        VariableClassifier(tmp_path / "missing.onnx")
    # The anomaly forest has the right input but no probabilities.
    with pytest.raises(VariableModelError, match="no output 'probabilities'"):
        VariableClassifier(ANOMALY_MODEL)
    # A card for other features.
    card = tmp_path / "card.json"
    card.write_text(
        VARIABLE_CARD.read_text().replace('"log10_period_d"', '"period_d"'), encoding="utf-8"
    )
    with pytest.raises(VariableModelError, match="other features"):
        VariableClassifier(card_path=card)
    shutil.copy(VARIABLE_MODEL, tmp_path / "v.onnx")
    VariableClassifier(tmp_path / "v.onnx")  # a copy of the right file loads
