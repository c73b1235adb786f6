"""open-ended programmes: patient preferences and birthday calendar, paused enrollments, planning horizons

Revision ID: 0015_programmes
Revises: 0013_portrait
"""
import sqlalchemy as sa
from alembic import op

revision, down_revision = "0015_programmes", "0013_portrait"


def upgrade() -> None:
    _ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as in 0001: SQLite keeps INTEGER ids
    _AT = sa.DateTime(timezone=True)
    with op.batch_alter_table("patients") as batch:
        batch.add_column(sa.Column("preferences_enc", sa.Text(), nullable=True))
        batch.add_column(sa.Column("birthday_calendar", sa.String(8), nullable=True))
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("paused_since", _AT, nullable=True))
        batch.add_column(sa.Column("pause_changed_at", _AT, nullable=True))
    op.create_table(
        "horizons",
        sa.Column("enrollment_id", _ID, sa.ForeignKey("enrollments.id"), primary_key=True),
        sa.Column("step", sa.String(128), primary_key=True),
        sa.Column("patient_id", _ID, sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("planned_until", _AT, nullable=True),
        sa.Column("updated_at", _AT, nullable=False),
    )
    op.create_index("ix_horizons_patient_id", "horizons", ["patient_id"])
    op.create_index("ix_horizons_due", "horizons", ["step", "planned_until"])


def downgrade() -> None:
    op.drop_index("ix_horizons_due", "horizons")
    op.drop_index("ix_horizons_patient_id", "horizons")
    op.drop_table("horizons")
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("pause_changed_at")
        batch.drop_column("paused_since")
    with op.batch_alter_table("patients") as batch:
        batch.drop_column("birthday_calendar")
        batch.drop_column("preferences_enc")
