"""Events as hospitals send them: resends, late and out-of-order changes, events that arrive too early."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from carepath.definition.dsl import (after, anchor, before, enroll_on, exit_on, journey, on, send, step, task,
                                     template)
from carepath.definition.events import PatientIn
from carepath.definition.journey_files import journey_to_yaml, read_journey_text
from carepath.definition.model import Journey
from carepath.reporting import timeline_tables
from carepath.runtime.held import expire_held
from carepath.store.schema import Event

from tests.engine import helpers as h

SH = ZoneInfo("Asia/Shanghai")

VISIT = journey(
    "visit", enroll=enroll_on("appointment.booked"), key="appointment_id", reentry="per_key",
    exit=exit_on("appointment.cancelled"),
    anchors={"appointment": anchor(["appointment.booked", "appointment.rescheduled"], field="start",
                                   cancelled_by=["appointment.cancelled"])},
    templates=[template("confirm", "已预约 {{ anchors.appointment | datetime }}"),
               template("remind", "提醒：就诊时间 {{ anchors.appointment | datetime }}"),
               template("report", "报告 {{ event.report_id | default('') }} 已出")],
    steps=[
        step("confirm", "pre_visit", on("appointment.booked"), send("confirm", ["sms"]), category="transactional"),
        step("remind", "pre_visit", before("appointment", "1d", at="18:00"), send("remind", ["sms"]),
             category="transactional"),
        step("report", "in_visit", on("report.ready", once_per="report_id"), send("report", ["sms"]),
             category="transactional"),
    ])


def edited(j: Journey, **changes) -> Journey:
    """A changed copy with its own version (``model_copy`` would keep the cached hash)."""
    return Journey.model_validate({**{name: getattr(j, name) for name in Journey.model_fields}, **changes})


def slot(day: int, hh: int = 14) -> str:
    return datetime.combine(date(2026, 5, day), time(hh), tzinfo=SH).isoformat()


@pytest.fixture
def sms() -> h.RecordingChannel:
    """The patient's only channel; it records every message."""
    return h.RecordingChannel("sms")


@pytest.fixture
def eng(database_url, settings, clock, sms):
    with h.running_engine(database_url, settings, clock, [VISIT], {"sms": sms}) as engine:
        yield engine


def event_row(engine, event_id: int):
    with engine.db.connect() as conn:
        return conn.execute(select(Event.__table__).where(Event.id == event_id)).one()


def reminders(engine, **where) -> list:
    return [t for t in h.touchpoints(engine, step="remind", **where)]


# ------------------------------------------------------------------- resends


def test_a_resent_booking_confirms_once_and_the_timeline_says_resend(eng, clock, sms):
    ev = h.Events(clock)
    booking = {"appointment_id": "A1", "start": slot(11)}
    first = eng.ingest(ev("appointment.booked", booking, source_id="HIS-1"))
    assert first.enrolled == ["visit"] and first.state == "applied"
    clock.advance(timedelta(minutes=10))
    again = eng.ingest(ev("appointment.booked", booking, source_id="HIS-2"))  # the HIS sends it again
    assert not again.duplicate and again.enrolled == [] and again.planned == 0
    assert again.state == "resend" and again.resent == ["visit.confirm already planned for appointment_id A1"]
    eng.dispatch_due()
    assert [m.body for m in sms.messages] == [f"已预约 2026-05-11 14:00"]
    assert event_row(eng, again.event_id).status == "resend"
    with eng.db.connect() as conn:
        events = timeline_tables(conn, eng.cipher, 1)[1]
    statuses = list(events.columns[4].cells)
    assert statuses == ["applied", "resend"]
    assert "resend: visit.confirm already planned" in list(events.columns[5].cells)[1]


@hsettings(deadline=None, max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sends=st.lists(st.sampled_from(["A", "B", "C"]), min_size=1, max_size=8))
def test_each_booking_confirms_once_whatever_the_message_ids(eng, clock, sms, sends):
    """Any stream of bookings, each under a fresh message id: one confirmation per appointment."""
    mrn = f"P-{uuid.uuid4().hex[:8]}"
    eng.upsert_patient(PatientIn(mrn=mrn, name="李四", phone="13900001111"))
    ev = h.Events(clock, mrn)
    for appointment in sends:
        eng.ingest(ev("appointment.booked", {"appointment_id": f"{mrn}-{appointment}", "start": slot(20)}))
    confirms = [t for t in h.touchpoints(eng, step="confirm") if t.occurrence.startswith(f"k:{mrn}-")]
    assert sorted(t.occurrence for t in confirms) == sorted(f"k:{mrn}-{a}" for a in set(sends))


