"""The audit log is append-only and hash-chained: ``carepath audit verify`` names an edited, removed or moved entry."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
from sqlalchemy import Connection, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from carepath.definition.events import PatientIn
from carepath.runtime.patients import upsert_patient
from carepath.settings import Settings
from carepath.store import open_store
from carepath.store.audit import audit, canonical, chain_hash
from carepath.store.schema import AuditEntry, StaffTask

T0 = datetime(2026, 5, 1, 1, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(workdir, database_url):
    opened = open_store(Settings(), database_url)
    yield opened
    opened.db.dispose()


def _append(store, n: int, actor: str = "staff:li") -> None:
    for i in range(n):
        with store.db.begin() as conn:
            audit(conn, actor=actor, action="journey.changed", entity="journey", entity_id=f"care@{i}",
                  at=T0 + timedelta(minutes=i), detail={"step": f"s{i}", "n": i})


@contextmanager
def tampering(store) -> Iterator[Connection]:
    """A connection as someone with the database owner's rights, who switches the append-only triggers off."""
    with store.db.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_delete")
        yield conn


def test_an_intact_chain_verifies_and_the_log_refuses_updates_and_deletes(store, cli, database_url):
    _append(store, 5)
    ok = cli("audit", "verify", "--db", database_url)
    assert ok.exit_code == 0, ok.stderr
    assert "audit chain intact: 5 entries" in ok.stdout
    for statement in (update(AuditEntry).where(AuditEntry.seq == 2).values(actor="staff:nobody"),
                      AuditEntry.__table__.delete().where(AuditEntry.seq == 2)):
        with pytest.raises(DBAPIError, match="append-only"):
            with store.db.begin() as conn:
                conn.execute(statement)


def test_editing_one_audit_row_makes_verify_fail_and_name_it(store, cli, database_url):
    _append(store, 5)
    with tampering(store) as conn:
        conn.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(actor="staff:someone-else"))
    result = cli("audit", "verify", "--db", database_url)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("tampered:")]
    assert len(lines) == 1
    assert "audit entry 3 (id 3, journey.changed by staff:someone-else" in lines[0] and "was edited" in lines[0]


def test_a_removed_entry_and_a_reordered_pair_are_named(store, cli, database_url):
    _append(store, 6)
    with tampering(store) as conn:
        conn.execute(AuditEntry.__table__.delete().where(AuditEntry.seq == 2))
    removed = cli("audit", "verify", "--db", database_url)
    assert removed.exit_code == 1
    assert "entries 2..2 are missing before audit entry 3" in removed.stderr
    with tampering(store) as conn:  # and the first entry
        conn.execute(AuditEntry.__table__.delete().where(AuditEntry.seq == 1))
    assert "entries 1..2 are missing before audit entry 3" in cli("audit", "verify", "--db", database_url).stderr
    with tampering(store) as conn:  # entries 4 and 5 swap places
        conn.execute(update(AuditEntry).where(AuditEntry.seq == 4).values(seq=-4))
        conn.execute(update(AuditEntry).where(AuditEntry.seq == 5).values(seq=4))
        conn.execute(update(AuditEntry).where(AuditEntry.seq == -4).values(seq=5))
    moved = cli("audit", "verify", "--db", database_url)
    assert moved.exit_code == 1
    assert "audit entry 5 (id 4," in moved.stderr and "out of order" in moved.stderr


