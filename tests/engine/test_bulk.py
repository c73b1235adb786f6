"""Bulk enrollment (imports, benchmarks) plans exactly what one-by-one enrollment would."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from carepath.definition.dsl import anchor, before, enroll_on, journey, send, step, template
from carepath.definition.events import PatientIn
from carepath.store.schema import Enrollment, Touchpoint
from tests.engine import helpers as h


def test_enroll_many_pins_each_patient_to_its_own_enrollment_and_anchors(database_url, settings, clock):
    j = journey("visit", enroll=enroll_on("appointment.booked"),
                anchors={"appointment": anchor(["appointment.booked"], field="start")},
                templates=[template("t", "{{ event.department }}")],
                steps=[step("guide", "pre_visit", before("appointment", "1d", at="18:00"), send("t", ["sms"])),
                       step("remind", "pre_visit", before("appointment", "2h"), send("t", ["sms"]))])
    engine = h.make_engine(database_url, settings, clock, [j], {"sms": h.RecordingChannel("sms")})
    try:
        ids = engine.upsert_patients([PatientIn(mrn=f"B{i}", phone=f"1380000{i:04d}") for i in range(30)])
        slots = {pid: clock.now() + timedelta(days=3, hours=i % 8) for i, pid in enumerate(ids)}
        planned = engine.enroll_many("visit", [(pid, {"appointment": slots[pid]}) for pid in ids],
                                     context={"department": "眼科"})
        with engine.db.connect() as conn:
            enrollments = {e.id: e for e in conn.execute(select(Enrollment.__table__))}
            tps = conn.execute(select(Touchpoint.__table__)).all()
        assert planned == len(tps) == 60
        for tp in tps:
            e = enrollments[tp.enrollment_id]
            assert e.patient_id == tp.patient_id and e.context == {"department": "眼科"}
            if tp.step == "remind":
                assert tp.planned_at == slots[tp.patient_id] - timedelta(hours=2)
        clock.set(max(slots.values()))
        report = engine.dispatch_due()
        assert report.sent == 60 and {m.body for m in engine.channels["sms"].messages} == {"眼科"}
    finally:
        engine.close()
