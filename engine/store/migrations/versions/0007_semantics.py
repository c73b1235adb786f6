"""event semantics: event status and holds, anchor change times, touchpoint anchor values

Revision ID: 0007_semantics
Revises: 0006_cli
"""
from alembic import op
import sqlalchemy as sa

revision = "0007_semantics"
down_revision = "0006_cli"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("status", sa.String(length=16), server_default="applied", nullable=False))
        batch.add_column(sa.Column("mrn_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("hold_key", sa.String(length=255), nullable=True))
        batch.create_index("ix_events_held", ["status", "mrn_hash"])
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("anchor_times", sa.JSON(), nullable=True))
    with op.batch_alter_table("touchpoints") as batch:
        batch.add_column(sa.Column("anchor_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("touchpoints") as batch:
        batch.drop_column("anchor_at")
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("anchor_times")
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_held")
        batch.drop_column("hold_key")
        batch.drop_column("mrn_hash")
        batch.drop_column("status")
