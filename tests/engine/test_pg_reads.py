"""Reads without a transaction on PostgreSQL (``reads_only``): statements stay prepared, and the pooled connection
goes back to transactions, so a write after a read is still all-or-nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from carepath.store.sqlite_gate import reads_only
from carepath.store.database import open_database
from carepath.store.sqlite_gate import reading
from tests.conftest import ON_POSTGRES

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="psycopg's prepared statements and autocommit")


def test_a_write_after_a_read_on_the_same_pooled_connection_is_still_a_transaction(database_url):
    db = open_database(database_url)
    try:
        with db.connect() as conn:
            reads_only(conn).exec_driver_sql("SELECT 1").fetchall()
            used = conn.connection.driver_connection
        with reading(db) as conn:
            conn.exec_driver_sql("SELECT 1").fetchall()
        with pytest.raises(RuntimeError):
            with db.begin() as conn:
                assert conn.connection.driver_connection is used, "the pool gave back the connection just read on"
                conn.execute(text("INSERT INTO early_receipts (provider_id, status, received_at) "
                                  "VALUES ('x', 'delivered', now())"))
                raise RuntimeError("the write fails half way")
        with db.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM early_receipts").scalar() == 0, "the insert rolled back"
    finally:
        db.dispose()


def test_a_read_repeated_on_a_connection_is_prepared_once(database_url):
    db = open_database(database_url)
    try:
        for _ in range(8):  # psycopg prepares a statement on its fifth run on a connection
            with db.connect() as conn:
                reads_only(conn).exec_driver_sql("SELECT count(*) FROM touchpoints WHERE status = %s",
                                                 ("scheduled",)).fetchall()
        with db.connect() as conn:
            prepared = conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars().all()
        assert any("FROM touchpoints WHERE status" in s for s in prepared), \
            "the statement survived the connection's trips back to the pool"
    finally:
        db.dispose()
