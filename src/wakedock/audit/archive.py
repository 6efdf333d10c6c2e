"""Retention (S8.2): move the oldest events to an archive file without breaking verifiability.

Only a prefix of the chain can be archived: events before the cutoff, already delivered to every
SIEM sink, from an intact chain. The archive holds every column (hashes included) and can be
verified on its own; in the database, one transaction records an `audit_archive` event (seq and
hash of the last archived event, each chain's last archived event, the file's SHA-256), moves
the bases (the order's and each chain's) to those events and deletes the archived rows.
`verify` then starts from the bases and checks them against the latest `audit_archive` event, so
a base moved by hand is caught.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.chain import LEGACY_CHAIN, AuditChain, ChainedFields
from wakedock.audit.events import Event, EventType
from wakedock.audit.export import AuditRecord
from wakedock.audit.models import AuditChainHead, AuditChainRow, AuditEvent, SinkCursor
from wakedock.audit.service import record_event
from wakedock.audit.verify import follows, verify_chain
from wakedock.clock import Clock
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.errors import Conflict, InvalidInput

BATCH = 10_000


@dataclass(frozen=True)
class ArchiveResult:
    count: int
    up_to_seq: int
    path: Path
    sha256: str


def archive_events(
    factory: sessionmaker[Session],
    chain: AuditChain,
    clock: Clock,
    *,
    before: datetime,
    destination: Path,
    context: RequestContext,
    sinks: Collection[str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> ArchiveResult:
    """Archive the events recorded before `before` into `destination` (which must not exist).

    `sinks` are the keys of the configured SIEM sinks and alert pipeline: each must have
    received an event before it is archived (None: every sink ever configured).
    """
    if destination.exists():
        raise InvalidInput(f"{destination} exists: archives are never overwritten")
    progress("verifying the chain before archiving")
    verdict = verify_chain(factory, chain)
    if not verdict.ok:
        raise Conflict(f"the audit chain is broken, nothing archived: {verdict.problem}")
    with factory() as db:
        head = db.get(AuditChainHead, 1)
        if head is None:
            raise Conflict("the audit chain head is missing")
        first_kept = db.scalar(
            select(func.min(AuditEvent.seq)).where(AuditEvent.occurred_at >= before)
        )
        up_to = (first_kept - 1) if first_kept is not None else head.seq
        # Never archive what a SIEM sink has not received yet: nothing may be lost.
        lagging = select(func.min(SinkCursor.delivered_seq))
        if sinks is not None:
            lagging = lagging.where(SinkCursor.sink.in_(list(sinks)))
        undelivered = db.scalar(lagging) if sinks is None or sinks else None
        if undelivered is not None:
            up_to = min(up_to, undelivered)
        base = head.base_seq
    if up_to <= base:
        raise InvalidInput("no event before that time can be archived (or SIEM sinks lag)")
    progress(f"writing events {base + 1} to {up_to} to {destination}")
    digest = _write(factory, destination, base, up_to)
    with transaction(factory) as db:
        # The chains' rows first, then the order's (the appends' order): no deadlock with them.
        chains = db.scalars(
            select(AuditChainRow).order_by(AuditChainRow.chain).with_for_update()
        ).all()
        if db.get_bind().dialect.name == "postgresql":
            db.execute(text("SET LOCAL wakedock.audit_archive = 'on'"))
        last_hash = db.scalar(select(AuditEvent.hash).where(AuditEvent.seq == up_to))
        # Each chain's last archived event becomes its base.
        newest = db.execute(
            select(AuditEvent.chain, AuditEvent.seq, AuditEvent.hash).where(
                AuditEvent.seq.in_(
                    select(func.max(AuditEvent.seq))
                    .where(AuditEvent.seq > base, AuditEvent.seq <= up_to)
                    .group_by(AuditEvent.chain)
                )
            )
        ).all()
        moved = {row.chain: (row.seq, row.hash) for row in newest}
        bases = {row.chain: moved.get(row.chain, (row.base_seq, row.base_hash)) for row in chains}
        event = Event(
            EventType.AUDIT_ARCHIVE,
            target=destination.name,
            details={
                "up_to_seq": up_to,
                "last_hash": last_hash,
                "count": up_to - base,
                "sha256": digest,
                "chains": {str(number): list(at) for number, at in sorted(bases.items())},
            },
        )
        record_event(db, event, context, at=clock.now())
        head_row = db.get(AuditChainHead, 1)
        if head_row is None or last_hash is None:
            raise Conflict("the audit chain changed during the archive")
        head_row.base_seq, head_row.base_hash = up_to, last_hash
        for row in chains:
            row.base_seq, row.base_hash = bases[row.chain]
        db.execute(delete(AuditEvent).where(AuditEvent.seq <= up_to))
    return ArchiveResult(up_to - base, up_to, destination, digest)


def _write(factory: sessionmaker[Session], destination: Path, base: int, up_to: int) -> str:
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    hasher = hashlib.sha256()
    with factory() as db:
        # The seq of each chain's event before the next one written (its anchor).
        tips = {row.chain: row.base_seq for row in db.scalars(select(AuditChainRow))}
    with os.fdopen(fd, "w", encoding="ascii") as out:
        after = base
        while after < up_to:
            with factory() as db:
                rows = db.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.seq > after, AuditEvent.seq <= up_to)
                    .order_by(AuditEvent.seq)
                    .limit(BATCH)
                ).all()
                lines = []
                for row in rows:
                    record = AuditRecord.of(row).__dict__ | {
                        "chain": row.chain,
                        "prev_hash": row.prev_hash,
                        "prev_seq": tips.get(row.chain, 0),
                        # The exact text the hash covers (`details` above is parsed).
                        "details_raw": row.details,
                    }
                    tips[row.chain] = row.seq
                    lines.append(json.dumps(record, sort_keys=True, ensure_ascii=True) + "\n")
                after = rows[-1].seq
            chunk = "".join(lines)
            hasher.update(chunk.encode())
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return hasher.hexdigest()


def verify_archive(path: Path, chain: AuditChain) -> tuple[int, str | None]:
    """Check an archive file's own chains; (events checked, problem or None).

    Each chain's first event in the file is taken as it says it follows (its prev_hash and
    prev_seq, which the database's base checked when it was archived); every later one must
    follow the one before it on its chain. An archive written before there were several chains
    holds chain 0 only, without prev_seq."""
    tips: dict[int, tuple[str, int]] = {}
    checked = 0
    previous_seq: int | None = None
    with path.open(encoding="ascii") as lines:
        for line in lines:
            event = json.loads(line)
            # The file is a run of the order with no gap: a line taken out is named.
            if previous_seq is not None and int(event["seq"]) != previous_seq + 1:
                return (
                    checked,
                    f"seq {previous_seq + 1} is missing (deleted) before seq {event['seq']}",
                )
            previous_seq = int(event["seq"])
            number = int(event.get("chain", LEGACY_CHAIN))
            claimed = (event["prev_hash"], int(event.get("prev_seq", 0)))
            tip = tips.get(number, claimed)
            if event["prev_hash"] != tip[0] or (number != LEGACY_CHAIN and claimed[1] != tip[1]):
                return checked, f"seq {event['seq']} does not follow the event before it"
            fields = ChainedFields(
                event["seq"], event["occurred_at"].replace("Z", "+00:00"), event["type"],
                event["severity"], event["actor"], event["ip"], event["user_agent"],
                event["target"], event["outcome"], event["request_id"], event["details_raw"],
            )  # fmt: skip
            if not follows(chain, number, tip, fields, event["hash"]):
                return checked, f"seq {event['seq']} was changed"
            tips[number] = (event["hash"], int(event["seq"]))
            checked += 1
    return checked, None
