"""Appending to the audit chains in a session's transaction: the chain's compare-and-set, the
order's next seqs, the INSERT, and the per-process turns that order appends (docs/audit.md,
"Appends take turns" and "Several chains, one order").

`record_event` and the group commit of `record_alone` (audit/service.py, audit/group_commit.py)
both come here (PostgreSQL's events of a caller's transaction through audit/at_commit.py);
nothing else writes `audit_events`.

Locks, always in this order: the chain's row (`audit_chains`), then the order's
(`audit_chain_head`), both held until the commit. So appends on different chains wait for one
another only for the order's next seqs, taken just before their commits, and the seqs become
visible in order.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from typing import Any, cast

import psycopg
from sqlalchemy import Connection, Dialect, Engine, Table
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from wakedock.audit.chain import (
    CHAIN_INFO,
    IN_BATCH,
    ORDER_HEAD,
    AuditChain,
    ChainedFields,
    Lane,
    canonical_tail,
)
from wakedock.audit.models import AuditEvent
from wakedock.db import driver_error, transaction

log = logging.getLogger("wakedock.audit")

_EVENTS = cast(Table, AuditEvent.__table__)
_COLUMNS = [column.key for column in _EVENTS.columns if column.key != "id"]
_CHAIN_KEYS = ("chain", "seq", "prev_hash", "hash")
_CONTENT_KEYS = [key for key in _COLUMNS if key not in _CHAIN_KEYS]
if [*_CONTENT_KEYS, *_CHAIN_KEYS] != _COLUMNS:
    raise RuntimeError("audit_events: the chain's columns must come last")
# The Session.info key set once this transaction holds a chain's lock (it appended): the chain.
_HOLDS_HEAD = "audit_holds_head"
# The Session.info key of the turn a SQLite transaction keeps until it ends (see append_in_turn).
_KEEPS_TURN = "audit_keeps_turn"
# The Session.info key set when an append failed part way on SQLite, where a failed statement
# does not undo the ones before it: that transaction may only roll back.
_UNFINISHED = "audit_unfinished"
# How long an append waits for a turn (`AuditChain.take_lane`) before it queues on a chain's
# lock in the database instead, as it would with no turn at all.
TURN_WAIT = 1.0


def holds_head(db: Session) -> bool:
    """Whether `db`'s transaction has moved a chain's head (and holds its lock)."""
    return db.info.get(_HOLDS_HEAD) is not None


def append_in_turn(db: Session, contents: list[ChainedFields], *, release_early: bool) -> list[int]:
    """`append`, in one of this process's turns (`AuditChain.take_lane`) when one can be had:
    the seqs.

    PostgreSQL: the turn ends when the statement that moved the chain returns; the next append
    on that chain then waits in the database for this one's commit record only.

    SQLite: the turn is kept until this transaction ends. Its first write took the database's
    one write lock, so the next append could not write before that commit anyway; queued on
    the turn it is woken the moment the lock goes, whereas queued in SQLite's busy handler it
    sleeps 1, 2, 5, 10 ms... between attempts, holding the turn and everyone behind it.
    """
    if not contents:
        return []
    chain = chain_of(db)
    # A transaction that holds a chain already appends there again, and never waits for a
    # turn: the holder of the turn may be waiting for this transaction's commit. On SQLite
    # the lock is the whole database's, so that holds for any transaction that has written. A
    # turn not had within TURN_WAIT (a wait the database cannot see) is given up for the
    # database's own queue.
    connection = db.connection()
    sqlite = connection.dialect.name == "sqlite"
    # Everything that does not depend on the head is done before the turn is taken.
    prepared = _prepare(connection, contents)
    go = partial(append, db, prepared, release_early=release_early, connection=connection)
    held = db.info.get(_HOLDS_HEAD)
    if held is not None:
        # Its own chain's head, which this transaction wrote and still holds, is remembered.
        lane = chain.lanes[held - 1] if 0 < held <= len(chain.lanes) else None
        head = None if lane is None else chain.cached_head(lane)
        if head is not None:
            seqs = go(chain=held, lane=lane, head=head)
            if seqs:
                return seqs
        return go(chain=held, lane=lane)
    lane = None if sqlite and _sqlite_writing(connection) else chain.take_lane(TURN_WAIT)
    if lane is None:
        # Remembered on the first lane (without its turn: any stale value only costs a re-read).
        first = chain.lanes[0]
        return go(chain=first.chain, lane=first)
    kept = False
    try:
        head = chain.cached_head(lane)
        seqs = go(chain=lane.chain, lane=lane, head=head)
        if not seqs:
            # The head this process remembered was rolled back, or another process appended:
            # read it under its lock, still in the turn, so that the next turn starts right.
            seqs = go(chain=lane.chain, lane=lane)
        if sqlite:
            db.info[_KEEPS_TURN] = (lane.turn, connection.connection.driver_connection)
            kept = True
        return seqs
    finally:
        if not kept:
            lane.turn.release()


def append_committed(factory: sessionmaker[Session], contents: list[ChainedFields]) -> list[int]:
    """Chain `contents` in a transaction of their own, committed when this returns: their seqs.

    PostgreSQL: from the head this process remembers on the lane it takes, one statement in
    autocommit moves the chain and the order and inserts the rows (`_committed_batch`): one
    round trip, and the locks are held for the server's own work and the commit's flush only,
    not for round trips to this process. If the head was not the remembered one (another
    process appended, or a transaction that moved it rolled back), the head is locked and read
    in a transaction, as `append` does. SQLite: `append_in_turn` in a transaction.
    """
    engine = factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        with transaction(factory) as db:
            return append_in_turn(db, contents, release_early=False)
    chain = factory.kw.get("info", {}).get(CHAIN_INFO)
    if not isinstance(chain, AuditChain):
        raise RuntimeError("this session factory has no audit chain: use the components' factory")
    prepared = prepare_rows(engine, contents)
    lane = chain.take_lane(TURN_WAIT)
    try:
        head = chain.cached_head(lane) if lane is not None else None
        if lane is not None and head is not None:
            with engine.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT")
                seqs = _committed_batch(connection, chain, lane, prepared, head)
            if seqs:
                return seqs
        number = (lane or chain.lanes[0]).chain
        with transaction(factory) as db:
            return append(db, [item for item, _row in prepared], chain=number, lane=lane)
    finally:
        if lane is not None:
            lane.turn.release()


def prepare_rows(engine: Engine, contents: list[ChainedFields]) -> list[tuple[Prepared, list[Any]]]:
    """Each event prepared, with its row's values but the chain's, as the driver takes them."""
    read = _reader(engine)
    return [(Prepared(content, canonical_tail(content), ()), read(content)) for content in contents]


_READERS: dict[str, Callable[[ChainedFields], list[Any]]] = {}


def _reader(connection: Any) -> Callable[[ChainedFields], list[Any]]:
    """What gives an event's row values but the chain's (`_CONTENT_KEYS` order), as the
    driver of `connection`'s dialect takes them (`connection`: anything with the dialect)."""
    reader = _READERS.get(connection.dialect.name)
    if reader is None:
        # Read in one call; only the few columns with a bind processor are bound here.
        read = attrgetter(*_CONTENT_KEYS)
        binders = _binders(connection, _CONTENT_KEYS)
        bound = [(index, bind) for index, (_key, bind) in enumerate(binders) if bind is not None]

        def reader(content: ChainedFields) -> list[Any]:
            row = list(read(content))
            for index, bind in bound:
                row[index] = bind(row[index])
            return row

        _READERS[connection.dialect.name] = reader
    return reader


