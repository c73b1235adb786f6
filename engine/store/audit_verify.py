"""Checking the audit chain (``carepath audit verify``), anchoring it, and reading it per patient.

Verification walks the log in chain order and names the first thing wrong at each place:

- an entry whose content no longer gives its hash: **edited** (or moved from its place: ``seq`` is hashed too);
- an entry whose ``prev_hash`` is not its predecessor's hash: the predecessor was **replaced** or an entry
  between them **removed** (renumbered);
- a gap in ``seq``: entries **removed**;
- ids out of chain order: entries **reordered**;
- an entry outside the chain (no ``seq``): **inserted** around :func:`carepath.store.audit.audit`;
- an anchor (table or file) naming a hash the chain no longer has at its ``seq``, or a ``seq`` past the
  end: the chain was **rewritten** or **cut** after it was anchored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Connection, Engine, delete, func, insert, or_, select

from carepath.store.audit import GENESIS, chain_head, row_hash
from carepath.store.schema import AuditEntry
from carepath.store.schema_trust import AuditAnchor


@dataclass(frozen=True)
class Finding:
    """One thing wrong with the chain: which entry (``seq`` and row ``id``) and what."""

    seq: int | None
    entry_id: int | None
    kind: str  # edited | replaced | removed | reordered | unchained | anchor
    message: str


@dataclass
class Verification:
    entries: int = 0
    anchors: int = 0
    head: tuple[int, str] = (0, GENESIS)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _chain(conn: Connection, batch: int = 5000) -> Iterator[Any]:
    last = 0
    while True:
        rows = conn.execute(select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq)
                            .limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify_chain(db: Engine, anchor_file: Path | None = None) -> Verification:
    """Check every entry and anchor (see the module docstring)."""
    result = Verification()
    hashes: dict[int, str] = {}
    with db.connect() as conn:
        purged = conn.execute(select(AuditAnchor.seq, AuditAnchor.hash).where(AuditAnchor.note == PURGED)
                              .order_by(AuditAnchor.seq.desc()).limit(1)).first()
        prev_seq, prev_hash, prev_id = (purged.seq, purged.hash, 0) if purged is not None else (0, GENESIS, 0)
        for row in _chain(conn):
            result.entries += 1
            name = f"audit entry {row.seq} (id {row.id}, {row.action} by {row.actor} at {row.at:%Y-%m-%d %H:%M:%S})"
            if row.seq != prev_seq + 1:
                result.findings.append(Finding(row.seq, row.id, "removed",
                                               f"entries {prev_seq + 1}..{row.seq - 1} are missing before {name}: "
                                               "removed"))
            elif row.prev_hash != prev_hash:
                result.findings.append(Finding(prev_seq, prev_id, "replaced",
                                               f"{name} does not follow audit entry {prev_seq} (id {prev_id}): that "
                                               "entry was edited and re-hashed, replaced, or one between them "
                                               "removed"))
            if row_hash(row) != row.hash:
                result.findings.append(Finding(row.seq, row.id, "edited",
                                               f"{name} was edited: its content does not give its hash"))
            if row.id < prev_id:
                result.findings.append(Finding(row.seq, row.id, "reordered",
                                               f"{name} is out of order: written after entry id {prev_id} "
                                               "but placed before it"))
            hashes[row.seq] = row.hash
            prev_seq, prev_hash, prev_id = row.seq, row.hash, row.id
        result.head = (prev_seq, prev_hash)
        for row in conn.execute(select(AuditEntry.id, AuditEntry.action, AuditEntry.at)
                                .where(AuditEntry.seq.is_(None)).order_by(AuditEntry.id)):
            result.findings.append(Finding(None, row.id, "unchained",
                                           f"audit entry id {row.id} ({row.action} at {row.at:%Y-%m-%d %H:%M:%S}) "
                                           "is not on the chain: inserted around carepath's audit writer"))
        anchors = [(a.seq, a.hash, f"anchor {a.id} in the database") for a in
                   conn.execute(select(AuditAnchor).order_by(AuditAnchor.id))]
    anchors += list(_file_anchors(anchor_file))
    for seq, digest, where in anchors:
        result.anchors += 1
        if seq == 0 or (purged is not None and seq <= purged.seq):
            continue  # purged by retention (recorded when it was done)
        if seq not in hashes:
            result.findings.append(Finding(seq, None, "removed", f"audit entry {seq}, named by {where}, is missing: "
                                                            "removed (the chain was cut)"))
        elif hashes[seq] != digest:
            result.findings.append(Finding(seq, None, "anchor", f"audit entry {seq} differs from {where}: the chain "
                                                                "was rewritten up to there"))
    return result


def _file_anchors(path: Path | None) -> Iterator[tuple[int, str, str]]:
    if path is None or not path.exists():
        return
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            doc = json.loads(line)
            yield int(doc["seq"]), str(doc["hash"]), f"line {number} of {path}"


def write_anchor(db: Engine, anchor_file: Path | None = None, note: str = "anchor") -> tuple[int, str]:
    """Record the chain's head now, in ``audit_anchors`` and appended to ``anchor_file`` (when given)."""
    now = datetime.now(timezone.utc)
    with db.begin() as conn:
        seq, digest = chain_head(conn)
        if seq:
            conn.execute(insert(AuditAnchor).values(seq=seq, hash=digest, at=now, entries=seq, note=note))
    if anchor_file is not None and seq:
        anchor_file.parent.mkdir(parents=True, exist_ok=True)
        with anchor_file.open("a") as fh:
            fh.write(json.dumps({"seq": seq, "hash": digest, "at": now.isoformat()}) + "\n")
    return seq, digest


