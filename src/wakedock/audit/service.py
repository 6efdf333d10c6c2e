"""record_event: the one way anything is written to the audit trail.

Inside a request's transaction, `record_event`; on its own (a denial whose request rolls back,
a read), `record_alone`, which services and handlers reach through the `Auditor`.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.chain import AuditChain, ChainedFields
from wakedock.audit.events import DEFAULT_SEVERITY, Event
from wakedock.audit.models import AuditChainHead, AuditEvent
from wakedock.clock import Clock
from wakedock.context import RequestContext
from wakedock.db import transaction

log = logging.getLogger("wakedock.audit")
# The Session.info key of the AuditChain (set on the session factory by components.py).
CHAIN_INFO = "audit_chain"

# Keys whose values must never reach the audit trail, whatever a caller passes.
_FORBIDDEN_KEYS = frozenset(
    {
        "password",
        "new_password",
        "current_password",
        "token",
        "access_token",
        "refresh_token",
        "secret",
        "code",
        "csrf_token",
        "authorization",
        "cookie",
    }
)
_MAX_TEXT = 512


# Control characters (CR/LF for log injection, NUL which PostgreSQL text refuses) become
# visible escapes in every plain column; `details` is JSON and escapes them itself.
_CONTROL = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F]}


def _clip(value: str | None, limit: int = _MAX_TEXT) -> str | None:
    return None if value is None else value.translate(_CONTROL)[:limit]


def _safe_details(details: dict[str, Any]) -> str:
    cleaned = {k: ("[redacted]" if k.lower() in _FORBIDDEN_KEYS else v) for k, v in details.items()}
    # json.dumps escapes CR/LF and every control character: no log injection downstream.
    return json.dumps(cleaned, default=str, ensure_ascii=True, sort_keys=True)[:8192]


# Built once: the hot path only binds parameters.
_HEAD = cast(Table, AuditChainHead.__table__)
# Compare-and-set: move the head from the (seq, hash) this process believes is last to the new
# event. Both must match: a remembered head of a rolled-back append has the right seq once
# another writer reused it, but not that writer's hash.
_ADVANCE = (
    update(_HEAD)
    .where(
        _HEAD.c.id == 1,
        _HEAD.c.seq == bindparam("expected"),
        _HEAD.c.hash == bindparam("previous"),
    )
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)
# Taking the head row's write lock first (a no-op update) makes the read below the latest.
_LOCK = update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq)
_READ = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)
_INSERT = insert(cast(Table, AuditEvent.__table__))
_ATTEMPTS = 100


def record_event(db: Session, event: Event, context: RequestContext, *, at: datetime) -> int:
    """Append one audit event, chained (audit/chain.py), in the caller's transaction; its seq.

    Writing in the caller's transaction means the event and the change it describes commit or
    roll back together. Denials that roll back their own work use a separate transaction. The
    chain head row stays locked until that transaction ends, which orders every append; a head
    remembered from this process's last append usually saves reading it (compare-and-set).
    """
    chain = db.info.get(CHAIN_INFO)
    if not isinstance(chain, AuditChain):
        raise RuntimeError("this database session has no audit chain: use the components' factory")
    connection = db.connection()
    head = chain.cached_head()
    for _attempt in range(_ATTEMPTS):
        if head is None:
            connection.execute(_LOCK)
            head = connection.execute(_READ).one()
        expected, previous = int(head[0]), str(head[1])
        fields = _fields(event, context, at, expected + 1)
        digest = chain.link(previous, fields)
        moved = connection.execute(
            _ADVANCE,
            {
                "expected": expected,
                "previous": previous,
                "new_seq": fields.seq,
                "new_hash": digest,
            },
        )
        if moved.rowcount == 1:
            break
        head = None  # another writer moved the head: read it under its lock and retry
    else:
        raise RuntimeError("the audit chain head kept moving; event not recorded")
    connection.execute(_INSERT, {**fields.__dict__, "prev_hash": previous, "hash": digest})
    # Remembered at once: if the transaction rolls back, the next compare-and-set fails and
    # reads the real head.
    chain.remember(fields.seq, digest)
    if log.isEnabledFor(logging.INFO):
        summary = {
            "type": fields.type,
            "outcome": fields.outcome,
            "actor": fields.actor,
            "target": fields.target,
        }
        log.info("audit %s", json.dumps(summary))
    return fields.seq


def record_alone(
    factory: sessionmaker[Session], event: Event, context: RequestContext, *, at: datetime
) -> int:
    """Append one event in a transaction of its own (a denial, a read): its seq."""
    with transaction(factory) as db:
        return record_event(db, event, context, at=at)


class Auditor:
    """The audit door for events outside a request's transaction: each in one of its own."""

    def __init__(self, factory: sessionmaker[Session], clock: Clock) -> None:
        self._factory = factory
        self._clock = clock

    def record(self, event: Event, context: RequestContext) -> None:
        """Append `event` now, committed whatever happens to the caller's work."""
        record_alone(self._factory, event, context, at=self._clock.now())


def _fields(event: Event, context: RequestContext, at: datetime, seq: int) -> ChainedFields:
    return ChainedFields(
        seq=seq,
        occurred_at=at,
        type=event.type.value,
        severity=(event.severity or DEFAULT_SEVERITY[event.type]).value,
        actor=_clip(context.actor, 128),
        ip=_clip(context.ip, 45),
        user_agent=_clip(context.user_agent),
        target=_clip(event.target, 256),
        outcome=event.outcome.value,
        request_id=_clip(context.request_id, 64),
        details=_safe_details(event.details),
    )
