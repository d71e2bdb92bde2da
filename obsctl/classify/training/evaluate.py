"""Classifier metrics on a labelled set: F1 per class and S/N bin, cosmic-ray goals, calibration.

Pure numpy, so the quality test and the model card use the same code without torch. Samples
whose truth is negative (noise peaks of an uncleaned set,
`obsctl.classify.training.dataset.NOISE`) are no class of the model: they are left out of
every metric and reported apart (how many, and what the model calls them).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from obsctl.classify.labels import CLASSES

__all__ = ["SIZE_BINS", "SNR_BINS", "confusion", "f1_scores", "quality_report"]

#: Measured main-aperture S/N bins of the card's per-bin metrics.
SNR_BINS: tuple[tuple[float, float], ...] = (
    (0.0, 10.0),
    (10.0, 20.0),
    (20.0, 50.0),
    (50.0, 200.0),
    (200.0, math.inf),
)
#: Galaxy half-light radius bins (in PSF FWHM).
SIZE_BINS: tuple[tuple[float, float], ...] = ((1.0, 1.5), (1.5, 2.5), (2.5, 4.0), (4.0, 8.0))

_STAR = CLASSES.index("star")
_COSMIC = CLASSES.index("cosmic_ray")
_GALAXY = CLASSES.index("galaxy")


def confusion(truth: NDArray[np.int64], predicted: NDArray[np.int64]) -> NDArray[np.int64]:
    """Return the confusion matrix ``[true class, predicted class]``."""
    k = len(CLASSES)
    matrix: NDArray[np.int64] = np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)
    return matrix


def f1_scores(matrix: NDArray[np.int64]) -> dict[str, dict[str, float]]:
    """Return precision, recall, F1 and support per class (NaN where undefined)."""
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(CLASSES):
        tp = float(matrix[i, i])
        support = float(matrix[i].sum())
        predicted = float(matrix[:, i].sum())
        precision = tp / predicted if predicted else math.nan
        recall = tp / support if support else math.nan
        f1 = (
            2 * precision * recall / (precision + recall)
            if support and predicted and precision + recall > 0
            else (0.0 if support else math.nan)
        )
        out[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return out


def _macro_f1(matrix: NDArray[np.int64]) -> float:
    values = [v["f1"] for v in f1_scores(matrix).values() if not math.isnan(v["f1"])]
    return float(np.mean(values)) if values else math.nan


def _expected_calibration_error(
    probabilities: NDArray[np.float32], truth: NDArray[np.int64], bins: int = 10
) -> float:
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 5)


def quality_report(
    probabilities: NDArray[np.float32],
    truth: NDArray[np.int64],
    snr: NDArray[np.float64],
    galaxy_re_fwhm: NDArray[np.float32],
) -> dict[str, Any]:
    """Summarise a classifier's predictions on a labelled set.

    Parameters
    ----------
    probabilities : numpy.ndarray of float32
        ``[N, 5]`` model output.
    truth : numpy.ndarray of int64
        True class indices.
    snr : numpy.ndarray of float64
        Measured S/N of each detection.
    galaxy_re_fwhm : numpy.ndarray of float32
        Galaxies' half-light radius (PSF FWHM), NaN for others.

    Returns
    -------
    dict
        ``macro_f1_snr_gt_20``, ``cosmic_ray_recall_snr_gt_10``,
        ``star_to_cosmic_ray_snr_gt_10`` (fraction of true stars called cosmic rays),
        ``accuracy``, ``expected_calibration_error``, ``per_class`` (S/N > 20),
        ``per_snr_bin`` (macro-F1 and per-class recall), ``galaxy_recall_per_size_bin``
        (S/N > 20), ``confusion_snr_gt_20`` (rows true, columns predicted, in
        `obsctl.classify.labels.CLASSES` order), sample counts and ``noise_peaks`` (samples
        with a negative truth: their number, and the classes the model gives them, at any S/N
        and at S/N > 20).
    """
    all_predicted = probabilities.argmax(axis=1).astype(np.int64)
    noise = truth < 0
    noise_peaks = {
        "n": int(noise.sum()),
        "called": {
            k: int(np.count_nonzero(all_predicted[noise] == i)) for i, k in enumerate(CLASSES)
        },
        "n_snr_gt_20": int((noise & (snr > 20.0)).sum()),
        "called_snr_gt_20": {
            k: int(np.count_nonzero(all_predicted[noise & (snr > 20.0)] == i))
            for i, k in enumerate(CLASSES)
        },
    }
    objects = ~noise
    probabilities, truth = probabilities[objects], truth[objects]
    snr, galaxy_re_fwhm = snr[objects], galaxy_re_fwhm[objects]
    predicted = all_predicted[objects]
    bright = snr > 20.0
    mid = snr > 10.0
    m20 = confusion(truth[bright], predicted[bright])
    m10 = confusion(truth[mid], predicted[mid])
    stars10 = float(m10[_STAR].sum())
    per_bin = []
    for lo, hi in SNR_BINS:
        inside = (snr > lo) & (snr <= hi)
        m = confusion(truth[inside], predicted[inside])
        scores = f1_scores(m)
        per_bin.append(
            {
                "snr": [lo, None if math.isinf(hi) else hi],
                "n": int(inside.sum()),
                "macro_f1": _rounded(_macro_f1(m)),
                "recall": {k: _rounded(v["recall"]) for k, v in scores.items()},
            }
        )
    sizes = []
    for lo, hi in SIZE_BINS:
        inside = (truth == _GALAXY) & bright & (galaxy_re_fwhm >= lo) & (galaxy_re_fwhm < hi)
        n = int(inside.sum())
        recall = float(np.mean(predicted[inside] == _GALAXY)) if n else math.nan
        sizes.append({"re_fwhm": [lo, hi], "n": n, "recall": _rounded(recall)})
    return {
        "n": int(truth.size),
        "n_snr_gt_20": int(bright.sum()),
        "macro_f1_snr_gt_20": _rounded(_macro_f1(m20)),
        "cosmic_ray_recall_snr_gt_10": _rounded(
            float(m10[_COSMIC, _COSMIC]) / max(1.0, float(m10[_COSMIC].sum()))
        ),
        "star_to_cosmic_ray_snr_gt_10": _rounded(
            float(m10[_STAR, _COSMIC]) / stars10 if stars10 else math.nan
        ),
        "accuracy": _rounded(float(np.mean(predicted == truth))),
        "expected_calibration_error": _rounded(_expected_calibration_error(probabilities, truth)),
        "per_class_snr_gt_20": {
            k: {m: _rounded(v[m]) for m in ("precision", "recall", "f1", "support")}
            for k, v in f1_scores(m20).items()
        },
        "per_snr_bin": per_bin,
        "galaxy_recall_per_size_bin_snr_gt_20": sizes,
        "confusion_snr_gt_20": m20.tolist(),
        "noise_peaks": noise_peaks,
    }
