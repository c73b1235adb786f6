"""The append-only audit log: who changed journeys, consents and patient data, and when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from carepath.store.schema import AuditEntry


def audit(conn: Connection, *, actor: str, action: str, entity: str, entity_id: object = None, at: datetime,
          detail: dict[str, Any] | None = None) -> None:
    """Append one entry in the caller's transaction (it commits or rolls back with the change).

    ``detail`` must never carry contact data: name fields, never values.
    """
    conn.execute(insert(AuditEntry).values(at=at, actor=actor, action=action, entity=entity,
                                           entity_id=None if entity_id is None else str(entity_id),
                                           detail=detail or {}))
