"""Rows of ``connector_state`` (shared between workers through the database)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from carepath.store.schema import ConnectorState


def insert_new(conn: Connection, connector: str, key: str, value: str | None, now: datetime) -> bool:
    """Insert the row ``(connector, key)`` unless it exists; ``True`` when this call created it."""
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[conn.dialect.name]
    created = conn.execute(insert(ConnectorState).values(connector=connector, key=key, value=value, version=0,
                                                         updated_at=now)
                           .on_conflict_do_nothing(index_elements=["connector", "key"])
                           .returning(ConnectorState.key)).scalar()
    return created is not None
