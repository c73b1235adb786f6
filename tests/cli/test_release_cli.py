"""What a new user meets first (issue 16): configuration errors, validation without a configuration, text
printed as written, and the command line's exit codes."""

from __future__ import annotations

import json
import shutil
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from carepath.config import CarepathConfig
from carepath.engine import Engine
from carepath.journeys import journey_files
from carepath.reporting import report_days
from carepath.settings import Settings
from carepath.store import open_database
from carepath.store.schema import Event

from tests.cli.conftest import CONFIG, Cli, event_line, noon_zone, wechat_toml

SH = ZoneInfo("Asia/Shanghai")

BROKEN = wechat_toml("CP_TEST_UNSET_SECRET", "CP_TEST_UNSET_TOKEN") + (
    '\n[staff.wang-li]\nteam = "nursing"\ntoken = {env = "CP_TEST_UNSET_STAFF_TOKEN"}\n')

#: every command that reads carepath.toml
READS_CONFIG = [
    ["journeys", "validate", "journeys"],
    ["config", "check"],
    ["events", "ingest", "events.jsonl"],
    ["dispatch"],
    ["report", "surveys"],
    ["serve"],
    ["tasks", "show", "1", "--as", "wang-li"],
    ["tasks", "claim", "1", "--as", "wang-li"],
    ["tasks", "note", "1", "called", "--as", "wang-li"],
    ["tasks", "done", "1", "--as", "wang-li"],
    ["wechat", "bind", "M1"],
    ["journeys", "versions", "checkup"],
    ["journeys", "migrate", "checkup", "--to", "abc"],
]


def _empty_store() -> None:
    """The default database of the working folder, so commands that only read find one."""
    Engine(None, journeys=[], channels={}, settings=Settings(), config=CarepathConfig()).close()


@pytest.mark.parametrize("command", READS_CONFIG, ids=lambda c: " ".join(c[:2]))
def test_a_configuration_problem_is_one_line_naming_the_key_and_the_variable(command: list[str], hospital: Path,
                                                                             cli: Cli, monkeypatch) -> None:
    for name in ("CP_TEST_UNSET_SECRET", "CP_TEST_UNSET_TOKEN", "CP_TEST_UNSET_STAFF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    _empty_store()
    (hospital / "events.jsonl").write_text("", encoding="utf-8")
    (hospital / "carepath.toml").write_text(BROKEN, encoding="utf-8")
    result = cli(*command)
    assert result.exit_code == 1, (command, result.output)
    assert "Traceback" not in result.output and "required key missing" not in result.output
    lines = result.stderr.splitlines()
    for key, variable in (("connectors.wechat.secret", "CP_TEST_UNSET_SECRET"),
                          ("connectors.wechat.token", "CP_TEST_UNSET_TOKEN"),
                          ("staff.wang-li.token", "CP_TEST_UNSET_STAFF_TOKEN")):
        assert [line for line in lines if key in line] == [
            line for line in lines if f"environment variable {variable} is not set" in line], (command, lines)
        assert sum(key in line for line in lines) == 1, (command, lines)


def _outpatient() -> Path:
    """The stock outpatient-visit file (other stock journeys sort before it)."""
    return next(path for path in journey_files() if path.name == "outpatient-visit.yaml")


def test_the_stock_journeys_validate_outside_a_configured_folder(workdir: Path, cli: Cli, monkeypatch) -> None:
    monkeypatch.delenv("CAREPATH_CONFIG")
    result = cli("journeys", "validate", *journey_files())
    assert result.exit_code == 0, result.output
    assert "unknown channel" not in result.output
    assert "note: no carepath.toml here, so channel names are checked against the installed channel types" \
        in result.stderr
    for name in ("wechat", "sms", "console", "aliyun-sms"):
        assert name in result.stderr.split("installed channel types:")[1]
    # a channel no installed plugin provides is still an error
    bad = workdir / "visit.yaml"
    bad.write_text(_outpatient().read_text(encoding="utf-8").replace("via: [wechat, sms]", "via: [pager]", 1))
    refused = cli("journeys", "validate", bad)
    assert refused.exit_code == 1 and "unknown channel 'pager'" in refused.stdout


def test_paths_and_user_text_are_printed_as_written(workdir: Path, cli: Cli, monkeypatch, capsys) -> None:
    monkeypatch.delenv("CAREPATH_CONFIG")
    folder = workdir / "ward:100:"
    folder.mkdir()
    good = folder / "outpatient-visit.yaml"
    shutil.copy(_outpatient(), good)
    bad = folder / "bad:100:.yaml"
    bad.write_text(good.read_text(encoding="utf-8").replace("template: followup,", "template: '[bold]followup',"),
                   encoding="utf-8")
    result = cli("journeys", "validate", folder)
    assert result.exit_code == 1
    assert f"✓ {good}: outpatient-visit" in result.stdout
    assert f"{bad}:" in result.stdout and "unknown template '[bold]followup'" in result.stdout
    assert "💯" not in result.output and ":100:" in result.stdout

    from carepath.connectors.console import ConsoleChannel
    from carepath.plugins.contracts import Message

    ConsoleChannel("console").send(Message(idempotency_key="k1", channel="console", patient_id=1, address="",
                                           title="[bold]提醒", body="满分 :100: [red]请回复[/red]",
                                           template="t", category="clinical"))
    assert "[bold]提醒 满分 :100: [red]请回复[/red]" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["tasks", "list"], ["touchpoints", "list"]])
