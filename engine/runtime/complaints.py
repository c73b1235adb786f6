"""Complaint cases (issue 21): a first response within 24 hours, a resolution within 7 working days.

A case opens from a patient's message (the ``complaint`` intent), a detractor survey answer (NPS 0-6) to an
invitation whose journey step says ``detractor: complaint_case`` (the stock outpatient-visit journey does), or to
any survey when ``[complaints] from_detractors`` is on, or staff (``carepath complaints open``). Each case has a staff task in the
``[complaints] team`` queue carrying both deadlines, so a breach climbs the team's escalation chain like any
task (:func:`carepath.runtime.work_queue.check_slas`); :func:`check_deadlines` records the breach on the case.
The patient is told when the case is acknowledged and when it is resolved, and is then asked one satisfaction
question (a 1-5 reply is recorded on the case by the ``satisfaction`` intent handler).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, insert, select, update

from carepath.definition.expressions import render
from carepath.runtime.work_queue import OPEN_STATUSES
from carepath.store.audit import audit
from carepath.store.conversation_schema import ComplaintCase
from carepath.store.schema import StaffTask

if TYPE_CHECKING:
    from carepath.engine import Engine

SOURCES = ("message", "survey", "staff")
CASE_TASK = "complaint_case"  # the kind of a case's task (a journey's own ``complaint`` task is another thing)
STATUSES = ("open", "acknowledged", "resolved")


class ComplaintError(Exception):
    """An action the case's state does not allow (names the case and why)."""


def add_workdays(start: datetime, days: int, tz: ZoneInfo) -> datetime:
    """``start`` moved ``days`` official working days on (same wall time; :mod:`carepath.runtime.workdays`)."""
    from carepath.runtime.policy import local_wall
    from carepath.runtime.workdays import is_workday

    local = start.astimezone(tz)
    day: date = local.date()
    left = days
    while left:
        day += timedelta(days=1)
        left -= is_workday(day)
    return local_wall(day, local.time().replace(tzinfo=None), tz)


def open_case(conn: Connection, engine: "Engine", patient_id: int, *, source: str, source_ref: str,
              summary: str, now: datetime) -> int:
    """Open a case and its task inside the caller's transaction; the case id (the existing one when
    ``source_ref`` already opened a case: a repeated survey answer opens nothing new)."""
    existing = conn.execute(select(ComplaintCase.id).where(ComplaintCase.source_ref == source_ref)).scalar()
    if existing is not None:
        return existing
    settings = engine.config.complaints
    team = engine.config.team(settings.team)
    first_due = now + settings.first_response
    resolution_due = add_workdays(now, settings.resolution_workdays, ZoneInfo(team.timezone))
    case_id = conn.execute(insert(ComplaintCase).values(
        patient_id=patient_id, source=source, source_ref=source_ref, key_id=engine.cipher.current,
        summary_enc=engine.cipher.encrypt(summary), status="open", opened_at=now, first_response_due_at=first_due,
        resolution_due_at=resolution_due).returning(ComplaintCase.id)).scalar_one()
    task_id = conn.execute(insert(StaffTask).values(
        patient_id=patient_id, kind=CASE_TASK, team=settings.team, status="open", priority="high",
        detail=f"complaint case {case_id} ({source}): carepath complaints show {case_id}",
        sla_due_at=resolution_due, first_response_due_at=first_due, escalation_level=0,
        assigned_role=team.escalation[0], created_at=now).returning(StaffTask.id)).scalar_one()
    conn.execute(update(ComplaintCase).where(ComplaintCase.id == case_id).values(task_id=task_id))
    audit(conn, actor=f"complaint:{source}", action="complaint.opened", entity="complaint", entity_id=case_id, at=now)
    return case_id


def asks_for_case(conn: Connection, engine: "Engine", payload: dict[str, Any]) -> bool:
    """Whether the survey step that invited this answer says ``detractor: complaint_case``.

    An answer to a carepath invitation names it (``touchpoint_id``): its step in the journey version the enrollment
    is pinned to decides. Else its ``journey`` and ``step`` in the installed version; an answer naming none of them
    counts when an installed journey invites to that survey with ``detractor: complaint_case``.
    """
    from carepath.definition.model import Survey
    from carepath.store.schema import Enrollment, Touchpoint

    def wants(action: Any) -> bool:
        return isinstance(action, Survey) and action.survey == payload.get("survey") \
            and action.detractor == "complaint_case"

    journey, step_id = engine.journeys.get(str(payload.get("journey"))), payload.get("step")
    if payload.get("touchpoint_id") is not None:
        row = conn.execute(select(Touchpoint.journey, Touchpoint.step, Enrollment.version).join(
            Enrollment, Enrollment.id == Touchpoint.enrollment_id).where(
            Touchpoint.id == int(payload["touchpoint_id"]))).first()
        if row is not None:
            journey, step_id = engine.journey_version(row.journey, row.version), row.step
    if step_id is not None:
        step = next((s for s in (journey.steps if journey else ()) if s.id == step_id), None)
        return step is not None and wants(step.action)
    return any(wants(s.action) for j in engine.journeys.values() for s in j.steps)


