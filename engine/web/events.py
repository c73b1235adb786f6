"""``POST /events``: a JSON object, a JSON array or JSON lines of events, each applied on its own.

A refused event (bad JSON, a missing field, an error while applying it) is
reported with its position and does not stop the others. Applying is
idempotent through the engine's dedup on ``source`` + ``source_id``: sending
the same batch again answers ``duplicate`` for what was already stored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Callable

from pydantic import ValidationError

from carepath.definition.events import EventIn
from carepath.masking import mask_text


@dataclass
class EventOutcome:
    """What happened to one submitted event; ``at`` is ``line N`` or ``item N`` (1-based)."""

    at: str
    status: str  # stored | duplicate | refused
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
        except ValueError as exc:
            items.append((f"line {n}", EventOutcome(f"line {n}", "refused", detail=f"not JSON: {exc}")))
    return items


def _validation_detail(exc: ValidationError) -> str:
    # field paths and messages only: never the submitted values (they may be contact data)
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors())


def apply_events(body: bytes, ingest: Callable[[EventIn], Any]) -> list[EventOutcome]:
    """Validate and ingest every event in ``body``, one outcome each, in order."""
    outcomes = []
    for at, value in split_body(body):
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
        try:
            result = ingest(event)
        except Exception as exc:  # one event's failure must not stop the others; nothing of it was committed
            outcomes.append(EventOutcome(at, "refused", detail=mask_text(f"not applied: {type(exc).__name__}: {exc}")))
            continue
        outcomes.append(EventOutcome(at, result.status, result.event_id, result.summary()))
    return outcomes


def summary(outcomes: list[EventOutcome]) -> dict[str, Any]:
    """The answer's body: counts by status and the outcome of each event."""
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in ("stored", "duplicate", "refused")}
    return {**counts, "results": [o.as_dict() for o in outcomes]}
