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
    summed over every worker process of this server), and the edges with direct routes attached
    (`edges`: one read of their registrations; None without direct routes, no gauge)."""

    def __init__(
        self,
        counters: AuditCounters,
        factory: sessionmaker[Session],
        sinks: Callable[[], list[SinkStatus]],
        awake: Callable[[], list[str]],
        certificate: Callable[[], float | None] = lambda: None,
        *,
        requests: Callable[[], str] = lambda: "",
        edges: Callable[[], int] | None = None,
    ) -> None:
        self.counters = counters
        self._factory = factory
        self._sinks = sinks
        self._awake = awake
        self._certificate = certificate
        self._requests = requests
        self._edges = edges

    async def exposition(self) -> str:
        """The Prometheus text format; the database is read in a worker thread."""
        running, sinks, requests, edges = await anyio.to_thread.run_sync(self._read)
        text = exposition(self.counters, len(self._awake()), running, sinks, self._certificate())
        return text + edges_gauge(edges) + requests

    def _read(self) -> tuple[int, list[SinkStatus], str, int | None]:
        self.counters.refresh()
        edges = self._edges() if self._edges is not None else None
        return running_services(self._factory), self._sinks(), self._requests(), edges


def edges_gauge(edges: int | None) -> str:
    """`wakedock_edges_attached`: edges with direct routes registered now (a stop waits the
    stop grace while it is not 0, with `edge.direct_routes: auto`)."""
    if edges is None:
        return ""
    return (
        "# HELP wakedock_edges_attached Edges with direct routes attached (registered now).\n"
        "# TYPE wakedock_edges_attached gauge\n"
        f"wakedock_edges_attached {edges}\n"
    )
