"""``carepath checkins list|summary``: check-in camps (打卡), their check-ins, streaks and completion rates."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from carepath.cli.common import CONFIG_OPTION, DB_OPTION, ExitCode, fail, out_console, print_json

app = typer.Typer(help="Check-ins (打卡): what patients reported, streaks and completion rates (patients masked).",
                  no_args_is_help=True, add_completion=False)
JOURNEY = typer.Option(None, "--journey", help="only this journey (programme)")
PATIENT = typer.Option(None, "--patient", help="only this patient (MRN)")


def _open(db: Optional[str], config: Optional[Path], mrn: Optional[str]):
    from carepath.cli.common import open_cli_engine, open_cli_store
    from carepath.runtime.patients import find_patient_id

    open_cli_store(db, read_only=True).db.dispose()  # the database must exist: none is created here
    engine = open_cli_engine(db, config, runs_journeys=False)
    patient_id = None
    if mrn:
        with engine.db.connect() as conn:
            patient_id = find_patient_id(conn, engine.cipher, mrn)
        if patient_id is None:
            engine.close()
            fail(f"no patient with MRN {mrn!r}", ExitCode.NOT_FOUND)
    return engine, patient_id


@app.command("list")
def list_command(journey: Optional[str] = JOURNEY, mrn: Optional[str] = PATIENT,
                 values: bool = typer.Option(False, "--values", help="show the values and reasons (audit-logged)"),
                 limit: int = typer.Option(200, min=1, max=10000, help="at most this many, newest first"),
                 as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
                 db: Optional[str] = DB_OPTION, config: Optional[Path] = CONFIG_OPTION) -> None:
    """The latest check-ins: day, patient (masked), check-in, recorded or rejected, how; values on --values."""
    from carepath.runtime.checkins_report import list_checkins

    engine, patient_id = _open(db, config, mrn)
    try:
        rows = list_checkins(engine, journey=journey, patient_id=patient_id, with_values=values, limit=limit)
    finally:
        engine.close()
    if as_json:
        print_json({"checkins": [r.__dict__ for r in rows]})
        return
    table = Table("id", "day", "patient", "journey", "check-in", "status", "source", "value", "reason")
    for r in rows:
        table.add_row(str(r.id), r.day.isoformat(), r.patient, r.journey, r.checkin, r.status, r.source,
                      f"{r.value} {r.unit or ''}".strip() if r.value else "", r.reason or "")
    out_console().print(table)


@app.command("summary")
def summary_command(journey: Optional[str] = JOURNEY, mrn: Optional[str] = PATIENT,
                    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
                    db: Optional[str] = DB_OPTION, config: Optional[Path] = CONFIG_OPTION) -> None:
    """Completion rate and streaks per patient, and completion per programme."""
    from carepath.runtime.checkins_report import patient_checkins, programme_checkins

    engine, patient_id = _open(db, config, mrn)
    try:
        rows = patient_checkins(engine, journey=journey, patient_id=patient_id)
    finally:
        engine.close()
    programmes = programme_checkins(rows)
    if as_json:
        print_json({"patients": [{**r.__dict__, "rate": round(r.rate, 4)} for r in rows],
                    "programmes": [{**p.__dict__, "rate": round(p.rate, 4)} for p in programmes]})
        return
    table = Table("journey", "check-in", "patients", "days prompted", "days checked in", "completion",
                  title="per programme")
    for p in programmes:
        table.add_row(p.journey, p.checkin, str(p.patients), str(p.prompted), str(p.completed), f"{p.rate:.0%}")
    out_console().print(table)
    table = Table("patient id", "journey", "check-in", "prompted", "checked in", "completion", "streak", "longest",
                  title="per patient")
    for r in rows:
        table.add_row(str(r.patient_id), r.journey, r.checkin, str(r.prompted), str(r.completed), f"{r.rate:.0%}",
                      str(r.streak), str(r.longest))
    out_console().print(table)
