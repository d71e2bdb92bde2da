"""Drift measurement: obsctl's Donuts projections against a 2-D FFT phase correlation.

Renders a reference and several shifted frames with the camera simulator at two sizes,
4096x4096 and 1504x1004 (raw uint16: bias with its column pattern, flat field, hot pixels,
one hot and one dead column, cosmic rays; the frames in a seeing 20 % worse than the
reference's), and measures each frame's shift against the reference with:

- obsctl: `DonutsReference` built once per reference, then `DonutsReference.shift` per frame;
- 2-D: a phase correlation (scipy.fft ``rfft2``/``irfft2`` in single precision, one core;
  scikit-image is not installed), the reference's transform computed once as well, the peak
  refined by a parabola through three points on each axis.

Truth is the simulator's: the median difference of the frames' star positions
(``RenderResult.stars``, matched by catalog id). Accuracy is given on the raw frames and on
the same frames calibrated with the simulator's own bias, column pattern and flat field,
since the fixed patterns of a raw frame are what a correlation must not lock onto. Times are
medians over repeats, per frame, with the reference's preparation excluded for both.

Prints medians and ratios; nothing is asserted.

Usage: ``python bench/drift.py [--repeats 7] [--frames 4]``
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from obsctl.acquisition.drift import DonutsReference, DriftMeasureError
from obsctl.simulators import scenes
from obsctl.simulators.render import RenderResult, column_bias, flat_response, render_exposure

SIZES = [(4096, 4096), (1504, 1004)]
SEEING = 3.0  # arcsec at 1 arcsec per pixel: 3 px FWHM in the reference
# (east, north) pointing offsets of the frames (arcsec = px at 1 arcsec/px): sub-pixel to ~20 px.
OFFSETS = [(0.35, -0.2), (2.6, 1.3), (-7.7, 4.45), (15.2, -19.6), (-0.8, 11.1), (21.0, 3.3)]


def sensor(width: int, height: int) -> Any:
    return scenes.sensor(
        width_px=width, height_px=height, dark_current_e_s=0.05, hot_pixel_fraction=2e-4,
        cosmic_rate_cm2_s=0.5, dead_columns=1, hot_columns=1, seed=5,
    )  # fmt: skip


def render(chip: Any, offset: tuple[float, float], seeing: float, seed: int) -> RenderResult:
    east, north = offset
    scene = scenes.sky(
        ra_deg=150.0 + east / 3600.0 / math.cos(math.radians(20.0)),
        dec_deg=20.0 + north / 3600.0,
        seeing_arcsec=seeing,
        catalog_seed=3,
    )
    return render_exposure(chip, scenes.exposure(chip, seed=seed), scene)


def calibrated(chip: Any, raw: NDArray[Any]) -> NDArray[np.float32]:
    """The raw frame less the simulator's bias and column pattern, over its flat field."""
    h, w = raw.shape
    level = np.float32(chip.bias_adu + 10 * chip.adu_per_offset)  # offset 10 (scenes.exposure)
    flat = flat_response(chip, x0=0, y0=0, width=w, height=h)
    return ((raw.astype(np.float32) - level - column_bias(chip)[None, :w]) / flat).astype(
        np.float32
    )


def truth(reference: RenderResult, frame: RenderResult) -> tuple[float, float]:
    _, i, j = np.intersect1d(reference.stars["id"], frame.stars["id"], return_indices=True)
    dx = frame.stars["x"][j] - reference.stars["x"][i]
    dy = frame.stars["y"][j] - reference.stars["y"][i]
    return float(np.median(dx)), float(np.median(dy))


