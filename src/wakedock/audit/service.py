"""record_event: the one way anything is written to the audit trail.

Inside a request's transaction, `record_event`; on its own (a denial whose request rolls back,
a read), `record_alone`, which services and handlers reach through the `Auditor`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, insert, select, update
from sqlalchemy import cast as sa_cast
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.chain import AuditChain, ChainedFields
from wakedock.audit.durable import ASYNC_COMMIT, release_at_commit
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
_EVENTS = cast(Table, AuditEvent.__table__)
# Takes the head row's write lock (a no-op update) and reads it in the same round trip: with
# the lock held first, the head read is the latest and cannot move before this commit ends.
_TAKE = update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq)
_TAKE_HEAD = _TAKE.returning(_HEAD.c.seq, _HEAD.c.hash)
_TAKE_HEAD_ASYNC = _TAKE.returning(_HEAD.c.seq, _HEAD.c.hash, ASYNC_COMMIT)
# Moves the head to the new last event. The (seq, hash) it was read at is checked again,
# although the lock is held, so that nothing can append from a head other than the real one.
_ADVANCE = (
    update(_HEAD)
    .where(
        _HEAD.c.id == 1,
        _HEAD.c.seq == bindparam("expected"),
        _HEAD.c.hash == bindparam("previous"),
    )
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)
_INSERT = insert(_EVENTS)
_COLUMNS = [column.key for column in _EVENTS.columns if column.key != "id"]


def _advance_and_insert(*with_move: Any) -> Any:
    """PostgreSQL, one event: move the head and insert the row in one statement (one round trip).

    The update selects the head row by id only, so that it waits for the transaction holding
    the row's lock; a compare-and-set in its WHERE would be tested against the last committed
    version first, and fail at once while the previous append is still committing. The
    comparison is made in SET instead, on the latest version once the lock is had: the head
    moves only if it is still (expected, previous), and the row is inserted only if it moved.
    `with_move` (e.g. ASYNC_COMMIT) rides on the update.
    """
    unchanged = and_(_HEAD.c.seq == bindparam("expected"), _HEAD.c.hash == bindparam("previous"))
    moved = (
        update(_HEAD)
        .where(_HEAD.c.id == 1)
        .values(
            seq=case((unchanged, bindparam("new_seq")), else_=_HEAD.c.seq),
            hash=case((unchanged, bindparam("new_hash")), else_=_HEAD.c.hash),
        )
        .returning(_HEAD.c.seq, _HEAD.c.hash, *with_move)
        .cte("moved")
    )
    values = (sa_cast(bindparam(key), _EVENTS.c[key].type).label(key) for key in _COLUMNS)
    row = select(*values).where(
        moved.c.seq == bindparam("new_seq"), moved.c.hash == bindparam("new_hash")
    )
    return insert(_EVENTS).from_select(_COLUMNS, row).returning(_EVENTS.c.id)


_ADVANCE_AND_INSERT = _advance_and_insert()
_ADVANCE_AND_INSERT_ASYNC = _advance_and_insert(ASYNC_COMMIT)
# The Session.info key set once this transaction holds the head's lock (it appended).
_HOLDS_HEAD = "audit_holds_head"
# How long an append waits for its turn (`AuditChain.turn`) before it queues on the head's
# lock in the database instead, as it would with no turn at all.
_TURN_WAIT = 1.0
# A bound on one group commit's transaction; more waiting events go in the next one.
_MAX_BATCH = 500
# How long a group commit's writer waits for the callers its previous batch released.
_GATHER = 0.002


def record_event(db: Session, event: Event, context: RequestContext, *, at: datetime) -> int:
    """Append one audit event, chained (audit/chain.py), in the caller's transaction; its seq.

    Writing in the caller's transaction means the event and the change it describes commit or
    roll back together. Denials that roll back their own work use a separate transaction. The
    chain head row stays locked until that transaction commits, which orders every append; on
    PostgreSQL the lock goes with the commit record, before the WAL flush (audit/durable.py).

    Appends from this process take turns (`AuditChain.turn`) for the one statement that moves
    the head: each starts from the head the previous one wrote, and waits in the database only
    for that transaction's commit. The turn ends when the statement returns, not at the commit.
    """
    contents = [_fields(event, context, at)]
    return _append_in_turn(db, contents, release_early=release_at_commit(db))[0]


def _append_in_turn(
    db: Session, contents: list[ChainedFields], *, release_early: bool
) -> list[int]:
    """`_append`, in this process's turn (`AuditChain.turn`) when it can be had."""
    chain = _chain(db)
    # A transaction that holds the head already never waits for a turn: the holder of the turn
    # may be waiting for this transaction's commit. On SQLite the lock is the whole
    # database's, so that holds for any transaction that has written. A turn not had within
    # _TURN_WAIT (a wait the database cannot see) is given up for the database's own queue.
    if (
        db.info.get(_HOLDS_HEAD)
        or _sqlite_writing(db)
        or not chain.turn.acquire(timeout=_TURN_WAIT)
    ):
        return _append(db, contents, release_early=release_early)
    try:
        seqs = _append(db, contents, head=chain.cached_head(), release_early=release_early)
        if not seqs:
            # The head this process remembered was rolled back, or another process appended:
            # read it under its lock, still in the turn, so that the next turn starts right.
            seqs = _append(db, contents, release_early=release_early)
        return seqs
    finally:
        chain.turn.release()


