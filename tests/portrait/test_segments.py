"""Issue 20.3 and 20.5: segments kept incrementally, entry and exit events journeys enroll on, sensitive rules."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from carepath.definition.dsl import after, enroll_on, exit_on, journey, on, send, step, template
from carepath.definition.events import PatientIn
from carepath.definition.segments import SegmentError, build_segment_set
from carepath.runtime.segments import refresh_time_edges
from carepath.store.schema import Event
from tests.engine import helpers as h
from tests.portrait.helpers import cli, config_file, loaded_config, view

DAY = timedelta(days=1)


def _reactivation():
    return journey("win-back", enroll=enroll_on("segment.entered", when='event.segment == "activity-low"'),
                   exit=exit_on("segment.left", when='event.segment == "activity-low"'), templates=[template("miss_you", "好久不见，最近身体怎么样？")],
                   steps=[step("hello", "post_visit", after("enrolled"), send("miss_you", ["sms"]))])


def _segment_events(engine, dimension: str = "behaviour") -> list[tuple[str, str]]:
    with engine.db.connect() as conn:
        return [(t, p["segment"]) for t, p in conn.execute(select(Event.type, Event.payload).where(
            Event.source == "carepath-segments").order_by(Event.id)) if p["dimension"] == dimension]


@pytest.fixture
def journeys():
    return [_reactivation()]


def test_a_patient_who_stops_replying_moves_to_low_activity_and_is_enrolled(eng, clock):
    ev = h.Events(clock)
    for text in ("好", "收到", "谢谢", "明白"):
        eng.ingest(ev("message.replied", {"text": text}))
    assert view(eng).in_segment("activity-high")
    assert ("segment.entered", "activity-high") in _segment_events(eng)
    clock.advance(20 * DAY)
    assert refresh_time_edges(eng) == 0  # nobody's window edge passed yet
    assert view(eng).in_segment("activity-high")
    clock.advance(11 * DAY)  # day 31: the replies left the 30-day window, with no event at all
    assert refresh_time_edges(eng) == 1
    assert refresh_time_edges(eng) == 0  # once per day
    patient = view(eng)
    assert patient.in_segment("activity-low") and not patient.in_segment("activity-high")
    assert _segment_events(eng)[-2:] == [("segment.left", "activity-high"), ("segment.entered", "activity-low")]
    assert [e.journey for e in h.enrollments(eng)] == ["win-back"]
    assert eng.dispatch_due().sent == 1
    eng.ingest(ev("message.replied", {"text": "还好"}))  # the patient answers: low -> medium
    assert view(eng).in_segment("activity-medium")
    assert _segment_events(eng)[-2:] == [("segment.left", "activity-low"), ("segment.entered", "activity-medium")]


def test_counts_add_up_per_dimension(eng, clock, monkeypatch, settings, database_url):
    ev = h.Events(clock)
    births = [date(2015, 1, 1), date(1990, 1, 1), date(1960, 1, 1), date(1950, 1, 1), None]
    for i, birth in enumerate(births):
        eng.upsert_patient(PatientIn(mrn=f"S{i}", name="测试", birth_date=birth, conditions=["E11"] if i % 2 else []))
        eng.ingest(ev("visit.checked_in" if i % 3 else "message.replied", {"text": "好"}, mrn=f"S{i}"))
    result = cli(monkeypatch, settings, database_url, "segments", "list", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["evaluated"] == 5
    assert data["dimensions"] == {"clinical": 5, "behaviour": 5, "value": 5, "demographic": 5}
    members = {r["name"]: r["members"] for r in data["segments"]}
    assert members["chronic"] == 2 and members["age-child"] == 1 and members["age-unknown"] == 1
    table = cli(monkeypatch, settings, database_url, "segments", "list")
    assert "activity-medium" in table.output and "total" in table.output
    shown = cli(monkeypatch, settings, database_url, "segments", "show", "chronic", "--per-page", "1", "--json")
    page = json.loads(shown.output)
    assert page["members_total"] == 2 and len(page["members"]) == 1 and page["members"][0]["name"] == "测*"
    missing = cli(monkeypatch, settings, database_url, "segments", "show", "chronc")
    assert missing.exit_code == 3 and "did you mean 'chronic'" in missing.output


SENSITIVE = """
[segments.depression]
when = 'patient.portrait.has_diagnosis("F32")'
dimension = "clinical"
title = "抑郁随访"

