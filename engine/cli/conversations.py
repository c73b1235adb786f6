"""``carepath complaints list|show|open|acknowledge|resolve``, ``carepath managers assign|show|import`` and
``carepath conversations show`` (issue 21)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from carepath.cli.common import CONFIG_OPTION, DB_OPTION, ExitCode, fail, out_console, print_json

complaints_app = typer.Typer(help="Complaint cases: 24-hour first response, 7-working-day resolution.",
                             no_args_is_help=True)
managers_app = typer.Typer(help="Health managers: who looks after which patient.", no_args_is_help=True)
conversations_app = typer.Typer(help="Patients' conversations (texts shown masked).", no_args_is_help=True)
WHO = typer.Option(..., "--as", help="your staff name: a [staff.NAME] of carepath.toml (recorded in the audit log)")


def _engine(db: Optional[str], config: Optional[Path], who: str | None = None, action: str = "view"):
    """The engine on an existing database; ``who`` must be configured staff when given."""
    from carepath.cli.common import open_cli_engine, open_cli_store
    from carepath.teams import StaffError, staff_member

    open_cli_store(db, read_only=True).db.dispose()  # the database must exist: none is created here
    engine = open_cli_engine(db, config, runs_journeys=False)
    if who is not None:
        try:
            staff_member(engine.config.staff, who, action=action)
        except StaffError as exc:
            engine.close()
            fail(str(exc))
    return engine


def _when(value) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


@complaints_app.command("list")
def list_complaints(status: Optional[str] = typer.Option(None, help="open | acknowledged | resolved"),
                    json_out: bool = typer.Option(False, "--json"), config: Optional[Path] = CONFIG_OPTION,
                    db: Optional[str] = DB_OPTION) -> None:
    """Complaint cases, newest first, with their deadlines and breaches."""
    from carepath.runtime.complaints import STATUSES, list_cases

    if status is not None and status not in STATUSES:
        fail(f"--status {status!r} is not a case status (one of: {', '.join(STATUSES)})")
    cases = list_cases(_engine(db, config), status=status)
    if json_out:
        print_json([c.to_json() for c in cases])
        return
    table = Table("id", "patient", "source", "status", "opened", "first response due", "resolution due", "breached")
    for c in cases:
        breached = ", ".join(n for n, b in (("24h", c.first_response_breached), ("7d", c.resolution_breached)) if b)
        table.add_row(str(c.id), str(c.patient_id), c.source, c.status, _when(c.opened_at),
                      _when(c.first_response_due_at), _when(c.resolution_due_at), breached)
    out_console().print(table)


@complaints_app.command("show")
def show_complaint(case_id: int = typer.Argument(...), json_out: bool = typer.Option(False, "--json"),
                   config: Optional[Path] = CONFIG_OPTION, db: Optional[str] = DB_OPTION) -> None:
    """One case: what the patient said (masked), its deadlines, who acknowledged and resolved it."""
    from carepath.runtime.complaints import ComplaintError, show_case

    try:
        case = show_case(_engine(db, config), case_id)
    except ComplaintError as exc:
        fail(str(exc), ExitCode.NOT_FOUND)
    if json_out:
        print_json(case.to_json())
        return
    table = Table("field", "value", title=f"complaint case {case_id}")
    for key, value in case.to_json().items():
        table.add_row(key, "" if value is None else str(value))
    out_console().print(table)


@complaints_app.command("open")
def open_complaint(mrn: str = typer.Argument(..., help="the patient's MRN"),
                   summary: str = typer.Argument(..., help="what the patient complained about"), who: str = WHO,
                   config: Optional[Path] = CONFIG_OPTION, db: Optional[str] = DB_OPTION) -> None:
    """Open a case staff took by phone or at the desk."""
    from carepath.runtime.complaints import open_case
    from carepath.runtime.patients import find_patient_id

    engine = _engine(db, config, who, "open")
    now = engine.clock.now()
    with engine.db.begin() as conn:
        patient_id = find_patient_id(conn, engine.cipher, mrn)
        if patient_id is None:
            fail("no patient with this MRN", ExitCode.NOT_FOUND)
        case_id = open_case(conn, engine, patient_id, source="staff", source_ref=f"staff:{who}:{now.isoformat()}",
                            summary=summary, now=now)
    out_console().print(f"complaint case {case_id} opened")


@complaints_app.command("acknowledge")
def acknowledge(case_id: int = typer.Argument(...), who: str = WHO, config: Optional[Path] = CONFIG_OPTION,
                db: Optional[str] = DB_OPTION) -> None:
    """First response: take the case; the patient is told it is being handled."""
    from carepath.runtime.complaints import ComplaintError, acknowledge as do_acknowledge

    try:
        do_acknowledge(_engine(db, config, who, "acknowledge"), case_id, who)
    except ComplaintError as exc:
        fail(str(exc))
    out_console().print(f"complaint case {case_id} acknowledged by {who}")


@complaints_app.command("resolve")
def resolve(case_id: int = typer.Argument(...), resolution: str = typer.Option(
        ..., "--resolution", "-r", help="what was done (sent to the patient)"), who: str = WHO,
            config: Optional[Path] = CONFIG_OPTION, db: Optional[str] = DB_OPTION) -> None:
    """Resolve the case; the patient is told and asked one satisfaction question."""
    from carepath.runtime.complaints import ComplaintError, resolve as do_resolve

    try:
        do_resolve(_engine(db, config, who, "resolve"), case_id, who, resolution)
    except ComplaintError as exc:
        fail(str(exc))
    out_console().print(f"complaint case {case_id} resolved by {who}")


@managers_app.command("assign")
def assign(mrn: str = typer.Argument(...), manager: str = typer.Argument(..., help="a [staff.NAME]"),
           config: Optional[Path] = CONFIG_OPTION, db: Optional[str] = DB_OPTION) -> None:
    """Make a staff member the patient's health manager."""
    from carepath.runtime.managers import ManagerError, assign as do_assign
    from carepath.runtime.patients import find_patient_id

    engine = _engine(db, config)
    with engine.db.connect() as conn:
        patient_id = find_patient_id(conn, engine.cipher, mrn)
    if patient_id is None:
        fail("no patient with this MRN", ExitCode.NOT_FOUND)
    try:
        changed = do_assign(engine, patient_id, manager, source="cli")
    except ManagerError as exc:
        fail(str(exc))
    out_console().print(f"patient {patient_id}: health manager {manager}" + ("" if changed else " (unchanged)"))


