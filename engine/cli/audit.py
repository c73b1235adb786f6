"""``carepath audit``: verify the hash-chained audit log, anchor it, and list who looked at a patient."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from carepath.cli.common import DB_OPTION, ExitCode, err_console, labelled, open_cli_store, out_console, print_json

app = typer.Typer(help="The tamper-evident audit log (docs/security.md).", no_args_is_help=True, add_completion=False)

ANCHOR_FILE = typer.Option(None, "--anchor-file", help="anchor file (default: $CAREPATH_AUDIT_ANCHOR_FILE)",
                           show_default=False)


def _anchor_file(given: Path | None) -> Path | None:
    from carepath.settings import Settings

    return given or Settings().audit_anchor_file


@app.command("verify")
def verify(anchor_file: Optional[Path] = ANCHOR_FILE, as_json: bool = typer.Option(False, "--json"),
           db: Optional[str] = DB_OPTION) -> None:
    """Check every entry's hash, the chain's order and the anchors; name each entry edited, removed or moved."""
    from carepath.store.audit_verify import verify_chain

    store = open_cli_store(db, read_only=True)
    try:
        result = verify_chain(store.db, _anchor_file(anchor_file))
    finally:
        store.db.dispose()
    if as_json:
        print_json({"ok": result.ok, "entries": result.entries, "anchors": result.anchors,
                    "head": {"seq": result.head[0], "hash": result.head[1]},
                    "findings": [f.__dict__ for f in result.findings]})
    elif result.ok:
        out_console().print(f"audit chain intact: {result.entries} entries, {result.anchors} anchors checked; "
                            f"head {result.head[0]} {result.head[1][:16]}")
    else:
        errors = err_console()
        for finding in result.findings:
            errors.print(labelled("tampered:", "bold red", finding.message))
        errors.print(f"{len(result.findings)} problem(s) in {result.entries} entries")
    if not result.ok:
        raise typer.Exit(int(ExitCode.INVALID))


@app.command("anchor")
def anchor(anchor_file: Optional[Path] = ANCHOR_FILE, db: Optional[str] = DB_OPTION) -> None:
    """Record the chain's head now (in the database, and appended to the anchor file when one is set)."""
    from carepath.store.audit_verify import write_anchor

    store = open_cli_store(db, read_only=False)
    try:
        seq, digest = write_anchor(store.db, _anchor_file(anchor_file), note="carepath audit anchor")
    finally:
        store.db.dispose()
    out_console().print(f"anchored entry {seq} ({digest[:16]})" if seq else "the audit log is empty")


@app.command("list")
def list_entries(patient: int = typer.Option(..., "--patient", help="internal patient id"),
                 limit: int = typer.Option(200, min=1, max=100_000, help="newest entries shown"),
                 as_json: bool = typer.Option(False, "--json"), db: Optional[str] = DB_OPTION) -> None:
    """Who looked at or changed a patient's data (contact views, updates, consents, exports), newest first."""
    from carepath.store.audit_verify import patient_entries

    store = open_cli_store(db, read_only=True)
    try:
        with store.db.connect() as conn:
            rows = patient_entries(conn, patient, limit=limit)
    finally:
        store.db.dispose()
    if as_json:
        print_json([{"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action, "entity": r.entity,
                     "entity_id": r.entity_id, "detail": r.detail} for r in rows])
        return
    table = Table("seq", "at (UTC)", "who", "action", "on", title=f"audit entries about patient {patient}")
    for r in rows:
        table.add_row(str(r.seq), f"{r.at:%Y-%m-%d %H:%M:%S}", r.actor, r.action, f"{r.entity} {r.entity_id or ''}")
    out_console().print(table)
