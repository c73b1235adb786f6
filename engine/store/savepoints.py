"""Savepoints written through the driver under a fixed name: cheap enough for one per event.

SQLAlchemy's ``Connection.begin_nested`` names each savepoint anew (``sa_savepoint_N``), so its statement
misses the compiled cache and is built and compiled again every time; for the per-event savepoints of a
batch (:mod:`carepath.runtime.batch_ingest`) and the per-handler ones of a conversation turn that cost
more than the statements they guard. :func:`savepoint` keeps one name per use: each is released before
the next one of the same name begins.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Connection

from carepath.store.driver import driver_execute

_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@contextmanager
def savepoint(conn: Connection, name: str) -> Iterator[None]:
    """A ``SAVEPOINT name`` around the block: released when it ends, rolled back to (nothing of the block
    kept, the transaction usable again) and released when it raises, the error raised on."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"savepoint name {name!r}: lower-case letters, digits and _ only")
    driver_execute(conn, f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        driver_execute(conn, f"ROLLBACK TO SAVEPOINT {name}")
        driver_execute(conn, f"RELEASE SAVEPOINT {name}")
        raise
    driver_execute(conn, f"RELEASE SAVEPOINT {name}")
