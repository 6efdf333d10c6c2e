"""Live discovery (S6.4): WakeDock follows the engine's event stream, so a labelled container
(or Swarm service) appears, changes and goes away without `wakedock service reconcile` or a
restart.

Two threads, because the Docker SDK blocks (nothing here runs on the event loop):
- `discovery events` opens the engine's event stream (`ContainerRuntime.follow`), asks for one
  full reconcile (whatever changed while nobody followed: before start-up, during an outage,
  before this worker became the leader), then queues the workload of each event. When the
  stream ends (the engine went away, or restarted) it reconnects with exponential backoff,
  logging once per outage and once when it follows again.
- `discovery sync` takes the queued workloads, waits for the burst to end (`debounce` seconds
  without an event, at most MAX_BATCH_SECONDS), then runs `Reconciler.sync` on them, or
  `Reconciler.run` when a full pass was asked: the same rules as the CLI's reconcile.

With several workers only the leader follows (`lead_only_while`): a worker that stops leading
closes its stream, and the new leader starts with a full pass. The reconciler's writes are
guarded by the database anyway, so a moment with two followers records nothing twice.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable

from wakedock.config import DockerSettings
from wakedock.context import RequestContext
from wakedock.runtime.base import ContainerRuntime, RuntimeUnavailable, WorkloadChanges
from wakedock.services.reconcile import Reconciler, ReconcileReport

log = logging.getLogger("wakedock.services")
DISCOVERY = RequestContext(actor="system:discovery")
# A burst (a `docker compose up` of ten containers) is applied at most this late.
MAX_BATCH_SECONDS = 5.0
# How often a worker that does not lead asks again, and the first reconnection delay.
IDLE_POLL_SECONDS = 1.0
FIRST_RETRY_SECONDS = 0.5
# A stream that lived this long was not a flapping one: the backoff starts again from scratch.
STEADY_SECONDS = 10.0
# Queued to ask for a full reconcile (refs are strings).
_FULL = None
_Item = str | None


class DiscoveryWatcher:
    def __init__(
        self,
        reconciler: Reconciler,
        runtime: ContainerRuntime,
        *,
        debounce: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self._reconciler = reconciler
        self._runtime = runtime
        self._debounce = debounce
        self._max_backoff = max_backoff
        self._leading: Callable[[], bool] = lambda: True
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._stop = threading.Event()
        self._stream: WorkloadChanges | None = None
        self._stream_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._follow, name="discovery events", daemon=True),
            threading.Thread(target=self._apply, name="discovery sync", daemon=True),
        ]

    def lead_only_while(self, leading: Callable[[], bool]) -> None:
        """Follow the engine only while `leading` (server.workers > 1: the leader)."""
        self._leading = leading

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Close the stream and end both threads (the server is stopping)."""
        self._stop.set()
        self._close_stream()
        self._queue.put(_FULL)  # wakes the sync thread, which sees the stop
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=15)

    # -- the event stream ------------------------------------------------------------------

    def _follow(self) -> None:
        failures = 0
        outage = False
        while not self._stop.is_set():
            if not self._leading():
                self._stop.wait(IDLE_POLL_SECONDS)
                continue
            try:
                stream = self._runtime.follow()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any engine error
                if not outage:
                    outage = True
                    log.warning(
                        "live discovery: cannot follow the Docker engine's events (%s); "
                        "retrying with backoff",
                        _why(exc),
                    )
                failures += 1
                self._stop.wait(self._backoff(failures))
                continue
            if not self._keep(stream):
                return
            if outage:
                outage = False
                log.warning("live discovery: following the Docker engine's events again")
            opened = time.monotonic()
            self._queue.put(_FULL)  # what changed while nobody followed
            for change in stream:
                self._queue.put(change.ref)
            with self._stream_lock:
                self._stream = None
            if self._stop.is_set() or not self._leading():
                continue
            # Ended by the engine's side: it went away (or restarted).
            outage = True
            log.warning(
                "live discovery: the Docker engine's event stream was lost; reconnecting "
                "with backoff"
            )
            failures = 1 if time.monotonic() - opened >= STEADY_SECONDS else failures + 1
            self._stop.wait(self._backoff(failures))

    def _keep(self, stream: WorkloadChanges) -> bool:
        """Remember the open stream (for `stop`); False, and closed, when stopping already."""
        with self._stream_lock:
            if self._stop.is_set():
                stream.close()
                return False
            self._stream = stream
            return True

    def _close_stream(self) -> None:
        with self._stream_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _backoff(self, failures: int) -> float:
        delay = min(self._max_backoff, FIRST_RETRY_SECONDS * 2.0 ** min(failures - 1, 16))
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret

    # -- applying the changes --------------------------------------------------------------

    def _apply(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=IDLE_POLL_SECONDS)
            except queue.Empty:
                if not self._leading():
                    self._close_stream()  # no longer the leader: another worker follows
                continue
            batch = self._burst(first)
            if self._stop.is_set():
                return
            if not self._leading():
                self._close_stream()
                continue
            refs = {item for item in batch if item is not None}
            try:
                if _FULL in batch:
                    report = self._reconciler.run(DISCOVERY)
                else:
                    report = self._reconciler.sync(refs, DISCOVERY)
            except RuntimeUnavailable:
                # The engine went away: the stream ends too, and its reconnection asks for the
                # full pass that catches up (the outage is logged there, once).
                continue
            except Exception as exc:  # noqa: BLE001 - e.g. the database away: retried in full
                if not failing:
                    failing = True
                    log.warning(
                        "live discovery could not apply the engine's changes (%s); retrying "
                        "with a full reconcile",
                        _why(exc),
                    )
                if not self._stop.wait(self._max_backoff / 6):
                    self._queue.put(_FULL)
                continue
            if failing:
                failing = False
                log.warning("live discovery: the engine's changes are applied again")
            _log_report(report)

    def _burst(self, first: _Item) -> list[_Item]:
        """`first` and what follows it until `debounce` seconds pass without an event."""
        batch = [first]
        deadline = time.monotonic() + MAX_BATCH_SECONDS
        while not self._stop.is_set():
            wait = min(self._debounce, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=wait))
            except queue.Empty:
                break
        return batch


def make_discovery_watcher(
    docker: DockerSettings, reconciler: Reconciler, runtime: ContainerRuntime
) -> DiscoveryWatcher | None:
    """The watcher `serve` runs, or None with docker.live_discovery off."""
    if not docker.live_discovery:
        return None
    return DiscoveryWatcher(reconciler, runtime, debounce=docker.discovery_debounce_seconds)


def _why(exc: Exception) -> str:
    detail = getattr(exc, "detail", None)
    return str(detail) if detail else type(exc).__name__


def _log_report(report: ReconcileReport) -> None:
    for what, names in (
        ("discovered", report.discovered),
        ("updated from its labels", report.updated),
        ("removed with its container", report.removed),
    ):
        for name in names:
            log.info("live discovery: service %s %s", name, what)
