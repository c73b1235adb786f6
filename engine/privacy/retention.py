"""Retention: data older than its configured age is purged or de-identified (issue 22, point 5).

The ages come from ``[retention]`` (:mod:`carepath.privacy.retention_config`); the ``retention`` job of the
maintenance flow runs :func:`apply_retention`. Each kind works in batches of ``retention.batch`` rows, one
transaction per batch, at most ``max_batches`` per run (the next run goes on), and the run reports what it
removed per kind (a ``carepath.retention.applied`` notice and a ``retention.applied`` audit entry, counts
only). What each kind does:

- ``events``: payload de-identified (only ids, scores and click targets reports count are kept), outcome
  replaced; the row, its type, status and times stay (counts, and deduplication of a late re-send);
  events still held for their patient are left alone;
- ``deliveries``: records of finished provider calls deleted (``sending`` / ``unknown`` ones are kept
  until reconciled), and the outbox channel's copies of messages;
- ``survey_answers``: the answers removed, scores (NPS, satisfaction, red flags) kept;
- ``audit``: the oldest entries deleted through the chain's purge (never younger than ``audit_minimum``);
- ``conversations``: the texts of conversation turns removed (the turns stay for counts);
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable

from sqlalchemy import Connection, Text, cast, delete, or_, select, update
from sqlalchemy.engine import Engine as SAEngine

from carepath.privacy.kinds import deidentified_payload
from carepath.privacy.retention_config import RetentionSettings
from carepath.store.audit import audit
from carepath.store.audit_verify import purge_before
from carepath.store.conversation_schema import ConversationTurn
from carepath.store.schema import AuditEntry, Delivery, Event, OutboxMessage, SurveyResponse

if TYPE_CHECKING:
    from carepath.engine import Engine

RETAINED = "de-identified: past its retention age"
#: one batch of one kind: ``(conn, cutoff, batch size) -> rows changed``
Purge = Callable[[Connection, datetime, int], int]


def _events(conn: Connection, cutoff: datetime, batch: int) -> int:
    rows = conn.execute(select(Event.id, Event.payload).where(
        Event.received_at < cutoff, Event.status != "held",
        or_(Event.outcome.is_(None), Event.outcome != RETAINED)).order_by(Event.id).limit(batch)).all()
    for event_id, payload in rows:
        conn.execute(update(Event).where(Event.id == event_id).values(
            payload=deidentified_payload(payload), outcome=RETAINED, mrn_hash=None))
    return len(rows)


def _deliveries(conn: Connection, cutoff: datetime, batch: int) -> int:
    done = select(Delivery.id).where(Delivery.updated_at < cutoff,
                                     Delivery.status.not_in(("sending", "unknown"))).limit(batch)
    n = conn.execute(delete(Delivery).where(Delivery.id.in_(list(conn.execute(done).scalars())))).rowcount or 0
    old = select(OutboxMessage.id).where(OutboxMessage.created_at < cutoff).limit(max(batch - n, 0))
    ids = list(conn.execute(old).scalars()) if n < batch else []
    return n + (conn.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids))).rowcount or 0 if ids else 0)


def _survey_answers(conn: Connection, cutoff: datetime, batch: int) -> int:
    ids = list(conn.execute(select(SurveyResponse.id).where(
        SurveyResponse.received_at < cutoff, cast(SurveyResponse.response, Text) != "{}")
        .order_by(SurveyResponse.id).limit(batch)).scalars())
    if not ids:
        return 0
    return conn.execute(update(SurveyResponse).where(SurveyResponse.id.in_(ids)).values(response={})).rowcount or 0


def _conversations(conn: Connection, cutoff: datetime, batch: int) -> int:
    """Conversation texts past their age are removed; the turns stay (counts, what was routed where)."""
    ids = list(conn.execute(select(ConversationTurn.id).where(
        ConversationTurn.at < cutoff, ConversationTurn.text_enc.is_not(None))
        .order_by(ConversationTurn.id).limit(batch)).scalars())
    if not ids:
        return 0
    return conn.execute(update(ConversationTurn).where(ConversationTurn.id.in_(ids))
                        .values(text_enc=None, error=None)).rowcount or 0


def _audit(conn: Connection, cutoff: datetime, batch: int) -> int:
    """The oldest chained entries, through the audit chain's own purge (it records where the chain now starts,
    so ``carepath audit verify`` knows the cut was made on purpose; the table refuses any other delete)."""
    seqs = list(conn.execute(select(AuditEntry.seq).where(AuditEntry.at < cutoff, AuditEntry.seq.is_not(None))
                             .order_by(AuditEntry.seq).limit(batch)).scalars())
    return purge_before(conn, seqs[-1] + 1, datetime.now(timezone.utc)) if seqs else 0


PURGES: dict[str, Purge] = {"events": _events, "deliveries": _deliveries, "survey_answers": _survey_answers,
                            "conversations": _conversations, "audit": _audit}


def register(name: str, purge: Purge) -> None:
    """Add the retention of a kind of data (``conversations``: its module registers it at import)."""
    PURGES[name] = purge


@dataclass
class RetentionReport:
    """Rows purged or de-identified per kind in one run; ``pending``: kinds with more left for the next run;
    ``unhandled``: kinds configured with an age but with no table on this installation."""

    rows: dict[str, int] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    unhandled: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def summary(self) -> str:
        parts = [f"{k}: {n}" for k, n in self.rows.items()]
        parts += [f"{k}: more next run" for k in self.pending]
        parts += [f"{k}: nothing to do on this installation" for k in self.unhandled]
        return "; ".join(parts) or "retention: nothing configured"


def apply_retention(db: SAEngine, settings: RetentionSettings, now: datetime, *,
                    max_batches: int = 100) -> RetentionReport:
    """Purge or de-identify what is past its age, kind by kind, in batches (see the module docstring)."""
    report = RetentionReport()
    for name, age in settings.ages().items():
        purge = PURGES.get(name)
        if purge is None:
            report.unhandled.append(name)
            continue
        cutoff, total = now - age, 0
        for _ in range(max_batches):
            with db.begin() as conn:
                n = purge(conn, cutoff, settings.batch)
            total += n
            if n < settings.batch:
                break
        else:
            report.pending.append(name)
        report.rows[name] = total
    if report.total:
        with db.begin() as conn:
            audit(conn, actor="maintenance", action="retention.applied", entity="store", at=now,
                  detail={"rows": report.rows, "ages_days": {k: v / timedelta(days=1)
                                                             for k, v in settings.ages().items()}})
    return report


def retention_job(engine: "Engine") -> "JobResult":
    """The maintenance job: apply ``[retention]`` and report what was removed as a notice."""
    from carepath.runtime.maintenance import JobResult, Notice

    report = apply_retention(engine.db, engine.config.retention, engine.clock.now())
    notices = [Notice(event="carepath.retention.applied", resource_id="carepath.retention",
                      payload={"rows": report.rows, "pending": report.pending, "summary": report.summary()})
               ] if report.total else []
    return JobResult(count=report.total, notices=notices)


if TYPE_CHECKING:
    from carepath.runtime.maintenance import JobResult
