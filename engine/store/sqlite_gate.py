"""SQLite's one write lock, taken in turn by this process's threads instead of by polling.

Every carepath transaction on SQLite starts with ``BEGIN IMMEDIATE`` (it takes the database's
write lock at once). A thread that finds the lock taken waits in SQLite's busy handler, which
sleeps and retries in growing steps (1, 2, 5 … up to 100 ms): under ``carepath serve`` with a
hundred events a second, the ingest threads and the dispatchers spent most of their time asleep
there while the lock was free, and a waiter could lose the lock again and again to newer arrivals
(the due-now p99 was several seconds). The gate queues this process's threads for the lock in
arrival order and hands it over the moment the holder commits or rolls back.

A thread inside :func:`first_in_line` (``carepath serve``'s due-now dispatchers) goes before the
threads already waiting: its few short transactions per wake-up then wait for one holder at most,
not for the queue of ingest transactions that a hundred events a second keep full.

The gate only orders this process's threads; SQLite's lock still decides. Other processes on the
same file (a CLI command, a second worker) meet SQLite's busy handler as before, and so does a
thread that opens a second write transaction while it holds one (it is not made to wait for itself).

A connection opened with :func:`reading` only reads: its transactions begin with a plain (deferred)
``BEGIN``, take no turn at the gate and never the write lock. In WAL mode such a reader sees the
last committed state as of its first statement and neither waits for the writer nor holds it up
(the dispatcher reads its batch context this way).
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

_local = threading.local()
#: the execution option :func:`reading` sets: the connection's transactions only read
READ_ONLY = "carepath_read_only"


def reads_only(conn: "Connection") -> "Connection":
    """``conn`` (just checked out of the pool, no transaction begun) set to read without a transaction on PostgreSQL:
    each statement its own snapshot, as under READ COMMITTED anyway, and no ``BEGIN`` nor ``ROLLBACK`` sent.

    The ``ROLLBACK`` matters more than its round trip: psycopg forgets every statement it has prepared on a connection
    when a transaction is rolled back (its prepared statements might belong to that transaction), and the pool ends
    a read-only connection's transaction that way. A dispatcher reads at every sweep and every batch, so its
    statements were parsed and planned anew on nearly every run instead of prepared once. On return to the pool the
    connection gets its transactions back (SQLAlchemy resets the isolation level). On SQLite ``conn`` is unchanged.
    """
    if conn.dialect.name == "postgresql":
        conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn


@contextmanager
def reading(db: "Engine") -> Iterator["Connection"]:
    """A connection of ``db`` for reads only: on SQLite no write lock and no turn at the gate; on PostgreSQL,
    where readers never wait for writers, no transaction (:func:`reads_only`). A write through it is a mistake:
    SQLite would have to take the lock mid-transaction and may refuse."""
    with db.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        yield reads_only(conn)


@contextmanager
def first_in_line() -> Iterator[None]:
    """While inside, this thread's write transactions go before the other waiting threads' (not before the holder)."""
    before = getattr(_local, "first", False)
    _local.first = True
    try:
        yield
    finally:
        _local.first = before


class WriteGate:
    """A first-come, first-served turn at one SQLite file's write lock for the threads of this process."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._queue: deque[tuple[int, threading.Event]] = deque()
        self._first: deque[tuple[int, threading.Event]] = deque()  # waiters inside first_in_line()
        self._owner: int | None = None  # the thread whose turn it is

    @property
    def holder(self) -> int | None:
        """The thread (``threading.get_ident()``) whose turn it is, ``None`` when the lock is free here."""
        return self._owner

    @property
    def waiting(self) -> int:
        """Threads of this process waiting for their turn."""
        with self._mutex:
            return len(self._first) + len(self._queue)

    def acquire(self, timeout: float) -> bool:
        """Wait for this thread's turn, at most ``timeout`` seconds; ``False``: go on without one (SQLite decides)."""
        me = threading.get_ident()
        with self._mutex:
            if self._owner is None:
                self._owner = me
                return True
            if self._owner == me:  # a second transaction of the holder: SQLite's busy timeout, as without the gate
                return False
            turn = threading.Event()
            line = self._first if getattr(_local, "first", False) else self._queue
            line.append((me, turn))
        if turn.wait(timeout):
            return True
        with self._mutex:
            if turn.is_set():  # handed over just as the wait ended
                return True
            line.remove((me, turn))
            return False

    def release(self) -> None:
        """End the current turn and hand the lock to the longest waiter (those first in line before the others)."""
        with self._mutex:
            line = self._first or self._queue
            if line:
                self._owner, turn = line.popleft()
                turn.set()
            else:
                self._owner = None


_gates: dict[str, WriteGate] = {}
_gates_lock = threading.Lock()


def gate_for(path: Path) -> WriteGate:
    """The one gate of a database file in this process (every engine opened on it shares it)."""
    key = str(path.resolve())
    with _gates_lock:
        return _gates.setdefault(key, WriteGate())


class GatedConnection(sqlite3.Connection):
    """A sqlite3 connection that takes its gate's turn before ``BEGIN IMMEDIATE`` and gives it back at the end."""

    gate: WriteGate | None = None
    holds = False

    def take_turn(self, timeout: float) -> None:
        if self.gate is not None and not self.holds:
            self.holds = self.gate.acquire(timeout)

    def end_turn(self) -> None:
        if self.holds:
            self.holds = False
            self.gate.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.end_turn()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.end_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.end_turn()
