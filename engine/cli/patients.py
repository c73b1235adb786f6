"""``carepath patients``: one patient's journey, contacts masked."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from carepath.cli.common import (CONFIG_OPTION, DB_OPTION, ExitCode, cli_config, fail, open_cli_store, out_console,
                                 print_json)

app = typer.Typer(help="Look at patients (contacts always masked).", no_args_is_help=True, add_completion=False)


@app.command("timeline")
def timeline(patient_id: int = typer.Argument(..., help="internal patient id"),
             as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
             db: Optional[str] = DB_OPTION
             ) -> None:
    """One patient's journey: events, touchpoints with due and sent times, deliveries, staff tasks."""
    from carepath.reporting import timeline_data, timeline_tables
    from carepath.store.database import shown_url

    store = open_cli_store(db, read_only=True)
    try:
        with store.db.connect() as conn:
            if as_json:
                data = timeline_data(conn, store.cipher, patient_id)
                if data is not None:
                    print_json(data)
                    return
            else:
                tables = timeline_tables(conn, store.cipher, patient_id)
                if tables is not None:
                    console = out_console()
                    for table in tables:
                        console.print(table)
                    return
    finally:
        store.db.dispose()
    fail(f"no patient with id {patient_id} in {shown_url(store.url)}", ExitCode.NOT_FOUND)


@app.command("show")
def show(patient_id: int = typer.Argument(..., help="internal patient id"),
         as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
         db: Optional[str] = DB_OPTION, config: Optional[Path] = CONFIG_OPTION) -> None:
    """One patient's portrait: clinical and engagement facts and segments (name masked, sensitive diagnoses hidden)."""
    from datetime import datetime, timezone

    from rich.table import Table

    from carepath.portrait_report import portrait_data
    from carepath.store.database import shown_url

    segments = cli_config(config).segments
    store = open_cli_store(db, read_only=True)
    try:
        with store.db.connect() as conn:
            data = portrait_data(conn, store.cipher, patient_id, segments, datetime.now(timezone.utc))
    finally:
        store.db.dispose()
    if data is None:
        fail(f"no patient with id {patient_id} in {shown_url(store.url)}", ExitCode.NOT_FOUND)
    if as_json:
        print_json(data)
        return
    p = data["patient"]
    table = Table("field", "value", title=f"patient {p['id']}: {p['name']} ({p['sex'] or '?'}, "
                                          f"{p['age'] if p['age'] is not None else '?'})")
    for name, value in data["portrait"].items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else "" if value is None else str(value)
        table.add_row(name, shown)
    out_console().print(table)


# issue 22: a patient's rights (carepath.cli.patient_rights)
from carepath.cli.patient_rights import erase as _erase, export as _export  # noqa: E402

app.command("export")(_export)
app.command("erase")(_erase)
