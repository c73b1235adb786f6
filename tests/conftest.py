"""Shared fixtures: a fresh database per test on SQLite (default) or PostgreSQL.

Set ``CAREPATH_TEST_DATABASE_URL`` to a PostgreSQL URL to run the suite there
(``.ci/run`` does both). Every test gets its own ``PREFECT_HOME`` and key file.

The suite runs in parallel with pytest-xdist (``pytest -n 2 --dist loadgroup``, the README's command) as well as
alone (``pytest``). Under xdist each worker has its own PostgreSQL database, ``<database>_<worker id>`` (created
on first use and dropped at the end), and the tests of one Prefect server or harness run on one worker (their
``xdist_group``), so each is started once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import tempfile
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import make_url, text

from carepath.runtime.clock import VirtualClock
from carepath.settings import Settings
from carepath.store import open_database, upgrade
from carepath.store.schema import Base
from tests.event_types import install as _install_test_event_types
from tests.pg_admin import admin

_install_test_event_types()  # the tests' own event types (program.joined ...), declared as a plugin would
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def _worker_database(url: str) -> str:
    """``url`` with ``_<worker id>`` added to the database name under xdist (``url`` itself otherwise)."""
    if not (url.startswith("postgresql") and XDIST_WORKER):
        return url
    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}_{XDIST_WORKER}").render_as_string(hide_password=False)


PG_URL = _worker_database(os.environ.get("CAREPATH_TEST_DATABASE_URL", ""))
ON_POSTGRES = PG_URL.startswith("postgresql")
#: the tests of one shared service run on one xdist worker, which starts it once (see pytest_collection_modifyitems)
GROUPS = {"prefect_server": "prefect-server", "prefect_harness": "prefect-harness"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not XDIST_WORKER:
        return
    for item in items:
        for fixture, group in GROUPS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(group))
                _name_group(item, group)


_suite_locks: tuple[int, int] | None = None  # (lock, turnstile): files both workers open


def _alone(item: pytest.Item) -> bool:
    return item.get_closest_marker("serial") is not None or "prefect_server" in getattr(item, "fixturenames", ())


def _lock_path(config: pytest.Config, kind: str) -> Path:
    """In the folder of the run that holds each worker's temporary folder (pytest keeps the last three runs)."""
    if config.option.basetemp:
        return Path(config.option.basetemp).parent / f"carepath-tests.{kind}"
    return Path(tempfile.gettempdir()) / f"carepath-tests-{os.environ.get('PYTEST_XDIST_TESTRUNUID', 'run')}.{kind}"


@contextmanager
def _locked(config: pytest.Config, alone: bool) -> Iterator[None]:
    """The lock shared (``alone`` False) or alone; a worker waiting to hold it alone holds the turnstile, so the
    other worker's next tests wait behind it instead of keeping the lock shared for ever."""
    global _suite_locks
    if _suite_locks is None:
        _suite_locks = tuple(os.open(_lock_path(config, kind), os.O_RDWR | os.O_CREAT, 0o600)  # type: ignore[assignment]
                             for kind in ("lock", "turnstile"))
    lock, turnstile = _suite_locks
    fcntl.flock(turnstile, fcntl.LOCK_EX)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
    finally:
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
    try:
        yield
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        if alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item):
    """Under xdist, a test of a shared Prefect server or marked ``serial`` (processes that keep time: serve
    workers, leases, schedules) runs while the other worker waits between its tests, as in a plain ``pytest``.
    An ordinary test holds the lock shared from its setup to its teardown (a wait is in none of its durations);
    a serial one takes it alone for its call only, so its setup (the server's start) overlaps other tests."""
    if not XDIST_WORKER or _alone(item):
        yield
        return
    with _locked(item.config, alone=False):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    if not XDIST_WORKER or not _alone(item):
        yield
        return
    with _locked(item.config, alone=True):
        yield


def _name_group(item: pytest.Item, group: str) -> None:
    """``--dist loadgroup`` schedules by the ``@group`` suffix of the node id, which pytest-xdist 3.8 writes to
    ``item._nodeid``; pytest 9.2 keeps the id in ``item._id`` instead, so the suffix is written there."""
    if "@" in item.nodeid or not hasattr(item, "_id"):
        return  # already named, or a pytest where xdist's own suffix works
    from _pytest.nodeid import coerce_node_id

    item._id = coerce_node_id(f"{item.nodeid}@{group}")


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ["CAREPATH_CONFIG"] = str(home / "no-carepath.toml")


def _admin(command: str) -> None:
    """Run ``command`` on the server's ``postgres`` database, outside a transaction."""
    admin(PG_URL, command)


@pytest.fixture(scope="session")
def _pg_schema() -> None:
    if not ON_POSTGRES:
        yield
        return
    name = make_url(PG_URL).database
    if XDIST_WORKER:  # this worker's own database
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _admin(f'CREATE DATABASE "{name}"')
    upgrade(open_database(PG_URL))
    yield
    if XDIST_WORKER:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite store migrated to the newest schema once; each test gets a copy (a migration from nothing
    takes ~0.3 s, a copy ~1 ms)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "carepath.db"
    db = open_database(f"sqlite:///{path}")
    upgrade(db)
    db.dispose()
    with closing(sqlite3.connect(path)) as conn:  # everything in the one file that is copied
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def database_url(tmp_path: Path, _pg_schema: None, request: pytest.FixtureRequest) -> str:
    """A clean database for this test, at the newest schema."""
    if not ON_POSTGRES:
        path = tmp_path / "carepath.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite:///{path}"
    db = open_database(PG_URL)
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    db.dispose()
    return PG_URL


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(datetime(2026, 5, 1, 1, 0, tzinfo=timezone.utc))  # 09:00 in Shanghai


@pytest.fixture(scope="session")
def prefect_harness():
    """One ephemeral Prefect API for the whole session (its start-up costs ~15 s)."""
    from carepath.flows import prefect_defaults

    prefect_defaults()
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
