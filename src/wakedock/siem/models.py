"""Per-sink delivery cursors: the audit table is the outbox, each sink remembers how far it got."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from wakedock.db import Base, UTCDateTime


class SinkCursor(Base):
    __tablename__ = "siem_cursors"

    # sha256 of the sink's full URL: a changed URL is a new sink, delivered from the start.
    sink: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(512))
    # The last audit seq this sink acknowledged; events after it are its backlog.
    delivered_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
