"""experiments: each patient's arm of a journey experiment (issue 23)

Revision ID: 0023_experiments
Revises: 0022_rights
"""
import sqlalchemy as sa
from alembic import op

revision, down_revision = "0023_experiments", "0022_rights"


def upgrade() -> None:
    op.create_table(
        "experiment_assignments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("journey", sa.String(128), nullable=False),
        sa.Column("experiment", sa.String(128), nullable=False),
        sa.Column("patient_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.ForeignKey("patients.id"),
                  nullable=False),
        sa.Column("arm", sa.String(64), nullable=False),
        sa.Column("step", sa.String(128), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("touchpoint_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("journey", "experiment", "patient_id", name="uq_experiment_assignment"),
    )
    op.create_index("ix_experiment_assignments_patient_id", "experiment_assignments", ["patient_id"])


def downgrade() -> None:
    op.drop_index("ix_experiment_assignments_patient_id", "experiment_assignments")
    op.drop_table("experiment_assignments")
