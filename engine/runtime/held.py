"""Held events: stored facts that cannot be applied yet, waiting for what they depend on.

An event is held when its patient is not registered yet (released when the
patient record arrives), or when it is about an episode of a keyed journey
that has no enrollment yet, e.g. a reschedule that overtook its booking
(released when the enrolling event arrives). Released events are applied in
``occurred_at`` order. What waits longer than ``Settings.held_event_max_age``
expires with its reason (:func:`expire_held`, run by the maintenance flow).
"""

from __future__ import annotations

from collections import namedtuple
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Sequence

from sqlalchemy import Connection, bindparam, select, text, update

from carepath.definition.durations import format_duration
from carepath.store.driver import DriverQuery
from carepath.store.schema import Event

if TYPE_CHECKING:
    from carepath.engine import Engine

# events.status values
APPLIED, RESEND, STALE, HELD, EXPIRED = "applied", "resend", "stale", "held", "expired"
PATIENT_MISSING = "patient not registered yet"

_HELD_COLUMNS = (Event.id, Event.type, Event.source, Event.source_id, Event.occurred_at, Event.received_at,
                 Event.payload, Event.outcome, Event.hold_key)


_HELD_FOR_EPISODE = select(*_HELD_COLUMNS).where(
    Event.patient_id == bindparam("p"), Event.status == HELD, Event.hold_key == bindparam("k")).order_by(
    Event.occurred_at, Event.id)
_HELD_FOR_EPISODE_Q = DriverQuery(_HELD_FOR_EPISODE)  # every new enrollment with a key runs it: the driver's cursor
#: a held event's row as :func:`held_for_episode` returns it
HeldRow = namedtuple("HeldRow", [column.key for column in _HELD_COLUMNS])


def episode_missing(journey: str, field: str, value: Any) -> str:
    return f"no {journey} enrollment for {field} {value} yet"


def lock_patients(conn: Connection, mrn_hashes: Sequence[str]) -> None:
    """Serialize, per patient, the transactions that apply or hold events (PostgreSQL; SQLite has one writer).

    Without it an event held for a missing enrollment or patient could commit
    while the enrolling event or the record is being applied next to it, and
    neither would see the other. Keyed by MRN hash, so it works before the
    patient exists; taken in sorted order, so bulk imports cannot deadlock.
    """
    if conn.dialect.name != "postgresql" or not mrn_hashes:
        return
    conn.execute(text("SELECT pg_advisory_xact_lock(7001, hashtext(h)) FROM unnest(CAST(:hashes AS text[])) AS h"),
                 {"hashes": sorted(set(mrn_hashes))})


def held_for_patient(conn: Connection, mrn_hashes: Sequence[str]) -> list[Any]:
    """Events held until a patient with one of these MRN hashes is registered, oldest first."""
    rows: list[Any] = []
    hashes = list(mrn_hashes)
    for start in range(0, len(hashes), 5000):
        rows += conn.execute(select(*_HELD_COLUMNS, Event.mrn_hash).where(
            Event.status == HELD, Event.mrn_hash.in_(hashes[start:start + 5000]))).all()
    return sorted(rows, key=lambda r: (r.occurred_at, r.id))


def held_for_episode(conn: Connection, patient_id: int, key: str) -> list[Any]:
    """Events of a registered patient held until an enrollment for episode ``key`` exists, oldest first."""
    return list(map(HeldRow._make, _HELD_FOR_EPISODE_Q.rows(conn, {"p": patient_id, "k": key})))


def released(conn: Connection, row: Any, *, status: str, summary: str, now: datetime) -> None:
    """Record that a held event was finally applied (its outcome keeps the held part first)."""
    when = now.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    conn.execute(update(Event).where(Event.id == row.id).values(
        status=status, mrn_hash=None, hold_key=None, outcome=f"{row.outcome}; applied {when}: {summary}"))


def expire_held(engine: "Engine", *, max_age: timedelta | None = None) -> int:
    """Expire events held longer than ``max_age`` (default ``Settings.held_event_max_age``); returns how many.

    An expired event stays stored with its reason and is never applied.
    """
    age = max_age if max_age is not None else engine.settings.held_event_max_age
    now = engine.clock.now()
    with engine.db.begin() as conn:
        rows = conn.execute(select(Event.id, Event.outcome).where(
            Event.status == HELD, Event.received_at < now - age)).all()
        if not rows:
            return 0
        conn.execute(update(Event).where(Event.id == bindparam("b_id")).values(
            status=EXPIRED, mrn_hash=None, outcome=bindparam("b_outcome")),
            [dict(b_id=r.id, b_outcome=f"{r.outcome}; expired: still held after {format_duration(age)}")
             for r in rows])
    return len(rows)
