"""Stored journey versions: registering one, finding one by (a prefix of) its hash, counting who runs it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, case, func, select
from sqlalchemy.dialects import postgresql, sqlite

from carepath.definition.model import Journey
from carepath.store.audit import audit
from carepath.store.schema import Enrollment, JourneyVersion


class VersionError(ValueError):
    """A version named by an operator does not exist or is ambiguous; the message says which exist."""


class VersionNotFound(VersionError):
    """The journey has no such version (or no versions at all): not found, not ambiguous."""


@dataclass(frozen=True)
class VersionCount:
    """One version of a journey and how many enrollments are pinned to it."""

    version: str
    created_at: datetime | None  # None: installed, nobody enrolled on it yet
    active: int
    exited: int
    current: bool  # the installed definition

    def to_json(self) -> dict:
        return {"version": self.version, "created_at": self.created_at.isoformat() if self.created_at else None,
                "active": self.active, "exited": self.exited, "current": self.current}


def store_version(conn: Connection, journey: Journey, at: datetime, *, actor: str = "engine") -> bool:
    """Store ``journey``'s definition under its version unless it is there; True when stored now (audited).

    Safe when several workers enroll on a new version at once: the insert skips a row another
    transaction stored first (``ON CONFLICT DO NOTHING`` on ``uq_journey_version``, waiting for it to
    commit on PostgreSQL), so only the one that stored it audits it and nobody fails.
    """
    found = conn.execute(select(JourneyVersion.id).where(JourneyVersion.journey == journey.name,
                                                         JourneyVersion.version == journey.version)).first()
    if found is not None:
        return False
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[conn.dialect.name]
    stored = conn.execute(insert(JourneyVersion).values(
        journey=journey.name, version=journey.version, definition=journey.to_json(), created_at=at)
        .on_conflict_do_nothing(index_elements=["journey", "version"]).returning(JourneyVersion.id)).scalar()
    if stored is None:  # another transaction stored it between our read and our insert
        return False
    audit(conn, actor=actor, action="journey.version_registered", entity="journey",
          entity_id=f"{journey.name}@{journey.version}", at=at)
    return True


def version_counts(conn: Connection, name: str, current: Journey | None = None) -> list[VersionCount]:
    """Every stored version of journey ``name`` (oldest first) with active and exited enrollment counts.

    The installed definition (``current``) is listed even before anything enrolled on it.
    """
    counts = {row.version: row for row in conn.execute(
        select(Enrollment.version,
               func.sum(case((Enrollment.status == "active", 1), else_=0)).label("active"),
               func.sum(case((Enrollment.status != "active", 1), else_=0)).label("exited"))
        .where(Enrollment.journey == name).group_by(Enrollment.version))}
    stored = conn.execute(select(JourneyVersion.version, JourneyVersion.created_at).where(
        JourneyVersion.journey == name).order_by(JourneyVersion.created_at, JourneyVersion.id)).all()
    current_version = current.version if current is not None else None
    out = [VersionCount(v, at, int(counts[v].active) if v in counts else 0,
                        int(counts[v].exited) if v in counts else 0, v == current_version) for v, at in stored]
    if current_version is not None and current_version not in {v.version for v in out}:
        out.append(VersionCount(current_version, None, 0, 0, True))
    return out


def resolve_version(conn: Connection, name: str, wanted: str, current: Journey | None = None) -> Journey:
    """The definition of ``name`` at version ``wanted`` (a full hash or a unique prefix of one).

    Looks at the stored versions and the installed definition; raises :class:`VersionError`
    naming the known versions when none or several match.
    """
    stored = dict(conn.execute(select(JourneyVersion.version, JourneyVersion.definition).where(
        JourneyVersion.journey == name)).all())
    known = set(stored) | ({current.version} if current is not None else set())
    if not known:
        raise VersionNotFound(f"journey {name!r} has no stored versions and is neither enabled nor installed")
    matches = sorted(v for v in known if v.startswith(wanted.strip())) if wanted.strip() else []
    if len(matches) != 1:
        problem = "matches several versions" if matches else "is not a version of this journey"
        raise (VersionError if matches else VersionNotFound)(
            f"{wanted!r} {problem}; versions of {name}: {', '.join(sorted(known))}")
    version = matches[0]
    if current is not None and version == current.version:
        return current
    return Journey.model_validate(stored[version])
