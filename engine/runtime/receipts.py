"""Delivery receipts: applied to the delivery they name, or kept until that delivery is recorded.

A provider may post its receipt before the dispatcher has written the provider id
it got back (the call returned, the result write is a moment later). Such a
receipt is kept in ``early_receipts`` and applied when the delivery is recorded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

from sqlalchemy import Connection, delete, insert, select, update

from carepath.runtime.portrait import record_delivered
from carepath.store.schema import Delivery, EarlyReceipt, Touchpoint

RECEIPT_STATUSES = {"message.delivered": "delivered", "message.failed": "failed"}
#: a ``message.failed`` receipt whose payload ``status`` is this was refused by the provider's own limit
#: (WeCom: one mass message per customer in its window): a cap, not a failure, so nothing falls back
CAPPED = "capped"


def receipt_status(event_type: str, payload: dict) -> str:
    """The delivery status a receipt event sets: ``delivered``, ``failed`` or ``capped``."""
    status = RECEIPT_STATUSES[event_type]
    return CAPPED if status == "failed" and payload.get("status") == CAPPED else status


def apply_receipt(conn: Connection, provider_id: str, status: str, now: datetime) -> bool:
    """Apply a receipt to its delivery; keep it for later when no delivery has that provider id yet.

    Returns whether it was applied now.
    """
    row = conn.execute(select(Delivery.id, Delivery.touchpoint_id).where(Delivery.provider_id == provider_id)
                       .order_by(Delivery.id.desc())).first()
    if row is None:
        conn.execute(insert(EarlyReceipt).values(provider_id=provider_id, status=status, received_at=now))
        return False
    _apply(conn, row.id, row.touchpoint_id, status, now)
    return True


def apply_early_receipts(conn: Connection, now: datetime, provider_ids: Iterable[str] | None = None) -> int:
    """Apply kept receipts whose delivery is now recorded (those of ``provider_ids``, or all); returns how many."""
    q = (select(EarlyReceipt.id, EarlyReceipt.status, Delivery.id.label("delivery_id"), Delivery.touchpoint_id)
         .join(Delivery, Delivery.provider_id == EarlyReceipt.provider_id).order_by(EarlyReceipt.id))
    if provider_ids is not None:
        ids = list(provider_ids)
        if not ids:
            return 0
        q = q.where(EarlyReceipt.provider_id.in_(ids))
    applied = set()
    for r in conn.execute(q).all():
        if r.id not in applied:
            _apply(conn, r.delivery_id, r.touchpoint_id, r.status, now)
            applied.add(r.id)
    if applied:
        conn.execute(delete(EarlyReceipt).where(EarlyReceipt.id.in_(applied)))
    return len(applied)


def _apply(conn: Connection, delivery_id: int, touchpoint_id: int, status: str, now: datetime) -> None:
    if status == "delivered" and conn.execute(update(Delivery).where(
            Delivery.id == delivery_id, Delivery.status != "delivered").values(updated_at=now)).rowcount:
        record_delivered(conn, touchpoint_id, now)  # the patient's portrait counts it once
    conn.execute(update(Delivery).where(Delivery.id == delivery_id).values(status=status, updated_at=now))
    if status == CAPPED:  # like the daily cap: skipped, not failed (no fallback, no call task)
        conn.execute(update(Touchpoint).where(Touchpoint.id == touchpoint_id, Touchpoint.status == "sent")
                     .values(status="skipped", updated_at=now,
                             reason="skipped: capped by the provider's mass-message limit"))
        return
    conn.execute(update(Touchpoint).where(Touchpoint.id == touchpoint_id, Touchpoint.status.in_(("sent", "delivered")))
                 .values(status=status, updated_at=now))
