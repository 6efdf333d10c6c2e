"""A migrated WakeDock database and nothing else: for tests of what reads or ships the audit
trail (SIEM sinks, the settings read), which need no app, hasher or runtime."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.chain import AuditChain, chains_for
from wakedock.audit.service import CHAIN_INFO
from wakedock.db import make_engine, make_session_factory, migrate


@contextmanager
def audit_database(url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on a migrated database at `url` that chain audit events (a fresh chain key)."""
    key = secrets.token_bytes(32)
    engine = make_engine(url)
    migrate(engine, key)
    try:
        yield make_session_factory(
            engine, {CHAIN_INFO: AuditChain(key, chains_for(engine.dialect.name))}
        )
    finally:
        engine.dispose()