_BATCH_SQL: dict[tuple[int, bool], bytes] = {}


def batch_sql(rows: int, *, raising: bool = False) -> bytes:
    """PostgreSQL: a chain moved from `previous` to `last`, the order's next `rows` seqs taken
    and `rows` rows inserted with them, in one statement; it returns the seq of each event
    stored, none if the chain's head was not `previous`. Its parameters, in PostgreSQL's own
    numbered form ($1...: a psycopg RawCursor, whose query is not converted on each call as a
    long %s query is): the chain, previous, last, then each row's values in `_CONTENT_KEYS`
    order followed by its prev_hash and hash.

    The chain's row is selected by its key only, so that the update waits for the transaction
    holding its lock (a compare-and-set in its WHERE would be tested against the last committed
    version first, and fail at once while the previous append is still committing); the
    comparison is made in SET instead, on the latest version once the lock is had. The order's
    row is moved only if the chain moved (its subquery runs first: the chain's lock is taken
    before the order's), and the rows take its seqs.

    `raising`: the statement fails instead (SQLSTATE 22012) if the chain was not at `previous`,
    returns the last seq stored, and turns `synchronous_commit` off for its transaction
    (audit/at_commit.py)."""
    sql = _BATCH_SQL.get((rows, raising))
    if sql is None:
        dialect = cast(Dialect, postgresql_dialect.dialect())  # type: ignore[no-untyped-call]
        keys = [*_CONTENT_KEYS, "prev_hash", "hash"]
        types = [_EVENTS.c[key].type.compile(dialect=dialect) for key in keys]
        values = ", ".join(
            f"({n + 1}, "
            + ", ".join(f"${4 + n * len(types) + i}::{name}" for i, name in enumerate(types))
            + ")"
            for n in range(rows)
        )
        # An integer (the batch's size) and placeholders only: every value is a bound parameter.
        moved = (
            "WITH moved AS (UPDATE audit_chains SET"  # noqa: S608  # nosec B608
            " hash = CASE WHEN hash = $2::varchar THEN $3::varchar ELSE hash END"
            " WHERE chain = $1::smallint RETURNING hash),"
            f" ordered AS (UPDATE audit_chain_head SET seq = seq + {rows}, hash = $3::varchar"
            " WHERE id = 1 AND EXISTS (SELECT 1 FROM moved WHERE moved.hash = $3::varchar)"
            " RETURNING seq)"
        )
        # Column names and placeholders only: every value is a bound parameter.
        columns = ", ".join(_COLUMNS)
        named = ", ".join(f"v.{key}" for key in _CONTENT_KEYS)
        stored = (
            f"INSERT INTO audit_events ({columns})"  # noqa: S608  # nosec B608
            f" SELECT {named}, $1::smallint, ordered.seq - {rows} + v.n, v.prev_hash, v.hash"
            f" FROM ordered, (VALUES {values}) AS v (n, {', '.join(keys)}) RETURNING seq"
        )
        if raising:
            # A division by the number of rows stored: by zero if the chain had moved.
            text_sql = (
                f"{moved}, stored AS ({stored}) SELECT 1 / count(*), max(seq),"  # noqa: S608  # nosec B608
                " set_config('synchronous_commit', 'off', true) FROM stored"
            )
        else:
            text_sql = f"{moved} {stored}"
        sql = text_sql.encode()
        if rows <= _CACHED_BATCH_SQL:
            _BATCH_SQL[(rows, raising)] = sql
    return sql


