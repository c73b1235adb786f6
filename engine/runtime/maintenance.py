"""Maintenance jobs the ``carepath-maintenance`` flow runs on an interval.

A job is a function ``job(engine) -> int | JobResult | None``: it does one
piece of housekeeping and says how many things it changed, plus any
:class:`Notice` to publish as a Prefect event. Jobs import no Prefect. To add
one, call :func:`register` at import time of your module (or add it to
``JOBS`` here); :func:`jobs` is what the flow runs, in order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from carepath.runtime.held import expire_held

if TYPE_CHECKING:
    from carepath.engine import Engine

SLA_BREACHED = "carepath.task.sla_breached"
QUARANTINED = "carepath.touchpoint.quarantined"


@dataclass(frozen=True)
class Notice:
    """Something operations should be told of: published as a Prefect event by the flows."""

    event: str
    resource_id: str
    labels: dict[str, str] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobResult:
    """What a job did: a count and the notices to publish."""

    count: int = 0
    notices: list[Notice] = field(default_factory=list)

    @classmethod
    def of(cls, value: "int | JobResult | None") -> "JobResult":
        if isinstance(value, JobResult):
            return value
        return cls(count=int(value or 0))


Job = Callable[["Engine"], "int | JobResult | None"]


def reclaim_leases(engine: "Engine") -> JobResult:
    """Touchpoints whose worker's lease expired (the worker died) go back to ``scheduled``.

    Claims already take expired leases; this keeps backlog metrics true when no
    dispatch of that journey runs soon. It applies the dispatcher's rules
    (:meth:`~carepath.runtime.dispatcher.Dispatcher.release_abandoned`): a call
    in flight when the worker died stays ``unknown`` and is looked up before it
    is sent again; a touchpoint suspected of killing its workers is left to a
    dispatcher's one-at-a-time take-over or, past ``poison_after``, quarantined
    (a ``carepath.touchpoint.quarantined`` notice). A stalled worker that wakes
    later changes nothing (fencing).
    """
    released, quarantined = engine.dispatcher.release_abandoned()
    notices = [Notice(event=QUARANTINED, resource_id=f"carepath.touchpoint.{q['touchpoint_id']}",
                      labels={"carepath.journey": q["journey"], "carepath.step": q["step"]},
                      payload={"reason": q["reason"], "stage": q["stage"]})
               for q in quarantined]
    return JobResult(count=released + len(quarantined), notices=notices)


def check_task_slas(engine: "Engine") -> JobResult:
    """Staff tasks past a deadline move up their team's escalation chain
    (:func:`carepath.runtime.work_queue.check_slas`); each breach is also a
    ``carepath.task.sla_breached`` notice for Prefect automations."""
    from carepath.runtime.work_queue import check_slas

    breaches = check_slas(engine)
    notices = [Notice(event=SLA_BREACHED, resource_id=f"carepath.task.{b.task_id}",
                      labels={"carepath.task-kind": b.kind, "carepath.team": b.team,
                              "carepath.patient-id": str(b.patient_id)},
                      payload={"deadline": b.deadline, "level": b.level, "role": b.role})
               for b in breaches]
    return JobResult(count=len(breaches), notices=notices)


_last_polled: dict[str, float] = {}  # HIS source name -> time.monotonic() of this worker's last poll


def poll_his_sources(engine: "Engine") -> JobResult:
    """Poll each configured HIS source that polls (FHIR) once its ``interval`` has passed since this worker
    last did; a source that is down keeps its cursor and is reported as ``carepath.connector.down``."""
    from carepath.plugins.contracts import HisSource
    from carepath.runtime.his_poll import poll_source

    result = JobResult()
    for name, source in getattr(engine, "connectors", {}).items():
        if not isinstance(source, HisSource) or type(source).poll is HisSource.poll:
            continue  # not an HIS source, or push-only (HL7 over MLLP)
        now = time.monotonic()
        if name in _last_polled and now - _last_polled[name] < float(getattr(source.config, "interval", 0)):
            continue
        _last_polled[name] = now
        report = poll_source(engine, source)
        result.count += report.stored
        if report.unavailable:
            result.notices.append(Notice(event="carepath.connector.down", resource_id=f"carepath.connector.{name}",
                                         labels={"carepath.connector-kind": "his"},
                                         payload={"reason": report.unavailable}))
    return result


def publish_alerts(engine: "Engine") -> JobResult:
    """Operator alerts raised since the last run (:mod:`carepath.runtime.alerts`), as notices, marked published."""
    from carepath.runtime.alerts import mark_emitted, pending_alerts

    alerts = pending_alerts(engine)
    notices = [Notice(event=a.kind, resource_id=f"carepath.connector.{a.source}",
                      labels={"carepath.alert-code": a.code or ""}, payload={"detail": a.detail or ""})
               for a in alerts]
    mark_emitted(engine, [a.id for a in alerts])
    return JobResult(count=len(alerts), notices=notices)


def delivery_fallback(engine: "Engine") -> int:
    """Messages not confirmed delivered within their step's window move on (:mod:`carepath.runtime.fallback`);
    a guardian-only message skipped for want of a guardian asks staff to record one
    (:func:`carepath.runtime.family.missing_guardian_tasks`)."""
    from carepath.runtime.family import missing_guardian_tasks
    from carepath.runtime.fallback import unconfirmed_fallback

    return unconfirmed_fallback(engine) + missing_guardian_tasks(engine)


def segments_over_time(engine: "Engine") -> int:
    """Segment membership of patients whose 30/90-day windows or age moved today
    (:func:`carepath.runtime.segments.refresh_time_edges`), with their entry and exit events."""
    from carepath.runtime.segments import refresh_time_edges

    return refresh_time_edges(engine)


def idle_patients(engine: "Engine") -> int:
    """Idle triggers: plan the steps of patients silent for their step's days (:mod:`carepath.runtime.idle`)."""
    from carepath.runtime.idle import plan_idle

    return plan_idle(engine)


