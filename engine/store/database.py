"""Opening the database: URL resolution, SQLite tuning and Alembic migrations."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.exceptions import InvalidTag
from sqlalchemy import Engine as SAEngine
from sqlalchemy import create_engine, event, inspect, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.pool import NullPool

from carepath.store.crypto import Cipher, KeyNotFound
from carepath.store.driver import driver_execute
from carepath.store.keyring import describe_ring_search, load_key_ring
from carepath.store.schema import Patient, StoreMeta
from carepath.store.sqlite_gate import READ_ONLY, GatedConnection, gate_for

if TYPE_CHECKING:
    from carepath.settings import Settings

FINGERPRINT = "key_fingerprint"
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for SQLite's write lock before the database counts as busy
#: pages written to the WAL between automatic checkpoints (SQLite's default is 1,000): 16 MiB of WAL at 4 KiB pages
WAL_CHECKPOINT_PAGES = 4000


class StoreError(Exception):
    """The store cannot be opened as asked; the message says what and where."""


class DatabaseNotFound(StoreError):
    """A command that only reads found no carepath database at the URL."""


class KeyMismatch(StoreError):
    """The key found is not the key the store's contact data is encrypted with."""


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    # The default 2 MB page cache is far smaller than the touchpoint indexes of a
    # busy hospital; random inserts into them would then go to disk.
    cur.execute("PRAGMA cache_size=-65536")
    cur.execute("PRAGMA temp_store=MEMORY")
    # Checkpoint the WAL every WAL_CHECKPOINT_PAGES pages written instead of every 1,000: a page written again and
    # again between two checkpoints (the touchpoint, index and counter pages a sweep keeps changing) is copied
    # into the database file once, not once per thousand pages (docs/performance.md, branch sqlite6)
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    cur.close()


def shown_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown as given
        return url


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (``None`` for other databases and ``:memory:``)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    return Path(path) if path and path != ":memory:" else None


