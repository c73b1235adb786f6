"""Ingest's small shared pieces: which event types have built-in effects, storing an event, reading an anchor's
time from a payload, a stored event as applied, an ``on`` step's business identity, cancelling open tasks."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, update

from carepath.definition.events import EventIn
from carepath.definition.model import Journey, OnEvent
from carepath.store.statements import db_time
from carepath.runtime.ingest_reads import STORE_EVENT, STORE_EVENT_SQLITE
from carepath.runtime.work_queue import OPEN_STATUSES
from carepath.runtime.receipts import RECEIPT_STATUSES
from carepath.runtime.refused import reopen_refused
from carepath.store.crypto import Cipher
from carepath.store.driver import driver_fetch
from carepath.store.personal_data import reveal_payload
from carepath.store.schema import StaffTask


#: event types with an effect of the engine's own (``Ingestor._builtin_effects``, which acts on no other): the
#: only ones that may change a patient's record, portrait or consent once the event's patient has been read
BUILTIN_TYPES = frozenset({"patient.deceased", "patient.merged", "consent.changed", "patient.related_person_added",
                           "patient.related_person_removed", "message.replied", "survey.completed", "vitals.reading",
                           "patient.preferences_updated", *RECEIPT_STATUSES})


def _store_event(conn: Connection, ev: EventIn, patient_id: int | None, now: datetime,
                 received_via: str | None = None) -> int | None:
    values = dict(source=ev.source, source_id=ev.source_id, type=ev.type, patient_id=patient_id,
                  occurred_at=ev.occurred_at, received_at=now, payload=stored_payload(ev),
                  received_via=received_via[:128] if received_via else None)
    if conn.dialect.name == "sqlite":
        row = driver_fetch(conn, STORE_EVENT_SQLITE, (
            ev.source, ev.source_id, ev.type, patient_id, db_time(conn, ev.occurred_at), db_time(conn, now),
            json.dumps(values["payload"]), values["received_via"]))
        stored = row[0][0] if row else None
    else:
        stored = conn.execute(STORE_EVENT, values).scalar()
    if stored is None:  # seen before: changes nothing, unless it was refused (the source sends it corrected)
        stored = reopen_refused(conn, ev, values)
    return stored


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


def _fact(row: Any, cipher: Cipher) -> EventIn:
    """A stored event as the ingestor applies it (its patient is already resolved, its personal data decrypted)."""
    return EventIn.model_construct(type=row.type, source=row.source, source_id=row.source_id, patient_mrn="",
                                   occurred_at=row.occurred_at, payload=reveal_payload(dict(row.payload or {}), cipher))


def _business_identity(trigger: OnEvent, journey: Journey, ev: EventIn, event_id: int) -> tuple[str, str]:
    """The occurrence an ``on`` step gets for this event, and how to say it: one per business identity.

    The identity is the payload field ``once_per`` (default: the journey's key); without one, the event itself.
    """
    name = trigger.once_per or journey.key
    value = ev.payload.get(name) if name else None
    if value is None:
        return f"e{event_id}", f"event {event_id}"
    text = str(value)
    occurrence = f"k:{text}" if len(text) <= 60 else "h:" + hashlib.sha256(text.encode()).hexdigest()[:40]
    return occurrence, f"{name} {text}"


def _cancel_open_tasks(conn: Connection, reason: str, now: datetime, *, enrollment_id: int | None = None,
                       patient_id: int | None = None) -> int:
    """Cancel the open staff tasks of an enrollment (or of every journey of a patient), with the reason."""
    q = update(StaffTask).where(StaffTask.status.in_(OPEN_STATUSES))
    q = q.where(StaffTask.enrollment_id == enrollment_id) if enrollment_id is not None else \
        q.where(StaffTask.patient_id == patient_id)
    return conn.execute(q.values(status="cancelled", closed_at=now, resolution=f"cancelled: {reason}")).rowcount or 0


def _utc(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
