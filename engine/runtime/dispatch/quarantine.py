"""Quarantine: a touchpoint whose workers keep dying on it is set aside instead of killing the next one.

Guarantee kept here: a poison touchpoint (one charged ``poison_after`` deaths of its workers
without a recorded result: deaths during its trials alone or its own provider calls, see
:func:`~carepath.runtime.dispatch.claim.charged`) stops being claimed, its call in flight is
marked ``unknown`` (kept for reconciliation), and operators are told (one log line and one
Prefect event per touchpoint, from the report).
Releasing it puts it back due at once with its calls counted, so the next call gets its own row.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime
from typing import Sequence

from sqlalchemy import Connection, select, update

from carepath.runtime.dispatch.claim import CALLS_MADE
from carepath.store.schema import Delivery, Touchpoint

log = logging.getLogger("carepath.dispatcher")


class Quarantine:
    """Setting poison touchpoints aside and releasing them (mixed into the dispatcher)."""

    def _quarantine(self, conn: Connection, poison: list[tuple[int, int]], now: datetime) -> list[dict]:
        """Set aside touchpoints charged ``poison_after`` deaths of their workers: ``(id, deaths charged)``."""
        if not poison:
            return []
        by_deaths: dict[int, list[int]] = defaultdict(list)
        for tp_id, deaths in poison:
            by_deaths[deaths].append(tp_id)
        for deaths, tp_ids in by_deaths.items():
            conn.execute(update(Touchpoint).where(Touchpoint.id.in_(tp_ids)).values(
                status="quarantined", lease_until=None, updated_at=now, claims=deaths,
                reason=f"quarantined: its worker died or hung {deaths} times while working on it alone or on its "
                       "own provider call, without a recorded result; release it once the cause is fixed"))
        tp_ids = [tp_id for tp_id, _ in poison]
        conn.execute(update(Delivery).where(Delivery.touchpoint_id.in_(tp_ids), Delivery.status == "sending")
                     .values(status="unknown", updated_at=now))
        rows = conn.execute(select(Touchpoint.id, Touchpoint.journey, Touchpoint.stage, Touchpoint.step,
                                   Touchpoint.reason).where(Touchpoint.id.in_(tp_ids)))
        found = [dict(touchpoint_id=r.id, journey=r.journey, stage=r.stage, step=r.step, reason=r.reason)
                 for r in rows]
        for q in found:
            log.warning("touchpoint %s (%s/%s) quarantined: %s", q["touchpoint_id"], q["journey"], q["step"],
                        q["reason"])
        return found

    def release_quarantined(self, ids: Sequence[int]) -> int:
        """Put quarantined touchpoints back in the queue (due now, claim count reset) once the cause is fixed."""
        now = self.engine.clock.now()
        with self.engine.db.begin() as conn:
            return conn.execute(update(Touchpoint).where(Touchpoint.id.in_(list(ids)),
                                                         Touchpoint.status == "quarantined")
                                .values(status="scheduled", claims=0, due_at=now, updated_at=now,
                                        reason="released from quarantine", attempts=CALLS_MADE)).rowcount
