"""Scheduling costs: a night's ephemeris, constraint masks, one decision, a whole timeline.

Decisions must stay far below the per-frame overhead (milliseconds) so that the dispatch
loop never delays acquisition; the ephemeris is paid once per night.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, date, datetime, timedelta

import numpy as np

from obsctl.config import SiteConfig
from obsctl.night.ephemeris import NightEphemeris
from obsctl.night.plan import parse_plan
from obsctl.night.schedule import NightSchedule, TargetHistory

SITE = SiteConfig(name="bench", latitude_deg=28.76, longitude_deg=-17.88, elevation_m=2326)
NIGHT = date(2026, 11, 25)


def timed(fn, repeat: int = 5) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    rng = np.random.default_rng(1)
    targets = [
        {
            "name": f"T{i}",
            "ra_deg": float(rng.uniform(0, 360)),
            "dec_deg": float(rng.uniform(-30, 80)),
            "priority": int(rng.integers(1, 6)),
            "constraints": {"min_alt_deg": 30, "min_moon_sep_deg": 20},
            "repeat": {"every_min": 60} if i % 5 == 0 else None,
            "steps": [{"filter": "V", "exposure_s": 120, "count": 3}],
        }
        for i in range(100)
    ]
    for t in targets:
        if t["repeat"] is None:
            del t["repeat"]
    plan = parse_plan({"version": 1, "name": "bench", "targets": targets})
    t_eph, eph = timed(lambda: NightEphemeris(SITE, NIGHT), repeat=3)
    t_sched, sched = timed(lambda: NightSchedule(plan, eph), repeat=3)  # type: ignore[arg-type]
    when = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
    history = {
        f"T{i}": TargetHistory(1, 1, 0, when - timedelta(minutes=70)) for i in range(0, 100, 5)
    }
    t_choose, _ = timed(lambda: sched.choose(when, history), repeat=50)  # type: ignore[union-attr]
    t_timeline, tl = timed(lambda: sched.timeline(), repeat=3)  # type: ignore[union-attr]
    print(f"ephemeris of one night (sun, moon; 2 min grid): {t_eph * 1e3:8.1f} ms (median)")
    print(f"constraint masks for 100 targets:               {t_sched * 1e3:8.1f} ms")
    print(f"one decision among 100 targets:                 {t_choose * 1e3:8.2f} ms")
    print(
        f"predicted timeline of the night:                {t_timeline * 1e3:8.1f} ms "
        f"({len(tl.visits)} visits)"
    )  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
