"""``carepath events ...``: the event types the engine knows, and feeding it events."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from carepath.cli.common import (CONFIG_OPTION, DB_OPTION, ExitCode, err_console, fail, open_cli_engine,
                                  open_cli_store, out_console, print_json)

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Events: the types the engine knows, and feeding it events from the hospital's systems.")


@app.callback()
def _events() -> None:
    """Events: the types the engine knows, and feeding it events from the hospital's systems."""


@app.command("types")
def types(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")) -> None:
    """Every event type (built-in and from plugins) with its payload fields."""
    from carepath.definition.catalog import event_types

    known = sorted(event_types().values(), key=lambda t: t.name)
    if as_json:
        typer.echo(json.dumps({"event_types": [t.to_json() for t in known]}, ensure_ascii=False, indent=2))
        return
    console = out_console()
    for event_type in known:
        source = "" if event_type.source == "builtin" else f" (plugin {event_type.source})"
        table = Table(title=f"{event_type.name}{source}: {event_type.summary}", title_justify="left",
                      caption=event_type.effect or None, caption_justify="left")
        for column in ("field", "type", "required", "meaning"):
            table.add_column(column)
        for field in event_type.fields():
            table.add_row(field.name, field.type, "required" if field.required else "optional", field.description)
        console.print(table)


@app.command("ingest")
def ingest(source: str = typer.Argument(..., metavar="FILE|-", help="JSON lines, one event per line ('-': stdin)"),
           as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
           config: Optional[Path] = CONFIG_OPTION,
           db: Optional[str] = DB_OPTION) -> None:
    """Store and apply events; a bad line is reported with its number and not applied, the rest are.

    Running the same file again changes nothing (events are kept once per source and source_id).
    """
    from carepath.runtime.bulk_ingest import ingest_lines

    lines = _read_lines(source)
    engine = open_cli_engine(db, config)
    try:
        report = _with_progress(lambda progress: ingest_lines(engine, lines, progress=progress), len(lines))
    finally:
        engine.close()
    name = "stdin" if source == "-" else source
    if as_json:
        print_json(report.as_dict())
    else:
        console = out_console()
        console.print(ingest_table(report, name))
        enrolled = ", ".join(f"{journey} {n}" for journey, n in sorted(report.enrolled.items())) or "none"
        console.print(f"enrolled: {enrolled}; urgent touchpoints sent on arrival: {report.urgent}; "
                      f"lines not applied: {len(report.errors)}")
    errors = err_console()
    for note in report.notes:
        errors.print(f"{name}:{note.line}: note: {note.message}", markup=False)
    for error in report.errors:
        errors.print(f"{name}:{error.line}: {error.message}", style="red", markup=False)
    if report.errors:
        fail(f"{len(report.errors)} of {report.lines} line(s) not applied (the others were)", ExitCode.INVALID)


EVENT_STATUSES = "applied, resend, stale, held, expired, refused, superseded"


@app.command("list")
def list_events(status: Optional[str] = typer.Option(None, "--status", help=f"only events in this state: "
                                                                            f"{EVENT_STATUSES}"),
                patient: Optional[int] = typer.Option(None, "--patient", help="only this patient id"),
                source: Optional[str] = typer.Option(None, "--source", help="only events from this source"),
                kind: Optional[str] = typer.Option(None, "--type", help="only events of this type"),
                limit: int = typer.Option(50, "--limit", min=1, help="at most this many rows, newest first"),
                as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
                db: Optional[str] = DB_OPTION) -> None:
    """Stored events with their state and outcome; `--status refused` lists what a source must fix and resend."""
    from carepath.reporting import event_rows, event_table

    store = open_cli_store(db, read_only=True)
    try:
        with store.db.connect() as conn:
            rows = event_rows(conn, status=status, patient=patient, source=source, type_=kind, limit=limit)
    finally:
        store.db.dispose()
    if as_json:
        print_json({"events": rows})
        return
    more = " (the newest; --limit for more)" if len(rows) == limit else ""
    what = f"{status} events" if status else "events"
    out_console().print(event_table(rows, f"{len(rows)} {what}{more}; received times in UTC"))


def _read_lines(source: str) -> list[str]:
    if source == "-":
        return sys.stdin.read().splitlines()
    path = Path(source)
    if not path.is_file():
        fail(f"no such file: {path}", ExitCode.NOT_FOUND)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}", ExitCode.INVALID)


def _with_progress(work, total: int):  # noqa: ANN001, ANN202
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = err_console()
    with Progress(TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task("ingest", total=total)
        return work(lambda n: progress.update(task, completed=n))


def ingest_table(report, name: str) -> Table:  # noqa: ANN001 - a BulkReport
    """Per event type: stored, duplicates and touchpoints planned."""
    table = Table(title=f"{name}: {report.lines} event line(s)")
    for column in ("event type", "stored", "already stored", "touchpoints planned"):
        table.add_column(column, justify="left" if column == "event type" else "right")
    for kind in sorted(set(report.stored) | set(report.duplicates)):
        table.add_row(kind, str(report.stored[kind]), str(report.duplicates[kind]), str(report.planned[kind]))
    table.add_section()
    table.add_row("total", str(sum(report.stored.values())), str(sum(report.duplicates.values())),
                  str(sum(report.planned.values())), style="bold")
    return table
