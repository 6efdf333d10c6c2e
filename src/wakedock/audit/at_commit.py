"""PostgreSQL: events recorded in a caller's transaction are chained when it commits, in the same
round trip as its COMMIT (docs/audit.md, "Chained at commit").

A chain's row lock orders the appends on that chain (and the order's row lock their seqs), and
is held until the transaction's commit record is written. An event chained as soon as it is
recorded would hold it while the caller goes on and until its COMMIT arrives: a round trip and
the caller's own work, during which every other append on that chain waits. Here
`record_event` only prepares the event (`defer`), and the transaction's commit sends, in one
pipeline (libpq's pipeline mode):

    SAVEPOINT (or BEGIN); the chain's compare-and-set, the seqs and the rows; RELEASE; COMMIT;
    barrier

with a flush request after the compare-and-set, a statement prepared once per connection
(parsing and planning it each time was most of the server's time in the turn). The server goes
from the chain's lock to the commit record without waiting for this process, which learns the
compare-and-set's outcome (and the seqs) while the server commits, and hands the lane's turn
(`AuditChain.take_lane`) to the next append then.

If the chain's head was not the one this process remembered (another process appended, a transaction
that moved it rolled back), or the prepared statement is gone (psycopg deallocates all of a
connection's after some rollbacks), the statement fails: the server skips the rest of the
pipeline, the savepoint is rolled back (the caller's work is kept), and the chain is locked
and read, as `append` does, before the COMMIT and its barrier are sent.

A savepoint rolled back takes the events recorded in it, as it would their rows. Durability is
unchanged (audit/durable.py): the COMMIT is asynchronous and the barrier after it flushes the
WAL before the caller returns.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from psycopg import pq
from psycopg.abc import Buffer
from psycopg.adapt import PyFormat, Transformer
from psycopg.pq import ExecStatus, TransactionStatus
from sqlalchemy import Connection, Engine, Pool, event
from sqlalchemy.orm import Session

from wakedock.audit.append import (
    TAKE_CHAIN,
    TURN_WAIT,
    Prepared,
    batch_sql,
    chain_head,
    chain_of,
    holds_head,
    link_rows,
    log_appended,
    prepare_rows,
)
from wakedock.audit.chain import IN_BATCH, AuditChain, ChainedFields, Lane
from wakedock.audit.durable import BARRIER, DEFERRED, forget_flush, release_at_commit
from wakedock.db import driver_error

_SAVEPOINT = b"SAVEPOINT wakedock_audit"
_RELEASE = b"RELEASE SAVEPOINT wakedock_audit"
_ROLLBACK_TO = b"ROLLBACK TO SAVEPOINT wakedock_audit"
# The compare-and-set's own failure (a division by the rows it stored, none), or the prepared
# statement was gone (psycopg deallocates every prepared statement of a connection after some
# rollbacks, DDL...).
_NOT_CHAINED = ("22012", "26000")
# The key, in the pooled connection's info, of the statements prepared on its server session
# (forgotten at every rollback: psycopg may then have deallocated them all).
_PREPARED = "audit_prepared"


# The chain locked and read, in the transaction that then moves it; its commit asynchronous.
_TAKE_CHAIN = TAKE_CHAIN + b", set_config('synchronous_commit', 'off', true)"
# The key, in the pooled connection's info, of the savepoints open in its transaction: each
# with how many events had been deferred when it began.
_SAVEPOINTS = "audit_savepoints"


@dataclass
class _Deferred:
    chain: AuditChain
    events: list[tuple[Prepared, list[Any]]]
    # Each event's row values but the chain's, as the pipeline sends them (text), dumped when
    # it is recorded, so that only the chain's own values are left to do in the turn.
    dumped: list[Sequence[Buffer | None]]


def defer(db: Session, contents: list[ChainedFields]) -> bool:
    """Keep `contents` to be chained at `db`'s commit: True, or False where they must be
    appended now (not PostgreSQL, no barrier, or this transaction moved the head already)."""
    # The dialect from the session's bind first: `Session.connection` costs a SQLite append
    # about 5 % of its CPU (docs/benchmarks.md, "Several chains, one order").
    if db.get_bind().dialect.name != "postgresql":
        return False
    connection = db.connection()
    if holds_head(db) or not release_at_commit(db):
        return False
    info = connection.info
    deferred = info.get(DEFERRED)
    if deferred is None:
        deferred = info[DEFERRED] = _Deferred(chain_of(db), [], [])
    events = prepare_rows(connection.engine, contents)
    dump = Transformer(connection.connection.driver_connection).dump_sequence
    deferred.events.extend(events)
    deferred.dumped.extend(dump(row, [PyFormat.TEXT] * len(row)) for _item, row in events)
    return True


@event.listens_for(Engine, "savepoint")
def _savepoint(connection: Connection, name: str | None) -> None:
    deferred = connection.info.get(DEFERRED)
    count = len(deferred.events) if isinstance(deferred, _Deferred) else 0
    # SQLAlchemy names its savepoints after this event: the name is bound when it ends.
    connection.info.setdefault(_SAVEPOINTS, []).append([name, count])


@event.listens_for(Engine, "rollback_savepoint")
def _savepoint_rolled_back(connection: Connection, name: str, _context: Any) -> None:
    connection.info.pop(_PREPARED, None)  # psycopg may deallocate after ROLLBACK TO
    # The events recorded since it began go with it, as rows written in it would.
    count = _close_savepoint(connection, name)
    deferred = connection.info.get(DEFERRED)
    if count is not None and isinstance(deferred, _Deferred):
        del deferred.events[count:]
        del deferred.dumped[count:]


@event.listens_for(Engine, "release_savepoint")
def _savepoint_released(connection: Connection, name: str, _context: Any) -> None:
    _close_savepoint(connection, name)


def _close_savepoint(connection: Connection, name: str) -> int | None:
    """Forget savepoint `name` and those opened after it: the events deferred when it began.

    Savepoints end innermost first: one not known by its name is the innermost still open."""
    marks: list[list[Any]] = connection.info.get(_SAVEPOINTS, [])
    for index in range(len(marks) - 1, -1, -1):
        if marks[index][0] == name:
            break
    else:
        unnamed = [i for i, mark in enumerate(marks) if mark[0] is None]
        if not unnamed:
            return None
        index = unnamed[-1]
    count = int(marks[index][1])
    del marks[index:]
    return count


@event.listens_for(Engine, "rollback")
def _rolled_back(connection: Connection) -> None:
    if not connection.invalidated:
        connection.info.pop(DEFERRED, None)
        connection.info.pop(_SAVEPOINTS, None)
        if _in_transaction(connection.connection.driver_connection):
            connection.info.pop(_PREPARED, None)


@event.listens_for(Pool, "reset")
def _reset(dbapi_connection: Any, record: Any, _state: Any) -> None:
    # Returned to the pool: a transaction still open is rolled back.
    if _in_transaction(getattr(dbapi_connection, "driver_connection", dbapi_connection)):
        record.info.pop(_PREPARED, None)


def _in_transaction(driver: Any) -> bool:
    """Whether a rollback of this psycopg connection reaches the server (and psycopg may then
    deallocate its prepared statements): not when no transaction is open."""
    info = getattr(driver, "info", None)
    status = getattr(info, "transaction_status", TransactionStatus.IDLE)
    return bool(status != TransactionStatus.IDLE)


@event.listens_for(Engine, "commit")
def _chain_at_commit(connection: Connection) -> None:
    # Runs just before SQLAlchemy asks the driver to commit (as durable.py's barrier does); the
    # driver's commit is then a no-op, the transaction over.
    if connection.invalidated:
        return
    connection.info.pop(_SAVEPOINTS, None)
    deferred = connection.info.pop(DEFERRED, None)
    if not isinstance(deferred, _Deferred):
        return
    # The COMMIT goes with its barrier from here; or, every event gone with its savepoint,
    # the transaction commits as any other (nothing in it was made asynchronous).
    forget_flush(connection)
    if not deferred.events:
        return
    driver = cast(Any, connection.connection.driver_connection)
    if driver.info.transaction_status not in (TransactionStatus.IDLE, TransactionStatus.INTRANS):
        return  # in error: the driver's commit raises as usual, nothing was chained
    chain = deferred.chain
    lane = chain.take_lane(TURN_WAIT)
    had_turn = lane is not None

    def moved() -> None:  # the turn goes as soon as the chain has moved
        nonlocal had_turn
        had_turn = False
        cast(Lane, lane).turn.release()

    try:
        head = chain.cached_head(lane) if lane is not None else None
        if (
            lane is not None
            and head is not None
            and _pipelined(connection, driver, chain, lane, deferred, head, moved)
        ):
            return
        _locked(connection, driver, chain, lane, deferred.events)
    finally:
        if had_turn:
            cast(Lane, lane).turn.release()
    _execute(connection, driver, b"COMMIT; " + BARRIER)


def _pipelined(
    connection: Connection,
    driver: Any,
    chain: AuditChain,
    lane: Lane,
    deferred: _Deferred,
    head: tuple[str, int],
    moved: Callable[[], None],
) -> bool:
    """The pipeline of the module's docstring: True once committed and flushed, False if the
    chain's head was not `head` (nothing chained, the caller's work kept, the transaction
    open).

    Any other error (the database refused a row, the COMMIT failed, the connection was lost)
    is raised once every result of the pipeline has been read, as SQLAlchemy raises its own."""
    events = deferred.events
    values, last = _linked(chain, lane.chain, deferred, head)
    name, sql = _statement(len(events))
    prepared: set[bytes] = connection.info.setdefault(_PREPARED, set())
    prepare = name not in prepared
    pg = driver.pgconn
    began = pg.transaction_status == TransactionStatus.INTRANS
    steps = [_SAVEPOINT if began else b"BEGIN"]
    errors: list[psycopg.Error | None] = []
    try:
        pg.enter_pipeline_mode()
        pg.send_query_params(steps[0], None)
        if prepare:
            # It may still exist (this process forgets it at every rollback): a Close of a
            # statement that does not exist is no error.
            pg.send_close_prepared(name)
            pg.send_prepare(name, sql)
            steps += [b"CLOSE " + name, sql]
        pg.send_query_prepared(name, values)
        pg.send_flush_request()
        appended = len(steps)
        steps.append(sql)
        if began:
            pg.send_query_params(_RELEASE, None)
            steps.append(_RELEASE)
        pg.send_query_params(b"COMMIT", None)
        pg.send_query_params(BARRIER, None)
        steps += [b"COMMIT", BARRIER]
        pg.pipeline_sync()
        _send(pg)
        for index in range(len(steps)):
            error, result = _result(pg)
            errors.append(error)
            if index == appended and error is None:
                # The chain moved: the next append on it may go, its statement waiting in the
                # database for this COMMIT, which the server runs without waiting for us.
                chain.remember(lane, last, int(result.get_value(0, 1) or b"0"))
                moved()
        _sync(pg)
        pg.exit_pipeline_mode()
    except psycopg.Error as exc:
        # The connection is lost or unusable: it is the error (leaving pipeline mode may fail
        # too on a dead connection, and would hide it).
        with contextlib.suppress(psycopg.Error):
            pg.exit_pipeline_mode()
        raise driver_error(connection, "audit append at commit", exc) from exc
    if prepare and errors[0] is None and errors[2] is None:
        prepared.add(name)
    failed = [(step, error) for step, error in zip(steps, errors, strict=True) if error is not None]
    if not failed:
        log_appended([item for item, _row in events])
        return True
    step, error = failed[0]
    if errors[appended] is error and error.sqlstate in _NOT_CHAINED:
        # Nothing was chained: the turn is still this append's, the caller's work is kept.
        prepared.discard(name)  # the statement may have been gone (26000)
        _execute(connection, driver, _ROLLBACK_TO if began else b"ROLLBACK")
        return False
    raise driver_error(connection, step.decode(errors="replace"), error) from error


def _linked(
    chain: AuditChain, number: int, deferred: _Deferred, head: tuple[str, int]
) -> tuple[list[Buffer | None], str]:
    """The statement's parameters (text) for the events chained on chain `number` after `head`
    (hash, seq), and the new head's hash. Text throughout: the statement's casts give each
    parameter its type, the same for every call of the prepared statement."""
    values: list[Buffer | None] = []
    last, anchor = head
    for (item, _row), dumped in zip(deferred.events, deferred.dumped, strict=True):
        digest = chain.link_on(number, last, anchor, item.tail)
        values.extend(dumped)
        values.extend((last.encode(), digest.encode()))
        last, anchor = digest, IN_BATCH
    return [b"%d" % number, head[0].encode(), last.encode(), *values], last


def _statement(rows: int) -> tuple[bytes, bytes]:
    """The prepared statement's name and text for a batch of `rows` events."""
    return b"wakedock_audit_append_%d" % rows, batch_sql(rows, raising=True)


