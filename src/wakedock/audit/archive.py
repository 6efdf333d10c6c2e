"""Retention (S8.2): move the oldest events to an archive file without breaking verifiability.

Only a prefix of the chain can be archived: events before the cutoff, already delivered to every
SIEM sink, from an intact chain. The archive holds every column (hashes included) and can be
verified on its own; in the database, one transaction records an `audit_archive` event (seq and
hash of the last archived event, the file's SHA-256), moves the chain head's base to that event
and deletes the archived rows. `verify` then starts from the base and checks it against the
latest `audit_archive` event, so a base moved by hand is caught.
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

from wakedock.audit.chain import AuditChain, ChainedFields
from wakedock.audit.events import Event, EventType
from wakedock.audit.export import AuditRecord
from wakedock.audit.models import AuditChainHead, AuditEvent, SinkCursor
from wakedock.audit.service import record_event
from wakedock.audit.verify import verify_chain
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
        if db.get_bind().dialect.name == "postgresql":
            db.execute(text("SET LOCAL wakedock.audit_archive = 'on'"))
        last_hash = db.scalar(select(AuditEvent.hash).where(AuditEvent.seq == up_to))
        event = Event(
            EventType.AUDIT_ARCHIVE,
            target=destination.name,
            details={
                "up_to_seq": up_to,
                "last_hash": last_hash,
                "count": up_to - base,
                "sha256": digest,
            },
        )
        record_event(db, event, context, at=clock.now())
        head_row = db.get(AuditChainHead, 1)
        if head_row is None or last_hash is None:
            raise Conflict("the audit chain changed during the archive")
        head_row.base_seq, head_row.base_hash = up_to, last_hash
        db.execute(delete(AuditEvent).where(AuditEvent.seq <= up_to))
    return ArchiveResult(up_to - base, up_to, destination, digest)


def _write(factory: sessionmaker[Session], destination: Path, base: int, up_to: int) -> str:
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    hasher = hashlib.sha256()
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
                        "prev_hash": row.prev_hash,
                        # The exact text the hash covers (`details` above is parsed).
                        "details_raw": row.details,
                    }
                    lines.append(json.dumps(record, sort_keys=True, ensure_ascii=True) + "\n")
                after = rows[-1].seq
            chunk = "".join(lines)
            hasher.update(chunk.encode())
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return hasher.hexdigest()


def verify_archive(path: Path, chain: AuditChain) -> tuple[int, str | None]:
    """Check an archive file's own chain; (events checked, problem or None)."""
    previous: str | None = None
    checked = 0
    with path.open(encoding="ascii") as lines:
        for line in lines:
            event = json.loads(line)
            if previous is not None and event["prev_hash"] != previous:
                return checked, f"seq {event['seq']} does not follow the event before it"
            fields = ChainedFields(
                event["seq"], event["occurred_at"].replace("Z", "+00:00"), event["type"],
                event["severity"], event["actor"], event["ip"], event["user_agent"],
                event["target"], event["outcome"], event["request_id"], event["details_raw"],
            )  # fmt: skip
            if not chain.matches(event["prev_hash"], fields, event["hash"]):
                return checked, f"seq {event['seq']} was changed"
            previous, checked = event["hash"], checked + 1
    return checked, None
