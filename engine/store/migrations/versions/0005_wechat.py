"""connector_state (shared provider tokens, used one-time tokens); longer consent purposes (template:<name>)

Revision ID: 0005_wechat
Revises: 0004_sms
"""
from alembic import op
import sqlalchemy as sa

revision = "0005_wechat"
down_revision = "0004_sms"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connector_state",
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connector", "key"),
    )
    if op.get_bind().dialect.name != "sqlite":  # SQLite does not enforce VARCHAR lengths: no table rebuild
        op.alter_column("consents", "purpose", existing_type=sa.String(length=32), type_=sa.String(length=128),
                        existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("consents", "purpose", existing_type=sa.String(length=128), type_=sa.String(length=32),
                        existing_nullable=False)
    op.drop_table("connector_state")
