"""``carepath touchpoints list`` and ``carepath tasks list`` (mounted on the tasks group): what was planned,
sent and handed to staff."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Optional

import typer

from carepath.cli.common import CONFIG_OPTION, DB_OPTION, cli_config, fail, open_cli_store, out_console, print_json
from carepath.runtime.work_queue import TASK_STATUSES
from carepath.store.schema import TOUCHPOINT_STATUSES

touchpoints_app = typer.Typer(no_args_is_help=True, add_completion=False,
                              help="Touchpoints: scheduled, sent, failed, cancelled messages and tasks.")

PATIENT = typer.Option(None, "--patient", help="only this patient id")
JOURNEY = typer.Option(None, "--journey", help="only this journey")
STEP = typer.Option(None, "--step", help="only this step id")
LIMIT = typer.Option(50, "--limit", min=1, help="at most this many rows, newest first")
JSON = typer.Option(False, "--json", help="print JSON instead of a table")


def _rows(kind: str, db: Optional[str], **filters) -> list[dict]:
    from carepath.reporting import task_rows, touchpoint_rows

    store = open_cli_store(db, read_only=True)
    try:
        with store.db.connect() as conn:
            return (touchpoint_rows if kind == "touchpoints" else task_rows)(conn, **filters)
    finally:
        store.db.dispose()


def _show(kind: str, rows: list[dict], as_json: bool, limit: int) -> None:
    from carepath.reporting import task_table, touchpoint_table

    if as_json:
        print_json({kind: rows})
        return
    more = " (the newest; --limit for more)" if len(rows) == limit else ""
    title = f"{len(rows)} {kind}{more}; times in each patient's zone"
    out_console().print((touchpoint_table if kind == "touchpoints" else task_table)(rows, title))


#: ``--status`` takes only these (anything else is a usage error, exit 2, listing them)
TouchpointStatus = enum.Enum("TouchpointStatus", {s: s for s in TOUCHPOINT_STATUSES}, type=str)
TaskStatus = enum.Enum("TaskStatus", {s: s for s in TASK_STATUSES}, type=str)


def _status(statuses: tuple[str, ...]):  # noqa: ANN202 - a typer option
    return typer.Option(None, "--status", show_default=False, help=f"only this status: {', '.join(statuses)}")


@touchpoints_app.command("list")
def list_touchpoints(status: Optional[TouchpointStatus] = _status(TOUCHPOINT_STATUSES),
                     patient: Optional[int] = PATIENT, journey: Optional[str] = JOURNEY,
                     step: Optional[str] = STEP, limit: int = LIMIT, as_json: bool = JSON,
                     db: Optional[str] = DB_OPTION) -> None:
    """Touchpoints with status, due and sent times, channel and reason."""
    rows = _rows("touchpoints", db, patient=patient, status=status and status.value, journey=journey, step=step,
                 limit=limit)
    _show("touchpoints", rows, as_json, limit)


def list_tasks(status: Optional[TaskStatus] = _status(TASK_STATUSES),
               patient: Optional[int] = PATIENT, journey: Optional[str] = JOURNEY, step: Optional[str] = STEP,
               limit: int = LIMIT, as_json: bool = JSON, db: Optional[str] = DB_OPTION,
               who: Optional[str] = typer.Option(None, "--as", help="your staff name: only your teams' tasks "
                                                                      "(operations, administrator: every team's)"),
               config: Optional[Path] = CONFIG_OPTION) -> None:
    """Staff tasks with team, SLA and the journey step that opened them."""
    teams = None
    if who is not None:
        from carepath.staff_access import member_of
        from carepath.teams import StaffError, staff_member

        try:
            teams = member_of(who, staff_member(cli_config(config).staff, who, action="list")).visible_teams()
        except StaffError as exc:
            fail(str(exc))
    rows = _rows("tasks", db, patient=patient, status=status and status.value, journey=journey, step=step,
                 limit=limit, teams=teams)
    _show("tasks", rows, as_json, limit)
