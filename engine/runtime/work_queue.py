"""The staff work queue: open, claim, note, close; SLA checks that escalate along a team's chain.

A task has two deadlines, both counted in its team's working time: a first
response (someone claims it) and a resolution (someone closes it). A breach
moves the task one step up the team's escalation chain (nurse -> head nurse
-> patient service), gives the next role a fresh first-response window, and
is recorded as a ``task.sla_breached`` event. At the end of the chain a
breach is still recorded once, and the task stays with the last role.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, or_, select, update

from carepath.definition.events import EventIn
from carepath.runtime.working_hours import add_working_time
from carepath.store.audit import audit
from carepath.store.statements import update_by_id
from carepath.store.schema import Patient, StaffTask, TaskNote
from carepath.teams import TeamConfig

if TYPE_CHECKING:
    from carepath.engine import Engine

OPEN_STATUSES = ("open", "claimed", "escalated")
TASK_STATUSES = (*OPEN_STATUSES, "done", "cancelled")
DEFAULT_RESPONSE_WINDOW = timedelta(hours=4)


#: what each deadline is called on the command line (the staff page says 首次响应 / 处理完成)
DEADLINE_LABELS = {"first_response": "first response", "resolution": "resolution"}


def next_deadline(claimed_by: str | None, first_response_due_at: datetime | None,
                  sla_due_at: datetime | None) -> tuple[str | None, datetime | None]:
    """The deadline a task works to now, ``(which, when)``: its first response while nobody has claimed it
    (when its team sets one), else its resolution; ``(None, None)`` when the clock has stopped."""
    if claimed_by is None and first_response_due_at is not None:
        return "first_response", first_response_due_at
    return ("resolution", sla_due_at) if sla_due_at is not None else (None, None)


class TaskError(Exception):
    """An operation the task's state does not allow (names the task and why)."""


@dataclass(frozen=True)
class Breach:
    """One SLA breach found by :func:`check_slas`."""

    task_id: int
    kind: str
    team: str
    deadline: str  # "first_response" | "resolution"
    level: int
    role: str
    patient_id: int


def new_task(team: TeamConfig, *, now: datetime, sla: timedelta, priority: str = "normal") -> dict[str, Any]:
    """The queue columns of a task opened ``now``: deadlines in working time, the first role of the chain."""
    return dict(status="open", priority=priority, sla_due_at=add_working_time(now, sla, team),
                first_response_due_at=add_working_time(now, team.first_response, team) if team.first_response else None,
                escalation_level=0, assigned_role=team.escalation[0], created_at=now)


def _task(conn: Any, task_id: int) -> Any:
    row = conn.execute(select(StaffTask.__table__).where(StaffTask.id == task_id)).first()
    if row is None:
        raise TaskError(f"no task {task_id}")
    return row


def claim(engine: "Engine", task_id: int, who: str) -> None:
    """``who`` takes the task (first response); claiming a closed task or someone else's is refused."""
    now = engine.clock.now()
    with engine.db.begin() as conn:
        task = _task(conn, task_id)
        if task.status not in OPEN_STATUSES:
            raise TaskError(f"task {task_id} is {task.status}: nothing to claim")
        if task.claimed_by and task.claimed_by != who:
            raise TaskError(f"task {task_id} is already claimed by {task.claimed_by}")
        conn.execute(update(StaffTask).where(StaffTask.id == task_id).values(
            status="claimed", claimed_by=who, claimed_at=task.claimed_at or now))
        audit(conn, actor=f"staff:{who}", action="task.claimed", entity="task", entity_id=task_id, at=now)


def add_note(engine: "Engine", task_id: int, who: str, text: str) -> None:
    """Append a note (a call's outcome, what the patient said)."""
    if not text.strip():
        raise TaskError("a note needs some text")
    now = engine.clock.now()
    with engine.db.begin() as conn:
        _task(conn, task_id)
        conn.execute(insert(TaskNote).values(task_id=task_id, author=who, text=text.strip()[:4000], at=now))
        audit(conn, actor=f"staff:{who}", action="task.note", entity="task", entity_id=task_id, at=now)


