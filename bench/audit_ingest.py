"""Audit ingest with the hash chain vs a plain INSERT of the same rows (same SQLite database,
same run), and `audit verify` over a large chain.

    .venv/bin/python bench/audit_ingest.py [--events 20000] [--verify-events 1000000]

Each recorded event is its own committed transaction, as in the application (WAL,
synchronous=NORMAL: the defaults WakeDock sets). The verify part builds the chain in batches of
10,000 events per transaction first (not timed), then times `verify_chain` over all of it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from wakedock.audit.events import Event, EventType
from wakedock.audit.service import record_event
from wakedock.audit.verify import verify_chain
from wakedock.auth.passwords import PasswordHasher
from wakedock.clock import SystemClock
from wakedock.components import build_components
from wakedock.config import load_settings
from wakedock.context import RequestContext
from wakedock.db import transaction

CONTEXT = RequestContext(ip="198.51.100.7", user_agent="bench/1.0", actor="bench-user")
# The same columns and indexes as audit_events: the baseline stores the same rows, so the
# difference is the chain (the head's compare-and-set and the HMAC), not the table.
PLAIN = [
    """CREATE TABLE plain_events (
  id INTEGER PRIMARY KEY, occurred_at TIMESTAMP NOT NULL, type VARCHAR(64) NOT NULL,
  severity VARCHAR(16) NOT NULL, actor VARCHAR(128), ip VARCHAR(45), user_agent VARCHAR(512),
  target VARCHAR(256), outcome VARCHAR(16) NOT NULL, request_id VARCHAR(64),
  details TEXT NOT NULL, seq BIGINT NOT NULL, prev_hash VARCHAR(64) NOT NULL,
  hash VARCHAR(64) NOT NULL)""",
    "CREATE INDEX p1 ON plain_events (occurred_at)",
    "CREATE INDEX p2 ON plain_events (type)",
    "CREATE INDEX p3 ON plain_events (severity)",
    "CREATE INDEX p4 ON plain_events (actor)",
    "CREATE UNIQUE INDEX p5 ON plain_events (seq)",
]
INSERT = sa.text(
    "INSERT INTO plain_events (occurred_at, type, severity, actor, ip, user_agent, target, "
    "outcome, request_id, details, seq, prev_hash, hash) VALUES (:at, 'login_failure', 'low', "
    "'bench-user', '198.51.100.7', 'bench/1.0', :target, 'failure', NULL, :details, :seq, "
    ":h, :h)"
)
FAKE_HASH = "0" * 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--verify-events", type=int, default=1_000_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wd-audit-bench-"))
    settings = load_settings(None, {"data_dir": root / "data"})
    c = build_components(settings, hasher=PasswordHasher(19456, 2, 1))
    clock = SystemClock()
    with c.engine.begin() as conn:
        for statement in PLAIN:
            conn.execute(sa.text(statement))

    # The baseline writes the same row the way WakeDock writes (a session transaction, one
    # INSERT), so the ratio is the cost of the chain itself.
    started = time.perf_counter()
    for n in range(args.events):
        with transaction(c.db) as db:
            db.execute(
                INSERT,
                {
                    "at": clock.now(),
                    "target": f"user{n}",
                    "details": '{"n": 1}',
                    "seq": n,
                    "h": FAKE_HASH,
                },
            )
    plain = args.events / (time.perf_counter() - started)

    started = time.perf_counter()
    for n in range(args.events):
        with transaction(c.db) as db:
            event = Event(EventType.LOGIN_FAILURE, target=f"user{n}", details={"n": 1})
            record_event(db, event, CONTEXT, at=clock.now())
    chained = args.events / (time.perf_counter() - started)
    print(f"{args.events} events, one committed transaction each, SQLite WAL")
    print(f"plain INSERT:        {plain:9.0f} events/s")
    print(f"recorded with chain: {chained:9.0f} events/s   (target >= 5000)")
    print(f"ratio chain / plain: {chained / plain:9.2f}   (target >= 0.5)")

    remaining = args.verify_events - args.events
    built = time.perf_counter()
    while remaining > 0:
        batch = min(remaining, 10_000)
        with transaction(c.db) as db:
            for n in range(batch):
                record_event(
                    db, Event(EventType.LOGIN_SUCCESS, target=f"u{n}"), CONTEXT, at=clock.now()
                )
        remaining -= batch
    print(f"\nbuilt a chain of {args.verify_events} events in {time.perf_counter() - built:.0f} s")
    started = time.perf_counter()
    verdict = verify_chain(c.db, c.audit_chain)
    elapsed = time.perf_counter() - started
    print(
        f"audit verify: {verdict.checked} events in {elapsed:.1f} s, ok={verdict.ok}"
        "   (target < 30 s)"
    )
    print(f"database: {(root / 'data' / 'wakedock.db').stat().st_size / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
