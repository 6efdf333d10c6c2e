"""The posture page's reads over a large audit trail: the hourly sign-in series aggregated in
SQL (console/posture.py) vs the same counts made in Python from the window's rows (the
baseline), and the alerts raised over the last 7 days with their receipts, in interleaved
rounds of the same run.

    .venv/bin/python bench/posture_queries.py [--database-url URL] [--events 500000] [--rounds 5]

The trail is written in bulk (not chained: the reads do not look at the chain): `--events`
events spread evenly over 30 days, 5% of them failed logins and 1% rate-limit hits over 50
accounts, plus one alert raised per 1,000 events, each followed by its receipt but one in ten.
Prints medians and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select

from wakedock.audit.models import AuditEvent
from wakedock.console.posture import SIGN_IN_HOURS, raised_alerts, sign_in_series
from wakedock.db import Base, make_engine, make_session_factory


def fill(url: str, events: int, now: datetime) -> None:
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    span = timedelta(days=30).total_seconds()
    rows = []
    for n in range(events):
        kind = "service_start"
        target: str | None = "app"
        details = "{}"
        if n % 100 < 5:
            kind, target = "login_failure", f"user{n % 50}"
        elif n % 100 == 5:
            kind, target = "rate_limit_hit", f"user{n % 50}"
        elif n % 1000 in (6, 7) and n % 10_000 != 7:
            # Event 6 is the raise, 7 its receipt; both name the alert alike.
            first = n - n % 1000 + 6
            at = now - timedelta(seconds=span * (1 - first / events))
            kind = "alert_raised" if n == first else "alert_delivered"
            target = "brute_force"
            details = json.dumps({"rule": "brute_force", "severity": "high", "title": "t",
                                  "raised_at": (at - timedelta(seconds=1.5)).isoformat(),
                                  "event_ids": [f"wakedock-{first - 1}"]})  # fmt: skip
        rows.append(
            {"occurred_at": now - timedelta(seconds=span * (1 - n / events)), "type": kind,
             "severity": "low", "target": target, "outcome": "success", "details": details,
             "seq": n + 1, "prev_hash": "0" * 64, "hash": "0" * 64}
        )  # fmt: skip
        if len(rows) == 10_000:
            with engine.begin() as connection:
                connection.execute(insert(AuditEvent), rows)
            rows = []
    if rows:
        with engine.begin() as connection:
            connection.execute(insert(AuditEvent), rows)
    engine.dispose()


def in_python(session: object, now: datetime) -> dict[str, Counter[str]]:
    """The baseline: the window's rows read, then counted per hour in Python."""
    since = now - timedelta(hours=SIGN_IN_HOURS)
    counts: dict[str, Counter[str]] = {"login_failure": Counter(), "rate_limit_hit": Counter()}
    rows = session.execute(  # type: ignore[attr-defined]
        select(AuditEvent.occurred_at, AuditEvent.type).where(
            AuditEvent.occurred_at >= since,
            AuditEvent.type.in_(["login_failure", "rate_limit_hit"]),
        )
    )
    for at, kind in rows:
        counts[kind][at.strftime("%Y-%m-%d %H")] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url")
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    now = datetime.now(UTC)
    started = time.perf_counter()
    fill(url, args.events, now)
    print(f"{args.events} events written in {time.perf_counter() - started:.1f} s")
    factory = make_session_factory(make_engine(url))
    timings: dict[str, list[float]] = {"series (SQL)": [], "series (Python)": [], "alerts": []}
    wall: dict[str, list[float]] = {name: [] for name in timings}
    for _ in range(args.rounds):
        for name, read in (
            ("series (SQL)", lambda db: sign_in_series(db, now)),
            ("series (Python)", lambda db: in_python(db, now)),
            ("alerts", lambda db: raised_alerts(db, now)),
        ):
            with factory() as db:
                begin, clock = time.process_time(), time.perf_counter()
                read(db)
                timings[name].append(time.process_time() - begin)
                wall[name].append(time.perf_counter() - clock)
    for name, values in timings.items():
        print(
            f"{name:16} median CPU {statistics.median(values) * 1000:8.1f} ms, "
            f"wall {statistics.median(wall[name]) * 1000:8.1f} ms"
        )
    sql, python = (statistics.median(timings[k]) for k in ("series (SQL)", "series (Python)"))
    print(f"series: SQL aggregation costs {sql / python:.2f}x the Python baseline's CPU")


if __name__ == "__main__":
    main()
