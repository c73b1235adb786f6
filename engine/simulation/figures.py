"""The figures of a simulation, read from its scratch database once the virtual days are over.

Days are hospital days (Asia/Shanghai). A message is a touchpoint that was sent (``sent`` or
``delivered``), counted on the day it was sent, on the channel that took it; deferrals by quiet hours
and daily caps are counted besides the touchpoint's final status, as in ``carepath demo``'s table.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from carepath.reporting import COLUMNS
from carepath.simulation.costs import SINGLE_PART, CONCATENATED_PART, Prices, cost_by_channel
from carepath.simulation.his import SHANGHAI
from carepath.store.schema import Enrollment, OutboxMessage, StaffTask, Touchpoint

if TYPE_CHECKING:
    from carepath.engine import Engine

SENT = ("sent", "delivered")
COST_RULE = (f"SMS: up to {SINGLE_PART} characters is one part, a longer message one part per "
             f"{CONCATENATED_PART} characters (UCS-2 concatenated SMS, as Chinese providers bill); "
             "other channels per message")


def _day(at: datetime) -> str:
    return at.astimezone(SHANGHAI).date().isoformat()


def _bucket(status: str) -> str:
    return {"scheduled": "pending", "claimed": "pending"}.get(status, status)


def _reason(status: str, reason: str | None) -> str:
    return (reason or "no reason recorded").removeprefix(f"{status}: ")[:160]


@dataclass
class Rows:
    """What the figures are computed from, read from one scratch database (or several shards', concatenated)."""

    touchpoints: list[tuple] = field(default_factory=list)  # journey, stage, step, channel, status, reason, sent_at, action
    tasks: list[tuple] = field(default_factory=list)  # team, kind, created_at
    messages: list[tuple[str, str]] = field(default_factory=list)  # channel, body
    enrollments: int = 0

    def extend(self, other: "Rows") -> None:
        """Add another shard's rows (shards hold different patients)."""
        self.touchpoints += other.touchpoints
        self.tasks += other.tasks
        self.messages += other.messages
        self.enrollments += other.enrollments


def read_rows(engine: "Engine") -> Rows:
    """The touchpoints, staff tasks, recorded messages and enrollment count of a simulation's database."""
    with engine.db.connect() as conn:
        touchpoints = [tuple(r) for r in conn.execute(select(
            Touchpoint.journey, Touchpoint.stage, Touchpoint.step, Touchpoint.channel, Touchpoint.status,
            Touchpoint.reason, Touchpoint.sent_at, Touchpoint.action))]
        tasks = [tuple(r) for r in conn.execute(select(StaffTask.team, StaffTask.kind, StaffTask.created_at))]
        messages = [(c, b) for c, b in conn.execute(select(OutboxMessage.channel, OutboxMessage.body)
                                                      .order_by(OutboxMessage.id))]
        enrollments = conn.execute(select(func.count()).select_from(Enrollment)).scalar() or 0
    return Rows(touchpoints, tasks, messages, enrollments)


def collect_figures(engine: "Engine", start: datetime, days: int, prices: Prices) -> dict:
    """Messages per day, channel and step; deferrals; skips and why; staff tasks per day and team; costs."""
    return figures_from(read_rows(engine), start, days, prices)


def figures_from(data: Rows, start: datetime, days: int, prices: Prices) -> dict:
    """The figures of :func:`collect_figures` from rows already read (the same whatever their order)."""
    day_list = [(start + timedelta(days=d)).date().isoformat() for d in range(days)]
    per_day: dict[str, Counter] = {d: Counter() for d in day_list}
    per_day_step: dict[str, Counter] = {d: Counter() for d in day_list}
    steps: dict[tuple[str, str, str, str], Counter] = {}
    why: dict[str, Counter] = {"skipped": Counter(), "cancelled": Counter(), "failed": Counter()}
    for journey, stage, step, channel, status, reason, sent_at, action in data.touchpoints:
        counts = steps.setdefault((journey, stage, step, channel or "—"), Counter())
        counts[_bucket(status)] += 1
        text = reason or ""
        if "quiet hours" in text or "marketing window" in text:
            counts["quiet"] += 1
        if "daily cap" in text:
            counts["cap"] += 1
        if status in why:
            why[status][_reason(status, reason)] += 1
        if status in SENT and action == "send" and sent_at is not None and _day(sent_at) in per_day:
            per_day[_day(sent_at)][channel or "—"] += 1
            per_day_step[_day(sent_at)][f"{journey}/{step}"] += 1
    tasks, enrollments = data.tasks, data.enrollments
    messages = sorted(data.messages, key=lambda m: (m[0], m[1] or ""))  # so that the cost lines read the same whatever order the shards came in
    step_lines = [{"journey": j, "stage": st, "step": s, "channel": c, **{k: n.get(k, 0) for k in COLUMNS}}
                  for (j, st, s, c), n in sorted(steps.items())]
    totals = Counter()
    for line in step_lines:
        totals.update({k: line[k] for k in COLUMNS})
    costs = cost_by_channel(messages, prices)
    final = [k for k in COLUMNS if k not in ("quiet", "cap")]  # a touchpoint's one final status
    return {
        "totals": {"enrollments": enrollments, "touchpoints": sum(sum(n[k] for k in final) for n in steps.values()),
                   "messages": sum(sum(c.values()) for c in per_day.values()), "staff_tasks": len(tasks),
                   **{k: totals[k] for k in COLUMNS}},
        "messages_per_day": {d: dict(sorted(c.items())) for d, c in per_day.items()},
        "messages_per_day_step": {d: dict(sorted(c.items())) for d, c in per_day_step.items()},
        "steps": step_lines,
        "why": {status: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for status, c in why.items()},
        "staff_tasks": _tasks(tasks, day_list),
        "cost": {"currency": prices.currency, "rule": COST_RULE, "signature_chars": prices.signature_chars,
                 "channels": [c.as_dict() for c in costs.values()],
                 "total": round(sum(c.cost for c in costs.values()), 4)},
    }


def _tasks(tasks: list, day_list: list[str]) -> dict:
    """Staff tasks opened per day per team, and each team's peak day (the earliest of equal days)."""
    per_day: dict[str, Counter] = {d: Counter() for d in day_list}
    kinds: dict[str, Counter] = defaultdict(Counter)
    for team, kind, created_at in tasks:
        day = _day(created_at)
        per_day.setdefault(day, Counter())[team] += 1
        kinds[team][kind] += 1
    teams = {}
    for team in sorted(kinds):
        counts = [(per_day[d][team], d) for d in sorted(per_day)]
        peak, peak_day = max(counts, key=lambda c: c[0])  # the first, so the earliest, of equal days
        teams[team] = {"total": sum(kinds[team].values()), "peak_day": peak_day, "peak": peak,
                       "mean_per_day": round(sum(kinds[team].values()) / max(1, len(day_list)), 2),
                       "kinds": dict(sorted(kinds[team].items()))}
    return {"per_day": {d: dict(sorted(per_day[d].items())) for d in sorted(per_day)}, "teams": teams}
