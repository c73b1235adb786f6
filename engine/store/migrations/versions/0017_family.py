"""family and guardians: related persons of a patient (contacts encrypted), the recipient of a touchpoint

Revision ID: 0017_family
Revises: 0015_programmes
"""
import sqlalchemy as sa
from alembic import op

revision, down_revision = "0017_family", "0016_checkins"


def upgrade() -> None:
    _ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # as in 0001: SQLite keeps INTEGER ids
    _AT = sa.DateTime(timezone=True)
    op.create_table(
        "related_persons",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("patient_id", _ID, sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("ref", sa.String(128), nullable=False),
        sa.Column("relationship", sa.String(32), nullable=False),
        sa.Column("guardian", sa.Boolean(), nullable=False),
        sa.Column("name_enc", sa.Text(), nullable=True),
        sa.Column("phone_enc", sa.Text(), nullable=True),
        sa.Column("phone_hash", sa.String(64), nullable=True),
        sa.Column("openid_enc", sa.Text(), nullable=True),
        sa.Column("openid_hash", sa.String(64), nullable=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("marketing_consent", sa.Boolean(), nullable=False),
        sa.Column("unsubscribed_at", _AT, nullable=True),
        sa.Column("removed_at", _AT, nullable=True),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.UniqueConstraint("patient_id", "ref", name="uq_related_person_ref"),
    )
    op.create_index("ix_related_persons_patient_id", "related_persons", ["patient_id"])
    op.create_index("ix_related_persons_phone_hash", "related_persons", ["phone_hash"])
    op.create_index("ix_related_persons_openid_hash", "related_persons", ["openid_hash"])
    with op.batch_alter_table("touchpoints") as batch:
        batch.add_column(sa.Column("recipient", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("touchpoints") as batch:
        batch.drop_column("recipient")
    op.drop_index("ix_related_persons_openid_hash", "related_persons")
    op.drop_index("ix_related_persons_phone_hash", "related_persons")
    op.drop_index("ix_related_persons_patient_id", "related_persons")
    op.drop_table("related_persons")
