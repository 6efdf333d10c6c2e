"""The service row: a spec as validated, who owns it, and what WakeDock last saw of it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from wakedock.db import Base, UTCDateTime


class Service(Base):
    __tablename__ = "services"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True, index=True)
    # The developer who manages it; None for discovered services (operators and admins only).
    owner_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # "api": defined through WakeDock; "discovered": a labelled container configures itself.
    source: Mapped[str] = mapped_column(String(16))
    # ServiceSpec as JSON. Secret references are stored as references, never values.
    spec: Mapped[str] = mapped_column(Text)
    # A writable root filesystem, granted by an admin (an audited relaxation).
    writable_root_granted: Mapped[bool] = mapped_column(Boolean, default=False)
    runtime: Mapped[str] = mapped_column(String(16))
    # The container id (Engine) or service id (Swarm); None until created, or once gone.
    container_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    # Why it last stopped: manual, idle, error, missing.
    stop_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
