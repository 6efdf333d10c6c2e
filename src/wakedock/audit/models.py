"""The audit_events table. Rows are only ever inserted."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from wakedock.db import Base, UTCDateTime


class AuditEvent(Base):
    __tablename__ = "audit_events"
    # A chain's newest event (audit/append.py, when the head is read under its lock), among
    # eight chains. SQLite has one chain: its newest events are the table's, found by seq.
    __table_args__ = (Index("ix_audit_events_chain_seq", "chain", "seq").ddl_if("postgresql"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(16), index=True)
    actor: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(512), nullable=True)
    target: Mapped[str | None] = mapped_column(String(256), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # JSON object, serialized with json.dumps (control characters escaped).
    details: Mapped[str] = mapped_column(Text, default="{}")
    # The hash chains (audit/chain.py): the event's chain, its place in the order of all
    # events (no gap), the hash of the event before it on its chain, its own hash.
    chain: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    seq: Mapped[int] = mapped_column(BigInteger, unique=True, index=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """One row: the newest event's seq and hash, whatever its chain. Every append moves it
    (on PostgreSQL last, just before its commit; on SQLite first, by a compare-and-set): its
    lock orders the seqs (readers see them in order)."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    # Where verification starts: 0 and the genesis hash, or the last archived event.
    base_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    base_hash: Mapped[str] = mapped_column(String(64))


class AuditChainRow(Base):
    """One row per chain: its newest event's hash (GENESIS: none yet; ORDER_HEAD, on SQLite:
    the order's row's, its event being the newest of all), and where verifying it
    starts (its last archived event's seq and hash; 0 and GENESIS). Its lock orders the
    chain's appends."""

    __tablename__ = "audit_chains"

    chain: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    base_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    base_hash: Mapped[str] = mapped_column(String(64))


# Per-sink delivery cursors: the audit table is the outbox, each SIEM sink (siem/exporter.py)
# remembers how far it got; an archive keeps what a sink has not read yet.
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
