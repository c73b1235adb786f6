"""Staff tasks the intent step opens for a turn: urgent care-team tasks, health-manager tasks."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from carepath.runtime.work_queue import new_task
from carepath.store.statements import insert_returning
from carepath.store.schema import StaffTask

if TYPE_CHECKING:
    from carepath.engine import Engine


def open_turn_task(conn: Connection, engine: "Engine", *, patient_id: int, turn_id: int, kind: str, team: str,
                   sla: timedelta, priority: str, detail: str, owner: str | None, now: datetime) -> int:
    """Open a task on ``team``'s queue for a conversation turn (its deadlines in the team's working time);
    the conversation itself stays encrypted in the turns: the task points to it (``turn_id``)."""
    queue = new_task(engine.config.team(team), now=now, sla=sla, priority=priority)
    return insert_returning(conn, StaffTask, dict(patient_id=patient_id, kind=kind, team=team, detail=detail,
                                                  owner=owner, turn_id=turn_id, **queue))


def manager_task(conn: Connection, engine: "Engine", *, patient_id: int, turn_id: int, kind: str, why: str,
                 now: datetime) -> int:
    """A task for the patient's health manager (their team), with the message and the conversation so far."""
    from carepath.runtime.managers import manager_of, manager_team

    manager = manager_of(conn, engine, patient_id)
    settings = engine.config.conversations
    detail = (f"{why} (turn {turn_id}; health manager: {manager or 'none assigned'}). "
              f"Conversation: carepath conversations show {patient_id}")
    return open_turn_task(conn, engine, patient_id=patient_id, turn_id=turn_id, kind=kind,
                          team=manager_team(engine, manager), sla=settings.manager_sla, priority="normal",
                          detail=detail, owner=manager, now=now)
