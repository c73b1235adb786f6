"""Ingest: store an event once, then enroll, move anchors, exit and trigger ``on`` steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from carepath.store.audit import audit
from carepath.definition.catalog import payload_refusal
from carepath.definition.context import expression_context
from carepath.definition.events import EventIn, PatientIn
from carepath.definition.expressions import evaluate
from carepath.definition.model import Category, Journey, OnEvent
from carepath.runtime.merge import merge_patients
from carepath.runtime.patients import find_patient_id, load_patients, record_consent, upsert_patient
from carepath.runtime.planner import Planned, anchor_values
from carepath.runtime.scheduling import cancel_pending, plan_new_enrollments, plan_single, replan_anchor
from carepath.store.schema import Delivery, Enrollment, Event, Patient, Touchpoint

if TYPE_CHECKING:
    from carepath.engine import Engine


@dataclass
class IngestResult:
    """What one ``Engine.ingest`` call did; ``duplicate`` events change nothing."""

    status: str  # stored | duplicate
    event_id: int | None
    enrolled: list[str] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)
    anchors: list[str] = field(default_factory=list)
    planned: int = 0
    urgent_touchpoints: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def duplicate(self) -> bool:
        return self.status == "duplicate"

    def summary(self) -> str:
        if self.duplicate:
            return "duplicate event: already stored, nothing changed"
        parts = [f"enrolled {', '.join(self.enrolled)}" if self.enrolled else "",
                 f"exited {', '.join(self.exited)}" if self.exited else "",
                 f"anchors {', '.join(self.anchors)}" if self.anchors else "",
                 f"{self.planned} touchpoint(s) planned" if self.planned else "", *self.notes]
        return "; ".join(p for p in parts if p) or "stored; no journey affected"


def _store_event(conn: Connection, ev: EventIn, patient_id: int | None, now: datetime) -> int | None:
    values = dict(source=ev.source, source_id=ev.source_id, type=ev.type, patient_id=patient_id,
                  occurred_at=ev.occurred_at, received_at=now, payload=stored_payload(ev))
    dialect = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(conn.dialect.name)
    if dialect is None:  # pragma: no cover - other databases are not supported yet
        raise RuntimeError(f"unsupported database {conn.dialect.name}")
    stmt = dialect(Event).values(**values).on_conflict_do_nothing(index_elements=["source", "source_id"])
    return conn.execute(stmt.returning(Event.id)).scalar()


def stored_payload(ev: EventIn) -> dict[str, Any]:
    """The payload as kept in events and enrollment context (see ``EventIn.stored_payload``)."""
    return ev.stored_payload()


def _anchor_time(ev: EventIn, field_name: str | None) -> datetime:
    if field_name is None:
        return ev.occurred_at
    raw = ev.payload.get(field_name)
    if raw is None:
        raise ValueError(f"payload has no {field_name!r}")
    value = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
    if value.tzinfo is None:
        raise ValueError(f"payload {field_name!r} has no time zone offset: {raw!r}")
    return value


class Ingestor:
    """Applies events for one engine inside a single transaction per event."""

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine

    def ingest(self, ev: EventIn) -> IngestResult:
        eng = self.engine
        now = eng.clock.now()
        with eng.db.begin() as conn:
            event_id = _store_event(conn, ev, None, now)
            if event_id is None:
                return IngestResult("duplicate", None)
            result = IngestResult("stored", event_id)
            patient_id = self._resolve_patient(conn, ev, now, result)
            conn.execute(update(Event).where(Event.id == event_id).values(patient_id=patient_id))
            if patient_id is None:
                result.notes.append(f"unknown patient {ev.patient_mrn!r}: stored, not applied")
            else:
                self._apply(conn, ev, event_id, patient_id, now, result)
            conn.execute(update(Event).where(Event.id == event_id).values(outcome=result.summary()))
        return result

    # -- steps of applying an event -------------------------------------------------

    def _resolve_patient(self, conn: Connection, ev: EventIn, now: datetime, result: IngestResult) -> int | None:
        """The patient the event is about; a carried record updates it, a bad one is reported, not fatal."""
        record = ev.payload.get("patient")
        if isinstance(record, dict):
            try:
                patient = PatientIn(mrn=ev.patient_mrn, **record)
            except ValidationError as exc:
                fields = ", ".join(f"patient.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                result.notes.append(f"patient record not applied ({fields})")
            else:
                return upsert_patient(conn, self.engine.cipher, patient, now, actor=f"event:{ev.source}")
        return find_patient_id(conn, self.engine.cipher, ev.patient_mrn)

    def _apply(self, conn: Connection, ev: EventIn, event_id: int, patient_id: int, now: datetime,
               result: IngestResult) -> None:
        eng = self.engine
        if refusal := payload_refusal(ev.type, ev.payload):
            result.notes.append(refusal)
            return
        patient = load_patients(conn, eng.cipher, [patient_id], now, with_addresses=False)[patient_id]
        self._builtin_effects(conn, ev, patient_id, now, result)
        if patient.deceased or ev.type == "patient.deceased":
            return
        ctx = expression_context(patient.view, event=ev.payload, now=now)
        new_ids = self._enroll(conn, ev, patient_id, patient.view.tz, ctx, now, result)
        active = conn.execute(select(Enrollment.__table__).where(Enrollment.patient_id == patient_id,
                                                                 Enrollment.status == "active")).all()
        for enrollment in active:
            journey = eng.journey_version(enrollment.journey, enrollment.version)
            if journey is None or not self._matches_key(journey, enrollment, ev):
                continue
            if enrollment.id not in new_ids:
                self._move_anchors(conn, ev, enrollment, journey, patient.view.tz, now, result)
            if ev.type in journey.exit.events and evaluate(journey.exit.condition, ctx).value:
                self._exit(conn, enrollment, f"exit event {ev.type}", now, result)
                continue
            self._on_event_steps(conn, ev, event_id, enrollment, journey, patient.view.tz, now, result)

    def _builtin_effects(self, conn: Connection, ev: EventIn, patient_id: int, now: datetime,
                         result: IngestResult) -> None:
        if ev.type == "patient.deceased":
            conn.execute(update(Patient).where(Patient.id == patient_id).values(deceased=True, updated_at=now))
            audit(conn, actor=f"event:{ev.source}", action="patient.deceased", entity="patient", entity_id=patient_id,
                  at=now)
            for enrollment in conn.execute(select(Enrollment.__table__).where(
                    Enrollment.patient_id == patient_id, Enrollment.status == "active")).all():
                self._exit(conn, enrollment, "patient deceased", now, result)
        elif ev.type == "patient.merged":
            merged = find_patient_id(conn, self.engine.cipher, str(ev.payload.get("merged_mrn") or ""))
            if merged is None:
                result.notes.append("patient.merged: no patient with merged_mrn; nothing moved")
                return
            merge_patients(conn, survivor=patient_id, merged=merged, now=now, actor=f"event:{ev.source}")
            result.notes.append("merged record's history moved to this patient")
        elif ev.type == "consent.changed":
            purpose, granted = ev.payload.get("purpose"), ev.payload.get("granted")
            if not isinstance(purpose, str) or not isinstance(granted, bool):
                result.notes.append("consent.changed needs payload purpose (text) and granted (true/false)")
                return
            record_consent(conn, patient_id, purpose, granted, channel=str(ev.payload.get("channel", "*")),
                           source=ev.source, at=ev.occurred_at)
            result.notes.append(f"consent {purpose} {'granted' if granted else 'withdrawn'}")
        elif ev.type in ("message.delivered", "message.failed"):
            provider_id = ev.payload.get("provider_id")
            status = "delivered" if ev.type == "message.delivered" else "failed"
            row = conn.execute(select(Delivery.id, Delivery.touchpoint_id).where(
                Delivery.provider_id == str(provider_id))).first() if provider_id else None
            if row is None:
                result.notes.append(f"no delivery with provider id {provider_id!r}")
                return
            conn.execute(update(Delivery).where(Delivery.id == row.id).values(status=status, updated_at=now))
            conn.execute(update(Touchpoint).where(Touchpoint.id == row.touchpoint_id,
                                                  Touchpoint.status.in_(("sent", "delivered")))
                         .values(status=status, updated_at=now))

    def _enroll(self, conn: Connection, ev: EventIn, patient_id: int, tz: str, ctx: dict[str, Any],
                now: datetime, result: IngestResult) -> set[int]:
        eng = self.engine
        created: set[int] = set()
        for journey in eng.journeys.values():
            if ev.type not in journey.enroll.events:
                continue
            check = evaluate(journey.enroll.condition, ctx)
            if not check.value:
                if check.error:
                    result.notes.append(f"{journey.name}: enrollment condition error {check.error}")
                continue
            key = str(ev.payload.get(journey.key)) if journey.key and ev.payload.get(journey.key) is not None else None
            if not self._may_enroll(conn, journey, patient_id, key):
                continue
            anchors: dict[str, str | None] = {}
            for name, rule in journey.anchors.items():
                if ev.type in rule.set_by:
                    try:
                        anchors[name] = _anchor_time(ev, rule.field).isoformat()
                    except ValueError as exc:
                        result.notes.append(f"{journey.name}: anchor {name}: {exc}")
            enrollment_id = conn.execute(insert(Enrollment).values(
                patient_id=patient_id, journey=journey.name, version=journey.version, key=key, status="active",
                anchors=anchors, context=stored_payload(ev), enrolled_at=now).returning(Enrollment.id)).scalar_one()
            eng.remember_version(conn, journey)
            result.planned += plan_new_enrollments(conn, [(enrollment_id, patient_id, tz,
                                                          anchor_values(anchors, now))], journey,
                                                   now=now, policy=eng.policy)
            result.enrolled.append(journey.name)
            created.add(enrollment_id)
        return created

    def _may_enroll(self, conn: Connection, journey: Journey, patient_id: int, key: str | None) -> bool:
        q = select(Enrollment.status).where(Enrollment.patient_id == patient_id, Enrollment.journey == journey.name)
        if journey.reentry == "per_key":
            q = q.where(Enrollment.key == key) if key is not None else q.where(Enrollment.key.is_(None))
        statuses = list(conn.execute(q).scalars())
        if journey.reentry == "never":
            return not statuses
        return "active" not in statuses

    @staticmethod
    def _matches_key(journey: Journey, enrollment: Enrollment, ev: EventIn) -> bool:
        if not journey.key or ev.payload.get(journey.key) is None:
            return True
        return enrollment.key == str(ev.payload[journey.key])

    def _move_anchors(self, conn: Connection, ev: EventIn, enrollment: Enrollment, journey: Journey, tz: str,
                      now: datetime, result: IngestResult) -> None:
        anchors = dict(enrollment.anchors or {})
        changed = []
        for name, rule in journey.anchors.items():
            if ev.type in rule.cancelled_by:
                value = None
            elif ev.type in rule.set_by:
                try:
                    value = _anchor_time(ev, rule.field).isoformat()
                except ValueError as exc:
                    result.notes.append(f"{journey.name}: anchor {name}: {exc}")
                    continue
            else:
                continue
            if anchors.get(name) != value:
                anchors[name] = value
                changed.append(name)
        if not changed:
            return
        conn.execute(update(Enrollment).where(Enrollment.id == enrollment.id).values(anchors=anchors))
        values = anchor_values(anchors, enrollment.enrolled_at)
        for name in changed:
            counts = replan_anchor(conn, enrollment_id=enrollment.id, patient_id=enrollment.patient_id, tz=tz,
                                   journey=journey, anchor=name, anchors=values, now=now, policy=self.engine.policy)
            state = "cancelled" if anchors[name] is None else "moved"
            result.anchors.append(f"{journey.name}.{name} {state} ({counts['moved']} moved, "
                                  f"{counts['cancelled']} cancelled, {counts['added']} added)")

    def _exit(self, conn: Connection, enrollment: Enrollment, reason: str, now: datetime,
              result: IngestResult) -> None:
        conn.execute(update(Enrollment).where(Enrollment.id == enrollment.id).values(
            status="exited", exited_at=now, exit_reason=reason))
        cancel_pending(conn, enrollment.id, f"cancelled: {reason}", now)
        result.exited.append(enrollment.journey)

    def _on_event_steps(self, conn: Connection, ev: EventIn, event_id: int, enrollment: Enrollment,
                        journey: Journey, tz: str, now: datetime, result: IngestResult) -> None:
        planned = [Planned(step=s, occurrence=f"e{event_id}", planned_at=ev.occurred_at + s.trigger.delay,
                           due_at=ev.occurred_at + s.trigger.delay, event_id=event_id)
                   for s in journey.steps if isinstance(s.trigger, OnEvent) and s.trigger.event == ev.type]
        if not planned:
            return
        ids = plan_single(conn, enrollment_id=enrollment.id, patient_id=enrollment.patient_id, tz=tz,
                          journey=journey, planned=planned, now=now, policy=self.engine.policy)
        result.planned += len(ids)
        urgent = {s.step.id for s in planned if s.step.category is Category.urgent and s.step.trigger.delay.total_seconds() == 0}
        if urgent:
            result.urgent_touchpoints.extend(conn.execute(select(Touchpoint.id).where(
                Touchpoint.id.in_(ids), Touchpoint.step.in_(urgent))).scalars())

