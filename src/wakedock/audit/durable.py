"""PostgreSQL: make sure what a reader read is durable before it sends it anywhere.

`wait_durable` commits an empty transaction that writes a WAL record, synchronously: its flush
covers every WAL record before it. Nothing in WakeDock commits asynchronously today (events in a
caller's transaction are chained after it commits, audit/pending.py, so no transaction holds the
chain head through its WAL flush any more); the SIEM exporter keeps the barrier so that a
server configured with `synchronous_commit` off, or a later change that commits asynchronously,
cannot make it send an event a crash would then take back.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

# A transactional WAL record: the barrier's transaction gets an id and writes WAL, so its
# commit flushes synchronously (an empty transaction would not flush anything).
_BARRIER = "SELECT pg_logical_emit_message(true, 'wakedock-audit', '')"
_CAN_BARRIER = text(
    "SELECT has_function_privilege('pg_logical_emit_message(boolean,text,text)', 'execute')"
)
_USABLE: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()
_USABLE_GUARD = threading.Lock()


def _usable(engine: Engine, connection: Any) -> bool:
    with _USABLE_GUARD:
        known = _USABLE.get(engine)
    if known is None:
        known = bool(connection.execute(_CAN_BARRIER).scalar_one())
        with _USABLE_GUARD:
            _USABLE[engine] = known
    return known


def wait_durable(factory: sessionmaker[Session]) -> None:
    """Return once every transaction committed so far is durable (PostgreSQL; no-op on SQLite).

    A reader that calls it after reading knows that what it read survives a crash.
    """
    with factory() as db:
        connection = db.connection()
        if connection.engine.dialect.name != "postgresql":
            return
        if not _usable(connection.engine, connection):
            return  # the role may not write the record; its commits are synchronous anyway
        connection.exec_driver_sql(_BARRIER)
        db.commit()