def test_on_step_once_per_names_another_payload_field(eng, clock, sms):
    ev = h.Events(clock)
    eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": slot(11)}))
    eng.ingest(ev("report.ready", {"appointment_id": "A1", "report_id": "R1"}))
    eng.ingest(ev("report.ready", {"appointment_id": "A1", "report_id": "R2"}))
    resent = eng.ingest(ev("report.ready", {"appointment_id": "A1", "report_id": "R1"}))
    assert resent.resent == ["visit.report already planned for report_id R1"]
    eng.dispatch_due()
    assert sorted(m.body for m in sms.messages if m.body.startswith("报告")) == ["报告 R1 已出", "报告 R2 已出"]


# ------------------------------------------------------- order of anchor changes


def test_a_stale_reschedule_does_not_move_the_slot(eng, clock, sms):
    ev = h.Events(clock)
    t0 = clock.now()
    eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": slot(11)}, occurred_at=t0))
    eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A1", "start": slot(15)},
                  occurred_at=t0 + timedelta(hours=2)))
    late = eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A1", "start": slot(13)},
                         occurred_at=t0 + timedelta(hours=1)))
    assert late.state == "stale" and late.anchors == []
    assert late.stale and late.stale[0].startswith("visit.appointment not changed: the event occurred")
    [enrollment] = h.enrollments(eng)
    assert datetime.fromisoformat(enrollment.anchors["appointment"]) == datetime.fromisoformat(slot(15))
    [reminder] = reminders(eng)
    assert reminder.due_at == datetime(2026, 5, 14, 18, 0, tzinfo=SH)
    assert event_row(eng, late.event_id).status == "stale"


def test_a_reschedule_before_its_booking_is_held_then_applied(eng, clock, sms):
    ev = h.Events(clock)
    t0 = clock.now()
    early = eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A1", "start": slot(15)},
                          occurred_at=t0 + timedelta(hours=1)))
    assert early.state == "held" and early.held == ["no visit enrollment for appointment_id A1 yet"]
    assert h.enrollments(eng) == [] and event_row(eng, early.event_id).status == "held"
    clock.advance(timedelta(hours=2))
    booked = eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": slot(11)}, occurred_at=t0))
    assert booked.enrolled == ["visit"] and booked.released == 1
    [reminder] = reminders(eng)
    assert (reminder.status, reminder.due_at) == ("scheduled", datetime(2026, 5, 14, 18, 0, tzinfo=SH))
    row = event_row(eng, early.event_id)
    assert row.status == "applied"
    assert row.outcome.startswith("held: no visit enrollment for appointment_id A1 yet; applied ")
    assert "visit.appointment moved" in row.outcome


def test_a_cancellation_before_its_booking_leaves_nothing_to_send(eng, clock, sms):
    ev = h.Events(clock)
    t0 = clock.now()
    eng.ingest(ev("appointment.cancelled", {"appointment_id": "A1"}, occurred_at=t0 + timedelta(hours=1)))
    booked = eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": slot(11)}, occurred_at=t0))
    assert booked.released == 1
    [enrollment] = h.enrollments(eng)
    assert (enrollment.status, enrollment.exit_reason) == ("exited", "exit event appointment.cancelled")
    clock.advance(timedelta(days=20))
    assert eng.dispatch_due().sent == 0 and sms.messages == []


NOTIFYING = edited(  # asks for a cancellation notice: an ``on`` step of its exit event
    VISIT, templates={**VISIT.templates, "cancelled": template("cancelled", "您 {{ event.start | datetime }} 的预约已取消")},
    steps=[*VISIT.steps, step("cancel-notice", "pre_visit", on("appointment.cancelled"), send("cancelled", ["sms"]),
                              category="transactional")])


