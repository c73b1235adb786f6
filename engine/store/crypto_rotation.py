"""``carepath keys rotate|status|retire``: move every encrypted value and keyed hash to one key, online.

A rotation makes its target the store's active key first (``store_meta.active_key_id``: running
processes follow it within seconds, see :class:`carepath.store.crypto.Cipher`), then walks every
column of :mod:`carepath.store.crypto_registry` in primary-key order, a batch per transaction: the
rows are locked (``FOR UPDATE`` on PostgreSQL; SQLite has one writer), re-encrypted, their keyed
hashes recomputed, and the column's cursor saved in ``key_rotation_progress`` in that same
transaction. A killed rotation resumes where its last batch committed. Meanwhile every reader
decrypts with any key of the ring. When a pass is over, values written under another key meanwhile
(a process that had not yet followed) are counted and a further pass moves them; the rotation ends
when none is left, and records the target's fingerprint as the store's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import Connection, Engine, Text, bindparam, cast, func, insert, select, tuple_, update
from sqlalchemy.exc import DBAPIError

from carepath.store.audit import audit
from carepath.store.crypto import Cipher, KeyError_, key_id_of
from carepath.store.crypto_registry import JSON_DOC, Encrypted, encrypted_columns, hashes_of, table_of
from carepath.store.personal_data import ENCRYPTED
from carepath.store.schema import StoreMeta
from carepath.store.schema_trust import KeyRotation, KeyRotationProgress

ACTIVE_KEY = "active_key_id"
FINGERPRINT = "key_fingerprint"
RETIRED = "retired_key:"

#: ``progress(item, values moved by the batch)`` after every batch
Progress = Callable[[str, int], None]


class RotationError(KeyError_):
    """A rotation or retirement that cannot be done as asked (the message says why)."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- store_meta ----------------------------------------------------------------------------

def meta(conn: Connection, name: str) -> str | None:
    return conn.execute(select(StoreMeta.value).where(StoreMeta.name == name)).scalar()


def set_meta(conn: Connection, name: str, value: str) -> None:
    if conn.execute(update(StoreMeta).where(StoreMeta.name == name).values(value=value)).rowcount == 0:
        conn.execute(insert(StoreMeta).values(name=name, value=value))


def retired_keys(conn: Connection) -> set[str]:
    """Key ids retired from this store (``carepath keys retire``)."""
    rows = conn.execute(select(StoreMeta.name).where(StoreMeta.name.startswith(RETIRED, autoescape=True)))
    return {name[len(RETIRED):] for (name,) in rows}


# -- counting ------------------------------------------------------------------------------

def _key_prefix(conn: Connection, column: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return func.split_part(column, ":", 1)
    return func.substr(column, 1, func.instr(column, ":") - 1)


def _doc_tokens(doc: Any) -> list[str]:
    if isinstance(doc, dict):
        if set(doc) == {ENCRYPTED} and isinstance(doc[ENCRYPTED], str):
            return [doc[ENCRYPTED]]
        return [t for v in doc.values() for t in _doc_tokens(v)]
    if isinstance(doc, list):
        return [t for v in doc for t in _doc_tokens(v)]
    return []


def _rekeyed_doc(doc: Any, cipher: Cipher, target: str) -> Any:
    if isinstance(doc, dict):
        if set(doc) == {ENCRYPTED} and isinstance(doc[ENCRYPTED], str):
            return {ENCRYPTED: cipher.reencrypt(doc[ENCRYPTED], target)}
        return {k: _rekeyed_doc(v, cipher, target) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_rekeyed_doc(v, cipher, target) for v in doc]
    return doc


def _filters(entry: Encrypted, table: Any, conn: Connection) -> list[Any]:
    col = table.c[entry.column]
    found = [col.is_not(None)]
    if entry.kind == JSON_DOC:
        found.append(cast(col, Text).like(f'%"{ENCRYPTED}"%'))
    if entry.where is not None:
        found.append(entry.where(table))
    return found


def count_by_key(conn: Connection, entry: Encrypted, *, batch: int = 5000) -> dict[str, int]:
    """How many values of ``entry`` each key id protects."""
    table = table_of(entry.table)
    col = table.c[entry.column]
    if entry.kind != JSON_DOC:
        prefix = _key_prefix(conn, col)
        rows = conn.execute(select(prefix, func.count()).where(*_filters(entry, table, conn)).group_by(prefix))
        return {str(k): int(n) for k, n in rows}
    counts: dict[str, int] = {}
    pks = list(table.primary_key.columns)
    last: list[Any] | None = None
    while True:
        q = select(*pks, col).where(*_filters(entry, table, conn)).order_by(*pks).limit(batch)
        if last is not None:
            q = q.where(tuple_(*pks) > tuple_(*last))
        rows = conn.execute(q).all()
        if not rows:
            return counts
        for row in rows:
            for token in _doc_tokens(row[-1]):
                kid = key_id_of(token) or "?"
                counts[kid] = counts.get(kid, 0) + 1
        last = list(rows[-1][:-1])


@dataclass
class KeyStatus:
    """Per registered column, values per key id; keyed hashes follow their source's key."""

    columns: dict[str, dict[str, int]] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)  # hash column -> its source column
    active: str | None = None
    retired: set[str] = field(default_factory=set)
    running: dict[str, Any] | None = None

    def per_key(self) -> dict[str, int]:
        """Values per key id over every column."""
        total: dict[str, int] = {}
        for counts in self.columns.values():
            for kid, n in counts.items():
                total[kid] = total.get(kid, 0) + n
        return total


