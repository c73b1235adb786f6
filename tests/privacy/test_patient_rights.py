"""A patient's rights (issue 22, point 4): export everything held, then erase it; reports keep their totals."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
from sqlalchemy import inspect, select, text

from carepath.connectors.outbox import OutboxChannel, OutboxConfig
from carepath.connectors.surveys.questionnaires import load_questionnaires
from carepath.connectors.surveys.responses import SurveyTarget, record_response
from carepath.content_report import content_report
from carepath.definition.dsl import anchor, before, enroll_on, exit_on, journey, on, send, step, task, template
from carepath.definition.events import EventIn, PatientIn
from carepath.privacy.erase import erase_patient
from carepath.privacy.export import NoSuchPatient, export_patient
from carepath.privacy.kinds import kinds
from carepath.reporting import step_summary
from carepath.runtime.work_queue import add_note
from carepath.store.personal_data import reveal_payload
from carepath.store.schema import AuditEntry, Event, Patient, StaffTask, Touchpoint
from carepath.survey_report import survey_report

from tests.engine import helpers as h

NAME, PHONE, MRN = "王小明", "13912345678", "MRN-778899"
OTHER = PatientIn(mrn="MRN-111222", name="李四", phone="13800001111")

VISIT = journey(
    "visit", enroll=enroll_on("appointment.booked"), key="appointment_id", reentry="per_key",
    exit=exit_on("appointment.cancelled"),
    anchors={"appointment": anchor(["appointment.booked", "appointment.rescheduled"], field="start",
                                   cancelled_by=["appointment.cancelled"])},
    templates=[template("confirm", "{{ patient.name }}您好，已预约 {{ anchors.appointment | datetime }}"),
               template("remind", "提醒：{{ anchors.appointment | datetime }} 就诊")],
    steps=[step("confirm", "pre_visit", on("appointment.booked"), send("confirm", ["sms"]), category="transactional"),
           step("remind", "pre_visit", before("appointment", "1d", at="10:00"), send("remind", ["sms"])),
           step("call", "pre_visit", on("appointment.booked"), task("call_patient"))])


@pytest.fixture
def eng(database_url, settings, clock) -> Iterator[Any]:
    engine = h.make_engine(database_url, settings, clock, [VISIT],
                           {"sms": OutboxChannel("sms", OutboxConfig(address="phone"))})
    try:
        yield engine
    finally:
        engine.close()


def _demo_patient(eng, clock) -> int:
    """A patient with every kind of data this installation holds, and a second patient beside them."""
    pid = eng.upsert_patient(PatientIn(mrn=MRN, name=NAME, phone=PHONE, openid="oWang123456", sex="M",
                                       birth_date="1950-03-04", conditions=["I10"]))
    eng.upsert_patient(OTHER)
    start = (clock.now() + timedelta(days=3)).isoformat()
    for mrn in (MRN, OTHER.mrn):
        ev = h.Events(clock, mrn)
        eng.ingest(ev("appointment.booked", {"appointment_id": f"{mrn}-A", "start": start}, source_id=f"b-{mrn}"))
        eng.ingest(ev("consent.changed", {"purpose": "marketing", "granted": True}, source_id=f"c-{mrn}"))
    ev = h.Events(clock, MRN)
    eng.ingest(ev("message.replied", {"text": f"我是{NAME}，电话 {PHONE}"}, source_id="r-1"))
    eng.ingest(ev("patient.updated", {"patient": {"name": NAME, "phone": PHONE}}, source_id="u-1"))
    eng.ingest(ev("patient.related_person_added", {"ref": "NK1/1", "relationship": "daughter", "contact": {
        "name": f"{NAME}之女", "phone": "13900001111"}}, source_id="f-1"))
    eng.ingest(ev("vitals.reading", {"kind": "systolic_bp", "value": 150, "unit": "mmHg", "device_id": "cuff-1"},
                  source_id="v-1"))
    eng.dispatch_due()
    clock.advance(timedelta(days=2, hours=1))
    eng.dispatch_due()
    with eng.db.connect() as conn:
        task_id = conn.execute(select(StaffTask.id).where(StaffTask.patient_id == pid,
                                                          StaffTask.kind == "call_patient")).scalar_one()
        tp = conn.execute(select(Touchpoint.id).where(Touchpoint.patient_id == pid, Touchpoint.step == "confirm")
                          ).scalar_one()
    add_note(eng, task_id, "nurse-li", f"已电话联系{NAME}（{PHONE}）")
    record_response(eng, load_questionnaires()["outpatient-satisfaction"],
                    {"nps": 9, "satisfaction": 5, "comment": f"{NAME}希望缩短候诊"},
                    SurveyTarget(pid, tp, "visit", "confirm"), provider="builtin", external_id="resp-1")
    return pid


def _reports(eng, clock) -> dict[str, Any]:
    since, until = clock.now() - timedelta(days=30), clock.now() + timedelta(days=1)
    with eng.db.connect() as conn:
        return {"steps": [repr(r) for r in step_summary(conn)],
                "surveys": survey_report(conn, [VISIT], since, until).as_dict(),
                "content": content_report(conn, since, until, eng.config.segments).as_dict()}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
        if value.startswith(("{", "[")):
            try:
                yield from _strings(json.loads(value))
            except ValueError:
                pass
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
    elif value is not None:
        yield str(value)


def personal_values_left(eng, values: tuple[str, ...]) -> list[str]:
    """Every table of the database, every row and column, plaintext and decrypted: where ``values`` appear."""
    found = []
    with eng.db.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f"SELECT * FROM {table}")).mappings():
                for column, value in row.items():
                    for s in _strings(value):
                        try:
                            plain = eng.cipher.decrypt(s)
                        except Exception:  # not a ciphertext of this store
                            plain = None
                        texts = [s] + ([plain] if plain else [])
                        for t in texts:
                            try:
                                t = json.dumps(reveal_payload(json.loads(t), eng.cipher), ensure_ascii=False)
                            except Exception:
                                pass
                            hits = [v for v in values if v in t]
                            if hits:
                                found.append(f"{table}.{column}: {hits}")
    return found


def test_export_holds_every_kind_and_erasure_leaves_no_personal_value(eng, clock):
    pid = _demo_patient(eng, clock)
    with eng.db.begin() as conn:
        doc = export_patient(conn, eng.cipher, pid, now=clock.now(), actor="cli:dpo")
    manifest, data = doc["manifest"], doc["data"]
    assert set(manifest["kinds"]) == {k.name for k in kinds()} == set(data)
    counts = {k: v["count"] for k, v in manifest["kinds"].items()}
    assert all(counts[k] >= 1 for k in ("record", "consents", "events", "enrollments", "touchpoints", "deliveries",
                                        "messages", "staff_tasks", "task_notes", "survey_answers", "portrait",
                                        "portrait_counts", "related_persons", "conversations", "readings")), counts
    assert data["related_persons"][0]["name"] == f"{NAME}之女" and data["readings"][0]["value"] == "150.0"
    assert all(counts[k] == len(rows) for k, rows in data.items())
    [record] = data["record"]
    assert (record["name"], record["phone"], record["mrn"], record["openid"]) == (NAME, PHONE, MRN, "oWang123456")
    assert "mrn_hash" not in record and "name_enc" not in record
    replies = [e for e in data["events"] if e["type"] == "message.replied"]
    assert replies[0]["payload"]["text"] == f"我是{NAME}，电话 {PHONE}", "payloads are decrypted in the export"
    assert {c["purpose"] for c in data["consents"]} == {"marketing"}
    assert any(NAME in m["body"] for m in data["messages"])
    assert data["survey_answers"][0]["nps"] == 9 and data["task_notes"][0]["author"] == "nurse-li"
    assert data["portrait"][0]["facts"], "the portrait's facts are decrypted"
    assert all(r["patient_id"] == pid for r in data["touchpoints"]), "nothing of the other patient"
    json.dumps(doc, default=str)  # JSON-ready

    assert personal_values_left(eng, (NAME, PHONE, MRN)), "the scan finds the patient before erasure"
    before = _reports(eng, clock)
    with eng.db.begin() as conn:
        report = erase_patient(eng.db and conn, pid, now=clock.now(), actor="cli:dpo")
    assert report.rows["record"] == 1 and report.rows["consents"] == 1 and "erased" in report.summary()
    assert personal_values_left(eng, (NAME, PHONE, MRN)) == []
    assert _reports(eng, clock) == before, "report totals are unchanged"
    assert personal_values_left(eng, (OTHER.name, OTHER.phone, OTHER.mrn)), "the other patient is untouched"

    with eng.db.connect() as conn:
        actions = conn.execute(select(AuditEntry.action, AuditEntry.actor).where(
            AuditEntry.entity == "patient", AuditEntry.entity_id == str(pid))).all()
    assert ("patient.exported", "cli:dpo") in actions and ("patient.erased", "cli:dpo") in actions

    with eng.db.begin() as conn:
        again = erase_patient(conn, pid, now=clock.now(), actor="cli:dpo")
    assert again.already and "already erased" in again.summary()


def test_later_events_for_an_erased_patient_are_refused_and_keep_nothing(eng, clock):
    pid = _demo_patient(eng, clock)
    with eng.db.begin() as conn:
        erase_patient(conn, pid, now=clock.now(), actor="cli:dpo")
    with eng.db.connect() as conn:
        patients_before = conn.execute(select(Patient.id)).all()
    later = EventIn(type="appointment.booked", source="his", source_id="late-1", patient_mrn=MRN,
                    occurred_at=clock.now(), payload={"appointment_id": "A9", "start": clock.now().isoformat(),
                                                      "patient": {"name": NAME, "phone": PHONE}})
    result = eng.ingest(later)
    assert result.state == "refused" and result.enrolled == []
    assert "erased" in result.summary()
    with eng.db.connect() as conn:
        row = conn.execute(select(Event.status, Event.outcome, Event.patient_id).where(Event.id == result.event_id)
                           ).one()
        assert conn.execute(select(Patient.id)).all() == patients_before, "not registered again"
    assert row.status == "refused" and "erased" in row.outcome and row.patient_id == pid
    eng.upsert_patient(PatientIn(mrn=MRN, name=NAME, phone=PHONE))  # a record import names the MRN again
    assert personal_values_left(eng, (NAME, PHONE, MRN)) == []
    assert eng.dispatch_due().sent == 0


def test_export_of_an_unknown_patient_names_it(eng, clock):
    with eng.db.begin() as conn, pytest.raises(NoSuchPatient, match="no patient with id 999"):
        export_patient(conn, eng.cipher, 999, now=clock.now(), actor="cli")


def test_a_table_joins_export_and_erasure_with_one_registration(eng, clock, monkeypatch):
    """How family members, conversations and check-ins join: one ``register`` call, nothing else to change."""
    from carepath.privacy import kinds as registry
    from carepath.privacy.kinds import DataKind, register
    from carepath.store.schema import Horizon

    monkeypatch.setattr(registry, "KINDS", list(registry.KINDS))
    register(DataKind("planning_horizons", Horizon.__table__, lambda s: Horizon.patient_id == s.patient_id,
                      erase="delete", description="how far open-ended steps are planned"))
    pid = _demo_patient(eng, clock)
    with eng.db.begin() as conn:
        conn.execute(Horizon.__table__.insert().values(enrollment_id=1, step="remind", patient_id=pid,
                                                       planned_until=clock.now(), updated_at=clock.now()))
        doc = export_patient(conn, eng.cipher, pid, now=clock.now(), actor="cli")
        assert doc["manifest"]["kinds"]["planning_horizons"]["count"] == 1
        assert erase_patient(conn, pid, now=clock.now(), actor="cli").rows["planning_horizons"] == 1
        assert conn.execute(select(Horizon.step)).all() == []
