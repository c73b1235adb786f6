"""Re-planning after an anchor moved or was cancelled: pending touchpoints re-timed, told ones sent again.

``carepath.runtime.scheduling`` re-exports every public name here.
"""

from __future__ import annotations

from collections import namedtuple
from datetime import datetime, timedelta

from sqlalchemy import Connection, String, bindparam, select, update

from carepath.definition.model import Journey
from carepath.runtime.bulk_writes import insert_touchpoints, touchpoint_rows
from carepath.runtime.daily_load import day_loads
from carepath.runtime.planner import CAP_DROPPED, MISSED_SKIPPED, DayLoad, Planned, plan_anchored, revised, revision
from carepath.runtime.policy import Policy
from carepath.runtime.series import on_horizon  # issue 19
from carepath.store.driver import DriverQuery
from carepath.store.schema import Touchpoint
from carepath.store.statements import among, is_postgres

ANCHOR_CANCELLED = "anchor cancelled"
# a touchpoint in one of these states told (or is telling) the patient about the anchor's old value
TOLD = ("claimed", "sent", "delivered", "failed")


ALREADY_TOLD = "cancelled: the patient was already told this time"
#: a touchpoint whose anchor moved while a worker had it claimed: its re-send (the next revision) tells the new
#: time, so if that worker died it is not sent after its lease runs out (with the new time, it would say it twice)
SUPERSEDED = "cancelled: the time moved while it was in flight; its re-send tells the new one"


# built once: the touchpoints of an enrollment's steps, and the re-timing of pending ones
# (the steps one list, see ``among``, by whether the database is PostgreSQL; on SQLite run on the driver's cursor)
_OF_STEPS = {pg: DriverQuery(select(Touchpoint.id, Touchpoint.step, Touchpoint.occurrence, Touchpoint.status,
                                    Touchpoint.reason, Touchpoint.anchor_at).where(
    Touchpoint.enrollment_id == bindparam("e"), among(Touchpoint.step, "steps", pg, String))) for pg in (False, True)}
_StepRow = namedtuple("_StepRow", ["id", "step", "occurrence", "status", "reason", "anchor_at"])
_RETIME = update(Touchpoint).where(Touchpoint.id == bindparam("b_id")).values(
    due_at=bindparam("b_due"), planned_at=bindparam("b_planned"), status=bindparam("b_status"),
    reason=bindparam("b_reason"), anchor_at=bindparam("b_anchor"), updated_at=bindparam("b_now"))


def _movable(row) -> bool:
    return (row.status == "scheduled" or (row.status == "cancelled" and row.reason in (ANCHOR_CANCELLED, ALREADY_TOLD))
            or (row.status == "skipped" and row.reason in (MISSED_SKIPPED, CAP_DROPPED)))


def replan_anchor(conn: Connection, *, enrollment_id: int, patient_id: int, tz: str, journey: Journey,
                  anchor: str, anchors: dict[str, datetime | None], now: datetime, policy: Policy) -> dict[str, int]:
    """Recompute the touchpoints hanging on ``anchor`` after it moved or was cancelled.

    Per occurrence, only its latest revision counts. A pending one (scheduled,
    or cancelled by the anchor, or skipped as missed or over the cap) is
    re-timed in place. One that was already sent for another anchor value is
    history and stays; unless its step says ``resend_on_move: false``, the
    occurrence is planned again under a new revision (a new idempotency key).
    A pending revision is cancelled when the anchor moves back to the value
    the patient was last told.
    A cancelled anchor cancels the pending ones. Returns counts of moved,
    cancelled, added and resent (planned again) touchpoints.
    """
    counts = {"moved": 0, "cancelled": 0, "added": 0, "resent": 0}
    steps = [s for s in journey.steps if s.anchor == anchor and not on_horizon(s)]  # issue 19: horizon.anchor_changed
    if not steps:
        return counts
    latest: dict[tuple[str, str], tuple[int, object]] = {}
    told: dict[tuple[str, str], tuple[int, object]] = {}  # the latest revision that reached the patient
    for row in map(_StepRow._make, _OF_STEPS[is_postgres(conn)].rows(conn, {"e": enrollment_id,
                                                                            "steps": [s.id for s in steps]})):
        base, rev = revision(row.occurrence)
        for seen, keep in ((latest, True), (told, row.status in TOLD)):
            if keep and ((row.step, base) not in seen or seen[(row.step, base)][0] < rev):
                seen[(row.step, base)] = (rev, row)
    movable = {k: row for k, (_, row) in latest.items() if _movable(row)}
    load = DayLoad(tz, day_loads(conn, [patient_id], now - timedelta(days=1),
                                 exclude_ids=[r.id for r in movable.values()]).get(patient_id, ()))
    planned = plan_anchored(steps, anchors, tz_name=tz, now=now, policy=policy, load=load)
    updates, new, superseded = [], [], []
    for p in planned:
        k = (p.step.id, p.occurrence)
        if k in movable and k in told and told[k][1].anchor_at == p.anchor_at:
            # moved back to the time the patient was last told: the pending re-send is not needed
            updates.append(dict(b_id=movable[k].id, b_due=p.due_at, b_planned=p.planned_at, b_status="cancelled",
                                b_reason=ALREADY_TOLD, b_anchor=p.anchor_at, b_now=now))
        elif k in movable:
            updates.append(dict(b_id=movable[k].id, b_due=p.due_at, b_planned=p.planned_at, b_status=p.status,
                                b_reason=p.reason, b_anchor=p.anchor_at, b_now=now))
        elif k not in latest:
            new.append(p)
            counts["added"] += 1
        else:
            rev, row = latest[k]
            if p.step.resend_on_move and row.status in TOLD and row.anchor_at != p.anchor_at:
                new.append(_decided_again(p, rev + 1))
                counts["resent"] += 1
                if row.status == "claimed":
                    superseded.append(row.id)
    if superseded:  # still claimed: the worker holding it finishes as it would; a dead one's is not re-sent
        conn.execute(update(Touchpoint).where(Touchpoint.id.in_(superseded), Touchpoint.status == "claimed")
                     .values(reason=SUPERSEDED))
    if updates:
        conn.execute(_RETIME, updates)
        counts["moved"] = len(updates)
    seen = {(p.step.id, p.occurrence) for p in planned}
    stale = [r.id for k, r in movable.items() if k not in seen and r.status == "scheduled"]
    if stale:
        conn.execute(update(Touchpoint).where(Touchpoint.id.in_(stale)).values(
            status="cancelled", reason=ANCHOR_CANCELLED, updated_at=now))
        counts["cancelled"] = len(stale)
    insert_touchpoints(conn, touchpoint_rows(enrollment_id, patient_id, journey, new, now))
    return counts


def _decided_again(p: Planned, rev: int) -> Planned:
    return Planned(p.step, revised(p.occurrence, rev), p.planned_at, p.due_at, p.status, p.reason, p.event_id,
                   p.anchor_at)
