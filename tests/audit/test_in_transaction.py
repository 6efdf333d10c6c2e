"""Events recorded in the caller's transaction (`record_event`): they commit or roll back with
it, the chain stays whole under concurrent transactions, and on PostgreSQL, where such a
transaction releases the head's lock before its WAL flush (audit/durable.py), a commit that has
returned is flushed (SQLite, PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from audit.writers import KEY, in_threads, now, terminate_backend, with_caller_changes
from wakedock.audit.append import TURN_WAIT
from wakedock.audit.chain import AuditChain, chains_for
from wakedock.audit.durable import wait_durable
from wakedock.audit.events import Event, EventType
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


def seqs(factory: sessionmaker[Session]) -> dict[str, int]:
    """Each stored event's seq, by target."""
    with factory() as db:
        rows = db.execute(sa.text("SELECT target, seq FROM audit_events"))
        return {str(target): int(seq) for target, seq in rows}


def assert_chain_whole(factory: sessionmaker[Session]) -> int:
    """Fails unless `audit verify` finds the chain whole; the number of events it checked."""
    verdict = verify_chain(factory, factory.kw["info"][CHAIN_INFO])
    assert verdict.ok, verdict.problem
    return verdict.checked


class CallerFailed(Exception):
    pass


def test_an_event_commits_or_rolls_back_with_its_transaction(
    factory: sessionmaker[Session],
) -> None:
    with transaction(factory) as db:
        record_event(db, event("kept-1"), CONTEXT, at=now())
    assert seqs(factory) == {"kept-1": 1}

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
    assert seqs(factory) == {"kept-1": 1, "kept-2": 2, "kept-3": 3}

    assert targets(factory) == ["kept-1", "kept-2", "kept-3"]
    assert assert_chain_whole(factory) == 3


# The append's statements go to the driver itself (audit/append.py): what the database refuses
# must still reach the caller as SQLAlchemy's error (a lost database is a 503, web/errors.py),
# with the caller's own change rolled back and the chain as it was.
REFUSE_ON = {
    "sqlite": [
        "CREATE TRIGGER refuse_event BEFORE INSERT ON audit_events"
        " WHEN NEW.target = 'refused' BEGIN SELECT RAISE(ABORT, 'event refused by trigger'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.target = 'refused' THEN RAISE EXCEPTION 'event refused by trigger'; END IF;"
        " RETURN NEW; END $$",
        "CREATE TRIGGER refuse_event BEFORE INSERT ON audit_events"
        " FOR EACH ROW EXECUTE FUNCTION refuse_event()",
    ],
}


def test_an_append_the_database_refuses_is_the_callers_error_and_undoes_its_change(
    factory: sessionmaker[Session],
) -> None:
    with_caller_changes(factory, *REFUSE_ON[factory.kw["bind"].dialect.name])
    with transaction(factory) as db:
        record_event(db, event("before"), CONTEXT, at=now())

    for _attempt in range(2):  # the second from the head this process remembers
        with (  # noqa: PT012 (the caller's change, then the event, in one transaction)
            pytest.raises(sa.exc.DBAPIError, match="event refused by trigger"),
            transaction(factory) as db,
        ):
            db.execute(sa.text("INSERT INTO caller_changes VALUES ('lost')"))
            record_event(db, event("refused"), CONTEXT, at=now())

    with transaction(factory) as db:
        record_event(db, event("after"), CONTEXT, at=now())
    assert seqs(factory)["after"] == 2
    with factory() as db:
        assert db.scalar(sa.text("SELECT count(*) FROM caller_changes")) == 0
    assert targets(factory) == ["before", "after"]
    assert_chain_whole(factory)


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
                    if n % 4 == 1:
                        raise CallerFailed
            except CallerFailed:
                with guard:
                    rolled_back.add(name)
                continue
            with guard:
                committed.add(name)

    in_threads(writer, *((w,) for w in range(8)))

    stored = targets(factory)
    assert len(committed) == 8 * 19
    assert sorted(stored) == sorted(committed)
    assert not rolled_back & set(stored)
    assert sorted(seqs(factory).values()) == list(range(1, len(committed) + 1))
    assert assert_chain_whole(factory) == len(committed)


def lsn(value: str) -> int:
    high, low = value.split("/")
    return (int(high, 16) << 32) + int(low, 16)


# SQLite commits with its own synchronous setting (WAL, NORMAL): PostgreSQL only.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_a_returned_commit_is_flushed(factory: sessionmaker[Session]) -> None:
    engine = factory.kw["bind"]
    with engine.connect() as observer:
        for n in range(20):
            with transaction(factory) as db:
                record_event(db, event(f"flushed-{n}"), CONTEXT, at=now())
                written = str(db.scalar(sa.text("SELECT pg_current_wal_insert_lsn()")))
            # The commit record follows `written`; the WAL is flushed beyond it already.
            flushed = str(observer.scalar(sa.text("SELECT pg_current_wal_flush_lsn()")))
            assert lsn(flushed) > lsn(written)
            # Other transactions of the same session commit synchronously again.
            with transaction(factory) as db:
                assert db.scalar(sa.text("SHOW synchronous_commit")) == "on"


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


