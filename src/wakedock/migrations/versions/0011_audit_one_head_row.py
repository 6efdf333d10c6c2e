"""SQLite: one head row written per audit event. Migration 0010's two triggers (the chain's
compare-and-set and both heads moved as an event was inserted) are dropped: an append now moves
the order's row by a compare-and-set, and the row of the chain whose event is the newest of all
says 'order' instead of repeating the order's hash (audit/append.py, docs/audit.md "SQLite: one
head row"). The first append after this revision marks its chain's row. One trigger refuses a
row past the order's head (`GUARD`). PostgreSQL: nothing.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# audit/chain.py's ORDER_HEAD when this revision was written.
ORDER_HEAD = "order"
# Migration 0010's triggers, as it made them (its SQLITE_TRIGGERS).
TRIGGERS_0010 = (
    "CREATE TRIGGER audit_events_chain_check BEFORE INSERT ON audit_events FOR EACH ROW"
    " WHEN NEW.prev_hash IS NOT (SELECT hash FROM audit_chains WHERE chain = NEW.chain)"
    " BEGIN SELECT RAISE(ABORT, 'wakedock: the audit chain moved'); END",
    "CREATE TRIGGER audit_events_chain_move AFTER INSERT ON audit_events FOR EACH ROW BEGIN"
    " UPDATE audit_chains SET hash = NEW.hash WHERE chain = NEW.chain;"
    " UPDATE audit_chain_head SET seq = NEW.seq, hash = NEW.hash WHERE id = 1; END",
)


# A row past the order's head is refused: an append moves the order's row first, then inserts at
# the seqs it took. A writer of the version before (its INSERT took the order's next seq and left
# the rest to 0010's triggers), still running after this revision (a CLI of a newer install
# migrated the file under it), fails loudly instead of storing an event the chains do not hold.
GUARD = (
    "CREATE TRIGGER IF NOT EXISTS audit_events_after_the_order BEFORE INSERT ON audit_events"
    " FOR EACH ROW WHEN NEW.seq > (SELECT seq FROM audit_chain_head WHERE id = 1)"
    " BEGIN SELECT RAISE(ABORT, 'wakedock: an audit event past the order''s head'); END"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # The guard first: stopped in between, the file refuses the old writes either way.
        op.execute(GUARD)
        op.execute("DROP TRIGGER IF EXISTS audit_events_chain_check")
        op.execute("DROP TRIGGER IF EXISTS audit_events_chain_move")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # Each chain's row holds its own last hash again, as 0010's triggers keep it.
        op.get_bind().execute(
            sa.text(
                "UPDATE audit_chains SET hash = (SELECT hash FROM audit_chain_head WHERE id = 1)"
                " WHERE hash = :marker"
            ),
            {"marker": ORDER_HEAD},
        )
        for trigger in TRIGGERS_0010:
            op.execute(trigger)
        op.execute("DROP TRIGGER IF EXISTS audit_events_after_the_order")