def close(engine: "Engine", task_id: int, who: str, resolution: str = "") -> None:
    """Mark the task done; an unclaimed task counts as claimed by whoever closes it."""
    now = engine.clock.now()
    with engine.db.begin() as conn:
        task = _task(conn, task_id)
        if task.status not in OPEN_STATUSES:
            raise TaskError(f"task {task_id} is already {task.status}")
        conn.execute(update(StaffTask).where(StaffTask.id == task_id).values(
            status="done", closed_at=now, resolution=resolution.strip() or None,
            claimed_by=task.claimed_by or who, claimed_at=task.claimed_at or now))
        audit(conn, actor=f"staff:{who}", action="task.closed", entity="task", entity_id=task_id, at=now)


def check_slas(engine: "Engine", teams: dict[str, TeamConfig] | None = None) -> list[Breach]:
    """Escalate every task past a deadline; each breach is stored as a ``task.sla_breached`` event."""
    now = engine.clock.now()
    teams = teams if teams is not None else engine_teams(engine)
    breaches: list[Breach] = []
    with engine.db.begin() as conn:
        due = conn.execute(select(StaffTask.__table__).where(
            StaffTask.status.in_(OPEN_STATUSES),
            or_(StaffTask.sla_due_at <= now,
                (StaffTask.first_response_due_at <= now) & StaffTask.claimed_by.is_(None)))
            .order_by(StaffTask.id).with_for_update(skip_locked=True)).all()
        for task in due:
            team = teams.get(task.team) or TeamConfig()
            unclaimed = task.claimed_by is None and task.first_response_due_at is not None \
                and task.first_response_due_at <= now
            deadline = "first_response" if unclaimed else "resolution"
            last = len(team.escalation) - 1
            level = min(task.escalation_level + 1, last)
            window = team.first_response or DEFAULT_RESPONSE_WINDOW
            fresh = add_working_time(now, window, team)
            values: dict[str, Any] = dict(status="escalated" if level > task.escalation_level else task.status,
                                          escalation_level=level, assigned_role=team.escalation[level],
                                          escalated_at=now)
            if level == task.escalation_level:  # end of the chain: record once, stop the clock
                values.update(first_response_due_at=None, sla_due_at=None)
            elif deadline == "first_response":
                values.update(first_response_due_at=fresh, claimed_by=None)
            else:
                values.update(sla_due_at=fresh, first_response_due_at=fresh, claimed_by=None)
            update_by_id(conn, StaffTask, task.id, values)
            audit(conn, actor="carepath", action="task.sla_breached", entity="task", entity_id=task.id, at=now,
                  detail={"deadline": deadline, "level": level, "role": team.escalation[level]})
            breaches.append(Breach(task.id, task.kind, task.team, deadline, level, team.escalation[level],
                                   task.patient_id))
    _record_breaches(engine, breaches, now)
    return breaches


def _record_breaches(engine: "Engine", breaches: list[Breach], now: datetime) -> None:
    """Ingest the breaches as ``task.sla_breached`` events, in one transaction (a savepoint each); the first
    that could not be applied is raised once the others are kept."""
    if not breaches:
        return
    with engine.db.connect() as conn:
        ids = sorted({b.patient_id for b in breaches})
        mrns = {pid: engine.cipher.decrypt(enc) for start in range(0, len(ids), 5000)
                for pid, enc in conn.execute(select(Patient.id, Patient.mrn_enc).where(
                    Patient.id.in_(ids[start:start + 5000])))}
    events = [_breach_event(breach, mrns[breach.patient_id], now) for breach in breaches]
    for outcome in engine.ingest_many(events):
        if isinstance(outcome, Exception):
            raise outcome


def _breach_event(breach: Breach, mrn: str, now: datetime) -> EventIn:
    return EventIn(type="task.sla_breached", source="carepath",
                   source_id=f"task:{breach.task_id}:{breach.deadline}:{breach.level}:{now.isoformat()}",
                   patient_mrn=mrn, occurred_at=now,
                   payload={"task_id": breach.task_id, "kind": breach.kind, "team": breach.team,
                            "deadline": breach.deadline, "level": breach.level, "role": breach.role})


def engine_teams(engine: "Engine") -> dict[str, TeamConfig]:
    """The teams the engine's configuration declares (none: every team uses the defaults)."""
    config = getattr(engine, "config", None)
    return dict(config.teams) if config is not None else {}


