"""PostgreSQL's connection pool pings a connection before use only when it sat idle a while
(wakedock/db.py, `_ping_when_idle`): a connection the server closed meanwhile is replaced before
anyone uses it, and one back in the pool a moment ago goes out as is (the trade-off: a restart
within that moment is found by the transaction itself, and the pool recovers at once)."""

from __future__ import annotations

import time

import psycopg
import pytest
import sqlalchemy as sa

from support.components import PostgresServer
from wakedock import db


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    return postgres.admin_url(postgres.create_database())


def backend(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def terminate(postgres: PostgresServer, pid: int) -> None:
    with psycopg.connect(postgres.admin_url(), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        # pg_terminate_backend only signals: wait until the backend is gone.
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, "the backend did not exit"
            time.sleep(0.01)


def test_a_connection_closed_by_the_server_while_idle_is_replaced_before_use(
    postgres: PostgresServer, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.2)
    engine = db.make_engine(url)
    try:
        first = backend(engine)
        terminate(postgres, first)  # an idle-session timeout, a server restart...
        time.sleep(0.3)
        # The pool's only connection is dead: the ping finds it and a new one serves.
        second = backend(engine)
        assert second != first
    finally:
        engine.dispose()


def test_a_connection_back_in_the_pool_a_moment_ago_goes_out_without_a_ping(
    postgres: PostgresServer, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 30.0)
    engine = db.make_engine(url)
    try:
        first = backend(engine)
        terminate(postgres, first)
        # No ping within the window: the transaction itself meets the closed connection, and
        # SQLAlchemy reports it as a disconnect...
        with pytest.raises(sa.exc.DBAPIError) as failed:
            backend(engine)
        assert failed.value.connection_invalidated
        # ... after which the pool has a new connection: the next transaction works.
        assert backend(engine) != first
    finally:
        engine.dispose()
