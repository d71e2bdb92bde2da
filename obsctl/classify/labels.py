"""The classifier's classes and the catalog flag for detections that are not celestial."""

from __future__ import annotations

__all__ = ["CLASSES", "FLAG_NOT_CELESTIAL", "NOT_CELESTIAL", "PROBABILITY_COLUMNS"]

#: Output order of the model: index i of its probabilities is ``CLASSES[i]``.
CLASSES: tuple[str, ...] = ("star", "galaxy", "cosmic_ray", "hot_pixel", "artifact")

#: Classes that are not light from the sky: kept out of the WCS fit, the zero point and the
#: frame's image-quality metrics.
NOT_CELESTIAL: frozenset[str] = frozenset({"cosmic_ray", "hot_pixel", "artifact"})

#: Catalog flag bit set on `NOT_CELESTIAL` detections (bits up to 0x4000 are photometry's).
FLAG_NOT_CELESTIAL = 0x8000

#: Catalog column holding each class's probability.
PROBABILITY_COLUMNS: tuple[str, ...] = tuple(f"p_{name}" for name in CLASSES)
