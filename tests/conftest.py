"""Shared fixtures: a fresh database per test on SQLite (default) or PostgreSQL.

Set ``CAREPATH_TEST_DATABASE_URL`` to a PostgreSQL URL to run the suite there
(``.ci/run`` does both). Every test gets its own ``PREFECT_HOME`` and key file.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from carepath.runtime.clock import VirtualClock
from carepath.settings import Settings
from carepath.store import open_database, upgrade
from carepath.store.schema import Base
from tests.event_types import install as _install_test_event_types

_install_test_event_types()  # the tests' own event types (program.joined ...), declared as a plugin would
PG_URL = os.environ.get("CAREPATH_TEST_DATABASE_URL", "")
ON_POSTGRES = PG_URL.startswith("postgresql")


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ["CAREPATH_CONFIG"] = str(home / "no-carepath.toml")


@pytest.fixture(scope="session")
def _pg_schema() -> None:
    if ON_POSTGRES:
        upgrade(open_database(PG_URL))


@pytest.fixture
def database_url(tmp_path: Path, _pg_schema: None) -> str:
    """A clean database for this test."""
    if not ON_POSTGRES:
        return f"sqlite:///{tmp_path / 'carepath.db'}"
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