def key_status(db: Engine) -> KeyStatus:
    """What each key id still protects, the active key, retired keys and a running rotation."""
    status = KeyStatus()
    with db.connect() as conn:
        for entry in encrypted_columns():
            status.columns[entry.name] = count_by_key(conn, entry)
            for h in hashes_of(entry):
                status.hashes[h.name] = entry.name
        status.active = meta(conn, ACTIVE_KEY)
        status.retired = retired_keys(conn)
        run = conn.execute(select(KeyRotation).where(KeyRotation.status == "running")
                           .order_by(KeyRotation.id.desc())).first()
        if run is not None:
            moved = conn.execute(select(func.coalesce(func.sum(KeyRotationProgress.moved), 0)).where(
                KeyRotationProgress.rotation_id == run.id)).scalar()
            status.running = {"id": run.id, "target": run.target, "started_at": run.started_at, "moved": int(moved)}
    return status


# -- rotating ------------------------------------------------------------------------------

@dataclass
class RotationResult:
    rotation_id: int
    target: str
    moved: dict[str, int]
    passes: int
    resumed: bool
    hashes_fixed: int = 0  # rows whose keyed hashes were under another key than their value


def rotate(db: Engine, cipher: Cipher, target: str, *, actor: str = "cli", batch: int = 1000,
           pause: float = 0.0, progress: Progress | None = None, max_passes: int = 10) -> RotationResult:
    """Move every registered value to key ``target`` (resuming a rotation to it that was interrupted)."""
    if target not in cipher.key_ids:
        raise RotationError(f"key {target!r} is not in the key ring ({', '.join(cipher.key_ids)}): add it "
                            "(CAREPATH_KEYS, the key folder or the KMS hook) to every process first")
    rotation_id, resumed = _begin(db, cipher, target, actor)
    passes = 0
    while True:
        passes += 1
        for entry in encrypted_columns():
            _rotate_column(db, cipher, rotation_id, entry, target, batch, pause, progress)
        with db.connect() as conn:
            left = {e.name: sum(n for k, n in count_by_key(conn, e).items() if k != target)
                    for e in encrypted_columns()}
        if not any(left.values()):
            break
        if passes >= max_passes:
            raise RotationError(f"values keep arriving under other keys ({left}): is a process running "
                                f"without key {target!r} in its ring?")
        with db.begin() as conn:  # written meanwhile under the old key: another pass over those columns
            conn.execute(update(KeyRotationProgress).where(
                KeyRotationProgress.rotation_id == rotation_id,
                KeyRotationProgress.item.in_([n for n, c in left.items() if c])).values(
                done=False, last_key=None, updated_at=_now()))
    fixed = sum(_check_hashes(db, cipher, e, target, batch) for e in encrypted_columns() if hashes_of(e))
    with db.begin() as conn:
        conn.execute(update(KeyRotation).where(KeyRotation.id == rotation_id).values(
            status="done", finished_at=_now()))
        set_meta(conn, FINGERPRINT, cipher.fingerprints[target])
        total = conn.execute(select(KeyRotationProgress.item, KeyRotationProgress.moved).where(
            KeyRotationProgress.rotation_id == rotation_id)).all()
        audit(conn, actor=actor, action="keys.rotated", entity="key", entity_id=target, at=_now(),
              detail={"rotation": rotation_id, "moved": {i: int(m) for i, m in total}, "hashes_fixed": fixed,
                      "fingerprint": cipher.fingerprints[target]})
    return RotationResult(rotation_id, target, {i: int(m) for i, m in total}, passes, resumed, fixed)