def test_a_journey_that_asks_sends_a_cancellation_notice_once_and_nothing_else(database_url, settings, clock, sms):
    with h.running_engine(database_url, settings, clock, [NOTIFYING], {"sms": sms}) as eng:
        ev = h.Events(clock)
        eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": slot(11)}))
        eng.dispatch_due()
        cancelled = eng.ingest(ev("appointment.cancelled", {"appointment_id": "A1", "start": slot(11)}, source_id="HIS-C1"))
        assert cancelled.exited == ["visit"] and cancelled.planned == 1
        again = eng.ingest(ev("appointment.cancelled", {"appointment_id": "A1", "start": slot(11)}, source_id="HIS-C2"))
        assert again.planned == 0
        clock.advance(timedelta(days=20))
        eng.dispatch_due()
        assert [m.template for m in sms.messages] == ["confirm", "cancelled"]
        assert sms.messages[-1].body == "您 2026-05-11 14:00 的预约已取消"
        assert {t.step: t.status for t in h.touchpoints(eng)} == {"confirm": "sent", "remind": "cancelled",
                                                                   "cancel-notice": "sent"}


def test_a_cancellation_notice_that_prints_the_cleared_anchor_is_never_sent_as_none(database_url, settings, clock,
                                                                                     sms):
    """The cancellation cleared the appointment anchor: "CANCELLED None" must not reach the patient."""
    careless = edited(NOTIFYING, templates={**NOTIFYING.templates, "cancelled": template(
        "cancelled", "CANCELLED {{ anchors.appointment | datetime }}")})
    with h.running_engine(database_url, settings, clock, [careless], {"sms": sms}) as eng:
        ev = h.Events(clock)
        eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": slot(11)}))
        eng.dispatch_due()
        eng.ingest(ev("appointment.cancelled", {"appointment_id": "A1"}))
        eng.dispatch_due()
        assert [m.body for m in sms.messages] == ["已预约 2026-05-11 14:00"]
        notice = next(t for t in h.touchpoints(eng) if t.step == "cancel-notice")
        assert notice.status == "failed" and "the datetime filter got no value" in notice.reason


def test_a_cancellation_notice_is_not_sent_after_a_death(database_url, settings, clock, sms):
    with h.running_engine(database_url, settings, clock, [NOTIFYING], {"sms": sms}) as eng:
        ev = h.Events(clock)
        eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": slot(11)}))
        eng.ingest(ev("appointment.cancelled", {"appointment_id": "A1", "start": slot(11)}))
        eng.ingest(ev("patient.deceased"))
        clock.advance(timedelta(days=1))
        eng.dispatch_due()
        assert "cancelled" not in [m.template for m in sms.messages]


@hsettings(deadline=None, max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(4)), days=st.lists(st.integers(8, 25), min_size=3, max_size=3))
def test_any_arrival_order_ends_at_the_newest_slot(eng, clock, sms, order, days):
    """A booking and three reschedules, in any order of arrival: the reminder is for the newest slot."""
    mrn = f"P-{uuid.uuid4().hex[:8]}"
    eng.upsert_patient(PatientIn(mrn=mrn, name="李四", phone="13900001111"))
    ev = h.Events(clock, mrn)
    t0 = clock.now()
    facts = [("appointment.booked", slot(5))] + [("appointment.rescheduled", slot(d)) for d in days]
    for i in order:
        kind, start = facts[i]
        eng.ingest(ev(kind, {"appointment_id": mrn, "start": start}, occurred_at=t0 + timedelta(minutes=i)))
    [enrollment] = h.enrollments(eng, key=mrn)
    newest = datetime.fromisoformat(slot(days[-1]))
    assert datetime.fromisoformat(enrollment.anchors["appointment"]) == newest
    live = [t for t in reminders(eng, enrollment_id=enrollment.id) if t.status == "scheduled"]
    assert [t.due_at for t in live] == [datetime.combine(newest.date() - timedelta(days=1), time(18), tzinfo=SH)]
    with eng.db.connect() as conn:
        assert conn.execute(select(Event.status).where(Event.status == "held")).all() == []


# ----------------------------------------------------------- moved anchors


def told_then_moved(eng, clock, day: int, hh: int = 14):
    """A1 booked for 11 May 14:00, its day-before reminder sent, then moved to ``day`` at ``hh``:00."""
    ev = h.Events(clock)
    eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": slot(11)}))
    clock.set(datetime(2026, 5, 10, 18, 0, tzinfo=SH))
    eng.dispatch_due()
    moved = eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A1", "start": slot(day, hh)}))
    return ev, moved