# Such a transaction's COMMIT goes to the server in one message with the barrier that flushes it
# (audit/durable.py): what the server does with that message reaches the caller as it would
# from SQLAlchemy's own COMMIT. PostgreSQL only.
REFUSE_AT_COMMIT = [
    "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF NEW.target = 'refused at commit' THEN RAISE EXCEPTION 'refused at commit'; END IF;"
    " RETURN NULL; END $$",
    "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON audit_events"
    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()",
]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_a_commit_the_database_refuses_stores_nothing_and_the_next_one_works(
    factory: sessionmaker[Session],
) -> None:
    with_caller_changes(factory, *REFUSE_AT_COMMIT)
    with transaction(factory) as db:
        record_event(db, event("before"), CONTEXT, at=now())
    with (  # noqa: PT012 (the caller's change and the event, refused together at the COMMIT)
        pytest.raises(sa.exc.DBAPIError, match="refused at commit"),
        transaction(factory) as db,
    ):
        db.execute(sa.text("INSERT INTO caller_changes VALUES ('lost')"))
        record_event(db, event("refused at commit"), CONTEXT, at=now())
    # The pool's connection serves the next transactions; one without an event commits
    # synchronously, as any other.
    with transaction(factory) as db:
        record_event(db, event("after"), CONTEXT, at=now())
    assert seqs(factory)["after"] == 2
    with transaction(factory) as db:
        assert db.scalar(sa.text("SHOW synchronous_commit")) == "on"
        assert db.scalar(sa.text("SELECT count(*) FROM caller_changes")) == 0
    assert targets(factory) == ["before", "after"]
    assert_chain_whole(factory)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_a_connection_lost_before_the_commit_is_a_lost_database_and_is_replaced(
    factory: sessionmaker[Session],
) -> None:
    with (  # noqa: PT012 (the backend dies between the event and the COMMIT)
        pytest.raises(sa.exc.DBAPIError) as failed,
        transaction(factory) as db,
    ):
        record_event(db, event("lost"), CONTEXT, at=now())
        terminate_backend(factory, db.scalar(sa.text("SELECT pg_backend_pid()")))
    # What SQLAlchemy says of a lost connection (a 503, web/errors.py), and the pool dropped
    # it: the next transaction gets a new one.
    assert failed.value.connection_invalidated
    with transaction(factory) as db:
        record_event(db, event("after"), CONTEXT, at=now())
    assert seqs(factory) == {"after": 1}
    assert targets(factory) == ["after"]
    assert_chain_whole(factory)


def append_from_another_process(url: str, key: bytes, name: str, count: int) -> None:
    """A second WakeDock process: its own engine, chain object, turn and remembered head."""
    engine = make_engine(url)
    factory = make_session_factory(
        engine, {CHAIN_INFO: AuditChain(key, chains_for(engine.dialect.name))}
    )

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
    assert assert_chain_whole(factory) == 2 * 4 * 15


# PostgreSQL's locks are per row (a write elsewhere does not block the head): SQLite only.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_a_transaction_that_has_written_does_not_wait_for_the_turn(
    factory: sessionmaker[Session],
) -> None:
    # Another thread's append holds the turn while it waits for SQLite's write lock, which
    # this transaction holds: waiting for the turn here would stall until the turn's timeout.
    chain = factory.kw["info"][CHAIN_INFO]
    other = threading.Thread(
        target=lambda: record_event_alone_in_tx(factory, "waiting"), name="waiting"
    )
    with transaction(factory) as db:
        db.execute(
            sa.text(
                "INSERT INTO siem_cursors (sink, name, delivered_seq, failures) "
                "VALUES ('s', 'n', 0, 0)"
            )
        )
        other.start()
        deadline = time.monotonic() + 30
        while not chain.lanes[0].turn.locked():
            assert time.monotonic() < deadline, "the other append never took its turn"
            time.sleep(0.005)
        started = time.monotonic()
        record_event(db, event("writer"), CONTEXT, at=now())
        elapsed = time.monotonic() - started
    other.join()
    assert elapsed < TURN_WAIT / 2
    assert sorted(targets(factory)) == ["waiting", "writer"]


def record_event_alone_in_tx(factory: sessionmaker[Session], name: str) -> None:
    with transaction(factory) as db:
        record_event(db, event(name), CONTEXT, at=now())


# PostgreSQL only: concurrent commits, each flushed by its own barrier (audit/durable.py).
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
    assert len(targets(factory)) == 8 * 15
    assert_chain_whole(factory)


