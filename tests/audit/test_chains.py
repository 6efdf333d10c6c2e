"""Several chains, one order (SQLite and PostgreSQL): events appended on different chains still
verify as one trail, and tampering that uses the chains (reordering events of two chains,
moving an event to another chain, closing the gap left by a deleted event, deleting a chain's
newest events) is caught and named."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from conftest import Harness
from wakedock.audit.append import append_in_turn
from wakedock.audit.archive import archive_events, verify_archive
from wakedock.audit.chain import (
    CHAINS_MAX,
    ORDER_HEAD,
    OVERDUE,
    AuditChain,
    ChainedFields,
    audit_chain_key,
    start_for,
)
from wakedock.audit.events import Event, EventType
from wakedock.audit.service import CHAIN_INFO, record_event
from wakedock.audit.verify import Verdict, verify_chain
from wakedock.clock import SystemClock
from wakedock.context import RequestContext
from wakedock.db import make_session_factory, transaction

pytestmark = pytest.mark.security

# The chain of each event appended by the fixture, in seq order (seq 1, 2, ...).
CHAINS = [1, 2, 1, 3, 2, 1, 3, 2]


class Trail:
    """The harness's database seen by a process that appends on three chains."""

    def __init__(self, h: Harness) -> None:
        settings = h.components.settings
        self.engine = h.components.engine
        self.chain = AuditChain(audit_chain_key(settings.audit.chain_key, settings.data_dir), 3)
        self.factory: sessionmaker[Session] = make_session_factory(
            self.engine, {CHAIN_INFO: self.chain}
        )

    def record(self, number: int, target: str, events: int = 1) -> None:
        """`events` events in one transaction, on chain `number` (the other lanes held)."""
        others = [lane for lane in self.chain.lanes if lane.chain != number]
        for lane in others:
            assert lane.turn.acquire(blocking=False)
        try:
            with transaction(self.factory) as db:
                for n in range(events):
                    event = Event(EventType.LOGIN_FAILURE, target=f"{target}.{n}")
                    record_event(db, event, RequestContext(actor="alice"), at=SystemClock().now())
        finally:
            for lane in others:
                lane.turn.release()

    def batch(self, number: int, target: str, events: int) -> None:
        """`events` events appended in one batch on chain `number` (as the group commit does)."""
        others = [lane for lane in self.chain.lanes if lane.chain != number]
        for lane in others:
            assert lane.turn.acquire(blocking=False)
        at = SystemClock().now()
        contents = [
            ChainedFields(0, at, "login_failure", "low", "alice", None, None, f"{target}.{n}",
                          "failure", None, "{}")
            for n in range(events)
        ]  # fmt: skip
        try:
            with transaction(self.factory) as db:
                append_in_turn(db, contents, release_early=False)
        finally:
            for lane in others:
                lane.turn.release()

    def verdict(self) -> Verdict:
        return verify_chain(self.factory, self.chain)

    @contextmanager
    def raw(self) -> Iterator[sa.Connection]:
        """A connection that tampers like an intruder with database access (on PostgreSQL with
        triggers off, as a superuser can)."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            yield conn

    def rows(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(sa.text("SELECT seq, chain, hash FROM audit_events ORDER BY seq"))
            )


@pytest.fixture
def trail(harness: Harness) -> Trail:
    made = Trail(harness)
    for seq, number in enumerate(CHAINS, start=1):
        made.record(number, f"e{seq}")
    return made


def test_events_on_several_chains_verify_as_one_trail(trail: Trail) -> None:
    assert [row.chain for row in trail.rows()] == CHAINS
    # A transaction with several events (one batch on PostgreSQL), and a batch, on chains
    # already used.
    trail.record(2, "transaction", events=3)
    trail.batch(3, "batch", events=4)
    rows = trail.rows()
    assert [row.seq for row in rows] == list(range(1, len(CHAINS) + 8))
    assert [row.chain for row in rows[-7:]] == [2, 2, 2, 3, 3, 3, 3]
    result = trail.verdict()
    assert result.ok and result.checked == len(CHAINS) + 7, result.problem


def test_concurrent_writers_on_several_chains_leave_one_order_without_gaps(trail: Trail) -> None:
    def writer(thread: int) -> None:
        for n in range(15):
            with transaction(trail.factory) as db:
                event = Event(EventType.LOGIN_FAILURE, target=f"t{thread}.{n}")
                record_event(db, event, RequestContext(), at=SystemClock().now())

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = trail.rows()
    assert [row.seq for row in rows] == list(range(1, len(CHAINS) + 91))
    result = trail.verdict()
    assert result.ok and result.checked == len(CHAINS) + 90, result.problem


def test_swapping_the_places_of_events_on_two_chains_is_caught(trail: Trail) -> None:
    # seq 2 (chain 2) and seq 3 (chain 1) trade places; each chain's own order is unchanged,
    # and no hash covers an event's own seq, but the next event on each chain covers it.
    with trail.raw() as conn:
        conn.execute(sa.text("UPDATE audit_events SET seq = -2 WHERE seq = 2"))
        conn.execute(sa.text("UPDATE audit_events SET seq = 2 WHERE seq = 3"))
        conn.execute(sa.text("UPDATE audit_events SET seq = 3 WHERE seq = -2"))
    result = trail.verdict()
    assert not result.ok
    # Chain 2's next event is seq 5: the first whose hash no longer matches.
    assert result.seq == 5 and "was changed" in str(result.problem)


def test_an_event_moved_to_another_chain_is_caught(trail: Trail) -> None:
    with trail.raw() as conn:
        conn.execute(sa.text("UPDATE audit_events SET chain = 2 WHERE seq = 3"))
    result = trail.verdict()
    assert not result.ok and result.seq == 3
    assert "does not follow the event before it" in str(result.problem)


def test_a_deleted_event_whose_gap_was_closed_is_caught(trail: Trail) -> None:
    # seq 4 (chain 3) deleted, every later event moved down one, the order's head too.
    with trail.raw() as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE seq = 4"))
        for seq in range(5, len(CHAINS) + 1):
            conn.execute(sa.text("UPDATE audit_events SET seq = :s - 1 WHERE seq = :s"), {"s": seq})
        conn.execute(sa.text("UPDATE audit_chain_head SET seq = seq - 1 WHERE id = 1"))
    result = trail.verdict()
    assert not result.ok
    # Chain 3's next event (seq 7, now 6) follows the deleted one.
    assert result.seq == 6 and "does not follow the event before it" in str(result.problem)


def test_the_newest_event_deleted_with_the_order_moved_back_is_caught(trail: Trail) -> None:
    rows = trail.rows()
    newest, before = rows[-1], rows[-2]
    with trail.raw() as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE seq = :s"), {"s": newest.seq})
        conn.execute(
            sa.text("UPDATE audit_chain_head SET seq = :s, hash = :h WHERE id = 1"),
            {"s": before.seq, "h": before.hash},
        )
    result = trail.verdict()
    assert not result.ok
    assert f"the newest events of chain {newest.chain} were deleted" in str(result.problem)


def mark_in_order(trail: Trail, number: int) -> bool:
    """Chain `number`'s row made to say ORDER_HEAD, as an intruder would: whether on SQLite."""
    with trail.raw() as conn:
        conn.execute(
            sa.text("UPDATE audit_chains SET hash = :marker WHERE chain = :n"),
            {"marker": ORDER_HEAD, "n": number},
        )
        return conn.dialect.name == "sqlite"


