"""patient portrait, segment membership, tracked links

Revision ID: 0013_portrait
Revises: 0008_integrity
"""
import sqlalchemy as sa
from alembic import op

revision, down_revision = "0013_portrait", "0010_hostile"
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as in 0001: SQLite keeps INTEGER ids
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "portraits",
        sa.Column("patient_id", _ID, sa.ForeignKey("patients.id"), primary_key=True),
        sa.Column("key_id", sa.String(32)),
        sa.Column("facts_enc", sa.Text()),
        sa.Column("admitted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("last_interaction_at", _AT),
        sa.Column("interaction_seq", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("programmes", sa.JSON(), nullable=False),
        sa.Column("segments", sa.JSON(), nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
    )
    op.create_index("ix_portraits_last_interaction_at", "portraits", ["last_interaction_at"])
    op.create_table(
        "portrait_counts",
        sa.Column("patient_id", _ID, sa.ForeignKey("patients.id"), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_at", _AT),
    )
    op.create_table(
        "portrait_days",
        sa.Column("patient_id", _ID, sa.ForeignKey("patients.id"), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("n", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_portrait_days_day", "portrait_days", ["day"])
    op.create_table(
        "segment_members",
        sa.Column("id", _ID, autoincrement=True, primary_key=True),
        sa.Column("segment", sa.String(128), nullable=False),
        sa.Column("patient_id", _ID, sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("entered_at", _AT, nullable=False),
        sa.Column("left_at", _AT),
    )
    op.create_index("ix_segment_members_patient_id", "segment_members", ["patient_id"])
    op.create_index("ix_segment_members_open", "segment_members", ["segment", "left_at", "patient_id"])
    op.create_table(
        "tracked_links",
        sa.Column("id", _ID, autoincrement=True, primary_key=True),
        sa.Column("url_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tracked_links")
    op.drop_index("ix_segment_members_open", "segment_members")
    op.drop_index("ix_segment_members_patient_id", "segment_members")
    op.drop_table("segment_members")
    op.drop_index("ix_portrait_days_day", "portrait_days")
    op.drop_table("portrait_days")
    op.drop_table("portrait_counts")
    op.drop_index("ix_portraits_last_interaction_at", "portraits")
    op.drop_table("portraits")
