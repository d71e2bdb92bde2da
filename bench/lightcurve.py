"""Light-curve load time from a large archive.

Builds an exposure log with ``--points`` light-curve points (default 10 million: 10 000
objects in 20 fields, 1 000 frames each) in the real schema, then times loading one
target's light curve (``obsctl.timeseries.store.load_light_curve``, what the API and the CLI
call) for random targets and prints the median. Goal: under 50 ms.

    python bench/lightcurve.py [--points 10000000] [--db PATH] [--repeat 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from obsctl.store.exposure_log import ExposureLog
from obsctl.timeseries.store import load_light_curve


def build(path: Path, n_points: int, frames_per_field: int = 1000, fields: int = 20) -> int:
    """Fill the database; return the number of objects."""
    db = ExposureLog(path)
    n_objects = max(1, n_points // frames_per_field)
    per_field = max(1, n_objects // fields)
    rng = np.random.default_rng(1)
    con = db._db  # bulk load on the raw connection: one transaction per batch
    con.execute("PRAGMA synchronous=OFF")
    objects = [
        (i + 1, f"F{i // per_field:03d}", f"T{i:06d}", 150.0 + rng.random(), 20.0 + rng.random())
        for i in range(n_objects)
    ]
    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO lc_objects (id, field, target, ra_deg, dec_deg) VALUES (?, ?, ?, ?, ?)",
        objects,
    )
    con.execute("COMMIT")
    # Frames arrive in time order and each adds one point per object of its field: insert
    # in that order, as the monitor does.
    mjd0 = 61000.0
    exposure = 0
    for field in range(fields):
        ids = np.arange(field * per_field + 1, (field + 1) * per_field + 1)
        con.execute("BEGIN")
        for k in range(frames_per_field):
            exposure += 1
            mjd = mjd0 + k * 0.01 + field * 1e-4
            mag = 14.0 + rng.normal(0, 0.01, ids.size)
            con.executemany(
                "INSERT INTO lc_points (object_id, mjd, exposure_id, bjd_tdb, filter, airmass, "
                "inst_mag, inst_mag_err, mag, mag_err, quality, flags) "
                "VALUES (?, ?, ?, ?, 'V', 1.2, ?, 0.005, ?, 0.006, 'good', 0)",
                [(int(o), mjd, exposure, mjd + 2400000.5, float(m) - 21, float(m))
                 for o, m in zip(ids, mag, strict=True)],
            )  # fmt: skip
        con.execute("COMMIT")
        print(f"  field {field + 1}/{fields} loaded", flush=True)
    con.execute("ANALYZE")
    db.close()
    return n_objects


def main() -> None:
    """Build the archive (unless it exists) and time light-curve loads."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--db", type=Path, default=None, help="keep the database here")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "bench.sqlite"
        start = time.perf_counter()
        if not path.exists():
            build(path, args.points)
            print(f"built {args.points:,} points in {time.perf_counter() - start:.0f} s")
        db = ExposureLog(path)
        n = db.query("SELECT COUNT(*) AS n FROM lc_objects")[0]["n"]
        total = db.query("SELECT MAX(rowid) AS n FROM lc_objects")[0]["n"]
        rng = np.random.default_rng(2)
        times, lengths = [], []
        for _ in range(args.repeat):
            target = f"T{int(rng.integers(0, total)):06d}"
            t0 = time.perf_counter()
            points = load_light_curve(db, target)
            times.append(time.perf_counter() - t0)
            lengths.append(len(points))
        db.close()
        median_ms = 1000 * statistics.median(times)
        print(f"objects: {n:,}; points per light curve: {statistics.median(lengths):.0f}")
        print(f"light curve load: median {median_ms:.2f} ms, max {1000 * max(times):.2f} ms "
              f"over {args.repeat} targets; goal 50 ms: ratio {median_ms / 50:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
