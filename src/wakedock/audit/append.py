"""Appending to the audit chain in a session's transaction: the head's compare-and-set, the
INSERT, and the per-process turn that orders appends (docs/audit.md, "Appends take turns").

`record_event` and the group commit of `record_alone` (audit/service.py, audit/group_commit.py)
both come here; nothing else writes `audit_events`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, cast

import psycopg
from sqlalchemy import (
    Connection,
    Dialect,
    Engine,
    Table,
    and_,
    bindparam,
    case,
    insert,
    select,
    update,
)
from sqlalchemy import cast as sa_cast
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from wakedock.audit.chain import CHAIN_INFO, AuditChain, ChainedFields, canonical_tail
from wakedock.audit.durable import ASYNC_COMMIT
from wakedock.audit.models import AuditChainHead, AuditEvent
from wakedock.db import driver_error, transaction

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
    # The row's link is the move's own parameters: each value is sent once.
    same = {"seq": "new_seq", "prev_hash": "previous", "hash": "new_hash"}
    values = (
        sa_cast(bindparam(same.get(key, key)), _EVENTS.c[key].type).label(key) for key in _COLUMNS
    )
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


def holds_head(db: Session) -> bool:
    """Whether `db`'s transaction has moved the chain head (and holds its lock)."""
    return bool(db.info.get(_HOLDS_HEAD))


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
    # Everything that does not depend on the head is done before the turn is taken.
    prepared = _prepare(connection, contents)
    if (
        db.info.get(_HOLDS_HEAD)
        or (sqlite and _sqlite_writing(connection))
        or not chain.turn.acquire(timeout=TURN_WAIT)
    ):
        return append(db, prepared, release_early=release_early)
    kept = False
    try:
        seqs = append(db, prepared, head=chain.cached_head(), release_early=release_early)
        if not seqs:
            # The head this process remembered was rolled back, or another process appended:
            # read it under its lock, still in the turn, so that the next turn starts right.
            seqs = append(db, prepared, release_early=release_early)
        if sqlite:
            db.info[_KEEPS_TURN] = (chain.turn, connection.connection.driver_connection)
            kept = True
        return seqs
    finally:
        if not kept:
            chain.turn.release()


def append_committed(factory: sessionmaker[Session], contents: list[ChainedFields]) -> list[int]:
    """Chain `contents` in a transaction of their own, committed when this returns: their seqs.

    PostgreSQL: from the head this process remembers, in its turn, one statement in autocommit
    moves the head and inserts the rows (`_committed_batch`): one round trip, and the head's
    lock is held for the server's own work and the commit's flush only, not for round trips to
    this process. If the head was not the remembered one (another process appended, or a
    transaction that moved it rolled back), the head is locked and read in a transaction, as
    `append` does. SQLite: `append_in_turn` in a transaction.
    """
    engine = factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        with transaction(factory) as db:
            return append_in_turn(db, contents, release_early=False)
    chain = factory.kw.get("info", {}).get(CHAIN_INFO)
    if not isinstance(chain, AuditChain):
        raise RuntimeError("this session factory has no audit chain: use the components' factory")
    prepared = prepare_rows(engine, contents)
    had_turn = chain.turn.acquire(timeout=TURN_WAIT)
    try:
        head = chain.cached_head() if had_turn else None
        if head is not None:
            with engine.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT")
                seqs = _committed_batch(connection, chain, prepared, head)
            if seqs:
                return seqs
        with transaction(factory) as db:
            return append(db, [item for item, _row in prepared])
    finally:
        if had_turn:
            chain.turn.release()


def prepare_rows(engine: Engine, contents: list[ChainedFields]) -> list[tuple[Prepared, list[Any]]]:
    """Each event prepared, with its row's values but the chain's, as the driver takes them."""
    binders = _binders(engine, _CONTENT_KEYS)
    # Read in one call; only the few columns with a bind processor are bound here.
    read = attrgetter(*_CONTENT_KEYS)
    bound = [(index, bind) for index, (_key, bind) in enumerate(binders) if bind is not None]
    prepared = []
    for content in contents:
        row = list(read(content))
        for index, bind in bound:
            row[index] = bind(row[index])
        prepared.append((Prepared(content, canonical_tail(content), ()), row))
    return prepared


