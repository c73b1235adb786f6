"""The Alembic revisions build exactly the tables the SQLAlchemy models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from carepath.store import open_database, upgrade
from carepath.store.schema import Base


def test_migrated_database_matches_the_models(database_url):
    db = open_database(database_url)
    try:
        upgrade(db)
        with db.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        db.dispose()
