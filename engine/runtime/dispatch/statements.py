"""The hot path's SQL, written once and run straight through the driver (no statement building per call).

SQLAlchemy Core spends most of a small statement's time building it, computing its cache key and
processing result rows; on the dispatcher's hot path that was a third of the time. These
statements are plain SQL text with ``?`` marks (``%s`` on PostgreSQL), executed with
``Connection.exec_driver_sql`` inside the engine's own transactions, so outages, pooling and
the SQLite write lock behave exactly as elsewhere. Datetimes are written and read in the form
SQLAlchemy's ``UTCDateTime`` uses, so rows read either way compare alike.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from sqlalchemy import ARRAY, BigInteger, Connection, String, any_, bindparam, func, literal_column, select
from sqlalchemy.types import TypeDecorator
from sqlalchemy.sql.elements import ColumnElement

UTC = timezone.utc
#: most ids in one ``IN (...)`` list (SQLite allows 32766 parameters)
ID_CHUNK = 5000


#: Fencing: the row is still claimed by this worker (one ``?``: the worker id). Written so that no index can serve
#: it: with ``status = 'claimed'`` PostgreSQL planned the per-id updates of a batch through the (status, due_at)
#: index, whose statistics (gathered when almost nothing is claimed) make it look as cheap as the primary key, and
#: read every claimed row for each one (400 index entries per update at 10,000 patients, twice as many with a
#: second worker: the database's CPU per message grew with the workers). Always used with ids, which pick the row.
HELD_BY = "coalesce(status, '') = 'claimed' AND claimed_by = ?"


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def sql_for(conn: Connection, text: str) -> str:
    """``text`` with the driver's placeholders."""
    return text.replace("?", "%s") if is_postgres(conn) else text


def db_time(conn: Connection, value: datetime | None) -> Any:
    """A datetime as this database stores it (naive UTC text on SQLite)."""
    if value is None or is_postgres(conn):
        return value
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def py_time(value: Any) -> datetime | None:
    """A stored datetime back as an aware UTC datetime (SQLite returns text)."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def fetch(conn: Connection, text: str, params: Sequence[Any] = ()) -> list[tuple]:
    """Rows of one statement (plain tuples)."""
    return conn.exec_driver_sql(sql_for(conn, text), tuple(params)).fetchall()


def execute(conn: Connection, text: str, params: Sequence[Any] = ()) -> int:
    """Run one statement; returns the rows it changed."""
    return conn.exec_driver_sql(sql_for(conn, text), tuple(params)).rowcount


def in_list(ids: Sequence[Any]) -> str:
    """``?, ?, ...`` for an ``IN`` list of ``ids``."""
    return ", ".join("?" * len(ids))


def id_in(conn: Connection, column: str, ids: Sequence[Any]) -> tuple[str, list[Any]]:
    """``(condition, params)`` for ``column`` among ``ids``.

    SQLite: ``column IN (?, ?, …)``. PostgreSQL: ``column = ANY(?)`` with one array, so the statement's
    text is the same whatever the list's length: psycopg prepares a statement run five times on a
    connection, and the server then parses and plans it once instead of on every batch (an ``IN`` list
    of another length is another statement, planned afresh each time).
    """
    if is_postgres(conn):
        return f"{column} = ANY(?)", [list(ids)]
    return f"{column} IN ({in_list(ids) or 'NULL'})", list(ids)


def among(column: Any, name: str, postgres: bool, item: Any = BigInteger) -> ColumnElement[bool]:
    """SQLAlchemy Core's :func:`id_in`: ``column`` among the values (of type ``item``) bound as ``name``; on
    PostgreSQL one array, so the statement's text (and its prepared plan) is the same for every list length."""
    if postgres:
        return column == any_(bindparam(name, type_=ARRAY(item)))
    # SQLite: one JSON array read by json_each, not an expanding IN list (SQLAlchemy renders thousands of
    # parameter names for each execution of one: 50 ms for 5,000 ids); the index on ``column`` is still used
    return column.in_(select(literal_column("value")).select_from(func.json_each(bindparam(name, type_=_JsonList()))))


class _JsonList(TypeDecorator):
    """A list bound as JSON text (SQLite's :func:`among`)."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:  # noqa: ARG002 - SQLAlchemy's signature
        return None if value is None else json.dumps(list(value))


def chunks(ids: Iterable[Any], size: int = ID_CHUNK) -> Iterable[list[Any]]:
    items = list(ids)
    for start in range(0, len(items), size):
        yield items[start:start + size]


_JSON: dict[str, Any] = {}


def json_value(value: Any) -> Any:
    """A JSON list column as a tuple: SQLite gives text (decoded once per distinct text), PostgreSQL a list."""
    if value is None:
        return ()
    if not isinstance(value, str):
        return tuple(value)
    found = _JSON.get(value)
    if found is None:
        if len(_JSON) > 10000:
            _JSON.clear()
        found = _JSON[value] = tuple(json.loads(value))
    return found


def json_dict(value: Any) -> Any:
    """A JSON object column as a dict (SQLite gives text, PostgreSQL the object)."""
    if value is None:
        return {}
    return json.loads(value) if isinstance(value, str) else value
