"""Train the source classifier, export it to ONNX and write its model card (``train`` extra).

``obsctl model train`` calls `train_model`. Training is deterministic: fixed seeds, one
thread, ``torch.use_deterministic_algorithms``; the same command on the same software gives
the same file (the card records its sha256). The shipped model is this function's output.

Recipe: labelled cutouts from `obsctl.classify.training.dataset` (`TRAIN_SEEDS` frames), a small CNN
(two 3 x 3 convolutions, 16 and 32 channels, a 2 x 2 max-pool between, then a 48-unit dense
layer that also sees the four features), cross-entropy with class weights ~ frequency^-1/4,
the eight flips and right-angle rotations as augmentation, AdamW with a cosine schedule;
temperature scaling on `VALIDATION_SEEDS` frames calibrates the probabilities and is folded
into the exported graph, with a prior correction (`PRIOR_CORRECTION`) for the classes the
synthetic frames hold far more of than real ones; metrics come from the exported ONNX file
run by onnxruntime on the held-out `TEST_SEEDS` frames, uncleaned (every detection, noise
peaks reported apart), and on their first `QUICK_TEST_FRAMES`, which the test suite re-runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from obsctl.classify.cutouts import (
    CONTEXT_BIN,
    CUTOUT_SIZE,
    INPUT_SPEC_VERSION,
    N_CHANNELS,
    N_FEATURES,
)
from obsctl.classify.labels import CLASSES
from obsctl.classify.model import MODEL_CARD, SHIPPED_MODEL, SourceClassifier
from obsctl.classify.training.dataset import (
    NO_MAP_EVERY,
    TEST_SEEDS,
    TRAIN_SEEDS,
    VALIDATION_SEEDS,
    LabelledSet,
    generate,
)
from obsctl.classify.training.evaluate import quality_report
from obsctl.classify.training.onnx_export import export_onnx

__all__ = ["MODEL_VERSION", "PRIOR_CORRECTION", "QUICK_TEST_FRAMES", "train_model"]

log = logging.getLogger(__name__)

MODEL_VERSION = "1.1.0"
#: Factors on each class's probability (then renormalised) in the exported graph: a prior
#: correction (Saerens et al. 2002) for a class far more common in the training frames than
#: in real ones. A labelled frame holds 14 cosmic rays per 65k pixels, and its hot pixels are
#: cosmic rays when it has no hot-pixel map; a real 2-minute exposure holds a few per
#: megapixel. On the real DSLR frame the uncorrected model calls 1 % of the faint, crowded
#: detections cosmic rays (by their sharpness, stars); halving the prior leaves the held-out
#: metrics unchanged.
PRIOR_CORRECTION: dict[str, float] = {"cosmic_ray": 0.5}
#: The held-out frames the test suite re-evaluates (the first of `TEST_SEEDS`).
QUICK_TEST_FRAMES = 20
_EPOCHS = 40
# Class weights ~ frequency^-1/4: rarer classes count more, but not so much that bright stars
# of distorted PSFs become galaxies (1/sqrt cost galaxy precision on the uncleaned set).
_CLASS_WEIGHT_POWER = 0.25
_BATCH = 256
_LR = 3e-3


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _network() -> Any:
    import torch
    from torch import nn

    class SourceNet(nn.Module):  # type: ignore[misc]  # torch is Any to mypy (extra)
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(
                nn.Conv2d(N_CHANNELS, 16, 3),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1),
                nn.ReLU(),
            )
            side = (CUTOUT_SIZE - 2) // 2
            self.head = nn.Sequential(
                nn.Linear(32 * side * side + N_FEATURES, 48),
                nn.ReLU(),
                nn.Linear(48, len(CLASSES)),
            )

        def forward(self, cutouts: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
            x = self.conv(cutouts).flatten(1)
            logits: torch.Tensor = self.head(torch.cat([x, features], dim=1))
            return logits

    return SourceNet()


def _augment(cutouts: Any, generator: Any) -> Any:
    """Apply one of the eight flips / right-angle rotations to each sample."""
    import torch

    k = int(torch.randint(0, 4, (1,), generator=generator))
    out = torch.rot90(cutouts, k, dims=(2, 3))
    if bool(torch.randint(0, 2, (1,), generator=generator)):
        out = torch.flip(out, dims=(3,))
    return out


def _fit(train: LabelledSet, seed: int) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = _network()
    x = torch.from_numpy(train.cutouts)
    f = torch.from_numpy(train.features)
    y = torch.from_numpy(train.labels)
    counts = np.bincount(train.labels, minlength=len(CLASSES)).astype(np.float64)
    weights = 1.0 / np.maximum(counts, 1.0) ** _CLASS_WEIGHT_POWER
    weights *= len(CLASSES) / weights.sum()
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    optimiser = torch.optim.AdamW(net.parameters(), lr=_LR, weight_decay=1e-4)
    steps = _EPOCHS * math.ceil(len(train) / _BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=_LR, total_steps=steps)
    net.train()
    for epoch in range(_EPOCHS):
        order = torch.randperm(len(train), generator=generator)
        total = 0.0
        for start in range(0, len(train), _BATCH):
            idx = order[start : start + _BATCH]
            optimiser.zero_grad()
            loss = loss_fn(net(_augment(x[idx], generator), f[idx]), y[idx])
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        log.info("epoch %d: loss %.4f", epoch + 1, total / len(train))
    net.eval()
    return net


def _temperature(net: Any, valid: LabelledSet) -> float:
    """Return the softmax temperature minimising the validation log-loss (grid search)."""
    import torch

    with torch.no_grad():
        logits = net(torch.from_numpy(valid.cutouts), torch.from_numpy(valid.features))
    y = torch.from_numpy(valid.labels)
    best, best_t = math.inf, 1.0
    for t in np.round(np.arange(0.5, 3.001, 0.05), 2):
        nll = float(torch.nn.functional.cross_entropy(logits / float(t), y))
        if nll < best:
            best, best_t = nll, float(t)
    return best_t


def _export(net: Any, temperature: float, path: Path) -> None:
    import torch
    from torch import nn

    log_prior = torch.tensor(
        [math.log(PRIOR_CORRECTION.get(name, 1.0)) for name in CLASSES], dtype=torch.float32
    )

    class Calibrated(nn.Module):  # type: ignore[misc]  # torch is Any to mypy (extra)
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, cutouts: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
            logits = self.net(cutouts, features) / temperature + log_prior
            return torch.softmax(logits, dim=1)

    example = (
        torch.zeros(2, N_CHANNELS, CUTOUT_SIZE, CUTOUT_SIZE),
        torch.zeros(2, N_FEATURES),
    )
    export_onnx(
        Calibrated().eval(),
        example,
        path,
        output="probabilities",
        producer="obsctl model train",
        version=MODEL_VERSION,
        doc="obsctl source classifier: " + ", ".join(CLASSES),
        metadata=(
            ("classes", ",".join(CLASSES)),
            ("version", MODEL_VERSION),
            ("input_spec", str(INPUT_SPEC_VERSION)),
        ),
    )


def train_model(out_dir: str | Path | None = None, *, seed: int = 0) -> dict[str, Any]:
    """Generate the data, train, calibrate, export and evaluate; write model and card.

    Parameters
    ----------
    out_dir : str or pathlib.Path, optional
        Folder for ``sources.onnx`` and ``model_card.json``; by default the package's own
        (what ships).
    seed : int, optional
        Seed of the weight initialisation and batch order (the data seeds are fixed).

    Returns
    -------
    dict
        The model card.
    """
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    folder = Path(out_dir) if out_dir is not None else SHIPPED_MODEL.parent
    model_path = folder / SHIPPED_MODEL.name
    card_path = folder / MODEL_CARD.name

    start = time.perf_counter()
    workers = max(1, min(4, os.cpu_count() or 1))
    train = generate(TRAIN_SEEDS, workers=workers)
    valid = generate(VALIDATION_SEEDS, workers=workers)
    test = generate(TEST_SEEDS, clean=False, workers=workers)
    data_s = time.perf_counter() - start
    log.info(
        "data: %d train, %d validation, %d test samples in %.1f s",
        len(train),
        len(valid),
        len(test),
        data_s,
    )

    start = time.perf_counter()
    net = _fit(train, seed)
    temperature = _temperature(net, valid)
    fit_s = time.perf_counter() - start
    _export(net, temperature, model_path)

    classifier = SourceClassifier(model_path)
    probabilities = classifier.predict(test.cutouts, test.features)
    report = quality_report(probabilities, test.labels, test.snr, test.galaxy_re_fwhm)
    quick_seeds = TEST_SEEDS[:QUICK_TEST_FRAMES]
    quick = np.isin(test.frame_seed, np.asarray(quick_seeds))
    quick_report = quality_report(
        probabilities[quick], test.labels[quick], test.snr[quick], test.galaxy_re_fwhm[quick]
    )
    card: dict[str, Any] = {
        "name": "obsctl source classifier",
        "version": MODEL_VERSION,
        "file": model_path.name,
        "sha256": _sha256(model_path),
        "size_bytes": model_path.stat().st_size,
        "classes": list(CLASSES),
        "input_spec": {
            "version": INPUT_SPEC_VERSION,
            "inputs": {
                "cutouts": ["batch", N_CHANNELS, CUTOUT_SIZE, CUTOUT_SIZE],
                "features": ["batch", N_FEATURES],
            },
            "output": {"probabilities": ["batch", len(CLASSES)]},
            "channels": [
                "11x11 pixels around the centre, (pixel - local background) / p, clipped to +-3",
                f"33x33 pixels averaged in {CONTEXT_BIN}x{CONTEXT_BIN} blocks, same normalisation",
                "hot-pixel map of the master dark (1 = hot); zeros without a master dark",
            ],
            "features": [
                "log10(max(p / background_rms, 1))",
                "frame FWHM (px) / 4",
                "1 if photometry flagged the source saturated",
                "log10(max(snr, 1)) / 2",
            ],
            "centre": "brightest pixel within 1 px of the rounded catalog (x, y)",
            "p": "centre pixel minus the local background, at least background_rms (ADU)",
            "definition": "obsctl.classify.cutouts.model_inputs",
        },
        "calibration": {
            "method": "temperature scaling on the validation frames, then a prior correction",
            "temperature": temperature,
            "prior_correction": PRIOR_CORRECTION,
        },
        "training": {
            "generator": (
                "obsctl.simulators.labelled.render_labelled_frame (256x256 plus, in a third, "
                "an unexposed band; gain 1; crowded fields and groups of bright stars, Moffat "
                "beta 2-5, distorted PSFs in half, FWHM 1.4-5 px, galaxies re 1-8 FWHM, sky "
                "gradients, a third Bayer green planes)"
            ),
            "measurement": "obsctl.processing.photometry.measure_sources defaults",
            "train_frame_seeds": [TRAIN_SEEDS.start, TRAIN_SEEDS.stop],
            "validation_frame_seeds": [VALIDATION_SEEDS.start, VALIDATION_SEEDS.stop],
            "test_frame_seeds": [TEST_SEEDS.start, TEST_SEEDS.stop],
            "test_set": (
                "uncleaned: every detection, labelled with the kind putting the most light at "
                "its cutout's centre; noise peaks (no object there) are left out of the "
                "metrics and counted in metrics_test.noise_peaks"
            ),
            "frames_without_hot_pixel_map": (
                f"every {NO_MAP_EVERY}th seed (hot pixels labelled cosmic_ray)"
            ),
            "train_samples": train.counts(),
            "validation_samples": len(valid),
            "test_samples": test.counts(),
            "seed": seed,
            "epochs": _EPOCHS,
            "batch": _BATCH,
            "learning_rate": _LR,
            "class_weight_power": _CLASS_WEIGHT_POWER,
            "torch": torch.__version__,
            "data_seconds": round(data_s, 1),
            "fit_seconds": round(fit_s, 1),
        },
        "metrics_test": report,
        "metrics_test_quick": {
            "frame_seeds": [quick_seeds.start, quick_seeds.stop],
            "n": quick_report["n"],
            "macro_f1_snr_gt_20": quick_report["macro_f1_snr_gt_20"],
            "accuracy": quick_report["accuracy"],
            "cosmic_ray_recall_snr_gt_10": quick_report["cosmic_ray_recall_snr_gt_10"],
        },
    }
    card_path.write_text(json.dumps(card, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return card
