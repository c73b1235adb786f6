"""Surveys and the staff work queue: responses, task notes, task claim/escalation columns

Revision ID: 0003_surveys
Revises: 0002_his
"""
from alembic import op
import sqlalchemy as sa

revision = "0003_surveys"
down_revision = "0002_his"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("staff_tasks") as batch:
        batch.add_column(sa.Column("priority", sa.String(length=16), nullable=False, server_default="normal"))
        batch.add_column(sa.Column("first_response_due_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("escalation_level", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("assigned_role", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("resolution", sa.Text(), nullable=True))
    op.create_table(
        "task_notes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("task_id", BigId, nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["staff_tasks.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_task_notes_task_id", "task_notes", ["task_id"])
    op.create_table(
        "survey_responses",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("touchpoint_id", BigId, nullable=True),
        sa.Column("patient_id", BigId, nullable=False),
        sa.Column("journey", sa.String(length=128), nullable=True),
        sa.Column("step", sa.String(length=128), nullable=True),
        sa.Column("survey", sa.String(length=128), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("nps", sa.Integer(), nullable=True),
        sa.Column("satisfaction", sa.Float(), nullable=True),
        sa.Column("red_flags", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("touchpoint_id"),
        sa.UniqueConstraint("provider", "external_id", name="uq_survey_response_external"),
    )
    op.create_index("ix_survey_responses_patient_id", "survey_responses", ["patient_id"])
    op.create_index("ix_survey_responses_received_at", "survey_responses", ["received_at"])


def downgrade() -> None:
    op.drop_table("survey_responses")
    op.drop_table("task_notes")
    with op.batch_alter_table("staff_tasks") as batch:
        for column in ("resolution", "closed_at", "escalated_at", "assigned_role", "escalation_level",
                       "claimed_at", "claimed_by", "first_response_due_at", "priority"):
            batch.drop_column(column)
