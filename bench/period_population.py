"""Period accuracy on the simulated population, against a one-term Lomb-Scargle periodogram.

Draws the population's periodic classes (`obsctl.simulators.population`, 40 curves each of at
least 50 points, seed 777 unless told) and counts, per class, the periods found within 0.1 %
of the simulator's, at half or twice it, elsewhere, and not determined
(`obsctl.timeseries.periods.period_is_determined`). Three columns: the search alone; the
period the monitor reports (undetermined ones withheld, a curve the shipped classifier calls
a contact binary at twice the search's period when its model has one minimum,
`obsctl.timeseries.monitor.class_period`); and the highest peak of astropy's one-term
`LombScargle` over the same band, the alternative. Truth comes from the simulator's star.
Also: the same figures for curves spanning at least three of their periods (the others hold
too little of a cycle for 0.1 %), and the median time of one search.

    python bench/period_population.py [--per-class 40] [--seed 777] [--workers 2]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from astropy.timeseries import LombScargle

from obsctl.simulators.population import population
from obsctl.timeseries.classifier import VariableClassifier
from obsctl.timeseries.features import (
    MIN_SEARCH_PERIOD_D,
    light_curve_features,
    search_light_curve_period,
)
from obsctl.timeseries.monitor import class_period
from obsctl.timeseries.periods import period_is_determined

PERIODIC = ("rrab", "rrc", "cepheid", "dscuti", "ea", "ew", "transit", "lpv")
KINDS = ("exact", "P/2", "2P", "other", "undetermined")


def _kind(found: float | None, truth: float) -> str:
    if found is None:
        return "undetermined"
    for name, factor in (("exact", 1.0), ("P/2", 0.5), ("2P", 2.0)):
        if abs(found / (factor * truth) - 1.0) < 1e-3:
            return name
    return "other"


def _one(curve: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[Any, ...]:
    t, mag, err = curve
    t0 = time.perf_counter()
    result = search_light_curve_period(t, mag, err)
    seconds = time.perf_counter() - t0
    features = light_curve_features(t, mag, err, result)
    span = float(np.ptp(t))
    ls = LombScargle(t, mag, err)
    freq, power = ls.autopower(
        minimum_frequency=1.0 / span, maximum_frequency=1.0 / MIN_SEARCH_PERIOD_D
    )
    return result, features, 1.0 / float(freq[np.argmax(power)]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    curves = population(args.per_class * len(PERIODIC), seed=args.seed, classes=PERIODIC,
                        min_points=50)  # fmt: skip
    with ProcessPoolExecutor(args.workers) as pool:
        out = list(pool.map(_one, [(c.t, c.mag, c.err) for c in curves], chunksize=4))
    clf = VariableClassifier(threads=1)
    labels, _, _ = clf.classify(np.stack([o[1] for o in out]))

    columns = ("search", "reported", "one-term LS")
    counts: dict[str, dict[str, collections.Counter[str]]] = {
        k: collections.defaultdict(collections.Counter) for k in columns
    }
    many: dict[str, collections.Counter[str]] = {k: collections.Counter() for k in columns}
    for c, (result, _, ls_period, _), label in zip(curves, out, labels, strict=True):
        truth = c.star.period_d
        searched = result.period_d if result is not None else None
        reported = None
        if result is not None and period_is_determined(result):
            reported = class_period(str(label), result) or result.period_d
        for col, found in zip(columns, (searched, reported, ls_period), strict=True):
            kind = _kind(found, truth)
            counts[col][c.label][kind] += 1
            if np.ptp(c.t) >= 3.0 * truth:
                many[col]["n"] += 1
                many[col]["exact"] += kind == "exact"

    for col in columns:
        print(f"\n{col}: periods within 0.1 % of the truth (of {args.per_class} a class)")
        print(f"{'class':>10} " + " ".join(f"{k:>13}" for k in KINDS))
        for cls in PERIODIC:
            print(f"{cls:>10} " + " ".join(f"{counts[col][cls][k]:>13d}" for k in KINDS))
        total: collections.Counter[str] = collections.Counter()
        for cls in PERIODIC:
            total.update(counts[col][cls])
        n = sum(total.values())
        determined = n - total["undetermined"]
        print(
            f"{'all':>10} within 0.1 %: {total['exact']}/{n} = {total['exact'] / n:.1%}"
            + (
                f"; of the periods reported: {total['exact']}/{determined} = "
                f"{total['exact'] / max(determined, 1):.1%}"
                if total["undetermined"]
                else ""
            )
            + f"; spanning >= 3 periods: {many[col]['exact']}/{many[col]['n']} = "
            f"{many[col]['exact'] / max(many[col]['n'], 1):.1%}"
        )
    seconds = [o[3] for o in out]
    points = statistics.median(c.t.size for c in curves)
    print(
        f"\none search: median {1e3 * statistics.median(seconds):.0f} ms, max "
        f"{1e3 * max(seconds):.0f} ms (median {points:.0f} points; {args.workers} workers)"
    )


if __name__ == "__main__":
    main()
