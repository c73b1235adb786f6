"""Statements run on the DBAPI cursor of a SQLAlchemy connection: plain SQL text, no per-call machinery.

``Connection.exec_driver_sql`` skips SQLAlchemy's compiling but still builds an execution context, a result
object and its metadata for every statement, walks the (empty) statement-event lists and wraps every row:
on SQLite that costs two to three times what the driver takes to run a small statement. The hot paths
that already write their SQL by hand (the dispatcher's statements, bulk inserts, savepoints, the SQLite
``BEGIN IMMEDIATE``) run it here instead, straight on the connection's driver cursor, with what of
SQLAlchemy's behaviour they rely on kept:

- the connection's transaction is begun first, through SQLAlchemy (its ``begin`` event takes SQLite's
  write lock and the file's gate), exactly as ``exec_driver_sql`` would begin it;
- a driver error is raised as SQLAlchemy raises it (``sqlalchemy.exc.OperationalError`` and so on, the
  connection invalidated on a lost connection), so outage handling and callers catching SQLAlchemy's
  errors see no difference.

Rows come back as the driver's plain tuples; parameters are positional, in the driver's own placeholder
style (callers translate ``?`` for PostgreSQL, see :func:`carepath.store.statements.sql_for`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import Connection


def driver_cursor(conn: Connection, sql: str, params: Sequence[Any] | Sequence[Sequence[Any]] = (), *,
                  many: bool = False, begin: bool = True) -> Any:
    """Run ``sql`` with ``params`` (``many``: once per parameter row) on ``conn``'s driver; the open cursor.

    The caller reads what it needs and closes the cursor. ``begin=False`` only inside SQLAlchemy's own ``begin``
    event, where the transaction is being begun (by this very statement)."""
    if begin and not conn.in_transaction():
        conn.begin()  # what SQLAlchemy's autobegin does before a statement
    cursor = conn.connection.driver_connection.cursor()
    try:
        if many:
            cursor.executemany(sql, params)
        elif params:
            cursor.execute(sql, params)
        else:  # as SQLAlchemy runs a statement without parameters (no placeholders parsed)
            cursor.execute(sql)
    except conn.dialect.loaded_dbapi.Error as exc:
        # raised as SQLAlchemy raises a driver error (wrapped, the connection invalidated when it was lost)
        conn._handle_dbapi_exception(exc, sql, params, cursor, None)  # noqa: SLF001 - SQLAlchemy's own handler
        raise  # (the handler always raises; kept for the reader)
    return cursor


def driver_fetch(conn: Connection, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    """The rows of one statement run on the driver (plain tuples)."""
    cursor = driver_cursor(conn, sql, params)
    try:
        return cursor.fetchall() if cursor.description is not None else []
    finally:
        cursor.close()


def driver_execute(conn: Connection, sql: str, params: Sequence[Any] | Sequence[Sequence[Any]] = (), *,
                   many: bool = False, begin: bool = True) -> int:
    """Run one statement (``many``: once per parameter row) on the driver; the rows it changed."""
    cursor = driver_cursor(conn, sql, params, many=many, begin=begin)
    try:
        return cursor.rowcount
    finally:
        cursor.close()


class DriverQuery:
    """A SQLAlchemy Core statement that SQLite runs on the driver's cursor: compiled once, its binds and result
    columns converted by the statement's own types as SQLite's dialect implements them (their ``bind_processor``
    and ``result_processor``), so the rows are what ``conn.execute(statement, params)`` returns, as plain tuples.
    A ``SELECT``, or an ``INSERT`` / ``UPDATE`` (with or without ``RETURNING``): the columns it leaves to their
    Python-side ``default`` / ``onupdate`` get them as SQLAlchemy computes them (a constant, or a function taking
    no argument); a statement with another kind of default (a SQL expression, a sequence, a function reading the
    execution context) runs through SQLAlchemy. Other databases run it through SQLAlchemy (their rows are tuples
    too): there the database's own work, not SQLAlchemy's, is what a statement costs. Statements with expanding
    (``IN``) parameters are refused."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._sqlite: tuple[str, list[Callable[[Mapping[str, Any]], Any]], tuple] | None = None

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[tuple]:
        """The statement's rows for ``params`` (by bind name, as for ``conn.execute``)."""
        if conn.dialect.name != "sqlite":
            return conn.execute(self.statement, params).all()
        sql, binds, results = self._sqlite or self._compile(conn.dialect)
        if sql is None:  # a default only SQLAlchemy computes
            return conn.execute(self.statement, params).all()
        rows = driver_fetch(conn, sql, [value(params) for value in binds])
        if not results:
            return rows
        out = []
        for row in rows:
            values = list(row)
            for i, read in results:  # only the columns whose type converts what SQLite gives
                if values[i] is not None:
                    values[i] = read(values[i])
            out.append(tuple(values))
        return out

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple | None:
        """The statement's first row for ``params``, or None (``conn.execute(...).first()``)."""
        rows = self.rows(conn, params)
        return rows[0] if rows else None

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None (``conn.execute(...).scalar()``)."""
        row = self.first(conn, params)
        return row[0] if row is not None else None

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> None:
        """Run the statement (one without ``RETURNING``) for ``params``."""
        if conn.dialect.name != "sqlite":
            conn.execute(self.statement, params)
            return
        sql, binds, _ = self._sqlite or self._compile(conn.dialect)
        if sql is None:
            conn.execute(self.statement, params)
        else:
            driver_execute(conn, sql, [value(params) for value in binds])

    def _compile(self, dialect: Any) -> tuple[Any, list[Callable[[Mapping[str, Any]], Any]], tuple]:
        compiled = self.statement.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("DriverQuery: a statement with expanding or literal-execute parameters")
        defaults = {column.key: column.default for column in compiled.insert_prefetch}
        defaults.update((column.key, column.onupdate) for column in compiled.update_prefetch)
        if not defaults.keys() <= set(compiled.positiontup):  # a default bound under another name: SQLAlchemy's
            self._sqlite = (None, [], ())
            return self._sqlite
        binds: list[Callable[[Mapping[str, Any]], Any]] = []  # each parameter's value from the call's params
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect) or _same
            if name in defaults:
                value = _default(defaults[name], processor)
                if value is None:
                    self._sqlite = (None, [], ())
                    return self._sqlite
                binds.append(value)
            elif bind.required:
                binds.append(lambda params, key=bind.key, write=processor: write(params[key]))
            else:
                binds.append(lambda params, written=processor(bind.value): written)
        results = tuple((i, read) for i, column in enumerate(self.statement.exported_columns)
                        if (read := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None)
        self._sqlite = (compiled.string, binds, results)
        return self._sqlite


def _default(default: Any, write: Callable[[Any], Any]) -> Callable[[Mapping[str, Any]], Any] | None:
    """A column's Python-side default as a parameter's value, as SQLAlchemy's execution computes it; None when only
    SQLAlchemy can compute it (a SQL expression, a sequence, a function of the execution context)."""
    if default.is_scalar:
        return lambda params, written=write(default.arg): written
    if default.is_callable and hasattr(default.arg, "__wrapped__"):  # a function of no argument, wrapped by SQLAlchemy
        return lambda params, make=default.arg: write(make(None))
    return None


def _same(value: Any) -> Any:
    return value
