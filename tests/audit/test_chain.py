"""The audit hash chain against tampering done directly in the database (SQLite and PostgreSQL):
`audit verify` must catch every edit, deletion and reordering and name the event."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

from conftest import Harness
from support.server import run_cli
from wakedock.audit.chain import ORDER_HEAD, AuditChain, ChainedFields, audit_chain_key
from wakedock.audit.events import Event, EventType
from wakedock.audit.service import CHAIN_INFO, record_event
from wakedock.audit.verify import verify_chain
from wakedock.clock import SystemClock
from wakedock.context import RequestContext
from wakedock.db import MIGRATIONS_DIR, make_engine, make_session_factory, migrate, transaction

pytestmark = pytest.mark.security


def record(h: Harness, count: int) -> None:
    for n in range(count):
        h.components.auditor.record(
            Event(EventType.LOGIN_FAILURE, target=f"user{n}", details={"n": n}),
            RequestContext(ip="198.51.100.1", actor=f"user{n}"),
        )


@contextmanager
def raw(h: Harness) -> Iterator[sa.Connection]:
    """A connection that tampers like an intruder with database access: on PostgreSQL it
    switches triggers off, as a superuser can (the application never does)."""
    with h.components.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        yield conn


def verdict(h: Harness) -> Any:
    return verify_chain(h.components.db, h.components.audit_chain)


@pytest.fixture
def h(harness: Harness) -> Harness:
    record(harness, 10)
    return harness


def seq_id(h: Harness, seq: int) -> int:
    with h.components.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT id FROM audit_events WHERE seq = :s"), {"s": seq}
            ).scalar_one()
        )


def test_an_untouched_chain_verifies(h: Harness) -> None:
    result = verdict(h)
    assert result.ok and result.checked == 10


def test_an_edited_event_is_named(h: Harness) -> None:
    with raw(h) as conn:
        conn.execute(sa.text("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 4"))
    result = verdict(h)
    assert not result.ok
    assert result.seq == 4 and result.event_id == seq_id(h, 4)
    assert "was changed" in result.problem


def test_an_edited_time_is_named(h: Harness) -> None:
    with raw(h) as conn:
        conn.execute(
            sa.text("UPDATE audit_events SET severity = 'info', details = '{}' WHERE seq = 7")
        )
    assert verdict(h).seq == 7


def test_a_deleted_event_is_named(h: Harness) -> None:
    with raw(h) as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE seq = 5"))
    result = verdict(h)
    assert result.seq == 6
    assert "seq 5 to 5 are missing (deleted)" in result.problem


def test_swapped_events_are_named(h: Harness) -> None:
    # One writer's appends keep to its process's own chain (PostgreSQL has eight, SQLite one):
    # the swap breaks the links there. Swaps across chains: tests/audit/test_chains.py.
    record(h, 8)
    with raw(h) as conn:
        # Swap the positions of events 3 and 4 (their contents and hashes move with them).
        conn.execute(sa.text("UPDATE audit_events SET seq = -3 WHERE seq = 3"))
        conn.execute(sa.text("UPDATE audit_events SET seq = 3 WHERE seq = 4"))
        conn.execute(sa.text("UPDATE audit_events SET seq = 4 WHERE seq = -3"))
    result = verdict(h)
    assert not result.ok
    assert result.seq == 3 and "reordered" in str(result.problem)


def test_swapped_contents_are_named(h: Harness) -> None:
    with raw(h) as conn:
        conn.execute(sa.text("UPDATE audit_events SET target = 'x' WHERE seq = 2"))
        conn.execute(sa.text("UPDATE audit_events SET target = 'user1' WHERE seq = 3"))
        conn.execute(sa.text("UPDATE audit_events SET target = 'user2' WHERE seq = 2"))
    result = verdict(h)
    assert result.seq == 2 and "was changed" in result.problem


def test_deleting_the_newest_events_is_caught(h: Harness) -> None:
    with raw(h) as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE seq >= 9"))
    result = verdict(h)
    assert not result.ok
    assert "newest events were deleted" in result.problem
    assert "seq 10" in result.problem


def test_a_forged_event_without_the_key_is_caught(h: Harness) -> None:
    with raw(h) as conn:
        row = conn.execute(sa.text("SELECT * FROM audit_events WHERE seq = 10")).mappings().one()
        forged = {**row, "id": row["id"] + 1000, "seq": 11, "prev_hash": row["hash"]}
        forged["hash"] = AuditChain(b"a guessed key, not the real one!!").link(
            row["hash"], _fields(forged)
        )
        # The order's row first: on SQLite a row past it is refused (migration 0011's guard).
        conn.execute(sa.text("UPDATE audit_chain_head SET seq = 11, hash = :hash"), forged)
        conn.execute(sa.text(_insert(forged)), forged)
    result = verdict(h)
    assert result.seq == 11 and "was changed" in result.problem


def _fields(row: dict[str, Any]) -> Any:
    names = ("seq", "occurred_at", "type", "severity", "actor", "ip", "user_agent", "target",
             "outcome", "request_id", "details")  # fmt: skip
    return ChainedFields(*(row[n] for n in names))


def _insert(row: dict[str, Any]) -> str:
    columns = ", ".join(row)
    return f"INSERT INTO audit_events ({columns}) VALUES ({', '.join(':' + c for c in row)})"  # noqa: S608


# The append-only trigger is PostgreSQL's (SQLite has no roles or triggers of that kind).
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_application_cannot_update_or_delete_events_on_postgresql(h: Harness) -> None:
    assert h.components.engine.dialect.name == "postgresql"
    for statement in (
        "UPDATE audit_events SET actor = 'x' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 1",
        "TRUNCATE audit_events",
    ):
        with (
            pytest.raises(sa.exc.DBAPIError, match="append-only"),
            h.components.engine.begin() as conn,
        ):
            conn.execute(sa.text(statement))
    assert verdict(h).ok


def test_concurrent_writers_chain_in_one_order(h: Harness) -> None:
    def writer() -> None:
        record(h, 25)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = verdict(h)
    assert result.ok and result.checked == 10 + 8 * 25


def test_a_wrong_key_fails_at_the_first_event(h: Harness) -> None:
    result = verify_chain(h.components.db, AuditChain(b"x" * 32))
    assert result.seq == 1 and "was changed" in result.problem


def test_events_recorded_before_the_chain_are_chained_by_the_migration(database_url: str) -> None:
    engine = make_engine(database_url)
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
        for n in range(3):
            conn.execute(
                sa.text(
                    "INSERT INTO audit_events (occurred_at, type, severity, outcome, details) "
                    "VALUES (:at, 'login_failure', 'low', 'failure', '{}')"
                ),
                {"at": f"2026-11-0{n + 1} 10:00:00.000000"},
            )
    key = b"k" * 32
    migrate(engine, key)

    factory = make_session_factory(engine, {CHAIN_INFO: AuditChain(key)})
    with transaction(factory) as db:
        record_event(db, Event(EventType.LOGIN_SUCCESS), RequestContext(), at=SystemClock().now())
    result = verify_chain(factory, AuditChain(key))
    assert result.ok and result.checked == 4
    # The trail from before there were several chains is chain 0, the new event on chain 1.
    with engine.connect() as conn:
        chains = conn.execute(sa.text("SELECT seq, chain FROM audit_events ORDER BY seq")).all()
    assert [tuple(row) for row in chains] == [(1, 0), (2, 0), (3, 0), (4, 1)]
    # Chain 0's events are still checked, with their own form of hash.
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # an intruder who can switch the checks off
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            conn.execute(
                sa.text("ALTER TABLE audit_events DROP CONSTRAINT audit_events_new_chains")
            )
        conn.execute(sa.text("UPDATE audit_events SET outcome = 'success' WHERE seq = 2"))
    result = verify_chain(factory, AuditChain(key))
    assert not result.ok and result.seq == 2 and "was changed" in str(result.problem)
    engine.dispose()


def test_cli_verify_reports_ok_then_names_the_tampered_event(tmp_path: Path) -> None:
    data = tmp_path / "cli"
    password = secrets.token_urlsafe(18)
    created = run_cli(
        data, "user", "create", "alice", "--role", "viewer", "--password-stdin", stdin=password
    )
    assert created.returncode == 0, created.stderr
    ok = run_cli(data, "audit", "verify")
    # The user's creation and the check's own start, recorded before the walk.
    assert ok.returncode == 0 and ok.stdout.startswith("OK: 2 events")
    engine = make_engine(f"sqlite:///{data / 'wakedock.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1"))
    bad = run_cli(data, "audit", "verify")
    assert bad.returncode == 1
    assert "TAMPERED: event 1 (seq 1, user_create" in bad.stderr
    assert "was changed" in bad.stderr
    # Each run is in the trail, as the console's check is: the console shows the last one.
    with engine.connect() as conn:
        runs = conn.execute(
            sa.text("SELECT actor, outcome, details FROM audit_events WHERE type = 'audit_verify'")
        ).all()
    steps = [(json.loads(r.details)["step"], r.outcome) for r in runs]
    assert steps == [
        ("start", "success"),
        ("result", "success"),
        ("start", "success"),
        ("result", "failure"),
    ]
    assert len({r.actor for r in runs}) == 1 and runs[0].actor.startswith("cli:")
    assert json.loads(runs[-1].details)["seq"] == 1


def test_a_rolled_back_append_then_another_writer_keeps_the_chain_whole(h: Harness) -> None:
    class Boom(Exception):
        pass

    settings = h.components.settings
    key = audit_chain_key(settings.audit.chain_key, settings.data_dir)
    other_process = make_session_factory(h.components.engine, {CHAIN_INFO: AuditChain(key)})

    def append_then_fail() -> None:
        with transaction(h.components.db) as db:
            record_event(
                db, Event(EventType.LOGIN_SUCCESS), RequestContext(), at=SystemClock().now()
            )
            raise Boom

    with pytest.raises(Boom):
        append_then_fail()
    # This process now remembers a head that never committed; another writer takes that seq.
    with transaction(other_process) as db:
        record_event(db, Event(EventType.LOGOUT), RequestContext(), at=SystemClock().now())
    with transaction(h.components.db) as db:
        record_event(db, Event(EventType.LOGIN_SUCCESS), RequestContext(), at=SystemClock().now())
    with h.components.db() as db:
        last = db.execute(sa.text("SELECT seq, type FROM audit_events ORDER BY seq DESC")).first()
    assert tuple(last or ()) == (12, EventType.LOGIN_SUCCESS.value)
    assert verdict(h).ok


def test_sqlite_writes_one_head_row_per_event_across_its_migrations(tmp_path: Path) -> None:
    # Migration 0011: the chain of the newest event says its head is the order's row (one head
    # row written per event), 0010's triggers gone (a guard in their place). Down to 0010 the
    # chain's row holds its hash again and the triggers are back; up again, the next append
    # marks it again.
    engine = make_engine(f"sqlite:///{tmp_path / 'head.db'}")
    key = b"k" * 32
    migrate(engine, key)
    factory = make_session_factory(engine, {CHAIN_INFO: AuditChain(key)})

    def append(target: str) -> None:
        with transaction(factory) as db:
            event = Event(EventType.LOGIN_SUCCESS, target=target)
            record_event(db, event, RequestContext(), at=SystemClock().now())

    def state() -> tuple[str, str, list[str]]:
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT hash FROM audit_chains WHERE chain = 1")).one()
            order = conn.execute(sa.text("SELECT hash FROM audit_chain_head")).one()
            triggers = conn.execute(
                sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            ).scalars()
            return str(row[0]), str(order[0]), sorted(triggers)

    for n in range(3):
        append(f"before {n}")
    assert state()[0] == ORDER_HEAD and state()[2] == ["audit_events_after_the_order"]
    assert verify_chain(factory, AuditChain(key)).ok

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0010")
    chain_hash, order_hash, triggers = state()
    assert chain_hash == order_hash and len(chain_hash) == 64
    assert triggers == ["audit_events_chain_check", "audit_events_chain_move"]
    assert verify_chain(factory, AuditChain(key)).ok

    migrate(engine, key)
    # This process remembers the head it wrote, which the order's row still is: the chain's
    # row, no longer marked, sends it to read the chain under its lock, and mark it.
    append("after")
    assert state()[0] == ORDER_HEAD and state()[2] == ["audit_events_after_the_order"]
    result = verify_chain(factory, AuditChain(key))
    assert result.ok and result.checked == 4
    engine.dispose()


def sqlite_trail(tmp_path: Path) -> tuple[sa.Engine, Any, AuditChain]:
    engine = make_engine(f"sqlite:///{tmp_path / 'trail.db'}")
    key = b"k" * 32
    migrate(engine, key)
    chain = AuditChain(key)
    return engine, make_session_factory(engine, {CHAIN_INFO: chain}), chain


def append_one(factory: Any, target: str) -> None:
    with transaction(factory) as db:
        event = Event(EventType.LOGIN_SUCCESS, target=target)
        record_event(db, event, RequestContext(), at=SystemClock().now())


def test_sqlite_an_event_writes_one_head_row(tmp_path: Path) -> None:
    # What the one head row is for: after the first append (which marks its chain's row), each
    # event moves the order's row and inserts its own, and touches no chain's row.
    engine, factory, _chain = sqlite_trail(tmp_path)
    append_one(factory, "first")
    statements: list[str] = []
    sa.event.listen(
        engine, "connect", lambda conn, _record: conn.set_trace_callback(statements.append)
    )
    engine.dispose()  # new connections, traced
    for n in range(3):
        append_one(factory, f"event {n}")
    # (SQLite's trace names a statement again as its trigger runs: repeats are one statement.)
    traced = [s for n, s in enumerate(statements) if n == 0 or s != statements[n - 1]]
    writes = [" ".join(s.split()[:3]) for s in traced if s.split()[0] in ("INSERT", "UPDATE")]
    assert writes == ["UPDATE audit_chain_head SET", "INSERT INTO audit_events"] * 3
    engine.dispose()


def test_sqlite_a_writer_of_the_version_before_is_refused_after_the_upgrade(
    tmp_path: Path,
) -> None:
    # The INSERT of the version before (0010's): the row takes the order's next seq and leaves
    # the heads to the triggers that 0011 dropped. Refused, loudly, instead of stored unchained.
    engine, factory, chain = sqlite_trail(tmp_path)
    append_one(factory, "first")
    with (
        pytest.raises(sa.exc.IntegrityError, match="past the order's head"),
        engine.begin() as conn,
    ):
        conn.execute(
            sa.text(
                "INSERT INTO audit_events (occurred_at, type, severity, outcome, details,"
                " chain, prev_hash, hash, seq) VALUES ('2026-12-04 10:00:00.000000',"
                " 'logout', 'low', 'success', '{}', 1, :prev, :hash,"
                " (SELECT seq + 1 FROM audit_chain_head WHERE id = 1))"
            ),
            {"prev": "0" * 64, "hash": "1" * 64},
        )
    append_one(factory, "second")
    assert verify_chain(factory, chain).ok
    engine.dispose()


def test_sqlite_an_append_failed_part_way_cannot_commit(tmp_path: Path) -> None:
    # SQLite keeps a transaction's statements when a later one fails: an event refused after
    # the order's row moved (a trigger here) must not commit with the row moved alone, even if
    # the caller catches the error and commits.
    engine, factory, chain = sqlite_trail(tmp_path)
    append_one(factory, "first")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_events WHEN NEW.target = 'bad'"
                " BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        )
    refused = Event(EventType.LOGIN_SUCCESS, target="bad")

    def catch_and_commit() -> None:
        with transaction(factory) as db, pytest.raises(sa.exc.IntegrityError, match="refused"):
            record_event(db, refused, RequestContext(), at=SystemClock().now())

    with pytest.raises(RuntimeError, match="failed part way: it cannot commit"):
        catch_and_commit()
    append_one(factory, "second")
    result = verify_chain(factory, chain)
    assert result.ok and result.checked == 2
    engine.dispose()


def test_verify_on_a_live_trail_sees_one_snapshot(h: Harness) -> None:
    # An event committed between verify's reading of the heads and its reading of the rows
    # (another process appending) is not a deleted tail: verify reads one snapshot.
    other = make_session_factory(h.components.engine, {CHAIN_INFO: h.components.audit_chain})
    appended: list[int] = []

    def append_before_the_rows(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if not appended and "FROM audit_events ORDER BY audit_events.seq" in " ".join(
            statement.split()
        ):
            appended.append(1)
            worker = threading.Thread(target=append_one, args=(other, "meanwhile"))
            worker.start()
            worker.join()

    sa.event.listen(h.components.engine, "before_cursor_execute", append_before_the_rows)
    try:
        result = verdict(h)
    finally:
        sa.event.remove(h.components.engine, "before_cursor_execute", append_before_the_rows)
    assert appended and result.ok and result.checked == 10
    assert verdict(h).checked == 11
