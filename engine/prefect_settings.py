"""Prefect's settings as carepath runs it: quiet and offline-friendly, and its ephemeral server started on a log file."""

import os
import sys
from pathlib import Path


def prefect_defaults() -> None:
    """Quiet, offline-friendly Prefect settings unless the user chose otherwise."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A first start migrates a fresh PREFECT_HOME database: minutes on a busy machine, not seconds.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")


def ephemeral_defaults() -> None:
    """Settings for one-shot commands (demo, bench) that run flows on Prefect's ephemeral server.

    That server is a subprocess writing to our terminal; when the command ends it logs cancelled
    background flushes as errors with tracebacks. Nothing carepath needs is lost there (its own
    state is in its database), so unless the user chose a level, only its critical logs show."""
    prefect_defaults()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    if not os.environ.get("PREFECT_API_URL"):
        from prefect.settings import get_current_settings

        if not get_current_settings().api.url:
            os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")


def start_ephemeral_server(log_path: Path) -> None:
    """Start Prefect's ephemeral server now, its output going to ``log_path`` rather than the terminal.

    A terminal's Ctrl-C reaches that server too, and it answers with its own words ("Aborted!") after
    the one line a command ends with; started here, with its standard error on a file, it stays quiet.
    Safe to call once per process (Prefect starts it only once)."""
    from prefect.server.api.server import SubprocessASGIServer

    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(log_path, "ab") as log:
            os.dup2(log.fileno(), 2)  # the child inherits descriptor 2
            SubprocessASGIServer().start()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quiet_ephemeral_shutdown() -> None:
    """The ephemeral API logs cancelled background flushes as errors when the process exits: nothing
    is lost that carepath needs (its own state is in its database), so keep them off the console."""
    import logging

    logging.getLogger("prefect.server").setLevel(logging.CRITICAL)