def test_a_moved_slot_gets_a_reminder_naming_the_new_time(eng, clock, sms):
    _, moved = told_then_moved(eng, clock, 13, 9)
    assert sms.messages[-1].body == "提醒：就诊时间 2026-05-11 14:00"
    assert moved.anchors == ["visit.appointment moved (0 moved, 0 cancelled, 0 added, 1 planned again)"]
    first, again = reminders(eng)
    assert (first.status, again.occurrence, again.due_at) == ("sent", "0@1", datetime(2026, 5, 12, 18, 0, tzinfo=SH))
    assert first.idempotency_key != again.idempotency_key
    clock.set(datetime(2026, 5, 12, 18, 0, tzinfo=SH))
    eng.dispatch_due()
    assert sms.messages[-1].body == "提醒：就诊时间 2026-05-13 09:00"


def test_a_slot_moved_back_to_the_time_already_told_sends_nothing_more(eng, clock, sms):
    ev, _ = told_then_moved(eng, clock, 13)
    back = eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A1", "start": slot(11)}))
    assert back.anchors == ["visit.appointment moved (1 moved, 0 cancelled, 0 added)"]
    assert [(t.status, t.reason) for t in reminders(eng)] == [
        ("sent", None), ("cancelled", "cancelled: the patient was already told this time")]
    again = eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A1", "start": slot(14)}))
    assert again.anchors == ["visit.appointment moved (1 moved, 0 cancelled, 0 added)"]
    assert [(t.status, t.due_at) for t in reminders(eng)][-1] == ("scheduled", datetime(2026, 5, 13, 18, 0, tzinfo=SH))


@hsettings(deadline=None, max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=st.lists(st.tuples(st.integers(0, 72), st.integers(2, 9), st.integers(8, 16)), min_size=1, max_size=4))
def test_after_any_moves_the_last_reminder_names_the_final_slot_and_no_key_repeats(eng, clock, sms, moves):
    """Dispatch between reschedules: nothing is sent twice, and the patient's last reminder is for the final slot."""
    clock.set(datetime(2026, 5, 1, 9, 0, tzinfo=SH))
    mrn = f"P-{uuid.uuid4().hex[:8]}"
    eng.upsert_patient(PatientIn(mrn=mrn, name="李四", phone="13900001111"))
    ev = h.Events(clock, mrn)
    eng.ingest(ev("appointment.booked", {"appointment_id": mrn, "start": slot(4)}))
    final = datetime.fromisoformat(slot(4))
    for hours, days_ahead, hh in moves:
        clock.advance(timedelta(hours=hours))
        eng.dispatch_due()
        final = datetime.combine(clock.now().astimezone(SH).date() + timedelta(days=days_ahead), time(hh), tzinfo=SH)
        eng.ingest(ev("appointment.rescheduled", {"appointment_id": mrn, "start": final.isoformat()}))
    clock.set(final)
    eng.dispatch_due()
    mine = [m for m in sms.messages if m.patient_id == h.enrollments(eng, key=mrn)[0].patient_id]
    keys = [m.idempotency_key for m in mine]
    assert len(keys) == len(set(keys))
    assert [m.body for m in mine if m.body.startswith("提醒")][-1] == f"提醒：就诊时间 {final:%Y-%m-%d %H:%M}"


def test_migrating_to_another_version_keeps_a_pending_resend(eng, clock, sms):
    """A reminder planned again after a move is an unsent step like any other: migration re-times it."""
    from carepath.runtime.migrate import migrate_enrollments
    from carepath.runtime.versions import store_version

    told_then_moved(eng, clock, 13)
    later = edited(VISIT, steps=[
        s.model_copy(update={"trigger": before("appointment", "1d", at="19:00")}) if s.id == "remind" else s
        for s in VISIT.steps])
    with eng.db.begin() as conn:
        store_version(conn, later, clock.now())
    assert migrate_enrollments(eng.db, "visit", later.version, now=clock.now()).enrollments == 1
    assert [(t.occurrence, t.status, t.due_at) for t in reminders(eng)] == [
        ("0", "sent", datetime(2026, 5, 10, 18, 0, tzinfo=SH)),
        ("0@1", "scheduled", datetime(2026, 5, 12, 19, 0, tzinfo=SH))]