def open_from_survey(conn: Connection, engine: "Engine", patient_id: int, event_id: int,
                     payload: dict[str, Any], now: datetime) -> int | None:
    """A case for a detractor answer (``survey.completed`` with ``nps_category: detractor``) when its survey step
    says ``detractor: complaint_case``, or for every survey when ``[complaints] from_detractors`` is on."""
    if payload.get("nps_category") != "detractor":
        return None
    if not (engine.config.complaints.from_detractors or asks_for_case(conn, engine, payload)):
        return None
    summary = f"survey {payload.get('survey')}: NPS {payload.get('nps')}/10"
    return open_case(conn, engine, patient_id, source="survey", source_ref=f"event:{event_id}", summary=summary,
                     now=now)


def _case(conn: Connection, case_id: int) -> Any:
    row = conn.execute(select(ComplaintCase.__table__).where(ComplaintCase.id == case_id)).first()
    if row is None:
        raise ComplaintError(f"no complaint case {case_id}")
    return row


def acknowledge(engine: "Engine", case_id: int, who: str) -> int | None:
    """First response: ``who`` takes the case (and its task); the patient is told. The message's turn id."""
    from carepath.runtime.conversations.replies import say

    now = engine.clock.now()
    with engine.db.begin() as conn:
        case = _case(conn, case_id)
        if case.status != "open":
            raise ComplaintError(f"complaint case {case_id} is already {case.status}")
        conn.execute(update(ComplaintCase).where(ComplaintCase.id == case_id).values(
            status="acknowledged", acknowledged_at=now, acknowledged_by=who))
        if case.task_id is not None:
            conn.execute(update(StaffTask).where(StaffTask.id == case.task_id, StaffTask.status.in_(OPEN_STATUSES))
                         .values(status="claimed", claimed_by=who, claimed_at=now))
        audit(conn, actor=f"staff:{who}", action="complaint.acknowledged", entity="complaint", entity_id=case_id,
              at=now)
    return say(engine, case.patient_id, engine.config.complaints.acknowledged_message, complaint_id=case_id,
               intent="complaint_status", rule="complaint:acknowledged")


def resolve(engine: "Engine", case_id: int, who: str, resolution: str) -> list[int]:
    """Resolve the case (closing its task); the patient is told the outcome, then asked the satisfaction question."""
    from carepath.runtime.conversations.replies import say

    if not resolution.strip():
        raise ComplaintError("say how the complaint was resolved (it is sent to the patient)")
    now = engine.clock.now()
    settings = engine.config.complaints
    with engine.db.begin() as conn:
        case = _case(conn, case_id)
        if case.status == "resolved":
            raise ComplaintError(f"complaint case {case_id} is already resolved")
        conn.execute(update(ComplaintCase).where(ComplaintCase.id == case_id).values(
            status="resolved", resolved_at=now, resolved_by=who, resolution_enc=engine.cipher.encrypt(resolution),
            acknowledged_at=case.acknowledged_at or now, acknowledged_by=case.acknowledged_by or who,
            satisfaction_asked_at=now))
        if case.task_id is not None:
            conn.execute(update(StaffTask).where(StaffTask.id == case.task_id, StaffTask.status.in_(OPEN_STATUSES))
                         .values(status="done", closed_at=now, resolution=f"complaint case {case_id} resolved",
                                 claimed_by=case.acknowledged_by or who, claimed_at=case.acknowledged_at or now))
        audit(conn, actor=f"staff:{who}", action="complaint.resolved", entity="complaint", entity_id=case_id, at=now)
    text = render(settings.resolved_message, {"resolution": resolution.strip()})
    sent = [say(engine, case.patient_id, text, complaint_id=case_id, intent="complaint_status",
                rule="complaint:resolved"),
            say(engine, case.patient_id, settings.satisfaction_question, complaint_id=case_id,
                intent="complaint_status", rule="complaint:satisfaction_question")]
    return [t for t in sent if t is not None]


@dataclass(frozen=True)
class CaseBreach:
    """A deadline a case missed (recorded once per deadline)."""

    case_id: int
    deadline: str  # first_response | resolution
    task_id: int | None


