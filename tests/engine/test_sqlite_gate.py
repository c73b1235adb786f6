"""SQLite's write lock taken in turn by this process's threads (carepath.store.sqlite_gate).

Orders are asserted, never durations: a thread's place in line is set when it starts waiting,
and the waits below only bound a test that would otherwise hang.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from carepath.store import open_database
from carepath.store.database import sqlite_path
from carepath.store.sqlite_gate import WriteGate, first_in_line, gate_for, reading

from tests.conftest import ON_POSTGRES


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.005)


def test_waiters_get_their_turn_in_arrival_order_and_the_due_now_dispatcher_first():
    gate = WriteGate()
    assert gate.acquire(1) is True
    order: list[str] = []

    def waiter(name: str, first: bool) -> None:
        if first:
            with first_in_line():
                gate.acquire(30)
        else:
            gate.acquire(30)
        order.append(name)
        gate.release()

    threads = []
    for n, (name, first) in enumerate([("ingest-1", False), ("ingest-2", False), ("due-now", True)], 1):
        threads.append(threading.Thread(target=waiter, args=(name, first)))
        threads[-1].start()
        _until(lambda: gate.waiting == n, f"{name} waiting")
    gate.release()
    for t in threads:
        t.join(30)
    assert order == ["due-now", "ingest-1", "ingest-2"]
    assert gate.holder is None and gate.waiting == 0


def test_a_holder_opening_a_second_transaction_is_not_made_to_wait_for_itself():
    gate = WriteGate()
    assert gate.acquire(1) is True
    assert gate.acquire(30) is False  # at once: SQLite's own busy timeout applies, as without the gate
    gate.release()
    assert gate.holder is None


def test_a_waiter_whose_wait_ends_goes_on_without_a_turn():
    gate = WriteGate()
    holder = threading.Thread(target=gate.acquire, args=(1,))
    holder.start()
    holder.join()
    assert gate.acquire(0.01) is False and gate.waiting == 0  # left the line: a later release skips it
    gate.release()
    assert gate.holder is None


@pytest.mark.skipif(ON_POSTGRES, reason="the gate is SQLite's")
def test_every_transaction_gives_its_turn_back(database_url):
    """Committed, rolled back by an error, or a read: the next thread gets the lock from the gate, not by waiting."""
    db = open_database(database_url)
    gate = gate_for(sqlite_path(database_url))
    try:
        with db.begin() as conn:
            conn.execute(text("CREATE TABLE counts (n INTEGER)"))
            assert gate.holder == threading.get_ident()
        assert gate.holder is None
        with pytest.raises(ZeroDivisionError):
            with db.begin() as conn:
                conn.execute(text("INSERT INTO counts VALUES (1)"))
                1 / 0
        assert gate.holder is None
        with db.connect() as conn:
            conn.execute(text("SELECT count(*) FROM counts")).scalar()
        assert gate.holder is None

        def add(k: int) -> None:
            for _ in range(k):
                with db.begin() as conn:
                    conn.execute(text("INSERT INTO counts VALUES (1)"))

        threads = [threading.Thread(target=add, args=(25,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        with db.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM counts")).scalar() == 200
        assert gate.holder is None and gate.waiting == 0
    finally:
        db.dispose()


@pytest.mark.skipif(ON_POSTGRES, reason="the gate is SQLite's")
def test_a_reading_connection_reads_while_another_thread_holds_the_write_lock(database_url):
    """The dispatcher's batch context (reading()) neither queues at the gate nor waits for a writer: it sees the
    last commit, not the writer's uncommitted rows."""
    db = open_database(database_url)
    gate = gate_for(sqlite_path(database_url))
    try:
        with db.begin() as conn:
            conn.execute(text("CREATE TABLE counts (n INTEGER)"))
            conn.execute(text("INSERT INTO counts VALUES (1)"))
        writing, done = threading.Event(), threading.Event()

        def writer() -> None:
            with db.begin() as conn:
                conn.execute(text("INSERT INTO counts VALUES (2)"))
                writing.set()
                done.wait(30)

        t = threading.Thread(target=writer)
        t.start()
        assert writing.wait(30)
        started = time.monotonic()
        with reading(db) as conn:
            assert conn.execute(text("SELECT sum(n) FROM counts")).scalar() == 1
            assert gate.holder == t.ident and gate.waiting == 0
        assert time.monotonic() - started < 5  # a write transaction would have waited for the writer (30 s)
        done.set()
        t.join(30)
        with reading(db) as conn:
            assert conn.execute(text("SELECT sum(n) FROM counts")).scalar() == 3
        assert gate.holder is None
    finally:
        db.dispose()
