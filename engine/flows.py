"""Prefect flows: one flow per journey, one task per stage batch, and the maintenance flow.

Prefect is the orchestration and observation layer over batches: a flow run
costs about a second and a task run a tenth of one, so work is never one task
per touchpoint. The engine itself runs without Prefect; these functions only
wrap it.

What operations staff see for a journey run: a run named after the journey
and the window it covered, one task per stage the journey has, logs with
per-stage counts, a markdown artifact with counts and every failure (masked,
with the patient id for ``carepath patients timeline``), the final state
``Completed`` or ``Completed with failures``, and Prefect events
(``carepath.touchpoint.failed``, ``carepath.touchpoint.quarantined``,
``carepath.connector.down``) that automations can react to.
"""

# No ``from __future__ import annotations``: Prefect builds each flow's parameter
# schema from its annotations at run time, so they must be real types.
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from carepath.definition.model import Stage
from carepath.flow_reports import (
    MAX_FAILURE_EVENTS, MAX_LISTED_FAILURES, artifact_markdown, connectors_down, emit, failure_notices, failure_rows,
    quarantine_notices, stage_log_line)
from carepath.prefect_settings import (
    ephemeral_defaults, prefect_defaults, quiet_ephemeral_shutdown, start_ephemeral_server)
from carepath.runtime.dispatcher import DispatchReport
from carepath.runtime.maintenance import JobResult

__all__ = [  # the flows' own names, and those of the two modules split off from here (still importable from here)
    "use_engine", "current_engine", "request_stop", "dispatch_stage_batch", "journey_stages", "run_window",
    "build_journey_flow", "due_now_loop", "build_due_now_flow", "run_job", "build_maintenance_flow", "journey_flow",
    "due_now_flow", "maintenance_flow", "FAILED_STATE_NAME", "MAINTENANCE_FLOW",
    "MAX_FAILURE_EVENTS", "MAX_LISTED_FAILURES", "artifact_markdown", "connectors_down", "emit", "failure_notices",
    "failure_rows", "quarantine_notices", "stage_log_line",
    "ephemeral_defaults", "prefect_defaults", "quiet_ephemeral_shutdown", "start_ephemeral_server"]

_engine = None
_stop = threading.Event()
_failures_checked: dict[str, datetime] = {}  # journey -> when its failures were last reported
FAILED_STATE_NAME = "Completed with failures"
MAINTENANCE_FLOW = "carepath-maintenance"


def use_engine(engine) -> None:
    """Make flows in this process run against ``engine`` (serve, the demo and tests do this)."""
    global _engine
    _engine = engine
    _stop.clear()


def current_engine():
    global _engine
    if _engine is None:
        from carepath.engine import Engine

        _engine = Engine()
    return _engine


def request_stop() -> None:
    """Ask running flows to finish the batch in hand and claim nothing more (SIGTERM, Ctrl-C)."""
    _stop.set()


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
    """Dispatch one stage's due work; with ``start``/``end`` sweep a virtual-clock window.

    Batch after batch until nothing is due, or until a stop is requested: the
    batch in hand is always finished and recorded.
    """
    engine = current_engine()
    report = DispatchReport()
    for tick in _ticks(start, end, timedelta(minutes=tick_minutes)):
        if _stop.is_set():
            break
        if tick is not None:
            engine.clock.set(tick)  # virtual clock: simulation only
        while True:
            part = engine.dispatch_due(journey=journey, stage=stage, batch=batch, max_batches=1)
            report.merge(part)
            # a claim that left part of a small backlog to other workers is followed by another (dispatch_due)
            if (part.claimed < batch and not engine.dispatcher.left_some) or _stop.is_set():
                break
    return report


def journey_stages(journey) -> list[str]:
    """The stages ``journey`` has steps in, in care-path order."""
    present = {step.stage for step in journey.steps}
    return [s.value for s in Stage if s in present or s.value in present]


