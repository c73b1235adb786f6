"""A real Prefect server (``prefect server start``) on loopback, shared by the serve tests of a session.

It takes seconds to come up on its PostgreSQL database, 30-60 s on SQLite on a busy two-core machine
(migrations, imports), so it is launched as soon as collection shows a test that needs it, and
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
from tests.serve import prefect_store
from tests.serve.helpers import OWNER, stop_leftovers, stop_orphans

_QUIET = {f"PREFECT_SERVER_SERVICES_{s}_ENABLED": "false"
          for s in ("FOREMAN", "CANCELLATION_CLEANUP", "PAUSE_EXPIRATIONS", "LATE_RUNS", "REPOSSESSOR",
                   "TRIGGERS")}  # (automations: no test uses one; each event would be evaluated)
_server: PrefectServer | None = None
_store: str | None = None  # the server's PostgreSQL database, when it has one


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if _server is None and not os.environ.get("PYTEST_XDIST_WORKER") and any(
            "prefect_server" in getattr(item, "fixturenames", ()) and not _skipped(item) for item in items):
        _launch()


def _launch() -> PrefectServer:
    """Its own PREFECT_HOME in a temp dir, on a free loopback port; its database a scratch PostgreSQL one when a
    server answers, else SQLite in that dir (tests/serve/prefect_store.py says why)."""
    global _server, _store
    stop_orphans()  # an earlier run's server whose pytest was killed would hold memory and CPU for nothing
    _store = prefect_store.create()
    env = {**_QUIET, OWNER: str(os.getpid())}
    if _store:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = _store
    _server = PrefectServer(Path(tempfile.mkdtemp(prefix="carepath-prefect-server-")), 0, env=env).launch()
    return _server


def _skipped(item: pytest.Item) -> bool:
    return any(mark.args and mark.args[0] is True for mark in item.iter_markers("skipif"))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _server is not None:
        _server.stop()
        shutil.rmtree(_server.home, ignore_errors=True)
    if _store:
        prefect_store.drop(_store)


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
