"""What GET /metrics reports, gathered from the features that count (see counters.py)."""

from __future__ import annotations

from collections.abc import Callable

import anyio.to_thread
from sqlalchemy.orm import Session, sessionmaker

from wakedock.metrics.counters import AuditCounters, exposition, running_services
from wakedock.siem.exporter import SinkStatus


class Metrics:
    """The audit counters, the services running, the SIEM sinks' backlog, and the services this
    process holds awake (`awake`: read on the event loop, where the wake states live)."""

    def __init__(
        self,
        counters: AuditCounters,
        factory: sessionmaker[Session],
        sinks: Callable[[], list[SinkStatus]],
        awake: Callable[[], list[str]],
    ) -> None:
        self.counters = counters
        self._factory = factory
        self._sinks = sinks
        self._awake = awake

    async def exposition(self) -> str:
        """The Prometheus text format; the database is read in a worker thread."""
        running, sinks = await anyio.to_thread.run_sync(self._read)
        return exposition(self.counters, len(self._awake()), running, sinks)

    def _read(self) -> tuple[int, list[SinkStatus]]:
        self.counters.refresh()
        return running_services(self._factory), self._sinks()
