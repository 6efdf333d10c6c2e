"""Deliver the audit trail to every configured sink: at least once, in order, nothing lost.

The audit table is the outbox. Each sink has a cursor (the last seq it acknowledged) stored in
the database and moved only after a batch was delivered, so a restart resumes where delivery
stopped and a receiver that is down simply accumulates a backlog. Failed batches are retried
with exponential backoff. Receivers de-duplicate on `event.id` (a crash between delivery and
the cursor update re-sends that one batch).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.durable import wait_durable
from wakedock.audit.export import AuditFilter, page_events
from wakedock.audit.models import AuditChainHead, SinkCursor
from wakedock.clock import Clock
from wakedock.config import SiemSettings
from wakedock.db import transaction
from wakedock.siem.sinks import Sink, SinkError, parse_sink, safe_error

log = logging.getLogger("wakedock.siem")


@dataclass(frozen=True)
class SinkStatus:
    name: str
    delivered_seq: int
    backlog: int
    delivered_at: datetime | None
    failures: int
    last_error: str | None


def sink_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


class SinkWorker:
    """One thread per sink: read after the cursor, send, move the cursor; back off on failure."""

    def __init__(
        self,
        key: str,
        sink: Sink,
        factory: sessionmaker[Session],
        clock: Clock,
        *,
        batch_size: int,
        poll_seconds: float,
        max_backoff: float,
        from_now: bool = False,
    ) -> None:
        self.key = key
        # A new alert pipeline starts at the current head: history is not re-alerted.
        self._from_now = from_now
        self.sink = sink
        self._factory = factory
        self._clock = clock
        self._batch = batch_size
        self._poll = poll_seconds
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"siem {sink.name}", daemon=True)
        # The last delivery attempt failed (health reports the SIEM degraded meanwhile).
        self.failing = False
        # Several workers: only the leader delivers (the cursor is shared).
        self.gate: Callable[[], bool] = lambda: True

    def start(self) -> None:
        self._ensure_cursor()
        warm_up = getattr(self.sink, "warm_up", None)
        if warm_up is not None:
            # The recent logins, so that "new" means new to the trail, not to this process.
            recent = page_events(
                self._factory, AuditFilter(type="login_success"), limit=50_000, newest_first=True
            )
            warm_up(list(reversed(recent)))
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=15)
        self.sink.close()

    def nudge(self) -> None:
        self._wake.set()

    def _ensure_cursor(self) -> None:
        try:
            with transaction(self._factory) as db:
                if db.get(SinkCursor, self.key) is None:
                    start = 0
                    if self._from_now:
                        head = db.scalar(select(AuditChainHead.seq).where(AuditChainHead.id == 1))
                        start = head or 0
                    db.add(
                        SinkCursor(
                            sink=self.key, name=self.sink.name, delivered_seq=start, failures=0
                        )
                    )
        except IntegrityError:
            pass  # another worker process created it at the same moment

    def deliver_once(self) -> int:
        """Send the next batch after the cursor; the number delivered (SinkError on failure)."""
        with self._factory() as db:
            cursor = db.get(SinkCursor, self.key)
            after = cursor.delivered_seq if cursor is not None else 0
        batch = page_events(self._factory, AuditFilter(), limit=self._batch, after=after)
        if not batch:
            return 0
        # An event can be read a moment before its commit is flushed (audit/durable.py): what
        # leaves for a SIEM must be what a crash keeps.
        wait_durable(self._factory)
        self.sink.send(batch)
        with transaction(self._factory) as db:
            row = db.get(SinkCursor, self.key)
            if row is not None:
                row.delivered_seq = batch[-1].seq
                row.delivered_at = self._clock.now()
                row.failures = 0
                row.last_error = None
        return len(batch)

    def _tick(self) -> bool:
        """Time passing, for a sink that acts on it (alert summaries); True when it failed."""
        tick = getattr(self.sink, "tick", None)
        if tick is None:
            return False
        try:
            tick()
        except SinkError as exc:
            self.failing = True
            failures = self._failed(str(exc))
            delay = min(self._max_backoff, 0.5 * 2 ** min(failures, 16))
            log.warning("%s (retry in %.1f s)", exc, delay)
            self._stop.wait(delay)
            return True
        return False

    def _failed(self, error: str) -> int:
        with transaction(self._factory) as db:
            row = db.get(SinkCursor, self.key)
            if row is None:
                return 1
            row.failures += 1
            row.last_error = error[:1000]
            return row.failures

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.gate():
                self._stop.wait(self._poll)
                continue
            try:
                sent = self.deliver_once()
                self.failing = False
            except SinkError as exc:
                self.failing = True
                failures = self._failed(str(exc))
                delay = min(self._max_backoff, 0.5 * 2 ** min(failures, 16))
                delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
                log.warning("%s (retry in %.1f s)", exc, delay)
                self._stop.wait(delay)
                continue
            except Exception:
                self.failing = True
                log.exception("SIEM delivery to %s failed", self.sink.name)
                self._stop.wait(self._poll)
                continue
            if sent < self._batch:
                self._wake.wait(self._poll)
                self._wake.clear()
                if self._tick():
                    continue  # a failed tick backs off like a failed batch


class SiemExporter:
    def __init__(self, workers: list[SinkWorker], factory: sessionmaker[Session]) -> None:
        self.workers = workers
        self._factory = factory

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def only_while(self, gate: Callable[[], bool]) -> None:
        """Deliver only while `gate` holds (the leader of several worker processes)."""
        for worker in self.workers:
            worker.gate = gate

    def failing(self) -> bool:
        """A sink's last delivery failed: events wait in the outbox until it recovers."""
        return any(worker.failing for worker in self.workers)

    def status(self) -> list[SinkStatus]:
        """Backlog and last delivery per sink (also the sinks no longer configured)."""
        with self._factory() as db:
            head = db.scalar(select(AuditChainHead.seq).where(AuditChainHead.id == 1)) or 0
            rows = db.scalars(select(SinkCursor).order_by(func.lower(SinkCursor.name))).all()
            configured = {w.key for w in self.workers}
            return [
                SinkStatus(
                    name=row.name + ("" if row.sink in configured else " (not configured)"),
                    delivered_seq=row.delivered_seq,
                    backlog=max(head - row.delivered_seq, 0),
                    delivered_at=row.delivered_at,
                    failures=row.failures,
                    last_error=safe_error(row.last_error),
                )
                for row in rows
            ]