def _sqlite_writing(db: Session) -> bool:
    # sqlite3 begins its transaction at the first write: then it holds SQLite's write lock.
    connection = db.connection()
    if connection.dialect.name != "sqlite":
        return False
    driver = connection.connection.driver_connection
    return driver is not None and bool(driver.in_transaction)


def _chain(db: Session) -> AuditChain:
    chain = db.info.get(CHAIN_INFO)
    if not isinstance(chain, AuditChain):
        raise RuntimeError("this database session has no audit chain: use the components' factory")
    return chain


def _append(
    db: Session,
    contents: list[ChainedFields],
    *,
    head: tuple[int, str] | None = None,
    release_early: bool = False,
) -> list[int]:
    """Chain `contents` (their seq is set here), in order, in `db`'s transaction: their seqs.

    From `head`, a (seq, hash) believed to be the last: a compare-and-set, which waits for the
    transaction holding the head and stores nothing (returns []) if the head is no longer that.
    Without `head`: the head is locked and read in one statement, then moved. One update moves
    the head past all of `contents` and one INSERT stores them, so a batch costs about what
    one event does. `release_early`: see audit/durable.py.
    """
    chain = _chain(db)
    connection = db.connection()
    postgresql = connection.dialect.name == "postgresql"
    async_commit = release_early
    locked = head is None
    if head is None:
        head = connection.execute(_TAKE_HEAD_ASYNC if release_early else _TAKE_HEAD).one()
        async_commit = False  # done by the statement that took the lock
    expected, previous = int(head[0]), str(head[1])
    rows: list[dict[str, Any]] = []
    last = previous
    for offset, content in enumerate(contents, start=1):
        fields = replace(content, seq=expected + offset)
        digest = chain.link(last, fields)
        rows.append({**fields.__dict__, "prev_hash": last, "hash": digest})
        last = digest
    moving = {"expected": expected, "previous": previous, "new_seq": expected + len(rows)}
    moving["new_hash"] = last
    if len(rows) == 1 and postgresql:
        statement = _ADVANCE_AND_INSERT_ASYNC if async_commit else _ADVANCE_AND_INSERT
        moved = len(connection.execute(statement, {**moving, **rows[0]}).all())
    else:
        if async_commit:
            connection.execute(select(ASYNC_COMMIT))
        moved = connection.execute(_ADVANCE, moving).rowcount
        if moved == 1:
            connection.execute(_INSERT, rows)
    if moved != 1:
        if locked:
            raise RuntimeError("the audit chain head moved while locked; event not recorded")
        return []
    # Remembered at once, for the next turn: if this transaction rolls back, the next
    # compare-and-set from it fails and that append reads the real head.
    chain.remember(expected + len(rows), last)
    db.info[_HOLDS_HEAD] = True
    if log.isEnabledFor(logging.INFO):
        for row in rows:
            summary = {
                "type": row["type"],
                "outcome": row["outcome"],
                "actor": row["actor"],
                "target": row["target"],
            }
            log.info("audit %s", json.dumps(summary))
    return [int(row["seq"]) for row in rows]


