"""What GET /metrics reports, gathered from the features that count (see counters.py)."""

from __future__ import annotations

from collections.abc import Callable

import anyio.to_thread
from sqlalchemy.orm import Session, sessionmaker

from wakedock.metrics.counters import AuditCounters, exposition, running_services
from wakedock.siem.exporter import SinkStatus


class Metrics:
    """The audit counters, the services running, the SIEM sinks' backlog, the services this
    process holds awake (`awake`: read on the event loop, where the wake states live), and the
    seconds left on the TLS certificate this process serves (`certificate`: no I/O; None when
    it serves none), and the requests received (`requests`: the text of cluster/counters.py,
    summed over every worker process of this server)."""

    def __init__(
        self,
        counters: AuditCounters,
        factory: sessionmaker[Session],
        sinks: Callable[[], list[SinkStatus]],
        awake: Callable[[], list[str]],
        certificate: Callable[[], float | None] = lambda: None,
        *,
        requests: Callable[[], str] = lambda: "",
    ) -> None:
        self.counters = counters
        self._factory = factory
        self._sinks = sinks
        self._awake = awake
        self._certificate = certificate
        self._requests = requests

    async def exposition(self) -> str:
        """The Prometheus text format; the database is read in a worker thread."""
        running, sinks, requests = await anyio.to_thread.run_sync(self._read)
        text = exposition(self.counters, len(self._awake()), running, sinks, self._certificate())
        return text + requests

    def _read(self) -> tuple[int, list[SinkStatus], str]:
        self.counters.refresh()
        return running_services(self._factory), self._sinks(), self._requests()