# SQLite only: there the turn is kept with the database's write lock (audit/append.py).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_the_turn_goes_when_the_transaction_ends_however_it_ends(
    factory: sessionmaker[Session],
) -> None:
    chain = factory.kw["info"][CHAIN_INFO]
    # Closed without commit or rollback: no event, the turn is free again.
    db = factory()
    db.begin()
    record_event(db, event("abandoned"), CONTEXT, at=now())
    assert chain.lanes[0].turn.locked()
    db.close()
    assert not chain.lanes[0].turn.locked()
    # Rolled back: the same, and the next event takes the seq the abandoned ones had.
    with transaction(factory) as db:
        record_event(db, event("rolled back"), CONTEXT, at=now())
        db.rollback()
    assert not chain.lanes[0].turn.locked()
    # A savepoint's end keeps the turn; the outer commit releases it.
    with transaction(factory) as db:
        record_event(db, event("before a savepoint"), CONTEXT, at=now())
        assert chain.lanes[0].turn.locked()
        with db.begin_nested():
            record_event(db, event("in it"), CONTEXT, at=now())
        assert chain.lanes[0].turn.locked()
    assert not chain.lanes[0].turn.locked()
    assert targets(factory) == ["before a savepoint", "in it"]
    verdict = verify_chain(factory, chain)
    assert verdict.ok, verdict.problem
    assert verdict.checked == 2


# On PostgreSQL a transaction's events are chained at its COMMIT, in one pipeline with it
# (audit/at_commit.py), so what SQLAlchemy does to the transaction before must hold for them.
def test_a_savepoint_rolled_back_takes_its_events_with_it(
    factory: sessionmaker[Session],
) -> None:
    with_caller_changes(factory)
    with transaction(factory) as db:
        record_event(db, event("before"), CONTEXT, at=now())
        with pytest.raises(CallerFailed), db.begin_nested():  # noqa: PT012 (change, event, failure)
            db.execute(sa.text("INSERT INTO caller_changes VALUES ('undone')"))
            record_event(db, event("undone with its savepoint"), CONTEXT, at=now())
            raise CallerFailed
        with db.begin_nested():
            inner = db.begin_nested()
            record_event(db, event("undone inner"), CONTEXT, at=now())
            inner.rollback()
            record_event(db, event("kept in a savepoint"), CONTEXT, at=now())
        record_event(db, event("after"), CONTEXT, at=now())
    assert targets(factory) == ["before", "kept in a savepoint", "after"]
    with factory() as db:
        assert db.scalar(sa.text("SELECT count(*) FROM caller_changes")) == 0
    assert_chain_whole(factory)


def test_a_transaction_whose_events_all_went_with_their_savepoint_commits_its_change(
    factory: sessionmaker[Session],
) -> None:
    with_caller_changes(factory)
    with transaction(factory) as db:
        db.execute(sa.text("INSERT INTO caller_changes VALUES ('kept')"))
        inner = db.begin_nested()
        record_event(db, event("undone"), CONTEXT, at=now())
        inner.rollback()
    with transaction(factory) as db:
        record_event(db, event("next"), CONTEXT, at=now())
    with factory() as db:
        assert db.scalars(sa.text("SELECT name FROM caller_changes")).all() == ["kept"]
    assert targets(factory) == ["next"]
    assert_chain_whole(factory)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_a_prepared_statement_gone_before_the_commit_still_chains_the_events(
    factory: sessionmaker[Session],
) -> None:
    # The append's prepared statement is dropped behind this process's back (as psycopg does
    # after some rollbacks, or a pooler's DISCARD ALL): the commit still stores the caller's
    # change with its events, chained, and the next commit prepares the statement again.
    with_caller_changes(factory)
    # The chain's head remembered first (one writer keeps to its process's own chain; a chain
    # whose head is not known yet is read under its lock, without the pipeline).
    with transaction(factory) as db:
        record_event(db, event("warm"), CONTEXT, at=now())
    with transaction(factory) as db:
        record_event(db, event("prepares it"), CONTEXT, at=now())
    for n in range(3):
        with transaction(factory) as db:
            db.execute(sa.text("INSERT INTO caller_changes VALUES (:n)"), {"n": f"change {n}"})
            record_event(db, event(f"after deallocate {n}"), CONTEXT, at=now())
            db.connection().exec_driver_sql("DEALLOCATE ALL")
            assert db.scalar(sa.text("SELECT count(*) FROM pg_prepared_statements")) == 0
    with transaction(factory) as db:
        record_event(db, event("prepared again"), CONTEXT, at=now())
    with factory() as db:
        names = db.scalars(sa.text("SELECT name FROM pg_prepared_statements")).all()
    assert "wakedock_audit_append_1" in names
    assert targets(factory) == [
        "warm",
        "prepares it",
        *(f"after deallocate {n}" for n in range(3)),
        "prepared again",
    ]
    with factory() as db:
        assert db.scalar(sa.text("SELECT count(*) FROM caller_changes")) == 3
    assert_chain_whole(factory)
