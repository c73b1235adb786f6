"""Commands on a PostgreSQL server's ``postgres`` database, outside a transaction (``CREATE`` / ``DROP DATABASE``,
roles): the one helper the test fixtures that make and drop databases share."""

from __future__ import annotations

import os

import psycopg
from sqlalchemy import URL, make_url

#: the server the tests use when ``CAREPATH_TEST_DATABASE_URL`` names none (a database here is made per use)
LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> URL:
    """The tests' PostgreSQL server (``CAREPATH_TEST_DATABASE_URL``'s, else the local default), its ``postgres``
    database."""
    configured = os.environ.get("CAREPATH_TEST_DATABASE_URL", "")
    base = configured if configured.startswith("postgresql") else LOCAL
    return make_url(base).set(drivername="postgresql", database="postgres")


def admin(url: URL | str, *commands: str, timeout: int = 10) -> list[tuple]:
    """Run ``commands`` in order on ``url``'s server (its ``postgres`` database, autocommit); the last rows read."""
    target = make_url(url).set(drivername="postgresql", database="postgres")
    rows: list[tuple] = []
    with psycopg.connect(target.render_as_string(hide_password=False), autocommit=True,
                         connect_timeout=timeout) as conn:
        for command in commands:
            cursor = conn.execute(command)
            rows = cursor.fetchall() if cursor.description else rows
    return rows
