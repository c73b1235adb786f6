"""conversations: turns, health managers, complaint cases; staff tasks get an owner and a turn

Revision ID: 0018_conversations
Revises: 0015_programmes
"""
import sqlalchemy as sa
from alembic import op

revision, down_revision = "0018_conversations", "0020_keys_audit"


def upgrade() -> None:
    _ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as in 0001: SQLite keeps INTEGER ids
    _AT = sa.DateTime(timezone=True)
    op.create_table(
        "conversation_turns",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("patient_id", _ID, sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("event_id", _ID, nullable=True, unique=True),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("text_enc", sa.Text(), nullable=True),
        sa.Column("at", _AT, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("intent", sa.String(32), nullable=True),
        sa.Column("rule", sa.String(128), nullable=True),
        sa.Column("task_id", _ID, nullable=True),
        sa.Column("complaint_id", _ID, nullable=True),
        sa.Column("reply_to", _ID, nullable=True),
        sa.Column("via", sa.String(32), nullable=True),
        sa.Column("provider_id", sa.String(128), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("routed_at", _AT, nullable=True),
    )
    op.create_index("ix_conversation_turns_patient", "conversation_turns", ["patient_id", "at"])
    op.create_index("ix_conversation_turns_status", "conversation_turns", ["status", "at"])
    op.create_table(
        "health_managers",
        sa.Column("patient_id", _ID, sa.ForeignKey("patients.id"), primary_key=True),
        sa.Column("manager", sa.String(64), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("assigned_at", _AT, nullable=False),
    )
    op.create_index("ix_health_managers_manager", "health_managers", ["manager"])
    op.create_table(
        "complaint_cases",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("patient_id", _ID, sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("source_ref", sa.String(128), nullable=False, unique=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("summary_enc", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("task_id", _ID, nullable=True),
        sa.Column("opened_at", _AT, nullable=False),
        sa.Column("first_response_due_at", _AT, nullable=False),
        sa.Column("resolution_due_at", _AT, nullable=False),
        sa.Column("acknowledged_at", _AT, nullable=True),
        sa.Column("acknowledged_by", sa.String(64), nullable=True),
        sa.Column("resolved_at", _AT, nullable=True),
        sa.Column("resolved_by", sa.String(64), nullable=True),
        sa.Column("resolution_enc", sa.Text(), nullable=True),
        sa.Column("first_response_breached_at", _AT, nullable=True),
        sa.Column("resolution_breached_at", _AT, nullable=True),
        sa.Column("satisfaction_asked_at", _AT, nullable=True),
        sa.Column("satisfaction", sa.Integer(), nullable=True),
    )
    op.create_index("ix_complaint_cases_patient_id", "complaint_cases", ["patient_id"])
    op.create_index("ix_complaint_cases_opened_at", "complaint_cases", ["opened_at"])
    with op.batch_alter_table("staff_tasks") as batch:
        batch.add_column(sa.Column("owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("turn_id", _ID, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("staff_tasks") as batch:
        batch.drop_column("turn_id")
        batch.drop_column("owner")
    op.drop_index("ix_complaint_cases_opened_at", "complaint_cases")
    op.drop_index("ix_complaint_cases_patient_id", "complaint_cases")
    op.drop_table("complaint_cases")
    op.drop_index("ix_health_managers_manager", "health_managers")
    op.drop_table("health_managers")
    op.drop_index("ix_conversation_turns_status", "conversation_turns")
    op.drop_index("ix_conversation_turns_patient", "conversation_turns")
    op.drop_table("conversation_turns")
