"""MFA: TOTP columns on users, backup codes, login challenges.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("mfa_enabled", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("mfa_secret", sa.Text, nullable=True))
        batch.add_column(sa.Column("mfa_enabled_at", _TS, nullable=True))
        batch.add_column(sa.Column("mfa_last_step", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("mfa_pending_secret", sa.Text, nullable=True))
        batch.add_column(sa.Column("mfa_pending_at", _TS, nullable=True))
    op.create_table(
        "mfa_backup_codes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("code_hash", sa.String(255), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("used_at", _TS, nullable=True),
    )
    op.create_index("ix_mfa_backup_codes_user_id", "mfa_backup_codes", ["user_id"])
    op.create_table(
        "mfa_challenges",
        sa.Column("id", sa.String(43), primary_key=True),
        sa.Column(
            "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("ip", sa.String(45), nullable=False),
        sa.Column("user_agent", sa.String(512), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("used_at", _TS, nullable=True),
    )
    op.create_index("ix_mfa_challenges_user_id", "mfa_challenges", ["user_id"])


def downgrade() -> None:
    op.drop_table("mfa_challenges")
    op.drop_table("mfa_backup_codes")
    with op.batch_alter_table("users") as batch:
        for column in (
            "mfa_pending_at",
            "mfa_pending_secret",
            "mfa_last_step",
            "mfa_enabled_at",
            "mfa_secret",
            "mfa_enabled",
        ):
            batch.drop_column(column)
