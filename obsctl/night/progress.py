"""Night progress: one row of ``plan_visits`` per visit of a target or calibration block.

Visits are kept in observatory (possibly simulated) time, so that a restarted runner adopts
the visit that was running, does not repeat finished ones, and the monitoring cadence
carries across nights.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from obsctl.night.schedule import TargetHistory
from obsctl.store.exposure_log import ExposureLog

__all__ = ["PlanProgress", "iso_utc"]

log = logging.getLogger(__name__)


def iso_utc(when: datetime) -> str:
    """Return a time as ISO 8601 UTC text with milliseconds, as the tables keep it."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


class PlanProgress:
    """Visits of a plan in the exposure log (``plan_visits``).

    Parameters
    ----------
    log_db : ExposureLog
        The database.
    plan : str
        The plan's name; progress is kept per plan and target name.
    night : str
        The night (``YYYY-MM-DD``) being observed.
    """

    def __init__(self, log_db: ExposureLog, plan: str, night: str) -> None:
        self.log_db = log_db
        self.plan = plan
        self.night = night

    def start(self, target: str, kind: str, sequence_id: int, frames: int, when: datetime) -> int:
        """Record a visit as running; return its id."""
        return self.log_db.execute(
            "INSERT INTO plan_visits (plan, night, target, kind, sequence_id, state, "
            "frames_planned, started_utc) VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
            (self.plan, self.night, target, kind, sequence_id, frames, iso_utc(when)),
        )

    def finish(self, visit_id: int, state: str, when: datetime, reason: str | None = None) -> None:
        """Set a visit's final (or ``interrupted``) state."""
        self.log_db.execute(
            "UPDATE plan_visits SET state = ?, ended_utc = ?, reason = ? WHERE id = ?",
            (state, iso_utc(when), reason, visit_id),
        )

    def reopen(self, visit_id: int) -> None:
        """Mark an interrupted visit running again."""
        self.log_db.execute(
            "UPDATE plan_visits SET state = 'running', ended_utc = NULL, reason = NULL "
            "WHERE id = ?",
            (visit_id,),
        )

    def visits(
        self, *, state: str | None = None, target: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Return this night's visits, oldest first, filtered by state, target and kind."""
        sql = "SELECT * FROM plan_visits WHERE plan = ? AND night = ?"
        args: list[Any] = [self.plan, self.night]
        for column, value in (("state", state), ("target", target), ("kind", kind)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        return self.log_db.query(sql + " ORDER BY id", args)

    def history(self) -> dict[str, TargetHistory]:
        """Per target: completed visits (all nights, tonight), failures tonight, last end."""
        rows = self.log_db.query(
            "SELECT target, night, state, ended_utc FROM plan_visits "
            "WHERE plan = ? AND kind = 'light' ORDER BY id",
            (self.plan,),
        )
        out: dict[str, TargetHistory] = {}
        for r in rows:
            h = out.get(r["target"], TargetHistory())
            tonight = r["night"] == self.night
            if r["state"] == "done":
                end = datetime.fromisoformat(r["ended_utc"])
                last = end if h.last_end is None else max(h.last_end, end)
                h = TargetHistory(h.total + 1, h.tonight + tonight, h.failed_tonight, last)
            elif r["state"] == "failed" and tonight:
                h = TargetHistory(h.total, h.tonight, h.failed_tonight + 1, h.last_end)
            out[r["target"]] = h
        return out

    def failures_count(self) -> int:
        """Failures recorded in this night (of any sequence, the plan's or not)."""
        rows = self.log_db.query(
            "SELECT COUNT(*) AS n FROM failures WHERE night = ?", (self.night,)
        )
        return int(rows[0]["n"]) if rows else 0

    def frames_stored(self, sequence_ids: list[int]) -> int:
        """Frames stored by the given sequences."""
        return self.log_db.frames_of_sequences(sequence_ids)
