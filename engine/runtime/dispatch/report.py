"""What a dispatch run did: counts by outcome and by ``(journey, stage, step, channel, outcome)``.

Messages sent are ``outcomes["sent"]`` less the staff tasks and tag changes (``channel`` ``staff-task``
and ``tag``): :attr:`DispatchReport.messages` counts only what went to a channel.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class DispatchReport:
    """Counts of what a dispatch run did, by outcome and by ``(step, channel)``."""

    claimed: int = 0
    outcomes: Counter = field(default_factory=Counter)  # sent, skipped, cancelled, deferred, retry, failed, quarantined
    by_step: Counter = field(default_factory=Counter)  # (journey, stage, step, channel|"-", outcome)
    reclaimed: int = 0  # abandoned leases taken over
    reconciled: int = 0  # unknown attempts the provider was asked about (``Channel.lookup``)
    released: int = 0  # claimed but handed back unsent: the batch was cut short at its lease
    #: touchpoints set aside this run: ``{"touchpoint_id", "journey", "stage", "step", "reason"}``, one
    #: operator event each (``carepath serve`` emits ``carepath.touchpoint.quarantined``)
    quarantined: list[dict] = field(default_factory=list)

    def add(self, tp: Any, outcome: str, channel: str | None = None) -> None:
        self.outcomes[outcome] += 1
        self.by_step[(tp.journey, tp.stage, tp.step, channel or "-", outcome)] += 1

    def merge(self, other: "DispatchReport") -> "DispatchReport":
        self.claimed += other.claimed
        self.outcomes.update(other.outcomes)
        self.by_step.update(other.by_step)
        self.reclaimed += other.reclaimed
        self.reconciled += other.reconciled
        self.released += other.released
        self.quarantined += other.quarantined
        return self

    @property
    def sent(self) -> int:
        return self.outcomes["sent"]

    @property
    def messages(self) -> int:
        """Messages a channel accepted (sent touchpoints that were not staff tasks or tag changes)."""
        return sum(n for (_, _, _, channel, outcome), n in self.by_step.items()
                   if outcome == "sent" and channel not in ("-", "staff-task", "tag"))
