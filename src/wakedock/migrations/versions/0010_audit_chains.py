"""Several audit chains, one order: `audit_events.chain`, and `audit_chains` with one row per
chain (audit/chain.py). The existing trail becomes chain 0, unchanged (its hashes still verify);
new events go to chains 1 to CHAINS_MAX.

SQLite: two triggers do the chain's compare-and-set and move the heads as an event is inserted,
so that an append is one statement there (audit/append.py). Migration 0011 replaced them (one
head row per event on SQLite, and a guard).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wakedock.audit.chain import GENESIS, LEGACY_CHAIN, SQLITE_MOVED

# The chains this revision makes (audit/chain.py's CHAINS_MAX when it was written).
CHAINS_MAX = 8

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


# A row whose prev_hash is not its chain's head is refused (the compare-and-set); a row stored
# moves its chain's head and the order's to it. `IS NOT`: a chain without a row refuses too.
SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_events_chain_check BEFORE INSERT ON audit_events FOR EACH ROW"  # noqa: S608  # nosec B608
    " WHEN NEW.prev_hash IS NOT (SELECT hash FROM audit_chains WHERE chain = NEW.chain)"
    f" BEGIN SELECT RAISE(ABORT, '{SQLITE_MOVED}'); END",
    "CREATE TRIGGER audit_events_chain_move AFTER INSERT ON audit_events FOR EACH ROW BEGIN"
    " UPDATE audit_chains SET hash = NEW.hash WHERE chain = NEW.chain;"
    " UPDATE audit_chain_head SET seq = NEW.seq, hash = NEW.hash WHERE id = 1; END",
)


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting (or updating) a row.
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("chain", sa.SmallInteger, nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        # A chain's newest event among eight (SQLite's one chain's are the table's newest).
        op.create_index("ix_audit_events_chain_seq", "audit_events", ["chain", "seq"])
        # Nothing is appended to chain 0 any more: a writer of a version before this one (a
        # container not yet replaced during an upgrade) fails instead of breaking the chains.
        # NOT VALID: the rows already there (chain 0) are not checked.
        op.execute(
            "ALTER TABLE audit_events ADD CONSTRAINT audit_events_new_chains"
            " CHECK (chain > 0) NOT VALID"
        )
    chains = op.create_table(
        "audit_chains",
        sa.Column("chain", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("base_seq", sa.BigInteger, nullable=False),
        sa.Column("base_hash", sa.String(64), nullable=False),
    )
    head = (
        op.get_bind()
        .execute(sa.text("SELECT hash, base_seq, base_hash FROM audit_chain_head WHERE id = 1"))
        .first()
    )
    legacy = (
        {"hash": GENESIS, "base_seq": 0, "base_hash": GENESIS}
        if head is None
        else {"hash": head.hash, "base_seq": head.base_seq, "base_hash": head.base_hash}
    )
    rows = [{"chain": LEGACY_CHAIN, **legacy}]
    rows += [
        {"chain": chain, "hash": GENESIS, "base_seq": 0, "base_hash": GENESIS}
        for chain in range(1, CHAINS_MAX + 1)
    ]
    op.bulk_insert(chains, rows)
    if op.get_bind().dialect.name == "sqlite":
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    # Only a trail that never left chain 0 goes back: later events' hashes need the chains.
    moved = op.get_bind().execute(sa.text("SELECT count(*) FROM audit_events WHERE chain <> 0"))
    if moved.scalar_one():
        raise RuntimeError("audit events on chains 1 and up cannot be downgraded")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_events_chain_check")
        op.execute("DROP TRIGGER IF EXISTS audit_events_chain_move")
    op.drop_table("audit_chains")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_events DROP CONSTRAINT audit_events_new_chains")
        op.drop_index("ix_audit_events_chain_seq", "audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("chain")
