"""``/metrics``: Prometheus text exposition of what the database says now.

Every gauge is read from the database at scrape time, so any worker's
``/metrics`` shows the whole installation (all workers share one database).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import and_, func, or_, select

from carepath.store.schema import Delivery, StaffTask, Touchpoint

if TYPE_CHECKING:
    from carepath.engine import Engine


class DatabaseCollector:
    """Touchpoints by journey and status, sends by channel and outcome, due backlog, dispatch lag, staff tasks."""

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        now = self.engine.clock.now()
        due = or_(and_(Touchpoint.status == "scheduled", Touchpoint.due_at <= now),
                  and_(Touchpoint.status == "claimed", Touchpoint.lease_until < now))
        with self.engine.db.connect() as conn:
            touchpoints = conn.execute(select(Touchpoint.journey, Touchpoint.status, func.count())
                                       .group_by(Touchpoint.journey, Touchpoint.status)).all()
            sends = conn.execute(select(Delivery.channel, Delivery.status, func.count())
                                 .group_by(Delivery.channel, Delivery.status)).all()
            backlog, oldest = conn.execute(select(func.count(), func.min(Touchpoint.due_at)).where(due)).one()
            tasks = conn.execute(select(StaffTask.status, func.count()).group_by(StaffTask.status)).all()
        g = GaugeMetricFamily("carepath_touchpoints", "Touchpoints by journey and status", labels=["journey", "status"])
        for journey, status, n in touchpoints:
            g.add_metric([journey, status], n)
        yield g
        g = GaugeMetricFamily("carepath_sends", "Provider calls (deliveries) by channel and outcome",
                              labels=["channel", "outcome"])
        for channel, status, n in sends:
            g.add_metric([channel, status], n)
        yield g
        yield GaugeMetricFamily("carepath_due_backlog", "Touchpoints due now and not yet dispatched", value=backlog)
        if oldest is not None and oldest.tzinfo is None:  # SQLite aggregates lose the column type
            from datetime import datetime, timezone

            oldest = datetime.fromisoformat(str(oldest)).replace(tzinfo=timezone.utc)
        lag = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        yield GaugeMetricFamily("carepath_dispatch_lag_seconds", "Age of the oldest due, undispatched touchpoint",
                                value=lag)
        g = GaugeMetricFamily("carepath_staff_tasks", "Staff tasks by status", labels=["status"])
        for status, n in tasks:
            g.add_metric([status], n)
        yield g


class Metrics:
    """One registry per app: the database gauges and this worker's event counter."""

    def __init__(self, engine: "Engine") -> None:
        self.registry = CollectorRegistry()
        self.registry.register(DatabaseCollector(engine))  # type: ignore[arg-type]
        self.events = Counter("carepath_events_received", "Events received by POST /events, by outcome",
                              ["status"], registry=self.registry)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
