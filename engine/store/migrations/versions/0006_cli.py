"""store_meta: the fingerprint of the key a store's contacts are encrypted with

Revision ID: 0006_cli
Revises: 0005_wechat
"""
from alembic import op
import sqlalchemy as sa

revision = "0006_cli"
down_revision = "0005_wechat"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("store_meta",
                    sa.Column("name", sa.String(length=64), nullable=False),
                    sa.Column("value", sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint("name"))


def downgrade() -> None:
    op.drop_table("store_meta")
