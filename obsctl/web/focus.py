"""What the quick-look page reads about focus runs: a night's runs, their points and fits.

A run's row is as `obsctl.acquisition.autofocus.FocusRun.row` wrote it, its ``points``
(stored as JSON text, ``[[position, hfr_px, n_stars], ...]``) parsed into objects. The fit
is the hyperbola's stored parameters: the page draws the V-curve from them,
``hfr = best_hfr_px * sqrt(1 + 3 ((x - best_position) / half_width_steps)^2)`` (the HFR
doubles at ``half_width_steps`` from the minimum). Every number that is not finite is
None, so the reply is standard JSON.

Synchronous and short; the route runs it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from obsctl.store.exposure_log import ExposureLog

__all__ = ["focus_runs"]

log = logging.getLogger(__name__)


def _finite(value: Any) -> int | float | None:
    """Return a finite number as it is, else None (NaN, infinities, text, None)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _points(run_id: Any, text: Any) -> list[dict[str, Any]]:
    """Return a run's stored points as ``{position, hfr_px, n_stars}``, in the order taken.

    A point whose HFR could not be measured (too few stars) keeps its position with
    ``hfr_px`` None. Text that is not the list the daemon writes gives no points.
    """
    try:
        # Python's parser, not orjson: it reads the NaN a hand-made row may hold.
        raw = json.loads(text) if isinstance(text, str | bytes) else None
    except ValueError:
        raw = None
    if not isinstance(raw, list):
        log.warning("focus run %s: its points are not a JSON list; shown without them", run_id)
        return []
    points = []
    for entry in raw:
        if not isinstance(entry, list) or len(entry) < 2 or _finite(entry[0]) is None:
            continue
        stars = _finite(entry[2]) if len(entry) > 2 else None
        points.append(
            {
                "position": entry[0],
                "hfr_px": _finite(entry[1]),
                "n_stars": None if stars is None else int(stars),
            }
        )
    return points


def focus_runs(log_db: ExposureLog, night: str | None, limit: int) -> dict[str, Any]:
    """Return a night's latest focus runs for the page.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log.
    night : str or None
        The night (``YYYY-MM-DD``); None: the latest night with a run.
    limit : int
        Runs returned, at most (the newest).

    Returns
    -------
    dict
        ``night`` (None without any run), ``total`` (the night's runs, all of them) and
        ``runs``, newest first: the ``focus_runs`` columns, ``points`` parsed.
    """
    rows = log_db.recent_focus_runs(night, limit=limit)
    runs = []
    for row in rows:
        run: dict[str, Any] = {}
        for key, value in row.items():
            if key == "night_runs":
                continue
            run[key] = _finite(value) if isinstance(value, float) else value
        run["points"] = _points(row.get("id"), row.get("points"))
        runs.append(run)
    return {
        "night": rows[0]["night"] if rows else night,
        "total": int(rows[0]["night_runs"]) if rows else 0,
        "runs": runs,
    }
