"""Events recorded in callers' transactions (`record_event`) by several WakeDock processes at
once, each with several threads, on one PostgreSQL (or SQLite) database; then the chain verified.

    .venv/bin/python bench/audit_processes.py DATABASE_URL [--processes 2] [--threads 4]
        [--events 8000]

Each process has its own engine, chain object, turn and remembered head, as the workers of one
server or the replicas of a cluster do: their appends are ordered by the head's compare-and-set
alone. Prints the events per second over all processes (from the moment all start together).
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import threading
import time
from typing import Any

from wakedock.audit.chain import AuditChain, chains_for
from wakedock.audit.events import Event, EventType
from wakedock.audit.service import CHAIN_INFO, record_event
from wakedock.audit.verify import verify_chain
from wakedock.clock import SystemClock
from wakedock.context import RequestContext
from wakedock.db import make_engine, make_session_factory, migrate, transaction

CONTEXT = RequestContext(ip="198.51.100.7", user_agent="bench/1.0", actor="bench-user")


def process(url: str, key: bytes, number: int, threads: int, each: int, go: Any, done: Any) -> None:
    """One WakeDock process: `threads` threads, each recording `each` events, one a transaction."""
    engine = make_engine(url)
    factory = make_session_factory(
        engine, {CHAIN_INFO: AuditChain(key, chains_for(engine.dialect.name))}
    )
    clock = SystemClock()

    def writer(thread: int) -> None:
        for n in range(each):
            with transaction(factory) as db:
                event = Event(EventType.LOGIN_FAILURE, target=f"p{number}-t{thread}-{n}")
                record_event(db, event, CONTEXT, at=clock.now())

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    go.wait()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    engine.dispose()
    done.put(number)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--events", type=int, default=8000, help="over all processes")
    args = parser.parse_args()
    key = secrets.token_bytes(32)
    engine = make_engine(args.database_url)
    migrate(engine, key)
    context = multiprocessing.get_context("spawn")
    go, done = context.Event(), context.Queue()
    each = args.events // (args.processes * args.threads)
    processes = [
        context.Process(
            target=process, args=(args.database_url, key, p, args.threads, each, go, done)
        )
        for p in range(args.processes)
    ]
    for started in processes:
        started.start()
    time.sleep(3)  # every process imported and connected before the clock starts
    begun = time.perf_counter()
    go.set()
    for _ in processes:
        done.get()
    elapsed = time.perf_counter() - begun
    for ended in processes:
        ended.join()
    count = each * args.processes * args.threads
    factory = make_session_factory(engine, {CHAIN_INFO: AuditChain(key)})
    verdict = verify_chain(factory, AuditChain(key))
    print(
        f"{args.processes} processes x {args.threads} threads: {count / elapsed:,.0f} events/s "
        f"({count} events), chain ok={verdict.ok}, {verdict.checked} checked"
    )


if __name__ == "__main__":
    main()
