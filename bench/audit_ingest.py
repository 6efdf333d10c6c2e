"""Audit ingest with the hash chain vs a plain INSERT of the same rows (same database, same run),
under concurrent load, on SQLite or PostgreSQL; then `audit verify` over a large chain.

    .venv/bin/python bench/audit_ingest.py [--database-url URL] [--threads 8] [--events 20000]
        [--tx-events N] [--rounds 3] [--verify-events 1000000] [--statements]
        [--kinds plain,alone,in_tx] [--think-ms 0]

Every writer thread records events one at a time, each acknowledged only once committed, as the
application does:

- **plain INSERT:** one session transaction per row, into a table with the same columns and
  indexes as audit_events (the baseline: what storing the rows costs without a chain);
- **chained, alone:** `Auditor.record` (`record_alone`): an event in a transaction of its own,
  acknowledged once committed (denials, reads, login failures: the high-volume events);
- **chained, in the caller's transaction:** `record_event` inside a session transaction of the
  caller's, as a service that changes something does (here the transaction holds only the
  event, so that it stores the same row as the baseline).

With `--think-ms T`, each writer waits between 0 and T ms (spread evenly) after each event, as a
server's worker goes on with the rest of its request: the appends then come from whichever
thread is ready, not from one thread in a loop.

The three run in interleaved rounds (plain, alone, in-transaction, plain, ...); the figures are
medians, the ratios from the same round; each kind's write latencies (p50, p99, the longest) are
over all its rounds' writes. SQLite runs with WAL and synchronous=NORMAL (WakeDock's
settings); PostgreSQL as the server is configured (use fsync on for figures that mean something).
`--statements` also prints the SQL statements sent through SQLAlchemy per event of each kind, by
their first two words (a failed compare-and-set shows as extra head updates and reads). The
chain's own statements that go to the driver itself are not among them: on SQLite the head's
compare-and-set and the INSERT, on PostgreSQL a batch's move-and-insert and COPY
(audit/append.py), the pipeline that chains a transaction's events at its commit
(audit/at_commit.py), and the flush barrier (audit/durable.py).
The verify part builds the chain in batches of 10,000 events per transaction (not timed), then
times `verify_chain` over all of it.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.chain import AuditChain, chains_for
from wakedock.audit.events import Event, EventType
from wakedock.audit.service import CHAIN_INFO, Auditor, record_event
from wakedock.audit.verify import verify_chain
from wakedock.clock import SystemClock
from wakedock.context import RequestContext
from wakedock.db import make_engine, make_session_factory, migrate, transaction

CONTEXT = RequestContext(ip="198.51.100.7", user_agent="bench/1.0", actor="bench-user")
# The same columns and indexes as audit_events: the baseline stores the same rows, so the
# difference is the chain (ordering on the head, the HMAC), not the table.
PLAIN = [
    """CREATE TABLE plain_events (
  id {pk}, occurred_at TIMESTAMP NOT NULL, type VARCHAR(64) NOT NULL,
  severity VARCHAR(16) NOT NULL, actor VARCHAR(128), ip VARCHAR(45), user_agent VARCHAR(512),
  target VARCHAR(256), outcome VARCHAR(16) NOT NULL, request_id VARCHAR(64),
  details TEXT NOT NULL, chain SMALLINT NOT NULL DEFAULT 0, seq BIGINT NOT NULL,
  prev_hash VARCHAR(64) NOT NULL, hash VARCHAR(64) NOT NULL)""",
    "CREATE INDEX p1 ON plain_events (occurred_at)",
    "CREATE INDEX p2 ON plain_events (type)",
    "CREATE INDEX p3 ON plain_events (severity)",
    "CREATE INDEX p4 ON plain_events (actor)",
    "CREATE UNIQUE INDEX p5 ON plain_events (seq)",
]
# PostgreSQL only, as audit_events' (migration 0010).
PLAIN_POSTGRESQL = ["CREATE INDEX p6 ON plain_events (chain, seq)"]
INSERT = sa.text(
    "INSERT INTO plain_events (occurred_at, type, severity, actor, ip, user_agent, target, "
    "outcome, request_id, details, chain, seq, prev_hash, hash) VALUES (:at, 'login_failure', "
    "'low', 'bench-user', '198.51.100.7', 'bench/1.0', :target, 'failure', NULL, :details, 1, "
    ":seq, :h, :h)"
)
FAKE_HASH = "0" * 64


def concurrently(
    threads: int,
    events: int,
    write: Callable[[int], None],
    latencies: list[float],
    think: float = 0.0,
) -> float:
    """Events per second with `threads` writers sharing `events` (each writes its own slice);
    each write's time (seconds) is added to `latencies`. `think`: each writer then waits
    between 0 and `think` seconds (the golden ratio's multiples, spread evenly)."""
    per_thread = events // threads
    start = threading.Barrier(threads + 1)

    def writer(first: int) -> None:
        start.wait()
        mine = []
        for n in range(first, first + per_thread):
            began = time.perf_counter()
            write(n)
            mine.append(time.perf_counter() - began)
            if think:
                time.sleep(think * (n * 0.6180339887 % 1.0))
        latencies.extend(mine)  # one list extend per thread: atomic under the GIL

    workers = [threading.Thread(target=writer, args=(i * per_thread,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    return per_thread * threads / (time.perf_counter() - started)


def percentiles(latencies: list[float]) -> str:
    """p50, p99 and the longest write, in milliseconds."""
    ordered = sorted(latencies)
    if not ordered:
        return ""
    p50, p99 = (ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3 for q in (0.5, 0.99))
    return f"latency p50 {p50:.2f} p99 {p99:.2f} max {ordered[-1] * 1e3:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--chains", type=int, default=None, help="chains appended to; default WakeDock's choice"
    )
    parser.add_argument("--events", type=int, default=20_000, help="per round and kind")
    parser.add_argument(
        "--tx-events", type=int, default=None, help="for the in-transaction kind; default --events"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--verify-events", type=int, default=1_000_000, help="0: skip")
    parser.add_argument("--statements", action="store_true", help="count statements per event")
    parser.add_argument("--kinds", default="plain,alone,in_tx", help="which kinds to run")
    parser.add_argument(
        "--think-ms", type=float, default=0.0, help="each writer waits 0 to this after an event"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wd-audit-bench-"))
    url = args.database_url or f"sqlite:///{root / 'wakedock.db'}"
    key = secrets.token_bytes(32)
    engine = make_engine(url)
    migrate(engine, key)
    chain = AuditChain(key, args.chains or chains_for(engine.dialect.name))
    factory: sessionmaker[Session] = make_session_factory(engine, {CHAIN_INFO: chain})
    clock = SystemClock()
    auditor = Auditor(factory, clock)
    pk = "SERIAL PRIMARY KEY" if engine.dialect.name == "postgresql" else "INTEGER PRIMARY KEY"
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS plain_events"))
        postgresql = engine.dialect.name == "postgresql"
        for statement in PLAIN + (PLAIN_POSTGRESQL if postgresql else []):
            conn.execute(sa.text(statement.format(pk=pk)))
    offset = 0

    def plain(n: int) -> None:
        with transaction(factory) as db:
            db.execute(
                INSERT,
                {
                    "at": clock.now(),
                    "target": f"user{n}",
                    "details": '{"n": 1}',
                    "seq": offset + n,
                    "h": FAKE_HASH,
                },
            )

    def alone(n: int) -> None:
        auditor.record(Event(EventType.LOGIN_FAILURE, target=f"user{n}", details={"n": 1}), CONTEXT)

    def in_transaction(n: int) -> None:
        with transaction(factory) as db:
            event = Event(EventType.LOGIN_FAILURE, target=f"user{n}", details={"n": 1})
            record_event(db, event, CONTEXT, at=clock.now())

    results: dict[str, list[float]] = {"plain": [], "alone": [], "in_tx": []}
    # CPU seconds of this process per event: robust to other load on the machine, unlike rates.
    cpu: dict[str, list[float]] = {name: [] for name in results}
    latencies: dict[str, list[float]] = {name: [] for name in results}
    sent: dict[str, Counter[str]] = {name: Counter() for name in results}
    counting: list[Counter[str]] = []
    if args.statements:

        def tally(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
            if counting:
                counting[0][" ".join(statement.split()[:2])] += 1

        sa.event.listen(engine, "before_cursor_execute", tally)
    for _round in range(args.rounds):
        for name, write in (("plain", plain), ("alone", alone), ("in_tx", in_transaction)):
            if name not in args.kinds.split(","):
                continue
            count = args.tx_events if name == "in_tx" and args.tx_events else args.events
            counting[:] = [sent[name]]
            used = time.process_time()
            results[name].append(
                concurrently(args.threads, count, write, latencies[name], args.think_ms / 1e3)
            )
            cpu[name].append((time.process_time() - used) / count)
            counting.clear()
            if name == "plain":
                offset += args.events
    with engine.connect() as conn:
        recorded = conn.execute(sa.text("SELECT count(*) FROM audit_events")).scalar_one()
    verdict = verify_chain(factory, chain)
    print(
        f"{engine.dialect.name}, {args.threads} threads, {args.events} events per round and "
        f"kind, {args.rounds} rounds (medians; ratios per round)"
        + (f", 0-{args.think_ms:g} ms between a writer's events" if args.think_ms else "")
    )
    plain_rates = results["plain"]
    for name, label in (
        ("plain", "plain INSERT"),
        ("alone", "chained, alone"),
        ("in_tx", "chained, in caller's tx"),
    ):
        rates = results[name]
        if not rates:
            continue
        ratios = [rate / base for rate, base in zip(rates, plain_rates, strict=False)] or [0.0]
        print(
            f"{label:26s} {statistics.median(rates):8.0f} events/s   "
            f"ratio {statistics.median(ratios):5.2f}   "
            f"CPU {statistics.median(cpu[name]) * 1e6:5.0f} us/event   rounds: "
            + ", ".join(f"{rate:.0f}" for rate in rates)
        )
        print(f"{'':26s} {percentiles(latencies[name])} (every round's writes)")
    for name, counter in sent.items():
        if counter:
            events = sum(
                args.tx_events if name == "in_tx" and args.tx_events else args.events
                for _ in range(args.rounds)
            )
            per_event = ", ".join(f"{k}: {v / events:.2f}" for k, v in counter.most_common())
            print(f"statements per event, {name}: {per_event}")
    print(f"chain after the rounds: {recorded} events, verify ok={verdict.ok} ({verdict.problem})")

    remaining = args.verify_events - recorded
    if args.verify_events <= 0:
        return
    built = time.perf_counter()
    while remaining > 0:
        batch = min(remaining, 10_000)
        with transaction(factory) as db:
            for n in range(batch):
                record_event(
                    db, Event(EventType.LOGIN_SUCCESS, target=f"u{n}"), CONTEXT, at=clock.now()
                )
        remaining -= batch
    print(f"\nbuilt a chain of {args.verify_events} events in {time.perf_counter() - built:.0f} s")
    started = time.perf_counter()
    verdict = verify_chain(factory, chain)
    elapsed = time.perf_counter() - started
    print(
        f"audit verify: {verdict.checked} events in {elapsed:.1f} s, ok={verdict.ok}"
        "   (target < 30 s)"
    )


if __name__ == "__main__":
    main()