PURGED = "purged"


def purge_before(conn: Connection, seq: int, at: datetime) -> int:
    """Retention: delete the entries before ``seq`` (in ``conn``'s transaction), recording where the chain now
    starts so that ``verify`` knows the cut was made on purpose; returns how many went. The only way past the
    append-only triggers that verify accepts."""
    last = conn.execute(select(AuditEntry.seq, AuditEntry.hash).where(AuditEntry.seq < seq)
                        .order_by(AuditEntry.seq.desc()).limit(1)).first()
    if last is None:
        return 0
    conn.execute(insert(AuditAnchor).values(seq=last.seq, hash=last.hash, at=at, entries=0, note=PURGED))
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL carepath.audit_purge = 'on'")
        gone = conn.execute(delete(AuditEntry).where(AuditEntry.seq <= last.seq)).rowcount
        conn.exec_driver_sql("SET LOCAL carepath.audit_purge = 'off'")
        return gone
    conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
    gone = conn.execute(delete(AuditEntry).where(AuditEntry.seq <= last.seq)).rowcount
    conn.exec_driver_sql("CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
                         "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END")
    return gone


def anchor_if_due(db: Engine, anchor_file: Path | None, every: timedelta = timedelta(hours=1)) -> int:
    """Anchor the chain's head when it moved since the last anchor made here and ``every`` has passed; 1 if done."""
    with db.connect() as conn:
        head, _ = chain_head(conn)
        last = conn.execute(select(AuditAnchor.seq, AuditAnchor.at).where(AuditAnchor.note == "maintenance")
                            .order_by(AuditAnchor.id.desc()).limit(1)).first()
    if not head or (last is not None and (last.seq >= head or datetime.now(timezone.utc) - last.at < every)):
        return 0
    write_anchor(db, anchor_file, note="maintenance")
    return 1


def patient_entries(conn: Connection, patient_id: int, *, limit: int = 200) -> list[Any]:
    """The entries about one patient (who looked at or changed what), newest first."""
    return list(conn.execute(select(AuditEntry).where(or_(
        AuditEntry.patient_id == patient_id,
        (AuditEntry.entity == "patient") & (AuditEntry.entity_id == str(patient_id))))
        .order_by(AuditEntry.seq.desc()).limit(limit)))


def entry_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(AuditEntry)).scalar() or 0)