def _locked(
    connection: Connection,
    driver: Any,
    chain: AuditChain,
    lane: Lane | None,
    events: list[tuple[Prepared, list[Any]]],
) -> None:
    """The events chained after the chain's head, locked and read first (in the transaction),
    on `lane`'s chain (None: no turn was had, the first chain)."""
    number = (lane or chain.lanes[0]).chain
    with driver.cursor() as cursor:
        try:
            cursor.execute(_TAKE_CHAIN, (number,))
            row = cursor.fetchone()
            if row is None:
                raise RuntimeError(f"audit chain {number} has no row in audit_chains")
            head = chain_head(cursor, number, tuple(row), "%s")
            rows, last = link_rows(chain, number, events, head)
            sql = batch_sql(len(events))
            with psycopg.RawCursor(driver) as raw:
                raw.execute(sql, [number, head[0], last, *rows])
                seqs = sorted(int(seq) for (seq,) in raw.fetchall())
        except psycopg.Error as exc:
            raise driver_error(connection, "audit append at commit", exc) from exc
    if len(seqs) != len(events):
        raise RuntimeError("the audit chain head moved while locked; event not recorded")
    if lane is not None:
        chain.remember(lane, last, seqs[-1])
    log_appended([item for item, _row in events])


def _execute(connection: Connection, driver: Any, sql: bytes) -> None:
    try:
        driver.execute(sql)
    except psycopg.Error as exc:
        raise driver_error(connection, sql.decode(), exc) from exc


