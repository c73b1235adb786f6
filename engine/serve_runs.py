"""The Prefect side of ``carepath serve``: a deployment per journey and the maintenance deployment registered with
the Prefect server, and :class:`RunPoller`, which starts their scheduled runs in this process's threads."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from uuid import UUID

from carepath.instance import TAG_PREFIX, deployment_name

log = logging.getLogger("carepath.serve")


@dataclass
class Served:
    """A deployment this worker serves: its flow and what the UI shows of it."""

    name: str
    flow: Any
    interval: float
    tags: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    deployment_id: UUID | None = None
    deployment: str = deployment_name("default")  # its name on the server: carepath-<instance>


def deployments_for(engine: Any, journeys: list[str], dispatch_interval: float, maintenance_interval: float,
                    batch: int = 500, instance: str = "default") -> list[Served]:
    """One deployment per journey plus the maintenance deployment, named and tagged for ``instance``."""
    from carepath.flows import journey_flow, maintenance_flow

    served = []
    mine = ["carepath", f"{TAG_PREFIX}{instance}"]
    for name in journeys:
        journey = engine.journeys[name]
        served.append(Served(name=name, flow=journey_flow(name), interval=dispatch_interval,
                             tags=[*mine, f"journey:{name}", f"version:{journey.version}"],
                             parameters={"interval_seconds": int(dispatch_interval), "batch": batch},
                             description=f"Dispatches the due work of journey {name} "
                                         f"(version {journey.version}) every {dispatch_interval:g} s "
                                         f"for carepath instance {instance}.",
                             deployment=deployment_name(instance)))
    served.append(Served(name="maintenance", flow=maintenance_flow(), interval=maintenance_interval,
                         tags=[*mine, "maintenance"], deployment=deployment_name(instance),
                         description=f"Lease reclaim, staff-task SLA checks, held-event replay for carepath "
                                     f"instance {instance}."))
    return served


def _registered(client: Any, s: Served) -> UUID | None:
    """The id of ``s``'s deployment when the server already has it exactly as ``s`` describes it."""
    from prefect.exceptions import ObjectNotFound

    try:
        existing = client.read_deployment_by_name(f"{s.flow.name}/{s.deployment}")
    except ObjectNotFound:
        return None
    intervals = [getattr(x.schedule, "interval", None) for x in existing.schedules if x.active]
    same = (intervals == [timedelta(seconds=s.interval)] and existing.parameters == s.parameters
            and sorted(existing.tags) == sorted(s.tags) and existing.description == s.description
            and not existing.paused)
    return existing.id if same else None


