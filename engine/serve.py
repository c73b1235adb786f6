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

from carepath.instance import TAG_PREFIX, deployment_name, instance_name, instances_on, port_in_use

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
        from carepath.store.sqlite_gate import first_in_line

        while not self.stop.is_set():
            try:
                with first_in_line():  # SQLite: a few short transactions per wake-up, ahead of the ingest queue
                    due_now_flow(journey)(batch=self.batch)
            except Exception as exc:  # recorded by Prefect as the run's state; start listening again
                self.on_error(f"due-now run of {journey} raised {type(exc).__name__}: {exc}")
                self.stop.wait(1.0)

    def join(self, timeout: float = 30.0) -> None:
        """Wait for the runs to finish their batch and report their end, ``timeout`` seconds for all together.

        A run whose sends are done but whose Prefect server is gone would retry its final report for minutes;
        stopping does not wait for that (the run then shows as still running in the Prefect UI, and a
        touchpoint it held is protected by its lease like any other worker's)."""
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        late = [t.name for t in self.threads if t.is_alive()]
        if late:
            self.on_error(f"{', '.join(late)}: no end reported to Prefect within {timeout:g} s; stopping anyway")
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
        self.instance = instance_name(engine.settings.instance, engine.database_url)
        self.api_url: str | None = None
        self.due_now: DueNowRunners | None = None

    def start_prefect(self) -> str:
        """The API URL to use: ``PREFECT_API_URL`` (joined, saying which other carepath instances serve there),
        or this instance's own local server started now (on another free port when the chosen one is taken,
        saying by whom). Must run before Prefect is imported."""
        url = os.environ.get("PREFECT_API_URL")
        if url:
            others = [i for i in instances_on(url) or [] if i != self.instance]
            self.say(f"Prefect API: {url} (joined: " + (f"carepath instance(s) {', '.join(others)} also serve there"
                                                        if others else "no other carepath instance serves there")
                     + f"; this is instance {self.instance})")
            return url
        from carepath.prefect_server import PrefectServer, free_port

        port = self.options.prefect_port
        if port and port_in_use("127.0.0.1", port):
            others = instances_on(f"http://127.0.0.1:{port}/api")
            whose = ("something that is not a Prefect server" if others is None else
                     f"the Prefect server of carepath instance(s) {', '.join(others)}" if others else
                     "a Prefect server with no carepath deployments")
            port = free_port()
            self.say(f"127.0.0.1:{self.options.prefect_port} is taken by {whose}: this instance ({self.instance}) "
                     f"starts its own Prefect server on 127.0.0.1:{port} (to share one, set PREFECT_API_URL)")
        self.say(f"starting a local Prefect server on 127.0.0.1:{port} …")
        self.prefect_server = PrefectServer(self.options.home / "prefect", port).start()
        os.environ["PREFECT_API_URL"] = self.prefect_server.api_url
        self.say(f"Prefect UI: {self.prefect_server.ui_url}  (its log: {self.prefect_server.log_path})")
        return self.prefect_server.api_url

    def start(self) -> None:
        from carepath.flows import prefect_defaults, use_engine
        from carepath.web.app import create_app

        from carepath.web.clients import EventsAuth

        token = os.environ.get(self.options.events_token_env) or None
        # a weak events token stops serve before anything starts (WeakToken is a RuntimeError: a clear error)
        EventsAuth.build(self.engine.config.events_api, token, self.options.events_token_env)
        prefect_defaults()
        api_url = self.api_url = self.start_prefect()
        use_engine(self.engine)
        app = create_app(self.engine, events_token=token, events_token_env=self.options.events_token_env,
                         prefect_api_url=api_url, scheduler=self.scheduler_health)
        self.web = WebServer(app, self.options.host, self.options.port)
        host, port = self.web.start()
        from carepath.web.links import public_base

        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.engine.served_at = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
        from carepath.listeners import Listeners

        self.listeners = Listeners(self.engine.connectors.values())
        for bound in self.listeners.start():
            self.say(f"listening: {bound}")
        self.say(f"web hooks app: http://{host}:{port}  (POST /events, /hooks/<type>/<name>, /healthz, /metrics)")
        self.say(f"patients' links start with {public_base(self.engine.config, self.engine.settings, self.engine.served_at)}"
                 " ([web] public_url in carepath.toml)")
        if not app.state.events_auth.systems:
            self.say(f"POST /events is off until {self.options.events_token_env} holds a bearer token "
                     "(or carepath.toml has [events_api.<system>] tokens)")
        journeys = sorted(self.engine.journeys)
        served = deployments_for(self.engine, journeys, self.options.dispatch_interval,
                                 self.options.maintenance_interval, self.options.dispatch_batch, self.instance)
        apply_deployments(served)
        self.say(f"deployments of instance {self.instance} ({served[0].deployment}): "
                 f"{', '.join(f'{s.name} every {s.interval:g} s' for s in served)}")
        self.say(f"worker {self.engine.dispatcher.worker_id} ready; SIGTERM or Ctrl-C stops it")
        self.poller = RunPoller(served, self.options.poll_seconds, self.stop, on_error=self.say)
        self.poller_thread = threading.Thread(target=self.poller.run, name="run-poller", daemon=True)
        self.poller_thread.start()
        self.due_now = DueNowRunners(self.engine, journeys, self.options.dispatch_batch, self.stop, on_error=self.say)
        self.due_now.start()
        self.say("due-now touchpoints are sent as soon as ingest plans them (one 'due now' run per journey)")

    def scheduler_health(self) -> tuple[bool, str]:
        """For ``/healthz``: whether this instance's scheduled runs are being started, and if not, why."""
        if self.poller is None or self.poller_thread is None:
            return False, f"starting: registering the deployments of instance {self.instance} with {self.api_url}"
        if not self.poller_thread.is_alive():
            return False, "no scheduler: the run poller has stopped" + (" (shutting down)" if self.stop.is_set() else "")
        return self.poller.health(self.api_url or "")

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
