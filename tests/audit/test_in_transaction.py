"""Events recorded in the caller's transaction (`record_event`): they commit or roll back with
it, are chained once it has committed (audit/pending.py), and the chain stays whole under
concurrent transactions; a commit that has returned is flushed (SQLite, PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from audit.writers import KEY, in_threads, now
from wakedock.audit.chain import AuditChain
from wakedock.audit.durable import wait_durable
from wakedock.audit.events import Event, EventType
from wakedock.audit.pending import link_pending
from wakedock.audit.service import CHAIN_INFO, record_event
from wakedock.audit.verify import verify_chain
from wakedock.context import RequestContext
from wakedock.db import make_engine, make_session_factory, transaction

pytestmark = pytest.mark.security

CONTEXT = RequestContext(ip="198.51.100.10", actor="tx")


def event(name: str) -> Event:
    return Event(EventType.USER_UPDATE, target=name)


def targets(factory: sessionmaker[Session]) -> list[str]:
    with factory() as db:
        return [str(t) for t in db.scalars(sa.text("SELECT target FROM audit_events ORDER BY seq"))]


def chained(factory: sessionmaker[Session]) -> list[tuple[int, str]]:
    with factory() as db:
        rows = db.execute(sa.text("SELECT seq, target FROM audit_events ORDER BY seq"))
        return [(int(seq), str(target)) for seq, target in rows]


def waiting(factory: sessionmaker[Session]) -> int:
    with factory() as db:
        return int(db.scalar(sa.text("SELECT count(*) FROM audit_pending")) or 0)


class CallerFailed(Exception):
    pass


def test_an_event_commits_or_rolls_back_with_its_transaction(
    factory: sessionmaker[Session],
) -> None:
    with transaction(factory) as db:
        record_event(db, event("kept-1"), CONTEXT, at=now())
        # Stored with the caller's work, not chained before it commits.
        assert targets(factory) == []
    assert targets(factory) == ["kept-1"]

    def failing_caller() -> None:
        with transaction(factory) as db:
            record_event(db, event("dropped"), CONTEXT, at=now())
            raise CallerFailed

    with pytest.raises(CallerFailed):
        failing_caller()
    # Two events in one transaction, then a commit: both, in order, after the kept one.
    with transaction(factory) as db:
        record_event(db, event("kept-2"), CONTEXT, at=now())
        record_event(db, event("kept-3"), CONTEXT, at=now())

    # Chained once each commit returned, in order, with no gap where "dropped" was; nothing
    # waits any more.
    assert chained(factory) == [(1, "kept-1"), (2, "kept-2"), (3, "kept-3")]
    assert waiting(factory) == 0
    verdict = verify_chain(factory, factory.kw["info"][CHAIN_INFO])
    assert verdict.ok, verdict.problem
    assert verdict.checked == 3


def test_concurrent_transactions_chain_every_committed_event_once(
    factory: sessionmaker[Session],
) -> None:
    committed: set[str] = set()
    rolled_back: set[str] = set()
    guard = threading.Lock()

    def writer(number: int) -> None:
        for n in range(25):
            name = f"w{number}-{n}"
            try:
                with transaction(factory) as db:
                    record_event(db, event(name), CONTEXT, at=now())
                    record_event(db, event(name + "-second"), CONTEXT, at=now())
                    if n % 4 == 1:
                        raise CallerFailed
            except CallerFailed:
                with guard:
                    rolled_back.add(name)
                continue
            with guard:
                committed.add(name)

    in_threads(writer, *((w,) for w in range(8)))

    # Under concurrent load a background writer may still be chaining the last commits: a
    # reader that must see every event chains what waits first, as the audit API does.
    link_pending(factory)
    rows = chained(factory)
    stored = [target for _, target in rows]
    assert len(committed) == 8 * 19
    assert sorted(stored) == sorted([*committed, *(name + "-second" for name in committed)])
    assert not rolled_back & set(stored)
    # No gap; a transaction's events are chained in the order it recorded them (concurrent
    # transactions' events may interleave on PostgreSQL, whose ids are given at the INSERT).
    assert [seq for seq, _ in rows] == list(range(1, 2 * len(committed) + 1))
    position = {target: seq for seq, target in rows}
    assert all(position[name] < position[name + "-second"] for name in committed)
    verdict = verify_chain(factory, factory.kw["info"][CHAIN_INFO])
    assert verdict.ok, verdict.problem
    assert verdict.checked == 2 * len(committed)


def lsn(value: str) -> int:
    high, low = value.split("/")
    return (int(high, 16) << 32) + int(low, 16)


# A no-op on SQLite: PostgreSQL only.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_wait_durable_flushes_what_was_committed(factory: sessionmaker[Session]) -> None:
    engine = factory.kw["bind"]
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
        conn.execute(sa.text("UPDATE audit_chain_head SET seq = seq WHERE id = 1"))
        written = str(conn.scalar(sa.text("SELECT pg_current_wal_insert_lsn()")))
    wait_durable(factory)
    with engine.connect() as observer:
        flushed = str(observer.scalar(sa.text("SELECT pg_current_wal_flush_lsn()")))
    assert lsn(flushed) > lsn(written)


def append_from_another_process(url: str, key: bytes, name: str, count: int) -> None:
    """A second WakeDock process: its own engine, chain object, turn and remembered head."""
    engine = make_engine(url)
    factory = make_session_factory(engine, {CHAIN_INFO: AuditChain(key)})

    def writer(thread: int) -> None:
        for n in range(count):
            with transaction(factory) as db:
                record_event(db, event(f"{name}-{thread}-{n}"), CONTEXT, at=now())

    in_threads(writer, *((t,) for t in range(4)))
    engine.dispose()


def test_two_processes_appending_at_once_give_one_whole_chain(
    factory: sessionmaker[Session],
) -> None:
    url = factory.kw["bind"].url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    others = [
        context.Process(target=append_from_another_process, args=(url, KEY, f"p{p}", 15))
        for p in range(2)
    ]
    for process in others:
        process.start()
    for process in others:
        process.join(timeout=120)
        assert process.exitcode == 0

    stored = targets(factory)
    assert len(stored) == len(set(stored)) == 2 * 4 * 15
    verdict = verify_chain(factory, factory.kw["info"][CHAIN_INFO])
    assert verdict.ok, verdict.problem
    assert verdict.checked == 2 * 4 * 15


# PostgreSQL only: a commit that recorded events returns flushed (its events with it).
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_concurrent_commits_each_return_flushed(factory: sessionmaker[Session]) -> None:
    engine = factory.kw["bind"]
    unflushed: list[str] = []

    def writer(number: int) -> None:
        with engine.connect() as observer:
            for n in range(15):
                with transaction(factory) as db:
                    record_event(db, event(f"shared-{number}-{n}"), CONTEXT, at=now())
                    written = str(db.scalar(sa.text("SELECT pg_current_wal_insert_lsn()")))
                flushed = str(observer.scalar(sa.text("SELECT pg_current_wal_flush_lsn()")))
                observer.rollback()
                if lsn(flushed) <= lsn(written):
                    unflushed.append(f"shared-{number}-{n}")

    in_threads(writer, *((w,) for w in range(8)))
    assert unflushed == []
    link_pending(factory)
    assert len(targets(factory)) == 8 * 15
    verdict = verify_chain(factory, factory.kw["info"][CHAIN_INFO])
    assert verdict.ok, verdict.problem
