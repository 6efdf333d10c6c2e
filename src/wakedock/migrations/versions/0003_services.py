"""Services.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column(
            "owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("writable_root_granted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("runtime", sa.String(16), nullable=False),
        sa.Column("container_ref", sa.String(128), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("stop_reason", sa.String(16), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("last_started_at", _TS, nullable=True),
        sa.Column("last_stopped_at", _TS, nullable=True),
    )
    op.create_index("ix_services_name", "services", ["name"], unique=True)
    op.create_index("ix_services_owner_id", "services", ["owner_id"])


def downgrade() -> None:
    op.drop_table("services")
