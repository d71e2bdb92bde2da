"""Period search: the one-term periodogram (`find_period`) against `search_period`.

Times each method per light curve (median over a simulated mix of ~100-point curves sampled
like a monitoring plan: two points a night over 60 nights, a fifth of the nights lost to
weather, 0.01 mag noise; `search_period` searches 0.05-300 d) and the fraction of periods
recovered within 0.1 % per shape, against the simulator's period. Prints figures and ratios;
asserts nothing.

Run: ``python bench/periods.py [n_curves]``
"""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict

import numpy as np

from obsctl.simulators.variables import VariableStar
from obsctl.timeseries.periods import search_period
from obsctl.timeseries.stats import find_period


def _times(rng: np.random.Generator, nights: int = 60, per_night: int = 2) -> np.ndarray:
    t: list[float] = []
    for night in range(nights):
        if rng.random() < 0.2:
            continue
        t += list(60000.0 + night + 0.05 + np.sort(rng.uniform(0.0, 1.0 / 3.0, per_night)))
    return np.array(t)


def _star(rng: np.random.Generator, kind: str) -> VariableStar:
    period = float(math.exp(rng.uniform(math.log(0.1), math.log(3.0))))
    epoch = float(60000.0 + rng.uniform(0.0, period))
    if kind == "sine":
        return VariableStar("s", "sine", 0, 0, 12, amplitude_mag=0.1, period_d=period,
                            epoch_mjd=epoch)  # fmt: skip
    if kind == "rrlyrae":
        return VariableStar("r", "rrlyrae", 0, 0, 12, amplitude_mag=0.6, period_d=period,
                            epoch_mjd=epoch)  # fmt: skip
    return VariableStar("e", "eclipsing", 0, 0, 12, amplitude_mag=0.5, period_d=period,
                        epoch_mjd=epoch, duration_d=0.12 * period)  # fmt: skip


def main(n_curves: int = 99) -> None:
    """Run the benchmark over `n_curves` curves (a third of each shape) and print figures."""
    # Warm up imports and caches so that the first curve's timing is like the others'.
    t = _times(np.random.default_rng(0))
    search_period(t, np.sin(t), np.full(t.size, 0.01))
    find_period(t, np.sin(t), np.full(t.size, 0.01))
    rng = np.random.default_rng(2026)
    kinds = ("sine", "rrlyrae", "eclipsing")
    times: dict[str, list[float]] = defaultdict(list)
    hits: dict[tuple[str, str], int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    n_points: list[int] = []
    methods: dict[tuple[str, str], int] = defaultdict(int)
    for i in range(n_curves):
        kind = kinds[i % len(kinds)]
        star = _star(rng, kind)
        t = _times(rng)
        mag = star.mag("V", t) + rng.normal(0.0, 0.01, t.size)
        err = np.full(t.size, 0.01)
        n_points.append(t.size)
        counts[kind] += 1
        t0 = time.perf_counter()
        old = find_period(t, mag, err).period_d
        times["find_period"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = search_period(t, mag, err, min_period_d=0.05, max_period_d=300.0)
        times["search_period"].append(time.perf_counter() - t0)
        times[f"search_period {kind}"].append(times["search_period"][-1])
        methods[(kind, result.method)] += 1
        for name, period in (("find_period", old), ("search_period", result.period_d)):
            hits[(name, kind)] += abs(period - star.period_d) / star.period_d < 1e-3
    print(f"{n_curves} curves, median {int(np.median(n_points))} points over 60 nights, "
          "true periods 0.1-3 d")  # fmt: skip
    old, new = (float(np.median(times[k])) for k in ("find_period", "search_period"))
    print(f"median time per curve: find_period {1e3 * old:.1f} ms, "
          f"search_period {1e3 * new:.1f} ms (x{new / old:.1f})")  # fmt: skip
    p90 = 1e3 * float(np.percentile(times["search_period"], 90))
    by_kind = ", ".join(f"{k} {1e3 * np.median(times[f'search_period {k}']):.1f}" for k in kinds)
    print(f"search_period: 90th percentile {p90:.1f} ms; median by shape (ms): {by_kind}")
    for kind in kinds:
        chosen = ", ".join(f"{m} {c}" for (k, m), c in sorted(methods.items()) if k == kind)
        print(f"  {kind}: methods chosen: {chosen}")
    for name in ("find_period", "search_period"):
        parts = [f"{k} {hits[(name, k)] / counts[k]:.0%}" for k in kinds]
        total = sum(hits[(name, k)] for k in kinds) / n_curves
        print(f"within 0.1 %: {name:14s} all {total:.0%}  ({', '.join(parts)})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 99)
