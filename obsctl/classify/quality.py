"""A frame's quality grade: seeing, depth (star count), transparency and artifacts.

`quality_score` is pure; `grade_frame` compares a frame with the best frames of the same
field (target and filter) in the exposure log, which is what "the field's best" means for
the star count, the FWHM and the zero point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["GRADES", "grade_frame", "quality_grade", "quality_score"]

#: Lowest score of each grade, best first.
GRADES: tuple[tuple[str, float], ...] = (("A", 0.85), ("B", 0.7), ("C", 0.5), ("D", 0.0))
# An artifact fraction of 1/_ARTIFACT_SCALE (trails, spikes and bleeds among all
# detections) takes the artifact term to zero.
_ARTIFACT_SCALE = 2.0


def _unit(value: float) -> float:
    return float(np.clip(value, 0.0, 1.0)) if math.isfinite(value) else math.nan


def quality_score(
    *,
    fwhm_px: float,
    best_fwhm_px: float,
    star_count: float,
    best_star_count: float,
    transparency: float,
    artifact_fraction: float,
) -> float:
    """Return a frame's quality in [0, 1]: the geometric mean of four terms.

    Terms, each clipped to [0, 1] and left out when not finite: seeing ``best_fwhm_px /
    fwhm_px``; depth ``star_count / best_star_count``; ``transparency`` (1 on a clear
    night); artifacts ``1 - 2 * artifact_fraction``.

    Parameters
    ----------
    fwhm_px, best_fwhm_px : float
        The frame's stellar FWHM and the field's best (pixel).
    star_count, best_star_count : float
        Stars detected in the frame and the field's most.
    transparency : float
        Zero point relative to a clear sky or the field's best, as a flux ratio.
    artifact_fraction : float
        Share of the frame's detections classified as artifacts.

    Returns
    -------
    float
        The score, NaN when no term is known.
    """
    terms = [
        _unit(best_fwhm_px / fwhm_px) if fwhm_px > 0 else math.nan,
        _unit(star_count / best_star_count) if best_star_count > 0 else math.nan,
        _unit(transparency),
        _unit(1.0 - _ARTIFACT_SCALE * artifact_fraction),
    ]
    known = [t for t in terms if math.isfinite(t)]
    if not known:
        return math.nan
    return float(math.exp(np.mean(np.log(np.maximum(known, 1e-6)))))


def quality_grade(score: float) -> str | None:
    """Return the letter (A best, D worst) of a score, None for NaN."""
    if not math.isfinite(score):
        return None
    return next(letter for letter, low in GRADES if score >= low)


def grade_frame(best: Mapping[str, Any], metrics: Mapping[str, float]) -> tuple[float, str | None]:
    """Grade a frame against the best frames of its field already in the exposure log.

    Parameters
    ----------
    best : mapping
        The best metrics of the field's other frames (`ExposureLog.best_metrics_of_field`):
        ``fwhm`` (px), ``stars`` and ``zp`` (mag), None where unknown.
    metrics : mapping
        The frame's metrics (``fwhm_px``, ``star_count``, ``zero_point``, ``transparency``,
        ``artifact_fraction``).

    Returns
    -------
    tuple of (float, str or None)
        The score and its grade.
    """

    def value(key: str) -> float:
        v = metrics.get(key)
        return float(v) if isinstance(v, int | float) else math.nan

    fwhm, stars, zp = value("fwhm_px"), value("star_count"), value("zero_point")
    best_fwhm = min(fwhm, best["fwhm"]) if best.get("fwhm") is not None else fwhm
    best_stars = max(stars, best["stars"]) if best.get("stars") is not None else stars
    transparency = value("transparency")
    if not math.isfinite(transparency) and math.isfinite(zp):
        best_zp = max(zp, best["zp"]) if best.get("zp") is not None else zp
        transparency = 10.0 ** (-0.4 * (best_zp - zp))
    score = quality_score(
        fwhm_px=fwhm,
        best_fwhm_px=best_fwhm,
        star_count=stars,
        best_star_count=best_stars,
        transparency=transparency,
        artifact_fraction=value("artifact_fraction"),
    )
    return score, quality_grade(score)
