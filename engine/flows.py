"""Prefect flows: one flow per journey, one task per stage batch.

Prefect is the orchestration and observation layer over batches: a flow run
costs about a second and a task run a tenth of one, so work is never one task
per touchpoint. The engine itself runs without Prefect; these functions only
wrap it.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from carepath.runtime.dispatcher import DispatchReport
from carepath.definition.model import Stage

_engine = None


def prefect_defaults() -> None:
    """Quiet, offline-friendly Prefect settings unless the user chose otherwise."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A first start migrates a fresh PREFECT_HOME database: minutes on a busy machine, not seconds.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")


def quiet_ephemeral_shutdown() -> None:
    """The ephemeral API logs cancelled background flushes as errors when the process exits: nothing
    is lost that carepath needs (its own state is in its database), so keep them off the console."""
    import logging

    logging.getLogger("prefect.server").setLevel(logging.CRITICAL)


def use_engine(engine) -> None:
    """Make flows in this process run against ``engine`` (the demo and tests do this)."""
    global _engine
    _engine = engine


def current_engine():
    global _engine
    if _engine is None:
        from carepath.engine import Engine

        _engine = Engine()
    return _engine


def _ticks(start: datetime | None, end: datetime | None, step: timedelta) -> list[datetime | None]:
    if start is None or end is None:
        return [None]
    out, t = [], start
    while t <= end:
        out.append(t)
        t += step
    return out


def dispatch_stage_batch(journey: str, stage: str, start: datetime | None = None, end: datetime | None = None,
                         tick_minutes: int = 30, batch: int = 500) -> DispatchReport:
    """Dispatch one stage's due work; with ``start``/``end`` sweep a virtual-clock window."""
    engine = current_engine()
    report = DispatchReport()
    for tick in _ticks(start, end, timedelta(minutes=tick_minutes)):
        if tick is not None:
            engine.clock.set(tick)  # virtual clock: simulation only
        report.merge(engine.dispatch_due(journey=journey, stage=stage, batch=batch))
    return report


def _artifact_rows(journey: str, reports: dict[str, DispatchReport]) -> list[dict]:
    rows = []
    for stage, rep in reports.items():
        for (_, _, step, channel, outcome), n in sorted(rep.by_step.items()):
            rows.append({"stage": stage, "step": step, "channel": channel, "outcome": outcome, "count": n})
    return rows


def build_journey_flow(journey: str):
    """The Prefect flow named after ``journey``; each run dispatches its due work by stage."""
    prefect_defaults()
    from prefect import flow, task
    from prefect.artifacts import create_table_artifact

    stage_task = task(dispatch_stage_batch, name=f"{journey} stage", task_run_name="{stage}",
                      cache_policy=None, retries=0)

    @flow(name=journey, log_prints=False, validate_parameters=True)
    def journey_flow(start: datetime | None = None, end: datetime | None = None, tick_minutes: int = 30,
                     batch: int = 500) -> dict[str, dict[str, int]]:
        reports = {s.value: stage_task(journey, s.value, start, end, tick_minutes, batch) for s in Stage}
        rows = _artifact_rows(journey, reports)
        if rows:
            create_table_artifact(table=rows, key=f"{journey}-dispatch",
                                  description=f"Touchpoints dispatched by {journey}, per stage, step and channel")
        return {stage: dict(rep.outcomes) for stage, rep in reports.items()}

    return journey_flow


_flows: dict[str, object] = {}


def journey_flow(journey: str):
    """The (cached) flow object for a journey."""
    if journey not in _flows:
        _flows[journey] = build_journey_flow(journey)
    return _flows[journey]