def test_a_chain_rewritten_after_an_anchor_is_caught_by_the_anchor_file(store, cli, database_url, tmp_path):
    _append(store, 4)
    anchors = tmp_path / "elsewhere" / "anchors.jsonl"
    assert cli("audit", "anchor", "--anchor-file", anchors, "--db", database_url).exit_code == 0
    with tampering(store) as conn:  # edit entry 2 and re-hash it and everything after it: the chain is consistent
        rows = conn.execute(select(AuditEntry).order_by(AuditEntry.seq)).all()
        prev = rows[0].hash
        for row in rows[1:]:
            actor = "staff:forged" if row.seq == 2 else row.actor
            digest = chain_hash(prev, canonical(seq=row.seq, at=row.at, actor=actor, action=row.action,
                                                entity=row.entity, entity_id=row.entity_id,
                                                patient_id=row.patient_id, detail=row.detail))
            conn.execute(update(AuditEntry).where(AuditEntry.id == row.id).values(actor=actor, prev_hash=prev,
                                                                                 hash=digest))
            prev = digest
        conn.execute(text("DELETE FROM audit_anchors"))  # and the anchors kept in the database
    result = cli("audit", "verify", "--anchor-file", anchors, "--db", database_url)
    assert result.exit_code == 1
    assert f"audit entry 4 differs from line 1 of {anchors}" in result.stderr


def test_concurrent_writers_do_not_fork_the_chain(store, cli, database_url):
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            _append(store, 25, actor=f"worker:{name}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(str(i),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with store.db.connect() as conn:
        assert list(conn.execute(select(AuditEntry.seq).order_by(AuditEntry.seq)).scalars()) == list(range(1, 101))
    result = cli("audit", "verify", "--db", database_url)
    assert result.exit_code == 0, result.stderr


def test_audit_list_shows_who_looked_at_a_patient(store, cli, database_url):
    with store.db.begin() as conn:
        pid = upsert_patient(conn, store.cipher, PatientIn(mrn="M1", name="张三", phone="13812341234"), T0)
        other = upsert_patient(conn, store.cipher, PatientIn(mrn="M2", name="李四"), T0)
        task = conn.execute(insert(StaffTask).values(patient_id=pid, kind="call", team="nursing", status="open",
                                                     created_at=T0).returning(StaffTask.id)).scalar_one()
        audit(conn, actor="staff:wang", action="task.contact_viewed", entity="task", entity_id=task, at=T0)
        audit(conn, actor="staff:zhao", action="task.contact_viewed", entity="patient", entity_id=other, at=T0)
    result = cli("audit", "list", "--patient", pid, "--json", "--db", database_url)
    assert result.exit_code == 0, result.stderr
    import json

    rows = json.loads(result.stdout)
    assert [(r["actor"], r["action"]) for r in rows] == [("staff:wang", "task.contact_viewed"),
                                                          ("api", "patient.created")]
    assert "13812341234" not in result.stdout and "张三" not in result.stdout


def test_maintenance_anchors_the_head_to_the_anchor_file_when_it_moved(store, tmp_path):
    import json

    from carepath.store.audit_verify import anchor_if_due

    anchors = tmp_path / "anchors.jsonl"
    assert anchor_if_due(store.db, anchors) == 0  # nothing to anchor yet
    _append(store, 3)
    assert anchor_if_due(store.db, anchors) == 1
    _append(store, 1)
    assert anchor_if_due(store.db, anchors) == 0  # not an hour since the last one
    assert anchor_if_due(store.db, anchors, every=timedelta(0)) == 1
    assert anchor_if_due(store.db, anchors, every=timedelta(0)) == 0  # the head has not moved
    assert [json.loads(line)["seq"] for line in anchors.read_text().splitlines()] == [3, 4]


def test_retention_may_cut_the_start_of_the_chain_but_a_silent_cut_is_named(store, cli, database_url):
    from carepath.store.audit_verify import purge_before

    _append(store, 6)
    with store.db.begin() as conn:
        assert purge_before(conn, 3, T0 + timedelta(days=400)) == 2
    kept = cli("audit", "verify", "--db", database_url)
    assert kept.exit_code == 0, kept.stderr
    assert "4 entries" in kept.stdout
    with tampering(store) as conn:  # entry 3 goes too, without a purge record
        conn.execute(AuditEntry.__table__.delete().where(AuditEntry.seq == 3))
    cut = cli("audit", "verify", "--db", database_url)
    assert cut.exit_code == 1
    assert "entries 3..3 are missing before audit entry 4" in cut.stderr