def test_an_invalid_status_is_a_usage_error_listing_the_valid_ones(workdir: Path, cli: Cli, command) -> None:
    result = cli(*command, "--status", "sentt")
    assert result.exit_code == 2
    assert "'sentt' is not one of" in result.output and "'sent'" in result.output or "'open'" in result.output


def test_an_event_of_an_unknown_type_is_refused_with_the_nearest_type(hospital: Path, cli: Cli,
                                                                      database_url: str) -> None:
    typo = event_line("A1-booked", "M1", patient={"name": "王小明", "tz": noon_zone()}).replace(
        "appointment.booked", "appointment.bokked")
    (hospital / "events.jsonl").write_text(typo + "\n", encoding="utf-8")
    result = cli("events", "ingest", "events.jsonl", "--db", database_url)
    assert result.exit_code == 1
    assert "events.jsonl:1: not applied: type: unknown event type 'appointment.bokked'; did you mean " \
           "'appointment.booked'?" in result.stderr
    db = open_database(database_url)
    try:
        with db.connect() as conn:
            assert conn.execute(select(func.count()).select_from(Event)).scalar_one() == 0
    finally:
        db.dispose()


def test_versions_marks_the_hospitals_own_journey_live_and_a_missing_one_is_not_found(hospital: Path, cli: Cli,
                                                                                        database_url: str) -> None:
    booked = event_line("A1-booked", "M1", patient={"name": "王小明", "tz": noon_zone()})
    assert cli("events", "ingest", "-", "--db", database_url, input=booked).exit_code == 0
    table = cli("journeys", "versions", "checkup", "--db", database_url)
    assert table.exit_code == 0, table.output
    assert "live" in table.stdout
    [row] = json.loads(cli("journeys", "versions", "checkup", "--json", "--db", database_url).stdout)
    assert row["live"] and row["active"] == 1
    assert cli("journeys", "versions", "nope", "--db", database_url).exit_code == 3
    assert cli("journeys", "migrate", "checkup", "--to", "zzz", "--db", database_url).exit_code == 3


