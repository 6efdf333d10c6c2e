"""`wakedock audit verify`: walk the chains from their bases and name the first event that breaks
one."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.chain import (
    CHAINS_MAX,
    GENESIS,
    IN_BATCH,
    LEGACY_CHAIN,
    ORDER_HEAD,
    AuditChain,
    ChainedFields,
)
from wakedock.audit.models import AuditChainHead, AuditChainRow, AuditEvent

BATCH = 20_000
_COLUMNS = (
    AuditEvent.id,
    AuditEvent.chain,
    AuditEvent.seq,
    AuditEvent.occurred_at,
    AuditEvent.type,
    AuditEvent.severity,
    AuditEvent.actor,
    AuditEvent.ip,
    AuditEvent.user_agent,
    AuditEvent.target,
    AuditEvent.outcome,
    AuditEvent.request_id,
    AuditEvent.details,
    AuditEvent.prev_hash,
    AuditEvent.hash,
)


@dataclass(frozen=True)
class Verdict:
    checked: int
    # None when the chain is intact; else what is wrong, naming the event.
    problem: str | None = None
    event_id: int | None = None
    seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_chain(
    factory: sessionmaker[Session],
    chain: AuditChain,
    progress: Callable[[int], None] | None = None,
    *,
    every: int = 100_000,
) -> Verdict:
    """Recompute every link; stop at the first event changed, deleted, inserted or reordered.

    The events are walked in seq order (no gap), each checked against the event before it on
    its own chain; at the end, each chain's head and the order's must be its last event.
    `progress` is told the number of events checked every `every` events."""
    with factory() as db:
        dialect = db.get_bind().dialect.name
        # One snapshot for the heads and the rows: on a live server, events appended between
        # reading the heads and reaching the table's end must not look like a deleted tail.
        if dialect == "postgresql":
            db.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        else:
            # SQLite (WAL): a read transaction's reads all see the snapshot of its first one.
            db.connection().exec_driver_sql("BEGIN")
        head = db.get(AuditChainHead, 1)
        if head is None:
            return Verdict(0, "the chain head is missing: the audit table was tampered with")
        chains = {row.chain: row for row in db.scalars(select(AuditChainRow))}
        if set(chains) != set(range(LEGACY_CHAIN, CHAINS_MAX + 1)):
            return Verdict(0, "chains' heads are missing: the audit table was tampered with")
        moved = _base_problem(db, head, chains)
        if moved is not None:
            return Verdict(0, moved)
        # Each chain's last event so far: its hash and seq.
        tips = {number: (row.base_hash, row.base_seq) for number, row in chains.items()}
        expected, last, checked = head.base_seq + 1, head.base_hash, 0
        rows = db.execute(
            select(*_COLUMNS).order_by(AuditEvent.seq).execution_options(yield_per=BATCH)
        )
        for row in rows:
            where = (
                f"event {row.id} (seq {row.seq}, {row.type} at {row.occurred_at:%Y-%m-%d %H:%M:%S})"
            )
            if row.seq != expected:
                what = (
                    f"events seq {expected} to {row.seq - 1} are missing (deleted) before {where}"
                    if row.seq > expected
                    else f"{where} repeats or precedes seq {expected}"
                )
                return Verdict(checked, what, row.id, row.seq)
            tip = tips.get(row.chain)
            if tip is None:
                return Verdict(
                    checked, f"{where} is on chain {row.chain}, which has no head", row.id, row.seq
                )
            if row.prev_hash != tip[0]:
                return Verdict(
                    checked,
                    f"{where} does not follow the event before it (deleted, inserted or reordered)",
                    row.id,
                    row.seq,
                )
            fields = ChainedFields(
                row.seq, row.occurred_at, row.type, row.severity, row.actor, row.ip,
                row.user_agent, row.target, row.outcome, row.request_id, row.details,
            )  # fmt: skip
            if not follows(chain, row.chain, tip, fields, row.hash):
                return Verdict(checked, f"{where} was changed", row.id, row.seq)
            tips[row.chain] = (row.hash, row.seq)
            last, expected, checked = row.hash, expected + 1, checked + 1
            if progress is not None and checked % every == 0:
                progress(checked)
        if head.seq != expected - 1 or head.hash != last:
            return Verdict(
                checked,
                f"the newest events were deleted: the chain head says seq {head.seq}, "
                f"the table ends at seq {expected - 1}",
            )
        for number, chain_row in sorted(chains.items()):
            # ORDER_HEAD: the chain's head is the order's (checked above), its newest event.
            # Only SQLite's appends write it; PostgreSQL's could not append after it.
            in_order = chain_row.hash == ORDER_HEAD
            if in_order and dialect != "sqlite":
                return Verdict(
                    checked, f"chain {number}'s row was rewritten: it says its head is the order's"
                )
            if (head.hash if in_order else chain_row.hash) != tips[number][0]:
                whose = "its head (the order's)" if in_order else "its head"
                return Verdict(
                    checked,
                    f"the newest events of chain {number} were deleted: {whose} is not its "
                    f"last event (seq {tips[number][1]})",
                )
        return Verdict(checked)


def follows(
    chain: AuditChain, number: int, tip: tuple[str, int], fields: ChainedFields, stored: str
) -> bool:
    """Whether `stored` is the hash of `fields` after `tip` (hash, seq) on chain `number`.

    An event's anchor is the seq of the event before it on its chain, or IN_BATCH when it was
    appended in the same batch, right after it (its seq then that one's plus one)."""
    previous, previous_seq = tip
    if chain.matches(number, previous, previous_seq, fields, stored):
        return True
    return (
        number != LEGACY_CHAIN
        and fields.seq == previous_seq + 1
        and chain.matches(number, previous, IN_BATCH, fields, stored)
    )


def _base_problem(
    db: Session, head: AuditChainHead, chains: dict[int, AuditChainRow]
) -> str | None:
    """The bases may only sit where the latest `audit_archive` event (itself chained) put them."""
    recorded = db.scalar(
        select(AuditEvent.details)
        .where(AuditEvent.type == "audit_archive")
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    )
    bases = {number: (row.base_seq, row.base_hash) for number, row in chains.items()}
    if recorded is None:
        if (head.base_seq, head.base_hash) == (0, GENESIS) and all(
            base == (0, GENESIS) for base in bases.values()
        ):
            return None
        return "the chain's start was moved without an archive record (events deleted)"
    archive = json.loads(recorded)
    if (archive.get("up_to_seq"), archive.get("last_hash")) != (head.base_seq, head.base_hash):
        return "the chain's start does not match the last archive record (events deleted)"
    # An archive from before there were several chains moved chain 0's base only.
    expected = {str(LEGACY_CHAIN): [head.base_seq, head.base_hash]}
    expected = archive.get("chains", expected)
    for number, base in bases.items():
        if tuple(expected.get(str(number), (0, GENESIS))) != base:
            return f"chain {number}'s start does not match the last archive record (events deleted)"
    return None
