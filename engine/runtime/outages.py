"""Riding out database outages: a PostgreSQL restart, a SQLite file locked past its busy timeout.

Database work is wrapped in :meth:`OutageGuard.run`, which runs it again after a
lost connection or a busy database, backing off, with one log line when the
outage starts and one when it ends. The work it wraps must be safe to run
again (the dispatcher's transactions are: each is fenced and idempotent).

An error no wait can cure is not an outage: SQLite reports "no such column", "no such table"
and syntax errors as ``OperationalError`` too, and those fail at once as :class:`NotAnOutage`
instead of being retried for ten minutes.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Callable, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger("carepath.database")
T = TypeVar("T")


# SQLite's primary result codes that waiting can cure: busy, locked, out of memory, I/O error, disk full,
# cannot open the file, lock protocol, schema changed by another connection. Anything else it reports as
# OperationalError (SQLITE_ERROR: no such column/table, syntax errors; read-only; corrupt) is not an outage.
SQLITE_OUTAGES = {5: "SQLITE_BUSY", 6: "SQLITE_LOCKED", 7: "SQLITE_NOMEM", 10: "SQLITE_IOERR", 13: "SQLITE_FULL",
                  14: "SQLITE_CANTOPEN", 15: "SQLITE_PROTOCOL", 17: "SQLITE_SCHEMA"}
_SQLITE_OUTAGE_TEXT = ("locked", "busy", "disk i/o error", "unable to open database file", "disk is full")


class NotAnOutage(RuntimeError):
    """A database error that waiting cannot cure (a statement that does not fit the schema): not retried."""


def _sqlite_outage(orig: BaseException) -> bool:
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in SQLITE_OUTAGES
    text = str(orig).lower()  # raised by the sqlite3 module itself, without a result code
    return any(t in text for t in _SQLITE_OUTAGE_TEXT)


def is_transient(exc: BaseException) -> bool:
    """A lost connection, a server shutting down or restarting, a busy or locked database.

    Not: SQLite's ``OperationalError`` for a statement that cannot run at all (no such column or
    table, a syntax error), which waiting does not cure.
    """
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    orig = exc.orig
    if orig is not None and type(orig).__module__.startswith("sqlite3"):
        return _sqlite_outage(orig)
    return True  # PostgreSQL: connection refused or lost, server shutting down (its statement errors are
    # ProgrammingError and the like)


def _describe(exc: BaseException) -> str:
    """The driver's first line only: SQLAlchemy's own text carries the statement and its parameters."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [""])[0]
    return f"{type(orig).__name__}: {first[:200]}"


class OutageGuard:
    """Runs database work until it succeeds, for at most ``limit`` of outage; then the error is raised."""

    def __init__(self, limit: timedelta = timedelta(minutes=10), first_delay: float = 0.05,
                 max_delay: float = 2.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.limit = limit.total_seconds()
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.outages = 0  # outages ridden out so far (each logged once)

    def run(self, work: Callable[[], T]) -> T:
        started: float | None = None
        delay = self.first_delay
        while True:
            try:
                result = work()
            except Exception as exc:
                if isinstance(exc, OperationalError) and not is_transient(exc):
                    log.error("database error that is not an outage, not retried: %s", _describe(exc))
                    raise NotAnOutage(f"database error that waiting cannot cure, not retried: {_describe(exc)} "
                                      "(a statement that does not fit this database's schema, a bug or a database "
                                      "at another schema version; or a read-only or damaged database file)") from exc
                if not is_transient(exc):
                    raise
                if started is None:
                    started = time.monotonic()
                    self.outages += 1
                    log.warning("database unavailable (%s); retrying with backoff until it is back", _describe(exc))
                elif time.monotonic() - started > self.limit:
                    log.error("database still unavailable after %.0f s; giving up", time.monotonic() - started)
                    raise
                self.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            if started is not None:
                log.info("database available again after %.1f s; resuming", time.monotonic() - started)
            return result