def test_a_chain_that_says_its_head_is_the_orders_when_it_is_not_is_caught(
    trail: Trail,
) -> None:
    # The newest event is chain 2's (seq 8): chain 1's row made to say ORDER_HEAD, as if its
    # newest event were the order's, which would let its own newest events go unseen.
    sqlite = mark_in_order(trail, 1)
    result = trail.verdict()
    assert not result.ok
    assert (
        "the newest events of chain 1 were deleted: its head (the order's)"
        if sqlite
        else "chain 1's row was rewritten"
    ) in str(result.problem)


def test_the_newest_chain_made_to_say_its_head_is_the_orders_is_caught_on_postgresql(
    trail: Trail,
) -> None:
    # SQLite's appends write ORDER_HEAD on the newest event's chain (chain 2 here); PostgreSQL's
    # never do, and could not append after it: there it is a rewritten row.
    sqlite = mark_in_order(trail, 2)
    result = trail.verdict()
    if sqlite:
        assert result.ok
    else:
        assert not result.ok and "chain 2's row was rewritten" in str(result.problem)


def test_an_event_on_a_chain_that_does_not_exist_is_caught(trail: Trail) -> None:
    with trail.raw() as conn:
        conn.execute(sa.text("UPDATE audit_events SET chain = 42 WHERE seq = 5"))
    result = trail.verdict()
    assert not result.ok and result.seq == 5 and "chain 42" in str(result.problem)


def test_an_archive_across_chains_verifies_and_its_bases_are_checked(
    trail: Trail, tmp_path: Path
) -> None:
    path = tmp_path / "chains.jsonl"
    result = archive_events(
        trail.factory, trail.chain, SystemClock(),
        before=SystemClock().now() + timedelta(days=1), destination=path,
        context=RequestContext(actor="cli:root"),
    )  # fmt: skip
    assert result.count == len(CHAINS)
    assert verify_archive(path, trail.chain) == (len(CHAINS), None)
    # The archive's own event, then more events on every chain, after the bases.
    for number in (3, 1, 2):
        trail.record(number, "after")
    verdict = trail.verdict()
    assert verdict.ok and verdict.checked == 4, verdict.problem
    # A line taken out of the file (the first of its chain there, whose claims nothing else
    # checks): named by the gap it leaves.
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    assert verify_archive(path, trail.chain) == (1, "seq 2 is missing (deleted) before seq 3")
    # An archived file edited: named.
    lines[4] = lines[4].replace('"target": "e5.0"', '"target": "eX"')
    path.write_text("\n".join(lines) + "\n")
    assert verify_archive(path, trail.chain) == (4, "seq 5 was changed")
    # A chain's row deleted: named.
    with trail.raw() as conn:
        conn.execute(sa.text("DELETE FROM audit_chains WHERE chain = 8"))
    assert "heads are missing" in str(trail.verdict().problem)
    with trail.raw() as conn:
        conn.execute(sa.text("INSERT INTO audit_chains VALUES (8, :g, 0, :g)"), {"g": "0" * 64})
    # One chain's base moved back by hand: it no longer matches the archive record.
    with trail.raw() as conn:
        conn.execute(
            sa.text("UPDATE audit_chains SET base_seq = 0, base_hash = :g WHERE chain = 2"),
            {"g": "0" * 64},
        )
    verdict = trail.verdict()
    assert not verdict.ok and "chain 2's start does not match" in str(verdict.problem)


