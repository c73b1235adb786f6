"""inbound provenance and intent: who delivered each event (events API system, connector, listener), and what
an inbound text meant (an unsubscribe reply)

Revision ID: 0010_hostile
Revises: 0008_integrity
"""
import sqlalchemy as sa
from alembic import op

revision, down_revision = "0010_hostile", "0008_integrity"


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("received_via", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("intent", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("intent")
        batch_op.drop_column("received_via")
