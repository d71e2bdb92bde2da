"""Moving-object linking: completeness by rate, chance tracks per field, time per field.

Simulates 4-frame fields (``obsctl.simulators.candidates.moving_field``: frames 4 minutes
apart, 30 s exposures, 40 asteroids at 1-60 arcsec/min, 300 bogus candidates and 20 static
transients per frame over a 30 arcmin field) and links each with
``obsctl.timeseries.moving.link_tracks`` at its defaults. Completeness counts the asteroids
detected on every frame whose track is exactly their detections, by rate; chance tracks are
counted in fields without asteroids, at the defaults and with every 3-detection track kept
(``max_chance_tracks=inf``). Prints figures; asserts nothing.

    python bench/moving.py [--fields 20] [--bogus 300]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from obsctl.simulators.candidates import moving_field
from obsctl.timeseries.moving import link_tracks

_RATE_BINS = ((1.0, 3.0), (3.0, 10.0), (10.0, 30.0), (30.0, 60.0))


def main(n_fields: int, n_bogus: int) -> None:
    """Run the benchmark over `n_fields` fields and print figures."""
    link_tracks(moving_field(0, n_bogus=n_bogus).detections)  # warm imports and caches
    found = dict.fromkeys(_RATE_BINS, 0)
    total = dict.fromkeys(_RATE_BINS, 0)
    times: list[float] = []
    per_frame: list[int] = []
    for seed in range(n_fields):
        field = moving_field(1000 + seed, n_bogus=n_bogus)
        per_frame.append(field.detections.size // field.frame_mjd.size)
        t0 = time.perf_counter()
        tracks = link_tracks(field.detections)
        times.append(time.perf_counter() - t0)
        linked = {frozenset(t.indices) for t in tracks}
        for k, asteroid in enumerate(field.asteroids):
            rows = frozenset(np.flatnonzero(field.source == k).tolist())
            if len(rows) < field.frame_mjd.size:
                continue
            rate_bin = next(b for b in _RATE_BINS if b[0] <= asteroid.rate_arcsec_min <= b[1])
            total[rate_bin] += 1
            found[rate_bin] += rows in linked
    print(f"{n_fields} fields of 4 frames, median {int(np.median(per_frame))} candidates per "
          f"frame ({n_bogus} bogus)")  # fmt: skip
    for rate_bin in _RATE_BINS:
        share = found[rate_bin] / max(total[rate_bin], 1)
        print(f"  completeness {rate_bin[0]:4.0f}-{rate_bin[1]:<3.0f} arcsec/min: "
              f"{found[rate_bin]:4d}/{total[rate_bin]:<4d} = {100 * share:5.1f} %")  # fmt: skip
    print(f"  overall: {sum(found.values())}/{sum(total.values())}")
    print(f"  time per field: median {1e3 * statistics.median(times):.0f} ms, "
          f"max {1e3 * max(times):.0f} ms")  # fmt: skip
    chance = {"defaults": 0, "max_chance_tracks=inf": 0}
    for seed in range(n_fields):
        field = moving_field(5000 + seed, n_asteroids=0, n_bogus=n_bogus)
        chance["defaults"] += len(link_tracks(field.detections))
        tracks = link_tracks(field.detections, max_chance_tracks=math.inf)
        chance["max_chance_tracks=inf"] += len(tracks)
    for name, n in chance.items():
        print(f"  chance tracks per field without asteroids ({name}): {n / n_fields:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=20, help="fields simulated (20)")
    parser.add_argument("--bogus", type=int, default=300, help="bogus candidates per frame")
    args = parser.parse_args()
    main(args.fields, args.bogus)