@dataclass(frozen=True)
class TaskView:
    """A task as people see it; ``patient`` is masked, ``phone`` only filled when asked for (and audited)."""

    id: int
    kind: str
    team: str
    status: str
    priority: str
    patient_id: int
    patient: str
    phone: str | None
    claimed_by: str | None
    assigned_role: str | None
    detail: str | None
    resolution: str | None
    due: datetime | None
    created_at: datetime
    escalation_level: int
    deadline: str | None = None  # which deadline ``due`` is: first_response | resolution

    def overdue(self, now: datetime) -> bool:
        return self.due is not None and self.due <= now and self.status in OPEN_STATUSES


def list_tasks(engine: "Engine", *, team: str | None = None, statuses: tuple[str, ...] = OPEN_STATUSES,
               patient_id: int | None = None, limit: int = 500,
               teams: tuple[str, ...] | None = None) -> list[TaskView]:
    """Tasks, most urgent first (priority, then the nearest deadline); contacts masked.

    ``teams`` (a staff member's scope, :meth:`carepath.staff_access.Member.visible_teams`) keeps only
    those teams' tasks; ``None``: every team."""
    q = select(StaffTask.__table__, Patient.name_enc).join(Patient, Patient.id == StaffTask.patient_id)
    if team:
        q = q.where(StaffTask.team == team)
    if teams is not None:
        q = q.where(StaffTask.team.in_(teams))
    if statuses:
        q = q.where(StaffTask.status.in_(statuses))
    if patient_id is not None:
        q = q.where(StaffTask.patient_id == patient_id)
    with engine.db.connect() as conn:
        rows = conn.execute(q.order_by(StaffTask.id).limit(limit)).all()
    rank = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
    views = [_view(engine, row, with_phone=False) for row in rows]
    far = datetime.max.replace(tzinfo=engine.clock.now().tzinfo)
    return sorted(views, key=lambda v: (rank.get(v.priority, 2), v.due or far, v.id))


def task_team(engine: "Engine", task_id: int) -> str | None:
    """The team a task belongs to (``None``: no such task), for checking access before anything else."""
    with engine.db.connect() as conn:
        return conn.execute(select(StaffTask.team).where(StaffTask.id == task_id)).scalar()


def open_task(engine: "Engine", task_id: int, who: str | None, *, via: str = "cli",
              role: str | None = None) -> tuple[TaskView, list[Any]]:
    """One task with the patient's phone in clear and its notes; ``who`` looking is audit-logged as
    ``patient.contact_viewed`` on the patient, with the task, ``role`` and ``via`` (``cli``, ``staff page``)
    (``who=None``: the caller masks the phone, so nobody saw it). Whether ``who`` may look is the
    caller's check first (:meth:`carepath.staff_access.Member.check`)."""
    with engine.db.begin() as conn:
        row = conn.execute(select(StaffTask.__table__, Patient.name_enc, Patient.phone_enc)
                           .join(Patient, Patient.id == StaffTask.patient_id).where(StaffTask.id == task_id)).first()
        if row is None:
            raise TaskError(f"no task {task_id}")
        notes = conn.execute(select(TaskNote.__table__).where(TaskNote.task_id == task_id)
                             .order_by(TaskNote.id)).all()
        if who is not None:
            audit(conn, actor=f"staff:{who}", action="patient.contact_viewed", entity="patient",
                  entity_id=row.patient_id, at=engine.clock.now(),
                  detail={"task": task_id, "via": via, **({"role": role} if role else {})})
    return _view(engine, row, with_phone=True), notes


def _view(engine: "Engine", row: Any, *, with_phone: bool) -> TaskView:
    from carepath.masking import mask_name

    deadline, due = next_deadline(row.claimed_by, row.first_response_due_at, row.sla_due_at)
    return TaskView(row.id, row.kind, row.team, row.status, row.priority, row.patient_id,
                    mask_name(engine.cipher.decrypt(row.name_enc)),
                    engine.cipher.decrypt(row.phone_enc) if with_phone else None, row.claimed_by, row.assigned_role,
                    row.detail, row.resolution, due, row.created_at, row.escalation_level, deadline)


def patient_teams(engine: "Engine", patient_id: int) -> list[str]:
    """The teams holding a task of the patient (any status): whose patient it is, for staff access."""
    with engine.db.connect() as conn:
        return sorted(conn.execute(select(StaffTask.team).where(StaffTask.patient_id == patient_id)
                                   .distinct()).scalars())
