"""Fixtures of the audit chain tests (helpers in audit/writers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from audit.writers import chain_factory


@pytest.fixture
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    """A chained session factory on the test database (SQLite or PostgreSQL)."""
    made = chain_factory(database_url)
    yield made
    made.kw["bind"].dispose()
