"""``carepath managers import|assign`` and ``carepath conversations show`` on a real database."""

from __future__ import annotations

import json

from sqlalchemy import select
from typer.testing import CliRunner

from carepath.cli import _mount_optional, app
from carepath.definition.events import PatientIn
from carepath.store.schema import AuditEntry

from tests.conversations.conftest import said

CONFIG = ('[connectors.outbox]\ntype = "outbox"\naddress = "phone"\n'
          '[staff.wang-li]\nteam = "health_management"\nrole = "health_manager"\ntoken = {env = "WANG_TOKEN"}\n'
          '[staff.zhao-min]\nteam = "patient_service"\ntoken = {env = "ZHAO_TOKEN"}\n')


def _cli(tmp_path, monkeypatch, settings, database_url):
    config = tmp_path / "carepath.toml"
    config.write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("WANG_TOKEN", "token-wang-li-0000001")
    monkeypatch.setenv("ZHAO_TOKEN", "token-zhao-min-000001")
    monkeypatch.setenv("CAREPATH_HOME", str(settings.home))
    _mount_optional()
    return lambda *args: CliRunner().invoke(app, [*args, "--db", database_url, "--config", str(config)])


def test_a_csv_import_assigns_managers_and_reports_bad_lines_by_number(talk_engine, clock, tmp_path, monkeypatch,
                                                                       settings, database_url):
    engine = talk_engine()
    for mrn in ("M1", "M2"):
        engine.upsert_patient(PatientIn(mrn=mrn, name="李四", phone="13912345678"))
    run = _cli(tmp_path, monkeypatch, settings, database_url)
    csv = tmp_path / "managers.csv"
    csv.write_text("mrn,manager\nM1,wang-li\nM404,wang-li\nM2,nobody\n", encoding="utf-8")
    result = run("managers", "import", str(csv))
    assert result.exit_code == 1
    assert "1 assigned, 0 unchanged, 2 skipped" in result.output
    assert "managers.csv:3: no patient with this mrn" in result.output
    assert "managers.csv:4: 'nobody' is not a configured staff member" in result.output
    assert run("managers", "assign", "M2", "zhao-min").exit_code == 0
    engine.ingest(said(clock, "我想问下我妈妈的药", mrn="M1", n=1))
    engine.ingest(said(clock, "我想问下我妈妈的药", mrn="M2", n=2))
    from carepath.runtime.work_queue import list_tasks

    owners = {t.patient_id: (t.kind, t.team) for t in list_tasks(engine)}
    assert owners == {1: ("patient_message", "health_management"), 2: ("patient_message", "patient_service")}
    header_less = tmp_path / "bad.csv"
    header_less.write_text("M1;wang-li\n", encoding="utf-8")
    refused = run("managers", "import", str(header_less))
    assert refused.exit_code != 0 and "must name the columns mrn,manager" in refused.output


def test_conversations_show_masks_the_text_and_logs_the_look(talk_engine, clock, tmp_path, monkeypatch, settings,
                                                            database_url):
    engine = talk_engine()
    patient_id = engine.upsert_patient(PatientIn(mrn="M1", name="李四", phone="13912345678"))
    engine.ingest(said(clock, "怎么挂号，我电话13912345678", n=1))
    run = _cli(tmp_path, monkeypatch, settings, database_url)
    result = run("conversations", "show", str(patient_id), "--as", "wang-li", "--json")
    assert result.exit_code == 0, result.output
    turns = json.loads(result.output)
    assert [(t["direction"], t["status"]) for t in turns] == [("in", "answered"), ("out", "sent")]
    assert turns[0]["text"] == "怎么挂号，我电话139****5678" and "13912345678" not in result.output
    with engine.db.connect() as conn:
        looks = conn.execute(select(AuditEntry.actor).where(AuditEntry.action == "conversation.viewed")).all()
    assert [tuple(r) for r in looks] == [("staff:wang-li",)]
    assert run("conversations", "show", str(patient_id), "--as", "stranger").exit_code != 0


def test_tasks_show_gives_the_health_manager_the_message_and_the_conversation(talk_engine, clock, tmp_path,
                                                                              monkeypatch, settings, database_url):
    engine = talk_engine()
    engine.upsert_patient(PatientIn(mrn="M1", name="李四", phone="13912345678"))
    engine.ingest(said(clock, "怎么挂号", n=1))
    engine.ingest(said(clock, "我妈妈的药吃完了，她电话13812345678", n=2))
    run = _cli(tmp_path, monkeypatch, settings, database_url)
    shown = run("tasks", "show", "1", "--as", "wang-li", "--json")
    assert shown.exit_code == 0, shown.output
    conversation = json.loads(shown.output)["conversation"]
    assert [(t["direction"], t["text"][:4]) for t in conversation] == [("in", "怎么挂号"), ("out", "李四您好"),
                                                                      ("in", "我妈妈的")]
    assert "138****5678" in conversation[-1]["text"]
    table = run("tasks", "show", "1", "--as", "wang-li")
    assert "患者: 我妈妈的药吃完了，她电话138****5678" in table.output and "13812345678" not in table.output
