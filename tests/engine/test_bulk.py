"""Bulk enrollment (imports, benchmarks) plans exactly what one-by-one enrollment would."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from carepath.definition.dsl import anchor, before, enroll_on, journey, send, step, template
from carepath.definition.events import PatientIn
from carepath.runtime.planner import DAILY_CAP
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


def test_patients_sharing_a_slot_are_capped_each_on_their_own_day_load(database_url, settings, clock):
    """A bulk import plans one slot once for the patients who start empty; a patient who already has messages
    that day, or who is enrolled twice in the batch, is held to the daily cap (3) as one-by-one enrollment is."""
    j = journey("visit", enroll=enroll_on("appointment.booked"),
                anchors={"appointment": anchor(["appointment.booked"], field="start")},
                templates=[template("t", "hello")],
                steps=[step("early", "pre_visit", before("appointment", "3h"), send("t", ["sms"])),
                       step("late", "pre_visit", before("appointment", "2h"), send("t", ["sms"]))])
    engine = h.make_engine(database_url, settings, clock, [j], {"sms": h.RecordingChannel("sms")})
    try:
        busy, first, second = engine.upsert_patients([PatientIn(mrn=f"C{i}", phone=f"1390000{i:04d}")
                                                      for i in range(3)])
        slot = clock.now() + timedelta(days=3, hours=6)  # 15:00 in Shanghai
        engine.enroll_many("visit", [(busy, {"appointment": slot - timedelta(hours=4)})])  # 2 that day already
        engine.enroll_many("visit", [(busy, {"appointment": slot})]
                           + [(pid, {"appointment": at}) for pid in (first, second)
                              for at in (slot, slot - timedelta(hours=1))])
        with engine.db.connect() as conn:
            tps = conn.execute(select(Touchpoint.__table__)).all()
        capped = {pid: sum(tp.reason == DAILY_CAP for tp in tps if tp.patient_id == pid)
                  for pid in (busy, first, second)}
        assert capped == {busy: 1, first: 1, second: 1}
        assert len(tps) == 12
    finally:
        engine.close()
