"""``carepath serve``'s local Prefect server keeps its state on PostgreSQL when carepath does: a SQLite-backed
Prefect server was seen answering nothing for a minute at a time under load (docs/operations.md)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import make_url

from carepath.prefect_database import SETTINGS, ensure_database, prefect_database, prefect_name
from carepath.prefect_server import PrefectServer, free_port
from tests.pg_admin import admin, server_url
from tests.serve.helpers import CountingSink, ServeProcess, serve_env, webhook_config


def _server_url():
    """The test PostgreSQL server, or a skip when none answers."""
    url = server_url()
    try:
        admin(url, "SELECT 1", timeout=3)
    except psycopg.Error:
        pytest.skip("no PostgreSQL server to create databases on")
    return url


@pytest.fixture
def carepath_db():
    """A fresh (empty) PostgreSQL database standing for carepath's, and its ``_prefect`` sibling dropped after."""
    server = _server_url()
    name = f"carepath_pfdb_{uuid.uuid4().hex[:8]}"
    admin(server, f'CREATE DATABASE "{name}"')
    yield server.set(drivername="postgresql", database=name)
    admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'DROP DATABASE IF EXISTS "{name}_prefect" WITH (FORCE)')


def _exists(server, name: str) -> bool:
    return bool(admin(server, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"))


def test_on_postgresql_the_prefect_server_gets_a_database_beside_carepaths(carepath_db) -> None:
    url = carepath_db.render_as_string(hide_password=False)
    first = prefect_database(url, environ={})
    target = f"{carepath_db.database}_prefect"
    assert _exists(carepath_db, target)
    assert first.said.startswith("Prefect's database: PostgreSQL ") and first.said.endswith(f"/{target} (created now)")
    given = make_url(first.env[SETTINGS[0]])
    assert (given.drivername, given.database, given.host) == ("postgresql+asyncpg", target, carepath_db.host)
    again = prefect_database(url, environ={})  # a restart uses it as it is
    assert again.env == first.env and again.said.endswith("(existing)")


def test_a_long_name_is_shortened_the_same_way_every_start(carepath_db) -> None:
    long = "a" * 60
    assert prefect_name(long) == "a" * 55 + "_prefect" and len(prefect_name("医" * 30).encode()) <= 63
    name = prefect_name(carepath_db.database)
    url = carepath_db.render_as_string(hide_password=False)
    assert ensure_database(url, name) is True and ensure_database(url, name) is False


def test_a_role_that_may_not_create_it_keeps_sqlite_and_says_what_to_do(carepath_db) -> None:
    role = f"carepath_nocreate_{uuid.uuid4().hex[:6]}"
    admin(carepath_db, f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        url = carepath_db.set(username=role).render_as_string(hide_password=False)
        chosen = prefect_database(url, environ={})
    finally:
        admin(carepath_db, f'DROP ROLE "{role}"')
    target = f"{carepath_db.database}_prefect"
    assert chosen.env == {} and not _exists(carepath_db, target)
    assert f"a SQLite file under its home, because PostgreSQL database {target} could not be used" in chosen.said
    assert "permission denied to create database" in chosen.said
    assert f'CREATE DATABASE "{target}"' in chosen.said and SETTINGS[0] in chosen.said


def test_a_database_the_operator_chose_is_kept_and_its_password_not_shown(tmp_path, monkeypatch) -> None:
    for name in SETTINGS:
        chosen = prefect_database("postgresql://carepath@db/care",
                                  environ={name: "postgresql+asyncpg://prefect:s3cret@db/prefect"})
        assert chosen.env == {} and "s3cret" not in chosen.said and f"(from {name})" in chosen.said
    # the older name reaches the server (the client's PREFECT_API_URL does not)
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://prefect@db/prefect")
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")
    env = PrefectServer(tmp_path, 4321).environment()
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"] == "postgresql+asyncpg://prefect@db/prefect"
    assert "PREFECT_API_URL" not in env and env["PREFECT_UI_API_URL"] == "http://127.0.0.1:4321/api"


def test_sqlite_and_options_asyncpg_cannot_take_stay_on_sqlite_with_the_reason() -> None:
    assert prefect_database("sqlite:////srv/carepath.db", environ={}).env == {}
    refused = prefect_database("postgresql://carepath@127.0.0.1:1/care?application_name=x", environ={})
    assert refused.env == {} and "connection options application_name have no asyncpg equivalent" in refused.said


def test_sslmode_becomes_asyncpgs_ssl(carepath_db) -> None:
    url = carepath_db.update_query_dict({"sslmode": "disable"}).render_as_string(hide_password=False)
    given = make_url(prefect_database(url, environ={}).env[SETTINGS[0]])
    assert dict(given.query) == {"ssl": "disable"}


@pytest.mark.serial  # a Prefect server of its own
def test_serve_on_postgresql_starts_prefect_on_postgresql(carepath_db, tmp_path) -> None:
    with CountingSink() as sink:
        env = serve_env({"CAREPATH_DATABASE_URL": carepath_db.render_as_string(hide_password=False),
                         "CAREPATH_HOME": str(tmp_path / "home"),
                         "CAREPATH_CONFIG": str(webhook_config(tmp_path / "c.toml", sink.url)),
                         "PREFECT_HOME": str(tmp_path / "prefect-home"), "CAREPATH_PREFECT_PORT": str(free_port())})
        serve = ServeProcess(env, tmp_path / "serve.log")
        try:
            serve.wait_ready(timeout=300)
            assert "Prefect's database: PostgreSQL " in serve.output()
            target = carepath_db.set(database=f"{carepath_db.database}_prefect")
            with psycopg.connect(target.render_as_string(hide_password=False)) as conn:
                deployments = conn.execute("SELECT name FROM deployment").fetchall()
            assert any(name.startswith("carepath-") for (name,) in deployments)  # serve's own, in that database
            assert not (tmp_path / "home" / "prefect" / "prefect.db").exists()
        finally:
            serve.terminate()
