"""Request counters that add up over the worker processes of one server.

With several workers a scrape of `/metrics` reaches one of them; each worker's counts must be
in the answer. prometheus_client's multiprocess mode does exactly that: each process writes its
counters to a memory-mapped file of its own in one directory per server
(`PROMETHEUS_MULTIPROC_DIR`, made by the parent in server/workers.py before it starts the
workers), and a scrape sums every file there, including those of workers that died (their
counts stay in the totals, as a counter's must). An increment is a write to shared memory: no
system call and no database on the request path (about 2 µs).

With one process (no such directory) a count is a plain integer (well under a microsecond).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

# Read by prometheus_client when it is first imported: the parent sets it for its workers.
SHARED_DIR = "PROMETHEUS_MULTIPROC_DIR"
NAME = "wakedock_http_requests"
HELP = "Requests received (all worker processes), by where the Host header sent them."
TARGETS = ("admin", "service", "unknown")


class Count(Protocol):
    def inc(self) -> None: ...


class _Tally:
    """One process's count: incremented on the event loop only."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1


class RequestCounts:
    """HTTP requests (and WebSocket handshakes) received, by where the Host sent them: the
    admin application, a service, or no known host. Counting is one call on `admin`,
    `service` or `unknown`."""

    def __init__(self) -> None:
        self._shared = shared_dir()
        self._tallies: dict[str, _Tally] = {}
        counts: dict[str, Count]
        if self._shared is None:
            self._tallies = {target: _Tally() for target in TARGETS}
            counts = dict(self._tallies)
        else:
            # Values in this worker's file; no registry: the scrape reads the files.
            requests = Counter(NAME, HELP, ["target"], registry=None)
            counts = {target: requests.labels(target) for target in TARGETS}
        self.admin, self.service, self.unknown = (counts[t] for t in TARGETS)

    def exposition(self) -> str:
        """The counters in the Prometheus text format: every worker's, summed (blocking: reads
        the workers' files)."""
        registry = CollectorRegistry(auto_describe=True)
        if self._shared is None:
            registry.register(_Tallies(self._tallies))
        else:
            MultiProcessCollector(registry, self._shared)  # type: ignore[no-untyped-call]
        return generate_latest(registry).decode()


class _Tallies:
    def __init__(self, tallies: dict[str, _Tally]) -> None:
        self._tallies = tallies

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(NAME, HELP, labels=["target"])
        for target, tally in self._tallies.items():
            family.add_metric([target], tally.value)
        yield family


def shared_dir() -> str | None:
    """The directory the workers of this server share their counters in (None: one process)."""
    path = os.environ.get(SHARED_DIR)
    return path if path and os.path.isdir(path) else None
