"""Tables of staff logins: sessions (expiring, revocable) and refused logins (for the lock-outs).

Imported by :mod:`carepath.store.schema`, so ``Base.metadata`` always holds them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from carepath.store.schema import Base, BigId, UTCDateTime


class StaffSession(Base):
    """One staff page login: the SHA-256 of its token (never the token), when it ends, who revoked it."""

    __tablename__ = "staff_sessions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member: Mapped[str] = mapped_column(String(128), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str | None] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(128))


class StaffLoginFailure(Base):
    """One refused staff login: the account name tried (cut to 128 characters) and the source address."""

    __tablename__ = "staff_login_failures"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_staff_login_failures_member", "member", "at"),
                      Index("ix_staff_login_failures_source", "source", "at"))
