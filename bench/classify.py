"""Source classification: inference time for 5000 detections, and L.A.Cosmic for comparison.

The camera simulator renders one 4096x4096 light frame (dense star field, cosmic rays on);
bias is removed with the simulator's known bias and column pattern, and the photometry
stage measures it. Then, with onnxruntime on one thread (``intra_op_num_threads=1``):

1. ``inference``: `SourceClassifier.predict` on exactly 5000 detections of the frame (the
   catalog's first 5000, repeated if it holds fewer) in one batch: the issue's budget,
   at most 50 ms.
2. ``inputs``: `model_inputs` (cutouts and features) for the same 5000 detections.
3. ``stage``: the whole `OnnxClassify.process` on the frame (all its detections: inputs,
   inference, cosmic-ray mask, star-only metrics).
4. ``L.A.Cosmic``: ``astroscrappy.detect_cosmics`` (the full-frame Laplacian edge method,
   default settings and the frame's gain, read noise and saturation) on the same pixels,
   from the ``bench`` extra; skipped when it is not installed.

Medians over N runs (after a warm-up). Nothing is asserted.

Usage: ``python bench/classify.py [--runs N] [--lacosmic-runs N] [--size PX]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from astropy.io import fits

from obsctl.classify.cutouts import model_inputs
from obsctl.classify.model import SourceClassifier
from obsctl.frame import Frame
from obsctl.pipeline.classify import OnnxClassify
from obsctl.pipeline.photometry import SepPhotometry
from obsctl.simulators import scenes
from obsctl.simulators.render import column_bias, render_exposure

N_DETECTIONS = 5000


def _median_s(fn: Callable[[], Any], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _frame(size: int) -> Frame:
    sensor = scenes.sensor(
        width_px=size, height_px=size, dark_current_e_s=0.002, hot_pixel_fraction=2e-5,
        cosmic_rate_cm2_s=2.0, seed=3,
    )  # fmt: skip
    scene = scenes.sky(
        ra_deg=120.0, dec_deg=30.0, pixel_scale_arcsec=1.2, moffat_beta=3.5,
        catalog_seed=3, density_per_deg2=25000.0, mag_limit=18.5,
    )  # fmt: skip
    exposure = scenes.exposure(sensor, exposure_s=120.0)
    result = render_exposure(sensor, exposure, scene)
    bias = sensor.bias_adu + exposure.offset * sensor.adu_per_offset
    image = result.image.astype(np.float32) - np.float32(bias) - column_bias(sensor)[None, :size]
    print(f"rendered {size}x{size}: {len(result.stars)} stars, {result.cosmic_count} cosmic rays")
    header = fits.Header({"EXPTIME": exposure.exposure_s, "BUNIT": "ADU", "EGAIN": 1.0})
    return Frame(data=np.ascontiguousarray(image), header=header, exposure_id=1)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--lacosmic-runs", type=int, default=2)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores; onnxruntime on 1 thread")

    frame = SepPhotometry(read_noise_e=3.0, saturation_adu=45000.0).process(_frame(args.size))
    sources = frame.sources
    assert sources is not None
    print(f"detections: {len(sources)}")
    take = np.resize(np.arange(len(sources)), N_DETECTIONS)
    subset = sources[take]
    rms, fwhm = frame.background_rms_adu, frame.fwhm_px

    classifier = SourceClassifier(threads=1)
    cutouts, features, _, _ = model_inputs(frame.data, subset, rms_adu=rms, fwhm_px=fwhm)
    t_infer = _median_s(lambda: classifier.predict(cutouts, features), args.runs)
    t_inputs = _median_s(
        lambda: model_inputs(frame.data, subset, rms_adu=rms, fwhm_px=fwhm), args.runs
    )
    stage = OnnxClassify(threads=1)
    t_stage = _median_s(lambda: stage.process(frame), max(3, args.runs // 3))
    out = stage.process(frame)
    counts = {k: int(v) for k, v in out.metrics.items() if k.startswith("n_")}
    print(f"classes on the frame: {counts}")
    print(f"inference, {N_DETECTIONS} detections: {t_infer * 1e3:.1f} ms (budget 50 ms)")
    print(f"inputs (cutouts + features), {N_DETECTIONS}: {t_inputs * 1e3:.1f} ms")
    print(f"classify stage, all {len(sources)} detections: {t_stage * 1e3:.1f} ms")

    try:
        import astroscrappy
    except ImportError:
        print("L.A.Cosmic: astroscrappy not installed (pip install -e .[bench]); skipped")
        return
    data = np.asarray(frame.data, dtype=np.float32)
    t_lac = _median_s(
        lambda: astroscrappy.detect_cosmics(
            data, gain=1.0, readnoise=3.0, satlevel=45000.0, sepmed=True
        ),
        args.lacosmic_runs,
    )
    print(
        f"L.A.Cosmic (astroscrappy {astroscrappy.__version__}) full frame: {t_lac:.2f} s; "
        f"classify stage is {t_lac / t_stage:.0f}x faster"
    )


if __name__ == "__main__":
    main()