# Statements kept for batches of up to this many events (a server's concurrent callers);
# larger ones are built each time.
_CACHED_BATCH_SQL = 64


def link_rows(
    chain: AuditChain,
    number: int,
    prepared: list[tuple[Prepared, list[Any]]],
    head: tuple[str, int],
) -> tuple[list[Any], str]:
    """The events chained on chain `number` after `head` (hash, seq): every row's values in
    one list (as `batch_sql` takes them after its first three), and the new head's hash."""
    rows: list[Any] = []
    last, anchor = head
    for item, row in prepared:
        digest = chain.link_on(number, last, anchor, item.tail)
        rows.extend(row)
        rows.extend((last, digest))
        last, anchor = digest, IN_BATCH
    return rows, last


def _committed_batch(
    connection: Connection,
    chain: AuditChain,
    lane: Lane,
    prepared: list[tuple[Prepared, list[Any]]],
    head: tuple[str, int],
) -> list[int]:
    """The events chained from `head` and committed in one statement: their seqs, or [] (and
    nothing stored) if the chain's head was no longer `head`."""
    rows, last = link_rows(chain, lane.chain, prepared, head)
    sql = batch_sql(len(prepared))
    driver = cast(Any, connection.connection.driver_connection)
    try:
        with psycopg.RawCursor(driver) as cursor:
            cursor.execute(sql, [lane.chain, head[0], last, *rows])
            seqs = sorted(int(seq) for (seq,) in cursor.fetchall())
    except psycopg.Error as exc:
        raise driver_error(connection, sql.decode(), exc) from exc
    if len(seqs) != len(prepared):
        return []
    chain.remember(lane, last, seqs[-1])
    log_appended([item for item, _row in prepared])
    return seqs


@dataclass(frozen=True)
class Prepared:
    """An event ready to be chained: what can be computed before the head is known."""

    content: ChainedFields
    tail: bytes  # canonical_tail: the HMAC's input but the chain's
    bound: tuple[Any, ...]  # SQLite: the row's values but its chain's, as bound


