"""Events that wait to be chained (audit/pending.py): a process killed between its commit and
the chaining loses nothing (chained by the next reader, or when WakeDock starts), and a waiting
row written or changed outside WakeDock is not chained as what it claims (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, sessionmaker

from audit.writers import KEY, now
from wakedock.audit.chain import AuditChain, audit_chain_key
from wakedock.audit.events import Event, EventType
from wakedock.audit.export import AuditFilter, page_events
from wakedock.audit.service import CHAIN_INFO, record_event
from wakedock.audit.verify import verify_chain
from wakedock.auth.passwords import PasswordHasher
from wakedock.config import Settings
from wakedock.context import RequestContext
from wakedock.db import make_engine, make_session_factory, transaction

pytestmark = pytest.mark.security

CONTEXT = RequestContext(ip="198.51.100.20", actor="pending")


def commit_then_die(url: str, key: bytes, name: str) -> None:
    """Record `name` in a transaction and be killed (SIGKILL) once it has committed, before
    anything chains it: the crash the waiting table exists for."""
    engine = make_engine(url)
    factory = make_session_factory(engine, {CHAIN_INFO: AuditChain(key)})

    def killed(_session: Session) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    # First among the after_commit listeners: it runs before the one that chains.
    sa_event.listen(Session, "after_commit", killed, insert=True)
    with transaction(factory) as db:
        record_event(db, Event(EventType.ROLE_CHANGE, target=name), CONTEXT, at=now())


def crash_after_commit(url: str, key: bytes, name: str) -> None:
    process = multiprocessing.get_context("spawn").Process(
        target=commit_then_die, args=(url, key, name)
    )
    process.start()
    process.join(timeout=120)
    assert process.exitcode == -signal.SIGKILL


def rows(factory: sessionmaker[Session], table: str) -> list[str]:
    # Raw reads: they chain nothing themselves.
    with factory() as db:
        return [str(t) for t in db.scalars(sa.text(f"SELECT target FROM {table} ORDER BY id"))]  # noqa: S608


def test_an_event_committed_before_a_kill_is_chained_by_the_next_reader(
    factory: sessionmaker[Session],
) -> None:
    url = factory.kw["bind"].url.render_as_string(hide_password=False)
    with transaction(factory) as db:
        record_event(db, Event(EventType.USER_CREATE, target="before"), CONTEXT, at=now())
    crash_after_commit(url, KEY, "granted-then-killed")

    # Committed, so stored; not chained, so not in audit_events yet.
    assert rows(factory, "audit_pending") == ["granted-then-killed"]
    assert rows(factory, "audit_events") == ["before"]
    # The audit API's listing (and SIEM delivery, which reads the same pages) chains it first.
    page = page_events(factory, AuditFilter(), limit=10)
    assert [(record.seq, record.target) for record in page] == [
        (1, "before"),
        (2, "granted-then-killed"),
    ]
    assert rows(factory, "audit_pending") == []
    verdict = verify_chain(factory, factory.kw["info"][CHAIN_INFO])
    assert verdict.ok, verdict.problem
    assert verdict.checked == 2


def test_an_event_committed_before_a_kill_is_chained_when_wakedock_starts(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from wakedock.components import build_components

    settings = make_settings()
    first = build_components(settings, hasher=PasswordHasher(19456, 2, 1))
    url = first.engine.url.render_as_string(hide_password=False)
    key = audit_chain_key(settings.audit.chain_key, settings.data_dir)
    first.engine.dispose()
    crash_after_commit(url, key, "killed-before-chaining")

    started = build_components(settings, hasher=PasswordHasher(19456, 2, 1))
    try:
        # Read raw, right after the start: chained already, nothing waits.
        assert rows(started.db, "audit_pending") == []
        assert rows(started.db, "audit_events")[-1:] == ["killed-before-chaining"]
    finally:
        started.engine.dispose()


def test_a_forged_waiting_event_is_not_chained_as_what_it_claims(
    factory: sessionmaker[Session],
) -> None:
    with transaction(factory) as db:
        record_event(db, Event(EventType.USER_CREATE, target="real"), CONTEXT, at=now())
    # Someone with write access to the database adds a waiting event (a MAC made without the
    # key), and changes a real one before it is chained (here: held in the same transaction).
    with transaction(factory) as db:
        record_event(db, Event(EventType.USER_UPDATE, target="alice"), CONTEXT, at=now())
        db.execute(
            sa.text(
                "INSERT INTO audit_pending (occurred_at, type, severity, actor, ip, user_agent, "
                "target, outcome, request_id, details, mac) VALUES (:at, 'login_success', "
                "'info', 'mallory', NULL, NULL, 'mallory', 'success', NULL, '{}', :mac)"
            ),
            {"at": now(), "mac": "0" * 64},
        )
        db.execute(
            sa.text("UPDATE audit_pending SET actor = 'someone-else' WHERE target = 'alice'")
        )

    with factory() as db:
        stored = db.execute(
            sa.text("SELECT seq, type, severity, target, details FROM audit_events ORDER BY seq")
        ).all()
    assert [(row.seq, row.type, row.target) for row in stored] == [
        (1, "user_create", "real"),
        (2, "security_violation", "audit_pending"),
        (3, "security_violation", "audit_pending"),
    ]
    assert {row.severity for row in stored[1:]} == {"critical"}
    claimed = [json.loads(row.details)["claimed_type"] for row in stored[1:]]
    assert claimed == ["user_update", "login_success"]
    assert "someone-else" not in str(stored) and "mallory" not in str(stored)
    verdict = verify_chain(factory, factory.kw["info"][CHAIN_INFO])
    assert verdict.ok, verdict.problem


def test_the_waiting_table_migration_goes_down_only_with_nothing_waiting(
    factory: sessionmaker[Session],
) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from wakedock.db import MIGRATIONS_DIR

    engine = factory.kw["bind"]
    url = engine.url.render_as_string(hide_password=False)
    crash_after_commit(url, KEY, "still-waiting")
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))

    def migrate_to(revision: str, up: bool) -> None:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            (command.upgrade if up else command.downgrade)(config, revision)

    # A downgrade would drop an event nobody chained: refused, the row stays.
    with pytest.raises(RuntimeError, match="1 audit events wait to be chained"):
        migrate_to("0008", up=False)
    assert rows(factory, "audit_pending") == ["still-waiting"]
    verify_chain(factory, factory.kw["info"][CHAIN_INFO])  # a reader: chains it
    migrate_to("0008", up=False)
    assert "audit_pending" not in sa.inspect(engine).get_table_names()
    migrate_to("head", up=True)
    assert rows(factory, "audit_pending") == []
    assert rows(factory, "audit_events") == ["still-waiting"]
