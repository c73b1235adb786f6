"""Complaint cases: from a 2/10 survey, a message or staff; acknowledged or breached and escalated; counted monthly."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from carepath.cli import _mount_optional, app
from carepath.definition.events import EventIn, PatientIn
from carepath.runtime import complaints
from carepath.runtime.work_queue import check_slas
from carepath.store.schema import OutboxMessage, StaffTask

from tests.conversations.conftest import said

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _survey(clock, mrn: str, nps: int, n: int = 1) -> EventIn:
    return EventIn(type="survey.completed", source="surveys", source_id=f"survey-{mrn}-{n}", patient_mrn=mrn,
                   occurred_at=clock.now(), payload={"survey": "outpatient-satisfaction", "nps": nps,
                                                     "nps_category": "detractor" if nps <= 6 else "promoter",
                                                     "satisfaction": 2.0, "red_flags": []})


def _outbox(engine, patient_id):
    with engine.db.connect() as conn:
        return [r.body for r in conn.execute(select(OutboxMessage.__table__).where(
            OutboxMessage.patient_id == patient_id).order_by(OutboxMessage.id))]


def _task(engine, task_id):
    with engine.db.connect() as conn:
        return conn.execute(select(StaffTask.__table__).where(StaffTask.id == task_id)).one()


@pytest.fixture
def two_detractors(talk_engine, clock):
    engine = talk_engine(complaints={"from_detractors": True})
    ids = [engine.upsert_patient(PatientIn(mrn=m, name=n, phone=p)) for m, n, p in
           (("M1", "李四", "13912345678"), ("M2", "王五", "13987654321"))]
    engine.ingest(_survey(clock, "M1", 2))
    engine.ingest(_survey(clock, "M2", 2))
    engine.ingest(_survey(clock, "M2", 9, n=2))  # a promoter opens nothing
    engine.ingest(_survey(clock, "M1", 2))  # the same answer again: still one case
    return engine, ids


def test_a_2_of_10_survey_is_acknowledged_and_the_one_left_alone_breaches_and_escalates(two_detractors, clock):
    engine, (p1, p2) = two_detractors
    second, first = complaints.list_cases(engine)  # newest first
    assert (first.patient_id, first.source, first.status, first.summary) == (p1, "survey", "open",
                                                                            "survey outpatient-satisfaction: NPS 2/10")
    assert first.first_response_due_at == clock.now() + timedelta(hours=24)
    assert _task(engine, first.task_id).kind == "complaint_case"

    complaints.acknowledge(engine, first.id, "zhao-min")
    assert _outbox(engine, p1) == [engine.config.complaints.acknowledged_message]
    assert _task(engine, first.task_id).claimed_by == "zhao-min"

    clock.advance(timedelta(hours=25))
    breaches = complaints.check_deadlines(engine)
    assert [(b.case_id, b.deadline) for b in breaches] == [(second.id, "first_response")]
    assert complaints.check_deadlines(engine) == []  # recorded once
    escalated = {b.task_id: b for b in check_slas(engine)}
    assert escalated[second.task_id].role == "service_head"
    assert _task(engine, second.task_id).status == "escalated"
    assert second.task_id not in {b.task_id for b in check_slas(engine)}
    assert first.task_id not in escalated
    shown = complaints.show_case(engine, second.id)
    assert shown.first_response_breached and not complaints.show_case(engine, first.id).first_response_breached
    assert _outbox(engine, p2) == []


def test_the_monthly_report_counts_received_responded_and_resolved(two_detractors, clock, monkeypatch, settings,
                                                                  database_url):
    engine, (p1, _) = two_detractors
    first = complaints.list_cases(engine)[-1]
    complaints.acknowledge(engine, first.id, "zhao-min")
    clock.advance(timedelta(days=2))
    complaints.resolve(engine, first.id, "zhao-min", "已与挂号窗口沟通并致歉")
    with engine.db.connect() as conn:
        months = complaints.monthly_counts(conn, datetime(2026, 5, 1, tzinfo=SHANGHAI),
                                           datetime(2026, 6, 1, tzinfo=SHANGHAI), SHANGHAI)
    assert [(m.month, m.received, m.responded_24h, m.resolved_7d) for m in months] == [("2026-05", 2, 1, 1)]
    monkeypatch.setenv("CAREPATH_HOME", str(settings.home))
    _mount_optional()
    result = CliRunner().invoke(app, ["report", "complaints", "--since", "2026-04-01", "--until", "2026-06-01",
                                      "--json", "--db", database_url])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"month": "2026-05", "received": 2, "responded_24h": 1, "resolved_7d": 1}]


def test_resolution_tells_the_patient_and_records_the_satisfaction_answer(two_detractors, clock):
    engine, (p1, _) = two_detractors
    case = complaints.list_cases(engine)[-1]
    complaints.resolve(engine, case.id, "zhao-min", "已与挂号窗口沟通并致歉")
    told = _outbox(engine, p1)
    assert told == ["您反映的问题已处理完毕：已与挂号窗口沟通并致歉。感谢您的反馈。",
                    engine.config.complaints.satisfaction_question]
    assert _task(engine, case.task_id).status == "done"
    assert complaints.show_case(engine, case.id).messages == (
        "complaint:resolved: sent", "complaint:satisfaction_question: sent")
    engine.ingest(said(clock, "5", mrn="M1", n=9))
    assert complaints.show_case(engine, case.id).satisfaction == 5
    assert _outbox(engine, p1)[-1] == "感谢您的评价！"
    with pytest.raises(complaints.ComplaintError, match="already resolved"):
        complaints.resolve(engine, case.id, "zhao-min", "again")


def test_detractor_answers_open_no_case_unless_configured(talk_engine, clock):
    engine = talk_engine()  # the stock journey's own complaint task handles them
    engine.upsert_patient(PatientIn(mrn="M1", name="李四", phone="13912345678"))
    engine.ingest(_survey(clock, "M1", 2))
    assert complaints.list_cases(engine) == []


def test_resolution_is_counted_in_working_days(talk_engine, clock):
    # 2026: Mid-Autumn on Friday Sep 25, National Day Oct 1-7, Saturday Oct 10 worked. From Sep 25 the 7 working
    # days are Sep 28, 29, 30, Oct 8, 9, 10 and 12.
    due = complaints.add_workdays(datetime(2026, 9, 25, 10, 0, tzinfo=SHANGHAI), 7, SHANGHAI)
    assert due.astimezone(SHANGHAI).replace(tzinfo=None) == datetime(2026, 10, 12, 10, 0)
    plain = complaints.add_workdays(datetime(2026, 5, 11, 10, 0, tzinfo=SHANGHAI), 7, SHANGHAI)  # a Monday
    assert plain.astimezone(SHANGHAI).replace(tzinfo=None) == datetime(2026, 5, 20, 10, 0)


def test_the_cli_lists_shows_opens_acknowledges_and_resolves_cases(talk_engine, clock, monkeypatch, settings,
                                                                   database_url, tmp_path):
    engine = talk_engine()
    engine.upsert_patient(PatientIn(mrn="M1", name="李四", phone="13912345678"))
    config = tmp_path / "carepath.toml"
    config.write_text('[connectors.outbox]\ntype = "outbox"\naddress = "phone"\n'
                      '[staff.zhao-min]\nteam = "patient_service"\nrole = "head_nurse"\n'
                      'token = {env = "ZHAO_TOKEN"}\n', encoding="utf-8")
    monkeypatch.setenv("ZHAO_TOKEN", "token-zhao-min-000001")
    monkeypatch.setenv("CAREPATH_HOME", str(settings.home))
    _mount_optional()
    run = lambda *args: CliRunner().invoke(app, [*args, "--db", database_url, "--config", str(config)])  # noqa: E731
    opened = run("complaints", "open", "M1", "候诊时间太长，电话13912345678没人接", "--as", "zhao-min")
    assert opened.exit_code == 0, opened.output
    listed = json.loads(run("complaints", "list", "--json").output)
    assert [(c["source"], c["status"]) for c in listed] == [("staff", "open")]
    shown = json.loads(run("complaints", "show", str(listed[0]["id"]), "--json").output)
    assert shown["summary"] == "候诊时间太长，电话139****5678没人接"
    assert run("complaints", "acknowledge", str(listed[0]["id"]), "--as", "zhao-min").exit_code == 0
    assert run("complaints", "resolve", str(listed[0]["id"]), "-r", "已调整排班", "--as", "zhao-min").exit_code == 0
    assert json.loads(run("complaints", "show", str(listed[0]["id"]), "--json").output)["status"] == "resolved"
    refused = run("complaints", "acknowledge", str(listed[0]["id"]), "--as", "nobody")
    assert refused.exit_code != 0 and "not a configured staff member" in refused.output
    missing = run("complaints", "show", "999")
    assert missing.exit_code != 0 and "no complaint case 999" in missing.output


def test_a_case_shows_when_the_patient_could_not_be_told(talk_engine, clock):
    engine = talk_engine()
    patient_id = engine.upsert_patient(PatientIn(mrn="M1", name="李四"))  # no phone: no channel reaches them
    with engine.db.begin() as conn:
        case_id = complaints.open_case(conn, engine, patient_id, source="staff", source_ref="staff:test",
                                       summary="窗口态度差", now=clock.now())
    complaints.acknowledge(engine, case_id, "zhao-min")
    [told] = complaints.show_case(engine, case_id).messages
    assert told.startswith("complaint:acknowledged: failed (no_channel")
