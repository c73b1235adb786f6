"""Issue 20.1: the portrait is kept as events arrive, its windows age without events, it is shown masked."""

from __future__ import annotations

from datetime import timedelta

import pytest

from carepath.definition.context import expression_context
from carepath.definition.dsl import enroll_on, journey, on, send, step, template
from carepath.definition.expressions import evaluate
from carepath.definition.journey_files import read_journey_text
from carepath.definition.events import PatientIn
from tests.engine import helpers as h
from tests.portrait.helpers import cli, view

DAY = timedelta(days=1)


def _journey():
    return journey("visit-care", enroll=enroll_on("visit.checked_in"),
                   templates=[template("welcome", "欢迎就诊")],
                   steps=[step("welcome", "in_visit", on("visit.checked_in"), send("welcome", ["sms"]))])


@pytest.fixture
def journeys():
    return [_journey()]


def test_engagement_counts_follow_events_and_windows_age_without_any(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("visit.checked_in", {"department": "内分泌科"}))
    eng.ingest(ev("message.replied", {"text": "收到"}))
    eng.ingest(ev("message.replied", {"text": "谢谢"}))
    eng.ingest(ev("message.clicked", {"touchpoint_id": 1, "link": 1}))
    eng.ingest(ev("survey.completed", {"survey": "satisfaction", "nps": 9, "nps_category": "promoter",
                                       "satisfaction": 4.5, "red_flags": []}))
    p = view(eng).portrait
    assert (p.replies_30d, p.clicks_30d, p.surveys_30d, p.visits_total, p.interactions_30d) == (2, 1, 1, 1, 5)
    assert (p.last_visit_days, p.last_department, p.last_nps, p.last_satisfaction) == (0, "内分泌科", 9, 4.5)
    clock.advance(31 * DAY)  # no event at all: the 30-day window empties, the 90-day one keeps them
    p = view(eng).portrait
    assert (p.replies_30d, p.replies_90d, p.replies_total, p.last_reply_days) == (0, 2, 2, 31)
    clock.advance(60 * DAY)
    p = view(eng).portrait
    assert (p.replies_90d, p.replies_total, p.interactions_90d) == (0, 2, 0)
    ctx = expression_context(view(eng), now=clock.now())
    assert evaluate("patient.portrait.replies_total == 2 and patient.portrait.clicks_30d == 0", ctx).value


def test_clinical_facts_admission_discharge_and_diagnoses(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("encounter.admitted", {"encounter_id": "E1", "ward": "心内科",
                                         "patient": {"conditions": ["I10"]}}))
    p = view(eng).portrait
    assert p.admitted and p.admissions_30d == 1 and p.has_diagnosis("I10") and p.chronic
    clock.advance(5 * DAY)
    eng.ingest(ev("encounter.discharged", {"encounter_id": "E1", "diagnosis": "I21.9"}))
    eng.ingest(ev("report.ready", {"report": "心肌酶", "abnormal": True}))
    p = view(eng).portrait
    assert not p.admitted and p.discharges_30d == 1 and p.reports_total == 1
    assert set(p.diagnoses) == {"I10", "I21.9"}


def test_messages_sent_and_delivered_are_counted_once(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("visit.checked_in"))
    assert eng.dispatch_due().sent == 1
    provider_id = h.deliveries(eng)[0].provider_id
    eng.ingest(ev("message.delivered", {"provider_id": provider_id}))
    eng.ingest(ev("message.delivered", {"provider_id": provider_id}))  # the provider pushed it twice
    p = view(eng).portrait
    assert (p.messages_30d, p.delivered_30d, p.last_message_days) == (1, 1, 0)


def test_clinical_facts_are_encrypted_at_rest(eng, clock):
    eng.ingest(h.Events(clock)("encounter.discharged", {"diagnosis": "E11.9", "department": "内分泌科"}))
    raw = repr(h.raw_rows(eng, "portraits"))
    assert "E11" not in raw and "内分泌科" not in raw
    assert view(eng).portrait.diagnoses == ("E11.9",)


def test_sensitive_diagnoses_need_the_sensitive_consent(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("encounter.discharged", {"diagnosis": "F32.1"}))
    assert view(eng).portrait.diagnoses == () and not view(eng).portrait.has_diagnosis("F32")
    eng.ingest(ev("consent.changed", {"purpose": "sensitive", "granted": True}))
    assert view(eng).portrait.diagnoses == ("F32.1",)


def test_patients_show_prints_the_portrait_masked(eng, clock, monkeypatch, settings, database_url):
    ev = h.Events(clock)
    eng.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234", conditions=["E11.9", "B20"]))
    eng.ingest(ev("visit.checked_in", {"department": "内分泌科"}))
    eng.ingest(ev("message.replied", {"text": "好的"}))
    result = cli(monkeypatch, settings, database_url, "patients", "show", "1")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "张*" in out and "张三" not in out and "1381234" not in out
    assert "E11.9" in out and "B20" not in out and "sensitive diagnosis (not shown)" in out
    assert "replies_30d" in out and "内分泌科" in out
    data = cli(monkeypatch, settings, database_url, "patients", "show", "1", "--json")
    assert '"replies_total": 1' in data.output  # (the CLI counts windows on today's date)
    assert cli(monkeypatch, settings, database_url, "patients", "show", "99").exit_code == 3


def test_the_validator_checks_portrait_fields_and_segment_names():
    text = """
name: portrait-check
enroll: {events: [visit.checked_in], condition: 'patient.portrait.clickz_30d > 0'}
templates: {hi: "您好"}
steps:
  - id: hi
    stage: post_visit
    on: visit.checked_in
    when: 'patient.in_segment("activty-low") and patient.portrait.replies_90d == 0'
    send: {template: hi, via: [sms]}
"""
    _, problems = read_journey_text(text, known_channels={"sms"})
    messages = " | ".join(str(p) for p in problems)
    assert "patient.portrait has no field 'clickz_30d'; did you mean 'clicks_30d'?" in messages
    assert "unknown segment 'activty-low'; did you mean 'activity-low'?" in messages
    assert "replies_90d" not in messages


def test_the_end_of_an_outpatient_visit_is_no_discharge(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("visit.checked_in", {"department": "眼科"}))
    eng.ingest(ev("encounter.discharged", {"patient_class": "outpatient"}))  # many HIS end a clinic visit so
    p = view(eng).portrait
    assert (p.visits_30d, p.discharges_30d) == (1, 0)
    eng.ingest(ev("encounter.discharged", {"patient_class": "inpatient", "encounter_id": "E9"}))
    assert view(eng).portrait.discharges_30d == 1