def _prepare(connection: Any, contents: list[ChainedFields]) -> list[Prepared]:
    if connection.dialect.name != "sqlite":
        return [Prepared(content, canonical_tail(content), ()) for content in contents]
    read = _reader(connection)
    return [
        Prepared(content, canonical_tail(content), tuple(read(content))) for content in contents
    ]


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


# PostgreSQL: the chain's row locked (a no-op update) and read in one round trip; with the
# lock held first, what is read is the latest and cannot move before this commit ends.
TAKE_CHAIN = (
    b"UPDATE audit_chains SET hash = hash WHERE chain = %s RETURNING hash, base_seq, base_hash"
)
_SQLITE_TAKE_CHAIN = (
    "UPDATE audit_chains SET hash = hash WHERE chain = ? RETURNING hash, base_seq, base_hash"
)
# The chain's newest event (index ix_audit_events_chain_seq).
_NEWEST = "SELECT seq, hash FROM audit_events WHERE chain = {} ORDER BY seq DESC LIMIT 1"


def chain_head(
    cursor: Any, number: int, locked: tuple[Any, ...], placeholder: str
) -> tuple[str, int]:
    """The head (hash, seq) of chain `number`, whose row (hash, base_seq, base_hash) the
    caller's transaction has just locked and read with `cursor` (a DB-API cursor)."""
    digest, base_seq, base_hash = str(locked[0]), int(locked[1]), str(locked[2])
    cursor.execute(_NEWEST.format(placeholder), (number,))
    newest = cursor.fetchone()
    if newest is None or int(newest[0]) <= base_seq:
        if digest != base_hash:
            raise RuntimeError(f"audit chain {number}: its newest event is missing")
        return digest, base_seq
    if str(newest[1]) != digest:
        raise RuntimeError(f"audit chain {number}: its head is not its newest event")
    return digest, int(newest[0])


def append(
    db: Session,
    prepared: list[Prepared],
    *,
    chain: int,
    lane: Lane | None = None,
    head: tuple[str, int] | None = None,
    release_early: bool = False,
    connection: Connection | None = None,
) -> list[int]:
    """Chain the `prepared` events on chain `chain`, in order, in `db`'s transaction: their
    seqs (the order's next ones).

    From `head`, a (hash, seq) believed to be the chain's newest event: a compare-and-set,
    which waits for the transaction holding the chain and stores nothing (returns []) if its
    head is no longer that. Without `head`: the chain is locked and read first. One statement
    whatever the number of events on PostgreSQL; on SQLite, the order's row moved and the rows
    inserted (`_sqlite_advance_and_insert`). `lane`: where to remember the head written.
    `release_early`: see audit/durable.py. `connection`: `db.connection()`, if the caller has it.
    """
    audit_chain = chain_of(db)
    if connection is None:
        connection = db.connection()
    sqlite = connection.dialect.name == "sqlite"
    locked = head is None
    driver = cast(Any, connection.connection.driver_connection)
    statement = "audit chain head"
    # SQLite: a head remembered was written by an append there, which left it the order's; the
    # compare-and-set checks that it still is.
    in_order = head is not None
    try:
        cursor = driver.cursor()
        try:
            if release_early and not sqlite:
                cursor.execute("SELECT set_config('synchronous_commit', 'off', true)")
            if head is None:
                statement = _SQLITE_TAKE_CHAIN if sqlite else TAKE_CHAIN.decode()
                cursor.execute(statement, (chain,))
                row = cursor.fetchone()
                if row is None:
                    raise RuntimeError(f"audit chain {chain} has no row in audit_chains")
                in_order = row[0] == ORDER_HEAD
                if sqlite and in_order:
                    head = _sqlite_order_head(cursor, chain)
                else:
                    head = chain_head(cursor, chain, tuple(row), "?" if sqlite else "%s")
            if sqlite:
                seqs, last = _sqlite_advance_and_insert(
                    cursor, audit_chain, chain, prepared, head, in_order=in_order
                )
            else:
                binders = _binders(connection, _CONTENT_KEYS)
                seqs, last = _postgresql_advance_and_insert(
                    driver, binders, audit_chain, chain, prepared, head
                )
        finally:
            cursor.close()
    except (psycopg.Error, sqlite3.Error) as exc:
        if sqlite:
            # The order's row may have moved without the rows: never committed so.
            db.info[_UNFINISHED] = True
        # A full disk is a 503 (web/errors.py).
        raise driver_error(connection, statement, exc) from exc
    if not seqs:
        if locked:
            raise RuntimeError("the audit chain head moved while locked; event not recorded")
        return []
    # Remembered at once, for the next turn: if this transaction rolls back, the next
    # compare-and-set from it fails and that append reads the real head.
    if lane is not None:
        audit_chain.remember(lane, last, seqs[-1])
    db.info[_HOLDS_HEAD] = chain
    log_appended(prepared)
    return seqs


