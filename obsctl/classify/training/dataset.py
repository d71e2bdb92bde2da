"""Labelled training and test cutouts rendered by the simulators and measured by the pipeline.

Each labelled frame (`obsctl.simulators.labelled.render_labelled_frame`) goes through the same
detection and measurement as a real frame (`obsctl.processing.photometry.measure_sources`,
the photometry stage's defaults), then through `obsctl.classify.cutouts.model_inputs`. A
detection's true class is the label of its cutout's centre pixel. So the model learns from
exactly what the stage will show it, detection limit and background subtraction included.

Training and validation sets are *cleaned*: detections on sky (noise peaks, `LABEL_NONE`)
and where objects of different kinds put comparable light (`LABEL_CONFLICT`) are left out.
The held-out test set is not (``clean=False``): every detection is kept; one where kinds
overlap gets the kind putting the most light at its centre (`LabelledFrame.dominant`), and a
noise peak gets the label `NOISE`, which is no class of the model: the metrics leave noise
peaks out of F1 and report what the model calls them
(`obsctl.classify.training.evaluate.quality_report`). A noise peak is no star, galaxy or
artifact, but nor is it something the model was asked to name, and at S/N > 20 there are
hardly any.

Training frames use seeds `TRAIN_SEEDS`, validation `VALIDATION_SEEDS` and the held-out test
set `TEST_SEEDS`: disjoint ranges.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from obsctl.classify.cutouts import model_inputs
from obsctl.classify.labels import CLASSES
from obsctl.processing.photometry import measure_sources
from obsctl.simulators.labelled import (
    LABEL_COSMIC_RAY,
    LABEL_HOT_PIXEL,
    LABEL_NONE,
    render_labelled_frame,
)

__all__ = [
    "NOISE",
    "TEST_SEEDS",
    "TRAIN_SEEDS",
    "VALIDATION_SEEDS",
    "LabelledSet",
    "generate",
    "labelled_samples",
]

log = logging.getLogger(__name__)

TRAIN_SEEDS = range(1500)
VALIDATION_SEEDS = range(50_000, 50_080)
TEST_SEEDS = range(100_000, 100_080)
#: Every this many frames has no hot-pixel map (no master dark): its hot pixels are
#: labelled cosmic rays, which is all a model can tell without the map.
NO_MAP_EVERY = 4
#: Label of a noise peak in an uncleaned set (not a class of the model).
NOISE = -1


@dataclass(frozen=True)
class LabelledSet:
    """Model inputs with their truth.

    Attributes
    ----------
    cutouts : numpy.ndarray of float32
        ``[N, 3, 11, 11]`` (see `obsctl.classify.cutouts`).
    features : numpy.ndarray of float32
        ``[N, 4]``.
    labels : numpy.ndarray of int64
        Index into `obsctl.classify.labels.CLASSES`; `NOISE` for noise peaks (uncleaned sets).
    snr : numpy.ndarray of float64
        Measured main-aperture S/N of the detection.
    galaxy_re_fwhm : numpy.ndarray of float32
        Galaxies' half-light radius in PSF FWHM (NaN for other classes).
    frame_seed : numpy.ndarray of int64
        Seed of the frame each detection came from.
    """

    cutouts: NDArray[np.float32]
    features: NDArray[np.float32]
    labels: NDArray[np.int64]
    snr: NDArray[np.float64]
    galaxy_re_fwhm: NDArray[np.float32]
    frame_seed: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.labels.size)

    def counts(self) -> dict[str, int]:
        """Return the number of samples per class name."""
        return {name: int(np.count_nonzero(self.labels == i)) for i, name in enumerate(CLASSES)}


def labelled_samples(seed: int, *, clean: bool = True) -> LabelledSet:
    """Render one labelled frame, detect and measure it, and return its labelled inputs.

    Parameters
    ----------
    seed : int
        Frame seed.
    clean : bool, optional
        Leave out noise peaks and detections where kinds overlap (training); else keep every
        detection (testing).

    Returns
    -------
    LabelledSet
        One entry per detection with a single true class (every detection if not `clean`).
    """
    frame = render_labelled_frame(seed)
    catalog, info = measure_sources(
        frame.image,
        gain_e_per_adu=1.0,
        read_noise_e=frame.read_noise_e,
        saturation_adu=frame.saturation_e,
    )
    with_map = seed % NO_MAP_EVERY != NO_MAP_EVERY - 1
    cutouts, features, cy, cx = model_inputs(
        frame.image,
        catalog,
        rms_adu=info.rms_adu,
        fwhm_px=info.fwhm_px,
        hot_map=frame.hot_map if with_map else None,
    )
    labels = (frame.labels if clean else frame.dominant)[cy, cx].astype(np.int64)
    if not with_map:
        labels[labels == LABEL_HOT_PIXEL] = LABEL_COSMIC_RAY
    keep = labels >= 0 if clean else np.ones(labels.size, dtype=bool)
    labels[labels == LABEL_NONE] = NOISE
    return LabelledSet(
        cutouts=cutouts[keep],
        features=features[keep],
        labels=labels[keep],
        snr=np.asarray(catalog["snr"], dtype=np.float64)[keep],
        galaxy_re_fwhm=frame.galaxy_re_fwhm[cy, cx][keep],
        frame_seed=np.full(int(keep.sum()), seed, dtype=np.int64),
    )


def generate(seeds: Iterable[int], *, clean: bool = True, workers: int = 1) -> LabelledSet:
    """Return the labelled samples of many frames, concatenated in seed order.

    Parameters
    ----------
    seeds : iterable of int
        Frame seeds.
    clean : bool, optional
        See `labelled_samples`.
    workers : int, optional
        Processes rendering frames (the result does not depend on it).

    Returns
    -------
    LabelledSet
        All samples.
    """
    todo = [int(seed) for seed in seeds]
    if workers > 1 and len(todo) > 1:
        import functools
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            parts = list(
                pool.map(functools.partial(labelled_samples, clean=clean), todo, chunksize=8)
            )
    else:
        parts = [labelled_samples(seed, clean=clean) for seed in todo]
    if not parts:
        raise ValueError("no seeds given")
    return LabelledSet(
        cutouts=np.concatenate([p.cutouts for p in parts]),
        features=np.concatenate([p.features for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        snr=np.concatenate([p.snr for p in parts]),
        galaxy_re_fwhm=np.concatenate([p.galaxy_re_fwhm for p in parts]),
        frame_seed=np.concatenate([p.frame_seed for p in parts]),
    )
