"""The FHIR poll cursor: per resource type, the last ``_lastUpdated`` seen and the versions seen at it.

Several resources can share one timestamp, so a poll asks ``ge`` the last
instant and skips the ``id/versionId`` pairs it already read at that instant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class TypeCursor:
    since: datetime | None = None
    seen: set[str] = field(default_factory=set)

    def advance(self, updated: datetime, key: str) -> None:
        """Record that resource version ``key`` last updated at ``updated`` was read."""
        if self.since is None or updated > self.since:
            self.since, self.seen = updated, {key}
        elif updated == self.since:
            self.seen.add(key)


def load(text: str | None) -> dict[str, TypeCursor]:
    data = json.loads(text) if text else {}
    return {kind: TypeCursor(datetime.fromisoformat(c["since"]) if c.get("since") else None, set(c.get("seen", [])))
            for kind, c in data.items()}


def dump(cursors: dict[str, TypeCursor]) -> str:
    return json.dumps({kind: {"since": c.since.isoformat() if c.since else None, "seen": sorted(c.seen)}
                       for kind, c in sorted(cursors.items())}, sort_keys=True)