_BATCH_SQL: dict[tuple[int, bool], bytes] = {}


def batch_sql(rows: int, *, raising: bool = False) -> bytes:
    """PostgreSQL: the head moved from (expected, previous) and `rows` rows inserted, in one
    statement; it returns one row per event stored, none if the head was not (expected,
    previous). Its parameters, in PostgreSQL's own numbered form ($1...: a psycopg RawCursor,
    whose query is not converted on each call as a long %s query is): expected, previous, the
    new seq, the new hash, then each row's values in `_COLUMNS` order.

    `raising`: the statement fails instead (SQLSTATE 22012) if the head was not (expected,
    previous), and turns `synchronous_commit` off for its transaction (audit/at_commit.py)."""
    sql = _BATCH_SQL.get((rows, raising))
    if sql is None:
        dialect = cast(Dialect, postgresql_dialect.dialect())  # type: ignore[no-untyped-call]
        types = [_EVENTS.c[key].type.compile(dialect=dialect) for key in _COLUMNS]
        values = ", ".join(
            "("
            + ", ".join(f"${5 + n * len(types) + i}::{name}" for i, name in enumerate(types))
            + ")"
            for n in range(rows)
        )
        columns = ", ".join(_COLUMNS)
        moved = (
            "WITH moved AS (UPDATE audit_chain_head SET"
            " seq = CASE WHEN seq = $1::bigint AND hash = $2::varchar THEN $3::bigint ELSE seq END,"
            " hash = CASE WHEN seq = $1::bigint AND hash = $2::varchar THEN $4::varchar"
            " ELSE hash END WHERE id = 1 RETURNING seq, hash)"
        )
        # Column names and placeholders only: every value is a bound parameter.
        stored = (
            f"INSERT INTO audit_events ({columns}) SELECT v.* FROM moved,"  # noqa: S608  # nosec B608
            f" (VALUES {values}) AS v ({columns})"
            " WHERE moved.seq = $3::bigint AND moved.hash = $4::varchar RETURNING id"
        )
        if raising:
            # A division by the number of rows stored: by zero if the head had moved.
            text_sql = (
                f"{moved}, stored AS ({stored}) SELECT 1 / count(*),"  # noqa: S608  # nosec B608
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
    chain: AuditChain, prepared: list[tuple[Prepared, list[Any]]], expected: int, previous: str
) -> tuple[list[Any], int, str]:
    """The events chained after (expected, previous): every row's values in one list (as
    `batch_sql` takes them after its first four), the new head's seq and hash."""
    rows: list[Any] = []
    last = previous
    for seq, (item, row) in enumerate(prepared, start=expected + 1):
        digest = chain.link_tail(last, seq, item.tail)
        rows.extend(row)
        rows.extend((seq, last, digest))
        last = digest
    return rows, expected + len(prepared), last


def _committed_batch(
    connection: Connection,
    chain: AuditChain,
    prepared: list[tuple[Prepared, list[Any]]],
    head: tuple[int, str],
) -> list[int]:
    """The events chained from `head` and committed in one statement: their seqs, or [] (and
    nothing stored) if the head was no longer `head`."""
    expected, previous = head
    rows, new_seq, last = link_rows(chain, prepared, expected, previous)
    sql = batch_sql(len(prepared))
    driver = cast(Any, connection.connection.driver_connection)
    try:
        with psycopg.RawCursor(driver) as cursor:
            cursor.execute(sql, [expected, previous, new_seq, last, *rows])
            stored = len(cursor.fetchall())
    except psycopg.Error as exc:
        raise driver_error(connection, sql.decode(), exc) from exc
    if stored != len(prepared):
        return []
    chain.remember(new_seq, last)
    log_appended([item for item, _row in prepared])
    return list(range(expected + 1, new_seq + 1))


@dataclass(frozen=True)
class Prepared:
    """An event ready to be chained: what can be computed before the head is known."""

    content: ChainedFields
    tail: bytes  # canonical_tail: the HMAC's input but the seq
    bound: tuple[Any, ...]  # SQLite: the row's values but its seq and hashes, as bound


