"""operator alerts (connector down: account out of balance, credentials refused)

Revision ID: 0004_sms
Revises: 0003_surveys
"""
from alembic import op
import sqlalchemy as sa


revision = "0004_sms"
down_revision = "0003_surveys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operator_alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("code", sa.String(length=128), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("emitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_operator_alerts_pending", "operator_alerts", ["emitted_at", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_operator_alerts_pending", table_name="operator_alerts")
    op.drop_table("operator_alerts")