def test_an_event_of_a_batch_moved_out_of_it_is_caught(trail: Trail) -> None:
    # A batch's events follow one another with no seq between them (their hashes say "in the
    # same batch" instead of naming the seq before): its last one trades places with the next
    # event, on another chain.
    trail.batch(2, "batch", events=3)  # seq 9, 10, 11
    trail.record(1, "after")  # seq 12
    with trail.raw() as conn:
        conn.execute(sa.text("UPDATE audit_events SET seq = -11 WHERE seq = 11"))
        conn.execute(sa.text("UPDATE audit_events SET seq = 11 WHERE seq = 12"))
        conn.execute(sa.text("UPDATE audit_events SET seq = 12 WHERE seq = -11"))
        conn.execute(
            sa.text("UPDATE audit_chain_head SET hash = (SELECT hash FROM audit_events "
                    "WHERE seq = 12) WHERE id = 1")
        )  # fmt: skip
    result = trail.verdict()
    assert not result.ok and result.seq == 12 and "was changed" in str(result.problem)


def test_a_process_keeps_to_its_own_chain_and_goes_back_to_every_chain_in_time() -> None:
    # One writer at a time: every lane is free at each append.
    chain = AuditChain(b"k" * 32, CHAINS_MAX)
    taken = []
    for _ in range(10 * OVERDUE):
        lane = chain.take_lane(timeout=1)
        assert lane is not None
        taken.append(lane.chain)
        lane.turn.release()
    own = max(set(taken), key=taken.count)
    # Mostly its own chain (other processes keep mostly to theirs)...
    assert taken.count(own) >= 0.7 * len(taken)
    # ... and every chain again within OVERDUE appends and one per chain overdue with it.
    for number in range(1, CHAINS_MAX + 1):
        places = [n for n, lane_chain in enumerate(taken) if lane_chain == number]
        gaps = [b - a for a, b in zip([-1, *places], [*places, len(taken)], strict=True)]
        assert max(gaps) <= OVERDUE + CHAINS_MAX, (number, gaps)


def test_a_lane_held_long_does_not_keep_the_process_from_its_other_chains() -> None:
    # A caller holds one lane's turn throughout (a transaction waiting on a chain's row another
    # holds): it is the lane taken least recently, overdue from the OVERDUE-th take on.
    chain = AuditChain(b"k" * 32, CHAINS_MAX)
    own = chain.lanes[start_for(os.getpid(), CHAINS_MAX)]
    held = next(lane for lane in chain.lanes if lane is not own)
    assert held.turn.acquire(blocking=False)
    taken = []
    for _ in range(10 * OVERDUE):
        lane = chain.take_lane(timeout=1)
        assert lane is not None and lane is not held
        taken.append(lane.chain)
        lane.turn.release()
    held.turn.release()
    # Every other chain is still taken again within OVERDUE takes and one per chain overdue.
    for number in {lane.chain for lane in chain.lanes} - {held.chain}:
        places = [n for n, lane_chain in enumerate(taken) if lane_chain == number]
        gaps = [b - a for a, b in zip([-1, *places], [*places, len(taken)], strict=True)]
        assert max(gaps) <= OVERDUE + CHAINS_MAX, (number, gaps)


def test_each_chains_newest_event_stays_among_the_last_appends(trail: Trail) -> None:
    # An event's place in the order is covered by the next event on its chain: a chain left
    # unused would keep an old newest event that could be moved or deleted unnoticed
    # (docs/audit.md). One writer, appending as a process does (no lane held by the test).
    for n in range(3 * OVERDUE):
        with transaction(trail.factory) as db:
            event = Event(EventType.LOGIN_FAILURE, target=f"steady.{n}")
            record_event(db, event, RequestContext(), at=SystemClock().now())
    rows = trail.rows()
    newest = {row.chain: row.seq for row in rows}
    assert sorted(newest) == [1, 2, 3]
    assert min(newest.values()) > rows[-1].seq - (OVERDUE + 3), newest
    assert trail.verdict().ok
