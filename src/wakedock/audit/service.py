"""record_event: the one way anything is written to the audit trail."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from wakedock.audit.chain import AuditChain, ChainedFields
from wakedock.audit.events import DEFAULT_SEVERITY, Event, RequestContext
from wakedock.audit.models import AuditChainHead, AuditEvent

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


def record_event(db: Session, event: Event, context: RequestContext, *, at: datetime) -> AuditEvent:
    """Append one audit event, chained (audit/chain.py), in the caller's transaction.

    Writing in the caller's transaction means the event and the change it describes commit or
    roll back together. Denials that roll back their own work use a separate transaction. The
    chain head stays locked until that transaction ends, which orders every append.
    """
    chain = db.info.get(CHAIN_INFO)
    if not isinstance(chain, AuditChain):
        raise RuntimeError("this database session has no audit chain: use the components' factory")
    seq, previous = db.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == 1)
        .values(seq=AuditChainHead.seq + 1)
        .returning(AuditChainHead.seq, AuditChainHead.hash)
    ).one()
    fields = ChainedFields(
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
    digest = chain.link(previous, fields)
    row = AuditEvent(
        occurred_at=at,
        type=fields.type,
        severity=fields.severity,
        actor=fields.actor,
        ip=fields.ip,
        user_agent=fields.user_agent,
        target=fields.target,
        outcome=fields.outcome,
        request_id=fields.request_id,
        details=fields.details,
        seq=seq,
        prev_hash=previous,
        hash=digest,
    )
    db.add(row)
    db.execute(update(AuditChainHead).where(AuditChainHead.id == 1).values(hash=digest))
    log.info(
        "audit %s",
        json.dumps(
            {"type": row.type, "outcome": row.outcome, "actor": row.actor, "target": row.target}
        ),
    )
    return row
