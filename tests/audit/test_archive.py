"""Retention: archiving the oldest events keeps the chain verifiable, in the database and in the
archive file; a base moved by hand, a tampered archive or a broken chain are caught."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import Harness
from support.server import run_cli
from wakedock.audit.archive import archive_events, verify_archive
from wakedock.audit.events import Event, EventType
from wakedock.audit.models import SinkCursor
from wakedock.audit.verify import verify_chain
from wakedock.clock import FakeClock
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.errors import Conflict, InvalidInput

CONTEXT = RequestContext(actor="cli:root")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def h(make_harness: Callable[..., Harness], clock: FakeClock) -> Harness:
    harness = make_harness(clock=clock)
    for day in range(10):  # one event a day
        harness.components.auditor.record(Event(EventType.LOGIN_FAILURE, target=f"d{day}"), CONTEXT)
        clock.advance(86400)
    return harness


def archive(h: Harness, clock: FakeClock, days_ago: int, path: Path) -> object:
    c = h.components
    return archive_events(
        c.db, c.audit_chain, c.clock,
        before=clock.now() - timedelta(days=days_ago), destination=path, context=CONTEXT,
    )  # fmt: skip


def test_archive_keeps_both_halves_verifiable(h: Harness, clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "2026-q3.jsonl"
    result = archive(h, clock, 4, path)
    assert result.count == 6 and result.up_to_seq == 6  # type: ignore[attr-defined]
    assert verify_archive(path, h.components.audit_chain) == (6, None)
    verdict = verify_chain(h.components.db, h.components.audit_chain)
    assert verdict.ok and verdict.checked == 5  # 4 kept + the audit_archive event
    with h.components.engine.connect() as conn:
        seqs = [r[0] for r in conn.execute(sa.text("SELECT seq FROM audit_events ORDER BY seq"))]
    assert seqs == [7, 8, 9, 10, 11]
    with pytest.raises(InvalidInput, match="never overwritten"):
        archive(h, clock, 1, path)


def test_a_tampered_archive_is_named(h: Harness, clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    archive(h, clock, 4, path)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('"target": "d2"', '"target": "dX"')
    path.write_text("\n".join(lines) + "\n")
    assert verify_archive(path, h.components.audit_chain) == (2, "seq 3 was changed")


def test_moving_the_chain_start_by_hand_is_caught(h: Harness) -> None:
    with h.components.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        last = conn.execute(sa.text("SELECT hash FROM audit_events WHERE seq = 3")).scalar_one()
        conn.execute(sa.text("DELETE FROM audit_events WHERE seq <= 3"))
        conn.execute(
            sa.text("UPDATE audit_chain_head SET base_seq = 3, base_hash = :h"), {"h": last}
        )
    verdict = verify_chain(h.components.db, h.components.audit_chain)
    assert not verdict.ok and "moved without an archive record" in str(verdict.problem)


def test_archiving_refuses_a_broken_chain_and_waits_for_siem(
    h: Harness, clock: FakeClock, tmp_path: Path
) -> None:
    with transaction(h.components.db) as db:
        db.add(SinkCursor(sink="s" * 64, name="syslog+tcp://siem:601", delivered_seq=3, failures=0))
    result = archive(h, clock, 1, tmp_path / "lagging.jsonl")
    assert result.up_to_seq == 3  # type: ignore[attr-defined]
    with h.components.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(sa.text("UPDATE audit_events SET target = 'x' WHERE seq = 6"))
    with pytest.raises(Conflict, match="broken"):
        archive(h, clock, 1, tmp_path / "never.jsonl")
    assert not (tmp_path / "never.jsonl").exists()


def test_cli_archive_then_verify_both(tmp_path: Path) -> None:
    data = tmp_path / "cli"
    for name in ("ann", "bob"):
        made = run_cli(
            data, "user", "create", name, "--role", "viewer", "--password-stdin",
            stdin=secrets.token_urlsafe(18),
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
    target = tmp_path / "old.jsonl"
    moved = run_cli(
        data, "audit", "archive", "--before", "2999-01-01T00:00:00Z", "--to", str(target)
    )
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.startswith("archived 2 events (up to seq 2)")
    assert run_cli(data, "audit", "verify", "--archive", str(target)).stdout.startswith("OK: 2")
    # The archive's own event and the check's start, recorded before the walk.
    assert run_cli(data, "audit", "verify").stdout.startswith("OK: 2 events")
    bad = run_cli(data, "audit", "archive", "--before", "yesterday", "--to", str(tmp_path / "x"))
    assert bad.returncode == 2 and "--before" in bad.stderr


def test_a_sink_no_longer_configured_does_not_block_retention(
    h: Harness, clock: FakeClock, tmp_path: Path
) -> None:
    with transaction(h.components.db) as db:
        db.add(SinkCursor(sink="r" * 64, name="https://removed/x", delivered_seq=2, failures=0))
    c = h.components
    result = archive_events(
        c.db, c.audit_chain, c.clock, before=clock.now() - timedelta(days=1),
        destination=tmp_path / "a.jsonl", context=CONTEXT, sinks=[],
    )  # fmt: skip
    assert result.up_to_seq == 9
