"""staff login sessions and refused logins; the consent ledger's via, recorded_by and reason

Revision ID: 0021_staff_consent
Revises: 0015_programmes
"""
import sqlalchemy as sa
from alembic import op

revision, down_revision = "0021_staff_consent", "0019_wecom"


def upgrade() -> None:
    _ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as in 0001: SQLite keeps INTEGER ids
    _AT = sa.DateTime(timezone=True)
    op.create_table(
        "staff_sessions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("member", sa.String(128), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("issued_at", _AT, nullable=False),
        sa.Column("expires_at", _AT, nullable=False),
        sa.Column("revoked_at", _AT, nullable=True),
        sa.Column("revoked_by", sa.String(128), nullable=True),
    )
    op.create_index("ix_staff_sessions_member", "staff_sessions", ["member"])
    op.create_table(
        "staff_login_failures",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("member", sa.String(128), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("at", _AT, nullable=False),
    )
    op.create_index("ix_staff_login_failures_member", "staff_login_failures", ["member", "at"])
    op.create_index("ix_staff_login_failures_source", "staff_login_failures", ["source", "at"])
    with op.batch_alter_table("consents") as batch:
        batch.add_column(sa.Column("via", sa.String(16), nullable=True))
        batch.add_column(sa.Column("recorded_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("reason", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consents") as batch:
        batch.drop_column("reason")
        batch.drop_column("recorded_by")
        batch.drop_column("via")
    op.drop_index("ix_staff_login_failures_source", "staff_login_failures")
    op.drop_index("ix_staff_login_failures_member", "staff_login_failures")
    op.drop_table("staff_login_failures")
    op.drop_index("ix_staff_sessions_member", "staff_sessions")
    op.drop_table("staff_sessions")
