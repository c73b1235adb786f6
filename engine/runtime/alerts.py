"""Operator alerts: problems only a person can fix, recorded once and published later.

A connector whose provider account is out of balance or refuses its
credentials would otherwise fail patients one by one; it calls
:func:`raise_alert` instead and holds its messages. The maintenance flow
publishes :func:`pending_alerts` (as Prefect events, e.g.
``carepath.connector.down``) and marks them with :func:`mark_emitted`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Sequence

from sqlalchemy import Connection, insert, select, update

from carepath.store.schema import OperatorAlert

if TYPE_CHECKING:
    from carepath.engine import Engine

log = logging.getLogger(__name__)

CONNECTOR_DOWN = "carepath.connector.down"


@dataclass(frozen=True)
class Alert:
    """One recorded alert."""

    id: int
    at: datetime
    kind: str
    source: str
    code: str | None
    detail: str | None


def raise_alert(engine: "Engine", *, kind: str, source: str, code: str | None, detail: str,
                quiet_for: timedelta = timedelta(minutes=30)) -> bool:
    """Log and record an alert unless the same (kind, source, code) was recorded within ``quiet_for``.

    Returns whether a new row was written. ``detail`` must carry no contact data or secret.
    """
    with engine.db.begin() as conn:
        return record_alert(conn, now=engine.clock.now(), kind=kind, source=source, code=code, detail=detail,
                            quiet_for=quiet_for)


def record_alert(conn: Connection, *, now: datetime, kind: str, source: str, code: str | None, detail: str,
                 quiet_for: timedelta = timedelta(minutes=30)) -> bool:
    """:func:`raise_alert` inside a transaction the caller holds (the alert commits with its cause)."""
    log.error("operator alert %s from %s: %s (%s)", kind, source, detail, code)
    recent = conn.execute(select(OperatorAlert.id).where(
        OperatorAlert.kind == kind, OperatorAlert.source == source, OperatorAlert.code == code,
        OperatorAlert.at > now - quiet_for).limit(1)).first()
    if recent is not None:
        return False
    conn.execute(insert(OperatorAlert).values(at=now, kind=kind, source=source[:128], code=code, detail=detail))
    return True


def pending_alerts(engine: "Engine") -> list[Alert]:
    """Alerts not yet published, oldest first."""
    with engine.db.connect() as conn:
        rows = conn.execute(select(OperatorAlert.id, OperatorAlert.at, OperatorAlert.kind, OperatorAlert.source,
                                   OperatorAlert.code, OperatorAlert.detail)
                            .where(OperatorAlert.emitted_at.is_(None)).order_by(OperatorAlert.at, OperatorAlert.id))
        return [Alert(*row) for row in rows]


def mark_emitted(engine: "Engine", ids: Sequence[int]) -> None:
    """Record that these alerts were published."""
    if ids:
        with engine.db.begin() as conn:
            conn.execute(update(OperatorAlert).where(OperatorAlert.id.in_(list(ids)))
                         .values(emitted_at=engine.clock.now()))
