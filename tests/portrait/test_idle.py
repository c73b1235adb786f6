"""Issue 19.3: an idle trigger reactivates a silent patient once per idle period, never while admitted."""

from __future__ import annotations

from datetime import timedelta

import pytest

from carepath.definition.dsl import enroll_on, idle, journey, send, step, template
from carepath.definition.journey_files import read_journey_text
from carepath.runtime.idle import plan_idle
from tests.engine import helpers as h

DAY = timedelta(days=1)


def _journey():
    return journey("reactivation", enroll=enroll_on("visit.checked_in"), reentry="never",
                   templates=[template("miss_you", "{{ patient.surname }}先生/女士，最近身体好吗？欢迎回复告诉我们。")],
                   steps=[step("checkin-call", "post_visit", idle(30), send("miss_you", ["sms"]))])


@pytest.fixture
def journeys():
    return [_journey()]


def _tick(engine, clock, days: float) -> int:
    """Advance the clock, run the idle job and dispatch; how many messages went out."""
    clock.advance(timedelta(days=days))
    plan_idle(engine)
    return engine.dispatch_due().sent


def test_a_patient_silent_for_30_days_gets_one_message_per_idle_period(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("visit.checked_in", {"department": "内科"}))
    assert _tick(eng, clock, 29) == 0  # not yet 30 days
    assert _tick(eng, clock, 2) == 1  # day 31: one reactivation message
    assert _tick(eng, clock, 31) == 0  # still silent: the same idle period, nothing more
    assert _tick(eng, clock, 60) == 0
    eng.ingest(ev("message.replied", {"text": "挺好的"}))  # the patient answers: it re-arms
    assert _tick(eng, clock, 29) == 0
    assert _tick(eng, clock, 2) == 1
    assert len(eng.sms.keys) == 2
    assert [tp.occurrence for tp in h.touchpoints(eng)] == ["idle:1", "idle:2"]


def test_no_reactivation_while_admitted_and_again_after_discharge(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("visit.checked_in"))
    clock.advance(5 * DAY)
    eng.ingest(ev("encounter.admitted", {"encounter_id": "E1", "ward": "心内科"}))
    assert _tick(eng, clock, 40) == 0  # 45 days since the visit, 40 in hospital: nothing
    assert _tick(eng, clock, 40) == 0
    eng.ingest(ev("encounter.discharged", {"encounter_id": "E1"}))
    assert _tick(eng, clock, 29) == 0  # silence counts from the discharge
    assert _tick(eng, clock, 2) == 1


def test_an_admission_before_the_message_goes_out_cancels_it(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("visit.checked_in"))
    clock.advance(31 * DAY)
    assert plan_idle(eng) == 1
    eng.ingest(ev("encounter.admitted", {"encounter_id": "E2"}))
    assert eng.dispatch_due().sent == 0
    tp = h.one_touchpoint(eng)
    assert tp.status == "cancelled" and "admitted" in tp.reason


def test_deceased_and_unconsenting_patients_are_never_reactivated(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("visit.checked_in"))
    eng.upsert_patient(h.PatientIn(mrn="M2", name="李四", phone="13912345678"))
    eng.ingest(ev("visit.checked_in", mrn="M2"))
    eng.ingest(ev("consent.changed", {"purpose": "clinical", "granted": False}, mrn="M2"))
    eng.ingest(ev("patient.deceased", {}))
    assert _tick(eng, clock, 45) == 0
    assert h.touchpoints(eng) == []


def test_idle_trigger_is_validated_in_yaml():
    text = """
name: quiet
enroll: {events: [visit.checked_in]}
templates: {hi: "您好"}
steps:
  - id: nudge
    stage: post_visit
    idle: {days: 0}
    category: urgent
    send: {template: hi, via: [sms]}
"""
    journey_, problems = read_journey_text(text, known_channels={"sms"})
    messages = [str(p) for p in problems]
    assert any("idle days 0 is out of range" in m and "steps[0].idle.days" in m for m in messages), messages
    assert any("cannot be urgent" in m for m in messages), messages
    ok, problems = read_journey_text(text.replace("days: 0", "days: 30").replace("    category: urgent\n", ""),
                                     known_channels={"sms"})
    assert problems == [] and ok.steps[0].trigger.days == 30
