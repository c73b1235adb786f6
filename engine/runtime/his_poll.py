"""Polling an HIS source with a durable cursor: events are stored before the cursor moves."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from carepath.plugins.contracts import HisSource, SourceUnavailable
from carepath.store.schema import HisCursor

if TYPE_CHECKING:
    from carepath.engine import Engine

log = logging.getLogger(__name__)


@dataclass
class PollReport:
    """What one poll of one source did."""

    source: str
    stored: int = 0
    duplicates: int = 0
    refused: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unavailable: str | None = None

    def summary(self) -> str:
        if self.unavailable:
            return f"{self.source}: not polled ({self.unavailable}); cursor kept"
        parts = [f"{self.stored} stored", f"{self.duplicates} already known"]
        if self.refused:
            parts.append(f"{len(self.refused)} refused")
        if self.skipped:
            parts.append(f"{len(self.skipped)} resources skipped")
        return f"{self.source}: " + ", ".join(parts)


def load_cursor(engine: "Engine", source: str) -> str | None:
    with engine.db.connect() as conn:
        return conn.execute(select(HisCursor.cursor).where(HisCursor.source == source)).scalar()


def save_cursor(engine: "Engine", source: str, cursor: str | None) -> None:
    now = engine.clock.now()
    with engine.db.begin() as conn:
        dialect = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[conn.dialect.name]
        stmt = dialect(HisCursor).values(source=source, cursor=cursor, updated_at=now)
        conn.execute(stmt.on_conflict_do_update(index_elements=["source"],
                                                set_={"cursor": cursor, "updated_at": now}))


def poll_source(engine: "Engine", source: HisSource) -> PollReport:
    """Poll once: store every event, then move the cursor. A source that is down keeps its cursor."""
    report = PollReport(source.name)
    try:
        events, cursor = source.poll(load_cursor(engine, source.name))
        events = list(events)
    except SourceUnavailable as exc:
        report.unavailable = str(exc)
        log.warning("HIS %s unavailable: %s", source.name, exc)
        return report
    for event in events:
        try:
            result = engine.ingest(event)
        except ValueError as exc:  # the engine refused the event itself (hostile or malformed values)
            report.refused.append(f"{event.type} {event.source_id}: {exc}")
            continue
        if getattr(result, "duplicate", False):
            report.duplicates += 1
        else:
            report.stored += 1
    report.skipped = list(getattr(source, "problems", []))
    save_cursor(engine, source.name, cursor)
    return report
