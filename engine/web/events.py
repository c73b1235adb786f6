"""``POST /events``: a JSON object, a JSON array or JSON lines of events, each applied on its own.

A refused event (bad JSON, nested too deep, a missing field, a source the
sending system may not use, a payload that does not fit its type, an error
while applying it) is reported with its position and does not stop the
others. Applying is idempotent through the engine's dedup on ``source`` +
``source_id``: sending the same batch again answers ``duplicate`` for what
was already stored. Each stored event records the system that sent it.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable

from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError

from carepath.definition.events import EventIn, printable
from carepath.masking import mask_text
from carepath.runtime.outages import is_transient
from carepath.runtime.refused import REFUSED

log = logging.getLogger("carepath.web")
UNAVAILABLE = "unavailable"


@dataclass
class EventOutcome:
    """What happened to one submitted event; ``at`` is ``line N`` or ``item N`` (1-based)."""

    at: str
    status: str  # stored | duplicate | refused | unavailable (the database could not take it: send it again)
    event_id: int | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def split_body(body: bytes) -> list[tuple[str, Any]]:
    """The submitted items as ``(position, value)``; a value that is not JSON is an :class:`EventOutcome`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [("body", EventOutcome("body", "refused", detail=f"not UTF-8 ({exc.reason} at byte {exc.start})"))]
    try:
        whole = json.loads(text)
    except RecursionError:  # nested thousands deep: as malformed as any other text that is not an event
        return [("body", EventOutcome("body", "refused", detail="not JSON an event can be: nested too deeply"))]
    except ValueError:
        whole = None
    else:
        if isinstance(whole, list):
            return [(f"item {i}", item) for i, item in enumerate(whole, 1)]
        return [("item 1", whole)]
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append((f"line {n}", json.loads(line)))
        except RecursionError:
            items.append((f"line {n}", EventOutcome(f"line {n}", "refused", detail="not JSON: nested too deeply")))
        except ValueError as exc:
            items.append((f"line {n}", EventOutcome(f"line {n}", "refused", detail=f"not JSON: {exc}")))
    return items


def _validation_detail(exc: ValidationError) -> str:
    # field paths and messages only: never the submitted values (they may be contact data)
    return printable("; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors()))


def apply_events(items: list[tuple[str, Any]], ingest: Callable[[EventIn], Any],
                 may_send: Callable[[str], bool] = lambda source: True) -> list[EventOutcome]:
    """Validate and ingest every item of :func:`split_body`, one outcome each, in order.

    ``may_send(source)`` says whether the sending system may send events of that source.
    """
    outcomes = []
    for at, value in items:
        if isinstance(value, EventOutcome):
            outcomes.append(value)
            continue
        if not isinstance(value, dict):
            outcomes.append(EventOutcome(at, "refused", detail="an event is a JSON object"))
            continue
        try:
            event = EventIn.model_validate(value)
        except ValidationError as exc:
            outcomes.append(EventOutcome(at, "refused", detail=_validation_detail(exc)))
            continue
        if not may_send(event.source):
            outcomes.append(EventOutcome(at, "refused", detail=f"source {printable(event.source)!r} is not one this "
                                                               "system may send (events_api.<system>.sources)"))
            continue
        outcomes.append(_ingested(at, event, ingest))
    return outcomes


def _ingested(at: str, event: EventIn, ingest: Callable[[EventIn], Any]) -> EventOutcome:
    """One event applied; its failure stops no other (nothing of it was committed)."""
    try:
        result = ingest(event)
    except (ValueError, TypeError) as exc:  # EventRejected and the like: the event is at fault
        return EventOutcome(at, "refused", detail=mask_text(f"not applied: {printable(str(exc))}"))
    except (OperationalError, InterfaceError) as exc:
        if not is_transient(exc):  # a statement the schema cannot run: waiting cures nothing
            return _incident(at)
        # the store is down or busy: the sender should send it again later
        log.warning("POST /events %s not stored: %s", at, type(exc).__name__)
        return EventOutcome(at, UNAVAILABLE, detail="not stored: the database is unavailable; send it again")
    except Exception:  # a bug of ours: logged, never shown to the sender
        return _incident(at)
    if result.state == REFUSED:  # stored for operators, nothing applied: the sender must fix and resend it
        return EventOutcome(at, "refused", result.event_id, result.summary())
    return EventOutcome(at, result.status, result.event_id, result.summary())


def _incident(at: str) -> EventOutcome:
    """An error of ours (code or schema), logged with an incident id; the sender sees only the id."""
    incident = uuid.uuid4().hex[:12]
    log.exception("incident %s: POST /events %s failed", incident, at)
    return EventOutcome(at, "refused", detail=f"not applied: internal error (incident {incident}, logged)")


def summary(outcomes: list[EventOutcome]) -> dict[str, Any]:
    """The answer's body: counts by status and the outcome of each event."""
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in ("stored", "duplicate", "refused")}
    if any(o.status == UNAVAILABLE for o in outcomes):
        counts[UNAVAILABLE] = sum(1 for o in outcomes if o.status == UNAVAILABLE)
    return {**counts, "results": [o.as_dict() for o in outcomes]}