def _postgresql_advance_and_insert(
    driver: Any,
    binders: list[tuple[str, Any]],
    audit_chain: AuditChain,
    chain: int,
    prepared: list[Prepared],
    head: tuple[str, int],
) -> tuple[list[int], str]:
    """The chain moved, the seqs taken and the rows inserted: the seqs, [] if the chain's
    head was not `head`; and the new head's hash."""
    rows: list[Any] = []
    last, anchor = head
    for item in prepared:
        digest = audit_chain.link_on(chain, last, anchor, item.tail)
        content = item.content
        rows.extend(
            getattr(content, key) if bind is None else bind(getattr(content, key))
            for key, bind in binders
        )
        rows.extend((last, digest))
        last, anchor = digest, IN_BATCH
    with psycopg.RawCursor(driver) as cursor:
        cursor.execute(batch_sql(len(prepared)), [chain, head[0], last, *rows])
        seqs = sorted(int(seq) for (seq,) in cursor.fetchall())
    return (seqs if len(seqs) == len(prepared) else []), last


def log_appended(prepared: list[Prepared]) -> None:
    if log.isEnabledFor(logging.INFO):
        for item in prepared:
            content = item.content
            summary = {
                "type": content.type,
                "outcome": content.outcome,
                "actor": content.actor,
                "target": content.target,
            }
            log.info("audit %s", json.dumps(summary))


_BINDERS: dict[tuple[str, tuple[str, ...]], list[tuple[str, Any]]] = {}


def _binders(connection: Any, keys: list[str]) -> list[tuple[str, Any]]:
    """Each of `keys` with the dialect's own bind processor for its column (None: as is).

    `connection`: anything with the `dialect` (a connection, an engine)."""
    dialect = connection.dialect
    cached = _BINDERS.get((dialect.name, tuple(keys)))
    if cached is None:
        # The dialect's own processors (dialect_impl): the generic DateTime has none, and the
        # driver's default adapter would store a whole second without its `.000000` on SQLite,
        # a text that sorts before the same second as a filter bound.
        cached = [
            (key, _EVENTS.c[key].type.dialect_impl(dialect).bind_processor(dialect)) for key in keys
        ]
        _BINDERS[(dialect.name, tuple(keys))] = cached
    return cached


# SQLite: the statements go to the driver itself. They run while the append holds the turn
# and SQLite's write lock, which the next append waits for: SQLAlchemy's work per statement (the
# parameters, the execution context) would cost more than SQLite's own work there.
#
# One head row is written per event (docs/audit.md, "SQLite: one head row"): the row of the
# chain whose event is the newest of all says ORDER_HEAD, its head being the order's row. An
# append on that chain moves the order's row only, by a compare-and-set on its hash and seq, and
# inserts its rows at the seqs that follow (if its chain's row still says ORDER_HEAD: a
# remembered head is the order's only then). An append on another chain (or the first on a
# database whose chain's row still holds its hash) first writes the order's hash into the row
# that says ORDER_HEAD, then marks its own chain's row from the hash it read there.
_SQLITE_COLUMNS = [*_CONTENT_KEYS, "chain", "prev_hash", "hash", "seq"]
_SQLITE_INSERT = (
    f"INSERT INTO audit_events ({', '.join(_SQLITE_COLUMNS)})"  # noqa: S608  # nosec B608
    f" VALUES ({', '.join('?' * len(_SQLITE_COLUMNS))})"
)
_SQLITE_MOVE_ORDER = (
    "UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1 AND hash = ? AND seq = ?"
    " AND EXISTS (SELECT 1 FROM audit_chains WHERE chain = ? AND hash = ?)"
)
_SQLITE_ORDER_HEAD = "SELECT hash, seq FROM audit_chain_head WHERE id = 1"
_SQLITE_NEWEST = "SELECT seq, hash, chain FROM audit_events ORDER BY seq DESC LIMIT 1"
_SQLITE_UNMARK = (
    "UPDATE audit_chains SET hash = (SELECT hash FROM audit_chain_head WHERE id = 1) WHERE hash = ?"
)
_SQLITE_MARK = "UPDATE audit_chains SET hash = ? WHERE chain = ? AND hash = ?"
_SQLITE_TAKE_SEQS = "UPDATE audit_chain_head SET seq = seq + ?, hash = ? WHERE id = 1 RETURNING seq"


