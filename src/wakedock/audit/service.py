"""record_event: the one way anything is written to the audit trail.

Inside a request's transaction, `record_event`; on its own (a denial whose request rolls back,
a read), `record_alone`, which services and handlers reach through the `Auditor`. The chain
itself is appended in audit/append.py; concurrent `record_alone` callers share commits
(audit/group_commit.py).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.append import append_in_turn
from wakedock.audit.at_commit import defer
from wakedock.audit.chain import CHAIN_INFO as CHAIN_INFO
from wakedock.audit.chain import ChainedFields
from wakedock.audit.durable import release_at_commit
from wakedock.audit.events import DEFAULT_SEVERITY, Event
from wakedock.audit.group_commit import group_of
from wakedock.clock import Clock
from wakedock.context import RequestContext

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
    if value is None:
        return None
    # A printable text has no control character: no need to look up each of its characters.
    return (value if value.isprintable() else value.translate(_CONTROL))[:limit]


# json.dumps escapes CR/LF and every control character: no log injection downstream. Built
# once: json.dumps with options builds a new encoder on every call.
_DETAILS = json.JSONEncoder(default=str, ensure_ascii=True, sort_keys=True).encode


def _safe_details(details: dict[str, Any]) -> str:
    cleaned = {k: ("[redacted]" if k.lower() in _FORBIDDEN_KEYS else v) for k, v in details.items()}
    return _DETAILS(cleaned)[:8192]


def record_event(db: Session, event: Event, context: RequestContext, *, at: datetime) -> None:
    """Append one audit event, chained (audit/chain.py), in the caller's transaction.

    Writing in the caller's transaction means the event and the change it describes commit or
    roll back together (a savepoint rolled back takes it too). Denials that roll back their own
    work use a separate transaction. The row of the event's chain and the order's row stay
    locked until that transaction commits, which orders the appends (audit/append.py).

    PostgreSQL: the event is chained when the transaction commits, in one round trip with its
    COMMIT (audit/at_commit.py); it gets its seq then. SQLite: it is chained here; appends
    from this process take turns (`AuditChain.take_lane`), each from the head the previous one
    wrote, the turn kept until the transaction ends (audit/append.py says why).
    """
    contents = [_fields(event, context, at)]
    if not defer(db, contents):
        append_in_turn(db, contents, release_early=release_at_commit(db))


def record_alone(
    factory: sessionmaker[Session], event: Event, context: RequestContext, *, at: datetime
) -> int:
    """Append one event in a transaction of its own (a denial, a read): its seq.

    Concurrent callers share one transaction (audit/group_commit.py); each returns once its event is
    committed.
    """
    return group_of(factory).record(factory, _fields(event, context, at))


class Auditor:
    """The audit door for events outside a request's transaction: each in one of its own."""

    def __init__(self, factory: sessionmaker[Session], clock: Clock) -> None:
        self._factory = factory
        self._clock = clock

    def record(self, event: Event, context: RequestContext) -> None:
        """Append `event` now, committed whatever happens to the caller's work."""
        record_alone(self._factory, event, context, at=self._clock.now())


def _fields(event: Event, context: RequestContext, at: datetime, seq: int = 0) -> ChainedFields:
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