def run_window(journey: str, start: datetime | None, end: datetime | None, scheduled: datetime | None,
               interval_seconds: int) -> str:
    """A run's display name: the journey and the window it covered.

    A simulation run names its virtual window; a served run the interval that
    ended at its scheduled time (it dispatches everything due by then).
    """
    if start is None or end is None:
        # Prefect may hand a pendulum DateTime: plain datetimes subtract predictably
        end = datetime.fromtimestamp((scheduled or datetime.now(timezone.utc)).timestamp(), timezone.utc)
        start = end - timedelta(seconds=interval_seconds or 0)
    fmt = "%H:%M:%S" if (end - start) < timedelta(minutes=1) else "%H:%M"
    zone = end.strftime("%z")
    label = "UTC" if zone in ("+0000", "") else f"{zone[:3]}:{zone[3:]}"
    day = start.strftime("%Y-%m-%d")
    if start == end:
        return f"{journey} due by {day} {end.strftime(fmt)} {label}"
    return f"{journey} {day} {start.strftime(fmt)}–{end.strftime(fmt)} {label}"


def _flow_run_namer(journey: str) -> Callable[[], str]:
    def name() -> str:
        from prefect.runtime import flow_run

        params = flow_run.parameters or {}
        return run_window(journey, _as_datetime(params.get("start")), _as_datetime(params.get("end")),
                          flow_run.scheduled_start_time, int(params.get("interval_seconds") or 0))

    return name


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


# ------------------------------------------------------------------------ the flows


def build_journey_flow(journey: str):
    """The Prefect flow named after ``journey``; each run dispatches its due work by stage."""
    prefect_defaults()
    from prefect import flow, get_run_logger, task
    from prefect.artifacts import create_markdown_artifact
    from prefect.states import Completed

    stage_task = task(dispatch_stage_batch, name=f"{journey} stage", task_run_name="{stage}",
                      cache_policy=None, retries=0)

    @flow(name=journey, log_prints=False, validate_parameters=True, flow_run_name=_flow_run_namer(journey))
    def journey_flow(start: datetime | None = None, end: datetime | None = None, tick_minutes: int = 30,
                     batch: int = 500, interval_seconds: int = 0) -> Any:
        logger = get_run_logger()
        engine = current_engine()
        definition = engine.journeys.get(journey)
        if definition is None:
            raise ValueError(f"journey {journey!r} is not loaded by this worker "
                             f"(loaded: {', '.join(sorted(engine.journeys)) or 'none'})")
        since = _failures_checked.get(journey) or (min(engine.clock.now(), start or engine.clock.now())
                                                   - timedelta(microseconds=1))
        reports: dict[str, DispatchReport] = {}
        for stage in journey_stages(definition):
            reports[stage] = stage_task(journey, stage, start, end, tick_minutes, batch)
            logger.info(stage_log_line(stage, reports[stage]))
        checked_at = engine.clock.now()
        failures = failure_rows(engine, journey, since)
        _failures_checked[journey] = checked_at
        down = connectors_down(reports)
        for channel in down:
            logger.warning("channel %s delivered nothing in this run: every attempt errored", channel)
        for f in failures[:MAX_LISTED_FAILURES]:
            logger.info("touchpoint %s (patient %s, step %s) %s: %s", f["touchpoint"], f["patient"], f["step"],
                           f["status"], f["reason"])
        emit(failure_notices(journey, failures, down))
        title = run_window(journey, start, end, None, interval_seconds) if start else f"{journey} v{definition.version}"
        create_markdown_artifact(markdown=artifact_markdown(title, reports, failures), key=f"{journey}-dispatch",
                                 description=f"{journey}: touchpoints by stage, step, channel and outcome; failures")
        result = {stage: dict(rep.outcomes) for stage, rep in reports.items()}
        if failures:
            return Completed(name=FAILED_STATE_NAME, data=result,
                             message=f"{len(failures)} touchpoint(s) failed or quarantined: see the artifact")
        return result

    return journey_flow


