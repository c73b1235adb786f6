"""What the outage guard rides out and what it does not: a statement that cannot run fails at once.

SQLite reports "no such column", "no such table" and syntax errors as ``OperationalError``, like a
locked database; only the second is an outage. Nothing here waits for real: the guard's sleep is
recorded, and where an outage must end, the recorded sleep ends it.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from carepath.runtime.outages import NotAnOutage, OutageGuard, is_transient
from carepath.store import open_database, upgrade

from tests.conftest import ON_POSTGRES


class Sleeps(list):
    """The guard's sleep: records each wait, runs ``then`` at the first one."""

    def __init__(self, then=lambda: None) -> None:
        super().__init__()
        self.then = then

    def __call__(self, seconds: float) -> None:
        if not self:
            self.then()
        self.append(seconds)


@pytest.fixture
def db(database_url):
    engine = open_database(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _read(db, sql: str):
    def work():
        with db.connect() as conn:
            return conn.execute(text(sql)).all()
    return work


@pytest.mark.parametrize("sql, says", [
    ("SELECT no_such_column FROM touchpoints", "no_such_column"),
    ("SELECT id FROM no_such_table", "no_such_table"),
    ("SELEKT id FROM touchpoints", "SELEKT"),
])
def test_a_statement_that_cannot_run_fails_at_once(db, sql, says):
    sleeps = Sleeps()
    guard = OutageGuard(sleep=sleeps)
    with pytest.raises(Exception) as failed:
        guard.run(_read(db, sql))
    assert sleeps == [], "retried as if the database were down"
    assert guard.outages == 0
    assert says in str(failed.value)
    if not ON_POSTGRES:  # SQLite's OperationalError: said to be no outage, in a message of its own
        assert isinstance(failed.value, NotAnOutage)
        assert "not retried" in str(failed.value) and "schema" in str(failed.value)


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite's write lock (PostgreSQL: a refused connection, below)")
def test_a_locked_sqlite_database_is_ridden_out(db, database_url):
    @event.listens_for(db, "connect")
    def _no_busy_wait(dbapi_conn, _record):  # the lock is reported at once instead of after the busy timeout
        dbapi_conn.execute("PRAGMA busy_timeout=0")

    db.dispose()  # connections opened before the listener keep their 30 s
    blocker = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    sleeps = Sleeps(then=blocker.rollback)  # the other writer finishes while the guard waits
    guard = OutageGuard(sleep=sleeps)
    try:
        assert guard.run(_read(db, "SELECT count(*) FROM touchpoints")) == [(0,)]
    finally:
        blocker.close()
    assert len(sleeps) == 1 and guard.outages == 1


def test_a_refused_connection_is_ridden_out(db):
    """PostgreSQL that is not (yet) listening: the guard waits and carries on once it answers."""
    down = open_database("postgresql://postgres@127.0.0.1:1/carepath")  # nothing listens on port 1
    tries = []

    def work():
        tries.append(1)
        return _read(down if len(tries) == 1 else db, "SELECT 1")()

    sleeps = Sleeps()
    guard = OutageGuard(sleep=sleeps)
    try:
        assert guard.run(work) == [(1,)]
    finally:
        down.dispose()
    assert len(sleeps) == 1 and guard.outages == 1


@pytest.mark.parametrize("code, transient", [
    (5, True),        # SQLITE_BUSY: database is locked
    (6, True),        # SQLITE_LOCKED: database table is locked
    (10 | 3 << 8, True),  # SQLITE_IOERR_WRITE: disk I/O error
    (13, True),       # SQLITE_FULL: database or disk is full
    (1, False),       # SQLITE_ERROR: no such column, no such table, syntax error
    (8, False),       # SQLITE_READONLY: attempt to write a readonly database
    (11, False),      # SQLITE_CORRUPT: database disk image is malformed
])
def test_sqlite_errors_are_outages_by_their_result_code(code, transient):
    orig = sqlite3.OperationalError("driver text")
    orig.sqlite_errorcode = code
    assert is_transient(OperationalError("SELECT 1", {}, orig)) is transient


def test_the_guard_gives_up_after_its_limit():
    down = open_database("postgresql://postgres@127.0.0.1:1/carepath")
    guard = OutageGuard(limit=timedelta(0), sleep=Sleeps())
    try:
        with pytest.raises(OperationalError):
            guard.run(_read(down, "SELECT 1"))
    finally:
        down.dispose()
    assert guard.outages == 1
