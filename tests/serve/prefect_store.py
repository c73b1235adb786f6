"""The database behind the tests' Prefect server: a scratch PostgreSQL database when a server is reachable, else
Prefect's own SQLite file.

Why not always SQLite: with several ``carepath serve`` processes running flows every second or two (the serve
tests' intervals, ten to thirty times a production schedule), Prefect's SQLite store was seen answering no request
at all for ~60 s at a time (its ``busy_timeout``): one connection sleeping on the write lock while every other
request waited behind it. Every run then started a minute late and the serve tests' waits ran out (the CI
failure of stop 27). On PostgreSQL nothing waits like that, and the server is up in seconds.

Used: ``CAREPATH_TEST_DATABASE_URL``'s server when the suite runs on PostgreSQL, else the local default
(``postgres@127.0.0.1:5432``) when it answers within three seconds. A database left by a test run that was killed
is dropped by the next one.
"""

from __future__ import annotations

import os
from typing import Optional

from sqlalchemy import make_url

from tests.pg_admin import admin, server_url

PREFIX = "carepath_prefect_"


def create() -> Optional[str]:
    """A new empty database for the Prefect server (its ``asyncpg`` URL), or ``None`` when no PostgreSQL answers."""
    url = server_url()
    name = f"{PREFIX}{os.getpid()}"
    try:
        admin(url, *_orphans(url), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"',
              timeout=3)
    except Exception:  # no PostgreSQL here (or not ours to use): Prefect keeps its SQLite file
        return None
    return url.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)


def drop(prefect_url: str) -> None:
    """Drop the database :func:`create` made (after its server has stopped)."""
    try:
        admin(prefect_url, f'DROP DATABASE IF EXISTS "{make_url(prefect_url).database}" WITH (FORCE)', timeout=3)
    except Exception:  # dropped by the next run (its owner is gone by then)
        pass


def _orphans(url) -> list[str]:
    """``DROP`` commands for the Prefect databases of test runs whose process is gone (where processes can be
    looked up)."""
    if not os.path.isdir("/proc"):
        return []
    rows = admin(url, "SELECT datname FROM pg_database WHERE datname LIKE 'carepath\\_prefect\\_%'", timeout=3)
    return [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for (name,) in rows
            if (pid := name[len(PREFIX):]).isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}")]