def test_a_step_may_opt_out_of_resending_on_move(database_url, settings, clock, sms):
    quiet = edited(VISIT, steps=[s.model_copy(update={"resend_on_move": False}) for s in VISIT.steps])
    with h.running_engine(database_url, settings, clock, [quiet], {"sms": sms}) as eng:
        _, moved = told_then_moved(eng, clock, 13)
        assert moved.anchors == ["visit.appointment moved (0 moved, 0 cancelled, 0 added)"]
        assert [t.status for t in reminders(eng)] == ["sent"]


DISCHARGE = journey(
    "after-discharge", enroll=enroll_on("encounter.admitted"), key="encounter_id", reentry="per_key",
    anchors={"discharge": anchor(["encounter.discharged"], cancelled_by=["encounter.discharge_cancelled"])},
    templates=[template("t", "出院 {{ anchors.discharge | datetime }}")],
    steps=[step("instructions", "post_visit", after("discharge", "0s"), send("t", ["sms"]), category="urgent"),
           step("day1", "post_visit", after("discharge", "1d", at="10:00"), send("t", ["sms"])),
           step("day7", "post_visit", after("discharge", "7d", at="10:00"), send("t", ["sms"]))])


def test_a_discharge_reversed_and_redone_replans_every_post_discharge_step(database_url, settings, clock, sms):
    with h.running_engine(database_url, settings, clock, [DISCHARGE], {"sms": sms}) as eng:
        ev = h.Events(clock)
        eng.ingest(ev("encounter.admitted", {"encounter_id": "E1"}))
        clock.set(datetime(2026, 5, 3, 11, 0, tzinfo=SH))
        eng.ingest(ev("encounter.discharged", {"encounter_id": "E1"}))
        clock.set(datetime(2026, 5, 4, 10, 0, tzinfo=SH))
        assert eng.dispatch_due().sent == 2  # instructions and day 1
        undone = eng.ingest(ev("encounter.discharge_cancelled", {"encounter_id": "E1"}))
        assert undone.anchors == ["after-discharge.discharge cancelled (0 moved, 1 cancelled, 0 added)"]
        clock.set(datetime(2026, 5, 6, 15, 0, tzinfo=SH))
        redone = eng.ingest(ev("encounter.discharged", {"encounter_id": "E1"}))
        assert redone.anchors == ["after-discharge.discharge moved (1 moved, 0 cancelled, 0 added, 2 planned again)"]
        live = {t.step: t.due_at for t in h.touchpoints(eng) if t.status == "scheduled"}
        assert live == {"instructions": clock.now(), "day1": datetime(2026, 5, 7, 10, 0, tzinfo=SH),
                        "day7": datetime(2026, 5, 13, 10, 0, tzinfo=SH)}
        clock.set(datetime(2026, 5, 14, 10, 0, tzinfo=SH))
        eng.dispatch_due()
        keys = [m.idempotency_key for m in sms.messages]
        assert len(keys) == len(set(keys)) == 5
        assert sms.messages[-1].body == "出院 2026-05-06 15:00"


# ------------------------------------------------------------------- exits


CALLS = journey(
    "calls", enroll=enroll_on("appointment.booked"), exit=exit_on("visit.no_show"),
    steps=[step("call", "post_visit", on("appointment.booked"), task("call_patient"))])


def test_a_death_leaves_no_open_task_and_an_exit_closes_its_journeys_tasks(database_url, settings, clock, sms):
    with h.running_engine(database_url, settings, clock, [VISIT, CALLS], {"sms": sms}) as eng:
        eng.upsert_patient(PatientIn(mrn="M2", name="李四", phone="13900001111"))
        for mrn in ("M1", "M2"):
            eng.ingest(h.Events(clock, mrn)("appointment.booked", {"appointment_id": f"{mrn}-A", "start": slot(11)}))
        eng.dispatch_due()
        assert [t.status for t in h.staff_tasks(eng)] == ["open", "open"]
        exited = eng.ingest(h.Events(clock, "M2")("visit.no_show"))
        assert exited.exited == ["calls"] and exited.cancelled_tasks == 1
        died = eng.ingest(h.Events(clock, "M1")("patient.deceased"))
        assert sorted(died.exited) == ["calls", "visit"] and died.cancelled_tasks == 1
        tasks = {t.patient_id: t for t in h.staff_tasks(eng)}
        assert {t.status for t in tasks.values()} == {"cancelled"}
        assert tasks[1].resolution == "cancelled: patient deceased"
        assert tasks[2].resolution == "cancelled: exit event visit.no_show"


