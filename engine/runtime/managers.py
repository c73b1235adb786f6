"""Health managers (健康管理师): which staff member looks after which patient (issue 21).

One row per patient (``health_managers``); the manager owns the tasks opened for that patient's
unrecognised messages. Assign from anywhere with one call::

    from carepath.runtime import managers
    managers.assign(engine, patient_id, "wang-li", source="wecom")   # e.g. when the patient adds them on WeCom

or in bulk from a CSV file (``carepath managers import FILE``: columns ``mrn,manager``). A patient nobody was
assigned to has ``[conversations] default_manager`` (when set). Where ``[staff.*]`` members are configured, a
manager must be one of them (their team is the team of the manager's tasks). Each assignment is audit-logged.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, bindparam, select, update

from carepath.store.audit import audit
from carepath.store.conversation_schema import HealthManager
from carepath.store.driver import DriverQuery

if TYPE_CHECKING:
    from carepath.engine import Engine

SOURCES = ("config", "csv", "cli", "wecom", "api")
_MANAGER_OF = select(HealthManager.manager).where(HealthManager.patient_id == bindparam("p"))  # built once
_MANAGER_OF_Q = DriverQuery(_MANAGER_OF)  # (on SQLite the driver's cursor: every reply routed reads it)


class ManagerError(ValueError):
    """A manager name that is not a configured staff member, or a patient that does not exist."""


def check_manager(engine: "Engine", manager: str) -> None:
    """:class:`ManagerError` unless ``manager`` may be assigned (a configured staff member, where any are)."""
    staff = engine.config.staff
    if not manager or not manager.strip():
        raise ManagerError("a health manager's name is never blank")
    if staff and manager not in staff:
        raise ManagerError(f"{manager!r} is not a configured staff member (configured: {', '.join(sorted(staff))}; "
                           f"[staff.NAME] in carepath.toml)")


def assign_in(conn: Connection, engine: "Engine", patient_id: int, manager: str, *, source: str = "api") -> bool:
    """Make ``manager`` the patient's health manager inside the caller's transaction; False when already so."""
    check_manager(engine, manager)
    now = engine.clock.now()
    current = conn.execute(select(HealthManager.manager).where(HealthManager.patient_id == patient_id)).scalar()
    if current == manager:
        return False
    if current is None:
        conn.execute(HealthManager.__table__.insert().values(patient_id=patient_id, manager=manager, source=source,
                                                             assigned_at=now))
    else:
        conn.execute(update(HealthManager).where(HealthManager.patient_id == patient_id).values(
            manager=manager, source=source, assigned_at=now))
    audit(conn, actor=source, action="manager.assigned", entity="patient", entity_id=patient_id, at=now,
          detail={"manager": manager, "previous": current})
    return True


def assign(engine: "Engine", patient_id: int, manager: str, *, source: str = "api") -> bool:
    """Make ``manager`` the patient's health manager (committed); False when they already were."""
    with engine.db.begin() as conn:
        return assign_in(conn, engine, patient_id, manager, source=source)


def manager_of(conn: Connection, engine: "Engine", patient_id: int) -> str | None:
    """The patient's health manager: the one assigned, else ``[conversations] default_manager``, else None."""
    return _MANAGER_OF_Q.scalar(conn, {"p": patient_id}) or engine.config.conversations.default_manager


def manager_team(engine: "Engine", manager: str | None) -> str:
    """The team a manager's tasks go to: their ``[staff.NAME] team``, else ``[conversations] manager_team``."""
    member = engine.config.staff.get(manager) if manager else None
    return member.team if member is not None else engine.config.conversations.manager_team


@dataclass
class ImportReport:
    """What a CSV import did: rows assigned, unchanged, and problems by line number."""

    assigned: int = 0
    unchanged: int = 0
    problems: list[str] = field(default_factory=list)


def import_csv(engine: "Engine", path: Path) -> ImportReport:
    """Assign managers from a CSV file with a header ``mrn,manager``; a bad line is reported by its number and
    skipped, the others are applied (in one transaction)."""
    from carepath.runtime.patients import find_patient_id

    report = ImportReport()
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"mrn", "manager"} <= {f.strip() for f in reader.fieldnames}:
            raise ManagerError(f"{path}: the first line must name the columns mrn,manager")
        with engine.db.begin() as conn:
            for line, row in enumerate(reader, start=2):
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                patient_id = find_patient_id(conn, engine.cipher, row["mrn"]) if row["mrn"] else None
                if patient_id is None:
                    report.problems.append(f"{path.name}:{line}: no patient with this mrn")
                    continue
                try:
                    changed = assign_in(conn, engine, patient_id, row["manager"], source="csv")
                except ManagerError as exc:
                    report.problems.append(f"{path.name}:{line}: {exc}")
                    continue
                report.assigned += changed
                report.unchanged += not changed
    return report
