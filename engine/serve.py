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
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from carepath.instance import instance_name, instances_on, port_in_use

from carepath.serve_runs import RunPoller, Served, apply_deployments, deployments_for

__all__ = ["DueNowRunners", "ServeOptions", "Service", "WebServer", "default_worker_id", "flush_prefect",
           "RunPoller", "Served", "apply_deployments", "deployments_for"]  # the last four live in serve_runs
log = logging.getLogger("carepath.serve")


class DueNowRunners:
    """One thread per journey running its due-now flow (:func:`carepath.flows.due_now_flow`), restarted if it fails."""

    def __init__(self, engine: Any, journeys: list[str], batch: int, stop: threading.Event,
                 on_error: Callable[[str], None] = log.error, instance: str = "default") -> None:
        self.engine, self.journeys, self.batch, self.stop, self.on_error = engine, journeys, batch, stop, on_error
        self.instance = instance  # its runs carry the instance's tag, like the scheduled runs
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self.engine.wakeup.listen(self.engine.database_url)  # PostgreSQL: other workers' ingests wake us too
        for name in self.journeys:
            thread = threading.Thread(target=self._run, args=(name,), name=f"due-now-{name}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, journey: str) -> None:
        from prefect import tags

        from carepath.flows import due_now_flow
        from carepath.instance import TAG_PREFIX
        from carepath.store.sqlite_gate import first_in_line

        mine = ("carepath", f"{TAG_PREFIX}{self.instance}", f"journey:{journey}", "due-now")
        while not self.stop.is_set():
            try:  # first in line, on SQLite: a few short transactions per wake-up, ahead of the ingest queue
                with tags(*mine), first_in_line():
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


def print_stacks(out: Any = None) -> None:
    """Every thread's name and stack, to ``out`` (standard error). Run by Python's signal handling in the main
    thread, holding the interpreter lock: ``faulthandler``'s C handler reads running threads' frames without it,
    and crashed serve (SIGSEGV) in a test doing just this."""
    out = out or sys.stderr
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    try:
        for ident, frame in sys._current_frames().items():  # noqa: SLF001 - the documented way to read other threads
            print(f"--- thread {names.get(ident, ident)} (most recent call last):", file=out)
            traceback.print_stack(frame, file=out)
        out.flush()
    except Exception as exc:  # a diagnosis never stops serve
        log.warning("could not print the threads' stacks: %s", exc)


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
        from carepath.prefect_database import prefect_database

        database = prefect_database(self.engine.database_url)
        self.say(f"starting a local Prefect server on 127.0.0.1:{port} …")
        self.say(database.said)
        self.prefect_server = PrefectServer(self.options.home / "prefect", port, env=database.env).start()
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
        self.due_now = DueNowRunners(self.engine, journeys, self.options.dispatch_batch, self.stop, on_error=self.say,
                                     instance=self.instance)
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
        """Start, wait for SIGTERM or SIGINT, stop; 0 when everything finished cleanly.

        SIGUSR1 prints every thread's stack to standard error and goes on serving: for a serve that seems stuck."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        if hasattr(signal, "SIGUSR1"):
            signal.signal(signal.SIGUSR1, lambda *_: print_stacks())
        try:
            self.start()
            while not self.stop.wait(0.5):
                pass
        finally:
            self.shutdown()
        return 0
