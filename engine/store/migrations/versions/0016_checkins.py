"""check-ins (打卡) and readings (vitals.reading), values encrypted

Revision ID: 0016_checkins
Revises: 0015_programmes
"""
import sqlalchemy as sa
from alembic import op

revision, down_revision = "0016_checkins", "0018_conversations"


def upgrade() -> None:
    _ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as in 0001: SQLite keeps INTEGER ids
    _AT = sa.DateTime(timezone=True)
    op.create_table(
        "checkins",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("patient_id", _ID, sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("enrollment_id", _ID, sa.ForeignKey("enrollments.id"), nullable=False),
        sa.Column("journey", sa.String(128), nullable=False),
        sa.Column("step", sa.String(128), nullable=False),
        sa.Column("checkin", sa.String(64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("measure", sa.String(32), nullable=True),
        sa.Column("value_enc", sa.Text(), nullable=True),
        sa.Column("unit", sa.String(16), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("touchpoint_id", _ID, nullable=True),
        sa.Column("event_id", _ID, nullable=True, unique=True),
        sa.Column("at", _AT, nullable=False),
    )
    op.create_index("ix_checkins_patient", "checkins", ["patient_id", "at"])
    op.create_index("ix_checkins_enrollment", "checkins", ["enrollment_id", "step", "day"])
    op.create_table(
        "readings",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("patient_id", _ID, sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("event_id", _ID, nullable=False, unique=True),
        sa.Column("measure", sa.String(32), nullable=False),
        sa.Column("value_enc", sa.Text(), nullable=True),
        sa.Column("unit", sa.String(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=True),
        sa.Column("measured_at", _AT, nullable=False),
        sa.Column("received_at", _AT, nullable=False),
    )
    op.create_index("ix_readings_patient", "readings", ["patient_id", "measured_at"])


def downgrade() -> None:
    op.drop_index("ix_readings_patient", "readings")
    op.drop_table("readings")
    op.drop_index("ix_checkins_enrollment", "checkins")
    op.drop_index("ix_checkins_patient", "checkins")
    op.drop_table("checkins")