def test_only_configured_staff_act_on_tasks(hospital: Path, cli: Cli, database_url: str, monkeypatch) -> None:
    monkeypatch.setenv("STAFF_WANG_LI_TOKEN", "a-long-enough-staff-token")
    (hospital / "carepath.toml").write_text(CONFIG + '\n[staff.wang-li]\nteam = "nursing"\n'
                                            'token = {env = "STAFF_WANG_LI_TOKEN"}\n'
                                            '\n[teams.nursing]\nfirst_response = "2h"\n', encoding="utf-8")
    old = {"name": "王小明", "phone": "13800001111", "birth_date": "1946-03-02", "tz": noon_zone()}
    assert cli("events", "ingest", "-", "--db", database_url, input=event_line("A1-booked", "M1", patient=old)
               ).exit_code == 0
    assert cli("dispatch", "--until-idle", "--db", database_url).exit_code == 0
    [open_task] = json.loads(cli("tasks", "list", "--json", "--db", database_url).stdout)["tasks"]
    assert open_task["deadline"] == "first_response" and open_task["deadline_at"] == open_task["first_response_due_at"]
    listed = cli("tasks", "list", "--db", database_url).stdout
    assert "first response" in listed  # which deadline it is
    stranger = cli("tasks", "claim", "1", "--as", "wang-lee", "--db", database_url)
    assert stranger.exit_code == 1
    assert "'wang-lee' is not a configured staff member; did you mean 'wang-li'?" in stranger.stderr
    assert "(configured: wang-li; [staff.NAME] in carepath.toml)" in stranger.stderr
    assert cli("tasks", "note", "1", "hello", "--as", "nobody", "--db", database_url).exit_code == 1
    claimed = cli("tasks", "claim", "1", "--as", "wang-li", "--db", database_url)
    assert claimed.exit_code == 0, claimed.output
    assert "task 1 claimed by wang-li" in claimed.stdout
    [taken] = json.loads(cli("tasks", "list", "--json", "--db", database_url).stdout)["tasks"]
    assert taken["deadline"] == "resolution" and taken["deadline_at"] == taken["sla_due_at"]
    shown = cli("tasks", "show", "1", "--as", "wang-li", "--db", database_url)
    assert "due (resolution)" in shown.stdout


def test_report_days_are_the_hospitals_days() -> None:
    now = datetime(2026, 5, 10, 0, 30, tzinfo=SH)  # 16:30 on 9 May in UTC
    assert report_days(None, None, SH, now) == (datetime(2026, 4, 10, tzinfo=SH), datetime(2026, 5, 11, tzinfo=SH))
    assert report_days(date(2026, 5, 1), date(2026, 6, 1), SH, now) == (datetime(2026, 5, 1, tzinfo=SH),
                                                                        datetime(2026, 6, 1, tzinfo=SH))


def test_report_surveys_counts_today_in_the_hospitals_zone_whatever_the_servers(workdir: Path, cli: Cli,
                                                                                 monkeypatch) -> None:
    monkeypatch.delenv("CAREPATH_CONFIG")
    _empty_store()
    monkeypatch.setenv("TZ", "Etc/GMT+12")  # a server clock 20 hours behind Shanghai
    time.tzset()
    try:
        report = json.loads(cli("report", "surveys", "--json").stdout)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    tomorrow = datetime.now(SH).date() + timedelta(days=1)
    assert report["until"] == datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=SH).isoformat()


def test_serve_takes_config_and_db_like_every_command(workdir: Path, cli: Cli) -> None:
    missing = cli("serve", "--config", "elsewhere.toml", "--db", "elsewhere.db")
    assert missing.exit_code == 3 and "no configuration file at elsewhere.toml" in missing.stderr
    (workdir / "site.toml").write_text('[connectors.sms]\ntype = "outbox"\n', encoding="utf-8")
    nothing = cli("serve", "--config", "site.toml", "--db", "site.db")  # valid, but runs no journey
    assert nothing.exit_code == 1 and "no journeys to serve (site.toml: add [journeys]" in nothing.stderr
    assert (workdir / "site.db").exists()  # the database --db named, not the default one
