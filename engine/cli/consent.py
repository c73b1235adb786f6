"""``carepath consent record|show``: a staff member records a patient's consent; one patient's ledger."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from carepath.cli.common import CONFIG_OPTION, DB_OPTION, ExitCode, fail, open_cli_store, out_console, print_json

app = typer.Typer(help="The consent ledger: per purpose and channel, with its history (never overwritten).",
                  no_args_is_help=True, add_completion=False)


@app.command("record")
def record(patient_id: int = typer.Argument(..., help="internal patient id"),
           purpose: str = typer.Option(..., "--purpose", help="clinical, marketing, sensitive or template:<name>"),
           granted: bool = typer.Option(..., "--grant/--withdraw", help="the patient gives it, or withdraws it"),
           channel: str = typer.Option("*", "--channel", help="one channel (a connector name); * for every channel"),
           who: str = typer.Option(..., "--as", help="your staff name (a care role of the patient's team)"),
           reason: Optional[str] = typer.Option(None, "--reason", help="how the patient said so, in a few words"),
           config: Optional[Path] = CONFIG_OPTION, db: Optional[str] = DB_OPTION) -> None:
    """Record what the patient told you (on the phone, at the desk): a ``consent.changed`` event, via staff."""
    from carepath.definition.catalog import payload_problems
    from carepath.definition.events import EventIn, EventRejected
    from carepath.runtime.work_queue import patient_teams
    from carepath.staff_access import AccessDenied, member_of
    from carepath.store.schema import Patient
    from carepath.teams import StaffError, staff_member

    from carepath.cli.common import open_cli_engine

    open_cli_store(db, read_only=True).db.dispose()  # an existing database only
    engine = open_cli_engine(db, config, runs_journeys=False)
    try:
        try:
            member = member_of(who, staff_member(engine.config.staff, who, action="record consent for"))
        except StaffError as exc:
            fail(str(exc))
        with engine.db.connect() as conn:
            mrn_enc = conn.execute(Patient.__table__.select().with_only_columns(Patient.mrn_enc)
                                   .where(Patient.id == patient_id)).scalar()
        if mrn_enc is None:
            fail(f"no patient with id {patient_id}", ExitCode.NOT_FOUND)
        teams = patient_teams(engine, patient_id)
        try:
            if not any(member.allows("consent", team) for team in teams):
                member.check("consent", teams[0] if teams else None, f"patient {patient_id}")
        except AccessDenied as exc:
            fail(f"{exc}" if teams else f"{who} ({member.role}) may not record a consent for patient "
                                         f"{patient_id}: the patient has no task of your teams")
        now = engine.clock.now()
        payload = {"purpose": purpose, "granted": granted, "channel": channel, "via": "staff", "recorded_by": who,
                   **({"reason": reason} if reason else {})}
        problems = payload_problems("consent.changed", payload)
        if problems:  # checked before anything is stored
            shown = (p.replace("payload field '", "--").replace("':", ":", 1) for p in problems)
            fail("consent not recorded: " + "; ".join(shown))
        try:
            result = engine.ingest(EventIn(type="consent.changed", source="staff",
                                           source_id=f"consent:{who}:{uuid.uuid4().hex}",
                                           patient_mrn=engine.cipher.decrypt(mrn_enc), occurred_at=now,
                                           payload=payload), received_via=f"cli:staff:{who}")
        except EventRejected as exc:
            fail(f"consent not recorded: {exc}")
        if result.state == "refused":
            fail(f"consent not recorded: {'; '.join(result.notes) or 'the payload does not fit consent.changed'}")
    finally:
        engine.close()
    out_console().print(f"patient {patient_id}: {purpose} on {channel} {'granted' if granted else 'withdrawn'} "
                        f"(recorded by {who})")


@app.command("show")
def show(patient_id: int = typer.Argument(..., help="internal patient id"),
         as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
         db: Optional[str] = DB_OPTION) -> None:
    """One patient's consent ledger, oldest first; the row in force for each purpose and channel is marked."""
    from carepath.runtime.consent_ledger import ledger_json
    from carepath.store.schema import Patient

    store = open_cli_store(db, read_only=True)
    try:
        with store.db.connect() as conn:
            known = conn.execute(Patient.__table__.select().with_only_columns(Patient.id)
                                 .where(Patient.id == patient_id)).scalar()
            rows = ledger_json(conn, patient_id) if known is not None else None
    finally:
        store.db.dispose()
    if rows is None:
        fail(f"no patient with id {patient_id}", ExitCode.NOT_FOUND)
    if as_json:
        print_json({"patient": patient_id, "consents": rows})
        return
    table = Table("when (UTC)", "purpose", "channel", "", "via", "by", "reason", title=f"consents of patient "
                                                                                       f"{patient_id} (* in force)")
    for c in rows:
        table.add_row(c["at"][:16], c["purpose"], c["channel"],
                      ("granted" if c["granted"] else "withdrawn") + (" *" if c["in_force"] else ""), c["via"],
                      c["recorded_by"] or c["source"] or "", c["reason"] or "")
    out_console().print(table)
