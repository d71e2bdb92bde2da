"""The shipped classifier on frames of real observatories, judged by SExtractor-like criteria.

Nothing here comes from the classifier's training (no real frame is trained on): a source is
a star by the criteria SExtractor users apply (bright, not saturated, the frame's PSF size),
and the model must agree, whether the star is alone or in a close group. The frames go
through the pipeline's own calibration and photometry stages, as ``obsctl reduce`` runs them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from obsctl.config import default_config_path, parse_config, read_toml
from obsctl.frame import Frame
from obsctl.pipeline.classify import OnnxClassify
from obsctl.pipeline.stages import build_stages
from obsctl.pipeline.worker import load_frame
from obsctl.processing.photometry import (
    FLAG_EDGE,
    FLAG_SATURATED,
    FLAG_SHAPE_FAILED,
    FLAG_SHARP,
)

REALFRAMES = Path(__file__).resolve().parents[1] / "data" / "realframes"
SAAO = REALFRAMES / "saao_a8280271.fits"  # CCD, FWHM ~8 px (binned for the model), cosmic rays
POCS = REALFRAMES / "pocs_solved.fits.fz"  # DSLR colour, FWHM ~2.5 px, crowded, undersampled

# Flags that disqualify a SExtractor-like star; blended and crowded ones are kept (groups).
_NOT_A_CLEAN_STAR = FLAG_SATURATED | FLAG_EDGE | FLAG_SHAPE_FAILED | FLAG_SHARP


@pytest.fixture(scope="module")
def classified(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Frame, Any]]:
    """Each frame calibrated and measured by the pipeline, then classified by the model."""
    folder = tmp_path_factory.mktemp("realframes")
    config = read_toml(default_config_path())
    config.setdefault("pipeline", {})["stages"] = ["calibrate", "photometry"]
    stages = build_stages(parse_config(config, path=folder / "obsctl.toml"), folder / "data")
    classify = OnnxClassify()
    out = {}
    for path in (SAAO, POCS):
        frame = load_frame(path)
        for stage, _ in stages:
            frame = stage.process(frame)
        out[path.name] = (frame, classify.process(frame).sources)
    return out


def _star_like(catalog: Any, fwhm_px: float) -> tuple[np.ndarray, np.ndarray]:
    """SExtractor-like stars (S/N > 50, PSF-sized, unsaturated), and those in close groups."""
    clean = (np.asarray(catalog["flags"]) & _NOT_A_CLEAN_STAR) == 0
    size = np.abs(np.asarray(catalog["fwhm_px"]) / fwhm_px - 1.0) < 0.3
    star = (np.asarray(catalog["snr"]) > 50) & clean & size
    xy = np.column_stack([catalog["x"], catalog["y"]])
    distance = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(distance, np.inf)
    return star, star & (distance.min(axis=1) < 3.0 * fwhm_px)


def test_panoptes_stars_alone_and_in_groups_are_stars(classified) -> None:
    frame, catalog = classified[POCS.name]
    star, grouped = _star_like(catalog, frame.fwhm_px)
    assert star.sum() > 100 and grouped.sum() > 50
    called = catalog["source_class"]
    assert np.mean(called[star] == "star") >= 0.95, Counter(called[star].tolist())
    assert np.mean(called[grouped] == "star") >= 0.95, Counter(called[grouped].tolist())
    # A 2-minute exposure holds a few cosmic rays, not one percent of 1600 detections.
    counts = Counter(called.tolist())
    assert counts["cosmic_ray"] < 0.01 * len(catalog)
    assert counts["star"] > 0.9 * len(catalog)
    # Bright sources of this Milky Way field at 10"/px are stars, broad wings and all: neither
    # galaxies nor artifacts (the faint, crowded blends below S/N 30 are less clear-cut).
    bright = Counter(called[np.asarray(catalog["snr"]) > 50].tolist())
    assert bright["galaxy"] + bright["artifact"] < 0.03 * bright.total(), bright
    assert counts["artifact"] < 0.02 * len(catalog)


def test_saao_bright_stars_are_stars_and_sharp_hits_cosmic_rays(classified) -> None:
    frame, catalog = classified[SAAO.name]
    star, _ = _star_like(catalog, frame.fwhm_px)
    assert star.sum() >= 2
    assert set(catalog["source_class"][star]) == {"star"}
    sharp = (np.asarray(catalog["npix"]) < 40) & (np.asarray(catalog["snr"]) > 20)
    called = Counter(catalog["source_class"][sharp].tolist())
    assert called.most_common(1)[0][0] == "cosmic_ray", called
