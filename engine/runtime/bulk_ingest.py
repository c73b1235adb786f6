"""Ingest JSON lines: each line one event, applied on its own, bad lines reported with their number.

A line is parsed and validated before it reaches the engine; events are
applied in order, ``BATCH`` lines a transaction with a savepoint per line
(:mod:`carepath.runtime.batch_ingest`): a bad line changes nothing and the
good lines around it are applied. Events are deduplicated by ``source`` +
``source_id``, so running the same file again stores nothing new.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

from pydantic import ValidationError

from carepath.definition.events import EventIn
from carepath.runtime.refused import REFUSED

if TYPE_CHECKING:
    from carepath.engine import Engine

BATCH = 200  # lines a transaction
EVENT_FIELDS = ", ".join(EventIn.model_fields)


@dataclass(frozen=True)
class LineError:
    """A line that was not applied, and why."""

    line: int
    message: str


@dataclass
class BulkReport:
    """What one file did: per event type, stored and duplicate counts, and every bad line."""

    lines: int = 0
    stored: Counter = field(default_factory=Counter)  # event type -> events stored and applied
    duplicates: Counter = field(default_factory=Counter)  # event type -> events already stored
    planned: Counter = field(default_factory=Counter)  # event type -> touchpoints planned
    enrolled: Counter = field(default_factory=Counter)  # journey -> new enrollments
    urgent: int = 0  # urgent touchpoints dispatched as their event arrived
    notes: list[LineError] = field(default_factory=list)  # applied, with something to say (unknown patient ...)
    errors: list[LineError] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"lines": self.lines, "stored": dict(self.stored), "duplicates": dict(self.duplicates),
                "planned": dict(self.planned), "enrolled": dict(self.enrolled), "urgent_dispatched": self.urgent,
                "notes": [{"line": n.line, "message": n.message} for n in self.notes],
                "errors": [{"line": e.line, "message": e.message} for e in self.errors]}


def parse_event_line(text: str) -> EventIn | str:
    """The event on one line, or a message saying what is wrong with it (field by field)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} (column {exc.colno})"
    if not isinstance(data, dict):
        return f"must be a JSON object with {EVENT_FIELDS}"
    try:
        return EventIn.model_validate(data)
    except ValidationError as exc:
        return "; ".join(_field_problem(e) for e in exc.errors())


def _field_problem(error: dict) -> str:
    from carepath.config import plain_message

    where = ".".join(map(str, error["loc"])) or "event"
    if error["type"] == "missing":
        return f"{where}: required field missing"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown field (an event has {EVENT_FIELDS})"
    return f"{where}: {plain_message(error)}"


def ingest_lines(engine: "Engine", lines: Iterable[str], *, progress: Callable[[int], None] | None = None,
                 received_via: str | None = "cli", batch: int = BATCH) -> BulkReport:
    """Ingest every non-blank line, ``batch`` events a transaction; ``progress`` is called with each line number."""
    report = BulkReport()
    chunk: list[tuple[int, EventIn]] = []
    for number, text in enumerate(lines, start=1):
        if progress:
            progress(number)
        if not text.strip():
            continue
        report.lines += 1
        event = parse_event_line(text)
        if isinstance(event, str):
            report.errors.append(LineError(number, event))
            continue
        chunk.append((number, event))
        if len(chunk) >= batch:
            _apply_chunk(engine, chunk, received_via, report)
            chunk = []
    _apply_chunk(engine, chunk, received_via, report)
    report.errors.sort(key=lambda e: e.line)
    return report


def _apply_chunk(engine: "Engine", chunk: list[tuple[int, EventIn]], received_via: str | None,
                 report: BulkReport) -> None:
    """One transaction for the chunk, a savepoint per line (:mod:`carepath.runtime.batch_ingest`)."""
    outcomes = engine.ingest_many([event for _, event in chunk], received_via=received_via)
    for (number, event), result in zip(chunk, outcomes):
        if isinstance(result, Exception):  # rolled back to its savepoint: nothing of this line applied
            report.errors.append(LineError(number, f"not applied: {str(result).splitlines()[0]}"))
            continue
        if result.duplicate:
            report.duplicates[event.type] += 1
            continue
        if result.state == REFUSED:  # kept for operators; the same line sent again is applied once it is fixed
            report.errors.append(LineError(number, f"refused: {'; '.join(result.refused)}"))
            continue
        report.stored[event.type] += 1
        report.planned[event.type] += result.planned
        report.enrolled.update(result.enrolled)
        report.urgent += len(result.urgent_touchpoints)
        if result.notes:
            report.notes.append(LineError(number, "; ".join(result.notes)))