def _send(pg: pq.abc.PGconn) -> None:
    while pg.flush():
        _wait(pg, select.POLLOUT)


def _wait(pg: pq.abc.PGconn, events: int) -> None:
    poll = select.poll()
    poll.register(pg.socket, events)
    poll.poll()


def _next(pg: pq.abc.PGconn) -> pq.abc.PGresult | None:
    while pg.is_busy():
        _wait(pg, select.POLLIN)
        pg.consume_input()
    return pg.get_result()


def _result(pg: pq.abc.PGconn) -> tuple[psycopg.Error | None, pq.abc.PGresult]:
    """One statement's result in the pipeline (and the NULL after it): its error (None if it
    succeeded; one skipped after an earlier error is an error too), and the result."""
    result = _next(pg)
    if result is None:
        raise psycopg.InterfaceError("the audit pipeline ended early")
    if _next(pg) is not None:
        raise psycopg.InterfaceError("the audit pipeline returned more than one result")
    if result.status in (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK):
        return None, result
    if result.status == ExecStatus.PIPELINE_ABORTED:
        return psycopg.OperationalError("skipped after an error in the audit pipeline"), result
    return psycopg.errors.error_from_result(result), result


def _sync(pg: pq.abc.PGconn) -> None:
    result = _next(pg)
    if result is None or result.status != ExecStatus.PIPELINE_SYNC:
        raise psycopg.InterfaceError("the audit pipeline did not end with its sync")
