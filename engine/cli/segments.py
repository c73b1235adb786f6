"""``carepath segments``: the segments with their member counts, one segment's members (masked, paged)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from carepath.cli.common import (CONFIG_OPTION, DB_OPTION, ExitCode, cli_config, fail, open_cli_engine, open_cli_store,
                                 out_console, print_json)

app = typer.Typer(help="Patient segments: who is in which group (members always masked).", no_args_is_help=True,
                  add_completion=False)


@app.command("list")
def list_segments(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
                  db: Optional[str] = DB_OPTION, config: Optional[Path] = CONFIG_OPTION) -> None:
    """Every segment with its patient count, by dimension (sensitive ones below the group size: not shown)."""
    from carepath.portrait_report import dimension_totals, evaluated_patients, segment_counts

    segments = cli_config(config).segments
    store = open_cli_store(db, read_only=True)
    try:
        with store.db.connect() as conn:
            rows = segment_counts(conn, segments)
            total, evaluated = evaluated_patients(conn)
    finally:
        store.db.dispose()
    totals = dimension_totals(rows)
    if as_json:
        print_json({"segments": rows, "dimensions": totals, "patients": total, "evaluated": evaluated,
                    "min_group_size": segments.min_group_size})
        return
    table = Table("dimension", "segment", "title", "patients", title=f"segments ({evaluated} of {total} patients "
                                                                      "evaluated)")
    dimension = None
    for r in rows:
        if r["dimension"] != dimension:
            if dimension is not None:
                table.add_row("", "total", "", str(totals[dimension]), style="bold")
                table.add_section()
            dimension = r["dimension"]
        shown = f"<{segments.min_group_size}" if r["suppressed"] else str(r["members"])
        table.add_row(r["dimension"], r["name"] + (" (sensitive)" if r["sensitive"] else ""), r["title"], shown)
    if dimension is not None:
        table.add_row("", "total", "", str(totals[dimension]), style="bold")
    out_console().print(table)


@app.command("show")
def show_segment(name: str = typer.Argument(..., help="segment name (see `carepath segments list`)"),
                 page: int = typer.Option(1, min=1, help="page of members"),
                 per_page: int = typer.Option(50, min=1, max=1000, help="members per page"),
                 as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
                 db: Optional[str] = DB_OPTION, config: Optional[Path] = CONFIG_OPTION) -> None:
    """One segment: its condition and its members (names masked), a page at a time."""
    from carepath.definition.reach import suggest
    from carepath.portrait_report import segment_members

    segments = cli_config(config).segments
    segment = segments.segments.get(name)
    if segment is None:
        fail(f"no segment named {name!r}{suggest(name, segments.segments)} (see `carepath segments list`)",
             ExitCode.NOT_FOUND)
    store = open_cli_store(db, read_only=True)
    try:
        with store.db.connect() as conn:
            total, members = segment_members(conn, store.cipher, name, page, per_page, datetime.now(timezone.utc))
    finally:
        store.db.dispose()
    hidden = segment.sensitive and total < segments.min_group_size
    if hidden:
        members = []
    if as_json:
        print_json({"segment": segment.to_json(), "members_total": None if hidden else total, "page": page,
                    "per_page": per_page, "members": members, "suppressed": hidden})
        return
    out = out_console()
    out.print(f"{segment.name} ({segment.dimension}, {segment.title}): {segment.when}", markup=False)
    if hidden:
        out.print(f"sensitive segment with fewer than {segments.min_group_size} members: members not shown")
        return
    table = Table("patient", "name", "sex", "age", "since", title=f"members {len(members)} of {total} "
                                                                 f"(page {page})")
    for m in members:
        table.add_row(str(m["patient_id"]), m["name"], m["sex"] or "", str(m["age"] or ""), m["since"][:16])
    out.print(table)


@app.command("refresh")
def refresh_all(db: Optional[str] = DB_OPTION, config: Optional[Path] = CONFIG_OPTION) -> None:
    """Re-evaluate every patient's segments now (after changing segment definitions), with their events."""
    from sqlalchemy import select

    from carepath.runtime.segments import refresh
    from carepath.store.schema import Patient

    engine = open_cli_engine(db, config)
    try:
        with engine.db.connect() as conn:
            ids = list(conn.execute(select(Patient.id).where(Patient.merged_into.is_(None))).scalars())
        now = engine.clock.now()
        changes = 0
        for start in range(0, len(ids), 500):
            with engine.db.begin() as conn:
                derived = refresh(conn, engine, ids[start:start + 500], now)
                changes += len(derived)
                engine.ingestor.apply_derived(conn, derived, now)
    finally:
        engine.close()
    out_console().print(f"{len(ids)} patient(s) evaluated, {changes} segment entr(ies) and exit(s)")