def _prepare(connection: Any, contents: list[ChainedFields]) -> list[Prepared]:
    binders = _binders(connection, _CONTENT_KEYS) if connection.dialect.name == "sqlite" else []
    return [
        Prepared(
            content,
            canonical_tail(content),
            tuple(
                getattr(content, key) if bind is None else bind(getattr(content, key))
                for key, bind in binders
            ),
        )
        for content in contents
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


def append(
    db: Session,
    prepared: list[Prepared],
    *,
    head: tuple[int, str] | None = None,
    release_early: bool = False,
) -> list[int]:
    """Chain the `prepared` events (seqs set here), in order, in `db`'s transaction: their seqs.

    From `head`, a (seq, hash) believed to be the last: a compare-and-set, which waits for the
    transaction holding the head and stores nothing (returns []) if the head is no longer that.
    Without `head`: the head is locked and read in one statement, then moved. One update moves
    the head past all of them and one statement (COPY on PostgreSQL) stores them, so a
    batch costs about what one event does. `release_early`: see audit/durable.py.
    """
    chain = chain_of(db)
    connection = db.connection()
    async_commit = release_early
    locked = head is None
    if head is None:
        head = connection.execute(_TAKE_HEAD_ASYNC if release_early else _TAKE_HEAD).one()
        async_commit = False  # done by the statement that took the lock
    expected, previous = int(head[0]), str(head[1])
    links: list[tuple[int, str, str]] = []  # each event's (seq, prev_hash, hash)
    last = previous
    for seq, item in enumerate(prepared, start=expected + 1):
        digest = chain.link_tail(last, seq, item.tail)
        links.append((seq, last, digest))
        last = digest
    moving = {"expected": expected, "previous": previous, "new_seq": expected + len(links)}
    moving["new_hash"] = last
    if connection.dialect.name == "sqlite":
        moved = _sqlite_advance_and_insert(connection, moving, prepared, links)
    else:
        rows = [
            {**item.content.__dict__, "seq": seq, "prev_hash": prev_hash, "hash": digest}
            for item, (seq, prev_hash, digest) in zip(prepared, links, strict=True)
        ]
        moved = _postgresql_advance_and_insert(connection, moving, rows, async_commit)
    if moved != 1:
        if locked:
            raise RuntimeError("the audit chain head moved while locked; event not recorded")
        return []
    # Remembered at once, for the next turn: if this transaction rolls back, the next
    # compare-and-set from it fails and that append reads the real head.
    chain.remember(expected + len(links), last)
    db.info[_HOLDS_HEAD] = True
    log_appended(prepared)
    return [seq for seq, _previous, _digest in links]


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


def _postgresql_advance_and_insert(
    connection: Any, moving: dict[str, Any], rows: list[dict[str, Any]], async_commit: bool
) -> int:
    """The head moved and the rows inserted, on PostgreSQL: 1 if the head moved, else 0."""
    if len(rows) == 1:
        return _postgresql_advance_and_insert_one(connection, moving, rows[0], async_commit)
    if async_commit:
        connection.execute(select(ASYNC_COMMIT))
    moved = int(connection.execute(_ADVANCE, moving).rowcount)
    if moved == 1:
        _postgresql_copy(connection, rows)
    return moved


# PostgreSQL, one event: `_advance_and_insert` compiled once per dialect, with named
# parameters, and sent to the driver itself as bytes. SQLAlchemy's work per execution (its
# parameters, bind casts and result rows) and psycopg's encoding of the query and of repeated
# parameters were a third of the process's CPU per event in the caller's transaction, in which
# the next append waits (docs/benchmarks.md).
_ONE: dict[tuple[type[Any], bool], tuple[bytes, dict[str, Any]]] = {}


def _one_statement(dialect: Any, async_commit: bool) -> tuple[bytes, dict[str, Any]]:
    """(the SQL, with %(name)s parameters; the parameters fixed in the statement)."""
    key = (type(dialect), async_commit)
    cached = _ONE.get(key)
    if cached is None:
        statement = _ADVANCE_AND_INSERT_ASYNC if async_commit else _ADVANCE_AND_INSERT
        compiled = statement.compile(dialect=type(dialect)(paramstyle="pyformat"))
        fixed = {name: value for name, value in compiled.params.items() if value is not None}
        cached = _ONE[key] = (str(compiled).encode(), fixed)
    return cached


def _postgresql_advance_and_insert_one(
    connection: Any, moving: dict[str, Any], row: dict[str, Any], async_commit: bool
) -> int:
    sql, fixed = _one_statement(connection.dialect, async_commit)
    values = {**fixed, **moving}
    for key, bind in _binders(connection, _CONTENT_KEYS):
        values[key] = row[key] if bind is None else bind(row[key])
    driver = connection.connection.driver_connection
    try:
        with driver.cursor() as cursor:
            cursor.execute(sql, values)
            return len(cursor.fetchall())
    except psycopg.Error as exc:
        raise driver_error(connection, sql.decode(), exc) from exc


_CHAIN_KEYS = ("seq", "prev_hash", "hash")
_CONTENT_KEYS = [key for key in _COLUMNS if key not in _CHAIN_KEYS]
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


# PostgreSQL: a batch's rows go in with COPY, in the transaction that moved the head. One
# statement for any number of rows, its rows formatted by the driver in C: per batch of eight,
# about a fifth less of this process's CPU than an executemany, which sends one INSERT per
# row (docs/benchmarks.md).
_COPY = f"COPY audit_events ({', '.join(_COLUMNS)}) FROM STDIN"


def _postgresql_copy(connection: Any, rows: list[dict[str, Any]]) -> None:
    binders = _binders(connection, _COLUMNS)
    driver = connection.connection.driver_connection
    try:
        with driver.cursor() as cursor, cursor.copy(_COPY) as copy:
            for row in rows:
                copy.write_row([row[k] if bind is None else bind(row[k]) for k, bind in binders])
    except psycopg.Error as exc:
        # The transaction is then aborted: none of the rows is stored.
        raise driver_error(connection, _COPY, exc) from exc


# SQLite: the two statements go to the driver itself. They run while the append holds the
# turn and SQLite's write lock, which the next append waits for: SQLAlchemy's work per
# statement (the parameters, the execution context) cost more than SQLite's own there.
_SQLITE_ADVANCE = (
    "UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1 AND seq = ? AND hash = ?"
)
# Its values in the table's order, which ends with the chain's columns: a prepared event's
# bound values, then its link.
_SQLITE_INSERT = str(
    insert(_EVENTS).values(**dict.fromkeys(_COLUMNS)).compile(dialect=sqlite_dialect.dialect())
)
if [*_CONTENT_KEYS, *_CHAIN_KEYS] != _COLUMNS:
    raise RuntimeError("audit_events: the chain's columns must come last")


def _sqlite_advance_and_insert(
    connection: Any,
    moving: dict[str, Any],
    prepared: list[Prepared],
    links: list[tuple[int, str, str]],
) -> int:
    """The head's compare-and-set, then the rows if it moved: 1 if it moved, else 0."""
    cursor = connection.connection.driver_connection.cursor()
    statement = _SQLITE_ADVANCE
    try:
        cursor.execute(
            statement,
            (moving["new_seq"], moving["new_hash"], moving["expected"], moving["previous"]),
        )
        if cursor.rowcount != 1:
            return 0
        statement = _SQLITE_INSERT
        values = [(*item.bound, *link) for item, link in zip(prepared, links, strict=True)]
        if len(values) == 1:
            cursor.execute(statement, values[0])
        else:
            cursor.executemany(statement, values)
    except sqlite3.Error as exc:
        # A full disk is a 503 (web/errors.py).
        raise driver_error(connection, statement, exc) from exc
    finally:
        cursor.close()
    return 1


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


@sa_event.listens_for(Session, "after_transaction_end")
def _turn_released(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended (committed, rolled back or closed): SQLite's write lock
    # is gone, so is the turn kept with it. A savepoint's end keeps both.
    if transaction.parent is None:
        kept = session.info.pop(_KEEPS_TURN, None)
        if kept is not None:
            kept[0].release()
