"""PostgreSQL: a transaction that chained an event releases the chain's locks at its commit, and
is durable before its caller goes on.

The chains' and the order's row locks order appends (audit/append.py), and PostgreSQL holds a
row lock until the commit's WAL flush is done, so transactions that record events
(`record_event`) would flush one at a time.
Such a transaction therefore commits asynchronously (`synchronous_commit` off, for it alone):
the lock goes as soon as the commit record is written, and the next append can start. Its COMMIT
goes to the server in one message with a second, empty transaction that commits synchronously
(`_COMMIT_THEN_BARRIER`, the simple query protocol; audit/at_commit.py sends the same COMMIT
and barrier at the end of the pipeline that chains a transaction's events); the barrier's flush
covers every WAL record before it, the first commit's included, and the answer comes after it.
So a commit that returns is durable, as before, for one round trip. Concurrent barriers share
WAL flushes as concurrent commits do.

Why the chain stays whole after a crash: the WAL is replayed as a prefix. An append that
followed this one (a later seq, on any chain) was written to the WAL after this commit record
(it waited for the order's lock), so a crash that loses this transaction loses every append
after it as well.

A transaction that committed but is not yet flushed is visible to other sessions for about one
flush: `wait_durable` lets a reader (the SIEM exporter) make sure what it read will survive a
crash before it sends it anywhere.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, Engine, event, func, text
from sqlalchemy.orm import Session, sessionmaker

from wakedock.db import driver_error

# The key, in the pooled connection's info, of a transaction that commits asynchronously: its
# COMMIT is sent with the barrier (`_commit_then_barrier`).
_FLUSH_AT_COMMIT = "audit_flush_at_commit"
# The key, in the pooled connection's info, of the events a transaction chains at its commit
# (audit/at_commit.py), which then sends the COMMIT and its barrier itself.
DEFERRED = "audit_deferred"
# A transactional WAL record: the barrier's transaction gets an id and writes WAL, so its
# commit flushes synchronously (an empty transaction would not flush anything).
BARRIER = b"SELECT pg_logical_emit_message(true, 'wakedock-audit', '')"
# One simple-protocol message: the caller's COMMIT (asynchronous, it set synchronous_commit off
# for itself), then the barrier in an implicit transaction of its own, which commits with the
# server's setting. A COMMIT that fails ends the message there: no barrier, the error.
_COMMIT_THEN_BARRIER = b"COMMIT; " + BARRIER
_CAN_BARRIER = text(
    "SELECT has_function_privilege('pg_logical_emit_message(boolean,text,text)', 'execute')"
)
# SET LOCAL as an expression, so that it rides on a statement the transaction sends anyway.
ASYNC_COMMIT = func.set_config("synchronous_commit", "off", True)
_USABLE: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()
_USABLE_GUARD = threading.Lock()


def release_at_commit(db: Session) -> bool:
    """Whether `db`'s transaction should commit asynchronously (then flushed before returning).

    True on PostgreSQL where the role may write the barrier's WAL record; the caller then turns
    `synchronous_commit` off in a statement of its transaction (`ASYNC_COMMIT`), and the
    transaction's COMMIT will go with the barrier. False on SQLite, whose writers take turns
    anyway.
    """
    if db.get_bind().dialect.name != "postgresql":
        return False
    connection = db.connection()
    info = connection.info
    if _FLUSH_AT_COMMIT in info:
        return True
    engine = connection.engine
    if engine.dialect.name != "postgresql" or not _usable(engine, connection):
        return False
    info[_FLUSH_AT_COMMIT] = True
    return True


def _usable(engine: Engine, connection: Any) -> bool:
    with _USABLE_GUARD:
        known = _USABLE.get(engine)
    if known is None:
        known = bool(connection.execute(_CAN_BARRIER).scalar_one())
        with _USABLE_GUARD:
            _USABLE[engine] = known
    return known


@event.listens_for(Engine, "commit")
def _commit_then_barrier(connection: Connection) -> None:
    # Runs just before SQLAlchemy asks the driver to commit; the driver's commit is then a
    # no-op, its transaction over. A transaction in error is left to the driver's commit,
    # which raises as usual.
    if connection.invalidated or connection.info.get(DEFERRED):
        return
    if not connection.info.pop(_FLUSH_AT_COMMIT, False):
        return
    driver = connection.connection.driver_connection
    if driver is None or driver.info.transaction_status != TransactionStatus.INTRANS:
        return
    try:
        driver.execute(_COMMIT_THEN_BARRIER)
    except psycopg.Error as exc:
        raise driver_error(connection, _COMMIT_THEN_BARRIER.decode(), exc) from exc


def forget_flush(connection: Connection) -> None:
    """This transaction's COMMIT and barrier are sent elsewhere (audit/at_commit.py)."""
    connection.info.pop(_FLUSH_AT_COMMIT, None)


@event.listens_for(Engine, "rollback")
def _forget(connection: Connection) -> None:
    # SET LOCAL ended with the transaction; nothing was committed that needs a flush. (An
    # invalidated connection has no pool record to read: it is replaced, its info with it.)
    if not connection.invalidated:
        connection.info.pop(_FLUSH_AT_COMMIT, None)
        connection.info.pop(DEFERRED, None)


def wait_durable(factory: sessionmaker[Session]) -> None:
    """Return once every transaction committed so far is durable (PostgreSQL; no-op on SQLite).

    A reader that calls it after reading knows that what it read survives a crash.
    """
    with factory() as db:
        connection = db.connection()
        if connection.engine.dialect.name != "postgresql":
            return
        if not _usable(connection.engine, connection):
            return  # nothing commits asynchronously then
        connection.exec_driver_sql(BARRIER.decode())
        db.commit()
