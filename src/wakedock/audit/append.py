"""Appending to the audit chain in a session's transaction: the head's compare-and-set, the
INSERT, and the per-process turn that orders appends (docs/audit.md, "Appends take turns").

`record_event` and the group commit of `record_alone` (audit/service.py, audit/group_commit.py)
both come here; nothing else writes `audit_events`.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

import psycopg
from sqlalchemy import Table, and_, bindparam, case, insert, select, update
from sqlalchemy import cast as sa_cast
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, SessionTransaction

from wakedock.audit.chain import CHAIN_INFO, AuditChain, ChainedFields
from wakedock.audit.durable import ASYNC_COMMIT
from wakedock.audit.models import AuditChainHead, AuditEvent

log = logging.getLogger("wakedock.audit")

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
# The Session.info key of the turn a SQLite transaction keeps until it ends (see append_in_turn).
_KEEPS_TURN = "audit_keeps_turn"
# How long an append waits for its turn (`AuditChain.turn`) before it queues on the head's
# lock in the database instead, as it would with no turn at all.
TURN_WAIT = 1.0


def append_in_turn(db: Session, contents: list[ChainedFields], *, release_early: bool) -> list[int]:
    """`append`, in this process's turn (`AuditChain.turn`) when it can be had: the seqs.

    PostgreSQL: the turn ends when the statement that moved the head returns; the next append
    then waits in the database for this one's commit record only.

    SQLite: the turn is kept until this transaction ends. Its first write took the database's
    one write lock, so the next append could not write before that commit anyway; queued on
    the turn it is woken the moment the lock goes, whereas queued in SQLite's busy handler it
    sleeps 1, 2, 5, 10 ms... between attempts, holding the turn and everyone behind it.
    """
    chain = chain_of(db)
    # A transaction that holds the head already never waits for a turn: the holder of the turn
    # may be waiting for this transaction's commit. On SQLite the lock is the whole
    # database's, so that holds for any transaction that has written. A turn not had within
    # TURN_WAIT (a wait the database cannot see) is given up for the database's own queue.
    connection = db.connection()
    sqlite = connection.dialect.name == "sqlite"
    if (
        db.info.get(_HOLDS_HEAD)
        or (sqlite and _sqlite_writing(connection))
        or not chain.turn.acquire(timeout=TURN_WAIT)
    ):
        return append(db, contents, release_early=release_early)
    kept = False
    try:
        seqs = append(db, contents, head=chain.cached_head(), release_early=release_early)
        if not seqs:
            # The head this process remembered was rolled back, or another process appended:
            # read it under its lock, still in the turn, so that the next turn starts right.
            seqs = append(db, contents, release_early=release_early)
        if sqlite:
            db.info[_KEEPS_TURN] = chain.turn
            kept = True
        return seqs
    finally:
        if not kept:
            chain.turn.release()


def _sqlite_writing(connection: Any) -> bool:
    # sqlite3 begins its transaction at the first write: then it holds SQLite's write lock.
    driver = connection.connection.driver_connection
    return driver is not None and bool(driver.in_transaction)


def chain_of(db: Session) -> AuditChain:
    """The AuditChain this session's factory was given (components.py)."""
    chain = db.info.get(CHAIN_INFO)
    if not isinstance(chain, AuditChain):
        raise RuntimeError("this database session has no audit chain: use the components' factory")
    return chain


