"""Through the engine: payloads checked against the catalogue, the stock journey's guide, bounded templates."""

from __future__ import annotations

import time  # process_time: CPU spent here, not the load of other processes on a shared machine
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from carepath.definition.dsl import after, enroll_on, journey, send, step, template
from carepath.definition.events import PatientIn
from carepath.definition.journey_files import load_journey_file
from carepath.journeys import HERE
from carepath.runtime.policy import Policy
from carepath.store.schema import Event

from tests.engine import helpers as h
from tests.engine.test_bounded_sandbox import HOSTILE

SH = ZoneInfo("Asia/Shanghai")


def booking(start: datetime, **extra) -> dict:
    return {"appointment_id": "A1", "start": start.isoformat(), "department": "内分泌科", **extra}


@pytest.fixture
def stock(database_url, settings, clock):
    channels = {"wechat": h.RecordingChannel("wechat", address_kind="openid"), "sms": h.RecordingChannel("sms")}
    eng = h.make_engine(database_url, settings, clock, [load_journey_file(HERE / "outpatient-visit.yaml")], channels)
    eng.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234"))
    eng.upsert_patient(PatientIn(mrn="M2", name="李四", phone="13912341234"))
    yield eng, channels["sms"]
    eng.close()


def test_the_preparation_guide_is_sent_for_a_booking_without_fasting(stock, clock):
    eng, sms = stock
    clock.set(datetime(2026, 5, 1, 9, 0, tzinfo=SH))
    start = datetime(2026, 5, 5, 10, 0, tzinfo=SH)
    assert eng.ingest(h.Events(clock, "M1")("appointment.booked", booking(start))).enrolled == ["outpatient-visit"]
    fasting = booking(start, fasting=True) | {"appointment_id": "A2"}
    assert eng.ingest(h.Events(clock, "M2")("appointment.booked", fasting)).enrolled == ["outpatient-visit"]
    clock.set(datetime(2026, 5, 4, 18, 0, tzinfo=SH))
    eng.dispatch_due()
    guides = {m.address: m.body for m in sms.messages if m.template == "visit_guide"}
    assert guides == {
        "13812341234": "就诊指南：请携带身份证和医保卡，提前30分钟到内分泌科候诊。",
        "13912341234": "就诊指南：请携带身份证和医保卡，提前30分钟到内分泌科候诊。检查前请空腹8小时。",
    }
    assert [tp.status for tp in h.touchpoints(eng, step="preparation-guide")] == ["sent", "sent"]


def test_a_payload_that_does_not_fit_its_type_is_stored_not_applied(stock, clock):
    eng, _ = stock
    bad = h.Events(clock, "M1")("appointment.booked", {"appointment_id": "A1", "start": "next tuesday"})
    result = eng.ingest(bad)
    assert result.status == "stored" and result.enrolled == [] and h.enrollments(eng) == []
    with eng.db.connect() as conn:
        outcome = conn.execute(select(Event.outcome).where(Event.id == result.event_id)).scalar_one()
    assert outcome.startswith("stored, not applied: appointment.booked payload field 'start': Input should be a valid "
                              "datetime")
    missing = eng.ingest(h.Events(clock, "M1")("consent.changed", {"granted": True}))
    assert "payload field 'purpose': Field required" in missing.summary()


def test_hostile_templates_fail_their_touchpoint_fast_with_the_reason(database_url, settings, clock):
    sms = h.RecordingChannel("sms")
    hostile = {f"h{i}": (body, reasons.split("|")) for i, (body, reasons) in enumerate(HOSTILE.items())}
    j = journey("hostile", enroll=enroll_on("appointment.booked"),
                templates=[template(name, body) for name, (body, _) in hostile.items()] + [template("ok", "您好")],
                steps=[step(name, "pre_visit", after("enrolled"), send(name, ["sms"])) for name in [*hostile, "ok"]])
    eng = h.make_engine(database_url, settings, clock, [j], {"sms": sms}, policy=Policy(daily_cap=100))
    try:
        eng.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234"))
        eng.ingest(h.Events(clock)("appointment.booked", booking(clock.now() + timedelta(days=3))))
        started = time.process_time()
        eng.dispatch_due()
        elapsed = time.process_time() - started
        rows = {tp.step: tp for tp in h.touchpoints(eng)}
        for name, (_, reasons) in hostile.items():
            assert rows[name].status == "failed", name
            assert rows[name].reason.startswith(f"failed: template {name}: "), rows[name].reason
            assert any(r in rows[name].reason for r in reasons), rows[name].reason
        assert rows["ok"].status == "sent" and [m.body for m in sms.messages] == ["您好"]
        assert elapsed < 0.25 * len(hostile)  # each render stops at its limit
    finally:
        eng.close()
