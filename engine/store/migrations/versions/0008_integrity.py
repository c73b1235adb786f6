"""delivery integrity: claim counts, one delivery row per provider call, early receipts

Revision ID: 0008_integrity
Revises: 0007_semantics
"""
import sqlalchemy as sa
from alembic import op

revision, down_revision = "0008_integrity", "0007_semantics"
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as in 0001: SQLite keeps INTEGER ids


def upgrade() -> None:
    with op.batch_alter_table("touchpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claims", sa.Integer(), nullable=False, server_default="0"))
    # Fallback channels used to share one attempt number; an attempt is now a provider call.
    op.execute("UPDATE deliveries SET attempt = (SELECT count(*) FROM deliveries d2 "
               "WHERE d2.touchpoint_id = deliveries.touchpoint_id AND d2.id <= deliveries.id)")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_delivery_attempt", ["touchpoint_id", "attempt"])
    op.create_table(
        "early_receipts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("provider_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("early_receipts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_early_receipts_provider_id"), ["provider_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("early_receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_early_receipts_provider_id"))
    op.drop_table("early_receipts")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("uq_delivery_attempt", type_="unique")
    with op.batch_alter_table("touchpoints", schema=None) as batch_op:
        batch_op.drop_column("claims")
