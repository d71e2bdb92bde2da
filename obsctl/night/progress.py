"""Night progress: one row of ``plan_visits`` per visit of a target or calibration block.

Visits are kept in observatory (possibly simulated) time, so that a restarted runner adopts
the visit that was running, does not repeat finished ones, and the monitoring cadence
carries across nights.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from obsctl.acquisition.sequence import Sequence
from obsctl.night.plan import GRADE_LETTERS, Plan, PlanTarget
from obsctl.night.schedule import TargetHistory, advance_due, describe_cadence, goal_missing
from obsctl.store.exposure_log import ExposureLog

__all__ = ["PlanProgress", "describe_status", "iso_utc"]

#: A frame's standing towards its target's goal (`PlanProgress.frame_verdicts`).
_VERDICTS = ("accepted", "pending", "rejected")

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

    def history(self, plan: Plan | None = None) -> dict[str, TargetHistory]:
        """Per target: visits done (all nights, tonight), failures tonight, last start, goals.

        The frames an interrupted visit still has to take are filled in; with ``plan``, also
        the frames that count towards each target's goal (`frame_verdicts`) and when each
        monitor's next visit is due (`advance_due`, keeping the series' phase).
        """
        rows = self.log_db.query(
            "SELECT id, target, night, state, started_utc, sequence_id FROM plan_visits "
            "WHERE plan = ? AND kind = 'light' ORDER BY id",
            (self.plan,),
        )
        targets = {t.name: t for t in plan.targets} if plan is not None else {}
        out: dict[str, TargetHistory] = {}
        interrupted: dict[str, int] = {}
        for r in rows:
            h = out.get(r["target"], TargetHistory())
            tonight = r["night"] == self.night
            if r["state"] == "done":
                start = datetime.fromisoformat(r["started_utc"])
                last = start if h.last_start is None else max(h.last_start, start)
                target = targets.get(r["target"])
                due = None if target is None else advance_due(target, h.due, start)
                h = TargetHistory(h.total + 1, h.tonight + tonight, h.failed_tonight, last, due=due)
                interrupted.pop(r["target"], None)
            elif r["state"] == "failed" and tonight:
                h = replace(h, failed_tonight=h.failed_tonight + 1)
            elif r["state"] == "interrupted":
                interrupted[r["target"]] = int(r["sequence_id"])
            out[r["target"]] = h
        for name, sequence_id in interrupted.items():
            out[name] = replace(out[name], resume=self._frames_left(sequence_id))
        if plan is not None:
            for target in plan.targets:
                if target.goal is None:
                    continue
                counted: dict[str, int] = {}
                for v in self.frame_verdicts(target):
                    if v["verdict"] in ("accepted", "pending") and v["filter"] is not None:
                        counted[v["filter"]] = counted.get(v["filter"], 0) + 1
                out[target.name] = replace(out.get(target.name, TargetHistory()), counted=counted)
        return out

    def _frames_left(self, sequence_id: int) -> tuple[tuple[str | None, float], ...]:
        """Return the frames a stopped sequence still has to take (filter, exposure in s)."""
        row = self.log_db.sequence(sequence_id)
        if row is None:
            return ()
        steps = Sequence.model_validate_json(row["definition"]).steps
        done = self.log_db.frames_done(sequence_id)
        return tuple(
            (s.filter, s.exposure_s)
            for i, s in enumerate(steps)
            for _ in range(max(0, s.count - done.get(i, 0)))
        )

    def frame_verdicts(self, target: PlanTarget) -> list[dict[str, Any]]:
        """Return each light frame the plan took of ``target`` (all nights) with its verdict.

        ``accepted``: the pipeline graded it within the goal's ``max_grade`` (or could not
        grade it) and, when the goal asks, deep enough; ``pending``: the pipeline has not
        finished with it (it counts until then); ``rejected``: a worse grade, too shallow,
        or failed in the pipeline. Keys ``exposure_id``, ``night``, ``filter``, ``grade``,
        ``limiting_mag``, ``verdict``, ``why``.
        """
        rows = self.log_db.query(
            "SELECT e.id AS exposure_id, e.night, e.filter, p.state, m.quality_grade AS grade, "
            "m.limiting_mag FROM plan_visits v JOIN exposures e ON e.sequence_id = v.sequence_id "
            "LEFT JOIN processing p ON p.exposure_id = e.id "
            "LEFT JOIN frame_metrics m ON m.exposure_id = e.id "
            "WHERE v.plan = ? AND v.kind = 'light' AND v.target = ? AND e.image_type = 'LIGHT' "
            "ORDER BY e.id",
            (self.plan, target.name),
        )
        goal = target.goal
        grades = goal.accepted_grades() if goal is not None else GRADE_LETTERS
        depth = goal.min_limiting_mag if goal is not None else None
        out = []
        for r in rows:
            verdict, why = "accepted", ""
            if r["state"] in (None, "queued", "running"):
                verdict = "pending"
            elif r["state"] != "done":
                verdict, why = "rejected", f"pipeline {r['state']}"
            elif r["grade"] is not None and r["grade"] not in grades:
                verdict, why = "rejected", f"graded {r['grade']}"
            elif depth is not None and (r["limiting_mag"] is None or r["limiting_mag"] < depth):
                lim = "unknown" if r["limiting_mag"] is None else f"{r['limiting_mag']:.2f}"
                verdict, why = "rejected", f"limiting magnitude {lim} < {depth:g}"
            out.append(
                {
                    "exposure_id": r["exposure_id"],
                    "night": r["night"],
                    "filter": r["filter"],
                    "grade": r["grade"],
                    "limiting_mag": r["limiting_mag"],
                    "verdict": verdict,
                    "why": why,
                }
            )
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


def describe_status(log_db: ExposureLog, plan: Plan, night: str) -> str:
    """Describe a plan's progress from the exposure log (``obsctl plan status``).

    Per target: visits done (all nights, and on ``night``), the last start, a goal's
    accepted, pending and rejected frames per filter (and why frames were rejected), and a
    monitor's achieved cadence on ``night``.
    """
    progress = PlanProgress(log_db, plan.name, night)
    history = progress.history(plan)
    lines = [f"plan {plan.name!r}: progress in {log_db.path} (night {night})"]
    for target in plan.targets:
        h = history.get(target.name, TargetHistory())
        last = "never" if h.last_start is None else f"last {h.last_start:%Y-%m-%d %H:%M} UTC"
        state = f"{h.total} visit(s) done, {h.tonight} on {night}, {last}"
        if h.resume is not None:
            state += f"; a visit interrupted with {len(h.resume)} frame(s) to go"
        lines.append(f"  {target.name}: {state}")
        if target.goal is not None:
            verdicts = progress.frame_verdicts(target)
            missing = goal_missing(target, h)
            for name, goal in target.goal_frames().items():
                mine = [v for v in verdicts if v["filter"] == name]
                n = {k: sum(v["verdict"] == k for v in mine) for k in _VERDICTS}
                reasons = sorted({v["why"] for v in mine if v["verdict"] == "rejected"})
                why = f" ({'; '.join(reasons)})" if reasons else ""
                done = "met" if name not in missing else f"{missing[name]} to go"
                lines.append(
                    f"    goal {name}: {n['accepted']}/{goal} accepted, {n['pending']} pending, "
                    f"{n['rejected']} rejected{why}: {done}"
                )
        visits = progress.visits(state="done", target=target.name, kind="light")
        starts = [datetime.fromisoformat(v["started_utc"]) for v in visits]
        cadence = describe_cadence(target, starts)
        if cadence is not None:
            lines.append(f"    cadence on {night}: {cadence}")
    return "\n".join(lines)
