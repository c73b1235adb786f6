"""The consent ledger: every consent a patient gave or withdrew, per purpose and channel, never overwritten.

Purposes: ``clinical`` (care notices: in force until withdrawn), ``marketing`` (needs a grant),
``sensitive`` (processing sensitive personal information, PIPL art. 29: the portrait and segments use
sensitive diagnoses only with it; :data:`carepath.runtime.portrait.SENSITIVE_PURPOSE`) and
``template:<name>`` (one WeChat subscription template). Channel ``*`` covers every channel; a row for
one channel overrides it there.

Each row says how the consent was given (``via``: ``his``, ``patient_reply``, ``staff``, ``web``,
``system``), the event source, who recorded it (a staff member) and why. Rows are only ever added:
the state in force is derived, the newest row (by time, then order of arrival) per purpose and channel,
the same rule the dispatcher applies at send time (:func:`carepath.runtime.patients.consent_state`).
Every row is audit-logged in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from carepath.masking import mask_text
from carepath.store.audit import audit
from carepath.store.statements import insert_row
from carepath.store.schema import Consent

#: how a consent reached carepath
VIAS = ("his", "patient_reply", "staff", "web", "system")


@dataclass(frozen=True)
class ConsentEntry:
    """One row of the ledger."""

    id: int
    purpose: str
    channel: str
    granted: bool
    via: str | None
    source: str | None
    recorded_by: str | None
    reason: str | None
    at: datetime

    def to_json(self, in_force: bool) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "purpose": self.purpose, "channel": self.channel,
                "granted": self.granted, "via": self.via or "his", "source": self.source,
                "recorded_by": self.recorded_by, "reason": mask_text(self.reason) if self.reason else None,
                "in_force": in_force}


def default_via(purpose: str) -> str:
    """How a ``consent.changed`` event that does not say came: a template choice is the patient's own
    (made in WeChat), anything else came from the hospital's systems."""
    return "patient_reply" if purpose.startswith("template:") else "his"


def record(conn: Connection, patient_id: int, purpose: str, granted: bool, *, channel: str = "*", source: str,
           at: datetime, via: str | None = None, recorded_by: str | None = None,
           reason: str | None = None) -> None:
    """Add one row to the ledger and the audit log, in the caller's transaction."""
    via = via if via in VIAS else default_via(purpose)
    insert_row(conn, Consent, dict(patient_id=patient_id, purpose=purpose, channel=channel, granted=granted,
                                   source=source, at=at, via=via, recorded_by=recorded_by,
                                   reason=reason[:255] if reason else None))
    detail = {"purpose": purpose, "channel": channel, "via": via, **({"reason": reason} if reason else {})}
    actor = f"staff:{recorded_by}" if via == "staff" and recorded_by else f"event:{source}"
    audit(conn, actor=actor, action="consent.granted" if granted else "consent.withdrawn", entity="patient",
          entity_id=patient_id, at=at, detail=detail)


def history(conn: Connection, patient_id: int) -> list[ConsentEntry]:
    """Every row of one patient's ledger, oldest first (in the order that decides what is in force)."""
    rows = conn.execute(select(Consent.id, Consent.purpose, Consent.channel, Consent.granted, Consent.via,
                               Consent.source, Consent.recorded_by, Consent.reason, Consent.at)
                        .where(Consent.patient_id == patient_id).order_by(Consent.at, Consent.id)).all()
    return [ConsentEntry(r.id, r.purpose, r.channel, bool(r.granted), r.via, r.source, r.recorded_by, r.reason,
                         r.at) for r in rows]


def in_force(entries: list[ConsentEntry]) -> dict[tuple[str, str], ConsentEntry]:
    """The row in force per ``(purpose, channel)``: the newest one."""
    current: dict[tuple[str, str], ConsentEntry] = {}
    for entry in sorted(entries, key=lambda e: (e.at, e.id)):
        current[(entry.purpose, entry.channel)] = entry
    return current


def ledger_json(conn: Connection, patient_id: int) -> list[dict[str, Any]]:
    """One patient's ledger as plain data, oldest first, each row marked ``in_force`` or not."""
    entries = history(conn, patient_id)
    current = {e.id for e in in_force(entries).values()}
    return [e.to_json(e.id in current) for e in entries]
