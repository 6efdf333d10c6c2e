"""What the behaviour and reputation signals remember (migration 0009): a user's past sign-ins
and recent failed sign-ins. Both tables are bounded: `zerotrust/history.py` prunes on write."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from wakedock.db import Base, UTCDateTime

# The longest textual IP address (an IPv6 address with an embedded IPv4 one).
ADDRESS_LENGTH = 45
# Usernames are at most 64 characters (auth/models.py); a longer one is no account's.
USERNAME_LENGTH = 64


class SignInRecord(Base):
    """One successful sign-in (or a session seen at a new address): where and when."""

    __tablename__ = "sign_in_history"
    __table_args__ = (Index("ix_sign_in_history_user_id_at", "user_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The rows go with their user: nothing is kept about an account that no longer exists.
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy_km: Mapped[float | None] = mapped_column(Float, nullable=True)
    user_agent_family: Mapped[str | None] = mapped_column(String(100), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class SignInFailure(Base):
    """One failed sign-in: from which address, for which username (maybe no account's)."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (
        Index("ix_sign_in_failures_address_at", "address", "at"),
        Index("ix_sign_in_failures_username_at", "username", "at"),
        Index("ix_sign_in_failures_at", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    username: Mapped[str] = mapped_column(String(USERNAME_LENGTH))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
