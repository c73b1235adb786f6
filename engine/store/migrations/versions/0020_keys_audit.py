"""key ring rotation and a hash-chained, append-only audit log (issue 22)

Revision ID: 0020_keys_audit
Revises: 0015_programmes
"""
import sqlalchemy as sa
from alembic import op

revision, down_revision = "0020_keys_audit", "0021_staff_consent"

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION carepath_audit_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('carepath.audit_purge', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END $$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    _ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    _AT = sa.DateTime(timezone=True)
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("patient_id", _ID, nullable=True))
        batch.create_unique_constraint("uq_audit_log_seq", ["seq"])
    op.create_index("ix_audit_log_patient_id", "audit_log", ["patient_id"])
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("mrn_enc", sa.Text(), nullable=True))
    op.create_table(
        "key_rotations",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("target", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("started_at", _AT, nullable=False),
        sa.Column("finished_at", _AT, nullable=True),
    )
    op.create_table(
        "key_rotation_progress",
        sa.Column("rotation_id", _ID, primary_key=True),
        sa.Column("item", sa.String(128), primary_key=True),
        sa.Column("last_key", sa.JSON(), nullable=True),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("moved", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
    )
    op.create_table(
        "audit_anchors",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("entries", sa.Integer(), nullable=False),
    )
    _chain_existing()
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
                   "FOR EACH ROW EXECUTE FUNCTION carepath_audit_append_only()")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                       f"BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: {verb} refused'); END")


def _chain_existing() -> None:
    """Put the entries written before this migration on the chain, in the order they were written."""
    from carepath.store.audit import GENESIS, chain_hash, canonical

    from carepath.store.schema import UTCDateTime

    conn = op.get_bind()
    log = sa.table("audit_log", sa.column("id"), sa.column("at", UTCDateTime()), sa.column("actor"), sa.column("action"),
                   sa.column("entity"), sa.column("entity_id"), sa.column("detail", sa.JSON()),
                   sa.column("seq"), sa.column("prev_hash"), sa.column("hash"), sa.column("patient_id"))
    rows = conn.execute(sa.select(log.c.id, log.c.at, log.c.actor,
                                  log.c.action, log.c.entity, log.c.entity_id, log.c.detail)
                        .order_by(log.c.id)).all()
    prev = GENESIS
    for seq, row in enumerate(rows, 1):
        patient = int(row.entity_id) if row.entity == "patient" and (row.entity_id or "").isdigit() else None
        digest = chain_hash(prev, canonical(seq=seq, at=row.at, actor=row.actor, action=row.action,
                                            entity=row.entity, entity_id=row.entity_id, patient_id=patient,
                                            detail=row.detail))
        conn.execute(log.update().where(log.c.id == row.id).values(seq=seq, prev_hash=prev, hash=digest,
                                                                   patient_id=patient))
        prev = digest


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS carepath_audit_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    op.drop_table("audit_anchors")
    op.drop_table("key_rotation_progress")
    op.drop_table("key_rotations")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("mrn_enc")
    op.drop_index("ix_audit_log_patient_id", "audit_log")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_constraint("uq_audit_log_seq", type_="unique")
        for column in ("patient_id", "hash", "prev_hash", "seq"):
            batch.drop_column(column)
