"""Audit hash chain: seq/prev_hash/hash on events, the chain head, and (PostgreSQL) a trigger
that refuses UPDATE and DELETE on audit_events.

Existing events are chained in id order at upgrade time, with the key the application uses
(passed by `migrate()` as the `audit_chain_key` attribute).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from wakedock.audit.chain import GENESIS, AuditChain, ChainedFields

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

REFUSE = """
CREATE OR REPLACE FUNCTION wakedock_audit_append_only() RETURNS trigger AS $$
BEGIN
  IF current_setting('wakedock.audit_archive', true) = 'on' AND TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION wakedock_audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION wakedock_audit_append_only();
"""


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(64), nullable=True))
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("base_seq", sa.BigInteger, nullable=False),
        sa.Column("base_hash", sa.String(64), nullable=False),
    )
    key = context.config.attributes.get("audit_chain_key")
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT * FROM audit_events ORDER BY id")).mappings().all()
    previous, seq = GENESIS, 0
    if rows:
        if not isinstance(key, bytes):
            raise RuntimeError("existing audit events need the audit chain key to be chained")
        chain = AuditChain(key)
        for row in rows:
            seq += 1
            fields = ChainedFields(
                seq, row["occurred_at"], row["type"], row["severity"], row["actor"], row["ip"],
                row["user_agent"], row["target"], row["outcome"], row["request_id"],
                row["details"],
            )  # fmt: skip
            digest = chain.link(previous, fields)
            connection.execute(
                sa.text(
                    "UPDATE audit_events SET seq = :s, prev_hash = :p, hash = :h WHERE id = :i"
                ),
                {"s": seq, "p": previous, "h": digest, "i": row["id"]},
            )
            previous = digest
    connection.execute(
        sa.text(
            "INSERT INTO audit_chain_head (id, seq, hash, base_seq, base_hash) "
            "VALUES (1, :s, :h, 0, :g)"
        ),
        {"s": seq, "h": previous, "g": GENESIS},
    )
    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column("seq", nullable=False)
        batch.alter_column("prev_hash", nullable=False)
        batch.alter_column("hash", nullable=False)
        batch.create_index("ix_audit_events_seq", ["seq"], unique=True)
    if connection.dialect.name == "postgresql":
        op.execute(REFUSE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS wakedock_audit_append_only()")
    op.drop_table("audit_chain_head")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_index("ix_audit_events_seq")
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
        batch.drop_column("seq")