def _begin(db: Engine, cipher: Cipher, target: str, actor: str) -> tuple[int, bool]:
    """The running rotation to ``target`` (resumed) or a new one; the store's active key becomes ``target``."""
    with db.begin() as conn:
        if conn.dialect.name == "postgresql":  # one rotation at a time
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7022, 1)")
        running = conn.execute(select(KeyRotation).where(KeyRotation.status == "running")).first()
        if running is not None and running.target != target:
            raise RotationError(f"rotation {running.id} to key {running.target!r} is not finished: "
                                f"resume it first (carepath keys rotate --to {running.target})")
        if target in retired_keys(conn):
            raise RotationError(f"key {target!r} was retired from this store")
        set_meta(conn, ACTIVE_KEY, target)
        if running is not None:
            rotation_id, resumed = running.id, True
        else:
            rotation_id = conn.execute(insert(KeyRotation).values(target=target, status="running", actor=actor,
                                                                  started_at=_now())
                                       .returning(KeyRotation.id)).scalar_one()
            resumed = False
            audit(conn, actor=actor, action="keys.rotation_started", entity="key", entity_id=target, at=_now(),
                  detail={"rotation": rotation_id, "from": sorted(k for k in cipher.key_ids if k != target)})
    cipher.current = target
    return rotation_id, resumed


def _rotate_column(db: Engine, cipher: Cipher, rotation_id: int, entry: Encrypted, target: str, batch: int,
                   pause: float, progress: Progress | None) -> int:
    """Walk one column to its end, a committed batch at a time; returns how many values moved."""
    table = table_of(entry.table)
    pks = list(table.primary_key.columns)
    col = table.c[entry.column]
    hashes = hashes_of(entry)
    moved = 0
    while True:
        for attempt in range(5):
            try:
                with db.begin() as conn:
                    step = _batch(conn, cipher, rotation_id, entry, table, pks, col, hashes, target, batch)
                break
            except DBAPIError as exc:  # a deadlock with a writer: that batch is tried again
                if attempt == 4 or "deadlock" not in str(exc.orig).lower():
                    raise
        if step is None:
            return moved
        moved += step
        if progress is not None:
            progress(entry.name, step)
        if pause:
            time.sleep(pause)