def test_a_death_cancels_a_fallback_task_of_any_journey(eng, clock):
    failing = h.RecordingChannel("sms", permanent=lambda m: True)
    eng.channels["sms"] = failing
    ev = h.Events(clock)
    eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": slot(11)}))
    eng.dispatch_due()
    assert [(t.kind, t.status) for t in h.staff_tasks(eng)] == [("contact_patient", "open")]
    eng.ingest(ev("patient.deceased"))
    assert [(t.status, t.resolution) for t in h.staff_tasks(eng)] == [("cancelled", "cancelled: patient deceased")]


@pytest.mark.parametrize("reentry,key,enrolled", [
    ("per_key", "appointment_id", ["A1", "A2"]),  # a new episode enrolls; an exited one never again
    ("after_exit", None, [None, None, None]),  # again after each exit
    ("never", None, [None]),  # once per patient
])
def test_reentry_values(database_url, settings, clock, sms, reentry, key, enrolled):
    j = edited(VISIT, name="re", reentry=reentry, key=key)
    with h.running_engine(database_url, settings, clock, [j], {"sms": sms}) as eng:
        ev = h.Events(clock)
        for appointment in ("A1", "A1", "A2"):  # A1 booked, cancelled, booked again; then A2
            eng.ingest(ev("appointment.booked", {"appointment_id": appointment, "start": slot(11)}))
            eng.ingest(ev("appointment.cancelled", {"appointment_id": appointment}))
        assert [e.key for e in h.enrollments(eng)] == enrolled
        assert {e.status for e in h.enrollments(eng)} == {"exited"}


def test_per_key_needs_the_key_in_the_enrolling_event(eng, clock):
    r = eng.ingest(h.Events(clock)("appointment.booked", {"start": slot(11)}))
    assert r.enrolled == [] and r.notes == ["visit: not enrolled, the event has no appointment_id"]


# ---------------------------------------------------------------- held events


def test_events_for_an_unregistered_patient_wait_for_the_record(eng, clock, sms):
    ev = h.Events(clock, "M7")
    t0 = clock.now()
    moved = eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A7", "start": slot(15)},
                          occurred_at=t0 + timedelta(hours=1)))
    booked = eng.ingest(ev("appointment.booked", {"appointment_id": "A7", "start": slot(11)}, occurred_at=t0))
    assert moved.held == booked.held == ["patient not registered yet"]
    assert h.enrollments(eng) == []
    eng.upsert_patient(PatientIn(mrn="M7", name="王五", phone="13700001111"))
    [enrollment] = h.enrollments(eng)
    assert datetime.fromisoformat(enrollment.anchors["appointment"]) == datetime.fromisoformat(slot(15))
    assert [event_row(eng, e).status for e in (booked.event_id, moved.event_id)] == ["applied", "applied"]
    assert event_row(eng, booked.event_id).outcome.startswith("held: patient not registered yet; applied ")
    eng.dispatch_due()
    assert [m.body for m in sms.messages] == ["已预约 2026-05-15 14:00"]


def test_an_event_carrying_the_patient_record_releases_what_waited(eng, clock):
    ev = h.Events(clock, "M8")
    waiting = eng.ingest(ev("appointment.booked", {"appointment_id": "A8", "start": slot(11)}))
    assert waiting.state == "held"
    clock.advance(timedelta(minutes=5))
    r = eng.ingest(ev("patient.updated", {"patient": {"name": "赵六", "phone": "13600001111"}}))
    assert r.released == 1 and [e.key for e in h.enrollments(eng)] == ["A8"]


def test_a_held_event_expires_with_a_reason(eng, clock, settings):
    ev = h.Events(clock)
    held = eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A1", "start": slot(15)}))
    clock.advance(timedelta(days=6))
    assert expire_held(eng) == 0
    clock.advance(timedelta(days=1, seconds=1))
    assert expire_held(eng) == 1 and expire_held(eng) == 0
    row = event_row(eng, held.event_id)
    assert row.status == "expired"
    assert row.outcome == "held: no visit enrollment for appointment_id A1 yet; expired: still held after 7d"
    booked = eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": slot(11)}))
    assert booked.released == 0
    [enrollment] = h.enrollments(eng)
    assert datetime.fromisoformat(enrollment.anchors["appointment"]) == datetime.fromisoformat(slot(11))


