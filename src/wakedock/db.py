"""Database engine, sessions, and schema migrations (Alembic)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, DateTime, Engine, TypeDecorator, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError, StatementError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT = 5
# PostgreSQL: a pooled connection idle for longer than this is pinged before it is handed out
# (and replaced if the server closed it); one back in the pool for less is handed out as is.
PING_AFTER_IDLE = 1.0


class Base(DeclarativeBase):
    pass


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, always returns timezone-aware UTC (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def driver_error(connection: Connection, statement: str, exc: Exception) -> StatementError:
    """The driver's `exc`, from a statement sent to the driver itself, as SQLAlchemy raises its
    own: the same class (IntegrityError, OperationalError...), and on a lost connection the
    connection invalidated, so that the pool replaces it and the caller sees a lost database
    (a 503, web/errors.py). Raise it `from exc`."""
    dialect = connection.dialect
    driver = connection.connection.driver_connection
    lost = bool(dialect.is_disconnect(cast(Any, exc), cast(Any, driver), None))
    if lost:
        connection.invalidate(exc)
    return DBAPIError.instance(
        statement, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost
    )


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for SQLite (file, WAL, foreign keys on) or PostgreSQL (psycopg 3)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False}, pool_size=20
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A bounded connect: an unreachable server is an error within seconds, not a hung thread.
    engine = create_engine(
        url,
        echo=echo,
        pool_size=20,
        max_overflow=10,
        connect_args={"connect_timeout": CONNECT_TIMEOUT},
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only if it sat idle for PING_AFTER_IDLE or more.

    SQLAlchemy's pool_pre_ping pings at every checkout: one more round trip per transaction,
    about a quarter of a short one's time here (docs/benchmarks.md). A connection that went back
    to the pool a moment ago was alive then; one that waited longer (the server may have
    restarted, or closed it) is checked first, and on failure the pool replaces it
    (DisconnectionError) before anyone uses it. What is given up: a server restart in the
    last PING_AFTER_IDLE is found by the transaction itself, which fails (a 503) and makes the
    pool drop its older connections, as a restart during a transaction would.
    """

    def returned(_dbapi: Any, entry: ConnectionPoolEntry) -> None:
        entry.info["idle_since"] = time.monotonic()

    def handing_out(dbapi: Any, entry: ConnectionPoolEntry, _proxy: Any) -> None:
        since = entry.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return  # new, or back in the pool a moment ago
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as exc:  # any failure: a fresh connection instead
            raise DisconnectionError("a pooled connection failed its ping") from exc

    event.listen(engine, "checkin", returned)
    event.listen(engine, "checkout", handing_out)


def make_session_factory(
    engine: Engine, info: dict[str, Any] | None = None
) -> sessionmaker[Session]:
    """Sessions for `engine`; `info` reaches every session (e.g. the audit chain's key holder)."""
    return sessionmaker(engine, expire_on_commit=False, info=info or {})


def on_write_committed(factory: sessionmaker[Session], callback: Callable[[], None]) -> None:
    """Call `callback` after each commit that wrote something (the database takes writes)."""

    def flushed(session: Session, _context: Any) -> None:
        session.info["wrote"] = True

    def committed(session: Session) -> None:
        if session.info.pop("wrote", False):
            callback()

    event.listen(factory, "after_flush", flushed)
    event.listen(factory, "after_commit", committed)
    event.listen(factory, "after_rollback", lambda session: session.info.pop("wrote", None))


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session


def migrate(engine: Engine, audit_chain_key: bytes | None = None) -> None:
    """Bring the schema to the newest migration (idempotent).

    `audit_chain_key` lets the migration that introduced the chain link events recorded before.
    """
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes["audit_chain_key"] = audit_chain_key
        command.upgrade(config, "head")
