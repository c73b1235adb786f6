"""Where ``carepath serve``'s local Prefect server keeps its state.

Prefect's default store is a SQLite file under its home. Under the load of a few workers running
flows every second or two, that file's single writer made the whole Prefect server answer nothing
for up to a minute at a time (Prefect waits up to 60 s for SQLite's write lock): every run, and so
every send, started a minute late (docs/operations.md, "Prefect server on PostgreSQL"). So:

- a database the operator chose (``PREFECT_SERVER_DATABASE_CONNECTION_URL``, or its older name
  ``PREFECT_API_DATABASE_CONNECTION_URL``) is used as it is;
- when carepath itself runs on PostgreSQL, the local server gets a database of its own on the same
  server, ``<carepath's database>_prefect``, created on first start (the role needs ``CREATEDB``
  once; an existing database is used as it is);
- otherwise, or when that database cannot be created, Prefect keeps its SQLite file, and the line
  printed at start says why and what to set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.engine import URL, make_url

from carepath.store.database import open_database, shown_url

#: the Prefect settings naming its server's database (the current name first)
SETTINGS = ("PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_API_DATABASE_CONNECTION_URL")
SUFFIX = "_prefect"
MAX_NAME = 63  # bytes of a PostgreSQL identifier
#: libpq's ``sslmode`` values, which asyncpg takes as ``ssl``
_SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


@dataclass(frozen=True)
class PrefectDatabase:
    """What the local Prefect server is started with: ``env`` added to its environment, ``said`` told the operator."""

    said: str
    env: dict[str, str] = field(default_factory=dict)


def prefect_database(carepath_url: str, environ: Mapping[str, str] = os.environ) -> PrefectDatabase:
    """The database for a local Prefect server of the carepath installation on ``carepath_url``."""
    for name in SETTINGS:
        if environ.get(name):
            return PrefectDatabase(f"Prefect's database: {shown_url(environ[name])} (from {name})")
    url = make_url(carepath_url)
    if url.get_backend_name() != "postgresql":
        return PrefectDatabase("Prefect's database: a SQLite file under its home (carepath runs on SQLite; for "
                               "several workers put Prefect on PostgreSQL: docs/operations.md)")
    target = url.set(database=prefect_name(url.database or ""))
    try:
        asyncpg_url = _asyncpg(target)
        created = ensure_database(carepath_url, target.database)
    except Exception as exc:  # noqa: BLE001 - any refusal is told, and Prefect keeps SQLite
        cause = getattr(exc, "orig", None) or exc  # the driver's own words, not SQLAlchemy's wrapping
        reason = " ".join(str(cause).split())[:300]
        return PrefectDatabase(f"Prefect's database: a SQLite file under its home, because PostgreSQL database "
                               f"{target.database} could not be used ({type(cause).__name__}: {reason}). Under load a "
                               f"SQLite-backed Prefect server can stop answering for up to a minute: create it "
                               f"(CREATE DATABASE \"{target.database}\") or set {SETTINGS[0]}")
    how = "created now" if created else "existing"
    return PrefectDatabase(f"Prefect's database: PostgreSQL {shown_url(target.render_as_string(hide_password=False))} "
                           f"({how})", {SETTINGS[0]: asyncpg_url})


def prefect_name(database: str) -> str:
    """``<database>_prefect``, the carepath database's name shortened to keep within PostgreSQL's 63 bytes."""
    stem = database.encode()[:MAX_NAME - len(SUFFIX)].decode(errors="ignore")
    return f"{stem}{SUFFIX}"


def ensure_database(carepath_url: str, name: str) -> bool:
    """Create database ``name`` on the PostgreSQL server of ``carepath_url`` unless it exists; whether it was created.

    Two workers starting at once may both try: the one whose ``CREATE`` loses finds the database there and uses it."""
    engine = open_database(carepath_url)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            exists = text("SELECT 1 FROM pg_database WHERE datname = :n")
            if conn.execute(exists, {"n": name}).first():
                return False
            try:
                conn.execute(text(f"CREATE DATABASE {conn.dialect.identifier_preparer.quote(name)}"))
            except DBAPIError:
                if conn.execute(exists, {"n": name}).first():  # made meanwhile by another worker
                    return False
                raise
            return True
    finally:
        engine.dispose()


def _asyncpg(url: URL) -> str:
    """``url`` for Prefect's asyncpg driver (libpq's ``sslmode`` becomes asyncpg's ``ssl``); other query options
    are refused (asyncpg would not know them)."""
    query = dict(url.query)
    mode = query.pop("sslmode", None)
    if query:
        raise ValueError(f"connection options {', '.join(sorted(query))} have no asyncpg equivalent")
    if mode is not None:
        if mode not in _SSL_MODES:
            raise ValueError(f"sslmode={mode} is not one of {', '.join(sorted(_SSL_MODES))}")
        query["ssl"] = mode
    return url.set(drivername="postgresql+asyncpg", query=query).render_as_string(hide_password=False)
