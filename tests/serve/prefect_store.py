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

from sqlalchemy import URL, make_url

PREFIX = "carepath_prefect_"
LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _admin_url() -> URL:
    configured = os.environ.get("CAREPATH_TEST_DATABASE_URL", "")
    base = configured if configured.startswith("postgresql") else LOCAL
    return make_url(base).set(drivername="postgresql", database="postgres")


def _connect(url: URL):
    import psycopg

    return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True, connect_timeout=3)


def create() -> Optional[str]:
    """A new empty database for the Prefect server (its ``asyncpg`` URL), or ``None`` when no PostgreSQL answers."""
    url = _admin_url()
    name = f"{PREFIX}{os.getpid()}"
    try:
        with _connect(url) as conn:
            _drop_orphans(conn)
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception:  # no PostgreSQL here (or not ours to use): Prefect keeps its SQLite file
        return None
    return url.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)


def drop(prefect_url: str) -> None:
    """Drop the database :func:`create` made (after its server has stopped)."""
    url = make_url(prefect_url)
    try:
        with _connect(url.set(drivername="postgresql", database="postgres")) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    except Exception:  # dropped by the next run (its owner is gone by then)
        pass


def _drop_orphans(conn) -> None:
    """Drop the Prefect databases of test runs whose process is gone (where processes can be looked up)."""
    if not os.path.isdir("/proc"):
        return
    rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (PREFIX.replace("_", "\\_") + "%",))
    for (name,) in rows.fetchall():
        pid = name[len(PREFIX):]
        if pid.isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
