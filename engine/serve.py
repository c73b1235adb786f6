"""``carepath serve``: journeys as Prefect deployments, the web hooks app, until SIGTERM.

One process holds one engine and runs:

- a Prefect deployment per journey (every ``dispatch_interval`` seconds) and
  the maintenance deployment; their scheduled runs are picked up by this
  process's :class:`RunPoller` and executed here, in threads, against the
  shared engine (no process spawned per run). Several workers may serve the
  same deployments: a run is started by the worker whose ``Pending`` proposal
  the Prefect server accepts, so each run happens once.
- a due-now flow run per journey that sends touchpoints due now as soon as ingest plans them
  (woken in-process, and on PostgreSQL by ``NOTIFY`` from any worker), instead of waiting for
  the journey's next scheduled run;
- the web hooks app under uvicorn.

SIGTERM (or Ctrl-C) stops claiming work, lets running flow runs finish the
batch in hand and record their results, lets in-flight requests finish, and
exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from uuid import UUID

log = logging.getLogger("carepath.serve")
DEPLOYMENT_NAME = "carepath-serve"


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


def deployments_for(engine: Any, journeys: list[str], dispatch_interval: float, maintenance_interval: float,
                    batch: int = 500) -> list[Served]:
    """One deployment per journey plus the maintenance deployment."""
    from carepath.flows import journey_flow, maintenance_flow

    served = []
    for name in journeys:
        journey = engine.journeys[name]
        served.append(Served(name=name, flow=journey_flow(name), interval=dispatch_interval,
                             tags=["carepath", f"journey:{name}", f"version:{journey.version}"],
                             parameters={"interval_seconds": int(dispatch_interval), "batch": batch},
                             description=f"Dispatches the due work of journey {name} "
                                         f"(version {journey.version}) every {dispatch_interval:g} s."))
    served.append(Served(name="maintenance", flow=maintenance_flow(), interval=maintenance_interval,
                         tags=["carepath", "maintenance"],
                         description="Lease reclaim, staff-task SLA checks, held-event replay."))
    return served


def _registered(client: Any, s: Served) -> UUID | None:
    """The id of ``s``'s deployment when the server already has it exactly as ``s`` describes it."""
    from prefect.exceptions import ObjectNotFound

    try:
        existing = client.read_deployment_by_name(f"{s.flow.name}/{DEPLOYMENT_NAME}")
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
                    name=DEPLOYMENT_NAME, interval=timedelta(seconds=s.interval), tags=s.tags,
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
        self._pool = ThreadPoolExecutor(max_workers=max(2, min(8, len(self.by_id))), thread_name_prefix="flow-run")

    def run(self) -> None:
        """Poll until stopped, then wait for the runs in progress."""
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                while not self.stop.is_set():
                    try:
                        self.poll_once(client)
                    except Exception as exc:  # the server may be restarting: try again next round
                        self.on_error(f"could not poll Prefect for runs: {type(exc).__name__}: {exc}")
                    self.stop.wait(self.poll_seconds)
        finally:
            self._pool.shutdown(wait=True)

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


class DueNowRunners:
    """One thread per journey running its due-now flow (:func:`carepath.flows.due_now_flow`), restarted if it fails."""

    def __init__(self, engine: Any, journeys: list[str], batch: int, stop: threading.Event,
                 on_error: Callable[[str], None] = log.error) -> None:
        self.engine, self.journeys, self.batch, self.stop, self.on_error = engine, journeys, batch, stop, on_error
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self.engine.wakeup.listen(self.engine.database_url)  # PostgreSQL: other workers' ingests wake us too
        for name in self.journeys:
            thread = threading.Thread(target=self._run, args=(name,), name=f"due-now-{name}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, journey: str) -> None:
        from carepath.flows import due_now_flow

        while not self.stop.is_set():
            try:
                due_now_flow(journey)(batch=self.batch)
            except Exception as exc:  # recorded by Prefect as the run's state; start listening again
                self.on_error(f"due-now run of {journey} raised {type(exc).__name__}: {exc}")
                self.stop.wait(1.0)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=60)
        self.engine.wakeup.stop()