def extend_horizons(engine: "Engine") -> int:
    """Issue 19: plan the next stretch of open-ended steps (:mod:`carepath.runtime.horizon`)."""
    from carepath.runtime.horizon import extend_horizons as extend

    return extend(engine)


def anchor_audit(engine: "Engine") -> int:
    """Issue 22: copy the audit chain's head to the anchors (and the anchor file) at most hourly, when it moved."""
    from carepath.store.audit_verify import anchor_if_due

    return anchor_if_due(engine.db, engine.settings.audit_anchor_file)


def conversations(engine: "Engine") -> int:
    """Issue 21: route inbound turns left pending (a worker died after ingest) and record complaint cases past a
    deadline (their tasks escalate in ``task_sla``)."""
    from carepath.runtime.complaints import check_deadlines
    from carepath.runtime.conversations.routing import route_pending

    return route_pending(engine) + len(check_deadlines(engine))


def retention(engine: "Engine") -> JobResult:
    """Issue 22: data past its ``[retention]`` age purged or de-identified, in batches (:mod:`carepath.privacy.retention`)."""
    from carepath.privacy.retention import retention_job

    return retention_job(engine)


JOBS: dict[str, Job] = {"reclaim_leases": reclaim_leases, "task_sla": check_task_slas, "his_poll": poll_his_sources,
                        "delivery_fallback": delivery_fallback, "alerts": publish_alerts,
                        "segments": segments_over_time, "idle": idle_patients,
                        "horizon": extend_horizons,  # issue 19
                        "audit_anchor": anchor_audit,  # issue 22
                        "conversations": conversations,  # issue 21
                        "retention": retention}  # issue 22


def register(name: str, job: Job) -> None:
    """Add a maintenance job (its name is its task run's name in the Prefect UI)."""
    JOBS[name] = job


def jobs() -> dict[str, Job]:
    """The jobs a maintenance run performs, in order."""
    found = dict(JOBS)
    found.setdefault("held_events", expire_held)  # after the jobs plugins registered, as it always ran
    return found
