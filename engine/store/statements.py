"""Statements built once: the hot path's SQL run straight through the driver, and single-row
inserts and updates built once per shape.

SQLAlchemy Core spends most of a small statement's time building it, computing its cache key and
processing result rows; on the dispatcher's hot path that was a third of the time. These
statements are plain SQL text with ``?`` marks (``%s`` on PostgreSQL), executed with
``Connection.exec_driver_sql`` inside the engine's own transactions, so outages, pooling and
the SQLite write lock behave exactly as elsewhere. Datetimes are written and read in the form
SQLAlchemy's ``UTCDateTime`` uses, so rows read either way compare alike.

``conn.execute(insert(Table).values(**row))`` builds a new statement for every row: SQLAlchemy coerces each
value, then computes the statement's cache key to find its compiled form, which costs more than running the
statement on SQLite. :func:`insert_row`, :func:`insert_returning` and :func:`update_by_id` build theirs once
per (table, columns) with bound parameters, so their cache key is computed once; the SQL is the same as the
per-row form's; on SQLite they run on the driver's cursor (:class:`carepath.store.driver.DriverQuery`). (This
module was ``carepath.store.prepared`` and ``carepath.runtime.dispatch.statements``; those names import for one
release, see ``carepath._moved``.)
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import (ARRAY, BigInteger, Connection, String, Table, any_, bindparam, func, insert, literal_column,
                        select, update)
from sqlalchemy.types import TypeDecorator
from sqlalchemy.sql.elements import ColumnElement

from carepath.store.driver import DriverQuery, driver_execute, driver_fetch

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
    """Rows of one statement (plain tuples), run on the driver's cursor (:mod:`carepath.store.driver`)."""
    return driver_fetch(conn, sql_for(conn, text), tuple(params))


def execute(conn: Connection, text: str, params: Sequence[Any] = ()) -> int:
    """Run one statement; returns the rows it changed."""
    return driver_execute(conn, sql_for(conn, text), tuple(params))


def execute_many(conn: Connection, text: str, rows: Sequence[Sequence[Any]]) -> int:
    """Run one statement once per parameter row (``executemany``); returns the rows it changed."""
    return driver_execute(conn, sql_for(conn, text), rows, many=True)


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


# ------------------------------------------------- single-row inserts and updates built once per shape

_INSERTS: dict[tuple[Table, tuple[str, ...], str | None], DriverQuery] = {}
_UPDATES: dict[tuple[Table, tuple[str, ...]], DriverQuery] = {}


def _table(mapped: Any) -> Table:
    return getattr(mapped, "__table__", mapped)


def _bound(values: Mapping[str, Any]) -> dict[str, Any]:
    # prefixed: a bind parameter may not take the name of a column the statement sets
    return {f"v_{name}": value for name, value in values.items()}


def _insert(mapped: Any, values: Mapping[str, Any], returning: str | None) -> DriverQuery:
    table = _table(mapped)
    key = (table, tuple(sorted(values)), returning)
    statement = _INSERTS.get(key)
    if statement is None:
        statement = insert(table).values({name: bindparam(f"v_{name}") for name in key[1]})
        if returning is not None:
            statement = statement.returning(table.c[returning])
        statement = _INSERTS[key] = DriverQuery(statement)  # on SQLite run on the driver's cursor
    return statement


def insert_row(conn: Connection, mapped: Any, values: Mapping[str, Any]) -> None:
    """Insert one row of ``mapped`` (a mapped class or a table) with ``values``."""
    _insert(mapped, values, None).execute(conn, _bound(values))


def insert_returning(conn: Connection, mapped: Any, values: Mapping[str, Any], returning: str = "id") -> Any:
    """Insert one row of ``mapped`` (a mapped class or a table) with ``values``; its ``returning`` column."""
    (row,) = _insert(mapped, values, returning).rows(conn, _bound(values))
    return row[0]


def update_by_id(conn: Connection, mapped: Any, row_id: int, values: Mapping[str, Any]) -> None:
    """Set ``values`` on the row of ``mapped`` whose ``id`` is ``row_id``."""
    table = _table(mapped)
    key = (table, tuple(sorted(values)))
    statement = _UPDATES.get(key)
    if statement is None:
        statement = _UPDATES[key] = DriverQuery(update(table).where(table.c.id == bindparam("k_id"))
                                                .values({name: bindparam(f"v_{name}") for name in key[1]}))
    statement.execute(conn, {"k_id": row_id, **_bound(values)})