def make_exporter(
    config: SiemSettings,
    written: list[str],
    factory: sessionmaker[Session],
    clock: Clock,
    *,
    from_now: Sequence[tuple[str, Sink]] = (),
) -> SiemExporter:
    """One delivery worker per configured sink (started by the server, not here).

    `config` holds the sink URLs resolved, `written` the same URLs as configured. A sink's
    cursor is keyed by the URL as configured: for a `secret:` reference, the reference (a
    rotated URL keeps its cursor, and no hash of a credential URL is stored). `from_now` are
    sinks, with their cursor key, that receive only events recorded from now on (alerts)."""
    workers = []
    for url, as_written in zip(config.sinks, written, strict=True):
        try:
            sink = parse_sink(url)
        except ValueError as exc:
            raise ValueError(f"siem.sinks: {exc}") from None
        workers.append(
            SinkWorker(
                sink_key(as_written),
                sink,
                factory,
                clock,
                batch_size=config.batch_size,
                poll_seconds=config.poll_seconds,
                max_backoff=config.max_backoff_seconds,
            )
        )
    for key, sink in from_now:
        workers.append(
            SinkWorker(
                key,
                sink,
                factory,
                clock,
                batch_size=config.batch_size,
                poll_seconds=config.poll_seconds,
                max_backoff=config.max_backoff_seconds,
                from_now=True,
            )
        )
    return SiemExporter(workers, factory)
