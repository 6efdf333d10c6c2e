"""One migrated database per backend (SQLite, PostgreSQL) for these tests, emptied after each
test: the zero-trust stores' tests need tables, not an app, and migrating once is cheaper."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from support.components import PostgresServer
from wakedock.auth.models import User
from wakedock.db import make_engine, make_session_factory, migrate, transaction
from wakedock.zerotrust.models import SignInFailure, SignInRecord


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def migrated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sessionmaker[Session]]:
    server: PostgresServer | None = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('zerotrust') / 'wakedock.db'}"
    else:
        server = request.getfixturevalue("postgres")
        name = server.create_database()
        url = server.admin_url(name)
    engine = make_engine(url)
    migrate(engine)
    yield make_session_factory(engine)
    engine.dispose()
    if server is not None:
        server.drop_database(name)


@pytest.fixture
def factory(migrated: sessionmaker[Session]) -> Iterator[sessionmaker[Session]]:
    yield migrated
    with transaction(migrated) as db:
        db.execute(delete(SignInRecord))
        db.execute(delete(SignInFailure))
        db.execute(delete(User))


@pytest.fixture
def make_user(factory: sessionmaker[Session]) -> Callable[[str], int]:
    """Adds a user row (history rows belong to one) and returns its id."""

    def make(username: str) -> int:
        now = datetime.now(UTC)
        user = User(
            username=username,
            role="viewer",
            password_hash="not-a-hash",
            created_at=now,
            updated_at=now,
            password_changed_at=now,
        )
        with transaction(factory) as db:
            db.add(user)
            db.flush()
            return user.id

    return make
