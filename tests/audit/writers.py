"""What the audit chain tests share: a chain on the test database, and writer threads."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.chain import AuditChain, chains_for
from wakedock.audit.service import CHAIN_INFO
from wakedock.db import make_engine, make_session_factory, migrate

# The chain key of every database these tests build (another process is given it explicitly).
KEY = secrets.token_bytes(32)


def now() -> datetime:
    return datetime.now(UTC)


def chain_factory(url: str, key: bytes = KEY) -> sessionmaker[Session]:
    """Sessions on `url` (migrated) with their own engine and AuditChain: one process's view.

    The caller disposes of `factory.kw["bind"]`.
    """
    engine = make_engine(url)
    migrate(engine, key)
    return make_session_factory(
        engine, {CHAIN_INFO: AuditChain(key, chains_for(engine.dialect.name))}
    )


def chain_of(factory: sessionmaker[Session]) -> AuditChain:
    chain = factory.kw["info"][CHAIN_INFO]
    assert isinstance(chain, AuditChain)
    return chain


def in_threads(target: Callable[..., Any], *arguments: tuple[Any, ...]) -> None:
    """Run `target(*args)` in one thread per `args`, all at once, and wait for every one."""
    threads = [threading.Thread(target=target, args=args) for args in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def terminate_backend(factory: sessionmaker[Session], pid: int) -> None:
    """PostgreSQL: end the server process `pid` (as an idle timeout or a restart would) and wait
    until it is gone, from a connection of its own."""
    admin = make_engine(factory.kw["bind"].url.render_as_string(hide_password=False))
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            deadline = time.monotonic() + 10
            while conn.scalar(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ):
                conn.rollback()
                assert time.monotonic() < deadline, "the backend did not exit"
                time.sleep(0.01)
    finally:
        admin.dispose()


def with_caller_changes(factory: sessionmaker[Session], *statements: str) -> None:
    """A table `caller_changes` for a caller's own change next to its event, then `statements`
    (triggers that refuse events...), in one transaction."""
    with factory.kw["bind"].begin() as conn:
        conn.execute(sa.text("CREATE TABLE caller_changes (name VARCHAR(32))"))
        for statement in statements:
            conn.execute(sa.text(statement))
