"""Pausing a programme (issue 19): ``pause_on`` events stop its planned steps, ``resume_on`` events restart them.

An admission pauses an outpatient programme; the discharge resumes it. While paused, every touchpoint of the
enrollment's time-planned steps (``before``/``after`` an anchor, ``every``, ``calendar``) is ``skipped:
programme paused``, those the horizon plans meanwhile too. On resume, the ones planned for after the resume
come back (quiet hours, caps and the ``missed`` policy apply again); what fell due during the pause stays
skipped, recorded as such. Steps that react to something happening (``on`` an event, ``after_step``,
``idle``) are not paused: an event during the pause is news. A pause or resume that occurred before the last
one applied is stale and changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from carepath.definition.model import AnchorOffset, Calendar, Every, Journey, Step
from carepath.runtime.planner import DayLoad, Planned, apply_policy
from carepath.runtime.policy import Policy
from carepath.store.schema import Enrollment, Touchpoint

PAUSED = "skipped: programme paused"


def paused_step(step: Step) -> bool:
    """Whether a pause holds ``step`` (its time comes from the programme's schedule, not from an event)."""
    return isinstance(step.trigger, (AnchorOffset, Every, Calendar))


def pause_events(journey: Journey) -> frozenset[str]:
    """The event types that pause or resume ``journey``."""
    return frozenset((journey.pause_on or []) + (journey.resume_on or []))


def apply(conn: Connection, enrollment: Any, journey: Journey, event_type: str, occurred_at: datetime,
          now: datetime, policy: Policy, tz: str) -> str | None:
    """Pause or resume ``enrollment`` for an event of ``event_type``; what happened, for the event's outcome."""
    row = conn.execute(select(Enrollment.paused_since, Enrollment.pause_changed_at).where(
        Enrollment.id == enrollment.id)).one()
    if row.pause_changed_at is not None and occurred_at < row.pause_changed_at:
        return f"{journey.name}: {event_type} occurred before the last pause or resume: stale, not applied"
    pausing = event_type in (journey.pause_on or [])
    steps = [s.id for s in journey.steps if paused_step(s)]
    if pausing:
        if row.paused_since is not None:
            return f"{journey.name}: already paused"
        conn.execute(update(Enrollment).where(Enrollment.id == enrollment.id).values(
            paused_since=occurred_at, pause_changed_at=occurred_at))
        held = conn.execute(update(Touchpoint).where(
            Touchpoint.enrollment_id == enrollment.id, Touchpoint.status == "scheduled",
            Touchpoint.step.in_(steps)).values(status="skipped", reason=PAUSED, updated_at=now)).rowcount or 0
        return f"{journey.name} paused ({held} planned touchpoint(s) held)"
    if row.paused_since is None:
        return f"{journey.name}: not paused"
    conn.execute(update(Enrollment).where(Enrollment.id == enrollment.id).values(
        paused_since=None, pause_changed_at=occurred_at))
    back = resume_touchpoints(conn, enrollment.id, enrollment.patient_id, journey, occurred_at, now, policy, tz)
    return f"{journey.name} resumed ({back} planned touchpoint(s) back)"


def resume_touchpoints(conn: Connection, enrollment_id: int, patient_id: int, journey: Journey,
                       resumed_at: datetime, now: datetime, policy: Policy, tz: str) -> int:
    """Bring back the paused touchpoints planned for ``resumed_at`` or later (policies applied again)."""
    from carepath.runtime.scheduling import day_loads

    rows = conn.execute(select(Touchpoint.id, Touchpoint.step, Touchpoint.occurrence, Touchpoint.planned_at,
                               Touchpoint.anchor_at).where(
        Touchpoint.enrollment_id == enrollment_id, Touchpoint.status == "skipped", Touchpoint.reason == PAUSED,
        Touchpoint.planned_at >= resumed_at)).all()
    ids: dict[tuple[str, str], int] = {}
    items: list[Planned] = []
    for r in rows:
        try:
            step = journey.step(r.step)
        except KeyError:
            continue
        ids[(r.step, r.occurrence)] = r.id
        items.append(Planned(step, r.occurrence, r.planned_at, r.planned_at, anchor_at=r.anchor_at))
    if not items:
        return 0
    load = DayLoad(tz, day_loads(conn, [patient_id], now - timedelta(days=1)).get(patient_id, ()))
    decided = apply_policy(items, tz_name=tz, now=now, policy=policy, load=load)
    conn.execute(update(Touchpoint).where(Touchpoint.id == bindparam("b_id")).values(
        status=bindparam("b_status"), reason=bindparam("b_reason"), due_at=bindparam("b_due"),
        updated_at=bindparam("b_now")),
        [dict(b_id=ids[(p.step.id, p.occurrence)], b_status=p.status, b_reason=p.reason, b_due=p.due_at, b_now=now)
         for p in decided])
    return sum(1 for p in decided if p.status == "scheduled")