@managers_app.command("import")
def import_managers(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV with columns mrn,manager"),
                    config: Optional[Path] = CONFIG_OPTION, db: Optional[str] = DB_OPTION) -> None:
    """Assign health managers from a CSV file; bad lines are reported by number and skipped."""
    from carepath.runtime.managers import ManagerError, import_csv

    try:
        report = import_csv(_engine(db, config), file)
    except ManagerError as exc:
        fail(str(exc))
    out = out_console()
    out.print(f"{report.assigned} assigned, {report.unchanged} unchanged, {len(report.problems)} skipped")
    for problem in report.problems:
        out.print(f"  {problem}")
    if report.problems:
        raise typer.Exit(int(ExitCode.INVALID))


@conversations_app.command("show")
def show_conversation(patient_id: int = typer.Argument(..., help="the patient's id (tasks name it)"),
                      who: str = WHO, limit: int = typer.Option(50, min=1, max=500),
                      json_out: bool = typer.Option(False, "--json"), config: Optional[Path] = CONFIG_OPTION,
                      db: Optional[str] = DB_OPTION) -> None:
    """A patient's last messages and answers, masked, with what became of each (audit-logged)."""
    from carepath.runtime.conversations.turns import conversation
    from carepath.store.audit import audit

    engine = _engine(db, config, who, "view")
    with engine.db.begin() as conn:
        turns = conversation(conn, engine.cipher, patient_id, limit=limit)
        audit(conn, actor=f"staff:{who}", action="conversation.viewed", entity="patient", entity_id=patient_id,
              at=engine.clock.now())
    if json_out:
        print_json([t.to_json() for t in turns])
        return
    table = Table("turn", "at", "dir", "channel", "text", "status", "rule", "task")
    for t in turns:
        table.add_row(str(t.id), _when(t.at), t.direction, t.channel or "", t.shown(), t.status, t.rule or "",
                      "" if t.task_id is None else str(t.task_id))
    out_console().print(table)
