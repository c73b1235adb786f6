"""Two workers enrolling the first patients on a new journey version at once: both succeed, one version row.

The race is real: two database connections, the second one's insert running while the first has
stored the version and not yet committed (on PostgreSQL it waits on the first one's row lock; on
SQLite on the write lock). Before ``ON CONFLICT DO NOTHING`` the second failed with a unique
violation on ``uq_journey_version`` and its event was refused.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select, text

from carepath.definition.dsl import enroll_on, journey, on, send, step, template
from carepath.definition.events import PatientIn
from carepath.runtime.versions import store_version
from carepath.store import open_database, upgrade
from carepath.store.schema import AuditEntry, JourneyVersion

from tests.engine import helpers as h


def _visit():
    return journey("racing", enroll=enroll_on("program.joined"), templates=[template("t", "{{ patient.name }}您好")],
                   steps=[step("welcome", "pre_visit", on("program.joined", delay="1d"), send("t", ["sms"]))])


def _wait_until_blocked(db, started: threading.Event, done: threading.Event) -> None:
    """Until the other thread's statement waits on a lock (PostgreSQL) or has been given time to (SQLite).

    PostgreSQL reads ``pg_stat_activity`` once per transaction and answers every later read in it from that
    snapshot, so the polling runs without a transaction: each read sees the backends as they are now.
    """
    assert started.wait(30)
    if db.dialect.name != "postgresql":
        time.sleep(0.3)  # SQLite shows no waiters; the assertions below hold whether or not it was waiting
        return
    deadline = time.monotonic() + 30
    with db.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        while time.monotonic() < deadline and not done.is_set():
            waiting = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                        "AND wait_event_type = 'Lock'")).scalar()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the second insert never waited for the first transaction")


def test_second_transaction_storing_the_same_version_skips_it(database_url, clock):
    """The second store waits for the first, then skips the row: no unique violation, one row, one audit line."""
    db = open_database(database_url)
    upgrade(db)
    visit = _visit()
    started, done = threading.Event(), threading.Event()
    outcome: dict = {}

    def second() -> None:
        try:
            started.set()
            with db.begin() as conn:
                outcome["stored"] = store_version(conn, visit, clock.now())
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc
        finally:
            done.set()

    try:
        with db.begin() as conn:
            assert store_version(conn, visit, clock.now()) is True
            racer = threading.Thread(target=second)
            racer.start()
            _wait_until_blocked(db, started, done)
        racer.join(30)
        assert "error" not in outcome, f"the second enrollment failed: {outcome.get('error')!r}"
        assert outcome["stored"] is False
        with db.connect() as conn:
            assert conn.execute(select(func.count()).select_from(JourneyVersion)).scalar() == 1
            assert conn.execute(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.action == "journey.version_registered")).scalar() == 1
    finally:
        db.dispose()


def test_two_workers_first_enrollments_are_all_accepted(database_url, settings, clock):
    """Two engines (two serve workers) enroll patients on a version neither has stored: every event applies."""
    visit = _visit()
    workers = [h.make_engine(database_url, settings, clock, [visit], {"sms": h.RecordingChannel()}) for _ in range(2)]
    try:
        for i in range(8):
            workers[0].upsert_patient(PatientIn(mrn=f"R{i}", name="张三", phone=f"1381234{i:04d}"))
        gate = threading.Barrier(8)
        failures: list[str] = []

        def enroll(i: int) -> None:
            event = h.Events(clock, mrn=f"R{i}")("program.joined")
            gate.wait(30)
            try:
                workers[i % 2].ingest(event)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                failures.append(f"R{i}: {exc!r}")

        threads = [threading.Thread(target=enroll, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert failures == []
        assert len(h.enrollments(workers[0])) == 8
        with workers[0].db.connect() as conn:
            assert conn.execute(select(func.count()).select_from(JourneyVersion)).scalar() == 1
    finally:
        for w in workers:
            w.close()
