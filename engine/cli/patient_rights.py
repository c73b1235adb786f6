"""``carepath patients export|erase``: a patient's rights to see and to erase their data (issue 22, point 4)."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Optional

import typer

from carepath.cli.common import DB_OPTION, ExitCode, err_console, fail, open_cli_store


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (containers)
        return f"cli:uid-{os.getuid()}"


def export(patient_id: int = typer.Argument(..., help="internal patient id"),
           out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the JSON here (readable by its "
                                                                        "owner only) instead of standard output"),
           db: Optional[str] = DB_OPTION) -> None:
    """Everything held about a patient (record, consents, events, touchpoints, deliveries, messages, tasks,
    survey answers, portrait, segments...) as JSON, decrypted, with a manifest of kinds and counts. Audited."""
    from datetime import datetime, timezone

    from carepath.privacy.export import NoSuchPatient, export_patient

    store = open_cli_store(db, read_only=False)
    try:
        with store.db.begin() as conn:
            document = export_patient(conn, store.cipher, patient_id, now=datetime.now(timezone.utc),
                                      actor=_actor())
    except NoSuchPatient as exc:
        fail(str(exc), ExitCode.NOT_FOUND)
    finally:
        store.db.dispose()
    text = json.dumps(document, ensure_ascii=False, indent=2, default=str)
    if out is None:
        typer.echo(text)
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    counts = ", ".join(f"{k} {v['count']}" for k, v in document["manifest"]["kinds"].items())
    err_console().print(f"exported patient {patient_id} to {out}: {counts}")


def erase(patient_id: int = typer.Argument(..., help="internal patient id"),
          yes: bool = typer.Option(False, "--yes", help="confirm: this cannot be undone"),
          db: Optional[str] = DB_OPTION) -> None:
    """Erase a patient's personal data: removed or irreversibly de-identified, report counts kept; later events
    for the patient are refused. Audited. Export first if the patient asked for a copy."""
    from datetime import datetime, timezone

    from carepath.privacy.erase import erase_patient
    from carepath.privacy.export import NoSuchPatient

    if not yes:
        fail(f"erasing patient {patient_id} cannot be undone: run again with --yes to confirm", ExitCode.USAGE)
    store = open_cli_store(db, read_only=False)
    try:
        with store.db.begin() as conn:
            report = erase_patient(conn, patient_id, now=datetime.now(timezone.utc), actor=_actor())
    except NoSuchPatient as exc:
        fail(str(exc), ExitCode.NOT_FOUND)
    finally:
        store.db.dispose()
    typer.echo(report.summary())
