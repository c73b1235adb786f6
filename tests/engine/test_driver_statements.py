"""Statements run on the driver's cursor (``carepath.store.driver``) behave as SQLAlchemy's: they run in the
connection's transaction, raise SQLAlchemy's errors, and what the per-event reads written that way return is
what the SQLAlchemy statements they replace return."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from carepath.runtime.portrait import change_facts, record_facts
from carepath.store.statements import insert_returning, sql_for, update_by_id
from carepath.runtime.ingest_reads import ACTIVE_ENROLLMENTS, active_enrollments
from carepath.runtime.daily_load import _DAY_LOADS
from carepath.runtime.portrait_load import _LOADS
from carepath.store import open_database
from carepath.store.driver import driver_execute, driver_fetch
from carepath.store.schema import Enrollment, Event, Patient
from carepath.store.schema_portrait import Portrait
from tests.engine import helpers as h
from tests.engine.test_batch_ingest import JOURNEY
from tests.engine.test_event_semantics import slot

_INSERT = "INSERT INTO store_meta (name, value) VALUES (?, ?)"


def test_a_driver_statement_runs_in_the_connections_transaction(database_url):
    db = open_database(database_url)
    try:
        with db.connect() as conn:  # no transaction begun yet: the statement begins it, as SQLAlchemy would
            assert driver_execute(conn, sql_for(conn, _INSERT), ("sim7-test", "1")) == 1
            assert conn.in_transaction()
            assert driver_fetch(conn, sql_for(conn, "SELECT value FROM store_meta WHERE name = ?"), ("sim7-test",)) \
                == [("1",)]
            conn.rollback()  # ... and it is that transaction's: rolled back with it
        with db.connect() as conn:
            assert driver_fetch(conn, sql_for(conn, "SELECT value FROM store_meta WHERE name = ?"), ("sim7-test",)) \
                == []
    finally:
        db.dispose()


def test_a_driver_error_is_raised_as_sqlalchemy_raises_it(database_url):
    db = open_database(database_url)
    try:
        with db.begin() as conn:
            driver_execute(conn, sql_for(conn, _INSERT), ("sim7-twice", "1"))
        with pytest.raises(IntegrityError) as raised, db.begin() as conn:
            driver_execute(conn, sql_for(conn, _INSERT), [("sim7-other", "1"), ("sim7-twice", "2")], many=True)
        assert raised.value.orig is not None  # the driver's own error, wrapped
        with pytest.raises(DBAPIError), db.connect() as conn:
            driver_fetch(conn, "SELECT nothing FROM no_such_table")
        with db.connect() as conn:  # the failed transaction kept nothing
            rows = driver_fetch(conn, "SELECT name FROM store_meta WHERE name LIKE 'sim7-%' ORDER BY name")
        assert rows == [("sim7-twice",)]
    finally:
        db.dispose()


def test_the_event_insert_and_the_per_event_reads_give_what_sqlalchemy_gives(database_url, settings, clock):
    with h.running_engine(database_url, settings, clock, [JOURNEY], {"sms": h.RecordingChannel("sms")}) as eng:
        at = datetime(2026, 3, 2, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=8)))
        booked = h.Events(clock)("appointment.booked", {"appointment_id": "A1", "start": slot(9), "note": "备注"},
                                 occurred_at=at)
        assert eng.ingest(booked).status == "stored"
        assert eng.ingest(booked).duplicate  # stored once per source and source id
        eng.ingest(h.Events(clock)("message.replied", {"text": "好的"}))  # a reply: a portrait with counts
        with eng.db.connect() as conn:
            event = conn.execute(select(Event.occurred_at, Event.payload, Event.received_via)
                                 .where(Event.source_id == booked.source_id)).one()
            pid = conn.execute(select(Patient.id)).scalar_one()
            core = [tuple(r) for r in conn.execute(ACTIVE_ENROLLMENTS, {"p": pid})]
            read = [tuple(r) for r in active_enrollments(conn, pid)]
            pg = conn.dialect.name == "postgresql"
            windows = {"d30": clock.now().date() - timedelta(days=29), "d90": clock.now().date() - timedelta(days=89)}
            portrait = [tuple(r) for r in conn.execute(_LOADS[pg].statement, {"ids": [pid], **windows})]
            portrait_read = [tuple(r) for r in _LOADS[pg].rows(conn, {"ids": [pid], **windows})]
            since = {"ids": [pid], "since": clock.now() - timedelta(days=1)}
            loads = [tuple(r) for r in conn.execute(_DAY_LOADS[pg].statement, since)]
            loads_read = [tuple(r) for r in _DAY_LOADS[pg].rows(conn, since)]
        assert event.occurred_at == at and event.payload["note"] == "备注"
        assert len(core) == 1 and read == core
        assert portrait and portrait_read == portrait
        assert loads and loads_read == loads


_ENROLLMENT_COLUMNS = [c.name for c in Enrollment.__table__.columns if c.name != "id"]


def test_single_row_inserts_and_updates_store_what_sqlalchemy_stores(database_url, settings, clock):
    with h.running_engine(database_url, settings, clock, [JOURNEY], {"sms": h.RecordingChannel("sms")}) as eng:
        eng.ingest(h.Events(clock)("message.replied", {"text": "好的"}))
        at = datetime(2026, 3, 2, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=8)))
        with eng.db.connect() as conn:
            pid = conn.execute(select(Patient.id)).scalar_one()
            # status and context left to their Python-side defaults ("active", an empty dict)
            values = dict(patient_id=pid, journey="j", version="1", key="k", enrolled_at=at, anchors={"诊": "x"})
            mine = insert_returning(conn, Enrollment, values)
            theirs = conn.execute(insert(Enrollment).values(**values).returning(Enrollment.id)).scalar_one()
            change = dict(status="exited", exited_at=at + timedelta(days=1), exit_reason="离开", anchor_times=None)
            update_by_id(conn, Enrollment, mine, change)
            conn.execute(update(Enrollment).where(Enrollment.id == theirs).values(**change))
            stored = driver_fetch(conn, sql_for(conn, f"SELECT {', '.join(_ENROLLMENT_COLUMNS)} FROM enrollments "
                                                      "WHERE id = ? OR id = ? ORDER BY id"), (mine, theirs))
            read = conn.execute(select(Enrollment.status, Enrollment.context, Enrollment.exited_at)
                                .where(Enrollment.id == mine)).one()
            conn.rollback()  # ... in the connection's transaction: rolled back with it
        assert mine != theirs and stored[0] == stored[1]  # the same stored values, byte for byte
        assert tuple(read) == ("exited", {}, at + timedelta(days=1))
        with eng.db.connect() as conn:
            assert conn.execute(select(Enrollment.id).where(Enrollment.id.in_([mine, theirs]))).all() == []
        with pytest.raises(IntegrityError), eng.db.begin() as conn:  # a NOT NULL column left out: SQLAlchemy's error
            insert_returning(conn, Enrollment, dict(patient_id=pid, version="1", enrolled_at=at))


def test_the_portrait_writes_on_the_driver_read_back_through_sqlalchemy(database_url, settings, clock):
    with h.running_engine(database_url, settings, clock, [JOURNEY], {"sms": h.RecordingChannel("sms")}) as eng:
        eng.ingest(h.Events(clock)("appointment.booked", {"appointment_id": "A1", "start": slot(9)}))
        now, at = clock.now(), clock.now() - timedelta(hours=1, microseconds=7)
        with eng.db.connect() as conn:
            pid = conn.execute(select(Patient.id)).scalar_one()
            record_facts(conn, [(pid, "reply", at, "Asia/Shanghai"), (pid, "reply", at - timedelta(days=1), "UTC")],
                         now)
            change_facts(conn, eng.cipher, pid, now, lambda d: d.update(seen="是"), admitted=True)
            row = conn.execute(select(Portrait.last_interaction_at, Portrait.interaction_seq, Portrait.admitted,
                                      Portrait.updated_at, Portrait.facts_enc).where(Portrait.patient_id == pid)).one()
            conn.rollback()
        assert tuple(row[:4]) == (at, 1, True, now)  # the newest of the facts, moved forward once
        assert eng.cipher.decrypt(row.facts_enc) == '{"seen": "是"}'
        with eng.db.connect() as conn:  # rolled back with the connection's transaction
            assert conn.execute(select(Portrait.admitted).where(Portrait.patient_id == pid)).scalar() is not True