def append(
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
    the head past all of `contents` and one statement (COPY on PostgreSQL) stores them, so a
    batch costs about what one event does. `release_early`: see audit/durable.py.
    """
    chain = chain_of(db)
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
    for seq, content in enumerate(contents, start=expected + 1):
        digest = chain.link(last, content, seq)
        row = dict(content.__dict__)
        row["seq"], row["prev_hash"], row["hash"] = seq, last, digest
        rows.append(row)
        last = digest
    moving = {"expected": expected, "previous": previous, "new_seq": expected + len(rows)}
    moving["new_hash"] = last
    if len(rows) == 1 and postgresql:
        statement = _ADVANCE_AND_INSERT_ASYNC if async_commit else _ADVANCE_AND_INSERT
        moved = len(connection.execute(statement, {**moving, **rows[0]}).all())
    elif connection.dialect.name == "sqlite":
        moved = _sqlite_advance_and_insert(connection, moving, rows)
    elif not async_commit:
        moved = connection.execute(_ADVANCE, moving).rowcount
        if moved == 1:
            _postgresql_copy(connection, rows)
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


# SQLite: the same two statements as text, bound as the columns' types bind them. Inside the
# write lock, SQLAlchemy's per-statement work (building parameters from the compiled
# statement) cost more than SQLite's own; these skip it.
_SQLITE_ADVANCE = (
    "UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1 AND seq = ? AND hash = ?"
)
_SQLITE_INSERT = str(
    insert(_EVENTS).values(**dict.fromkeys(_COLUMNS)).compile(dialect=sqlite.dialect())
)
_BINDERS: dict[str, list[tuple[str, Any]]] = {}


def _binders(connection: Any) -> list[tuple[str, Any]]:
    """Each column's key and the dialect's own bind processor for it (None: the value as is)."""
    dialect = connection.dialect
    binders = _BINDERS.get(dialect.name)
    if binders is None:
        # The dialect's own processors (dialect_impl): the generic DateTime has none, and the
        # driver's default adapter would store a whole second without its `.000000`, a text
        # that sorts before the same second as a filter bound (SQLite).
        binders = [
            (key, _EVENTS.c[key].type.dialect_impl(dialect).bind_processor(dialect))
            for key in _COLUMNS
        ]
        _BINDERS[dialect.name] = binders
    return binders


def _bound(connection: Any, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    binders = _binders(connection)
    return [
        tuple(row[key] if bind is None else bind(row[key]) for key, bind in binders) for row in rows
    ]


# PostgreSQL: a batch's rows go in with COPY, in the transaction that moved the head. One
# statement for any number of rows, its rows formatted by the driver in C: per batch of eight,
# about a third less of this process's CPU and half the time of an executemany (which sends
# one INSERT per row), docs/benchmarks.md.
_COPY = f"COPY audit_events ({', '.join(_COLUMNS)}) FROM STDIN"


def _postgresql_copy(connection: Any, rows: list[dict[str, Any]]) -> None:
    values = _bound(connection, rows)
    driver = connection.connection.driver_connection
    try:
        with driver.cursor() as cursor, cursor.copy(_COPY) as copy:
            for value in values:
                copy.write_row(value)
    except psycopg.Error as exc:
        # Raised as SQLAlchemy raises the driver's errors, for the callers' handlers (a lost
        # database is a 503, web/errors.py). The transaction is then aborted: none is stored.
        raise DBAPIError.instance(_COPY, None, exc, psycopg.Error) from exc


def _sqlite_advance_and_insert(
    connection: Any, moving: dict[str, Any], rows: list[dict[str, Any]]
) -> int:
    """The head's compare-and-set, then the rows if it moved: 1 if it moved, else 0."""
    moved = connection.exec_driver_sql(
        _SQLITE_ADVANCE,
        (moving["new_seq"], moving["new_hash"], moving["expected"], moving["previous"]),
    ).rowcount
    if moved != 1:
        return 0
    values = _bound(connection, rows)
    connection.exec_driver_sql(_SQLITE_INSERT, values if len(values) > 1 else values[0])
    return 1


@sa_event.listens_for(Session, "after_commit")
@sa_event.listens_for(Session, "after_rollback")
def _head_released(session: Session) -> None:
    session.info.pop(_HOLDS_HEAD, None)


@sa_event.listens_for(Session, "after_transaction_end")
def _turn_released(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended (committed, rolled back or closed): SQLite's write lock
    # is gone, so is the turn kept with it. A savepoint's end keeps both.
    if transaction.parent is None:
        turn = session.info.pop(_KEEPS_TURN, None)
        if turn is not None:
            turn.release()
