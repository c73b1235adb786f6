"""A booking refused for a bad ``start`` is kept for operators, never counted as applied, and the HIS's
correction (a reschedule with a valid start, or the booking sent again) starts the patient's reminders."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from carepath.definition.dsl import on, send, step, template
from carepath.runtime.maintenance import publish_alerts
from carepath.store.schema import Event, OperatorAlert, Patient

from tests.engine import helpers as h
from tests.engine.test_event_semantics import SH, edited, slot, sms  # noqa: F401 - sms is a fixture
from tests.engine.test_event_semantics import VISIT as BASE_VISIT

# the semantics tests' visit journey, with a notice on a reschedule instead of the confirmation and report
VISIT = edited(BASE_VISIT, templates={**BASE_VISIT.templates,
                                      "moved": template("moved", "您的预约已改到 {{ anchors.appointment | datetime }}")},
               steps=[BASE_VISIT.step("remind"), step("moved", "pre_visit", on("appointment.rescheduled"),
                                                       send("moved", ["sms"]), category="transactional")])

BAD_STARTS = {
    "missing": {},
    "words": {"start": "next tuesday morning"},
    "naive time": {"start": "2026-05-11T14:00:00"},
    "a mapping": {"start": {"date": "2026-05-11", "time": "14:00"}},
}


@pytest.fixture
def eng(database_url, settings, clock, sms):  # noqa: F811 - sms: the recording channel of the semantics tests
    with h.running_engine(database_url, settings, clock, [VISIT], {"sms": sms}) as engine:
        yield engine


def _events(eng) -> dict[str, tuple[str, str]]:
    with eng.db.connect() as conn:
        return {r.source_id: (r.type, r.status) for r in conn.execute(select(Event.source_id, Event.type, Event.status))}


@pytest.mark.parametrize("bad", sorted(BAD_STARTS))
def test_a_refused_booking_is_refused_not_applied_and_told_to_operators(eng, clock, bad):
    ev = h.Events(clock)
    result = eng.ingest(ev("appointment.booked", {"appointment_id": "A1", **BAD_STARTS[bad]}, source_id="B1"))
    assert result.state == "refused" and result.enrolled == [] and h.enrollments(eng) == []
    assert "payload field 'start'" in result.summary()
    assert _events(eng) == {"B1": ("appointment.booked", "refused")}
    with eng.db.connect() as conn:
        [alert] = conn.execute(select(OperatorAlert.kind, OperatorAlert.source, OperatorAlert.code,
                                      OperatorAlert.detail)).all()
    assert alert[:3] == ("carepath.event.refused", "his", "appointment.booked")
    assert "source id B1" in alert.detail and "carepath events list --status refused" in alert.detail
    [notice] = publish_alerts(eng).notices  # the maintenance flow publishes it as a Prefect event
    assert notice.event == "carepath.event.refused"


def test_the_his_reschedule_with_a_valid_start_starts_the_episode(eng, clock, sms):
    ev = h.Events(clock)
    eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": "明天上午"}, source_id="B1"))
    moved = eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A1", "start": slot(11)}, source_id="R1"))
    assert moved.state == "applied" and moved.enrolled == ["visit"] and moved.held == []
    assert "episode A1 started by this appointment.rescheduled (its refused booking superseded)" in moved.summary()
    assert _events(eng) == {"B1": ("appointment.booked", "superseded"), "R1": ("appointment.rescheduled", "applied")}
    [enrollment] = h.enrollments(eng)
    assert (enrollment.key, datetime.fromisoformat(enrollment.anchors["appointment"])) == ("A1",
                                                                                         datetime.fromisoformat(slot(11)))
    clock.set(datetime(2026, 5, 10, 18, 0, tzinfo=SH))
    eng.dispatch_due()
    assert [m.body for m in sms.messages] == ["您的预约已改到 2026-05-11 14:00", "提醒：就诊时间 2026-05-11 14:00"]


def test_the_booking_sent_again_corrected_is_applied_and_a_plain_duplicate_is_not(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": "2026-05-11T14:00:00"}, source_id="B1"))
    fixed = eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": slot(11)}, source_id="B1"))
    assert fixed.status == "stored" and fixed.state == "applied" and fixed.enrolled == ["visit"]
    assert _events(eng) == {"B1": ("appointment.booked", "applied")}
    again = eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": slot(11)}, source_id="B1"))
    assert again.duplicate and len(h.enrollments(eng)) == 1


def test_a_new_booking_for_the_episode_supersedes_the_refused_one(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("appointment.booked", {"appointment_id": "A1"}, source_id="B1"))
    assert eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": slot(11)},
                         source_id="B2")).enrolled == ["visit"]
    assert _events(eng)["B1"] == ("appointment.booked", "superseded")


def test_a_reschedule_of_another_episode_does_not_start_one(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("appointment.booked", {"appointment_id": "A1"}, source_id="B1"))
    other = eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A2", "start": slot(11)}, source_id="R2"))
    assert other.state == "held" and h.enrollments(eng) == []
    assert _events(eng)["B1"] == ("appointment.booked", "refused")


def test_a_booking_refused_before_its_patient_was_registered_is_repaired_all_the_same(eng, clock):
    from carepath.definition.events import PatientIn

    ev = h.Events(clock, mrn="M2")
    booked = eng.ingest(ev("appointment.booked", {"appointment_id": "A9", "patient": {"name": "李四"}}, source_id="B9"))
    assert booked.state == "refused"
    assert len(h._rows(eng, Patient)) == 1  # its patient record was not applied either: nothing of it is
    eng.upsert_patient(PatientIn(mrn="M2", name="李四"))
    assert _events(eng)["B9"] == ("appointment.booked", "refused")
    fixed = eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A9", "start": slot(12)}, source_id="R9"))
    assert fixed.enrolled == ["visit"] and _events(eng)["B9"] == ("appointment.booked", "superseded")