def check_deadlines(engine: "Engine") -> list[CaseBreach]:
    """Record each case past a deadline (first response not given, or not resolved) once; the case's task is
    escalated along the team chain by the task SLA check."""
    now = engine.clock.now()
    found: list[CaseBreach] = []
    with engine.db.begin() as conn:
        late = conn.execute(select(ComplaintCase.__table__).where(
            ComplaintCase.status != "resolved",
            ((ComplaintCase.first_response_due_at <= now) & ComplaintCase.acknowledged_at.is_(None)
             & ComplaintCase.first_response_breached_at.is_(None))
            | ((ComplaintCase.resolution_due_at <= now) & ComplaintCase.resolution_breached_at.is_(None)))).all()
        for case in late:
            first = case.acknowledged_at is None and case.first_response_breached_at is None \
                and case.first_response_due_at <= now
            values = {"first_response_breached_at": now} if first else {}
            if case.resolution_due_at <= now and case.resolution_breached_at is None:
                values["resolution_breached_at"] = now
            conn.execute(update(ComplaintCase).where(ComplaintCase.id == case.id).values(**values))
            for deadline in ("first_response", "resolution"):
                if f"{deadline}_breached_at" in values:
                    audit(conn, actor="carepath", action="complaint.sla_breached", entity="complaint",
                          entity_id=case.id, at=now, detail={"deadline": deadline})
                    found.append(CaseBreach(case.id, deadline, case.task_id))
    return found


@dataclass(frozen=True)
class CaseView:
    """A case as staff see it (the summary masked for phone numbers)."""

    id: int
    patient_id: int
    source: str
    status: str
    summary: str
    opened_at: datetime
    first_response_due_at: datetime
    resolution_due_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolution: str | None
    first_response_breached: bool
    resolution_breached: bool
    satisfaction: int | None
    task_id: int | None
    #: what the patient was told about the case and whether it reached them (``rule: status``)
    messages: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else list(v) if isinstance(v, tuple) else v)
                for k, v in self.__dict__.items()}


def _view(engine: "Engine", row: Any) -> CaseView:
    from carepath.masking import mask_text

    decrypt = engine.cipher.decrypt
    return CaseView(row.id, row.patient_id, row.source, row.status, mask_text(decrypt(row.summary_enc) or ""),
                    row.opened_at, row.first_response_due_at, row.resolution_due_at, row.acknowledged_at,
                    row.acknowledged_by, row.resolved_at, mask_text(decrypt(row.resolution_enc) or "") or None,
                    row.first_response_breached_at is not None, row.resolution_breached_at is not None,
                    row.satisfaction, row.task_id)


def list_cases(engine: "Engine", *, status: str | None = None, limit: int = 200) -> list[CaseView]:
    """Cases, newest first (one status when given)."""
    q = select(ComplaintCase.__table__)
    if status:
        q = q.where(ComplaintCase.status == status)
    with engine.db.connect() as conn:
        return [_view(engine, r) for r in conn.execute(q.order_by(ComplaintCase.id.desc()).limit(limit)).all()]


def show_case(engine: "Engine", case_id: int) -> CaseView:
    """One case, with the messages sent to the patient about it (a failed one says why)."""
    from dataclasses import replace

    from carepath.store.conversation_schema import ConversationTurn

    with engine.db.connect() as conn:
        view = _view(engine, _case(conn, case_id))
        sent = conn.execute(select(ConversationTurn.rule, ConversationTurn.status, ConversationTurn.error).where(
            ConversationTurn.complaint_id == case_id, ConversationTurn.direction == "out")
            .order_by(ConversationTurn.id)).all()
    return replace(view, messages=tuple(f"{r.rule}: {r.status}" + (f" ({r.error})" if r.error else "")
                                        for r in sent))


def record_satisfaction(conn: Connection, patient_id: int, score: int, now: datetime) -> int | None:
    """Put a 1-5 answer on the patient's latest resolved case that asked and has none; that case's id."""
    case_id = conn.execute(select(ComplaintCase.id).where(
        ComplaintCase.patient_id == patient_id, ComplaintCase.status == "resolved",
        ComplaintCase.satisfaction_asked_at.is_not(None), ComplaintCase.satisfaction.is_(None))
        .order_by(ComplaintCase.resolved_at.desc()).limit(1)).scalar()
    if case_id is not None:
        conn.execute(update(ComplaintCase).where(ComplaintCase.id == case_id).values(satisfaction=score))
    return case_id


@dataclass(frozen=True)
class MonthCounts:
    """One month of complaints (by the day a case opened, in the hospital's time zone)."""

    month: str  # YYYY-MM
    received: int
    responded_24h: int
    resolved_7d: int


def monthly_counts(conn: Connection, since: datetime, until: datetime, tz: ZoneInfo) -> list[MonthCounts]:
    """Received, first responses within the deadline (24 h) and resolutions within it (7 working days), per month
    of the day each case opened (in ``tz``)."""
    rows = conn.execute(select(ComplaintCase.opened_at, ComplaintCase.acknowledged_at,
                               ComplaintCase.first_response_due_at, ComplaintCase.resolved_at,
                               ComplaintCase.resolution_due_at).where(
        ComplaintCase.opened_at >= since, ComplaintCase.opened_at < until)).all()
    months: dict[str, list[int]] = {}
    for opened, acked, first_due, resolved, resolution_due in rows:
        counts = months.setdefault(opened.astimezone(tz).strftime("%Y-%m"), [0, 0, 0])
        counts[0] += 1
        counts[1] += acked is not None and acked <= first_due
        counts[2] += resolved is not None and resolved <= resolution_due
    return [MonthCounts(m, *c) for m, c in sorted(months.items())]
