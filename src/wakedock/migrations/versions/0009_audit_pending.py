"""Audit events recorded in a caller's transaction wait here, unchained, until it commits.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No index besides the key: the caller's INSERT stays as cheap as it can be, and the
    # writer reads the table whole, in id order, then empties what it read.
    op.create_table(
        "audit_pending",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=True),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("target", sa.String(256), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    # Events still waiting are chained by the writer before a downgrade could lose them; a
    # downgrade with rows here refuses rather than drop them.
    count = op.get_bind().execute(sa.text("SELECT count(*) FROM audit_pending")).scalar_one()
    if count:
        raise RuntimeError(f"{count} audit events wait to be chained: start WakeDock once first")
    op.drop_table("audit_pending")
