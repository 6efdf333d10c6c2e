"""Request counters that add up over the worker processes of one server.

With several workers a scrape of `/metrics` reaches one of them; each worker's counts must be
in the answer. They are kept in prometheus_client's multiprocess format: each worker writes its
counts to a memory-mapped file of its own (`counter_<pid>.db`) in one directory per server run
(made by the parent in server/workers.py, named to the workers by `WAKEDOCK_SHARED_DIR`), and a
scrape sums every file there with prometheus_client's `MultiProcessCollector`, including those
of workers that died (their counts stay in the totals, as a counter's must).

A count is written straight into the worker's file (`MmapedDict.write_value`: a store into
shared memory, no lock, no system call, no database): the request path runs on one event loop
thread, so prometheus_client's own multiprocess values (a lock and a `getpid` per increment)
are not needed. With one process (no such directory) a count is a plain integer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

# The directory the workers of one server share (counters here, cluster/epoch.py's epochs).
SHARED_DIR = "WAKEDOCK_SHARED_DIR"
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


class _SharedTally:
    """A count in this worker's file (read back first: a pid reused by a replacement worker
    goes on from the dead one's count instead of going back)."""

    __slots__ = ("_file", "_key", "value")

    def __init__(self, file: MmapedDict, target: str) -> None:
        self._file = file
        self._key = mmap_key(NAME, f"{NAME}_total", ["target"], [target], HELP)
        self.value: float = file.read_value(self._key)[0]  # type: ignore[no-untyped-call]

    def inc(self) -> None:
        self.value += 1
        self._file.write_value(self._key, self.value, 0.0)  # type: ignore[no-untyped-call]


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
            path = Path(self._shared) / f"counter_{os.getpid()}.db"
            file = MmapedDict(str(path))  # type: ignore[no-untyped-call]
            counts = {target: _SharedTally(file, target) for target in TARGETS}
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
    """The directory the workers of this server share (None: one process)."""
    path = os.environ.get(SHARED_DIR)
    return path if path and os.path.isdir(path) else None