def open_database(url: str, *, must_exist: bool = False) -> SAEngine:
    """Create the SQLAlchemy engine for ``url`` (SQLite file or PostgreSQL).

    ``must_exist`` refuses a SQLite file that is not there instead of creating it.
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None and must_exist and not path.is_file():
            raise DatabaseNotFound(f"no database at {path}")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # LIFO: a thread that opens one transaction after another gets the connection it just returned, whose page
        # cache is still good (SQLite drops a connection's whole cache when another connection has written; with
        # the default FIFO order two pooled connections took turns and each re-read every page it needed)
        engine = (create_engine(url, poolclass=NullPool) if ":memory:" in url else
                  create_engine(url, pool_size=8, pool_use_lifo=True, connect_args={"factory": GatedConnection}))
        event.listen(engine, "connect", _sqlite_pragmas)
        gate = gate_for(path) if path is not None and ":memory:" not in url else None

        # pysqlite's own transaction handling defers BEGIN; take the write lock
        # at the start so that one claim transaction is one writer. This process's
        # threads take it in turn through the file's gate (see carepath.store.sqlite_gate).
        @event.listens_for(engine, "begin")
        def _begin(conn):  # noqa: ANN001
            # (on the driver's cursor: this runs for every transaction, see carepath.store.driver)
            if conn.get_execution_options().get(READ_ONLY):  # carepath.store.sqlite_gate.reading: no write lock
                driver_execute(conn, "BEGIN", begin=False)
                return
            dbapi_conn = conn.connection.dbapi_connection
            if isinstance(dbapi_conn, GatedConnection):
                dbapi_conn.take_turn(BUSY_TIMEOUT_S)
            try:
                driver_execute(conn, "BEGIN IMMEDIATE", begin=False)
            except BaseException:
                if isinstance(dbapi_conn, GatedConnection):
                    dbapi_conn.end_turn()
                raise

        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn, _record):  # noqa: ANN001
            dbapi_conn.isolation_level = None
            if isinstance(dbapi_conn, GatedConnection):
                dbapi_conn.gate = gate

        return engine
    # LIFO: the most recently used connection again, with its statements prepared by psycopg (a statement is
    # prepared on a connection after five runs there) and idle ones left to time out
    engine = create_engine(url, pool_size=5, max_overflow=5, pool_use_lifo=True)
    event.listen(engine, "connect", _more_prepared)
    event.listen(engine, "checkin", _mark_idle)
    event.listen(engine, "checkout", _ping_if_idle(engine.dialect))
    return engine


#: statements psycopg keeps prepared (and counts towards preparing) per connection; its default of 100 is fewer
#: than the distinct statements a dispatcher and its follower planning run, so some were evicted before their
#: fifth run and parsed and planned afresh on every batch
PREPARED_MAX = 1000
#: a pooled PostgreSQL connection idle for longer than this is pinged before it is handed out (one empty round
#: trip); one checked in and out again sooner is not: the dispatcher's checkouts follow each other by milliseconds
PING_AFTER_IDLE_S = 1.0


def _more_prepared(dbapi_conn, _record) -> None:  # noqa: ANN001 - SQLAlchemy's listener signature
    dbapi_conn.prepared_max = PREPARED_MAX


def _mark_idle(_dbapi_conn, record) -> None:  # noqa: ANN001
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dialect):  # noqa: ANN001, ANN202
    """SQLAlchemy's pre-ping (the dialect's, outside any transaction), only for a connection that sat idle.

    A connection idle past :data:`PING_AFTER_IDLE_S` (a server restart, an idle timeout may have ended it) is
    pinged; a dead one raises :class:`DisconnectionError`, and the pool drops it and hands out another. One
    that died within the last second fails its first statement instead: the dispatcher's
    :class:`~carepath.runtime.outages.OutageGuard` runs that work again on a new connection.
    """

    def ping(dbapi_conn, record, _proxy) -> None:  # noqa: ANN001 - SQLAlchemy's listener signature
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:  # noqa: BLE001 - any failure of the ping: the connection is not to be used
            raise DisconnectionError(f"pooled connection lost while idle: {type(exc).__name__}") from exc

    return ping


def alembic_config(engine: SAEngine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: SAEngine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    cfg = alembic_config(engine)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        command.upgrade(cfg, "head")


@dataclass
class Store:
    """An opened store: the database and the cipher for its contact data."""

    url: str
    db: SAEngine
    cipher: Cipher
    created_key: Path | None = None  # the key file generated for this new store, if one was


def open_store(settings: "Settings", url: str | None = None, *, read_only: bool = False,
               migrate: bool = True) -> Store:
    """Open the database at ``url`` (default: the settings') with the key the settings' rule finds.

    A writer migrates the schema, and generates a key file only for a store
    that has no recorded key and no patients yet. A reader (``read_only``)
    creates nothing: a missing database raises :class:`DatabaseNotFound`, a
    missing key :class:`KeyNotFound`. A key other than the one recorded in the
    store raises :class:`KeyMismatch`.
    """
    url = url or settings.resolved_database_url()
    db = open_database(url, must_exist=read_only)
    try:
        with db.connect() as conn:
            has_schema = inspect(conn).has_table("patients")
    except OperationalError as exc:
        db.dispose()
        raise StoreError(f"cannot open the database {shown_url(url)}: {exc.orig or exc}") from None
    if read_only and not has_schema:
        db.dispose()
        raise DatabaseNotFound(f"{shown_url(url)} is not a carepath database (it has no carepath tables)")
    if migrate and not read_only:
        upgrade(db)
    with db.connect() as conn:
        recorded, has_patients = _recorded_key(conn)
        active, retired = _ring_state(conn)
    fresh = recorded is None and not has_patients
    generate = fresh and not read_only and not settings.secret_key and not settings.key_path.exists()
    try:
        cipher = load_key_ring(settings, create=generate, active=active)
    except KeyNotFound as exc:
        db.dispose()
        if recorded:
            raise KeyNotFound(f"{exc}; this database was written with the key whose fingerprint is "
                              f"{recorded}") from None
        raise
    cipher.without(retired)
    cipher.follow(lambda: active_key_id(db))
    try:
        check_key(db, cipher, recorded, where=describe_ring_search(settings), record=not read_only)
    except KeyMismatch:
        db.dispose()
        raise
    return Store(url, db, cipher, settings.key_path if generate else None)


def _recorded_key(conn) -> tuple[str | None, bool]:  # noqa: ANN001
    """``(recorded fingerprint, whether any patient is stored)``, tolerating a store older than 0002."""
    tables = inspect(conn)
    recorded = None
    if tables.has_table(StoreMeta.__tablename__):
        recorded = conn.execute(select(StoreMeta.value).where(StoreMeta.name == FINGERPRINT)).scalar()
    has_patients = tables.has_table("patients") and conn.execute(select(Patient.id).limit(1)).first() is not None
    return recorded, has_patients


def _ring_state(conn) -> tuple[str | None, set[str]]:  # noqa: ANN001
    """The store's active key id and its retired key ids (``carepath keys``), tolerating an older store."""
    if not inspect(conn).has_table(StoreMeta.__tablename__):
        return None, set()
    from carepath.store.crypto_rotation import ACTIVE_KEY, meta, retired_keys

    return meta(conn, ACTIVE_KEY), retired_keys(conn)


def active_key_id(db: SAEngine) -> str | None:
    """The store's active key id, read outside any transaction (the cipher asks while one may be open)."""
    raw = db.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT value FROM store_meta WHERE name = 'active_key_id'")
        row = cur.fetchone()
        cur.close()
        raw.rollback()
        return row[0] if row else None
    except Exception:  # noqa: BLE001 - keep writing under the key in use; the next look comes soon
        return None
    finally:
        raw.close()


def check_key(db: SAEngine, cipher: Cipher, recorded: str | None, *, where: str, record: bool) -> None:
    """Refuse a key other than the store's; a store without a recorded key gets this one recorded."""
    if recorded is not None:
        if recorded not in cipher.fingerprints.values():
            found = ", ".join(f"{kid} {fp}" for kid, fp in cipher.fingerprints.items())
            raise KeyMismatch(f"wrong encryption key: this database was written with the key whose fingerprint "
                              f"is {recorded}, the key found has fingerprint {found}; "
                              f"looked in {where}")
        return
    with db.connect() as conn:
        sample = conn.execute(select(Patient.mrn_enc).limit(1)).scalar()
        if sample:
            try:
                cipher.decrypt(sample)
            except (InvalidTag, KeyError):  # another key, or data under a key id this key does not have
                raise KeyMismatch("wrong encryption key: the key found does not decrypt this database's "
                                  f"patients; looked in {where}") from None
        if not (record and inspect(conn).has_table(StoreMeta.__tablename__)):
            return
    try:
        with db.begin() as conn:
            conn.execute(insert(StoreMeta).values(name=FINGERPRINT, value=cipher.fingerprint))
    except IntegrityError:  # another process recorded its key first: it must be the same one
        with db.connect() as conn:
            check_key(db, cipher, _recorded_key(conn)[0], where=where, record=False)
