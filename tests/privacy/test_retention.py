"""Retention (issue 22, point 5): old data purged or de-identified in batches, with a report; audit kept long enough."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from carepath.config import CarepathConfig, ConfigError, load_config
from carepath.connectors.outbox import OutboxChannel, OutboxConfig
from carepath.definition.dsl import enroll_on, journey, on, send, step, template
from carepath.definition.events import PatientIn
from carepath.privacy.retention import RETAINED, apply_retention
from carepath.privacy.retention_config import RetentionSettings
from carepath.runtime import maintenance
from carepath.store.personal_data import reveal_payload
from carepath.store.schema import AuditEntry, Delivery, Event, OutboxMessage, SurveyResponse

from tests.engine import helpers as h

CARE = journey("care", enroll=enroll_on("program.joined"), templates=[template("t", "{{ patient.name }}您好")],
               steps=[step("hello", "post_visit", on("program.joined"), send("t", ["sms"]), category="clinical")])


def _toml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "carepath.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_audit_retention_below_the_legal_minimum_is_a_config_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(_toml(tmp_path, '[retention]\naudit_minimum = "365d"\naudit = "90d"\n'))
    text = str(err.value)
    assert "retention.audit" in text and "shorter than the legal minimum retention.audit_minimum (365 days)" in text
    with pytest.raises(ConfigError, match=r"retention\.audit: .*180 days"):
        load_config(_toml(tmp_path, '[retention]\naudit = "30d"\n'))  # the default minimum
    with pytest.raises(ConfigError, match=r"retention\.events_days: unknown key"):
        load_config(_toml(tmp_path, '[retention]\nevents_days = 30\n'))
    with pytest.raises(ConfigError, match=r"retention\.events: must be a positive duration"):
        load_config(_toml(tmp_path, '[retention]\nevents = "0s"\n'))
    ok = load_config(_toml(tmp_path, '[retention]\nevents = "365d"\naudit = "400d"\n')).retention
    assert ok.events == timedelta(days=365) and ok.audit == timedelta(days=400) and ok.deliveries is None
    assert load_config(_toml(tmp_path, "")).retention.ages() == {}, "nothing is purged unless configured"


def _history(eng, clock, n: int) -> None:
    """``n`` patients who joined and were greeted, each replying with their phone number, and one survey answer."""
    for i in range(n):
        mrn = f"R{i}"
        eng.upsert_patient(PatientIn(mrn=mrn, name=f"患者{i}", phone=f"1390000{i:04d}"))
        ev = h.Events(clock, mrn)
        eng.ingest(ev("program.joined"))
        eng.ingest(ev("message.replied", {"text": f"我的电话 1390000{i:04d}"}))
    eng.dispatch_due()
    with eng.db.begin() as conn:
        conn.execute(insert(SurveyResponse).values(patient_id=1, survey="s", provider="builtin", external_id=f"x{clock.now():%s}",
                                                   response={"item": [{"answer": "患者0 说很好"}]}, nps=9,
                                                   satisfaction=4.5, red_flags=[], received_at=clock.now()))


def _count(eng, *what) -> int:
    with eng.db.connect() as conn:
        return conn.execute(select(func.count()).select_from(what[0]).where(*what[1:])).scalar_one()


def test_old_data_is_purged_or_deidentified_in_batches_and_reported(database_url, settings, clock):
    eng = h.make_engine(database_url, settings, clock, [CARE],
                        {"sms": OutboxChannel("sms", OutboxConfig(address="phone"))})
    try:
        _history(eng, clock, 3)  # 6 events, 3 deliveries and outbox copies, 1 survey answer: all old
        old_audit = _count(eng, AuditEntry)
        clock.advance(timedelta(days=100))
        _history(eng, clock, 1)  # recent: kept as is (R0 again: its events are new ones)
        clock.advance(timedelta(days=150))  # the first history is 250 days old, the second 150
        rules = RetentionSettings(events="200d", deliveries="200d", survey_answers="200d", audit="200d", batch=2)
        report = apply_retention(eng.db, rules, clock.now())
        assert report.rows == {"events": 6, "deliveries": 6, "survey_answers": 1, "audit": old_audit}
        assert report.pending == [] and "events: 6" in report.summary()

        with eng.db.connect() as conn:
            events = conn.execute(select(Event.type, Event.payload, Event.outcome, Event.received_at)).all()
            answers = conn.execute(select(SurveyResponse.response, SurveyResponse.nps).order_by(SurveyResponse.id)).all()
        old = [e for e in events if e.outcome == RETAINED]
        assert len(old) == 6 and all(e.received_at < clock.now() - timedelta(days=200) for e in old)
        assert all("text" not in e.payload for e in old), "the replies' text (a phone number) is gone"
        recent = [e for e in events if e.outcome != RETAINED]
        assert any(reveal_payload(e.payload, eng.cipher).get("text", "").startswith("我的电话") for e in recent)
        assert answers == [({}, 9), ({"item": [{"answer": "患者0 说很好"}]}, 9)]
        assert _count(eng, Delivery) == 1 and _count(eng, OutboxMessage) == 1
        with eng.db.connect() as conn:
            audit = conn.execute(select(AuditEntry.action, AuditEntry.at, AuditEntry.detail).order_by(AuditEntry.id)).all()
        assert all(a.at >= clock.now() - timedelta(days=200) for a in audit)
        assert audit[-1].action == "retention.applied" and audit[-1].detail["rows"] == report.rows

        again = apply_retention(eng.db, rules, clock.now())
        assert again.total == 0, "a second run finds nothing more"
    finally:
        eng.close()


def test_a_run_stops_after_its_batches_and_the_next_goes_on(database_url, settings, clock):
    eng = h.make_engine(database_url, settings, clock, [CARE], {"sms": h.RecordingChannel("sms")})
    try:
        _history(eng, clock, 3)
        clock.advance(timedelta(days=10))
        rules = RetentionSettings(events="1d", batch=2)
        first = apply_retention(eng.db, rules, clock.now(), max_batches=2)
        assert first.rows == {"events": 4} and first.pending == ["events"]
        second = apply_retention(eng.db, rules, clock.now(), max_batches=2)
        assert second.rows == {"events": 2} and second.pending == []
    finally:
        eng.close()


def test_the_maintenance_job_applies_the_configured_retention_and_reports_it(database_url, settings, clock):
    config = CarepathConfig(retention=RetentionSettings(events="30d", conversations="30d"))
    eng = h.make_engine(database_url, settings, clock, [CARE], {"sms": h.RecordingChannel("sms")}, config=config)
    try:
        _history(eng, clock, 2)
        assert maintenance.jobs()["retention"](eng).count == 0, "nothing is old yet"
        clock.advance(timedelta(days=31))
        result = maintenance.jobs()["retention"](eng)
        assert result.count == 6
        [notice] = result.notices
        # the two patients' replies: their events de-identified, and the texts of their conversation turns removed
        assert notice.event == "carepath.retention.applied"
        assert notice.payload["rows"] == {"events": 4, "conversations": 2}
    finally:
        eng.close()
