"""Reconciliation: a call whose outcome is unknown is looked up before the message goes out again.

Guarantee kept here: after a crash, the provider is asked (:meth:`Channel.lookup`, for channels
that can answer) whether the call in doubt went through. Accepted: the touchpoint is ``sent``
with a ``reconciled`` row and nothing is re-sent. Not found: the message goes out again under the
same idempotency key. Cannot tell yet: it waits and asks again later, never re-sending blindly.
Channels that cannot look up re-send with the same idempotency key (the provider deduplicates).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from carepath.plugins.contracts import ErrorKind, LookupResult, LookupStatus, SendResult
from carepath.runtime.dispatch.decide import Outgoing

if TYPE_CHECKING:
    from carepath.runtime.batch_context import BatchContext
    from carepath.runtime.dispatch.report import DispatchReport

LOOKUP_INCONCLUSIVE = "lookup_inconclusive"


class Reconciliation:
    """Looking up unknown attempts (mixed into the dispatcher)."""

    def _reconcile(self, o: Outgoing) -> bool:
        """Is this message's last call on this channel ``unknown``, and can the channel look it up?"""
        return (o.lookup is not None and o.lookup.channel == o.channel
                and self.engine.channels[o.channel].capabilities.lookup)

    def _lookup(self, o: Outgoing, ctx: "BatchContext") -> list[LookupResult]:
        """Ask the provider whether the unknown attempt went through (one provider call)."""
        channel = self.engine.channels[o.channel]
        try:
            found = channel.lookup(self._message(o, ctx, channel), o.lookup.created_at)
        except Exception as exc:  # a connector bug must not lose the touchpoint: ask again later
            return [LookupResult(LookupStatus.UNKNOWN, detail=f"{type(exc).__name__}: {exc}")]
        return [found if isinstance(found, LookupResult) else LookupResult(LookupStatus.UNKNOWN, detail="no answer")]

    def _lookup_outcome(self, o: Outgoing, found: LookupResult, now: datetime, report: "DispatchReport",
                        deliveries: list[tuple], finals: list[dict], pending: list[Outgoing]) -> SendResult | None:
        """Record what the provider said of an unknown attempt; a :class:`SendResult` when the touchpoint
        ends or retries on it, ``None`` when the message goes out again (``pending``)."""
        report.reconciled += 1
        unknown = o.lookup.attempt
        o.lookup = None
        if found.status is LookupStatus.ACCEPTED:
            deliveries.append(("reconciled", found.provider_id, None, None,
                               f"the provider had accepted attempt {unknown}", found.cost, now, o.tp.id, o.attempts,
                               o.channel))
            o.notes.append(f"{o.channel}: reconciled attempt {unknown} (accepted)")
            return SendResult.sent(found.provider_id, found.cost)
        if found.status is LookupStatus.NOT_FOUND:
            deliveries.append(("not_found", None, None, None, f"the provider never took attempt {unknown}", None,
                               now, o.tp.id, o.attempts, o.channel))
            pending.append(o)
            return None
        detail = f"the provider cannot tell yet whether attempt {unknown} went through"
        deliveries.append(("failed", None, ErrorKind.RETRYABLE.value, LOOKUP_INCONCLUSIVE,
                           f"{detail}: {found.detail}" if found.detail else detail, None, now, o.tp.id, o.attempts,
                           o.channel))
        return SendResult.retryable(LOOKUP_INCONCLUSIVE, detail)

