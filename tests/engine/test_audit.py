"""The audit log records who changed patient data, consents and journeys — without contact data."""

from __future__ import annotations

from sqlalchemy import select

from carepath.definition.dsl import after, enroll_on, journey, send, step, template
from carepath.definition.events import PatientIn
from carepath.store.schema import AuditEntry
from tests.engine import helpers as h

PHONE, NAME = "13812341234", "张三"


def _entries(engine):
    with engine.db.connect() as conn:
        return conn.execute(select(AuditEntry.actor, AuditEntry.action, AuditEntry.entity, AuditEntry.entity_id,
                                   AuditEntry.detail).order_by(AuditEntry.id)).all()


def test_patient_consent_and_journey_changes_are_audited_without_contacts(database_url, settings, clock):
    j = journey("care", enroll=enroll_on("program.joined"), templates=[template("t", "您好")],
                steps=[step("s", "post_visit", after("enrolled", "1d"), send("t", ["sms"]))])
    engine = h.make_engine(database_url, settings, clock, [j], {"sms": h.RecordingChannel("sms")})
    try:
        pid = engine.upsert_patient(PatientIn(mrn="M1", name=NAME, phone=PHONE))
        engine.upsert_patient(PatientIn(mrn="M1", name=NAME, phone="13900001111"))
        events = h.Events(clock, "M1", source="his")
        engine.ingest(events("program.joined"))
        engine.ingest(events("consent.changed", {"purpose": "marketing", "granted": False}))
        rows = _entries(engine)
    finally:
        engine.close()
    actions = [(r.actor, r.action, r.entity_id) for r in rows]
    assert ("api", "patient.created", str(pid)) in actions
    assert ("api", "patient.updated", str(pid)) in actions
    assert ("event:his", "consent.withdrawn", str(pid)) in actions
    assert ("engine", "journey.version_registered", f"care@{j.version}") in actions
    updated = next(r for r in rows if r.action == "patient.updated")
    assert "phone" in updated.detail["fields"]
    assert all(PHONE not in str(r) and NAME not in str(r) and "13900001111" not in str(r) for r in rows)