@sa_event.listens_for(Session, "after_commit")
@sa_event.listens_for(Session, "after_rollback")
def _head_released(session: Session) -> None:
    session.info.pop(_HOLDS_HEAD, None)


@dataclass(eq=False)
class _Pending:
    """One caller's event waiting for the group commit that records it."""

    content: ChainedFields
    seq: int | None = None
    error: BaseException | None = None
    done: bool = False


class _GroupCommit:
    """Records the events of concurrent `record_alone` callers in one transaction (group commit).

    Each event in a transaction of its own holds the chain head's lock through its commit (a
    WAL flush), so appends from many threads would run one commit at a time. Here the first
    caller to find no batch being written becomes the writer: it takes every event waiting
    (its own included), chains them in one transaction and commits; the others wait for the
    commit of the batch that holds their event, then return. A caller therefore returns only
    once its event is committed, exactly as before, and a failed batch rolls back whole: every
    caller in it gets the error and none of its events is stored. Nothing runs in the
    background.

    Callers released by a commit often record again at once (a burst of denials, a scanner).
    So that they share the next commit instead of alternating between two half batches, the
    writer waits for as many events as its previous batch held, at most `_GATHER` seconds (as
    PostgreSQL's commit_delay does); a lone caller after a lone caller writes at once.
    """

    def __init__(self) -> None:
        guard = threading.Lock()
        self._changed = threading.Condition(guard)  # a batch committed or the writer left
        self._arrived = threading.Condition(guard)  # an event joined the waiting list
        self._waiting: list[_Pending] = []
        self._writing = False
        self._gathering = False
        self._last_batch = 1

    def record(self, factory: sessionmaker[Session], content: ChainedFields) -> int:
        mine = _Pending(content)
        with self._changed:
            self._waiting.append(mine)
            if self._gathering:
                self._arrived.notify()
        while True:
            with self._changed:
                try:
                    while self._writing and not mine.done:
                        self._changed.wait()
                    if mine.done:
                        break
                    self._writing = True
                    try:
                        batch = self._take()
                    except BaseException:
                        self._writing = False  # hand the writer's role on
                        self._changed.notify_all()
                        raise
                except BaseException:
                    # Interrupted while waiting: no later batch takes this event (one that
                    # already took it may still commit, as after a crash past a commit).
                    if mine in self._waiting:
                        self._waiting.remove(mine)
                    raise
            self._write(factory, batch)
        if mine.error is not None:
            raise mine.error
        return cast(int, mine.seq)

    def _take(self) -> list[_Pending]:
        """The next batch, oldest first (called holding the lock, as the writer)."""
        wanted = min(self._last_batch, _MAX_BATCH)
        deadline = time.monotonic() + _GATHER
        self._gathering = True
        while len(self._waiting) < wanted:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._arrived.wait(left)
        self._gathering = False
        batch = self._waiting[:_MAX_BATCH]
        del self._waiting[:_MAX_BATCH]
        self._last_batch = len(batch)
        return batch

    def _write(self, factory: sessionmaker[Session], batch: list[_Pending]) -> None:
        seqs: list[int] = []
        error: BaseException | None = None
        try:
            with transaction(factory) as db:
                contents = [pending.content for pending in batch]
                seqs = _append_in_turn(db, contents, release_early=False)
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            error = exc
        with self._changed:
            for index, pending in enumerate(batch):
                if error is None:
                    pending.seq = seqs[index]
                else:
                    pending.error = error
                pending.done = True
            self._writing = False
            self._changed.notify_all()


# One group commit per session factory (one database); weak, so a disposed factory goes.
_GROUPS: weakref.WeakKeyDictionary[sessionmaker[Session], _GroupCommit] = (
    weakref.WeakKeyDictionary()
)
_GROUPS_GUARD = threading.Lock()


def _group(factory: sessionmaker[Session]) -> _GroupCommit:
    with _GROUPS_GUARD:
        group = _GROUPS.get(factory)
        if group is None:
            group = _GROUPS[factory] = _GroupCommit()
        return group


def record_alone(
    factory: sessionmaker[Session], event: Event, context: RequestContext, *, at: datetime
) -> int:
    """Append one event in a transaction of its own (a denial, a read): its seq.

    Concurrent callers share one transaction (`_GroupCommit`); each returns once its event is
    committed.
    """
    return _group(factory).record(factory, _fields(event, context, at))


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