def test_held_event_age_is_a_setting(eng, clock, monkeypatch):
    monkeypatch.setenv("CAREPATH_HELD_EVENT_MAX_AGE", "1h")
    from carepath.settings import Settings

    eng.settings = Settings(home=eng.settings.home)
    eng.ingest(h.Events(clock)("appointment.rescheduled", {"appointment_id": "A1", "start": slot(15)}))
    clock.advance(timedelta(hours=2))
    assert expire_held(eng) == 1


# ------------------------------------------------------------ the new fields


def test_new_step_fields_in_yaml_round_trip_and_are_validated():
    text = journey_to_yaml(edited(VISIT, steps=[
        VISIT.steps[0].model_copy(update={"resend_on_move": False}), *VISIT.steps[1:]]))
    assert "resend_on_move: false" in text and "once_per: report_id" in text
    loaded, problems = read_journey_text(text, known_templates=None)
    assert problems == [] and loaded.version != VISIT.version
    assert loaded.steps[0].resend_on_move is False and loaded.step("report").trigger.once_per == "report_id"
    _, problems = read_journey_text(text.replace("resend_on_move", "resend_on_moved"), known_templates=None)
    assert "unknown step field 'resend_on_moved'" in str(problems[0])


def test_a_reschedule_racing_its_booking_is_never_left_waiting(database_url, settings, clock, sms):
    """Booking and reschedule ingested at the same moment by two workers: the reschedule always applies."""
    import threading

    engines = [h.make_engine(database_url, settings, clock, [VISIT], {"sms": sms}) for _ in range(2)]
    try:
        engines[0].upsert_patient(PatientIn(mrn="M1", name="张三"))
        ev = h.Events(clock)
        t0 = clock.now()
        rounds = 12
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def worker(engine, make) -> None:
            try:
                for i in range(rounds):
                    barrier.wait()
                    engine.ingest(make(i))
            except BaseException as exc:  # reported below
                errors.append(exc)
                barrier.abort()

        booking = lambda i: ev("appointment.booked", {"appointment_id": f"A{i}", "start": slot(11)}, occurred_at=t0)
        moved = lambda i: ev("appointment.rescheduled", {"appointment_id": f"A{i}", "start": slot(15)},
                             occurred_at=t0 + timedelta(minutes=1))
        threads = [threading.Thread(target=worker, args=(engines[0], booking)),
                   threading.Thread(target=worker, args=(engines[1], moved))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        with engines[0].db.connect() as conn:
            assert conn.execute(select(Event.source_id).where(Event.status == "held")).all() == []
        assert {e.anchors["appointment"] for e in h.enrollments(engines[0])} == {slot(15)}
    finally:
        for engine in engines:
            engine.close()


def test_an_urgent_step_sent_on_arrival_is_not_labelled_a_late_send(database_url, settings, clock, sms):
    """The check-in happened 20 seconds before the HIS told us: the queue notice goes at once, unlabelled;
    a transactional step on an event that old still says it went late."""
    queue = edited(VISIT, templates={**VISIT.templates, "queue": template("queue", "请到3号诊室")},
                   steps=[*VISIT.steps, step("queue", "in_visit", on("visit.checked_in"), send("queue", ["sms"]),
                                             category="urgent")])
    with h.running_engine(database_url, settings, clock, [queue], {"sms": sms}) as eng:
        ev = h.Events(clock)
        eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": slot(1, 12)}))
        eng.ingest(ev("visit.checked_in", {"appointment_id": "A1"}, occurred_at=clock.now() - timedelta(seconds=20)))
        eng.ingest(ev("report.ready", {"appointment_id": "A1", "report_id": "R1"},
                      occurred_at=clock.now() - timedelta(seconds=20)))
        eng.dispatch_due()
        sent = {t.step: (t.status, t.reason) for t in h.touchpoints(eng) if t.step in ("queue", "report")}
        assert sent == {"queue": ("sent", None), "report": ("sent", "missed: sent late within grace")}
