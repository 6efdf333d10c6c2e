"""Zero trust: each user's past sign-ins (behaviour signals) and recent failed sign-ins
(reputation signals), both pruned on write by zerotrust/history.py.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("address", sa.String(45), nullable=False),
        sa.Column("country", sa.String(2), nullable=True),
        sa.Column("latitude", sa.Float, nullable=True),
        sa.Column("longitude", sa.Float, nullable=True),
        sa.Column("accuracy_km", sa.Float, nullable=True),
        sa.Column("user_agent_family", sa.String(100), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sign_in_history_user_id_at", "sign_in_history", ["user_id", "at"])
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("address", sa.String(45), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sign_in_failures_address_at", "sign_in_failures", ["address", "at"])
    op.create_index("ix_sign_in_failures_username_at", "sign_in_failures", ["username", "at"])
    op.create_index("ix_sign_in_failures_at", "sign_in_failures", ["at"])


def downgrade() -> None:
    op.drop_index("ix_sign_in_failures_at", table_name="sign_in_failures")
    op.drop_index("ix_sign_in_failures_username_at", table_name="sign_in_failures")
    op.drop_index("ix_sign_in_failures_address_at", table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
    op.drop_index("ix_sign_in_history_user_id_at", table_name="sign_in_history")
    op.drop_table("sign_in_history")
