"""Issue 19: ``reading`` triggers, evaluated as readings arrive, one episode at a time.

A reading counts for a step when any of its thresholds holds (``systolic_bp >= 140 mmHg`` or
``diastolic_bp >= 90 mmHg``); readings taken at the same moment (the two numbers of one blood-pressure
measurement) count once. When the reading that just arrived counts and, with it, ``count`` readings counted
within ``within``, the step is planned once: that opens an episode. While the episode is open (its touchpoint
waiting, or the staff task it opened not closed) further readings open nothing; once the task is closed (or the
message sent) the episode is resolved and the trigger re-arms, counting only readings measured after that.
An ``urgent`` step is sent right after the reading is stored, quiet hours or not.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from carepath.definition.model import Category, Journey, Reading, Step
from carepath.runtime.planner import Planned
from carepath.runtime.readings import ACCEPTED, StoredReading, accepted_since
from carepath.runtime.scheduling import plan_single
from carepath.runtime.work_queue import OPEN_STATUSES
from carepath.store.schema import Enrollment, Patient, StaffTask, Touchpoint

if TYPE_CHECKING:
    from carepath.engine import Engine
    from carepath.runtime.ingest_result import IngestResult

PENDING = ("scheduled", "claimed")


def episode_state(conn: Connection, enrollment_id: int, step: Step) -> tuple[bool, datetime | None, int]:
    """``(open, resolved_at, episodes so far)`` of a reading step in an enrollment: open while its last
    touchpoint waits or the task it opened is not closed; ``resolved_at`` is when the last one ended."""
    count, last_id = conn.execute(select(func.count(Touchpoint.id), func.max(Touchpoint.id)).where(
        Touchpoint.enrollment_id == enrollment_id, Touchpoint.step == step.id)).one()
    if not count:
        return False, None, 0
    last = conn.execute(select(Touchpoint.status, Touchpoint.sent_at, Touchpoint.updated_at).where(
        Touchpoint.id == last_id)).one()
    if last.status in PENDING:
        return True, None, count
    task = conn.execute(select(StaffTask.status, StaffTask.closed_at).where(
        StaffTask.touchpoint_id == last_id).order_by(StaffTask.id.desc()).limit(1)).first()
    if task is not None:
        return (task.status in OPEN_STATUSES), task.closed_at, count
    return False, last.sent_at or last.updated_at, count


def counted_moments(step: Reading, readings: list[tuple[datetime, str, float]]) -> list[datetime]:
    """The moments (measuring times) at which a reading crossed one of ``step``'s thresholds."""
    moments: dict[datetime, bool] = {}
    for at, measure, value in readings:
        crossed = any(t.holds(value) for t in step.any if t.measure == measure)
        moments[at] = moments.get(at, False) or crossed
    return sorted(at for at, crossed in moments.items() if crossed)


def evaluate(conn: Connection, engine: "Engine", patient_id: int, reading: StoredReading, event_id: int,
             now: datetime, result: "IngestResult") -> None:
    """Evaluate the ``reading`` steps of the patient's active enrollments for the reading just stored."""
    if reading.status != ACCEPTED or reading.value is None:
        return
    tz = conn.execute(select(Patient.tz).where(Patient.id == patient_id)).scalar() or "Asia/Shanghai"
    for enrollment in conn.execute(select(Enrollment.id, Enrollment.journey, Enrollment.version)
                                   .where(Enrollment.patient_id == patient_id, Enrollment.status == "active")).all():
        journey = engine.journey_version(enrollment.journey, enrollment.version)
        for step in (s for s in (journey.steps if journey else []) if isinstance(s.trigger, Reading)):
            note = _evaluate_step(conn, engine, patient_id, enrollment, journey, step, reading, event_id, tz, now,
                                      result)
            if note:
                result.notes.append(note)


def _evaluate_step(conn: Connection, engine: "Engine", patient_id: int, enrollment: Any, journey: Journey, step: Step,
                   reading: StoredReading, event_id: int, tz: str, now: datetime,
                   result: "IngestResult") -> str | None:
    trigger: Reading = step.trigger  # type: ignore[assignment]
    if not any(t.holds(reading.value) for t in trigger.any if t.measure == reading.measure):
        return None
    is_open, resolved_at, episodes = episode_state(conn, enrollment.id, step)
    if is_open:
        return f"{journey.name}.{step.id}: episode {episodes} still open, no new one"
    since = reading.measured_at - trigger.within
    if resolved_at is not None and resolved_at > since:
        since = resolved_at  # re-armed: only readings after the resolution count
    readings = accepted_since(conn, engine, patient_id, {t.measure for t in trigger.any}, since)
    moments = [at for at in counted_moments(trigger, readings) if at <= reading.measured_at]
    if len(moments) < trigger.count:
        return f"{journey.name}.{step.id}: {len(moments)} of {trigger.count} readings"
    planned = [Planned(step=step, occurrence=f"episode:{episodes + 1}", planned_at=now, due_at=now,
                       event_id=event_id)]
    ids = plan_single(conn, enrollment_id=enrollment.id, patient_id=patient_id, tz=tz,
                      journey=journey, planned=planned, now=now, policy=engine.policy)
    result.planned += len(ids)
    if step.category is Category.urgent:
        result.urgent_touchpoints += ids
    elif ids:
        result.due_now.append(journey.name)
    return f"{journey.name}.{step.id}: episode {episodes + 1} opened ({len(moments)} readings)"

