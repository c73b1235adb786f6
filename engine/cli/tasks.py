"""``carepath tasks show|claim|note|done``: the staff work queue from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from carepath.cli.common import CONFIG_OPTION, DB_OPTION, ExitCode, fail, out_console, print_json

app = typer.Typer(help="The staff work queue: calls, complaints, clinical reviews.", no_args_is_help=True)
WHO = typer.Option(..., "--as", help="your staff name: a [staff.NAME] of carepath.toml (recorded in the audit log)")


def _engine(db: Optional[str], config: Optional[Path], who: str, action: str):
    """``(engine, member)`` on the queue's database, once ``who`` is known to be configured staff."""
    from carepath.cli.common import open_cli_engine, open_cli_store
    from carepath.staff_access import member_of
    from carepath.teams import StaffError, staff_member

    open_cli_store(db, read_only=True).db.dispose()  # the queue's database must exist: none is created here
    engine = open_cli_engine(db, config, runs_journeys=False)
    try:
        account = staff_member(engine.config.staff, who, action=action)
    except StaffError as exc:
        engine.close()
        fail(str(exc))
    zones = {team: engine.config.team(team).timezone for team in account.member_teams()}
    return engine, member_of(who, account, zones)


def _allowed(engine, member, action: str, task_id: int) -> None:
    """Stop (exit 1, naming the rule) unless ``member`` may ``action`` task ``task_id``; an unknown task is 3."""
    from carepath.runtime.work_queue import task_team
    from carepath.staff_access import AccessDenied

    team = task_team(engine, task_id)
    if team is None:
        engine.close()
        fail(f"no task {task_id}", ExitCode.NOT_FOUND)
    try:
        member.check(action, team, f"task {task_id}")
    except AccessDenied as exc:
        engine.close()
        fail(str(exc))


def _act(db: Optional[str], config: Optional[Path], who: str, action: str, task_id: int, operation, *args) -> None:
    from carepath.runtime.work_queue import TaskError

    engine, member = _engine(db, config, who, action)
    _allowed(engine, member, action, task_id)
    try:
        operation(engine, task_id, who, *args)
    except TaskError as exc:
        fail(str(exc))
    finally:
        engine.close()


@app.command("show")
def show(task_id: int = typer.Argument(...), who: str = WHO, reveal: bool = typer.Option(
        False, "--reveal", help="print the patient's phone in clear (a role that may, on your team's task; audit-logged)"),
         json_out: bool = typer.Option(False, "--json"), config: Optional[Path] = CONFIG_OPTION,
         db: Optional[str] = DB_OPTION) -> None:
    """One task with its notes; the phone is masked unless --reveal."""
    from carepath.masking import mask_phone
    from carepath.runtime.work_queue import TaskError, open_task

    engine, member = _engine(db, config, who, "view")
    _allowed(engine, member, "unmask" if reveal else "view", task_id)
    try:
        task, notes = open_task(engine, task_id, who if reveal else None, via="cli", role=member.role)
    except TaskError as exc:
        fail(str(exc), ExitCode.NOT_FOUND)
    from carepath.runtime.task_survey import survey_behind_task

    from carepath.runtime.conversations.turns import task_conversation  # issue 21

    phone = task.phone if reveal else mask_phone(task.phone)
    survey = survey_behind_task(engine, task_id)
    _, turns = task_conversation(engine, task_id)
    data = {**{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in task.__dict__.items()},
            "phone": phone, "notes": [{"at": n.at.isoformat(), "author": n.author, "text": n.text} for n in notes],
            "survey": survey.to_json() if survey else None, "conversation": [t.to_json() for t in turns]}
    if json_out:
        print_json(data)
        return
    table = Table("field", "value", title=f"task {task_id}")
    from carepath.runtime.work_queue import DEADLINE_LABELS

    for key in ("kind", "team", "status", "priority", "patient_id", "patient", "phone", "claimed_by",
                "assigned_role", "due", "detail", "resolution"):
        value = "" if data[key] is None else str(data[key])
        if key == "due" and task.deadline:  # which deadline: the first response, or the resolution
            key, value = f"due ({DEADLINE_LABELS[task.deadline]})", value
        table.add_row(key, value)
    out = out_console()
    out.print(table)
    if survey is not None:
        said = Table("question", "answer", title=f"what the patient answered ({survey.survey}, "
                                                  f"{survey.received_at:%Y-%m-%d %H:%M} UTC): NPS "
                                                  f"{'-' if survey.nps is None else survey.nps}, satisfaction "
                                                  f"{'-' if survey.satisfaction is None else survey.satisfaction}"
                                                  + (f", red flags: {', '.join(survey.red_flags)}"
                                                     if survey.red_flags else ""))
        for question, answer in survey.answers:
            said.add_row(question, answer)
        out.print(said)
    if turns:  # issue 21: the patient's message that opened the task and the conversation so far (masked)
        from carepath.runtime.conversations.turns import transcript

        out.print("conversation:\n" + transcript(turns), markup=False)
    for n in data["notes"]:
        out.print(f"{n['at']} {n['author']}: {n['text']}")


@app.command("claim")
def claim(task_id: int = typer.Argument(...), who: str = WHO, config: Optional[Path] = CONFIG_OPTION,
          db: Optional[str] = DB_OPTION) -> None:
    """Take a task (its first response)."""
    from carepath.runtime.work_queue import claim as do_claim

    _act(db, config, who, "claim", task_id, do_claim)
    out_console().print(f"task {task_id} claimed by {who}")


@app.command("note")
def note(task_id: int = typer.Argument(...), text: str = typer.Argument(..., help="what happened"), who: str = WHO,
         config: Optional[Path] = CONFIG_OPTION, db: Optional[str] = DB_OPTION) -> None:
    """Add a note to a task."""
    from carepath.runtime.work_queue import add_note

    _act(db, config, who, "note", task_id, add_note, text)
    out_console().print(f"note added to task {task_id}")


@app.command("done")
def done(task_id: int = typer.Argument(...), who: str = WHO,
         resolution: str = typer.Option("", "--resolution", "-r", help="how it was resolved"),
         config: Optional[Path] = CONFIG_OPTION, db: Optional[str] = DB_OPTION) -> None:
    """Close a task."""
    from carepath.runtime.work_queue import close

    _act(db, config, who, "close", task_id, close, resolution)
    out_console().print(f"task {task_id} done")
