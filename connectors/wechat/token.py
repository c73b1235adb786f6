"""The access token: fetched from ``stable_token``, shared by every worker through the database.

One row of ``connector_state`` per connector holds the token (encrypted with
the engine's key), its expiry and a version. A worker that finds the token
missing or within ``margin`` seconds of expiry takes a short lease on the row
with a compare-and-set on its version; only the lease holder calls WeChat,
the others keep using the still valid token or wait for the new one. The
row's ``updated_at`` dates the last refresh attempt: within the margin a
still valid token is re-checked with WeChat at most every ``RECHECK`` seconds. Without
a database (an unbound channel) the same happens in memory.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import select, update

from carepath.plugins.contracts import ErrorKind
from carepath.store.schema import ConnectorState

from carepath.connectors.wechat.state import insert_new

KEY = "access_token"
#: while a token is within the margin but still valid, ask WeChat again at most this often (or a quarter
#: of the margin, if shorter): stable_token may keep handing out the same token until it expires
RECHECK = 30.0
#: errcodes meaning "this access token is not (or no longer) valid"
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})


class ApiError(Exception):
    """A WeChat API call failed (no token, HTTP trouble, an errcode); ``kind`` says whether to retry later."""

    def __init__(self, kind: ErrorKind, code: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code


@dataclass(frozen=True)
class Issued:
    """A token and the moment (epoch seconds) it expires."""

    token: str
    expires_at: float


@dataclass(frozen=True)
class _Cached:
    """The shared row as one worker reads it."""

    issued: Issued | None
    version: int
    leased: bool  # some worker holds the refresh lease
    checked_at: float  # last refresh attempt (epoch seconds)


Fetch = Callable[[bool], Issued]  # force_refresh -> a new token (raises ApiError)


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


class AccessTokens:
    """The current access token of one connector (thread-safe; shared through the database once bound)."""

    def __init__(self, connector: str, fetch: Fetch, *, margin: float, lease: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.connector = connector
        self._fetch = fetch
        self.margin = margin
        self.lease = lease
        self._clock = clock
        self._owner = f"{connector[:40]}-{uuid.uuid4().hex[:12]}"
        self._db: Any = None
        self._cipher: Any = None
        self._memory: Issued | None = None
        self._mem_lease = 0.0
        self._mem_checked = 0.0
        self._lock = threading.Lock()

    def bind(self, db: Any, cipher: Any) -> None:
        """Share the token through ``connector_state`` in ``db`` (encrypted with ``cipher``)."""
        self._db, self._cipher = db, cipher

    # -- public -------------------------------------------------------------------------

    def get(self) -> str:
        """A token valid for at least ``margin`` seconds, refreshed first when needed."""
        return self._obtain(rejected=None)

    def replace(self, rejected: str) -> str:
        """A token other than ``rejected`` (WeChat answered 40001/40014/42001 to it)."""
        return self._obtain(rejected=rejected)

    # -- the refresh protocol -----------------------------------------------------------

    def _obtain(self, rejected: str | None) -> str:
        deadline = self._clock() + self.lease
        while True:
            now = self._clock()
            cached = self._read()
            current = cached.issued
            if current is not None and current.token != rejected:
                waiting = cached.leased or now - cached.checked_at < min(RECHECK, self.margin / 4)
                if current.expires_at - self.margin > now or (waiting and current.expires_at > now):
                    return current.token
            if not cached.leased and self._take_lease(cached.version, now):
                return self._refresh(rejected)
            if now >= deadline:
                raise ApiError(ErrorKind.RETRYABLE, "token_busy", "another worker is refreshing the access token")
            time.sleep(0.05)

    def _refresh(self, rejected: str | None) -> str:
        try:
            issued = self._fetch(False)
            if rejected is not None and issued.token == rejected:
                issued = self._fetch(True)  # the platform still hands out the token it refuses
        except BaseException:
            self._release(None)
            raise
        self._release(issued)
        return issued.token

    # -- storage: the database when bound, else memory ---------------------------------

    def _read(self) -> _Cached:
        now = self._clock()
        if self._db is None:
            with self._lock:
                return _Cached(self._memory, 0, self._mem_lease > now, self._mem_checked)
        with self._db.connect() as conn:
            row = conn.execute(select(ConnectorState.value, ConnectorState.expires_at, ConnectorState.version,
                                      ConnectorState.lease_until, ConnectorState.updated_at).where(
                ConnectorState.connector == self.connector, ConnectorState.key == KEY)).first()
        if row is None:
            return _Cached(None, -1, False, 0.0)
        token = self._cipher.decrypt(row.value) if row.value else None
        issued = Issued(token, row.expires_at.timestamp()) if token and row.expires_at else None
        leased = row.lease_until is not None and row.lease_until.timestamp() > now
        return _Cached(issued, row.version, leased, row.updated_at.timestamp())

    def _take_lease(self, version: int, now: float) -> bool:
        until = _utc(now + self.lease)
        if self._db is None:
            with self._lock:
                if self._mem_lease > now:
                    return False
                self._mem_lease = now + self.lease
                return True
        with self._db.begin() as conn:
            if version < 0:
                insert_new(conn, self.connector, KEY, None, _utc(now))
                version = 0
            taken = conn.execute(update(ConnectorState).where(
                ConnectorState.connector == self.connector, ConnectorState.key == KEY,
                ConnectorState.version == version,
                (ConnectorState.lease_until.is_(None)) | (ConnectorState.lease_until < _utc(now)))
                .values(lease_owner=self._owner, lease_until=until))
            return taken.rowcount == 1

    def _release(self, issued: Issued | None) -> None:
        """Store ``issued`` (when given) and end the lease; either way the refresh attempt is dated."""
        if self._db is None:
            with self._lock:
                if issued is not None:
                    self._memory = issued
                self._mem_lease, self._mem_checked = 0.0, self._clock()
            return
        values: dict[str, Any] = dict(lease_owner=None, lease_until=None, updated_at=_utc(self._clock()))
        if issued is not None:
            values.update(value=self._cipher.encrypt(issued.token), expires_at=_utc(issued.expires_at),
                          version=ConnectorState.version + 1)
        with self._db.begin() as conn:
            conn.execute(update(ConnectorState).where(
                ConnectorState.connector == self.connector, ConnectorState.key == KEY,
                ConnectorState.lease_owner == self._owner).values(**values))


def lease_seconds(timeout: float) -> float:
    """How long a refresh may hold the lease: the HTTP call twice over, plus slack."""
    return 2 * timeout + 2