class PhaseCorrelation:
    """A 2-D FFT phase correlation against a reference whose transform is kept."""

    def __init__(self, reference: NDArray[Any]) -> None:
        data = np.asarray(reference, dtype=np.float32)
        self.shape = data.shape
        self.conj = np.conj(scipy.fft.rfft2(data - data.mean()))

    def shift(self, frame: NDArray[Any]) -> tuple[float, float]:
        data = np.asarray(frame, dtype=np.float32)
        cross = scipy.fft.rfft2(data - data.mean()) * self.conj
        cross /= np.maximum(np.abs(cross), np.float32(1e-12))
        c = scipy.fft.irfft2(cross, s=self.shape)
        ky, kx = np.unravel_index(int(np.argmax(c)), c.shape)
        h, w = self.shape

        def vertex(a: float, b: float, d: float) -> float:
            curvature = a - 2.0 * b + d
            return 0.5 * (a - d) / curvature if curvature < 0.0 else 0.0

        dx = vertex(c[ky, (kx - 1) % w], c[ky, kx], c[ky, (kx + 1) % w])
        dy = vertex(c[(ky - 1) % h, kx], c[ky, kx], c[(ky + 1) % h, kx])
        # Lags past half the size are negative (circular correlation).
        sx = kx - w if kx > w // 2 else kx
        sy = ky - h if ky > h // 2 else ky
        return sx + dx, sy + dy


def median_s(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def errors(
    measure: Callable[[NDArray[Any]], tuple[float, float]],
    frames: list[NDArray[Any]],
    truths: list[tuple[float, float]],
) -> str:
    errs: list[float] = []
    failed = 0
    for frame, (tx, ty) in zip(frames, truths, strict=True):
        try:
            dx, dy = measure(frame)
        except DriftMeasureError:
            failed += 1
            continue
        errs += [dx - tx, dy - ty]
    if not errs:
        return f"all {failed} refused"
    e = np.abs(np.asarray(errs))
    text = f"max {e.max():.3f} px, rms {math.sqrt(float(np.mean(e**2))):.3f} px"
    return text + (f", {failed} refused" if failed else "")


def donuts_xy(reference: DonutsReference) -> Callable[[NDArray[Any]], tuple[float, float]]:
    def measure(frame: NDArray[Any]) -> tuple[float, float]:
        s = reference.shift(frame)
        return s.dx_px, s.dy_px

    return measure


def bench_size(width: int, height: int, n_frames: int, repeats: int) -> None:
    chip = sensor(width, height)
    t0 = time.perf_counter()
    ref = render(chip, (0.0, 0.0), SEEING, seed=1)
    shifted = [
        render(chip, offset, 1.2 * SEEING, seed=10 + k)
        for k, offset in enumerate(OFFSETS[:n_frames])
    ]
    print(
        f"\n{width}x{height}: {len(ref.stars)} stars, {ref.cosmic_count} cosmic rays in the "
        f"reference; rendered in {time.perf_counter() - t0:.1f} s"
    )
    truths = [truth(ref, f) for f in shifted]
    raw = [f.image for f in shifted]
    cal = [calibrated(chip, f.image) for f in shifted]
    ref_cal = calibrated(chip, ref.image)

    t_prep_d = median_s(lambda: DonutsReference(ref.image), max(1, repeats // 2))
    t_prep_p = median_s(lambda: PhaseCorrelation(ref.image), max(1, repeats // 2))
    donuts = DonutsReference(ref.image)
    phase = PhaseCorrelation(ref.image)
    t_d = statistics.median(median_s(lambda f=f: donuts.shift(f), repeats) for f in raw)
    t_p = statistics.median(median_s(lambda f=f: phase.shift(f), repeats) for f in raw)
    print(f"  reference prepared: donuts {1e3 * t_prep_d:.1f} ms, 2-D {1e3 * t_prep_p:.1f} ms")
    print(
        f"  shift() per frame, median: donuts {1e3 * t_d:.1f} ms, 2-D phase correlation "
        f"{1e3 * t_p:.1f} ms; 2-D / donuts = {t_p / t_d:.1f}"
    )
    print(f"  accuracy, raw frames ({len(raw)}):")
    print(f"    donuts: {errors(donuts_xy(donuts), raw, truths)}")
    print(f"    2-D:    {errors(phase.shift, raw, truths)}")
    print(f"  accuracy, calibrated frames ({len(cal)}):")
    print(f"    donuts: {errors(donuts_xy(DonutsReference(ref_cal)), cal, truths)}")
    print(f"    2-D:    {errors(PhaseCorrelation(ref_cal).shift, cal, truths)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--frames", type=int, default=4, help=f"at most {len(OFFSETS)}")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        f", numpy {np.__version__}, scipy {scipy.__version__} (scipy.fft on one worker)"
    )
    for width, height in SIZES:
        bench_size(width, height, min(args.frames, len(OFFSETS)), args.repeats)


if __name__ == "__main__":
    main()
