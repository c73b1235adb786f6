"""Issue 19: how check-in camps go: per patient streaks and completion rate, and the same per programme.

A day counts when a check-in prompt was sent to the patient that (patient-local) day; it is completed when a
check-in was recorded for the prompt's step that day (rejected ones do not count). The current streak counts
completed days back from the last prompted day; the longest is the best run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Iterable

from sqlalchemy import select

from carepath.definition.model import Checkin
from carepath.runtime.checkins import RECORDED
from carepath.runtime.policy import zone
from carepath.store.schema import CheckinRow, Enrollment, Patient, Touchpoint

if TYPE_CHECKING:
    from carepath.engine import Engine


@dataclass(frozen=True)
class PatientCheckins:
    """One patient's check-ins for one step of one enrollment."""

    patient_id: int
    journey: str
    checkin: str
    prompted: int
    completed: int
    streak: int
    longest: int

    @property
    def rate(self) -> float:
        """The completion rate, 0..1 (0 when nothing was prompted yet)."""
        return self.completed / self.prompted if self.prompted else 0.0


@dataclass(frozen=True)
class ProgrammeCheckins:
    """A check-in of a programme over all its patients."""

    journey: str
    checkin: str
    patients: int
    prompted: int
    completed: int

    @property
    def rate(self) -> float:
        return self.completed / self.prompted if self.prompted else 0.0


def _runs(days: list[date], done: set[date]) -> tuple[int, int]:
    """(current streak, longest streak) over prompted ``days`` (sorted), ``done`` the completed ones."""
    longest = run = 0
    for day in days:
        run = run + 1 if day in done else 0
        longest = max(longest, run)
    return run, longest


def patient_checkins(engine: "Engine", *, journey: str | None = None,
                     patient_id: int | None = None) -> list[PatientCheckins]:
    """Per patient, enrollment and check-in step: prompted days, completed days, streaks."""
    q = select(Enrollment.id, Enrollment.patient_id, Enrollment.journey, Enrollment.version, Patient.tz) \
        .join(Patient, Patient.id == Enrollment.patient_id)
    if journey:
        q = q.where(Enrollment.journey == journey)
    if patient_id is not None:
        q = q.where(Enrollment.patient_id == patient_id)
    found: list[PatientCheckins] = []
    with engine.db.connect() as conn:
        for enrollment in conn.execute(q.order_by(Enrollment.id)).all():
            definition = engine.journey_version(enrollment.journey, enrollment.version)
            for step in (s for s in (definition.steps if definition else []) if isinstance(s.action, Checkin)):
                tz = zone(enrollment.tz or "Asia/Shanghai")
                sent = conn.execute(select(Touchpoint.sent_at).where(
                    Touchpoint.enrollment_id == enrollment.id, Touchpoint.step == step.id,
                    Touchpoint.sent_at.is_not(None))).scalars()
                days = sorted({at.astimezone(tz).date() for at in sent})
                done = set(conn.execute(select(CheckinRow.day).where(
                    CheckinRow.enrollment_id == enrollment.id, CheckinRow.step == step.id,
                    CheckinRow.status == RECORDED)).scalars())
                streak, longest = _runs(days, done)
                found.append(PatientCheckins(enrollment.patient_id, enrollment.journey, step.action.checkin,
                                             len(days), len(done & set(days)), streak, longest))
    return found


def programme_checkins(rows: Iterable[PatientCheckins]) -> list[ProgrammeCheckins]:
    """``rows`` summed per journey and check-in."""
    totals: dict[tuple[str, str], list] = {}
    for r in rows:
        t = totals.setdefault((r.journey, r.checkin), [set(), 0, 0])
        t[0].add(r.patient_id)
        t[1] += r.prompted
        t[2] += r.completed
    return [ProgrammeCheckins(j, c, len(p), n, d) for (j, c), (p, n, d) in sorted(totals.items())]


@dataclass(frozen=True)
class CheckinView:
    """One stored check-in as people see it: the patient masked, the value only when asked for."""

    id: int
    patient: str
    journey: str
    checkin: str
    day: date
    status: str
    source: str
    value: str | None
    unit: str | None
    reason: str | None


def list_checkins(engine: "Engine", *, journey: str | None = None, patient_id: int | None = None,
                  with_values: bool = False, who: str = "cli", limit: int = 200) -> list[CheckinView]:
    """The latest check-ins, newest first; values shown only ``with_values`` (audit-logged as ``who``)."""
    from carepath.masking import mask_name
    from carepath.store.audit import audit

    q = select(CheckinRow.__table__, Patient.name_enc).join(Patient, Patient.id == CheckinRow.patient_id)
    if journey:
        q = q.where(CheckinRow.journey == journey)
    if patient_id is not None:
        q = q.where(CheckinRow.patient_id == patient_id)
    with engine.db.begin() as conn:
        rows = conn.execute(q.order_by(CheckinRow.id.desc()).limit(limit)).all()
        if with_values and rows:
            audit(conn, actor=who, action="checkins.values_viewed", entity="patient",
                  entity_id=patient_id if patient_id is not None else 0, at=engine.clock.now(),
                  detail={"journey": journey, "rows": len(rows)})
    return [CheckinView(r.id, mask_name(engine.cipher.decrypt(r.name_enc)), r.journey, r.checkin, r.day, r.status,
                        r.source, (engine.cipher.decrypt(r.value_enc) if with_values else "•••") if r.value_enc
                        else None, r.unit, r.reason if with_values or not r.reason else "value rejected (it shows with the values)")
            for r in rows]
