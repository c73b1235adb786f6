"""WeCom connector: external contacts (patient <-> external_userid <-> staff member); longer delivery statuses
(``pending_confirmation``)

Revision ID: 0019_wecom
Revises: 0015_programmes
"""
import sqlalchemy as sa
from alembic import op

revision, down_revision = "0019_wecom", "0015_programmes"
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as in 0001: SQLite keeps INTEGER ids
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.alter_column("status", type_=sa.String(24), existing_type=sa.String(16), existing_nullable=False)
    op.create_table(
        "wecom_contacts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("external_key", sa.String(64), nullable=False),
        sa.Column("external_userid_enc", sa.Text(), nullable=False),
        sa.Column("staff_userid", sa.String(64), nullable=False),
        sa.Column("patient_id", _ID, sa.ForeignKey("patients.id"), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.UniqueConstraint("connector", "external_key", "staff_userid", name="uq_wecom_contact"),
    )
    op.create_index("ix_wecom_contacts_patient_id", "wecom_contacts", ["patient_id"])
    op.create_index("ix_wecom_contacts_patient", "wecom_contacts", ["connector", "patient_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_wecom_contacts_patient", "wecom_contacts")
    op.drop_index("ix_wecom_contacts_patient_id", "wecom_contacts")
    op.drop_table("wecom_contacts")
    with op.batch_alter_table("deliveries") as batch:
        batch.alter_column("status", type_=sa.String(16), existing_type=sa.String(24), existing_nullable=False)