def _batch(conn: Connection, cipher: Cipher, rotation_id: int, entry: Encrypted, table: Any, pks: list[Any],
           col: Any, hashes: list[Any], target: str, batch: int) -> int | None:
    """One batch in ``conn``'s transaction: values moved, or ``None`` when the column is done."""
    state = conn.execute(select(KeyRotationProgress).where(
        KeyRotationProgress.rotation_id == rotation_id, KeyRotationProgress.item == entry.name)).first()
    if state is not None and state.done:
        return None
    if state is None:
        conn.execute(insert(KeyRotationProgress).values(rotation_id=rotation_id, item=entry.name, last_key=None,
                                                        done=False, moved=0, updated_at=_now()))
    last = state.last_key if state is not None else None
    q = select(*pks, col).where(*_filters(entry, table, conn))
    if entry.kind != JSON_DOC:
        q = q.where(~col.startswith(f"{target}:", autoescape=True))
    if last is not None:
        q = q.where(tuple_(*pks) > tuple_(*last))
    rows = conn.execute(q.order_by(*pks).limit(batch).with_for_update()).all()
    where = {"rotation_id": rotation_id, "item": entry.name}
    if not rows:
        conn.execute(update(KeyRotationProgress).filter_by(**where).values(done=True, updated_at=_now()))
        return None
    changes = []
    values = 0
    for row in rows:
        value = row[-1]
        if entry.kind == JSON_DOC:
            stale = sum(1 for t in _doc_tokens(value) if key_id_of(t) != target)
            if not stale:
                continue
            values += stale
            change = {entry.column: _rekeyed_doc(value, cipher, target)}
        else:
            values += 1
            plain = cipher.decrypt(value)
            change = {entry.column: cipher.encrypt(plain, key_id=target)}
            change.update({h.column: cipher.lookup_hash(plain, key_id=target) for h in hashes})
        if entry.key_id_column:
            change[entry.key_id_column] = target
        changes.append({**{f"_pk{i}": v for i, v in enumerate(row[:-1])}, **change})
    if changes:
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for c in changes:
            groups.setdefault(tuple(k for k in c if not k.startswith("_pk")), []).append(c)
        for cols, params in groups.items():
            stmt = update(table).where(*[pk == bindparam(f"_pk{i}") for i, pk in enumerate(pks)]).values(
                {n: bindparam(n) for n in cols})
            conn.execute(stmt, params)
    conn.execute(update(KeyRotationProgress).filter_by(**where).values(
        last_key=json.loads(json.dumps(list(rows[-1][:-1]), default=str)),
        moved=KeyRotationProgress.moved + values, updated_at=_now()))
    return values


def _check_hashes(db: Engine, cipher: Cipher, entry: Encrypted, target: str, batch: int) -> int:
    """Recompute, under ``target``, every keyed hash of ``entry`` that differs (a writer that switched keys
    between a value and its hash); returns how many rows were corrected."""
    table = table_of(entry.table)
    pks = list(table.primary_key.columns)
    col = table.c[entry.column]
    hashes = hashes_of(entry)
    fixed, last = 0, None
    while True:
        with db.begin() as conn:
            q = select(*pks, col, *[table.c[h.column] for h in hashes]).where(*_filters(entry, table, conn))
            if last is not None:
                q = q.where(tuple_(*pks) > tuple_(*last))
            rows = conn.execute(q.order_by(*pks).limit(batch).with_for_update()).all()
            if not rows:
                return fixed
            n = len(pks)
            for row in rows:
                plain = cipher.decrypt(row[n])
                want = {h.column: cipher.lookup_hash(plain, key_id=target) for h in hashes}
                if [want[h.column] for h in hashes] != list(row[n + 1:]):
                    conn.execute(update(table).where(*[pk == v for pk, v in zip(pks, row[:n])]).values(want))
                    fixed += 1
            last = list(rows[-1][:n])


# -- retiring ------------------------------------------------------------------------------

def retire(db: Engine, cipher: Cipher, kid: str, *, actor: str = "cli") -> None:
    """Mark ``kid`` retired (dropped from every ring that opens this store); refused while it protects anything."""
    status = key_status(db)
    if kid == (status.active or cipher.current):
        raise RotationError(f"key {kid!r} is the active key: rotate to another key first")
    left = {name: counts[kid] for name, counts in status.columns.items() if counts.get(kid)}
    if left:
        shown = ", ".join(f"{name} {n}" for name, n in left.items())
        raise RotationError(f"key {kid!r} still protects {sum(left.values())} value(s) ({shown}): "
                            f"rotate first (carepath keys rotate --to {status.active or cipher.current})")
    if status.running is not None:
        raise RotationError(f"rotation {status.running['id']} to {status.running['target']!r} is not finished")
    with db.begin() as conn:
        set_meta(conn, RETIRED + kid, _now().isoformat())
        audit(conn, actor=actor, action="keys.retired", entity="key", entity_id=kid, at=_now(),
              detail={"fingerprint": cipher.fingerprints.get(kid)})
