"""PostgreSQL: a transaction that chained an event releases the head's lock at its commit, and is
durable before its caller goes on.

The chain head's row lock orders appends, and PostgreSQL holds a row lock until the commit's WAL
flush is done, so transactions that record events (`record_event`) would flush one at a time.
Such a transaction therefore commits asynchronously (`synchronous_commit` off, for it alone):
the lock goes as soon as the commit record is written, and the next append can start. Before the
commit returns to its caller, the same connection commits a second, empty transaction
synchronously (`_BARRIER`); its flush covers every WAL record before it, the first commit's
included, and concurrent barriers share flushes as concurrent commits do. So a commit that
returns is durable, as before.

Why the chain stays whole after a crash: the WAL is replayed as a prefix. An append that
followed this one was written to the WAL after this commit record (it waited for the lock), so
a crash that loses this transaction loses every append chained after it as well.

Concurrent commits share barriers (`_Barriers`): a commit waits for one barrier that started
after it returned, whichever connection runs it, so N commits that overlap need about two.

A transaction that committed but is not yet flushed is visible to other sessions for about one
flush: `wait_durable` lets a reader (the SIEM exporter) make sure what it read will survive a
crash before it sends it anywhere.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from psycopg.pq import TransactionStatus
from sqlalchemy import Engine, event, func, text
from sqlalchemy.orm import Session, sessionmaker

# The Session.info key of the driver connection whose transaction committed asynchronously.
_PENDING = "audit_async_commit"
# A transactional WAL record: the barrier's transaction gets an id and writes WAL, so its
# commit flushes synchronously (an empty transaction would not flush anything).
_BARRIER = "SELECT pg_logical_emit_message(true, 'wakedock-audit', '')"
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
    `synchronous_commit` off in a statement of its transaction (`ASYNC_COMMIT`). False on SQLite,
    whose writers take turns anyway.
    """
    if _PENDING in db.info:
        return db.info[_PENDING] is not None
    connection = db.connection()
    engine = connection.engine
    if engine.dialect.name != "postgresql" or not _usable(engine, connection):
        db.info[_PENDING] = None
        return False
    db.info[_PENDING] = (connection.connection.driver_connection, _barriers(engine))
    return True


def _usable(engine: Engine, connection: Any) -> bool:
    with _USABLE_GUARD:
        known = _USABLE.get(engine)
    if known is None:
        known = bool(connection.execute(_CAN_BARRIER).scalar_one())
        with _USABLE_GUARD:
            _USABLE[engine] = known
    return known


class _Barriers:
    """The barriers of one engine (database) in this process, shared by concurrent commits.

    A barrier that started after a commit returned flushes that commit. So a committer that
    finds a barrier already running waits for it to end, then for the next one (which it runs
    itself, on its own connection, unless another waiting committer started it first): every
    commit that returned while a barrier ran is flushed by the following one.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._started = 0  # barriers started so far
        self._done = 0  # the latest barrier that completed (barriers are run one at a time)
        self._running = False

    def flush(self, driver: Any) -> None:
        """Return once a barrier started after this call has completed (the caller committed)."""
        with self._changed:
            needed = self._started + 1  # a barrier running now may have started before the commit
            while self._done < needed:
                if self._running:
                    self._changed.wait()
                    continue
                self._running = True
                self._started += 1
                mine = self._started
                self._changed.release()
                flushed = False
                try:
                    _run_barrier(driver)
                    flushed = True
                finally:
                    # Whatever happened, the next waiter may run one; a failed barrier flushed
                    # nothing, so `_done` moves only on success (its caller gets the error).
                    self._changed.acquire()
                    self._running = False
                    if flushed:
                        self._done = mine
                    self._changed.notify_all()


def _run_barrier(driver: Any) -> None:
    driver.autocommit = True
    try:
        driver.execute(_BARRIER)
    finally:
        driver.autocommit = False


_BARRIERS: weakref.WeakKeyDictionary[Engine, _Barriers] = weakref.WeakKeyDictionary()


def _barriers(engine: Engine) -> _Barriers:
    with _USABLE_GUARD:
        barriers = _BARRIERS.get(engine)
        if barriers is None:
            barriers = _BARRIERS[engine] = _Barriers()
        return barriers


@event.listens_for(Session, "after_commit")
def _flush_before_returning(session: Session) -> None:
    # Runs before commit() returns, with the committed connection still the session's. A
    # savepoint's release also lands here: the transaction is still open then, wait for its end.
    pending = session.info.get(_PENDING)
    if pending is None:
        return
    driver, barriers = pending
    if driver.info.transaction_status != TransactionStatus.IDLE:
        return
    del session.info[_PENDING]
    barriers.flush(driver)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    # SET LOCAL ended with the transaction; nothing was committed that needs a flush.
    session.info.pop(_PENDING, None)


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
        connection.exec_driver_sql(_BARRIER)
        db.commit()
