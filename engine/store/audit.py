"""The append-only, hash-chained audit log: who changed journeys, consents and patient data, and when.

Every entry gets the next number on the chain (``seq``, no gaps) and
``hash = SHA-256(prev_hash "\\n" canonical form)``, where the canonical form is the
JSON of its number, time (UTC, microseconds), actor, action, entity, entity id, patient
and detail with sorted keys (:func:`canonical`). Appends are serialised: on PostgreSQL
by a transaction-scoped advisory lock taken before the chain's head is read (several
workers cannot fork the chain; the unique ``seq`` would refuse a fork anyway), on
SQLite by its single writer. Entries are chained when the caller's transaction commits
(:func:`append_pending`): the lock is held only from there to the commit.
Database triggers refuse ``UPDATE`` and ``DELETE`` on ``audit_log`` (migration
``0020_keys_audit``); ``carepath audit verify`` (:mod:`carepath.store.audit_verify`)
finds what was changed by someone able to bypass them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, bindparam, event, insert, select, text
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.pool import Pool

from carepath.store.driver import DriverQuery
from carepath.store.schema import AuditEntry, StaffTask

GENESIS = "0" * 64
#: an anchor row is written with every this many entries (``carepath audit anchor`` and the maintenance flow
#: also write them, and to the anchor file)
ANCHOR_EVERY = 1000
_LOCK = (7022, 2)  # pg_advisory_xact_lock key of the chain


def canonical(*, seq: int, at: datetime, actor: str, action: str, entity: str, entity_id: str | None,
              patient_id: int | None, detail: Any) -> bytes:
    """The bytes an entry's hash covers (the same on SQLite and PostgreSQL)."""
    when = at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    doc = {"seq": seq, "at": when, "actor": actor, "action": action, "entity": entity, "entity_id": entity_id,
           "patient_id": patient_id, "detail": detail or {}}
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def chain_hash(prev_hash: str, body: bytes) -> str:
    """The hash of an entry whose predecessor's hash is ``prev_hash``."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + body).hexdigest()


def row_hash(row: Any) -> str:
    """The hash a stored entry (with ``prev_hash``) should carry."""
    return chain_hash(row.prev_hash or GENESIS, canonical(
        seq=row.seq, at=row.at, actor=row.actor, action=row.action, entity=row.entity, entity_id=row.entity_id,
        patient_id=row.patient_id, detail=row.detail))


def lock_chain(conn: Connection) -> None:
    """Serialise appends until ``conn``'s transaction ends (PostgreSQL; SQLite has one writer)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": _LOCK[0], "b": _LOCK[1]})


def chain_head(conn: Connection) -> tuple[int, str]:
    """``(seq, hash)`` of the newest entry on the chain (``(0, GENESIS)`` for an empty log)."""
    row = conn.execute(select(AuditEntry.seq, AuditEntry.hash).where(AuditEntry.seq.is_not(None))
                       .order_by(AuditEntry.seq.desc()).limit(1)).first()
    return (int(row.seq), row.hash) if row is not None else (0, GENESIS)


#: a task's patient (every audited task change reads it; on SQLite on the driver's cursor)
_TASK_PATIENT = DriverQuery(select(StaffTask.patient_id).where(StaffTask.id == bindparam("t")))


def _patient_of(conn: Connection, entity: str, entity_id: str | None) -> int | None:
    if entity_id is None or not entity_id.isdigit():
        return None
    if entity == "patient":
        return int(entity_id)
    if entity == "task":
        return _TASK_PATIENT.scalar(conn, {"t": int(entity_id)})
    return None


def audit(conn: Connection, *, actor: str, action: str, entity: str, entity_id: object = None, at: datetime,
          detail: dict[str, Any] | None = None, patient_id: int | None = None) -> None:
    """Record one entry in the caller's transaction: it joins the chain when that transaction commits, and
    is dropped if it rolls back (to a savepoint taken before it, too).

    ``detail`` must never carry contact data: name fields, never values. ``patient_id`` (found by itself
    for patient and task entities) is what ``carepath audit list --patient`` selects on.
    """
    actor, ident = actor[:128], None if entity_id is None else str(entity_id)[:64]
    detail = json.loads(json.dumps(detail or {}, ensure_ascii=False, default=str))  # what reading it back gives
    if patient_id is None:
        patient_id = _patient_of(conn, entity, ident)
    conn.info.setdefault(_PENDING, []).append(dict(at=at, actor=actor, action=action, entity=entity,
                                                   entity_id=ident, detail=detail, patient_id=patient_id))


def append_pending(conn: Connection) -> int:
    """Chain and insert the entries recorded in ``conn``'s transaction (at its commit); returns how many.

    The chain's lock is taken here, just before the commit, so it is held for an instant and after
    every other lock of the transaction (no deadlock with a writer waiting for this one's rows).
    """
    from carepath.store.schema_trust import AuditAnchor

    pending = conn.info.pop(_PENDING, None)
    conn.info.pop(_MARKS, None)
    if not pending:
        return 0
    lock_chain(conn)
    seq, prev = chain_head(conn)
    rows, anchors = [], []
    for entry in pending:
        seq += 1
        digest = chain_hash(prev, canonical(seq=seq, **{k: v for k, v in entry.items()}))
        rows.append({**entry, "seq": seq, "prev_hash": prev, "hash": digest})
        if seq % ANCHOR_EVERY == 0:
            anchors.append(dict(seq=seq, hash=digest, at=entry["at"], entries=seq, note=f"every {ANCHOR_EVERY}"))
        prev = digest
    conn.execute(insert(AuditEntry), rows)
    if anchors:
        conn.execute(insert(AuditAnchor), anchors)
    return len(rows)


_PENDING, _MARKS = "carepath.audit.pending", "carepath.audit.savepoints"


def _info(conn: Connection) -> dict[str, Any] | None:
    """``conn.info``, or ``None`` for a connection the database dropped (reading it would try to reconnect;
    what it recorded went with it: the pool's checkin and invalidate events drop it)."""
    if conn.invalidated or conn.closed:
        return None
    return conn.info


@event.listens_for(SAEngine, "commit")
def _on_commit(conn: Connection) -> None:
    info = _info(conn)
    if info is not None and info.get(_PENDING):
        append_pending(conn)


@event.listens_for(SAEngine, "rollback")
def _on_rollback(conn: Connection) -> None:
    info = _info(conn)
    if info is not None:
        info.pop(_PENDING, None)
        info.pop(_MARKS, None)


@event.listens_for(SAEngine, "savepoint")
def _on_savepoint(conn: Connection, name: str) -> None:
    info = _info(conn)
    if info is not None:
        info.setdefault(_MARKS, {})[name] = len(info.get(_PENDING, []))


@event.listens_for(SAEngine, "rollback_savepoint")
def _on_rollback_savepoint(conn: Connection, name: str, context: Any) -> None:
    info = _info(conn)
    mark = info.get(_MARKS, {}).pop(name, None) if info is not None else None
    if info is not None and mark is not None and _PENDING in info:
        del info[_PENDING][mark:]


@event.listens_for(Pool, "checkin")
def _on_checkin(dbapi_connection: Any, record: Any) -> None:
    if record is not None:  # a connection given back without commit or rollback: what it recorded is gone
        record.info.pop(_PENDING, None)
        record.info.pop(_MARKS, None)


@event.listens_for(Pool, "invalidate")
def _on_invalidate(dbapi_connection: Any, record: Any, exception: Any) -> None:
    _on_checkin(dbapi_connection, record)
