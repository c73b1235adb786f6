"""The append-only, hash-chained audit log: who changed journeys, consents and patient data, and when.

Every entry gets the next number on the chain (``seq``, no gaps) and
``hash = SHA-256(prev_hash "\\n" canonical form)``, where the canonical form is the
JSON of its number, time (UTC, microseconds), actor, action, entity, entity id, patient
and detail with sorted keys (:func:`canonical`). Appends are serialised: on PostgreSQL
by a transaction-scoped advisory lock taken before the chain's head is read (several
workers cannot fork the chain; the unique ``seq`` would refuse a fork anyway), on
SQLite by its single writer. The lock is held until the caller's transaction ends.
Database triggers refuse ``UPDATE`` and ``DELETE`` on ``audit_log`` (migration
``0020_keys_audit``); ``carepath audit verify`` (:mod:`carepath.store.audit_verify`)
finds what was changed by someone able to bypass them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, insert, select, text

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


def _patient_of(conn: Connection, entity: str, entity_id: str | None) -> int | None:
    if entity_id is None or not entity_id.isdigit():
        return None
    if entity == "patient":
        return int(entity_id)
    if entity == "task":
        return conn.execute(select(StaffTask.patient_id).where(StaffTask.id == int(entity_id))).scalar()
    return None


def audit(conn: Connection, *, actor: str, action: str, entity: str, entity_id: object = None, at: datetime,
          detail: dict[str, Any] | None = None, patient_id: int | None = None) -> None:
    """Append one entry to the chain in the caller's transaction (it commits or rolls back with the change).

    ``detail`` must never carry contact data: name fields, never values. ``patient_id`` (found by itself
    for patient and task entities) is what ``carepath audit list --patient`` selects on.
    """
    from carepath.store.schema_trust import AuditAnchor

    actor, ident = actor[:128], None if entity_id is None else str(entity_id)[:64]
    detail = json.loads(json.dumps(detail or {}, ensure_ascii=False, default=str))  # what reading it back gives
    if patient_id is None:
        patient_id = _patient_of(conn, entity, ident)
    lock_chain(conn)
    seq, prev = chain_head(conn)
    seq += 1
    digest = chain_hash(prev, canonical(seq=seq, at=at, actor=actor, action=action, entity=entity, entity_id=ident,
                                        patient_id=patient_id, detail=detail))
    conn.execute(insert(AuditEntry).values(at=at, actor=actor, action=action, entity=entity, entity_id=ident,
                                           detail=detail, seq=seq, prev_hash=prev, hash=digest,
                                           patient_id=patient_id))
    if seq % ANCHOR_EVERY == 0:
        conn.execute(insert(AuditAnchor).values(seq=seq, hash=digest, at=at, entries=seq, note="every 1000"))
