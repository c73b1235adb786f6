"""Scheduling through the engine and its database: re-anchoring, cancellation, exit, dedup, re-entry."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st

from carepath.definition.dsl import after, anchor, before, enroll_on, exit_on, journey, send, step, template
from carepath.definition.events import PatientIn
from carepath.runtime.planner import MISSED_SKIPPED, occurrences


from tests.engine import helpers as h

TZ = "Asia/Shanghai"
SH = ZoneInfo(TZ)


def visit_journey(name: str = "visit", *, reentry: str = "per_key", key: str | None = "appointment_id"):
    return journey(
        name, enroll=enroll_on("appointment.booked"), key=key, reentry=reentry,
        exit=exit_on("visit.no_show"),
        anchors={"appointment": anchor(["appointment.booked", "appointment.rescheduled"], field="start",
                                       cancelled_by=["appointment.cancelled"])},
        templates=[template("t", "您好 {{ patient.name }}")],
        steps=[
            step("r7", "pre_visit", before("appointment", "7d", at="10:00"), send("t", ["sms"]),
                 category="transactional"),
            step("r1", "pre_visit", before("appointment", "1d", at="18:00"), send("t", ["sms"]),
                 category="transactional"),
            step("fu", "post_visit", after("appointment", "3d", at="10:00"), send("t", ["sms"])),
        ])


VISIT = visit_journey()
STEP_IDS = {"r7", "r1", "fu"}


def start_at(day: date, hh: int = 14) -> str:
    return datetime.combine(day, time(hh), tzinfo=SH).isoformat()


@pytest.fixture
def sms():
    return h.RecordingChannel("sms")


@pytest.fixture
def eng(database_url, settings, clock, sms):
    with h.running_engine(database_url, settings, clock, [VISIT], {"sms": sms}) as engine:
        yield engine


def by_step(engine, **where) -> dict[str, object]:
    return {r.step: r for r in h.touchpoints(engine, **where)}


# -------------------------------------------------------------- re-anchoring


@hsettings(deadline=None, max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shift_hours=st.integers(-9 * 24, 20 * 24))
def test_reschedule_moves_only_pending_touchpoints(eng, clock, sms, shift_hours):
    """An appointment moved by any offset: the sent reminder keeps its times, the rest follow the anchor."""
    clock.set(datetime(2026, 5, 1, 9, 0, tzinfo=SH))
    mrn = f"P-{uuid.uuid4().hex[:8]}"
    ev = h.Events(clock, mrn)
    start = datetime(2026, 5, 11, 14, 0, tzinfo=SH)
    booked = eng.ingest(ev("appointment.booked", {"appointment_id": mrn, "start": start.isoformat(),
                                                  "patient": {"name": "李四", "phone": "13900001111"}}))
    assert booked.enrolled == ["visit"] and booked.planned == 3
    [enrollment] = h.enrollments(eng, key=mrn)
    rows = by_step(eng, enrollment_id=enrollment.id)
    assert rows["r7"].due_at == datetime(2026, 5, 4, 10, 0, tzinfo=SH)
    clock.set(rows["r7"].due_at)
    eng.dispatcher.run_batch(ids=[rows["r7"].id], limit=1)
    sent = h.one_touchpoint(eng, id=rows["r7"].id)
    assert sent.status == "sent" and sent.sent_at == clock.now()

    clock.advance(timedelta(hours=1))
    new_start = start + timedelta(hours=shift_hours)
    moved = eng.ingest(ev("appointment.rescheduled", {"appointment_id": mrn, "start": new_start.isoformat()}))
    if shift_hours:
        assert len(moved.anchors) == 1 and moved.anchors[0].startswith("visit.appointment moved")
    else:  # the same time again: nothing to move
        assert moved.anchors == []

    after_rows = by_step(eng, enrollment_id=enrollment.id)
    assert set(after_rows) == STEP_IDS
    kept = h.one_touchpoint(eng, id=sent.id)
    assert (kept.status, kept.due_at, kept.sent_at, kept.planned_at, kept.updated_at) == \
        (sent.status, sent.due_at, sent.sent_at, sent.planned_at, sent.updated_at)
    # the sent reminder named the old time: when it moved, the step is planned again under a new key
    r7_rows = h.touchpoints(eng, enrollment_id=enrollment.id, step="r7")
    assert [r.occurrence for r in r7_rows] == (["0", "0@1"] if shift_hours else ["0"])
    assert len(h.touchpoints(eng, enrollment_id=enrollment.id)) == 3 + (1 if shift_hours else 0)
    now = clock.now()
    anchors = {"appointment": new_start}
    for sid in ("r7", "r1", "fu") if shift_hours else ("r1", "fu"):
        row = after_rows[sid]
        [(_, expected)] = occurrences(VISIT.step(sid), anchors, TZ)
        assert row.planned_at == expected
        if expected >= now:
            assert row.status == "scheduled" and row.due_at == expected  # 18:00 / 10:00 are allowed times
        else:  # the new time already passed: the missed policy decides, never a due time in the past
            assert row.status in ("scheduled", "skipped")
            if row.status == "scheduled":
                assert row.due_at >= now
            else:
                assert row.reason == MISSED_SKIPPED
    [stored] = h.enrollments(eng, id=enrollment.id)
    assert datetime.fromisoformat(stored.anchors["appointment"]) == new_start


def test_reschedule_example_shows_in_result_and_times(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": start_at(date(2026, 5, 20))}))
    r = eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A1", "start": start_at(date(2026, 5, 25))}))
    assert r.anchors == ["visit.appointment moved (3 moved, 0 cancelled, 0 added)"]
    rows = by_step(eng)
    assert rows["r7"].due_at == datetime(2026, 5, 18, 10, 0, tzinfo=SH)
    assert rows["r1"].due_at == datetime(2026, 5, 24, 18, 0, tzinfo=SH)
    assert rows["fu"].due_at == datetime(2026, 5, 28, 10, 0, tzinfo=SH)
    # the same time again changes nothing
    again = eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A1", "start": start_at(date(2026, 5, 25))}))
    assert again.anchors == [] and by_step(eng) == rows


def test_reminder_skipped_by_an_earlier_reschedule_comes_back_when_moved_later(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": start_at(date(2026, 5, 20))}))
    # moved to the day after tomorrow: the 7-days-before reminder is long past -> skipped (missed)
    eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A1", "start": start_at(date(2026, 5, 3))}))
    assert by_step(eng)["r7"].status == "skipped"
    # moved again, three weeks out: the patient should get the 7-days-before reminder
    eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A1", "start": start_at(date(2026, 5, 25))}))
    r7 = by_step(eng)["r7"]
    assert (r7.status, r7.due_at) == ("scheduled", datetime(2026, 5, 18, 10, 0, tzinfo=SH))


# -------------------------------------------------------- anchor cancellation


def test_anchor_cancellation_cancels_pending_and_keeps_sent(eng, clock, sms):
    ev = h.Events(clock)
    eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": start_at(date(2026, 5, 11))}))
    clock.set(datetime(2026, 5, 4, 10, 0, tzinfo=SH))
    assert eng.dispatch_due().sent == 1
    sent = by_step(eng)["r7"]
    r = eng.ingest(ev("appointment.cancelled", {"appointment_id": "A1"}))
    assert r.anchors == ["visit.appointment cancelled (0 moved, 2 cancelled, 0 added)"]
    rows = by_step(eng)
    assert rows["r7"] == sent
    for sid in ("r1", "fu"):
        assert (rows[sid].status, rows[sid].reason) == ("cancelled", "anchor cancelled")
    [enrollment] = h.enrollments(eng)
    assert enrollment.status == "active" and enrollment.anchors["appointment"] is None
    clock.advance(timedelta(days=30))
    assert eng.dispatch_due().claimed == 0
    assert sms.keys == [f"{sent.idempotency_key}:sms"]

    # booking time set again: the cancelled-by-anchor touchpoints come back, the sent one stays history
    clock.set(datetime(2026, 5, 5, 9, 0, tzinfo=SH))
    eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A1", "start": start_at(date(2026, 5, 20))}))
    rows = by_step(eng)
    assert h.one_touchpoint(eng, id=sent.id) == sent
    # the patient was told the old time: the 7-day reminder is planned again for the new one
    assert (rows["r7"].occurrence, rows["r7"].status, rows["r7"].due_at) == \
        ("0@1", "scheduled", datetime(2026, 5, 13, 10, 0, tzinfo=SH))
    assert (rows["r1"].status, rows["r1"].due_at) == ("scheduled", datetime(2026, 5, 19, 18, 0, tzinfo=SH))
    assert (rows["fu"].status, rows["fu"].due_at) == ("scheduled", datetime(2026, 5, 23, 10, 0, tzinfo=SH))


# ---------------------------------------------------------------------- exit


def test_exit_event_leaves_nothing_scheduled(eng, clock, sms):
    ev = h.Events(clock)
    eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": start_at(date(2026, 5, 11))}))
    clock.set(datetime(2026, 5, 4, 10, 0, tzinfo=SH))
    eng.dispatch_due()
    r = eng.ingest(ev("visit.no_show", {"appointment_id": "A1"}))
    assert r.exited == ["visit"]
    [enrollment] = h.enrollments(eng)
    assert (enrollment.status, enrollment.exit_reason) == ("exited", "exit event visit.no_show")
    rows = by_step(eng)
    assert rows["r7"].status == "sent"
    assert {rows["r1"].status, rows["fu"].status} == {"cancelled"}
    assert rows["r1"].reason == "cancelled: exit event visit.no_show"
    assert not h.touchpoints(eng, enrollment_id=enrollment.id, status="scheduled")
    clock.advance(timedelta(days=30))
    assert eng.dispatch_due().claimed == 0 and len(sms.keys) == 1


def test_patient_deceased_exits_every_journey_and_blocks_new_ones(database_url, settings, clock, sms):
    other = journey("rehab", enroll=enroll_on("appointment.booked"), templates=[template("t", "康复")],
                    steps=[step("d1", "post_visit", after("enrolled", "1d"), send("t", ["sms"])),
                           step("d2", "post_visit", after("enrolled", "2d"), send("t", ["sms"]))])
    eng = h.make_engine(database_url, settings, clock, [VISIT, other], {"sms": sms})
    try:
        eng.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234"))
        ev = h.Events(clock)
        r = eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": start_at(date(2026, 5, 11))}))
        assert sorted(r.enrolled) == ["rehab", "visit"]
        assert len(h.touchpoints(eng, status="scheduled")) == 5
        d = eng.ingest(ev("patient.deceased"))
        assert sorted(d.exited) == ["rehab", "visit"]
        assert {e.status for e in h.enrollments(eng)} == {"exited"}
        assert {e.exit_reason for e in h.enrollments(eng)} == {"patient deceased"}
        assert not h.touchpoints(eng, status="scheduled")
        assert {t.reason for t in h.touchpoints(eng)} == {"cancelled: patient deceased"}
        later = eng.ingest(ev("appointment.booked", {"appointment_id": "A2", "start": start_at(date(2026, 6, 1))}))
        assert later.enrolled == [] and len(h.enrollments(eng)) == 2
        clock.advance(timedelta(days=40))
        assert eng.dispatch_due().sent == 0 and sms.keys == []
    finally:
        eng.close()


# ---------------------------------------------------------------- duplicates


def test_duplicate_event_is_a_no_op_that_says_so(eng, clock):
    ev = h.Events(clock)
    booked = ev("appointment.booked", {"appointment_id": "A1", "start": start_at(date(2026, 5, 11))},
                source_id="his-msg-1")
    first = eng.ingest(booked)
    assert not first.duplicate and first.event_id is not None
    before_ = h.snapshot(eng)
    clock.advance(timedelta(minutes=5))
    again = eng.ingest(booked)
    assert again.duplicate and again.event_id is None
    assert again.summary() == "duplicate event: already stored, nothing changed"
    assert (again.enrolled, again.planned, again.anchors) == ([], 0, [])
    assert h.snapshot(eng) == before_
    # the same source id with a different payload is still the same event
    changed = booked.model_copy(update={"payload": {"appointment_id": "A1", "start": start_at(date(2026, 6, 1))}})
    assert eng.ingest(changed).duplicate
    assert h.snapshot(eng) == before_
    # the same source_id from another source is a different event
    assert not eng.ingest(booked.model_copy(update={"source": "wechat"})).duplicate


def test_duplicate_event_with_patient_record_changes_nothing(eng, clock):
    ev = h.Events(clock, "M9")
    booked = ev("appointment.booked", {"appointment_id": "A9", "start": start_at(date(2026, 5, 11)),
                                       "patient": {"name": "王五", "phone": "13700001111"}})
    eng.ingest(booked)
    before_ = h.snapshot(eng)
    clock.advance(timedelta(minutes=5))
    assert eng.ingest(booked).duplicate
    assert h.snapshot(eng) == before_


# ------------------------------------------------------------------ re-entry


def test_per_key_two_appointments_two_enrollments(eng, clock):
    ev = h.Events(clock)
    a = eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": start_at(date(2026, 5, 11))}))
    b = eng.ingest(ev("appointment.booked", {"appointment_id": "A2", "start": start_at(date(2026, 5, 21))}))
    assert a.enrolled == b.enrolled == ["visit"]
    e1, e2 = h.enrollments(eng)
    assert (e1.key, e2.key) == ("A1", "A2") and e1.status == e2.status == "active"
    assert len(h.touchpoints(eng, enrollment_id=e1.id)) == len(h.touchpoints(eng, enrollment_id=e2.id)) == 3
    a2_before = by_step(eng, enrollment_id=e2.id)
    # the same appointment booked again (new HIS message) while active: no second enrollment for A1
    again = eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": start_at(date(2026, 5, 11))}))
    assert again.enrolled == [] and len(h.enrollments(eng)) == 2
    # rescheduling A1 moves only A1's touchpoints
    eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A1", "start": start_at(date(2026, 5, 14))}))
    assert by_step(eng, enrollment_id=e1.id)["fu"].due_at == datetime(2026, 5, 17, 10, 0, tzinfo=SH)
    assert by_step(eng, enrollment_id=e2.id) == a2_before
    # exit for A2 exits only A2
    eng.ingest(ev("visit.no_show", {"appointment_id": "A2"}))
    assert [e.status for e in h.enrollments(eng)] == ["active", "exited"]


@pytest.mark.parametrize("reentry,expected_after_exit", [("never", 1), ("after_exit", 2)])
def test_reentry_never_and_after_exit(database_url, settings, clock, sms, reentry, expected_after_exit):
    j = visit_journey("plain", reentry=reentry, key=None)
    eng = h.make_engine(database_url, settings, clock, [j], {"sms": sms})
    try:
        eng.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234"))
        ev = h.Events(clock)
        assert eng.ingest(ev("appointment.booked", {"start": start_at(date(2026, 5, 11))})).enrolled == ["plain"]
        # while active, a second booking enrolls nothing (for both policies)
        assert eng.ingest(ev("appointment.booked", {"start": start_at(date(2026, 5, 12))})).enrolled == []
        assert len(h.enrollments(eng)) == 1
        assert eng.ingest(ev("visit.no_show")).exited == ["plain"]
        r = eng.ingest(ev("appointment.booked", {"start": start_at(date(2026, 5, 20))}))
        assert len(h.enrollments(eng)) == expected_after_exit
        assert r.enrolled == (["plain"] if reentry == "after_exit" else [])
        if reentry == "after_exit":
            latest = h.enrollments(eng)[-1]
            assert latest.status == "active"
            assert len(h.touchpoints(eng, enrollment_id=latest.id, status="scheduled")) == 3
    finally:
        eng.close()


def test_event_with_a_bad_patient_record_is_stored_and_says_why(database_url, settings, clock):
    """A malformed record from the HIS never loses the event nor raises: the outcome names the field."""
    from sqlalchemy import select

    from carepath.store.schema import Event

    j = journey("care", enroll=enroll_on("program.joined"), templates=[template("t", "您好")],
                steps=[step("s", "post_visit", after("enrolled", "1d"), send("t", ["sms"]))])
    eng = h.make_engine(database_url, settings, clock, [j], {"sms": h.RecordingChannel("sms")})
    try:
        eng.upsert_patient(PatientIn(mrn="M1", name="张三"))
        result = eng.ingest(h.Events(clock, "M1")("program.joined", {"patient": {"tz": "Mars/Base"}}))
        assert result.status == "stored" and result.enrolled == ["care"]
        assert "patient.tz" in result.summary()
        with eng.db.connect() as conn:
            outcome = conn.execute(select(Event.outcome).where(Event.id == result.event_id)).scalar()
        assert "patient record not applied" in outcome
    finally:
        eng.close()
