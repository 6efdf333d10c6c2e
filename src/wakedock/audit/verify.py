"""`wakedock audit verify`: walk the chain from its base and name the first event that breaks it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.chain import GENESIS, AuditChain, ChainedFields
from wakedock.audit.models import AuditChainHead, AuditEvent

BATCH = 20_000
_COLUMNS = (
    AuditEvent.id,
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

    `progress` is told the number of events checked every `every` events."""
    with factory() as db:
        if db.get_bind().dialect.name == "postgresql":
            # One snapshot for the head and the rows: on a live server, events appended between
            # reading the head and reaching the table's end must not look like a deleted tail.
            db.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        head = db.get(AuditChainHead, 1)
        if head is None:
            return Verdict(0, "the chain head is missing: the audit table was tampered with")
        moved = _base_problem(db, head)
        if moved is not None:
            return Verdict(0, moved)
        expected, previous, checked = head.base_seq + 1, head.base_hash, 0
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
            if row.prev_hash != previous:
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
            if not chain.matches(previous, fields, row.hash):
                return Verdict(checked, f"{where} was changed", row.id, row.seq)
            previous, expected, checked = row.hash, expected + 1, checked + 1
            if progress is not None and checked % every == 0:
                progress(checked)
        if head.seq != expected - 1 or head.hash != previous:
            return Verdict(
                checked,
                f"the newest events were deleted: the chain head says seq {head.seq}, "
                f"the table ends at seq {expected - 1}",
            )
        return Verdict(checked)


def _base_problem(db: Session, head: AuditChainHead) -> str | None:
    """The base may only sit where the latest `audit_archive` event (itself chained) put it."""
    recorded = db.scalar(
        select(AuditEvent.details)
        .where(AuditEvent.type == "audit_archive")
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    )
    if recorded is None:
        if head.base_seq == 0 and head.base_hash == GENESIS:
            return None
        return "the chain's start was moved without an archive record (events deleted)"
    archive = json.loads(recorded)
    if (archive.get("up_to_seq"), archive.get("last_hash")) != (head.base_seq, head.base_hash):
        return "the chain's start does not match the last archive record (events deleted)"
    return None