def apply_deployments(served: list[Served]) -> None:
    """Create or update each deployment on the Prefect server (schedules included).

    A deployment the server already has unchanged is left alone: when several
    workers start, only the first writes (rewriting a schedule also replaces
    its scheduled runs).
    """
    from prefect.client.orchestration import get_client

    for s in served:
        try:
            with get_client(sync_client=True) as client:
                s.deployment_id = _registered(client, s)
            if s.deployment_id is None:
                s.deployment_id = s.flow.to_deployment(
                    name=s.deployment, interval=timedelta(seconds=s.interval), tags=s.tags,
                    parameters=s.parameters, description=s.description).apply()
        except Exception as exc:  # an unreachable or refusing server is the operator's to fix: say which
            url = os.environ.get("PREFECT_API_URL", "the Prefect API")
            raise RuntimeError(f"could not register deployment {s.name} with {url}: "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None


class RunPoller:
    """Starts the scheduled runs of the served deployments in this process, one at a time per deployment."""

    def __init__(self, served: list[Served], poll_seconds: float, stop: threading.Event,
                 on_error: Callable[[str], None] = log.error) -> None:
        self.by_id = {s.deployment_id: s for s in served if s.deployment_id is not None}
        self.poll_seconds = poll_seconds
        self.stop = stop
        self.on_error = on_error
        self.busy: set[UUID] = set()
        self._lock = threading.Lock()
        self.last_ok: datetime | None = None  # the last poll the Prefect server answered
        self.failing_since: datetime | None = None
        self.last_error: str | None = None
        self._pool = ThreadPoolExecutor(max_workers=max(2, min(8, len(self.by_id))), thread_name_prefix="flow-run")

    def run(self) -> None:
        """Poll until stopped, then wait for the runs in progress.

        A poll is not retried: the next round is the retry, so a Prefect server that went away shows at
        once in ``/healthz`` (and a stop is not held up by a client backing off)."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

        try:
            with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}), get_client(sync_client=True) as client:
                while not self.stop.is_set():
                    try:
                        self.poll_once(client)
                        self.last_ok, self.failing_since, self.last_error = datetime.now(timezone.utc), None, None
                    except Exception as exc:  # the server may be restarting: try again next round
                        self.failing_since = self.failing_since or datetime.now(timezone.utc)
                        self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                        self.on_error(f"could not poll Prefect for runs: {self.last_error}")
                    self.stop.wait(self.poll_seconds)
        finally:
            self._pool.shutdown(wait=True)

    def health(self, api_url: str) -> tuple[bool, str]:
        """Whether this process is starting its scheduled runs, and if not, why."""
        now = datetime.now(timezone.utc)
        if self.failing_since is not None:
            return False, (f"no scheduler: the Prefect server at {api_url} has not answered since "
                           f"{self.failing_since:%H:%M:%S} UTC ({self.last_error}); no journey run starts here "
                           f"until it is back")
        if self.last_ok is None:
            return False, f"starting: the first poll of {api_url} is pending"
        stale = max(30.0, 5 * self.poll_seconds)
        if (now - self.last_ok).total_seconds() > stale:
            return False, f"no scheduler: the last poll of {api_url} was at {self.last_ok:%H:%M:%S} UTC, over " \
                          f"{stale:g} s ago"
        return True, f"ok: {len(self.by_id)} deployment(s) polled on {api_url}, last at {self.last_ok:%H:%M:%S} UTC"

    def poll_once(self, client: Any) -> int:
        """Claim and start every due run whose deployment is idle here; returns how many started."""
        runs = client.get_scheduled_flow_runs_for_deployments(list(self.by_id), scheduled_before=datetime.now(
            timezone.utc), limit=200)
        started = 0
        for run in self._latest_per_deployment(client, runs):
            with self._lock:
                if self.stop.is_set() or run.deployment_id in self.busy:
                    continue
                if not self._claim(client, run):
                    continue
                self.busy.add(run.deployment_id)
            self._pool.submit(self._execute, run)
            started += 1
        return started

    @staticmethod
    def _latest_per_deployment(client: Any, runs: list[Any]) -> list[Any]:
        """The newest due run of each deployment; older ones (a worker was down) are cancelled as superseded.

        Every run dispatches everything due by then, so one run catches up a backlog.
        """
        from prefect.states import Cancelled

        latest: dict[UUID, Any] = {}
        for run in sorted(runs, key=lambda r: r.expected_start_time or r.created):
            older = latest.get(run.deployment_id)
            if older is not None:
                client.set_flow_run_state(older.id, Cancelled(
                    name="Superseded", message=f"superseded by {run.name}: a run dispatches everything due"))
            latest[run.deployment_id] = run
        return list(latest.values())

    @staticmethod
    def _claim(client: Any, run: Any) -> bool:
        from prefect.client.schemas.responses import SetStateStatus
        from prefect.states import Pending

        return client.set_flow_run_state(run.id, Pending()).status == SetStateStatus.ACCEPT

    def _execute(self, run: Any) -> None:
        from prefect.client.orchestration import get_client
        from prefect.flow_engine import run_flow

        served = self.by_id[run.deployment_id]
        try:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(run.id)  # as claimed: Pending, so the engine starts it at once
            run_flow(served.flow, flow_run=run, return_type="state")
        except Exception as exc:  # recorded by Prefect as the run's state; keep serving
            self.on_error(f"flow run {run.name} of {served.name} raised {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self.busy.discard(run.deployment_id)
