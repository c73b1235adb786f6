"""A real Prefect server (``prefect server start``) on loopback, shared by the serve tests of a session.

It takes 30-60 s to come up on a busy two-core machine (migrations, imports),
so it is launched as soon as collection shows a test that needs it, and
starts while the tests before it run. Under pytest-xdist every worker collects every test, so there it is
launched by the first test that needs it, on the one worker that runs them all (their ``xdist_group``, see
tests/conftest.py; xdist hands out that group first).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from carepath.prefect_server import PrefectServer, PrefectServerError
from tests.serve.helpers import OWNER, stop_leftovers, stop_orphans

_QUIET = {f"PREFECT_SERVER_SERVICES_{s}_ENABLED": "false"
          for s in ("FOREMAN", "CANCELLATION_CLEANUP", "PAUSE_EXPIRATIONS", "LATE_RUNS", "REPOSSESSOR")}
_server: PrefectServer | None = None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if _server is None and not os.environ.get("PYTEST_XDIST_WORKER") and any(
            "prefect_server" in getattr(item, "fixturenames", ()) and not _skipped(item) for item in items):
        _launch()


def _launch() -> PrefectServer:
    """Its own PREFECT_HOME and SQLite database in a temp dir, on a free loopback port."""
    global _server
    stop_orphans()  # an earlier run's server whose pytest was killed would hold memory and CPU for nothing
    _server = PrefectServer(Path(tempfile.mkdtemp(prefix="carepath-prefect-server-")), 0,
                            env={**_QUIET, OWNER: str(os.getpid())}).launch()
    return _server


def _skipped(item: pytest.Item) -> bool:
    return any(mark.args and mark.args[0] is True for mark in item.iter_markers("skipif"))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _server is not None:
        _server.stop()
        shutil.rmtree(_server.home, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_server() -> PrefectServer:
    """The running server (``.api_url``, ``.ui_url``)."""
    server = _server or _launch()
    try:
        return server.wait_healthy(timeout=180)
    except PrefectServerError as exc:
        pytest.fail(str(exc))


@pytest.fixture(autouse=True)
def _no_serve_left_running() -> Iterator[None]:
    """A serve test that failed half-way leaves no ``carepath serve`` behind: one would go on sending and
    maintaining in this worker's database, under the same deployments, through every later test (on PostgreSQL
    the tests' database is the worker's, not the test's), and fail tests that have nothing to do with it."""
    yield
    stop_leftovers()
