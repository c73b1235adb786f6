"""Business identities of HIS facts, shared by every HIS connector."""

from __future__ import annotations

from datetime import datetime, timezone

from carepath.definition.events import EventIn


def _part(value: object) -> str:
    """Times in one spelling (UTC), so HL7 ``20260505143000`` and FHIR ``2026-05-05T14:30:00+08:00`` agree."""
    if isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return str(value)


def fact_id(event_type: str, *parts: object) -> str:
    """``type:part:part``: the dedup key of one clinical fact, whatever route it came by."""
    return ":".join([event_type, *(_part(p) for p in parts if p not in (None, ""))])


def his_event(system: str, event_type: str, mrn: str, occurred_at: datetime, identity: tuple[object, ...],
              payload: dict) -> EventIn:
    """An event from hospital ``system`` whose dedup key is its business identity."""
    return EventIn(type=event_type, source=system, source_id=fact_id(event_type, *identity), patient_mrn=mrn,
                   occurred_at=occurred_at, payload=payload)
