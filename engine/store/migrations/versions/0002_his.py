"""HIS sources: durable poll cursors; patient merges

Revision ID: 0002_his
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002_his"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "his_cursors",
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source"),
    )
    with op.batch_alter_table("patients") as batch:
        batch.add_column(sa.Column("merged_into", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.drop_column("merged_into")
    op.drop_table("his_cursors")