def _sqlite_order_head(cursor: Any, number: int) -> tuple[str, int]:
    """The head (hash, seq) of chain `number`, whose row (locked: SQLite's write lock) says
    ORDER_HEAD: the order's row's, which must be the newest event's, on that chain."""
    digest, seq = cursor.execute(_SQLITE_ORDER_HEAD).fetchone()
    newest = cursor.execute(_SQLITE_NEWEST).fetchone()
    if newest is None or (int(newest[0]), str(newest[1]), int(newest[2])) != (seq, digest, number):
        raise RuntimeError(f"audit chain {number}: the order's newest event is not its head")
    return str(digest), int(seq)


def _sqlite_advance_and_insert(
    cursor: Any,
    audit_chain: AuditChain,
    chain: int,
    prepared: list[Prepared],
    head: tuple[str, int],
    *,
    in_order: bool,
) -> tuple[list[int], str]:
    """The rows inserted after `head` on `chain`, the heads moved to them: their seqs ([] and
    nothing written if the order's row was not `head`, when `in_order`: `head` is also the
    order's), and the new head's hash."""
    rows: list[tuple[Any, ...]] = []
    last, anchor = head
    for item in prepared:
        digest = audit_chain.link_on(chain, last, anchor, item.tail)
        rows.append((*item.bound, chain, last, digest))
        last, anchor = digest, IN_BATCH
    count = len(rows)
    if in_order:
        moved = (head[1] + count, last, head[0], head[1], chain, ORDER_HEAD)
        cursor.execute(_SQLITE_MOVE_ORDER, moved)
        if cursor.rowcount != 1:
            return [], last
        first = head[1] + 1
    else:
        # The caller read `head` under the write lock: nothing moved it since.
        cursor.execute(_SQLITE_UNMARK, (ORDER_HEAD,))
        cursor.execute(_SQLITE_MARK, (ORDER_HEAD, chain, head[0]))
        if cursor.rowcount != 1:
            raise RuntimeError(f"audit chain {chain} moved while locked; event not recorded")
        first = int(cursor.execute(_SQLITE_TAKE_SEQS, (count, last)).fetchone()[0]) - count + 1
    values = [(*row, first + n) for n, row in enumerate(rows)]
    if count == 1:
        cursor.execute(_SQLITE_INSERT, values[0])
    else:
        cursor.executemany(_SQLITE_INSERT, values)
    return list(range(first, first + count)), last


@sa_event.listens_for(Session, "after_commit")
@sa_event.listens_for(Session, "after_rollback")
def _head_released(session: Session) -> None:
    session.info.pop(_HOLDS_HEAD, None)


@sa_event.listens_for(Session, "after_commit")
def _turn_released_at_commit(session: Session) -> None:
    # SQLite's write lock went with the commit: the next append may go at once. (A savepoint's
    # commit lands here too, its transaction still open: the turn then stays.)
    kept = session.info.get(_KEEPS_TURN)
    if kept is not None and not kept[1].in_transaction:
        del session.info[_KEEPS_TURN]
        kept[0].release()


@sa_event.listens_for(Session, "before_commit")
def _refuse_unfinished(session: Session) -> None:
    if session.info.get(_UNFINISHED):
        raise RuntimeError(
            "an audit append of this transaction failed part way: it cannot commit, roll it back"
        )


@sa_event.listens_for(Session, "after_transaction_end")
def _turn_released(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended (committed, rolled back or closed): SQLite's write lock
    # is gone, so is the turn kept with it. A savepoint's end keeps both.
    if transaction.parent is None:
        session.info.pop(_UNFINISHED, None)
        kept = session.info.pop(_KEEPS_TURN, None)
        if kept is not None:
            kept[0].release()
