"""``carepath serve``: run journeys continuously as Prefect deployments, with the web hooks app."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from carepath.cli.common import CONFIG_OPTION, DB_OPTION, fail, open_cli_engine, out_console


def serve(host: Optional[str] = typer.Option(None, help="address of the web hooks app [CAREPATH_SERVE_HOST, 127.0.0.1]"),
          port: Optional[int] = typer.Option(None, min=0, max=65535,
                                             help="port of the web hooks app, 0 for any [CAREPATH_SERVE_PORT, 8787]"),
          interval: Optional[float] = typer.Option(None, min=1, help="seconds between runs of each journey "
                                                                     "[CAREPATH_DISPATCH_INTERVAL, 30]"),
          maintenance_interval: Optional[float] = typer.Option(None, min=1, help="seconds between maintenance runs "
                                                                                 "[CAREPATH_MAINTENANCE_INTERVAL, 60]"),
          prefect_port: Optional[int] = typer.Option(None, min=0, max=65535,
                                                     help="port of the local Prefect server and UI when "
                                                          "PREFECT_API_URL is not set [CAREPATH_PREFECT_PORT, 4200]"),
          config: Optional[Path] = CONFIG_OPTION, db: Optional[str] = DB_OPTION) -> None:
    """Dispatch every journey on an interval as Prefect deployments and serve web hooks, until SIGTERM or Ctrl-C.

    Without PREFECT_API_URL a local Prefect server is started (UI on 127.0.0.1); with it, that server is used.
    """
    from datetime import timedelta

    from carepath.serve import ServeOptions, Service, default_worker_id
    from carepath.settings import Settings

    settings = Settings()
    options = ServeOptions(host=host or settings.serve_host, port=settings.serve_port if port is None else port,
                           dispatch_interval=interval or settings.dispatch_interval,
                           maintenance_interval=maintenance_interval or settings.maintenance_interval,
                           poll_seconds=settings.poll_seconds, dispatch_batch=settings.dispatch_batch,
                           prefect_port=settings.prefect_port if prefect_port is None else prefect_port,
                           home=settings.home, events_token_env=settings.events_token_env)
    # a configuration that does not load, a bad key or an unreachable database: a clear error, no traceback
    engine = open_cli_engine(db, config, runs_journeys=False, worker_id=settings.worker_id or default_worker_id(),
                             lease=timedelta(seconds=settings.lease_seconds))
    if not engine.journeys:
        engine.close()
        fail(f"no journeys to serve ({engine.config.path or 'no carepath.toml'}: add [journeys] paths = [...] "
             f"or enabled = [...])")
    console = out_console()
    service = Service(engine, options, say=lambda line: console.print(line, soft_wrap=True, highlight=False))
    try:
        code = service.run()
        _leave_despite_lingering_threads(code)
    except Exception as exc:  # start-up problems (port in use, Prefect server down) are the operator's to fix
        from carepath.prefect_server import PrefectServerError

        if not isinstance(exc, (PrefectServerError, RuntimeError, OSError)):
            raise
        fail(f"carepath serve could not start: {exc}")
    raise typer.Exit(code)


def _leave_despite_lingering_threads(code: int, grace: float = 5.0) -> None:
    """After "stopped" everything carepath owns is committed and closed; a library's thread that is not a daemon
    (Prefect's log and event workers retrying a server that has gone away) would otherwise keep the process
    alive for minutes after it said so. Such threads get ``grace`` seconds, then the process exits anyway."""
    import os
    import sys
    import threading
    import time

    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
