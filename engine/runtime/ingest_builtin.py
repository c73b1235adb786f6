"""The engine's own effects of built-in event types (a death, a merge, consent, replies, surveys, readings,
preferences, family, receipts): a part of :class:`carepath.runtime.ingest.Ingestor`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select, update

from carepath.store.audit import audit
from carepath.definition.events import EventIn
from carepath.runtime.ingest_result import IngestResult
from carepath.runtime.merge import merge_patients
from carepath.runtime.patients import find_patient_id, record_consent
from carepath.runtime.family import apply_family_event  # issue 19: family and guardians
from carepath.runtime.receipts import RECEIPT_STATUSES, apply_receipt, receipt_status
from carepath.runtime.complaints import open_from_survey  # issue 21
from carepath.runtime.conversations.turns import record_turn  # issue 21
from carepath.runtime.unsubscribe import UNSUBSCRIBE, apply_reply
from carepath.runtime.checkins import CHECKIN_INTENT, record_device_reading, record_reply  # issue 19
from carepath.runtime.readings import record_reading  # issue 19
from carepath.runtime.reading_alerts import evaluate as evaluate_readings  # issue 19
from carepath.store.schema import Enrollment, Event, Patient

from carepath.runtime.ingest_facts import BUILTIN_TYPES, _cancel_open_tasks

if TYPE_CHECKING:
    from carepath.engine import Engine


class BuiltinEffects:
    """Built-in event types' effects; mixed into :class:`~carepath.runtime.ingest.Ingestor`."""

    engine: "Engine"

    def _builtin_effects(self, conn: Connection, ev: EventIn, event_id: int, patient_id: int, now: datetime,
                         result: IngestResult) -> bool:
        """Apply what the engine itself does for a built-in type; whether that may have changed the patient's
        record, consent or portrait (False: what was read of them before is still current)."""
        if ev.type not in BUILTIN_TYPES:
            return False
        if ev.type == "survey.completed":  # issue 21: a detractor answer opens a complaint case (and its task)
            if open_from_survey(conn, self.engine, patient_id, event_id, dict(ev.payload), now) is not None:
                result.notes.append("detractor answer: complaint case opened")
            return False
        if ev.type == "message.replied" and not ev.payload.get("related_person"):  # a relative's: family below
            return self._reply_effects(conn, ev, event_id, patient_id, result)
        self._other_effects(conn, ev, event_id, patient_id, now, result)
        return True

    def _reply_effects(self, conn: Connection, ev: EventIn, event_id: int, patient_id: int,
                       result: IngestResult) -> bool:
        """A reply: an unsubscribe word withdraws consent, a check-in answer is recorded, and the text becomes a
        conversation turn; whether consent or a check-in was recorded."""
        changed = True
        withdrawal = apply_reply(conn, self.engine, ev, patient_id, ev.occurred_at)
        if withdrawal is not None:
            conn.execute(update(Event).where(Event.id == event_id).values(intent=UNSUBSCRIBE))
            result.notes.append(withdrawal.summary())
        elif record_reply(conn, self.engine, patient_id, str(ev.payload.get("text") or ""), ev.occurred_at,
                          event_id=event_id):  # issue 19: 打卡, 6.1 ...
            conn.execute(update(Event).where(Event.id == event_id).values(intent=CHECKIN_INTENT))
            result.notes.append("check-in recorded")
        else:
            changed = False
        # issue 21: the text becomes a conversation turn, routed right after the commit
        result.turns.append(record_turn(conn, self.engine, ev, event_id, patient_id))
        return changed

    def _other_effects(self, conn: Connection, ev: EventIn, event_id: int, patient_id: int, now: datetime,
                       result: IngestResult) -> None:
        if ev.type == "patient.deceased":
            conn.execute(update(Patient).where(Patient.id == patient_id).values(deceased=True, updated_at=now))
            audit(conn, actor=f"event:{ev.source}", action="patient.deceased", entity="patient", entity_id=patient_id,
                  at=now)
            for enrollment in conn.execute(select(Enrollment.__table__).where(
                    Enrollment.patient_id == patient_id, Enrollment.status == "active")).all():
                self._exit(conn, enrollment, "patient deceased", now, result)
            # nobody is asked to contact a deceased patient, whatever opened the task
            result.cancelled_tasks += _cancel_open_tasks(conn, "patient deceased", now, patient_id=patient_id)
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
            extra = {k: ev.payload[k] if isinstance(ev.payload.get(k), str) else None
                     for k in ("via", "recorded_by", "reason")}
            record_consent(conn, patient_id, purpose, granted, channel=str(ev.payload.get("channel", "*")),
                           source=ev.source, at=ev.occurred_at, **extra)
            result.notes.append(f"consent {purpose} {'granted' if granted else 'withdrawn'}")
        elif note := apply_family_event(conn, self.engine, ev, patient_id, now):  # issue 19: family
            if ev.payload.get("related_person") and "unsubscribe" in note:
                conn.execute(update(Event).where(Event.id == event_id).values(intent=UNSUBSCRIBE))
            result.notes.append(note)
        elif ev.type == "vitals.reading":  # issue 19: stored (or rejected with the reason), then alerts
            reading = record_reading(conn, self.engine, ev, event_id, patient_id, now)
            result.notes.append(f"reading {reading.status}" + (f": {reading.reason}" if reading.reason else ""))
            evaluate_readings(conn, self.engine, patient_id, reading, event_id, now, result)
            if reading.status == "accepted" and record_device_reading(conn, self.engine, patient_id, reading.measure,
                                                                      reading.measured_at, event_id):
                result.notes.append("check-in recorded")
        elif ev.type == "patient.preferences_updated":  # issue 19
            values = {k: v for k, v in ev.payload.items() if k != "patient"}
            self._preferences(conn, patient_id, values, now, f"event:{ev.source}", result)
        elif ev.type in RECEIPT_STATUSES:
            provider_id = ev.payload.get("provider_id")
            if not provider_id:
                result.notes.append("receipt without provider_id: not applied")
            elif not apply_receipt(conn, str(provider_id), receipt_status(ev.type, ev.payload), now):
                result.notes.append(f"no delivery with provider id {provider_id!r} yet: "
                                    "the receipt is kept and applied when it is recorded")
