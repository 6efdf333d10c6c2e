"""Events recorded in a caller's transaction: stored unchained with its work, chained after it.

`record_event` inserts its event into `audit_pending` in the caller's transaction: a plain
INSERT that takes no lock other writers need, so transactions that record events run as
concurrently as any others, and the event commits or rolls back with the caller's work (a
rolled-back transaction leaves no row, so no gap). When the caller's transaction has committed,
the caller asks this process's group commit (audit/group_commit.py) to chain what waits, and
returns once it is chained: the writer takes the waiting rows in id order in a transaction of
its own, gives them their seq and hash, moves them into `audit_events` (one transaction: a
crash leaves a row either waiting or chained, never both nor neither), then chains the events
recorded alone. `audit_events` therefore only ever holds chained events, in seq order without a
gap, whoever reads it.

A commit followed by a crash before the linking leaves the event waiting, committed: it is
chained when WakeDock starts (components.py) or by the next reader that needs every event
(`link_pending`: verify, the API listing and export, SIEM delivery, archive, metrics).

Each waiting row carries a keyed MAC (`AuditChain.seal`): a row written into the table by
anything but WakeDock, or changed while it waited, is not chained as what it claims to be; a
`security_violation` event (critical) is chained in its place.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.append import chain_of
from wakedock.audit.chain import ChainedFields
from wakedock.audit.models import AuditPending

log = logging.getLogger("wakedock.audit")

_PENDING = cast(Table, AuditPending.__table__)
_FIELDS = [
    "occurred_at", "type", "severity", "actor", "ip", "user_agent", "target", "outcome",
    "request_id", "details",
]  # fmt: skip
_INSERT = insert(_PENDING)
# How many waiting rows one statement takes; a writer takes more in the same transaction.
_TAKE_AT_ONCE = 1000
# Reads and empties in one statement: every row is returned by exactly one committed DELETE,
# so two writers (two processes) can never chain one row twice.
_TAKE = (
    delete(_PENDING)
    .where(
        _PENDING.c.id.in_(
            select(_PENDING.c.id).order_by(_PENDING.c.id).limit(_TAKE_AT_ONCE).scalar_subquery()
        )
    )
    .returning(_PENDING.c.id, *(_PENDING.c[name] for name in _FIELDS), _PENDING.c.mac)
)
# The Session.info key set when the session's transaction has stored a waiting event.
_LINK_ASKED = "audit_link_asked"


def add_pending(db: Session, fields: ChainedFields) -> None:
    """Store `fields` unchained in `db`'s transaction; chained once that transaction commits."""
    connection = db.connection()
    sql, binders, positional = _insert_for(connection.dialect)
    mac = chain_of(db).seal(fields)
    bound = {
        key: (value if bind is None else bind(value))
        for key, bind in binders
        for value in (mac if key == "mac" else getattr(fields, key),)
    }
    connection.exec_driver_sql(sql, tuple(bound.values()) if positional else bound)
    if _LINK_ASKED not in db.info:
        from wakedock.audit.group_commit import group_for  # it imports this module

        engine, group = group_for(db)
        group.transaction_began()
        db.info[_LINK_ASKED] = (engine, group)


# The INSERT as the driver's SQL and each column's bind processor, per dialect: the hot path
# sends it as is, without SQLAlchemy's per-statement compilation and parameter building (the
# values are bound exactly as the columns' types bind them).
_INSERTS: dict[str, tuple[str, list[tuple[str, Any]], bool]] = {}


def _insert_for(dialect: Dialect) -> tuple[str, list[tuple[str, Any]], bool]:
    known = _INSERTS.get(dialect.name)
    if known is None:
        columns = [*_FIELDS, "mac"]
        # inline: nothing reads a waiting row's id back (no RETURNING).
        compiled = _INSERT.inline().values(**dict.fromkeys(columns)).compile(dialect=dialect)
        order = list(compiled.positiontup or columns) if compiled.positional else columns
        binders = [(key, _PENDING.c[key].type.bind_processor(dialect)) for key in order]
        known = _INSERTS[dialect.name] = (str(compiled), binders, bool(compiled.positional))
    return known


def take_pending(db: Session) -> list[ChainedFields]:
    """Remove every waiting event in `db`'s transaction: their fields, oldest first.

    The caller chains them in the same transaction (if it rolls back, they wait again). A row
    whose MAC does not match its fields becomes a `security_violation` event instead.
    """
    chain = chain_of(db)
    connection = db.connection()
    taken: list[ChainedFields] = []
    while True:
        rows = sorted(connection.execute(_TAKE).all(), key=lambda row: int(row.id))
        for row in rows:
            fields = ChainedFields(0, *(row[1:-1]))
            taken.append(fields if chain.sealed(fields, row.mac) else _forged(row.id, fields))
        if len(rows) < _TAKE_AT_ONCE:
            return taken


def _forged(pending_id: int, claimed: ChainedFields) -> ChainedFields:
    log.error(
        "audit: waiting event %d has no valid MAC (written or changed outside WakeDock); "
        "not chained as %r",
        pending_id,
        claimed.type[:64],
    )
    details = {
        "reason": "forged_pending_audit_event",
        "pending_id": pending_id,
        "claimed_type": claimed.type[:64],
    }
    return ChainedFields(
        seq=0,
        occurred_at=datetime.now(UTC),
        type="security_violation",
        severity="critical",
        actor="system:audit",
        ip=None,
        user_agent=None,
        target="audit_pending",
        outcome="failure",
        request_id=None,
        details=json.dumps(details, ensure_ascii=True, sort_keys=True),
    )


def link_pending(factory: sessionmaker[Session]) -> None:
    """Chain every event committed so far and still waiting: for readers that must see all."""
    from wakedock.audit.group_commit import record_in_group  # it imports this module

    record_in_group(factory, None)


@sa_event.listens_for(Session, "after_commit")
def _link_after_commit(session: Session) -> None:
    # A savepoint's release lands here too: the waiting rows are not committed until the
    # outermost transaction is.
    if session.in_nested_transaction() or _LINK_ASKED not in session.info:
        return
    engine, group = session.info.pop(_LINK_ASKED)
    try:
        group.chain_committed(engine)
    except Exception:  # the caller's work and its event are committed already
        # The event is stored and waits: the next writer, reader or start chains it.
        log.warning("audit: chaining after a commit failed; the event waits", exc_info=True)


@sa_event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: Any) -> None:
    # Rolled back or closed: the rows went with the transaction, nothing to chain.
    if transaction.parent is None and _LINK_ASKED in session.info:
        _engine, group = session.info.pop(_LINK_ASKED)
        group.transaction_ended()