[segments.depression-record]
when = 'patient.has("F32")'
"""


def test_a_sensitive_diagnosis_without_consent_keeps_the_patient_out(database_url, settings, clock, tmp_path,
                                                                      monkeypatch):
    config = loaded_config(tmp_path, SENSITIVE)
    assert config.segments.segments["depression"].sensitive and config.segments.segments["depression-record"].sensitive
    with h.running_engine(database_url, settings, clock, [], {}, config=config) as eng:
        ev = h.Events(clock)
        eng.ingest(ev("encounter.discharged", {"diagnosis": "F32.1", "patient": {"conditions": ["F32.1"]}}))
        assert not view(eng).in_segment("depression") and not view(eng).in_segment("depression-record")
        eng.ingest(ev("consent.changed", {"purpose": "sensitive", "granted": True}))
        assert view(eng).in_segment("depression") and view(eng).in_segment("depression-record")
        eng.ingest(ev("consent.changed", {"purpose": "sensitive", "granted": False}))
        assert not view(eng).in_segment("depression")
        eng.ingest(ev("consent.changed", {"purpose": "sensitive", "granted": True}))
        path = config_file(tmp_path, SENSITIVE)
        listed = json.loads(cli(monkeypatch, settings, database_url, "segments", "list", "--json",
                                config=path).output)
        row = next(r for r in listed["segments"] if r["name"] == "depression")
        assert row["members"] is None and row["suppressed"]  # 1 member, below the group size of 5
        shown = cli(monkeypatch, settings, database_url, "segments", "show", "depression", config=path)
        assert "fewer than 5 members: members not shown" in shown.output and "张" not in shown.output


def test_segment_definitions_are_checked_with_their_key():
    with pytest.raises(SegmentError) as err:
        build_segment_set({"vip": {"when": "patient.portrait.visitz_90d > 3", "dimension": "money"},
                           "bad name": {"when": "true"}, "loop": {"when": 'patient.in_segment("vip")'},
                           "min_group_size": 0})
    assert "segments.min_group_size" in str(err.value)
    with pytest.raises(SegmentError) as err:
        build_segment_set({"vip": {"when": "patient.portrait.visitz_90d > 3", "dimension": "value"},
                           "rich": {"when": "true", "dimension": "money"},
                           "loop": {"when": 'patient.in_segment("vip")'}, "ev": {"when": "event.x == 1"}})
    text = str(err.value)
    assert "segments.rich.dimension: unknown dimension 'money'" in text
    assert "segments.vip.when: patient.portrait has no field 'visitz_90d'; did you mean 'visits_90d'?" in text
    assert "segments.loop.when: a segment cannot use patient.in_segment" in text
    assert "segments.ev.when: a segment condition sees only patient and now" in text


def test_in_segment_in_a_step_condition(database_url, settings, clock):
    j = journey("tips", enroll=enroll_on("visit.checked_in"),
                templates=[template("tip", "用药小贴士")],
                steps=[step("tip", "post_visit", on("visit.checked_in", delay="1h"), send("tip", ["sms"]),
                            when='patient.in_segment("activity-high")')])
    with h.running_engine(database_url, settings, clock, [j], {"sms": h.RecordingChannel("sms")}) as eng:
        ev = h.Events(clock)
        eng.ingest(ev("visit.checked_in"))
        clock.advance(timedelta(hours=2))
        assert eng.dispatch_due().outcomes["skipped"] == 1  # one interaction: medium activity
        for text in ("1", "2", "3"):
            eng.ingest(ev("message.replied", {"text": text}))
        eng.ingest(ev("visit.checked_in", {"appointment_id": "A2"}))
        clock.advance(timedelta(hours=2))
        assert eng.dispatch_due().sent == 1
