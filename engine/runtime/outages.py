"""Riding out database outages: a PostgreSQL restart, a SQLite file locked past its busy timeout.

Database work is wrapped in :meth:`OutageGuard.run`, which runs it again after a
lost connection or a busy database, backing off, with one log line when the
outage starts and one when it ends. The work it wraps must be safe to run
again (the dispatcher's transactions are: each is fenced and idempotent).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Callable, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger("carepath.database")
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """A lost connection, a server shutting down or restarting, a busy or locked database."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


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
