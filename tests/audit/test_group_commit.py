"""Events recorded on their own by concurrent callers share commits (audit/service.py's group
commit): the chain must stay whole and ordered, every acknowledged event stored exactly once,
and a batch that fails must store nothing while its callers are told so (SQLite, PostgreSQL)."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from audit.writers import (
    KEY,
    chain_of,
    in_threads,
    now,
    terminate_backend,
    with_caller_changes,
)
from wakedock import db as db_module
from wakedock.audit.chain import AuditChain, chains_for
from wakedock.audit.events import Event, EventType
from wakedock.audit.group_commit import group_of
from wakedock.audit.service import CHAIN_INFO, record_alone, record_event
from wakedock.audit.verify import verify_chain
from wakedock.context import RequestContext
from wakedock.db import make_engine, make_session_factory, transaction

pytestmark = pytest.mark.security

CONTEXT = RequestContext(ip="198.51.100.9", actor="load")


def event(name: str) -> Event:
    return Event(EventType.LOGIN_FAILURE, target=name, details={"name": name})


def stored(factory: sessionmaker[Session]) -> dict[str, int]:
    """target -> seq of every stored event."""
    with factory() as db:
        rows = db.execute(sa.text("SELECT target, seq FROM audit_events")).all()
    targets = [str(row[0]) for row in rows]
    assert len(targets) == len(set(targets)), "an event was stored twice"
    return {str(row[0]): int(row[1]) for row in rows}


def test_many_threads_and_two_processes_give_one_whole_chain(
    factory: sessionmaker[Session],
) -> None:
    # A second factory with its own engine and chain object stands for another process (or
    # replica): its own group commit and remembered head, the same database.
    engine = factory.kw["bind"]
    other_engine = make_engine(engine.url.render_as_string(hide_password=False))
    other = make_session_factory(
        other_engine, {CHAIN_INFO: AuditChain(KEY, chains_for(other_engine.dialect.name))}
    )
    acknowledged: dict[str, int] = {}
    committed: set[str] = set()
    rolled_back: set[str] = set()
    guard = threading.Lock()

    def alone(writer: int, target: sessionmaker[Session]) -> None:
        for n in range(30):
            name = f"alone-{writer}-{n}"
            seq = record_alone(target, event(name), CONTEXT, at=now())
            with guard:
                acknowledged[name] = seq

    def in_transaction(writer: int) -> None:
        # In the caller's transaction: the event commits or rolls back with it.
        for n in range(10):
            name = f"tx-{writer}-{n}"
            try:
                with transaction(factory) as db:
                    record_event(db, event(name), CONTEXT, at=now())
                    if n % 3 == 0:
                        raise LookupError("the caller's work failed")
            except LookupError:
                with guard:
                    rolled_back.add(name)
                continue
            with guard:
                committed.add(name)

    threads = [
        *(threading.Thread(target=alone, args=(w, factory)) for w in range(8)),
        *(threading.Thread(target=alone, args=(w + 100, other)) for w in range(4)),
        *(threading.Thread(target=in_transaction, args=(w,)) for w in range(3)),
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        other_engine.dispose()

    # An event in a caller's transaction gets its seq when that transaction commits.
    acknowledged.update({name: seq for name, seq in stored(factory).items() if name in committed})
    assert len(acknowledged) == 12 * 30 + 3 * 6
    # Every acknowledged event is stored once, at the seq its caller was given; no rolled-back
    # one is; the seqs run 1..n without a gap.
    assert stored(factory) == acknowledged
    assert not rolled_back & set(stored(factory))
    assert sorted(acknowledged.values()) == list(range(1, len(acknowledged) + 1))
    verdict = verify_chain(factory, chain_of(factory))
    assert verdict.ok, verdict.problem
    assert verdict.checked == len(acknowledged)


def wait_for(condition: object, what: str) -> None:
    """Polls `condition` (a callable) for up to 30 s: a synchronisation, not a timing test."""
    assert callable(condition)
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def test_a_failed_batch_stores_none_of_its_events_and_tells_each_caller(
    factory: sessionmaker[Session],
) -> None:
    for n in range(3):
        record_alone(factory, event(f"before-{n}"), CONTEXT, at=now())
    group = group_of(factory)
    outcomes: dict[str, int | BaseException] = {}

    def caller(name: str) -> None:
        try:
            outcomes[name] = record_alone(factory, event(name), CONTEXT, at=now())
        except Exception as exc:  # noqa: BLE001 - what the caller was told is the subject
            outcomes[name] = exc

    engine = factory.kw["bind"]
    # The database will refuse one of the queued events (a trigger): their batch fails whole.
    # Made before the head is held: DDL on audit_events while a batch waits for the head holds
    # that table's lock is a deadlock (seen in CI on PostgreSQL).
    with engine.begin() as conn:
        for statement in REFUSE_ON[engine.dialect.name]:
            conn.execute(sa.text(statement))
    with ExitStack() as stack:
        # Another writer holds the chain head: the first caller's batch (seq 4) blocks on it
        # and four more callers queue behind it, for one batch (seq 5 to 8).
        holder = stack.enter_context(engine.connect())
        if engine.dialect.name == "sqlite":
            holder.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            holder.begin()
        holder.execute(sa.text("UPDATE audit_chain_head SET seq = seq WHERE id = 1"))
        first = threading.Thread(target=caller, args=("first",))
        first.start()
        wait_for(lambda: group._writing and not group._waiting, "the first batch is written")
        queued = [threading.Thread(target=caller, args=(f"queued-{n}",)) for n in range(4)]
        for thread in queued:
            thread.start()
        wait_for(lambda: len(group._waiting) == 4, "four callers queue")
        holder.commit()
        first.join()
        for thread in queued:
            thread.join()

    assert outcomes["first"] == 4
    for n in range(4):
        outcome = outcomes[f"queued-{n}"]
        assert isinstance(outcome, sa.exc.DBAPIError) and "refused" in str(outcome), outcome
    events = stored(factory)
    assert not {f"queued-{n}" for n in range(4)} & set(events)
    assert events["first"] == 4
    # The chain goes on from seq 4, no seq used by the failed batch.
    assert record_alone(factory, event("after"), CONTEXT, at=now()) == 5
    verdict = verify_chain(factory, chain_of(factory))
    assert verdict.ok, verdict.problem
    assert verdict.checked == 5


# A trigger that refuses the event of one queued caller (the others in its batch are fine).
REFUSE_ON = {
    "sqlite": [
        "CREATE TRIGGER refuse_event BEFORE INSERT ON audit_events"
        " WHEN NEW.target = 'queued-2' BEGIN SELECT RAISE(ABORT, 'event refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.target = 'queued-2' THEN RAISE EXCEPTION 'event refused'; END IF;"
        " RETURN NEW; END $$",
        "CREATE TRIGGER refuse_event BEFORE INSERT ON audit_events"
        " FOR EACH ROW EXECUTE FUNCTION refuse_event()",
    ],
}


def test_a_lone_caller_after_a_burst_is_recorded(factory: sessionmaker[Session]) -> None:
    # After a batch of many, the writer waits briefly for as many; a lone caller still
    # gets its event committed (and its seq) without anyone else arriving.
    def burst(writer: int) -> None:
        for n in range(5):
            record_alone(factory, event(f"burst-{writer}-{n}"), CONTEXT, at=now())

    in_threads(burst, *((w,) for w in range(6)))
    assert record_alone(factory, event("lone"), CONTEXT, at=now()) == 31
    assert stored(factory)["lone"] == 31
    verdict = verify_chain(factory, chain_of(factory))
    assert verdict.ok, verdict.problem
    assert verdict.checked == 31


def test_a_batch_stores_every_field_exactly_as_chained(factory: sessionmaker[Session]) -> None:
    # A batch of several events goes in as one statement (on PostgreSQL with the head's move,
    # or COPY after the head was read under its lock): backslashes,
    # quotes, tabs and newlines (escaped in plain columns), text outside ASCII, empty and
    # missing values must be stored exactly as hashed, or verify would fail on them.
    awkward = [
        RequestContext(ip="2001:db8::7", user_agent='Mozilla\\5.0 "quoted"\t\r\nnext', actor=None),
        RequestContext(ip=None, user_agent="", actor="ana\\\\N", request_id="\\N"),
        RequestContext(ip="198.51.100.1", user_agent="Ünïcødé ✓ 𝄞", actor="zoë"),
    ]
    details = [{"path": "C:\\temp\\n", "tab": "a\tb"}, {}, {"nul": "a\x00b", "emoji": "🙂"}]
    group = group_of(factory)
    engine = factory.kw["bind"]
    seqs: dict[int, int] = {}

    def caller(n: int) -> None:
        seqs[n] = record_alone(
            factory,
            Event(EventType.LOGIN_FAILURE, target=f"odd\\{n}\t", details=details[n % 3]),
            awkward[n % 3],
            at=now(),
        )

    with ExitStack() as stack:
        # The head is held elsewhere, so that the callers queue and go in one batch.
        holder = stack.enter_context(engine.connect())
        if engine.dialect.name == "sqlite":
            holder.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            holder.begin()
        holder.execute(sa.text("UPDATE audit_chain_head SET seq = seq WHERE id = 1"))
        first = threading.Thread(target=caller, args=(0,))
        first.start()
        wait_for(lambda: group._writing and not group._waiting, "the first batch is written")
        queued = [threading.Thread(target=caller, args=(n,)) for n in range(1, 7)]
        for thread in queued:
            thread.start()
        wait_for(lambda: len(group._waiting) == 6, "six callers queue")
        holder.rollback()
        first.join()
        for thread in queued:
            thread.join()

    assert sorted(seqs.values()) == list(range(1, 8))
    with factory() as db:
        rows = db.execute(
            sa.text("SELECT target, user_agent, actor, ip, request_id, details FROM audit_events")
        ).all()
    by_target = {str(row[0]): row for row in rows}
    sixth = by_target["odd\\6\\x09"]  # awkward[0]: control characters escaped, the rest exact
    assert sixth[1] == 'Mozilla\\5.0 "quoted"\\x09\\x0d\\x0anext'
    assert sixth[2] is None
    assert '"C:\\\\temp\\\\n"' in sixth[5]
    fifth = by_target["odd\\5\\x09"]  # awkward[2]
    assert fifth[1] == "Ünïcødé ✓ 𝄞" and fifth[2] == "zoë"
    fourth = by_target["odd\\4\\x09"]  # awkward[1]
    assert (fourth[1], fourth[2], fourth[3], fourth[4]) == ("", "ana\\\\N", None, "\\N")
    verdict = verify_chain(factory, chain_of(factory))
    assert verdict.ok, verdict.problem
    assert verdict.checked == 7


# PostgreSQL: a batch is one statement in autocommit on a pooled connection (audit/append.py).
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_a_batchs_connection_goes_back_to_the_pool_transactional(
    factory: sessionmaker[Session],
) -> None:
    engine = factory.kw["bind"]
    with_caller_changes(factory)
    for n in range(3):  # the first reads the head under its lock; the next go in one statement
        record_alone(factory, event(f"alone-{n}"), CONTEXT, at=now())
    assert engine.pool.checkedin() == 1  # the connection the batches used
    # A caller's transaction on it that fails leaves nothing: it was not in autocommit.
    with pytest.raises(LookupError), transaction(factory) as db:  # noqa: PT012
        db.execute(sa.text("INSERT INTO caller_changes VALUES ('rolled back')"))
        raise LookupError
    with factory() as db:
        assert db.scalar(sa.text("SELECT count(*) FROM caller_changes")) == 0
    assert sorted(stored(factory).values()) == [1, 2, 3]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_a_batch_on_a_connection_the_server_closed_is_a_lost_database(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE", 3600.0)  # no ping to find it first
    engine = factory.kw["bind"]
    engine.dispose()
    record_alone(factory, event("before"), CONTEXT, at=now())
    with engine.connect() as conn:
        pid = conn.scalar(sa.text("SELECT pg_backend_pid()"))
    assert engine.pool.checkedin() == 1
    terminate_backend(factory, pid)
    # What SQLAlchemy says of a lost connection (a 503, web/errors.py); the next batch gets a
    # new connection, and the chain goes on.
    with pytest.raises(sa.exc.DBAPIError) as failed:
        record_alone(factory, event("lost"), CONTEXT, at=now())
    assert failed.value.connection_invalidated
    assert record_alone(factory, event("after"), CONTEXT, at=now()) == 2
    assert stored(factory) == {"before": 1, "after": 2}
    verdict = verify_chain(factory, chain_of(factory))
    assert verdict.ok, verdict.problem
