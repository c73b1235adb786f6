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

``carepath events list --status refused`` lists what is left to fix, and
also the authentic callback bodies a connector could not use
(:func:`record_rejected`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

from sqlalchemy import Connection, func, update
from sqlalchemy.dialects import postgresql, sqlite

from carepath.runtime.alerts import record_alert
from carepath.store.statements import fetch, id_in
from carepath.store.personal_data import mask_identifiers, protect_payload
from carepath.store.schema import Event

if TYPE_CHECKING:
    from carepath.definition.events import EventIn
    from carepath.engine import Engine

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


#: run on the driver's cursor (carepath.store.driver): patient id twice, the status, the episode key, then the types
_REFUSED_EPISODES = ("SELECT id FROM events WHERE (patient_id = ? OR mrn_hash = (SELECT mrn_hash FROM patients "
                     "WHERE id = ?)) AND status = ? AND hold_key = ? AND ")


def refused_episodes(conn: Connection, patient_id: int, enroll_types: Iterable[str], key: str) -> list[int]:
    """Ids of this patient's refused enrolling events (of ``enroll_types``) for episode ``key``
    (refused before the patient was registered too: they are found by the MRN's hash)."""
    among, types = id_in(conn, "type", list(enroll_types))
    return [row[0] for row in fetch(conn, _REFUSED_EPISODES + among, [patient_id, patient_id, REFUSED, key, *types])]


def supersede_refused(conn: Connection, ids: Iterable[int], *, by_event: int, by_type: str, now: datetime) -> int:
    """Mark refused events as repaired by a later event; returns how many."""
    ids = list(ids)
    if not ids:
        return 0
    when = now.strftime("%Y-%m-%d %H:%M UTC")
    return conn.execute(update(Event).where(Event.id.in_(ids), Event.status == REFUSED).values(
        status=SUPERSEDED, mrn_hash=None,
        outcome=func.coalesce(Event.outcome, "") + f"; superseded {when}: event {by_event} ({by_type}) started "
                                                   "the episode")).rowcount or 0


def alert_refused(conn: Connection, ev: "EventIn", event_id: int, reasons: list[str], now: datetime) -> None:
    """One ``carepath.event.refused`` operator alert per source and event type at a time (the first names it)."""
    detail = (f"event {event_id} ({ev.type} from {ev.source}, source id {ev.source_id}) was refused: "
              f"{'; '.join(reasons)}. Fix it at the source and send it again; "
              "`carepath events list --status refused` lists every refused event")
    record_alert(conn, now=now, kind=EVENT_REFUSED, source=ev.source, code=ev.type, detail=detail[:2000])


# -- authentic inbound bodies that could not be used -------------------------------------------------------

CALLBACK_REJECTED = "carepath.callback.rejected"
REJECTED_TYPE = "inbound.rejected"
_EXCERPT = 16 * 1024


def record_rejected(engine: "Engine", *, source: str, route: str, reason: str, body: bytes,
                    received_via: str | None = None) -> None:
    """Keep an authentic callback body that could not be used, for operators, and raise an alert.

    Stored as an event of type ``inbound.rejected`` with status ``refused`` (so
    ``carepath events list --status refused`` shows it, never applied): the
    reason, a masked preview (mobile and ID-card numbers hidden), and the
    first 16 KiB encrypted like any personal data. The same body twice is kept
    once. ``route`` must not hold a secret (no path token).
    """
    digest = hashlib.sha256(body).hexdigest()
    text = body[:_EXCERPT].decode("utf-8", "replace")
    preview = mask_identifiers(text[:300]).replace("\n", " ")
    now = engine.clock.now()
    payload = protect_payload({"route": route, "reason": reason[:500], "bytes": len(body), "sha256": digest,
                               "preview": preview, "body": text}, engine.cipher, ("body",), scan_text=False)
    values = dict(source=source[:64], source_id=f"rejected:{digest[:40]}", type=REJECTED_TYPE, patient_id=None,
                  occurred_at=now, received_at=now, payload=payload, status=REFUSED, received_via=received_via,
                  outcome=f"{route}: refused, {reason[:300]}; body ({len(body):,} bytes, masked): {preview[:160]}")
    with engine.db.begin() as conn:
        insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[conn.dialect.name]
        stored = conn.execute(insert(Event).values(**values).on_conflict_do_nothing(
            index_elements=["source", "source_id"]).returning(Event.id)).scalar()
        if stored is not None:
            record_alert(conn, now=now, kind=CALLBACK_REJECTED, source=source, code=route[:128],
                         detail=f"event {stored}: {route} refused an authentic body: {reason[:500]} "
                                "(`carepath events list --status refused --type inbound.rejected`)")