def due_now_loop(journey: str, engine, *, batch: int = 500, max_wakeups: int = 0, wait_seconds: float = 0.5,
                 on_report: Callable[[DispatchReport], None] | None = None) -> DispatchReport:
    """Dispatch ``journey``'s due work each time ingest announces touchpoints due now, until a stop is asked.

    Runs on its own dispatcher (this worker's id with ``-now``), so it never shares a batch's state
    with the scheduled runs; claims keep the two from taking the same touchpoint.
    """
    from carepath.runtime.dispatcher import Dispatcher

    main = engine.dispatcher
    dispatcher = Dispatcher(engine, worker_id=f"{main.worker_id}-now"[:64], lease=main.lease,
                            max_attempts=main.max_attempts, backoff=main.backoff, poison_after=main.poison_after,
                            chunk=main.chunk)
    total, wakes = DispatchReport(), 0
    while not _stop.is_set() and not (max_wakeups and wakes >= max_wakeups):
        if not engine.wakeup.wait(journey, timeout=wait_seconds):
            continue
        wakes += 1
        part = dispatcher.dispatch_due(journey=journey, batch=batch)
        total.merge(part)
        if on_report is not None:
            on_report(part)
    return total


def build_due_now_flow(journey: str):
    """The journey's flow run that sends its due-now touchpoints as ingest announces them (``carepath serve``).

    It carries the journey's name, so operators find it next to the journey's scheduled runs: one
    long run per worker, a log line per wake-up that dispatched anything, the failure and
    quarantine events of scheduled runs, and its totals when serve stops.
    """
    prefect_defaults()
    from prefect import flow, get_run_logger

    def run_name() -> str:
        return f"{journey} due now (from {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC)"

    @flow(name=journey, log_prints=False, flow_run_name=run_name)
    def due_now_flow(batch: int = 500, max_wakeups: int = 0) -> dict:
        logger = get_run_logger()
        logger.info("sending %s's touchpoints as soon as ingest plans them due now", journey)

        def report(part: DispatchReport) -> None:
            if part.claimed:
                logger.info(stage_log_line("due now", part))
            notices = quarantine_notices(journey, part.quarantined)
            if notices:
                emit(notices)

        total = due_now_loop(journey, current_engine(), batch=batch, max_wakeups=max_wakeups, on_report=report)
        logger.info(stage_log_line("due now, in all", total))
        return dict(total.outcomes)

    return due_now_flow


def run_job(name: str, job: Callable[[Any], Any]) -> JobResult:
    """Run one maintenance job against the current engine."""
    return JobResult.of(job(current_engine()))


def build_maintenance_flow():
    """The maintenance flow: one task per job of ``carepath.runtime.maintenance.jobs()``."""
    prefect_defaults()
    from prefect import flow, get_run_logger, task

    from carepath.runtime.maintenance import jobs

    job_task = task(run_job, name="maintenance job", task_run_name="{name}", cache_policy=None, retries=0)

    def run_name() -> str:
        from prefect.runtime import flow_run

        when = datetime.fromtimestamp(flow_run.scheduled_start_time.timestamp(), timezone.utc)
        return f"maintenance {when:%Y-%m-%d %H:%M:%S} UTC"

    @flow(name=MAINTENANCE_FLOW, log_prints=False, flow_run_name=run_name)
    def maintenance_flow() -> dict[str, int]:
        logger = get_run_logger()
        counts = {}
        for name, job in jobs().items():
            result = job_task(name, job)
            counts[name] = result.count
            logger.info("%s: %s", name, result.count)
            emit(result.notices)
        return counts

    return maintenance_flow


_flows: dict[str, object] = {}


def journey_flow(journey: str):
    """The (cached) flow object for a journey."""
    if journey not in _flows:
        _flows[journey] = build_journey_flow(journey)
    return _flows[journey]


def due_now_flow(journey: str):
    """The (cached) due-now flow object for a journey."""
    key = f"{journey} due now"
    if key not in _flows:
        _flows[key] = build_due_now_flow(journey)
    return _flows[key]


def maintenance_flow():
    """The (cached) maintenance flow object."""
    if MAINTENANCE_FLOW not in _flows:
        _flows[MAINTENANCE_FLOW] = build_maintenance_flow()
    return _flows[MAINTENANCE_FLOW]
