"""Refused events: stored for operators, never counted as applied, and repairable by the next good event.

An event whose payload does not fit its type (a booking whose ``start`` is
missing, words, a time without offset, a mapping) is stored with status
``refused`` and its reason, and raises a ``carepath.event.refused`` operator
alert (a Prefect event once the maintenance flow publishes it). Nothing of it
is applied. It must not stop the patient's care once the hospital corrects
it, so:

- the same event sent again (same ``source`` and ``source_id``, the HIS
  re-sending the corrected booking) replaces the refused row and is applied
  (:func:`reopen_refused`); a plain duplicate of an applied event still
  changes nothing;
- a later valid event about the same episode that carries the anchor's time
  (a reschedule with a valid ``start``) starts the episode the refused
  booking should have started (:func:`refused_episodes`); the refused row
  is then ``superseded`` (:func:`supersede_refused`), as it is when a new
  booking for that episode enrolls.

``carepath events list --status refused`` lists what is left to fix.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

from sqlalchemy import Connection, func, select, update

from carepath.runtime.alerts import record_alert
from carepath.store.schema import Event

if TYPE_CHECKING:
    from carepath.definition.events import EventIn

REFUSED, SUPERSEDED = "refused", "superseded"
EVENT_REFUSED = "carepath.event.refused"


def reopen_refused(conn: Connection, ev: "EventIn", values: dict[str, Any]) -> int | None:
    """Take over the refused row with ``ev``'s source and source id, if there is one: its id, else None.

    One statement, so two workers re-sending the same event cannot both reopen it.
    """
    return conn.execute(update(Event).where(Event.source == ev.source, Event.source_id == ev.source_id,
                                            Event.status == REFUSED)
                        .values(**values, status="applied", outcome=None, hold_key=None, mrn_hash=None)
                        .returning(Event.id)).scalar()


def refused_episodes(conn: Connection, patient_id: int, enroll_types: Iterable[str], key: str) -> list[int]:
    """Ids of this patient's refused enrolling events (of ``enroll_types``) for episode ``key``."""
    return list(conn.execute(select(Event.id).where(
        Event.patient_id == patient_id, Event.status == REFUSED, Event.hold_key == key,
        Event.type.in_(list(enroll_types)))).scalars())


def supersede_refused(conn: Connection, ids: Iterable[int], *, by_event: int, by_type: str, now: datetime) -> int:
    """Mark refused events as repaired by a later event; returns how many."""
    ids = list(ids)
    if not ids:
        return 0
    when = now.strftime("%Y-%m-%d %H:%M UTC")
    return conn.execute(update(Event).where(Event.id.in_(ids), Event.status == REFUSED).values(
        status=SUPERSEDED,
        outcome=func.coalesce(Event.outcome, "") + f"; superseded {when}: event {by_event} ({by_type}) started "
                                                   "the episode")).rowcount or 0


def alert_refused(conn: Connection, ev: "EventIn", event_id: int, reasons: list[str], now: datetime) -> None:
    """One ``carepath.event.refused`` operator alert per source and event type at a time (the first names it)."""
    detail = (f"event {event_id} ({ev.type} from {ev.source}, source id {ev.source_id}) was refused: "
              f"{'; '.join(reasons)}. Fix it at the source and send it again; "
              "`carepath events list --status refused` lists every refused event")
    record_alert(conn, now=now, kind=EVENT_REFUSED, source=ev.source, code=ev.type, detail=detail[:2000])
