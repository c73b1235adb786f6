"""An empty sweep is one read: it takes no write lock, so it never waits behind ingest or another worker."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from carepath.definition.dsl import enroll_on, journey, on, send, step, template
from carepath.definition.events import PatientIn

from tests.engine import helpers as h

CARE = journey("care", enroll=enroll_on("program.joined"), templates=[template("t", "您好")],
               steps=[step("later", "post_visit", on("program.joined", delay="3d"), send("t", ["sms"]))])


def test_a_sweep_with_nothing_due_does_not_wait_for_the_write_lock(database_url, settings, clock):
    if not database_url.startswith("sqlite"):
        pytest.skip("the one write lock is SQLite's")
    eng = h.make_engine(database_url, settings, clock, [CARE], {"sms": h.RecordingChannel("sms")})
    try:
        eng.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234"))
        eng.ingest(h.Events(clock)("program.joined"))  # plans a message three days out: nothing due now
        holder = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer (an ingest, a worker) holds the lock
        out: dict = {}
        sweep = threading.Thread(target=lambda: out.update(report=eng.dispatch_due()), daemon=True)
        sweep.start()
        sweep.join(timeout=10)
        finished_while_locked = not sweep.is_alive()
        holder.execute("ROLLBACK")
        holder.close()
        sweep.join(timeout=60)
        assert finished_while_locked, "the empty sweep waited for the write lock"
        assert out["report"].claimed == 0 and eng.channels["sms"].messages == []
    finally:
        eng.close()


def test_the_dispatchers_public_names_stay_where_plugins_import_them():
    from carepath.runtime import dispatcher

    for name in ("Dispatcher", "DispatchReport", "CALLS_MADE", "PROVIDER_WAIT", "VETOED", "LOOKUP_INCONCLUSIVE"):
        assert hasattr(dispatcher, name), name
    for method in ("dispatch_due", "run_batch", "claim", "release_abandoned", "release_quarantined"):
        assert callable(getattr(dispatcher.Dispatcher, method)), method
