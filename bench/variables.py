"""The variable-star classifier: its figures, and the cost of features and inference.

Prints, from the shipped model card, the macro-F1 (curves of >= 50 points, held-out
population) of the two model families trained side by side, the shipped model's confusion
matrix and its macro-F1 against the number of points; then times, on one thread, the
classification of 1000 feature rows (median of repeats) and the features of one light curve
(period search plus features, median over a small population), and what the monitor's
schedule of period searches (`PERIOD_RESEARCH_GROWTH`) makes of it per frame.

    python bench/variables.py [--repeat 20] [--curves 22]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from obsctl.simulators.population import population
from obsctl.timeseries.classifier import VariableClassifier
from obsctl.timeseries.features import (
    N_FEATURES,
    light_curve_features,
    search_light_curve_period,
)
from obsctl.timeseries.monitor import PERIOD_RESEARCH_GROWTH


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--curves", type=int, default=22)
    args = parser.parse_args()

    clf = VariableClassifier(threads=1)
    card = clf.card
    classes = clf.classes
    print(f"period search: {card['period_search']}; shipped family: {card['model_family']}")
    print("\nmacro-F1 (>= 50 points, held-out population)")
    families = list(card["comparison"])
    print(f"{'class':>12} " + " ".join(f"{f:>24}" for f in families))
    for c in classes:
        row = " ".join(f"{card['comparison'][f]['per_class_f1'][c]:>24.3f}" for f in families)
        print(f"{c:>12} {row}")
    macro = " ".join(f"{card['comparison'][f]['macro_f1']:>24.3f}" for f in families)
    print(f"{'macro':>12} {macro}")

    print("\nconfusion matrix (rows truth, columns predicted)")
    print(" " * 10 + "".join(f"{c[:6]:>7}" for c in classes))
    for c, row in zip(classes, card["metrics"]["confusion_matrix"], strict=True):
        print(f"{c:>10}" + "".join(f"{v:>7d}" for v in row))

    print("\nmacro-F1 against points (each held-out curve cut to its first n)")
    for n, f1 in card["metrics"]["f1_vs_points"].items():
        print(f"  {n:>4} points: {f1:.3f}")

    curves = population(args.curves, seed=9090, min_points=50)
    search_s, feature_s, rows = [], [], []
    for c in curves:
        t0 = time.perf_counter()
        period = search_light_curve_period(c.t, c.mag, c.err)
        t1 = time.perf_counter()
        rows.append(light_curve_features(c.t, c.mag, c.err, period))
        t2 = time.perf_counter()
        search_s.append(t1 - t0)
        feature_s.append(t2 - t1)
    x = np.resize(np.stack(rows), (1000, N_FEATURES))
    clf.classify(x)  # warm-up
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        clf.classify(x)
        times.append(time.perf_counter() - t0)
    points = statistics.median(c.t.size for c in curves)
    print(f"\nclassify 1000 rows, one thread: {1e3 * statistics.median(times):.1f} ms (median)")
    print(
        f"features of one curve (median {points:.0f} points): period search "
        f"{1e3 * statistics.median(search_s):.0f} ms + features "
        f"{1e3 * statistics.median(feature_s):.1f} ms (medians; max total "
        f"{1e3 * max(a + b for a, b in zip(search_s, feature_s, strict=True)):.0f} ms)"
    )
    # A target gaining one point a frame is searched again once it grew by the fraction:
    # at n points, once every PERIOD_RESEARCH_GROWTH * n frames.
    searches, last = 0, 0
    for n in range(20, 301):  # from periodogram_min_points (20) to 300 points
        if last == 0 or n >= last * (1.0 + PERIOD_RESEARCH_GROWTH):
            searches, last = searches + 1, n
    every = PERIOD_RESEARCH_GROWTH * points
    per_frame_s = 1000 * statistics.median(search_s) / every
    print(
        f"period searches from 20 to 300 points, one point a frame: {searches} of 281 frames; "
        f"at {points:.0f} points one every {every:.0f} frames: 1,000 such targets cost "
        f"{per_frame_s:.1f} s of searches a frame (every frame: "
        f"{1000 * statistics.median(search_s):.0f} s)"
    )


if __name__ == "__main__":
    main()
