"""Leases and per-worker service activity (several worker processes, later replicas).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "service_activity",
        sa.Column("service", sa.String(200), primary_key=True),
        sa.Column("worker", sa.String(200), primary_key=True),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("open_connections", sa.Integer, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_activity")
    op.drop_table("leases")
