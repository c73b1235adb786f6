"""The daily cap and conditional steps: a step whose ``when`` is false at send time is skipped, so planning
must not give it one of the day's messages and push a real one to the next day."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from carepath.definition.dsl import after, after_step, enroll_on, journey, on, send, step, task, template
from carepath.definition.events import PatientIn
from carepath.runtime.planner import DAILY_CAP
from carepath.runtime import daily_load
from carepath.runtime.policy import Policy
from tests.engine import helpers as h

SH = ZoneInfo("Asia/Shanghai")
NEVER = "patient.tagged('never-given')"  # false for this patient, decided at send time


@pytest.fixture
def make(database_url, settings, clock):
    made = []

    def _make(steps, *, cap):
        sms = h.RecordingChannel("sms")
        j = journey("care", enroll=enroll_on("program.joined"), templates=[template("t", "您好")], steps=steps)
        eng = h.make_engine(database_url, settings, clock, [j], {"sms": sms}, policy=Policy(daily_cap=cap))
        eng.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234"))
        made.append(eng)
        return eng, sms

    yield _make
    for eng in made:
        eng.close()


def msg(sid, offset, **kw):
    return step(sid, "post_visit", after("enrolled", offset), send("t", ["sms"]), **kw)


def test_a_false_condition_takes_no_slot_of_a_cap_of_one(make, clock):
    clock.set(datetime(2026, 5, 6, 9, 0, tzinfo=SH))
    eng, sms = make([msg("maybe", "1h", when=NEVER), msg("real", "2h")], cap=1)
    eng.ingest(h.Events(clock)("program.joined"))
    real = h.one_touchpoint(eng, step="real")
    assert (real.status, real.reason, real.due_at) == ("scheduled", None, datetime(2026, 5, 6, 11, 0, tzinfo=SH))
    clock.set(datetime(2026, 5, 6, 11, 1, tzinfo=SH))
    eng.dispatch_due()
    rows = {r.step: r for r in h.touchpoints(eng)}
    assert (rows["maybe"].status, rows["maybe"].reason) == ("skipped", "skipped: condition false")
    assert rows["real"].status == "sent" and len(sms.keys) == 1  # the same day, not the next


def test_a_pending_conditional_touchpoint_does_not_push_a_later_plan(make, clock):
    """Planned in another batch (an event later that day): the scheduled conditional one does not count."""
    clock.set(datetime(2026, 5, 6, 9, 0, tzinfo=SH))
    checked_in = step("after-visit", "post_visit", on("visit.checked_in", delay="1h"), send("t", ["sms"]))
    eng, sms = make([msg("a", "0s", when=NEVER), msg("b", "1h", when=NEVER), checked_in], cap=2)
    eng.ingest(h.Events(clock)("program.joined"))
    clock.set(datetime(2026, 5, 6, 9, 30, tzinfo=SH))
    eng.ingest(h.Events(clock)("visit.checked_in"))
    later = h.one_touchpoint(eng, step="after-visit")
    assert (later.reason, later.due_at) == (None, datetime(2026, 5, 6, 10, 30, tzinfo=SH))
    clock.set(datetime(2026, 5, 6, 10, 31, tzinfo=SH))
    eng.dispatch_due()
    assert h.one_touchpoint(eng, step="after-visit").status == "sent" and len(sms.keys) == 1


@pytest.mark.parametrize("with_task", [False, True])
def test_a_true_condition_still_counts_at_send_time(make, clock, with_task):
    """Not reserved when planned, a conditional message that does go out is one of the day's: the cap holds, also
    for a message claimed together with the patient's staff task (which is created; a batch that left the day's
    sends of such a patient uncounted would send the message)."""
    clock.set(datetime(2026, 5, 6, 9, 0, tzinfo=SH))
    call = [step("call", "post_visit", after("enrolled", "2h"), task("call_patient"))] if with_task else []
    eng, sms = make([msg("maybe", "1h", when="patient.name is defined"), *call, msg("real", "2h")], cap=1)
    eng.ingest(h.Events(clock)("program.joined"))
    clock.set(datetime(2026, 5, 6, 10, 1, tzinfo=SH))
    eng.dispatch_due()
    clock.set(datetime(2026, 5, 6, 11, 1, tzinfo=SH))
    eng.dispatch_due()
    rows = {r.step: r for r in h.touchpoints(eng)}
    assert rows["maybe"].status == "sent" and len(sms.keys) == 1
    assert (rows["real"].status, rows["real"].reason) == ("scheduled", DAILY_CAP)
    assert rows["real"].due_at == datetime(2026, 5, 7, 11, 1, tzinfo=SH)
    if with_task:
        assert (rows["call"].status, rows["call"].channel) == ("sent", "staff-task")


def _restart_state() -> None:
    """What a new process starts without: the planner's memos of journeys and their conditional steps (the
    statements it builds once at import are not state: a new process builds the same)."""
    for name in ("_CONDITIONAL", "_REMEMBERED"):
        getattr(daily_load, name, {}).clear()


def _journeys(*care_steps) -> list:
    """A ``care`` journey of ``care_steps`` (on program.joined), and ``visit``: a message 1h after a check-in."""
    return [journey("care", enroll=enroll_on("program.joined"), templates=[template("t", "您好")], steps=care_steps),
            journey("visit", enroll=enroll_on("visit.checked_in"), templates=[template("t", "您好")],
                    steps=[msg("after-visit", "1h")])]


@contextmanager
def _process(database_url, settings, clock, journeys, sms=None):  # noqa: ANN001
    """One engine process over the test database (cap 2 a day), closed and forgotten afterwards: a restart."""
    engine = h.make_engine(database_url, settings, clock, journeys, {"sms": sms or h.RecordingChannel("sms")},
                           policy=Policy(daily_cap=2))
    try:
        yield engine
    finally:
        engine.close()
        _restart_state()


def _joined(engine, clock, mrn: str, phone: str) -> None:  # noqa: ANN001
    engine.upsert_patient(PatientIn(mrn=mrn, name="张三", phone=phone))
    engine.ingest(h.Events(clock, mrn=mrn)("program.joined"))


def test_after_a_restart_pending_conditional_steps_still_take_no_slot(database_url, settings, clock):
    """Planned by one process, the scheduled conditional touchpoints of a journey this process has not planned yet
    do not count in the cap of a plan made after a restart (they are read from the pinned journey version)."""
    clock.set(datetime(2026, 5, 6, 9, 0, tzinfo=SH))
    journeys = _journeys(msg("a", "0s", when=NEVER), msg("b", "1h", when=NEVER))
    with _process(database_url, settings, clock, journeys) as first:
        _joined(first, clock, "M1", "13812341234")
        assert {r.step: r.status for r in h.touchpoints(first)} == {"a": "scheduled", "b": "scheduled"}
    sms = h.RecordingChannel("sms")
    with _process(database_url, settings, clock, journeys, sms) as second:
        clock.set(datetime(2026, 5, 6, 9, 30, tzinfo=SH))
        second.ingest(h.Events(clock, mrn="M1")("visit.checked_in"))
        later = h.one_touchpoint(second, step="after-visit")
        assert (later.status, later.reason) == ("scheduled", None)  # not pushed to tomorrow by a and b
        assert later.due_at == datetime(2026, 5, 6, 10, 30, tzinfo=SH)
        clock.set(datetime(2026, 5, 6, 10, 31, tzinfo=SH))
        second.dispatch_due()
        rows = {r.step: r for r in h.touchpoints(second)}
        assert rows["after-visit"].status == "sent" and len(sms.keys) == 1
        assert {rows["a"].status, rows["b"].status} == {"skipped"}


def test_the_pinned_version_decides_when_versions_disagree(database_url, settings, clock):
    """A step conditional in the version one enrollment is pinned to, but not in the version another one runs:
    each enrollment's pending touchpoints count as their own version says."""
    clock.set(datetime(2026, 5, 6, 9, 0, tzinfo=SH))
    first_version = _journeys(msg("a", "0s", when=NEVER), msg("b", "1h", when=NEVER))
    second_version = _journeys(msg("a", "3h"), msg("b", "4h"))
    with _process(database_url, settings, clock, first_version) as first:
        _joined(first, clock, "M1", "13812341234")
    with _process(database_url, settings, clock, second_version) as second:
        _joined(second, clock, "M2", "13812345678")  # pinned to the version without conditions
        pinned = {e.version: e.patient_id for e in h.enrollments(second, journey="care")}
        m1, m2 = pinned[first_version[0].version], pinned[second_version[0].version]  # M1 stays on the first
        clock.set(datetime(2026, 5, 6, 9, 30, tzinfo=SH))
        for mrn in ("M1", "M2"):
            second.ingest(h.Events(clock, mrn=mrn)("visit.checked_in"))
        later = {r.patient_id: r for r in h.touchpoints(second, step="after-visit")}
        assert (later[m1].reason, later[m1].due_at) == (None, datetime(2026, 5, 6, 10, 30, tzinfo=SH))
        assert later[m2].reason == DAILY_CAP  # its a and b take the day's two slots


def test_a_message_planned_after_a_sent_step_counts_the_day_and_a_task_beside_it_waits_for_nothing(make, clock):
    """Followers planned while dispatching: a message takes the day's load into account (pushed to tomorrow by the
    day's two), a staff task of the same step is no message and is due when its delay says."""
    clock.set(datetime(2026, 5, 6, 9, 0, tzinfo=SH))
    eng, sms = make([msg("a", "0s"), msg("b", "3h"),
                     step("c", "post_visit", after_step("a", "30m"), send("t", ["sms"])),
                     step("call", "post_visit", after_step("a", "30m"), task("call_patient"))], cap=2)
    eng.ingest(h.Events(clock)("program.joined"))
    eng.dispatch_due()
    rows = {r.step: r for r in h.touchpoints(eng)}
    assert rows["a"].status == "sent" and len(sms.keys) == 1
    assert (rows["c"].status, rows["c"].reason) == ("scheduled", DAILY_CAP)
    assert rows["c"].due_at == datetime(2026, 5, 7, 9, 30, tzinfo=SH)
    assert (rows["call"].status, rows["call"].reason) == ("scheduled", None)
    assert rows["call"].due_at == datetime(2026, 5, 6, 9, 30, tzinfo=SH)
