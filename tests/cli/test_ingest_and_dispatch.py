"""``carepath events ingest``, ``dispatch``, ``touchpoints list`` and ``tasks list`` on the integrator's own data."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select

from carepath.store import open_database
from carepath.store.schema import Event, OutboxMessage, Touchpoint

from tests.cli.conftest import Cli, event_line, noon_zone

PATIENT = {"name": "王小明", "phone": "13800001111", "birth_date": "1946-03-02", "tz": noon_zone()}
YOUNG = {"name": "李芳", "phone": "13900002222", "birth_date": "1990-07-15", "tz": noon_zone()}


def _count(url: str, model) -> int:  # noqa: ANN001
    db = open_database(url)
    try:
        with db.connect() as conn:
            return conn.execute(select(func.count()).select_from(model)).scalar_one()
    finally:
        db.dispose()


def test_bad_lines_are_reported_with_their_number_and_the_good_ones_applied(hospital: Path, cli: Cli,
                                                                          database_url: str) -> None:
    lines = [
        event_line("A1-booked", "M1", patient=PATIENT),
        '{"type": "appointment.booked", "source": "his",',  # cut short
        event_line("A2-booked", "M2", patient={"name": "李芳", "phone": "13900002222"}).replace("+00:00", ""),
        json.dumps({"type": "appointment.booked", "source": "his", "source_id": "A3", "patient_mrn": "M3",
                    "occurred_at": "2026-05-01T09:00:00+08:00", "payload": {}, "priority": 1}),
        "",
        event_line("A4-booked", "M4", patient={"name": "赵六", "phone": "13700003333"}),
    ]
    (hospital / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    first = cli("events", "ingest", "events.jsonl", "--db", database_url)
    assert first.exit_code == 1, first.output
    assert "events.jsonl:2: not valid JSON" in first.stderr
    assert "events.jsonl:3: occurred_at: must carry a time zone offset" in first.stderr
    assert "events.jsonl:4: priority: unknown field" in first.stderr
    assert "3 of 5 line(s) not applied" in first.stderr and "Traceback" not in first.output
    assert "appointment.booked" in first.stdout
    assert _count(database_url, Event) == 2  # lines 1 and 6, each with its urgent confirmation sent on arrival
    assert _count(database_url, OutboxMessage) == 2

    again = cli("events", "ingest", "events.jsonl", "--json", "--db", database_url)
    report = json.loads(again.stdout)
    assert report["stored"] == {} and report["duplicates"] == {"appointment.booked": 2}
    assert [e["line"] for e in report["errors"]] == [2, 3, 4]
    assert _count(database_url, Event) == 2 and _count(database_url, OutboxMessage) == 2  # nothing twice


def test_ingest_from_stdin_then_dispatch_and_list_what_was_sent(hospital: Path, cli: Cli, database_url: str) -> None:
    stdin = "\n".join([event_line("B1-booked", "M1", patient=PATIENT), event_line("B2-booked", "M2", patient=YOUNG)])
    ingested = cli("events", "ingest", "-", "--db", database_url, input=stdin)
    assert ingested.exit_code == 0, ingested.output
    assert "enrolled: checkup 2; urgent touchpoints sent on arrival: 2" in ingested.stdout

    dispatched = cli("dispatch", "--until-idle", "--json", "--db", database_url)
    assert dispatched.exit_code == 0, dispatched.output
    report = json.loads(dispatched.stdout)
    assert report["outcomes"] == {"sent": 1, "skipped": 1}  # the call: opened for the 80-year-old only
    assert cli("dispatch", "--db", database_url).stdout.count("nothing due now") == 1

    listed = cli("touchpoints", "list", "--status", "sent", "--step", "confirmation", "--json", "--db", database_url)
    sent = json.loads(listed.stdout)["touchpoints"]
    assert sorted(t["patient_id"] for t in sent) == [1, 2] and {t["channel"] for t in sent} == {"sms"}
    one = cli("touchpoints", "list", "--patient", "2", "--journey", "checkup", "--json", "--db", database_url)
    rows = json.loads(one.stdout)["touchpoints"]
    assert {(t["step"], t["status"]) for t in rows} == {("confirmation", "sent"), ("reminder", "scheduled"),
                                                        ("call", "skipped")}
    assert json.loads(cli("touchpoints", "list", "--journey", "nope", "--json", "--db", database_url).stdout) == {
        "touchpoints": []}

    tasks = json.loads(cli("tasks", "list", "--json", "--db", database_url).stdout)["tasks"]
    assert [(t["patient_id"], t["kind"], t["team"], t["journey"], t["step"], t["status"]) for t in tasks] == [
        (1, "call_patient", "nursing", "checkup", "call", "open")]
    for args in (["--patient", "2"], ["--status", "done"], ["--step", "reminder"], ["--journey", "other"]):
        assert json.loads(cli("tasks", "list", *args, "--json", "--db", database_url).stdout) == {"tasks": []}

    for command in (["touchpoints", "list"], ["tasks", "list"], ["patients", "timeline", "1"]):
        table = cli(*command, "--db", database_url)
        assert table.exit_code == 0, table.output
        assert max(len(line) for line in table.stdout.splitlines()) <= 100
        assert "13800001111" not in table.stdout
    assert "13800001111" not in ingested.stdout + dispatched.stdout


def test_a_refused_booking_is_listed_for_operators_and_applied_once_sent_again_corrected(hospital: Path, cli: Cli,
                                                                                      database_url: str) -> None:
    bad = json.loads(event_line("C1-booked", "M1", patient=PATIENT))
    bad["payload"]["start"] = "明天上午"  # words, not a time
    (hospital / "events.jsonl").write_text(json.dumps(bad, ensure_ascii=False) + "\n", encoding="utf-8")
    first = cli("events", "ingest", "events.jsonl", "--db", database_url)
    assert first.exit_code == 1 and "events.jsonl:1: refused: stored, not applied: appointment.booked payload " \
                                    "field 'start'" in first.stderr, first.output
    listed = cli("events", "list", "--status", "refused", "--json", "--db", database_url)
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)["events"]
    assert (row["source_id"], row["status"], row["received_via"]) == ("C1-booked", "refused", "cli")
    assert "payload field 'start'" in row["outcome"]
    table = cli("events", "list", "--status", "refused", "--db", database_url)
    assert "1 refused events" in table.stdout and "C1-booked" in table.stdout

    (hospital / "events.jsonl").write_text(event_line("C1-booked", "M1", patient=PATIENT) + "\n", encoding="utf-8")
    fixed = cli("events", "ingest", "events.jsonl", "--json", "--db", database_url)
    assert json.loads(fixed.stdout)["stored"] == {"appointment.booked": 1}, fixed.output
    assert json.loads(cli("events", "list", "--status", "refused", "--json", "--db", database_url).stdout) == \
        {"events": []}
