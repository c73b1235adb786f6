"""Issue 19: readings. Each ``vitals.reading`` event is stored once as a reading of the patient: ``accepted``
(its value in the measure's own unit, encrypted), or ``rejected`` with the reason when its measure, unit or value
is impossible (a rejected reading never counts toward an alert). ``reading`` triggers are then evaluated
(:mod:`carepath.runtime.reading_alerts`), and a reading of a check-in's measure counts as that check-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select

from carepath.definition.events import EventIn
from carepath.definition.measures import LOINC, MEASURES, canonical
from carepath.store.schema import ReadingRow

if TYPE_CHECKING:
    from carepath.engine import Engine

ACCEPTED, REJECTED = "accepted", "rejected"


@dataclass(frozen=True)
class StoredReading:
    """A reading as stored: ``value`` in the measure's own unit when accepted, else ``reason``."""

    id: int
    measure: str
    value: float | None
    status: str
    reason: str | None
    measured_at: datetime


def measure_of(payload: dict[str, Any]) -> str:
    """The measure a ``vitals.reading`` payload names: its ``kind``, else its LOINC ``code``."""
    kind = str(payload.get("kind") or "").strip().lower()
    if kind in MEASURES:
        return kind
    return LOINC.get(str(payload.get("code") or "").strip(), kind)


def record_reading(conn: Connection, engine: "Engine", ev: EventIn, event_id: int, patient_id: int,
                   now: datetime) -> StoredReading:
    """Store the reading ``ev`` carries (accepted, or rejected with the reason) in the ingest transaction."""
    measure = measure_of(ev.payload)
    raw, unit = ev.payload.get("value"), ev.payload.get("unit")
    try:
        number = float(raw)
    except (TypeError, ValueError):
        value, reason = None, f"value {raw!r} is not a number"
    else:
        value, reason = canonical(measure, number, str(unit) if unit not in (None, "") else None)
    accepted = reason is None
    row_id = conn.execute(insert(ReadingRow).values(
        patient_id=patient_id, event_id=event_id, measure=(measure or "?")[:32],
        value_enc=engine.cipher.encrypt(f"{value if accepted else raw}"),
        unit=MEASURES[measure].unit if accepted else (str(unit)[:16] if unit else None),
        status=ACCEPTED if accepted else REJECTED, reason=reason, source=ev.source[:128],
        device_id=str(ev.payload.get("device_id"))[:128] if ev.payload.get("device_id") else None,
        measured_at=ev.occurred_at, received_at=now).returning(ReadingRow.id)).scalar_one()
    return StoredReading(row_id, measure, value, ACCEPTED if accepted else REJECTED, reason, ev.occurred_at)


def accepted_since(conn: Connection, engine: "Engine", patient_id: int, measures: set[str],
                   since: datetime) -> list[tuple[datetime, str, float]]:
    """The patient's accepted readings of ``measures`` measured at or after ``since``: (time, measure, value)."""
    rows = conn.execute(select(ReadingRow.measured_at, ReadingRow.measure, ReadingRow.value_enc).where(
        ReadingRow.patient_id == patient_id, ReadingRow.status == ACCEPTED, ReadingRow.measure.in_(measures),
        ReadingRow.measured_at >= since).order_by(ReadingRow.measured_at))
    return [(at, measure, float(engine.cipher.decrypt(enc))) for at, measure, enc in rows]
