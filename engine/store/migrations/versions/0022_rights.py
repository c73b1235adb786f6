"""patient rights: when a patient's personal data was erased (issue 22)

Revision ID: 0022_rights
Revises: 0015_programmes
"""
import sqlalchemy as sa
from alembic import op

revision, down_revision = "0022_rights", "0017_family"


def upgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.drop_column("erased_at")