class WebServer:
    """uvicorn in a thread; ``stop()`` lets in-flight requests finish."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, name="web-hooks", daemon=True)

    def start(self, timeout: float = 30.0) -> tuple[str, int]:
        self.thread.start()  # uvicorn installs no signal handlers outside the main thread: serve owns them
        deadline = time.monotonic() + timeout
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.server.started:
            raise RuntimeError("the web hooks app did not start (is the port in use?)")
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return host, port

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join()


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def flush_prefect() -> None:
    """Send the logs and events still buffered in this process to the Prefect server."""
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
    except Exception as exc:  # best effort at exit: carepath's own state is already committed
        log.warning("could not flush Prefect logs and events: %s", exc)


@dataclass
class ServeOptions:
    host: str
    port: int
    dispatch_interval: float
    maintenance_interval: float
    poll_seconds: float
    dispatch_batch: int
    prefect_port: int
    home: Path
    events_token_env: str


class Service:
    """Everything ``carepath serve`` runs, started in order and stopped in reverse."""

    def __init__(self, engine: Any, options: ServeOptions, say: Callable[[str], None] = print) -> None:
        self.engine = engine
        self.options = options
        self.say = say
        self.stop = threading.Event()
        self.prefect_server = None
        self.web: WebServer | None = None
        self.poller: RunPoller | None = None
        self.poller_thread: threading.Thread | None = None
        self.listeners: Any = None  # carepath.listeners.Listeners: HL7 v2 MLLP and other socket listeners
        self.due_now: DueNowRunners | None = None

    def start_prefect(self) -> str:
        """The API URL to use: ``PREFECT_API_URL``, or a local server started now (must run before Prefect is imported)."""
        url = os.environ.get("PREFECT_API_URL")
        if url:
            self.say(f"Prefect API: {url}")
            return url
        from carepath.prefect_server import PrefectServer

        self.say(f"starting a local Prefect server on 127.0.0.1:{self.options.prefect_port} …")
        self.prefect_server = PrefectServer(self.options.home / "prefect", self.options.prefect_port).start()
        os.environ["PREFECT_API_URL"] = self.prefect_server.api_url
        self.say(f"Prefect UI: {self.prefect_server.ui_url}  (its log: {self.prefect_server.log_path})")
        return self.prefect_server.api_url

    def start(self) -> None:
        from carepath.flows import prefect_defaults, use_engine
        from carepath.web.app import create_app

        prefect_defaults()
        api_url = self.start_prefect()
        use_engine(self.engine)
        token = os.environ.get(self.options.events_token_env) or None
        app = create_app(self.engine, events_token=token,
                         events_token_env=self.options.events_token_env, prefect_api_url=api_url)
        self.web = WebServer(app, self.options.host, self.options.port)
        host, port = self.web.start()
        from carepath.listeners import Listeners

        self.listeners = Listeners(self.engine.connectors.values())
        for bound in self.listeners.start():
            self.say(f"listening: {bound}")
        self.say(f"web hooks app: http://{host}:{port}  (POST /events, /hooks/<type>/<name>, /healthz, /metrics)")
        if token is None:
            self.say(f"POST /events is off until {self.options.events_token_env} holds a bearer token")
        journeys = sorted(self.engine.journeys)
        served = deployments_for(self.engine, journeys, self.options.dispatch_interval,
                                 self.options.maintenance_interval, self.options.dispatch_batch)
        apply_deployments(served)
        self.say(f"deployments: {', '.join(f'{s.name} every {s.interval:g} s' for s in served)}")
        self.say(f"worker {self.engine.dispatcher.worker_id} ready; SIGTERM or Ctrl-C stops it")
        self.poller = RunPoller(served, self.options.poll_seconds, self.stop, on_error=self.say)
        self.poller_thread = threading.Thread(target=self.poller.run, name="run-poller", daemon=True)
        self.poller_thread.start()
        self.due_now = DueNowRunners(self.engine, journeys, self.options.dispatch_batch, self.stop, on_error=self.say)
        self.due_now.start()
        self.say("due-now touchpoints are sent as soon as ingest plans them (one 'due now' run per journey)")

    def shutdown(self) -> None:
        """Finish in-flight work and stop, in reverse order of starting."""
        from carepath.flows import request_stop

        self.say("stopping: finishing in-flight sends …")
        self.stop.set()
        request_stop()
        if self.poller_thread is not None:
            self.poller_thread.join()
        if self.due_now is not None:
            self.due_now.join()
        if self.web is not None:
            self.web.stop()
        if self.listeners is not None:
            self.listeners.stop()
        flush_prefect()
        if self.prefect_server is not None:
            self.prefect_server.stop()
        self.engine.close()
        self.say("stopped")

    def run(self) -> int:
        """Start, wait for SIGTERM or SIGINT, stop; 0 when everything finished cleanly."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        try:
            self.start()
            while not self.stop.wait(0.5):
                pass
        finally:
            self.shutdown()
        return 0
