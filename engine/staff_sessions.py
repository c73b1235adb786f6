"""Staff logins: expiring, revocable sessions, and refused logins limited per account and per source.

Logging in with an account's name and its configured secret gives a fresh random session token (the
staff page keeps it in its cookie); the store keeps only its SHA-256 with the time it ends
(``[accounts] session_ttl``, 12 hours). ``carepath staff revoke NAME`` ends every session of a member
at once, ``--session ID`` one of them. A refused login is recorded: ``max_failures`` (5) of one account
within ``failure_window`` (15 minutes) lock that account, ``source_max_failures`` (20) from one address
lock that address out of every account, until the window has passed; a locked login is refused even
with the right secret. The rows live in the database, so the limits hold across worker processes.
Logins, refusals, lock-outs and revocations are audit-logged (never the secret).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update

from carepath.store.audit import audit
from carepath.store.staff_schema import StaffLoginFailure, StaffSession

if TYPE_CHECKING:
    from carepath.engine import Engine


class LoginRefused(Exception):
    """A login that did not succeed; ``locked`` when a limit refused it whatever the secret."""

    def __init__(self, message: str, *, locked: bool = False) -> None:
        super().__init__(message)
        self.locked = locked


@dataclass(frozen=True)
class SessionInfo:
    """A login session as ``carepath staff sessions`` lists it (never the token)."""

    id: int
    member: str
    source: str | None
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None

    def live(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def login(engine: "Engine", name: str, secret: str, source: str) -> str:
    """A new session token for account ``name`` with ``secret``, asked from address ``source``;
    :class:`LoginRefused` otherwise (the reason never tells whether the account exists)."""
    settings = engine.config.accounts
    now = engine.clock.now()
    since = now - settings.failure_window
    name, source = name.strip()[:128], (source or "unknown")[:64]
    refusal: LoginRefused | None = None
    with engine.db.begin() as conn:  # a refusal is committed (it counts towards the locks), then raised
        per_member = _failures(conn, StaffLoginFailure.member == name, since)
        per_source = _failures(conn, StaffLoginFailure.source == source, since)
        account = engine.config.staff.get(name)
        expected = account.token.get_secret_value() if account is not None else secrets.token_urlsafe(24)
        if per_member >= settings.max_failures or per_source >= settings.source_max_failures:
            which = "account" if per_member >= settings.max_failures else "address"
            audit(conn, actor=f"staff:{name}", action="staff.login_locked", entity="staff", entity_id=name, at=now,
                  detail={"source": source, "locked": which})
            refusal = LoginRefused(f"too many refused logins for this {which}: try again in "
                                   f"{int(settings.failure_window.total_seconds() // 60)} minutes", locked=True)
        elif not (hmac.compare_digest(_digest(secret), _digest(expected)) and account is not None):
            conn.execute(insert(StaffLoginFailure).values(member=name, source=source, at=now))
            audit(conn, actor=f"staff:{name}", action="staff.login_refused", entity="staff", entity_id=name, at=now,
                  detail={"source": source})
            refusal = LoginRefused("unknown name or wrong secret")
        else:
            token = secrets.token_urlsafe(32)
            session_id = conn.execute(insert(StaffSession).values(
                member=name, token_hash=hashlib.sha256(token.encode()).hexdigest(), source=source, issued_at=now,
                expires_at=now + settings.session_ttl).returning(StaffSession.id)).scalar_one()
            audit(conn, actor=f"staff:{name}", action="staff.login", entity="staff", entity_id=name, at=now,
                  detail={"source": source, "session": session_id})
    if refusal is not None:
        raise refusal
    return token


def _failures(conn: Any, which: Any, since: datetime) -> int:
    return conn.execute(select(func.count()).select_from(StaffLoginFailure)
                        .where(which, StaffLoginFailure.at > since)).scalar_one()


def session_member(engine: "Engine", token: str | None) -> str | None:
    """The member whose live session ``token`` is: not expired, not revoked, account still configured."""
    if not token or len(token) > 256:
        return None
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    with engine.db.connect() as conn:
        row = conn.execute(select(StaffSession.member, StaffSession.expires_at, StaffSession.revoked_at)
                           .where(StaffSession.token_hash == digest)).first()
    if row is None or row.revoked_at is not None or row.expires_at <= engine.clock.now():
        return None
    return row.member if row.member in engine.config.staff else None


def logout(engine: "Engine", token: str | None) -> None:
    """End the session ``token`` (nothing when it is unknown or over)."""
    if token and len(token) <= 256:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        with engine.db.begin() as conn:
            name = conn.execute(select(StaffSession.member).where(StaffSession.token_hash == digest,
                                                                  StaffSession.revoked_at.is_(None))).scalar()
            if name is not None:
                _revoke(conn, engine.clock.now(), f"staff:{name}", StaffSession.token_hash == digest)


def revoke(engine: "Engine", *, by: str, member: str | None = None, session_id: int | None = None) -> int:
    """End every live session of ``member``, or session ``session_id``: how many were ended (audited)."""
    if (member is None) == (session_id is None):
        raise ValueError("revoke takes a member or a session id")
    which = StaffSession.member == member if member is not None else StaffSession.id == session_id
    with engine.db.begin() as conn:
        return _revoke(conn, engine.clock.now(), by, which)


def _revoke(conn: Any, now: datetime, by: str, which: Any) -> int:
    live = conn.execute(select(StaffSession.id, StaffSession.member).where(
        which, StaffSession.revoked_at.is_(None), StaffSession.expires_at > now)).all()
    for session_id, member in live:
        conn.execute(update(StaffSession).where(StaffSession.id == session_id)
                     .values(revoked_at=now, revoked_by=by[:128]))
        audit(conn, actor=by, action="staff.session_revoked", entity="staff", entity_id=member, at=now,
              detail={"session": session_id})
    return len(live)


def sessions(engine: "Engine", member: str | None = None, limit: int = 200) -> list[SessionInfo]:
    """Sessions, newest first (all members, or one)."""
    q = select(StaffSession.id, StaffSession.member, StaffSession.source, StaffSession.issued_at,
               StaffSession.expires_at, StaffSession.revoked_at, StaffSession.revoked_by)
    if member is not None:
        q = q.where(StaffSession.member == member)
    with engine.db.connect() as conn:
        return [SessionInfo(*row) for row in conn.execute(q.order_by(StaffSession.id.desc()).limit(limit))]
